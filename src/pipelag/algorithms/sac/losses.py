"""The SAC losses and the update step of DESIGN §3 (shared by the jitted and the host drivers).

One update on a batch of windows (``[B, W]`` transitions, see :mod:`.buffer`), j = the window's last
step:

* the actor is unrolled over the window (fresh activations at the window's start, the stored exact
  history, a reset at the latest episode start inside the window, BPTT through ``net.unroll``);
  ``outs[W−1]`` is the distribution a_j is drawn from; ``net.output`` on the state after tick j (and
  o_{j+1}) is the distribution of a_{j+1};
* the twin critics learn on transition j, undelayed, on the augmented observation
  x_j = [o_j, history_j]: ``y = r_j + γ (1 − terminated_j) (min_i Q̄_i(x_{j+1}, a') − α log π(a'))``
  with a' ~ π at j+1 (truncations bootstrap: only termination stops it), loss Σ_i mean (Q_i − y)²;
* the actor loss, on the window's last step: ``mean(α log π(ã_j) − min_i Q_i(x_j, ã_j))``;
* α (autotune): ``mean(−α (log π + target_entropy))`` on the same log-probabilities (detached);
* Polyak averaging of the target critics, τ, every ``target_network_frequency`` critic updates.

Dropout (``SACConfig.dropout`` > 0): every actor unroll (for a' in the critic step, for ã_j in the
actor step) draws fresh masks, one key per unroll split from the update's key, tick t of the window
using ``net.tick_key(key, t)`` and the output for a_{j+1} tick W: the same per-tick masks a
tick-by-tick rollout with those keys would use (``PipelinedNetwork.unroll`` = repeated ``step``).
With dropout 0 no key is split: the numbers are those of the code without dropout.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pipelag.algorithms.sac.buffer import Transition
from pipelag.algorithms.sac.networks import (
    TwinCritic,
    critic_input,
    history_of,
    sample_action,
    with_history,
)
from pipelag.networks import PipelinedNetwork


class SACState(NamedTuple):
    actor_params: Any
    q_params: Any
    q_target: Any
    log_alpha: jax.Array
    actor_opt: Any
    q_opt: Any
    alpha_opt: Any
    updates: jax.Array  # critic updates done


# ---------------------------------------------------------------------------------------- pure maths
def td_target(q_next: jax.Array, logp_next: jax.Array, reward: jax.Array, terminated: jax.Array, alpha,
              gamma: float) -> jax.Array:
    """``r + γ (1 − terminated) (min_i Q̄_i(s', a') − α log π(a'|s'))``; ``q_next`` is ``[2, B]``."""
    soft = jnp.min(q_next, axis=0) - alpha * logp_next
    return reward + gamma * (1.0 - terminated.astype(jnp.float32)) * soft


def critic_loss_from_values(q: jax.Array, target: jax.Array) -> jax.Array:
    """Σ over the twins of the mean squared TD error (cleanRL's ``qf1_loss + qf2_loss``)."""
    return jnp.sum(jnp.mean((q - jax.lax.stop_gradient(target)[None]) ** 2, axis=-1))


def actor_loss_from_values(q_pi: jax.Array, logp: jax.Array, alpha) -> jax.Array:
    return jnp.mean(alpha * logp - jnp.min(q_pi, axis=0))


def alpha_loss(log_alpha: jax.Array, logp: jax.Array, target_entropy: float) -> jax.Array:
    return jnp.mean(-jnp.exp(log_alpha) * (jax.lax.stop_gradient(logp) + target_entropy))


def polyak(target, online, tau: float):
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


# ---------------------------------------------------------------------------------------- the actor on windows
MAX_UNROLLED_WINDOW = 16  # longer windows keep the scan's loop (compile time)


def unroll_actor(net: PipelinedNetwork, params, window: Transition, first: jax.Array, key: jax.Array | None = None):
    """Unroll the actor over a batch of windows (``[B, W, ...]``).

    Returns ``(outs [W, B, 2A], final_state)``: ``outs[t]`` is the head output a_t was drawn from;
    ``final_state`` the actor state after tick W−1 (its output is a_{W}'s distribution). ``key``: the
    dropout key of the unroll (actors with dropout only)."""
    W = window.obs.shape[1]
    tm = lambda x: jnp.swapaxes(x, 0, 1)
    obs_seq, act_seq = tm(window.obs), tm(window.action)
    pos = jnp.arange(W)[:, None]
    resets = (pos == first[None, :]) & (first[None, :] > 0)
    hist0 = jax.tree.map(lambda h: h[:, 0], window.history)
    state0 = with_history(net.initial_state(params, obs_seq[0]), hist0)
    # a window is a few ticks: unrolled, the BPTT has no loop (each loop trip costs a host round trip on a GPU)
    unroll = True if W <= MAX_UNROLLED_WINDOW else 1
    return net.unroll(params, state0, obs_seq, act_seq, resets, key=key, scan_unroll=unroll)


def next_policy_output(net: PipelinedNetwork, params, final_state, next_obs: jax.Array,
                       key: jax.Array | None = None) -> jax.Array:
    """The head output a_{j+1} is drawn from, given the actor state after tick j and o_{j+1}. ``key``:
    the dropout key of that tick (used only by an instantaneous actor with dropout)."""
    return net.output(params, final_state, next_obs, key=key)


# ---------------------------------------------------------------------------------------- the update
class Learner:
    """Pure update functions bound to one actor network, critic and config (no state of its own)."""

    def __init__(self, net: PipelinedNetwork, critic: TwinCritic, *, scale: jax.Array, bias: jax.Array,
                 gamma: float, tau: float, policy_lr: float, q_lr: float, adam_eps: float, autotune: bool,
                 alpha: float, target_entropy: float, target_network_frequency: int = 1):
        self.net, self.critic = net, critic
        self.scale, self.bias = scale, bias
        self.gamma, self.tau = gamma, tau
        self.autotune, self.fixed_alpha = autotune, alpha
        self.target_entropy = target_entropy
        self.target_network_frequency = target_network_frequency
        self.actor_tx = optax.adam(policy_lr, eps=adam_eps)
        self.q_tx = optax.adam(q_lr, eps=adam_eps)
        self.alpha_tx = optax.adam(q_lr, eps=adam_eps)  # cleanRL: α learns at the Q learning rate

    def init(self, key: jax.Array, obs_dim_critic: int, act_dim: int) -> SACState:
        k_actor, k_q = jax.random.split(key)
        actor_params = self.net.init(k_actor)
        q_params = self.critic.init(k_q, jnp.zeros((1, obs_dim_critic)), jnp.zeros((1, act_dim)))
        log_alpha = jnp.asarray(0.0 if self.autotune else jnp.log(jnp.maximum(self.fixed_alpha, 1e-30)), jnp.float32)
        return SACState(actor_params, q_params, q_params, log_alpha, self.actor_tx.init(actor_params),
                        self.q_tx.init(q_params), self.alpha_tx.init(log_alpha), jnp.zeros((), jnp.int32))

    def _dropout_key(self, key: jax.Array):
        """``(key, dropout key)``: a key split off for the actor's dropout masks, None without dropout
        (no split: the same random numbers as without the feature)."""
        if not self.net.uses_dropout:
            return key, None
        key, k_drop = jax.random.split(key)
        return key, k_drop

    def alpha(self, state: SACState) -> jax.Array:
        return jnp.exp(state.log_alpha) if self.autotune else jnp.asarray(self.fixed_alpha, jnp.float32)

    # ------------------------------------------------------------------ critic
    def critic_step(self, state: SACState, window: Transition, first: jax.Array, key: jax.Array):
        net, alpha = self.net, self.alpha(state)
        last = jax.tree.map(lambda x: x[:, -1], window)
        key, k_drop = self._dropout_key(key)
        # a' ~ π(·| history up to j+1): the actor state after tick j, no gradient into the actor
        _, final = unroll_actor(net, state.actor_params, window, first, key=k_drop)
        next_key = None if k_drop is None else net.tick_key(k_drop, window.obs.shape[1])
        next_out = next_policy_output(net, state.actor_params, final, last.next_obs, key=next_key)
        a_next, logp_next = sample_action(next_out, key, self.scale, self.bias)
        x = critic_input(last.obs, last.history)
        x_next = critic_input(last.next_obs, history_of(final))
        q_next = self.critic.apply(state.q_target, x_next, a_next)
        y = jax.lax.stop_gradient(td_target(q_next, logp_next, last.reward, last.terminated, alpha, self.gamma))

        def loss_fn(qp):
            q = self.critic.apply(qp, x, last.action)
            return critic_loss_from_values(q, y), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.q_params)
        upd, q_opt = self.q_tx.update(grads, state.q_opt, state.q_params)
        q_params = optax.apply_updates(state.q_params, upd)
        updates = state.updates + 1
        do_target = (updates % self.target_network_frequency) == 0
        q_target = jax.tree.map(lambda new, old: jnp.where(do_target, new, old),
                                polyak(state.q_target, q_params, self.tau), state.q_target)
        state = state._replace(q_params=q_params, q_target=q_target, q_opt=q_opt, updates=updates)
        return state, {"q_loss": loss, "q_mean": jnp.mean(q), "target_mean": jnp.mean(y)}

    # ------------------------------------------------------------------ actor and α
    def actor_step(self, state: SACState, window: Transition, first: jax.Array, key: jax.Array):
        net, alpha = self.net, jax.lax.stop_gradient(self.alpha(state))
        last = jax.tree.map(lambda x: x[:, -1], window)
        x = critic_input(last.obs, last.history)
        key, k_drop = self._dropout_key(key)

        def loss_fn(ap):
            outs, _ = unroll_actor(net, ap, window, first, key=k_drop)
            a, logp = sample_action(outs[-1], key, self.scale, self.bias)
            q_pi = self.critic.apply(state.q_params, x, a)
            return actor_loss_from_values(q_pi, logp, alpha), logp

        (loss, logp), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.actor_params)
        upd, actor_opt = self.actor_tx.update(grads, state.actor_opt, state.actor_params)
        actor_params = optax.apply_updates(state.actor_params, upd)
        log_alpha, alpha_opt = state.log_alpha, state.alpha_opt
        if self.autotune:
            a_loss, a_grad = jax.value_and_grad(alpha_loss)(state.log_alpha, logp, self.target_entropy)
            a_upd, alpha_opt = self.alpha_tx.update(a_grad, state.alpha_opt, state.log_alpha)
            log_alpha = optax.apply_updates(state.log_alpha, a_upd)
        state = state._replace(actor_params=actor_params, actor_opt=actor_opt, log_alpha=log_alpha,
                               alpha_opt=alpha_opt)
        return state, {"actor_loss": loss, "entropy": -jnp.mean(logp)}

    def update(self, state: SACState, window: Transition, first: jax.Array, key: jax.Array, actor_updates: int):
        """One critic update, then ``actor_updates`` (static) actor/α updates on the same windows."""
        k_critic, k_actor = jax.random.split(key)
        state, metrics = self.critic_step(state, window, first, k_critic)
        if actor_updates:
            for k in jax.random.split(k_actor, actor_updates):
                state, m = self.actor_step(state, window, first, k)
            metrics = {**metrics, **m}
        return state, {**metrics, "alpha": self.alpha(state)}
