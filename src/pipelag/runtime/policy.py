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

import importlib.util
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from pipelag.errors import PipelagError
from pipelag.runtime.checkpoint import load_policy, validate_head

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
BACKENDS = ("auto", "jax", "torch")


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


def head_to_action_np(head: dict, mode: str):
    """numpy twin of :func:`head_to_action` (the torch backend returns the head's output to the host)."""
    kind = head["type"]
    if kind == "raw":
        return lambda out, noise: out
    if kind == "discrete":
        return lambda out, noise: np.argmax(out if noise is None else out + noise, axis=-1)
    low, high = np.asarray(head["low"], np.float32), np.asarray(head["high"], np.float32)
    scale, center = (high - low) / 2, (high + low) / 2

    def gaussian(out, noise):
        d = out.shape[-1] // 2
        mean = out[..., :d]
        if noise is not None:
            log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (np.tanh(out[..., d:]) + 1)
            mean = mean + np.exp(log_std) * noise
        return (np.tanh(mean) * scale + center).astype(np.float32)

    return gaussian


def torch_unsupported_reason(net) -> str | None:
    """None if the torch backend can run ``net`` (a chain of dense layers, one per tick); else why not."""
    nodes = net.graph.nodes
    if net.instantaneous:
        return "an instantaneous network (no pipelined tick)"
    if net.action_spec.history:
        return "action history inputs"
    if getattr(net, "obs_history", 1) != 1:
        return "a frame stack (obs_history > 1)"
    if len(net.obs_shape) != 1:
        return "image observations"
    stages = [net.graph.stages[n.name] for n in nodes]
    if len(set(stages)) != len(stages):
        return "several layers in one tick (delta < 1)"
    if net.graph.head != nodes[-1].name:
        return "a head that is not the last layer"
    prev = "obs"
    for n in nodes:
        if n.op != "dense" or tuple(n.inputs) != (prev,) or n.residual or n.pool_to is not None:
            return f"layer {n.name}, which is not a plain dense layer reading {prev} (skips, residuals, LSTM, convs)"
        if n.activation not in ("relu", None):
            return f"activation {n.activation!r} of {n.name}"
        prev = n.name
    return None


class PipelinedPolicy:
    """A stateful pipelined policy: ``act(obs) -> action``, ``reset()``, ``stats()``.

    ``backend``: ``"jax"`` (every network: the core's fused tick under ``jax.jit``), ``"torch"`` (chains
    of dense layers: the tick as a CUDA graph, with Triton where it applies; eager torch on a CPU), or
    ``"auto"``: torch where JAX sees a GPU, torch with CUDA is installed and the network is a plain
    chain (the fastest closed loop measured, docs/inference.md), else JAX. torch is imported only then.
    """

    def __init__(self, net, params, *, head: dict | None = None, mode: str = "greedy", seed: int = 0,
                 backend: str = "auto"):
        if mode not in ("greedy", "sample"):
            raise PipelagError(f"mode must be 'greedy' or 'sample', got {mode!r}")
        if backend not in BACKENDS:
            raise PipelagError(f"backend must be one of {BACKENDS}, got {backend!r}")
        num_outputs = net.graph.node(net.graph.head).features
        self.head = validate_head(head, num_outputs)
        if self.head["type"] == "raw" and mode == "sample":
            raise PipelagError("a raw head has no distribution to sample: use mode='greedy' or a "
                               "'discrete'/'gaussian' head")
        self.net, self.mode = net, mode
        self.fused = not net.instantaneous
        self._params = jax.device_put(params)
        self._template = net.zero_state()
        flat, self._unravel = ravel_pytree(self._template)
        self._size = flat.size
        self._rng = np.random.default_rng(seed)
        self._noise_shape = (num_outputs // 2,) if self.head["type"] == "gaussian" else (num_outputs,)
        self._init = jax.jit(lambda p, o: ravel_pytree(net.initial_state(p, o))[0])
        self._torch = self._torch_tick(backend, params)
        self.backend = "jax" if self._torch is None else "torch"
        if self._torch is None:
            self._fparams = jax.device_put(net.fuse_params(params)) if self.fused else None
            self._tick = self._make_tick()
        else:
            self._to_action_np = head_to_action_np(self.head, mode)
        self._flat: jax.Array | None = None
        self._started = False
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
        self._started = False
        self._flat = None

    def act(self, obs) -> Any:
        """a_t for observation o_t; advances the pipeline by one tick. Returns an int or a numpy array."""
        t0 = time.perf_counter()
        obs = np.asarray(obs, np.float32)
        if obs.shape != self.net.obs_shape:
            raise PipelagError(f"act takes one observation of shape {self.net.obs_shape}, got {obs.shape}")
        if not self._started:
            flat = self._init(self._params, obs)
            if self._torch is None:
                self._flat = flat
            else:
                self._torch.load(self._unravel(flat)["act"])
            self._started = True
        if self._torch is None:
            p = self._fparams if self.fused else self._params
            action, self._flat = self._tick(p, self._flat, obs, self._noise())
            action = np.asarray(action)
        else:
            action = self._to_action_np(self._torch.step(obs), self._noise())
        self._acts += 1
        self._seconds += time.perf_counter() - t0
        return int(action) if self.head["type"] == "discrete" else action

    def stats(self) -> dict:
        """Acts so far and actions per second of wall-clock time spent inside ``act``."""
        return {"acts": self._acts, "seconds": self._seconds,
                "actions_per_second": self._acts / self._seconds if self._seconds else 0.0,
                "backend": self.describe_backend(), "fused_groups": self._groups()}

    def describe_backend(self) -> str:
        if self._torch is None:
            return f"jax ({jax.default_backend()}, {'fused tick' if self.fused else 'forward'})"
        t = self._torch
        how = "CUDA graph" if t.graphs else "eager"
        return f"torch ({t.device}, {how}{', Triton' if t.uses_triton else ''})"

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
        if not self._started:
            return self._template
        if self._torch is None:
            return self._unravel(self._flat)
        state = dict(self._template)
        state["act"] = {n: jnp.asarray(v) for n, v in self._torch.read().items()}
        return state

    def set_state(self, state: dict) -> None:
        """Replace the state (unbatched, or with one leading batch axis of size 1)."""
        if jax.tree.structure(state) != jax.tree.structure(self._template):
            raise PipelagError("set_state needs a state of this network (net.zero_state() structure)")
        flat = ravel_pytree(state)[0]
        if flat.size != self._size:
            raise PipelagError(f"set_state needs {self._size} state values, got {flat.size}")
        flat = jnp.asarray(flat, jnp.float32)
        if self._torch is None:
            self._flat = flat
        else:
            self._torch.load(self._unravel(flat)["act"])
        self._started = True

    # ------------------------------------------------------------------ internals
    def _torch_tick(self, backend: str, params):
        if backend == "jax":
            return None
        have_torch = importlib.util.find_spec("torch") is not None
        why = torch_unsupported_reason(self.net)
        if backend == "auto":
            if why is not None or not have_torch or jax.default_backend() != "gpu":
                return None
            import torch

            if not torch.cuda.is_available():
                return None
        elif not have_torch:
            raise PipelagError("backend='torch' needs torch: pip install 'pipelag[bench]' (or use backend='jax')")
        elif why is not None:
            raise PipelagError(f"backend='torch' runs chains of dense layers, not {why}; use backend='jax'")
        from pipelag.runtime.torch_backend import TorchChainTick

        return TorchChainTick(self.net, params)

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

        self._tick_fn = tick  # unjitted, for benchmarks that scan it
        return jax.jit(tick, donate_argnums=(1,))  # the old state buffer is reused for the new one
