"""SAC configuration: a frozen dataclass with the paper's defaults (Table 6, §4.3, DESIGN §3).

Step counting: ``total_timesteps`` counts *agent* steps (ticks) per seed, as the paper's code does;
with δ > 1 every agent step spans δ env steps (the RealTime wrapper, default policy β in between), so
the env runs about ``delta × total_timesteps`` raw steps. γ is per agent step. Returns are always
raw-env episode returns (summed over the δ env steps of every tick).

The baselines of the paper come from the same code:

=====================================  ==========================================================
paper name                             config
=====================================  ==========================================================
SAC (the normaliser, score 1.0)        ``arch="mlp", instantaneous=True, action_history=0``
SAC-repeat-2 / -3 (Table 4)            the same with ``delta=2`` / ``3`` (RealTime repeats a_t)
SAC w/ skip connections (Table 5)      ``arch="mlp-proj-from-obs", instantaneous=True``
three layers w/ proj-from-obs & aug    ``arch="mlp-proj-from-obs", action_history=2`` (default)
=====================================  ==========================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pipelag.algorithms.common.config import ConfigIO
from pipelag.errors import PipelagError

BACKENDS = ("auto", "jax", "host")


@dataclass(frozen=True)
class SACConfig(ConfigIO):
    LABEL = "SAC"  # names the algorithm in error messages (not a field)

    # ---------------------------------------------------------------- environment
    #: a pipelag JAX env id (``pipelag.envs.list_envs()``, or ``"PointTarget-v0"``, the toy env of
    #: :mod:`pipelag.algorithms.sac.toy`), a MuJoCo task (``HalfCheetah-v4``…, through
    #: :mod:`pipelag.envs.mujoco`) or any gymnasium id with a Box action space (host adapter)
    env_id: str = "HalfCheetah-v4"
    #: options for the env constructor (JAX: ``pipelag.envs.make`` options; MuJoCo: see
    #: :func:`pipelag.envs.mujoco.mujoco_env_fn`, e.g. {"speedup": 2}; gymnasium: ``gym.make`` kwargs)
    env_options: dict[str, Any] = field(default_factory=dict)
    #: "auto": JAX envs run the jitted driver, everything else the host loop
    backend: str = "auto"
    #: neuron execution time δ: > 1 → RealTime wrapper (δ env steps per tick, β between agent
    #: actions); < 1 → several layers per tick (stages in the network), the env is unchanged
    delta: float = 1.0
    default_policy: str = "repeat"
    # ---------------------------------------------------------------- actor (pipelined)
    arch: str = "mlp-proj-from-obs"
    num_layers: int = 3
    hidden: int = 256
    #: True: an instantaneous actor (the SAC baselines); False: the pipelined actor
    instantaneous: bool = False
    #: the actor sees its last k actions, a_t included when it computes a_{t+1} (DESIGN §2);
    #: the critic sees the same history (its input is the augmented observation)
    action_history: int = 2
    #: activations at an episode start: "zeros" (paper) or "instant" (a pass on the first observation)
    init_activations: str = "zeros"
    #: length of the sub-trajectories the actor is unrolled on (0: its delay + 1, the minimum)
    window: int = 0
    #: dropout probability p ∈ [0, 1) of every hidden unit of the actor, on every tick, when acting
    #: (training rollouts *and* evaluation: the paper's App. D / Fig. 12) and in the actor's unrolls of
    #: the updates; inverted (kept units × 1/(1−p)). The critics never drop. 0: no dropout
    dropout: float = 0.0
    # ---------------------------------------------------------------- critics (undelayed)
    critic_hidden: int = 256
    #: layers of each Q network, the output layer included (cleanRL/paper: 3)
    critic_layers: int = 3
    # ---------------------------------------------------------------- SAC (Table 6)
    total_timesteps: int = 1_000_000
    buffer_size: int = 1_000_000
    batch_size: int = 256
    learning_starts: int = 10_000
    gamma: float = 0.99
    tau: float = 0.005
    policy_lr: float = 3e-4
    q_lr: float = 1e-3
    adam_eps: float = 1e-8
    #: actor (and α) updated every ``policy_frequency`` steps, ``policy_frequency`` times (cleanRL)
    policy_frequency: int = 2
    #: Polyak update of the target critics every this many critic updates
    target_network_frequency: int = 1
    autotune: bool = True
    #: fixed entropy coefficient when ``autotune`` is off
    alpha: float = 0.2
    #: target entropy = −scale · action_dim
    target_entropy_scale: float = 1.0
    # ---------------------------------------------------------------- evaluation and bookkeeping
    eval_episodes: int = 10
    #: cap on agent steps per evaluation episode (0: the env's time limit, else 1000)
    eval_max_steps: int = 0
    #: evaluate every this many agent steps during training (0: only at the end)
    eval_every: int = 0
    #: checkpoint every this many agent steps (0: only at the end); rounded to whole chunks
    checkpoint_every: int = 0
    #: agent steps per chunk between progress lines (0: auto, about 50 chunks per run)
    steps_per_chunk: int = 0
    #: store the replay buffer in the checkpoint (exact resume; large: ~200 MB per 1M MuJoCo steps)
    checkpoint_buffer: bool = True

    def __post_init__(self):
        object.__setattr__(self, "env_options", dict(self.env_options))

    # ---------------------------------------------------------------- derived
    @property
    def capacity(self) -> int:
        """Replay buffer slots actually allocated (never more than the steps of the run)."""
        return max(1, min(self.buffer_size, self.total_timesteps))

    @property
    def env_delta(self) -> int:
        """Env steps per agent step (δ for δ > 1, else 1)."""
        return int(round(self.delta)) if self.delta > 1 else 1

    @property
    def chunk_size(self) -> int:
        """Agent steps per chunk; a multiple of ``policy_frequency``."""
        n = self.steps_per_chunk if self.steps_per_chunk > 0 else max(1, math.ceil(self.total_timesteps / 50))
        pf = self.policy_frequency
        return max(pf, -(-n // pf) * pf)

    def validate(self) -> SACConfig:
        def need(cond: bool, msg: str):
            if not cond:
                raise PipelagError(msg)

        def is_int(v) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        for name in ("total_timesteps", "buffer_size", "batch_size", "policy_frequency", "target_network_frequency",
                     "num_layers", "hidden", "critic_hidden", "critic_layers"):
            v = getattr(self, name)
            need(is_int(v) and v >= 1, f"{name} must be a positive integer, got {v!r}")
        for name in ("learning_starts", "action_history", "window", "eval_episodes", "eval_max_steps", "eval_every",
                     "checkpoint_every", "steps_per_chunk"):
            v = getattr(self, name)
            need(is_int(v) and v >= 0, f"{name} must be an integer ≥ 0, got {v!r}")
        need(self.backend in BACKENDS, f"backend must be one of {BACKENDS}, got {self.backend!r}")
        need(isinstance(self.delta, int | float) and not isinstance(self.delta, bool) and math.isfinite(self.delta)
             and self.delta > 0,
             f"delta (neuron execution time, env steps per layer) must be a number > 0, got {self.delta!r}")
        need(self.delta <= 1 or abs(self.delta - round(self.delta)) < 1e-9,
             f"delta > 1 must be a whole number of env steps (got {self.delta}); e.g. 2 or 3")
        need(self.default_policy in ("repeat", "noop"),
             f"default_policy must be 'repeat' or 'noop', got {self.default_policy!r}")
        need(self.init_activations in ("zeros", "instant"),
             f"init_activations must be 'zeros' or 'instant', got {self.init_activations!r}")
        need(self.learning_starts < self.total_timesteps,
             f"learning_starts ({self.learning_starts}) must be below total_timesteps ({self.total_timesteps}): "
             "otherwise nothing is learned")
        need(self.batch_size <= self.capacity, f"batch_size ({self.batch_size}) exceeds the replay buffer "
             f"({self.capacity} slots)")
        need(0 <= self.gamma <= 1, f"gamma must be in [0, 1], got {self.gamma}")
        need(0 < self.tau <= 1, f"tau must be in (0, 1], got {self.tau}")
        need(self.policy_lr > 0 and self.q_lr > 0 and self.adam_eps > 0, "policy_lr, q_lr and adam_eps must be > 0")
        need(self.alpha >= 0, f"alpha must be ≥ 0, got {self.alpha}")
        need(isinstance(self.dropout, int | float) and not isinstance(self.dropout, bool)
             and math.isfinite(self.dropout) and 0 <= self.dropout < 1,
             f"dropout must be a probability in [0, 1) (0 = no dropout), got {self.dropout!r}")
        return self
