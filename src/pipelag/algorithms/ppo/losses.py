"""GAE and the PPO loss.

GAE with the two kinds of episode end kept apart (DESIGN §3, envs/base.py):

    δ_t = r_t + γ · (1 − terminated_t) · V(final_obs_t) − V(o_t)
    A_t = δ_t + γ λ · (1 − done_t) · A_{t+1},     A_T = 0

``final_obs_t`` is the observation after step t *before* an auto-reset, so V(final_obs_t) is
V(o_{t+1}) inside an episode, the bootstrap value at a truncation (time limit: the episode did not
really end), and unused at a termination. At the end of the rollout V(final_obs_{T−1}) = V(o_T) is the
usual bootstrap. ``done = terminated | truncated`` stops the advantage from crossing into the next
episode.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def compute_gae(rewards: jax.Array, values: jax.Array, next_values: jax.Array, terminated: jax.Array,
                done: jax.Array, gamma: float, gae_lambda: float, unroll: int = 1) -> tuple[jax.Array, jax.Array]:
    """Arrays [T, ...] (time first). Returns (advantages, returns = advantages + values)."""
    not_term = 1.0 - terminated.astype(jnp.float32)
    not_done = 1.0 - done.astype(jnp.float32)
    deltas = rewards + gamma * not_term * next_values - values

    def body(next_adv, xs):
        delta, nd = xs
        adv = delta + gamma * gae_lambda * nd * next_adv
        return adv, adv

    _, adv = jax.lax.scan(body, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True, unroll=unroll)
    return adv, adv + values


class LossInfo(NamedTuple):
    total: jax.Array
    policy: jax.Array
    value: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_frac: jax.Array


def ppo_loss(logits: jax.Array, actions: jax.Array, old_logp: jax.Array, advantages: jax.Array,
             values: jax.Array, old_values: jax.Array, returns: jax.Array, *, clip_eps: float, clip_value: bool,
             vf_coef: float, ent_coef: float, norm_adv: bool) -> tuple[jax.Array, LossInfo]:
    """Clipped PPO objective over a minibatch (any shape; logits have an extra last axis)."""
    logp_all = jax.nn.log_softmax(logits)
    logp = jnp.take_along_axis(logp_all, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
    entropy = -(jnp.exp(logp_all) * logp_all).sum(-1).mean()
    if norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_ratio = logp - old_logp
    ratio = jnp.exp(log_ratio)
    pg1 = ratio * advantages
    pg2 = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    policy_loss = -jnp.minimum(pg1, pg2).mean()
    if clip_value:
        v_clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        value_loss = 0.5 * jnp.maximum((values - returns) ** 2, (v_clipped - returns) ** 2).mean()
    else:
        value_loss = 0.5 * ((values - returns) ** 2).mean()
    total = policy_loss + vf_coef * value_loss - ent_coef * entropy
    approx_kl = ((ratio - 1.0) - log_ratio).mean()
    clip_frac = (jnp.abs(ratio - 1.0) > clip_eps).mean()
    return total, LossInfo(total, policy_loss, value_loss, entropy, approx_kl, clip_frac)
