"""The PPO actor (pipelined) and critic (undelayed), and a time-parallel unroll of the actor.

* :func:`build_actor_critic` builds both networks for an env from a :class:`PPOConfig`.
* :func:`advance` is ``net.step`` for the rollout, minus the forward pass an instantaneous network
  does not need (it only has to remember a_t for its action history).
* :func:`parallel_unroll` returns exactly what ``net.unroll`` returns as outputs (the logits a_t was
  drawn from at every tick, activations reset where ``resets`` is set), but computes it *layer by
  layer over the whole sequence* instead of tick by tick: under the tick rule a layer at tick t reads
  what its inputs held at the start of tick t, i.e. what they computed at tick t−1 (or the episode's
  initial activations after a reset). So each layer is one batched op over all T×B ticks, with the
  sources shifted by one tick, instead of T sequential ticks. Forward and backward passes of the PPO
  update become a handful of large ops. Networks with an LSTM cell (a true recurrence) fall back to
  ``net.unroll``. The tests check both against each other.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from pipelag.algorithms.ppo.config import PPOConfig
from pipelag.errors import PipelagError
from pipelag.networks import PipelinedNetwork, build_network
from pipelag.networks.graph import INPUT_SOURCES
from pipelag.networks.layers import apply_layer, gather_input, match_shape


def build_actor(config: PPOConfig, obs_shape: tuple[int, ...], num_actions: int) -> PipelinedNetwork:
    return build_network(config.arch, obs_shape, num_actions, delta=config.delta, num_actions=num_actions,
                         action_history=config.action_history, action_input=config.action_input,
                         instantaneous=config.instantaneous, init_activations=config.init_activations,
                         head_init_scale=0.01, hidden=config.hidden, channels=config.channels,
                         num_layers=config.num_layers)


def critic_arch_for(config: PPOConfig, obs_shape: tuple[int, ...]) -> str:
    if config.critic_arch != "auto":
        return config.critic_arch
    return "cnn" if len(obs_shape) == 3 else "mlp"


#: the paper code's critic trunk on MinAtar-sized images (16/32/32 channels, then 512 units)
SMALL_CRITIC_CHANNELS = (16, 32, 32)


def critic_channels_for(config: PPOConfig, obs_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    if config.critic_channels is not None:
        return config.critic_channels
    if len(obs_shape) == 3 and obs_shape[0] < 32:  # the "minatar" CNN preset (stride 1, same padding)
        return SMALL_CRITIC_CHANNELS
    return None  # the architecture's preset (MiniGrid: 32/64/64, strides 4/2/1)


def build_critic(config: PPOConfig, obs_shape: tuple[int, ...]) -> PipelinedNetwork:
    return build_network(critic_arch_for(config, obs_shape), obs_shape, 1, instantaneous=True, head_init_scale=1.0,
                         hidden=config.critic_hidden, channels=critic_channels_for(config, obs_shape))


def build_actor_critic(config: PPOConfig, obs_shape: tuple[int, ...], num_actions: int | None):
    if num_actions is None:
        raise PipelagError("PPO here is for discrete actions (MinAtar, MiniGrid); use SAC for continuous actions")
    return build_actor(config, tuple(obs_shape), int(num_actions)), build_critic(config, tuple(obs_shape))


# ---------------------------------------------------------------------------- acting
def advance(net: PipelinedNetwork, params, state, obs: jax.Array, action: jax.Array):
    """The state after tick t (o_t observed, a_t executed): ``net.step`` for a pipelined network; for
    an instantaneous one only a_t is pushed into the action history (its output is recomputed from
    o_{t+1} anyway)."""
    if not net.instantaneous:
        return net.step(params, state, obs, action)[1]
    if net.action_spec.history == 0:
        return state
    actions = state["actions"]
    enc = net.action_spec.encode(action)
    return {**state, "actions": jnp.concatenate([enc[..., None, :], actions[..., :-1, :]], axis=-2)}


def instant_values(net: PipelinedNetwork, params, obs: jax.Array) -> jax.Array:
    """Output of an instantaneous network on observations of any leading shape, last axis squeezed."""
    batch_shape = obs.shape[: obs.ndim - len(net.obs_shape)]
    out = net.output(params, net.zero_state(batch_shape), obs)
    return out[..., 0]


# ---------------------------------------------------------------------------- time-parallel unroll
def supports_parallel_unroll(net: PipelinedNetwork) -> bool:
    # an LSTM is a true recurrence; a frame stack kept in the network state is not rebuilt here
    return net.obs_history == 1 and not any(n.op == "lstm" for n in net.graph.nodes)


def _histories(net: PipelinedNetwork, state0, action_seq: jax.Array, resets: jax.Array):
    """Action histories (newest first) seen during each tick: after pushing a_t (``post``) and before
    (``pre``, what an instantaneous network's output sees). Shapes [T, B, k, A]."""
    spec = net.action_spec
    k = spec.history
    T = action_seq.shape[0]
    enc = spec.encode(action_seq)  # [T, B, A]
    old = jnp.swapaxes(state0["actions"], 0, 1)[::-1]  # [k, B, A], oldest first: E[k-1-i] = state0[:, i]
    E = jnp.concatenate([old.astype(enc.dtype), enc], axis=0)  # E[k + t] = a_t
    t = jnp.arange(T)
    big = T + k + 1
    ep_start = jax.lax.cummax(jnp.where(resets, t[:, None], -big), axis=0)  # [T, B]

    def hist(offset):
        j = jnp.arange(k)
        src_t = t[:, None] - offset - j[None, :]  # [T, k] time index of entry j
        vals = E[src_t + k]  # [T, k, B, A]
        valid = src_t[:, :, None] >= ep_start[:, None, :]  # [T, k, B]
        vals = vals * valid[..., None]
        return jnp.transpose(vals, (0, 2, 1, 3))

    return hist(0), hist(1)


def parallel_unroll(net: PipelinedNetwork, params, state0, obs_seq: jax.Array, action_seq: jax.Array | None = None,
                    resets: jax.Array | None = None) -> jax.Array:
    """``net.unroll(params, state0, obs_seq, action_seq, resets)[0]`` for obs_seq [T, B, ...], computed
    layer by layer over all ticks at once (see the module docstring). Returns outputs [T, B, out]."""
    if obs_seq.ndim != len(net.obs_shape) + 2:
        raise ValueError(f"parallel_unroll needs obs_seq [T, B, *{net.obs_shape}], got {obs_seq.shape}")
    if not supports_parallel_unroll(net):
        return net.unroll(params, state0, obs_seq, action_seq, resets)[0]
    T, B = obs_seq.shape[:2]
    if resets is None:
        resets = jnp.zeros((T, B), bool)
    flat = lambda x: x.reshape((T * B, *x.shape[2:]))
    unflat = lambda x: x.reshape((T, B, *x.shape[1:]))
    graph = net.graph
    actions_post = actions_pre = None
    if net.action_spec.history > 0:
        if action_seq is None:
            raise ValueError("this network sees its action history: pass action_seq")
        actions_post, actions_pre = _histories(net, state0, action_seq, resets)
    fresh_all = net.instantaneous
    hist = actions_pre if net.instantaneous else actions_post
    sources = net._sources(flat(obs_seq), None if hist is None else flat(hist))

    init = None
    if not fresh_all and net.init_activations == "instant":
        init = net.initial_state(params, obs_seq)["act"]  # [T, B, ...] instantaneous pass on every o_t

    new: dict[str, jax.Array] = {}
    pre: dict[str, jax.Array] = {}
    held_cache: dict[str, jax.Array] = {}

    def held(name: str) -> jax.Array:
        """Value ``name`` holds at the start of each tick: its output of the previous tick, the stored
        activation for tick 0, the episode's initial activation after a reset."""
        if name not in held_cache:
            prev = unflat(new[name])
            shifted = jnp.concatenate([state0["act"][name][None].astype(prev.dtype), prev[:-1]], axis=0)
            start = jnp.zeros_like(shifted) if init is None else init[name].astype(prev.dtype)
            r = resets.reshape(resets.shape + (1,) * (shifted.ndim - 2))
            held_cache[name] = flat(jnp.where(r, start, shifted))
        return held_cache[name]

    for node in graph.nodes:
        vals = []
        for s in node.inputs:
            if s in INPUT_SOURCES:
                vals.append(sources[s])
            elif fresh_all or graph.reads_fresh(node, s):
                vals.append(new[s])
            else:
                vals.append(held(s))
        y, _ = apply_layer(node, net.modules[node.name], params[node.name], gather_input(node, vals))
        pre[node.name] = y
        if node.residual:
            y = (y + sum(match_shape(pre[r], y.shape) for r in node.residual)) / math.sqrt(1 + len(node.residual))
        new[node.name] = y
    out = new[graph.head] if fresh_all else held(graph.head)
    return unflat(out)


def take_envs(tree: Any, idx: jax.Array, axis: int) -> Any:
    """Select environments ``idx`` along ``axis`` of every leaf."""
    return jax.tree.map(lambda x: jnp.take(x, idx, axis=axis), tree)
