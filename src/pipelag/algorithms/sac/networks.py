"""SAC networks: the pipelined actor (a :class:`~pipelag.networks.PipelinedNetwork` with a tanh-squashed
Gaussian head) and the undelayed twin critics.

Actor head: ``2·act_dim`` outputs = (mean, raw log-std). The log-std is bounded as in cleanRL's SAC
(and the paper's code, notes §1): ``log_std = −5 + 3.5·(tanh(raw) + 1)`` ∈ [−5, 2]. Actions are
``tanh(u)·scale + bias`` with ``u ~ N(mean, std)``; the log-probability carries the tanh/scale
correction ``− Σ log(scale·(1 − tanh(u)²) + 1e−6)``. Evaluation uses the mean action
``tanh(mean)·scale + bias`` (the paper's number) and, as a second number, sampled actions.

History: the actor network keeps the exact history it is fed (its last k actions and, if built with
``obs_history``, its last observations) in its state next to the activations. :func:`history_of`
extracts that part; the replay buffer stores it with every transition so that a window sampled from
the middle of an episode starts with the true history and only the activations are fresh. The critic
input is the observation concatenated with the same history (the "augmented observation").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pipelag.algorithms.sac.config import SACConfig
from pipelag.errors import PipelagError
from pipelag.networks import ARCHITECTURES, PipelinedNetwork, build_network

LOG_STD_MIN = -5.0
LOG_STD_MAX = 2.0
_ACTIVATION_KEYS = ("act", "carry")


# ---------------------------------------------------------------------------------------- actor
def build_actor(config: SACConfig, obs_shape: Sequence[int], act_dim: int) -> PipelinedNetwork:
    """The actor of ``config`` for a vector observation and ``act_dim`` continuous actions."""
    obs_shape = tuple(int(d) for d in obs_shape)
    if len(obs_shape) != 1:
        raise PipelagError(f"SAC's MLP actors need a flat observation vector, but the env gives shape {obs_shape}")
    if config.arch in ARCHITECTURES and ARCHITECTURES[config.arch].family != "mlp":
        raise PipelagError(f"SAC uses MLP actors (mlp, mlp-proj-from-obs, ...); {config.arch!r} is not one: "
                           "CNN actors belong to PPO on image envs")
    return build_network(config.arch, obs_shape, 2 * act_dim, delta=config.delta, num_layers=config.num_layers,
                         hidden=config.hidden, action_dim=act_dim, action_history=config.action_history,
                         instantaneous=config.instantaneous, init_activations=config.init_activations,
                         dropout=config.dropout)


def actor_delay_ticks(net: PipelinedNetwork) -> int:
    """Ticks from the oldest observation the actor's output depends on (through feed-forward paths) to
    the action: a window of this + 1 ticks flushes any initial activations. 0 for an instantaneous
    actor. For recurrent actors (LSTM) the recurrence is not counted (the paper's choice: N + 1)."""
    if net.instantaneous:
        return 0
    recurrent = any(n.op == "lstm" for n in net.graph.nodes)
    # without recurrence every path is at most num_layers ticks long (+ a frame stack, if any)
    cap = net.num_layers + getattr(net, "obs_history", 1)
    profile = net.delay_profile(max_ticks=cap + 1)
    if recurrent:
        return net.num_layers
    return max(profile.ticks)


def actor_window(net: PipelinedNetwork, window: int = 0) -> int:
    """The sub-trajectory length the actor is trained on: ``window`` or, if 0, its delay + 1."""
    minimum = actor_delay_ticks(net) + 1
    if window == 0:
        return minimum
    if window < minimum:
        raise PipelagError(f"window {window} is shorter than the actor's delay + 1 ({minimum} ticks): its last "
                           "action would depend on the arbitrary activations at the window's start")
    return int(window)


def history_of(state: dict[str, Any]) -> dict[str, jax.Array]:
    """The exact history part of an actor state (recent actions, stacked observations): everything but
    the activations."""
    return {k: v for k, v in state.items() if k not in _ACTIVATION_KEYS and v is not None}


def with_history(state: dict[str, Any], history: dict[str, jax.Array]) -> dict[str, Any]:
    return {**state, **history}


def history_features(history: dict[str, jax.Array], batch_ndim: int) -> list[jax.Array]:
    """The history leaves flattened to ``[*batch, n]`` (sorted by key)."""
    return [history[k].reshape((*history[k].shape[:batch_ndim], -1)) for k in sorted(history)]


def critic_input(obs: jax.Array, history: dict[str, jax.Array]) -> jax.Array:
    """The critic's (augmented) observation: ``obs [*batch, D]`` then the flattened history."""
    batch_ndim = obs.ndim - 1
    return jnp.concatenate([obs.astype(jnp.float32), *history_features(history, batch_ndim)], axis=-1)


# ---------------------------------------------------------------------------------------- policy head
def gaussian_params(out: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Head output ``[..., 2A]`` → (mean, log_std) with log_std bounded to [LOG_STD_MIN, LOG_STD_MAX]."""
    mean, raw = jnp.split(out, 2, axis=-1)
    log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
    return mean, log_std


def sample_action(out: jax.Array, key: jax.Array, scale: jax.Array, bias: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample of the squashed Gaussian and its log-probability (summed over actions)."""
    mean, log_std = gaussian_params(out)
    std = jnp.exp(log_std)
    eps = jax.random.normal(key, mean.shape)
    u = mean + std * eps
    y = jnp.tanh(u)
    action = y * scale + bias
    log_prob = -0.5 * eps**2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    log_prob = log_prob - jnp.log(scale * (1.0 - y**2) + 1e-6)
    return action, log_prob.sum(-1)


def mean_action(out: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    mean, _ = gaussian_params(out)
    return jnp.tanh(mean) * scale + bias


# ---------------------------------------------------------------------------------------- critics
class QNetwork(nn.Module):
    """Q(s, a): an MLP on [augmented obs, action] (cleanRL: 256-256-1, ReLU)."""

    hidden: int = 256
    layers: int = 3

    @nn.compact
    def __call__(self, x: jax.Array, a: jax.Array) -> jax.Array:
        h = jnp.concatenate([x, a], axis=-1)
        for _ in range(self.layers - 1):
            h = nn.relu(nn.Dense(self.hidden)(h))
        return nn.Dense(1)(h)[..., 0]


class TwinCritic:
    """Two independent Q networks with stacked parameters (leading axis 2)."""

    def __init__(self, hidden: int = 256, layers: int = 3):
        self.module = QNetwork(hidden, layers)

    def init(self, key: jax.Array, x: jax.Array, a: jax.Array):
        return jax.vmap(lambda k: self.module.init(k, x, a)["params"])(jax.random.split(key, 2))

    def apply(self, params, x: jax.Array, a: jax.Array) -> jax.Array:
        """``[2, *batch]``: both Q values."""
        return jax.vmap(lambda p: self.module.apply({"params": p}, x, a))(params)
