"""Deployment runtime: run a trained pipelined policy one tick per ``act`` at batch 1.

    policy = PipelinedPolicy.load("runs/ant/policy")   # a directory written by save_policy
    policy.reset()                                      # at every episode start
    while True:
        action = policy.act(obs)                        # a_t: the head's stored value, then one tick on o_t
        obs, ... = env.step(action)
    print(policy.stats())                               # {'acts': ..., 'actions_per_second': ...}

Each ``act`` is one tick of DESIGN §1: the action is drawn from what the head holds at the start of
the tick (computed from older observations), then every layer consumes its inputs of the tick (o_t,
and a_t where the network sees its action history) at once. The tick is the core's fused execution
(``PipelinedNetwork.fused_step`` on ``fuse_params``: every group of same-shaped layers is one batched
op) compiled with ``jax.jit`` into a single call; the whole state travels as one flat device buffer so
that a call costs one dispatch whatever the depth. Instantaneous networks (no pipelining) run their
plain forward instead. With δ > 1 one tick spans several env steps: call ``act`` once per tick and
let the default policy (e.g. repeat the last action) fill the steps between.

Heads (``head`` of the checkpoint): ``raw`` returns the head's output; ``discrete`` takes logits
(greedy: argmax, sampled: categorical); ``gaussian`` takes 2·d outputs (mean, log-std squashed into
[-5, 2] by tanh as in CleanRL's SAC), returns tanh(mean [+ std·ε]) rescaled to [low, high].
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from pipelag.errors import PipelagError
from pipelag.runtime.checkpoint import load_policy, validate_head

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
BACKENDS = ("auto", "jax")


def head_to_action(head: dict, mode: str):
    """A function (head output, noise) -> action for one unbatched output vector.

    The noise comes from the host (numpy): Gumbel noise for a categorical draw (argmax of logits +
    Gumbel is a sample of softmax(logits)), standard normal noise for a Gaussian. Drawing it on the
    host keeps the PRNG (threefry, ~0.1 ms on a CPU) out of the jitted tick.
    """
    kind = head["type"]
    if kind == "raw":
        return lambda out, noise: out
    if kind == "discrete":
        if mode == "greedy":
            return lambda out, noise: jnp.argmax(out, axis=-1)
        return lambda out, noise: jnp.argmax(out + noise, axis=-1)
    low, high = jnp.asarray(head["low"], jnp.float32), jnp.asarray(head["high"], jnp.float32)
    scale, center = (high - low) / 2, (high + low) / 2

    def gaussian(out, noise):
        d = out.shape[-1] // 2
        mean = out[..., :d]
        if mode == "sample":
            log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(out[..., d:]) + 1)
            mean = mean + jnp.exp(log_std) * noise
        return jnp.tanh(mean) * scale + center

    return gaussian


class PipelinedPolicy:
    """A stateful pipelined policy: ``act(obs) -> action``, ``reset()``, ``stats()``."""

    def __init__(self, net, params, *, head: dict | None = None, mode: str = "greedy", seed: int = 0,
                 backend: str = "auto"):
        if mode not in ("greedy", "sample"):
            raise PipelagError(f"mode must be 'greedy' or 'sample', got {mode!r}")
        if backend not in BACKENDS:
            raise PipelagError(f"backend must be one of {BACKENDS}, got {backend!r} (the torch tick lives in "
                               "the benchmark only: pipelag.runtime.torch_tick)")
        num_outputs = net.graph.node(net.graph.head).features
        self.head = validate_head(head, num_outputs)
        if self.head["type"] == "raw" and mode == "sample":
            raise PipelagError("a raw head has no distribution to sample: use mode='greedy' or a "
                               "'discrete'/'gaussian' head")
        self.net, self.mode, self.backend = net, mode, "jax"
        self.fused = not net.instantaneous
        self._params = jax.device_put(params)
        self._fparams = jax.device_put(net.fuse_params(params)) if self.fused else None
        self._template = net.zero_state()
        flat, self._unravel = ravel_pytree(self._template)
        self._size = flat.size
        self._rng = np.random.default_rng(seed)
        width = self.net.graph.node(net.graph.head).features
        self._noise_shape = (width // 2,) if self.head["type"] == "gaussian" else (width,)
        self._tick = self._make_tick()
        self._init = jax.jit(lambda p, o: ravel_pytree(net.initial_state(p, o))[0])
        self._flat: jax.Array | None = None
        self._acts = 0
        self._seconds = 0.0

    @classmethod
    def load(cls, path, **kwargs) -> PipelinedPolicy:
        """Build the policy stored at ``path`` (see :func:`pipelag.runtime.save_policy`)."""
        loaded = load_policy(path)
        kwargs.setdefault("head", loaded.head)
        return cls(loaded.net, loaded.params, **kwargs)

    # ------------------------------------------------------------------ the loop
    def reset(self) -> None:
        """Forget the activations: the next ``act`` starts an episode (zeros, or the network's init)."""
        self._flat = None

    def act(self, obs) -> Any:
        """a_t for observation o_t; advances the pipeline by one tick. Returns an int or a numpy array."""
        t0 = time.perf_counter()
        obs = np.asarray(obs, np.float32)
        if obs.shape != self.net.obs_shape:
            raise PipelagError(f"act takes one observation of shape {self.net.obs_shape}, got {obs.shape}")
        if self._flat is None:
            self._flat = self._init(self._params, obs)
        p = self._fparams if self.fused else self._params
        action, self._flat = self._tick(p, self._flat, obs, self._noise())
        action = np.asarray(action)
        self._acts += 1
        self._seconds += time.perf_counter() - t0
        return int(action) if self.head["type"] == "discrete" else action

    def stats(self) -> dict:
        """Acts so far and actions per second of wall-clock time spent inside ``act``."""
        return {"acts": self._acts, "seconds": self._seconds,
                "actions_per_second": self._acts / self._seconds if self._seconds else 0.0,
                "backend": self.backend, "fused_groups": self._groups()}

    def benchmark(self, num_acts: int = 1000, obs=None, warmup: int = 20) -> float:
        """Actions per second of ``act`` on a fixed observation (the episode is reset before and after)."""
        obs = np.zeros(self.net.obs_shape, np.float32) if obs is None else obs
        self.reset()
        for _ in range(warmup):
            self.act(obs)
        t0 = time.perf_counter()
        for _ in range(num_acts):
            self.act(obs)
        rate = num_acts / (time.perf_counter() - t0)
        self.reset()
        return rate

    # ------------------------------------------------------------------ state access (tests, tools)
    def state(self) -> dict:
        """The current state as the core's pytree (unbatched); zeros before the first ``act``."""
        if self._flat is None:
            return self._template
        return self._unravel(self._flat)

    def set_state(self, state: dict) -> None:
        """Replace the state (unbatched, or with one leading batch axis of size 1)."""
        if jax.tree.structure(state) != jax.tree.structure(self._template):
            raise PipelagError("set_state needs a state of this network (net.zero_state() structure)")
        flat = ravel_pytree(state)[0]
        if flat.size != self._size:
            raise PipelagError(f"set_state needs {self._size} state values, got {flat.size}")
        self._flat = jnp.asarray(flat, jnp.float32)

    # ------------------------------------------------------------------ internals
    def _noise(self):
        if self.mode == "greedy":
            return None
        if self.head["type"] == "discrete":
            return self._rng.gumbel(size=self._noise_shape).astype(np.float32)
        return self._rng.standard_normal(self._noise_shape, np.float32)

    def _groups(self) -> list[int]:
        return [len(g) for wave in self.net._fused_plan for g in wave] if self.fused else []

    def _make_tick(self):
        net, unravel = self.net, self._unravel
        to_action = head_to_action(self.head, self.mode)
        with_action = net.action_spec.history > 0
        fused = self.fused

        def tick(p, flat, obs, noise):
            state = unravel(flat)
            out = net.output(p, state, obs)
            action = to_action(out, noise)
            a_in = action if with_action else None
            if fused:
                _, new = net.fused_step(p, state, obs, a_in)
            else:
                _, new = net.step(p, state, obs, a_in)
            return action, ravel_pytree(new)[0]

        donate = (1,) if jax.default_backend() != "cpu" else ()
        return jax.jit(tick, donate_argnums=donate)
