"""PPO configuration: a frozen dataclass with the paper's defaults (Table 6, App. A).

Step counting: ``total_timesteps`` counts *agent* steps (ticks) summed over the parallel envs, as the
paper's code does; with δ > 1 every agent step spans δ env steps (the RealTime wrapper), so the env
runs ``delta × total_timesteps`` raw steps. Returns are always raw-env episode returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipelag.algorithms.common.config import ConfigIO
from pipelag.algorithms.common.seeds import check_seed_batching
from pipelag.errors import PipelagError
from pipelag.networks.layers import CONV_IMPLS

#: where the envs step (PPOConfig.backend): see the field's comment
BACKENDS = ("auto", "jax", "host")


@dataclass(frozen=True)
class PPOConfig(ConfigIO):
    LABEL = "PPO"  # names the algorithm in error messages (not a field)

    # ---------------------------------------------------------------- environment
    env_id: str = "MinAtar/Breakout-v0"
    #: options for ``pipelag.envs.make`` (e.g. {"sticky_action_prob": 0.25}, {"view": "rgb"}), or the gymnasium
    #: env's keyword arguments on the host backend
    env_options: dict[str, Any] = field(default_factory=dict)
    #: where the env steps: "jax" (a pipelag JAX env, the whole training inside jit), "host" (a gymnasium env:
    #: any registered id or the original minatar/minigrid packages, stepped on the host; pipelag.algorithms.ppo.host)
    #: or "auto": "jax" for JAX env ids, "host" for other registered gymnasium ids
    backend: str = "auto"
    #: neuron execution time δ: > 1 → RealTime wrapper (δ env steps per tick, default policy β acts
    #: between agent actions); < 1 → several layers per tick (stages in the network)
    delta: float = 1.0
    default_policy: str = "repeat"
    #: last k observations stacked on the channel axis (0 = off)
    frame_stack: int = 0
    # ---------------------------------------------------------------- actor (pipelined) and critic
    arch: str = "cnn-skip"
    #: True: the instantaneous PPO baseline (the same architecture without delay)
    instantaneous: bool = False
    #: history augmentation: the actor sees its last k actions (a_t itself included, DESIGN §2)
    action_history: int = 0
    #: "auto": "fc" for CNNs (one-hot into the FC layers), "obs" for MLPs; or "planes" for CNNs
    action_input: str = "auto"
    #: activations at episode start: "zeros" (honest default) or "instant" (paper code's choice)
    init_activations: str = "zeros"
    hidden: int | None = None
    channels: tuple[int, ...] | None = None
    num_layers: int = 3  # MLP actors only
    #: undelayed critic: "auto" = "cnn" for images, "mlp" for vectors
    critic_arch: str = "auto"
    critic_hidden: int | None = None
    #: None: the paper code's 16/32/32 trunk on MinAtar-sized images, the 32/64/64 preset on larger ones
    critic_channels: tuple[int, ...] | None = None
    #: "bfloat16": actor and critic multiply in bf16 (float32 parameters, Adam and activations)
    compute_dtype: str = "float32"
    #: lax.scan unroll factor of the rollout and GAE loops (speed only: the same computation). 0 = auto: 8 on
    #: a GPU for runs of ≥ 2,048 updates (1.55× faster on an H100, docs/ppo.md: fewer while-loop iterations;
    #: it costs 6–13 s more compilation, which only long runs win back), 1 otherwise
    rollout_unroll: int = 0
    #: how conv layers run: "xla" (lax.conv), "gemm" (image patches × kernel, one matmul; same parameters,
    #: outputs equal up to rounding) or "auto": "gemm" on a CPU (XLA's CPU convolutions are the slow part
    #: there), "xla" on a GPU (cuDNN is faster there); measured in docs/ppo.md
    conv_impl: str = "auto"
    #: the same for the actor while acting (rollout and evaluation; one tick's batch): "auto" = "gemm" on a
    #: GPU for MinAtar-sized images (one CUDA graph per tick instead of graph pieces between cuDNN calls:
    #: 1.11× faster Breakout training, docs/ppo.md), else as conv_impl. Speed only: the same parameters,
    #: outputs equal up to float rounding
    acting_conv_impl: str = "auto"
    #: how the seeds of a run share the device: "auto" (vmapped on a GPU, one after another on a CPU, where
    #: vmapped MinAtar-size seeds hang XLA's runtime), "vmap" or "map" (one after another). Speed only
    seed_batching: str = "auto"
    #: how many local devices the seeds are split over (each runs its share as seed_batching says): 0 = auto,
    #: on a GPU machine as many GPUs as split the seeds evenly (gcd of the counts), 1 on a CPU. Speed only:
    #: one H100 is busy with one paper-size seed, so seeds scale near-linearly only across GPUs (docs/ppo.md)
    seed_devices: int = 0
    # ---------------------------------------------------------------- PPO (Table 6)
    total_timesteps: int = 10_000_000
    num_envs: int = 32
    num_steps: int = 32
    update_epochs: int = 4
    #: minibatches over environments (each = a subset of envs with their whole num_steps sequences).
    #: 1 (one optimizer step per epoch on the whole rollout) is what the paper's code did (its minibatches
    #: were computed but never used), so it is what produced the paper's numbers; 1.65× faster than 4 on an
    #: H100 with bf16 (docs/ppo.md)
    num_minibatches: int = 1
    lr: float = 2.5e-4
    anneal_lr: bool = True
    adam_eps: float = 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    #: 0.1 as the paper's code (surrogate and value clipping); see docs/ppo.md
    clip_eps: float = 0.1
    clip_value: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    norm_adv: bool = True
    # ---------------------------------------------------------------- evaluation and bookkeeping
    eval_episodes: int = 100
    #: cap on agent steps per evaluation episode (an unfinished episode counts its return so far)
    eval_max_steps: int = 10_000
    #: evaluate every this many updates during training (0: only at the end)
    eval_every: int = 0
    #: checkpoint every this many updates (0: only at the end); rounded up to whole chunks
    checkpoint_every: int = 0
    #: updates per jitted chunk between progress lines (0: auto, about 50 chunks, a divisor of num_updates
    #: if there is one near: a shorter last chunk costs one more compilation)
    updates_per_chunk: int = 0

    def __post_init__(self):
        # normalise containers so that configs compare/serialise cleanly
        object.__setattr__(self, "env_options", dict(self.env_options))
        for name in ("channels", "critic_channels"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(int(c) for c in v))

    # ---------------------------------------------------------------- derived
    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return max(1, self.total_timesteps // self.batch_size)

    @property
    def envs_per_minibatch(self) -> int:
        return self.num_envs // self.num_minibatches

    @property
    def chunk_size(self) -> int:
        if self.updates_per_chunk > 0:
            return min(self.updates_per_chunk, self.num_updates)
        # about 50 chunks; prefer a divisor of num_updates (no second compilation for a last, shorter chunk)
        n = self.num_updates
        target = max(1, math.ceil(n / 50))
        divisors = [d for d in range(max(1, target // 2), 2 * target + 1) if n % d == 0]
        return min(divisors, key=lambda d: abs(d - target)) if divisors else target

    def validate(self) -> PPOConfig:
        def need(cond: bool, msg: str):
            if not cond:
                raise PipelagError(msg)

        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches", "total_timesteps",
                     "eval_max_steps"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                 f"{name} must be a positive integer, got {v!r}")
        need(self.num_envs % self.num_minibatches == 0,
             f"num_envs ({self.num_envs}) must be divisible by num_minibatches ({self.num_minibatches}): "
             "each minibatch is a subset of whole environments")
        need(self.total_timesteps >= self.batch_size,
             f"total_timesteps ({self.total_timesteps}) is less than one rollout (num_envs × num_steps = "
             f"{self.batch_size})")
        for name in ("eval_episodes", "eval_every", "checkpoint_every", "updates_per_chunk", "frame_stack",
                     "action_history", "rollout_unroll"):
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"{name} must be an integer ≥ 0, got {v!r}")
        need(self.lr > 0 and self.adam_eps > 0, "lr and adam_eps must be > 0")
        need(0 <= self.gamma <= 1 and 0 <= self.gae_lambda <= 1, "gamma and gae_lambda must be in [0, 1]")
        need(self.clip_eps > 0 and self.max_grad_norm > 0, "clip_eps and max_grad_norm must be > 0")
        need(self.compute_dtype in ("float32", "bfloat16"),
             f"compute_dtype must be 'float32' or 'bfloat16', got {self.compute_dtype!r}")
        check_seed_batching(self.seed_batching)
        need(isinstance(self.seed_devices, int) and self.seed_devices >= 0,
             f"seed_devices must be an integer ≥ 0 (0: auto), got {self.seed_devices!r}")
        need(self.backend in BACKENDS, f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        for name in ("conv_impl", "acting_conv_impl"):
            need(getattr(self, name) in ("auto", *CONV_IMPLS),
                 f"{name} must be one of {['auto', *CONV_IMPLS]}, got {getattr(self, name)!r}")
        need(self.init_activations in ("zeros", "instant"),
             f"init_activations must be 'zeros' or 'instant', got {self.init_activations!r}")
        return self
