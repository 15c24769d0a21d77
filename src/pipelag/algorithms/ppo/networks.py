"""The PPO actor (pipelined) and critic (undelayed).

* :func:`build_actor_critic` builds both networks for an env from a :class:`PPOConfig`.
* :func:`advance` is ``net.step`` for the rollout, minus the forward pass an instantaneous network
  does not need (it only has to remember a_t for its action history).
* The update unrolls the actor with ``net.unroll_layerwise`` (pipelag.networks): the same outputs
  as the tick-by-tick ``net.unroll``, each layer computed once over all ticks of the rollout.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pipelag.algorithms.ppo.config import PPOConfig
from pipelag.errors import PipelagError
from pipelag.networks import PipelinedNetwork, build_network


def build_actor(config: PPOConfig, obs_shape: tuple[int, ...], num_actions: int,
                vmapped_seeds: int = 1, conv_impl: str | None = None) -> PipelinedNetwork:
    """The actor; ``conv_impl`` overrides ``conv_impl_for(config, ...)`` (the acting copy, see acting_conv_impl_for)."""
    if conv_impl is None:
        conv_impl = conv_impl_for(config, vmapped_seeds, obs_shape)
    return build_network(config.arch, obs_shape, num_actions, delta=config.delta, num_actions=num_actions,
                         action_history=config.action_history, action_input=config.action_input,
                         instantaneous=config.instantaneous, init_activations=config.init_activations,
                         head_init_scale=0.01, hidden=config.hidden, channels=config.channels,
                         num_layers=config.num_layers, compute_dtype=config.compute_dtype, conv_impl=conv_impl)


def conv_impl_for(config: PPOConfig, vmapped_seeds: int = 1, obs_shape: tuple[int, ...] = ()) -> str:
    """``config.conv_impl`` with "auto" resolved for the backend JAX runs on, the seeds vmapped in one
    program and the image size: patches × kernel on a CPU (18–28× faster there for the MinAtar CNNs).
    On a GPU lax.conv (cuDNN, 1.1–1.3× faster), except for vmapped seeds of the strided CNN of large images
    (MiniGrid's 56×56): vmapping lax.conv over per-seed kernels makes it a grouped convolution
    (feature_group_count = seeds), and cuDNN's strided grouped convolutions ran 7× slower than patches ×
    kernel for 2 MiniGrid seeds on an H100; MinAtar's stride-1 10×10 ones did not (docs/ppo.md)."""
    if config.conv_impl != "auto":
        return config.conv_impl
    if jax.default_backend() == "cpu":
        return "gemm"
    strided = len(obs_shape) == 3 and obs_shape[0] >= 32  # the architectures' strided preset (as the critic's)
    return "gemm" if vmapped_seeds > 1 and strided else "xla"


def acting_conv_impl_for(config: PPOConfig, vmapped_seeds: int = 1, obs_shape: tuple[int, ...] = ()) -> str:
    """How the actor's conv layers run while acting (rollout, evaluation): ``config.acting_conv_impl``, with
    "auto" = patches × kernel ("gemm") on a GPU for MinAtar-sized images (< 32 pixels, stride 1), else as
    the update (``conv_impl_for``). Why: acting convolves one tick's batch (32 envs), a few µs of work per
    cuDNN call, but XLA cannot put a cuDNN call into the CUDA graph of the loop body: each one split the
    rollout's graph, and the GPU waited on the host between the pieces (1.2 of 3 ms per Breakout rollout
    idle on an H100). As matmuls the whole tick is one graph: 1.11× faster training there. MiniGrid's
    strided 56×56 convolutions measured 5 % slower as matmuls (docs/ppo.md). Same parameters either way."""
    if config.acting_conv_impl != "auto":
        return config.acting_conv_impl
    small_images = len(obs_shape) == 3 and obs_shape[0] < 32
    if jax.default_backend() in ("gpu", "cuda", "rocm") and small_images:
        return "gemm"
    return conv_impl_for(config, vmapped_seeds, obs_shape)


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


def build_critic(config: PPOConfig, obs_shape: tuple[int, ...], vmapped_seeds: int = 1) -> PipelinedNetwork:
    return build_network(critic_arch_for(config, obs_shape), obs_shape, 1, instantaneous=True, head_init_scale=1.0,
                         hidden=config.critic_hidden, channels=critic_channels_for(config, obs_shape),
                         compute_dtype=config.compute_dtype, conv_impl=conv_impl_for(config, vmapped_seeds, obs_shape))


def build_actor_critic(config: PPOConfig, obs_shape: tuple[int, ...], num_actions: int | None,
                       vmapped_seeds: int = 1):
    """``vmapped_seeds``: seeds in one vmapped program (it picks the conv implementation, see conv_impl_for)."""
    if num_actions is None:
        raise PipelagError("PPO here is for discrete actions (MinAtar, MiniGrid); use SAC for continuous actions")
    return (build_actor(config, tuple(obs_shape), int(num_actions), vmapped_seeds),
            build_critic(config, tuple(obs_shape), vmapped_seeds))


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


def take_envs(tree: Any, idx: jax.Array, axis: int) -> Any:
    """Select environments ``idx`` along ``axis`` of every leaf."""
    return jax.tree.map(lambda x: jnp.take(x, idx, axis=axis), tree)
