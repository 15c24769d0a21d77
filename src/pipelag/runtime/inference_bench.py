"""Inference speed-up of pipelined execution (paper §5.4, Fig. 1a): the problem, the CPU/JAX variants, timing.

The network is pipelag's own N-layer pipelined MLP, ``build_network("mlp", (H,), H, num_layers=N,
hidden=H)``: N−1 hidden layers H→H with ReLU and a linear head H→H. With the state h (h[i] = the
output layer i stored last tick) and the observation o, one pipelined tick is::

    new_h[i] = act_i(x_i @ W_i + b_i),   x_0 = o,  x_i = h[i-1],   act_i = relu (i < N-1), identity (head)

and the sequential (instantaneous) forward it replaces is ``x <- act_i(x @ W_i + b_i)`` for i = 0..N−1.
The references are the core's own code: ``PipelinedNetwork.step`` (tick) and an instantaneous
network's ``output`` (forward) on the same parameters. Every variant is checked against them on
random inputs before it is timed; a variant that disagrees is reported as wrong and not timed.

This module imports numpy and JAX only; torch variants live in :mod:`pipelag.runtime.torch_tick`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: relative error ‖out − ref‖/‖ref‖ a float32 variant must stay under (TF32 or bf16 would not)
TOLERANCE = 1e-4


# ---------------------------------------------------------------------------------------- problem
@dataclass
class Problem:
    depth: int
    hidden: int
    batch: int
    net: Any  # the pipelined PipelinedNetwork
    inst: Any  # the instantaneous network with the same layers
    params: dict
    names: list[str]
    W: np.ndarray  # [N, H, H] (in, out), float32
    b: np.ndarray  # [N, H]
    obs: np.ndarray  # [B, H]
    h0: np.ndarray  # [N, B, H]: the stored outputs at the start of the checked tick
    state0: dict  # h0 as the core's state pytree
    ref_tick: np.ndarray  # [N, B, H]: the core's reference tick (PipelinedNetwork.step)
    ref_forward: np.ndarray  # [B, H]: the core's instantaneous forward

    @property
    def weight_bytes(self) -> int:
        return int(self.W.nbytes + self.b.nbytes)

    @property
    def fused_groups(self) -> list[int]:
        """Sizes of the batched groups the core's fused plan runs per tick (e.g. [99, 1])."""
        return [len(g) for wave in self.net._fused_plan for g in wave]


def make_problem(depth: int, hidden: int, batch: int, seed: int = 0) -> Problem:
    import jax
    import jax.numpy as jnp

    from pipelag.networks import build_network

    net = build_network("mlp", (hidden,), hidden, num_layers=depth, hidden=hidden)
    inst = build_network("mlp", (hidden,), hidden, num_layers=depth, hidden=hidden, instantaneous=True)
    params = net.init(jax.random.PRNGKey(seed))
    names = [n.name for n in net.graph.nodes]
    W = np.stack([np.asarray(params[n]["kernel"], np.float32) for n in names])
    b = np.stack([np.asarray(params[n]["bias"], np.float32) for n in names])
    rng = np.random.default_rng(seed + 1)
    # biases are zero at init: give them values so a variant that drops them is caught
    b = (0.1 * rng.standard_normal(b.shape)).astype(np.float32)
    params = {n: {"kernel": jnp.asarray(W[i]), "bias": jnp.asarray(b[i])} for i, n in enumerate(names)}
    obs = rng.standard_normal((batch, hidden)).astype(np.float32)
    h0 = rng.standard_normal((depth, batch, hidden)).astype(np.float32)
    state0 = net.zero_state((batch,))
    state0["act"] = {n: jnp.asarray(h0[i]) for i, n in enumerate(names)}
    _, new = net.step(params, state0, jnp.asarray(obs))
    ref_tick = np.stack([np.asarray(new["act"][n]) for n in names])
    ref_forward = np.asarray(inst.output(params, inst.zero_state((batch,)), jnp.asarray(obs)))
    return Problem(depth, hidden, batch, net, inst, params, names, W, b, obs, h0, state0, ref_tick, ref_forward)


def numpy_reference(prob: Problem) -> tuple[np.ndarray, np.ndarray]:
    """The tick and the forward in float64 numpy, straight from the formula in the module docstring."""
    W, b, N = prob.W.astype(np.float64), prob.b.astype(np.float64), prob.depth
    xs = np.concatenate([prob.obs[None], prob.h0[:-1]]).astype(np.float64)
    tick = np.einsum("lbi,lio->lbo", xs, W) + b[:, None]
    tick[: N - 1] = np.maximum(tick[: N - 1], 0)
    x = prob.obs.astype(np.float64)
    for i in range(N):
        x = x @ W[i] + b[i]
        if i < N - 1:
            x = np.maximum(x, 0)
    return tick, x


def rel_err(out, ref) -> float:
    out = np.asarray(out, np.float64)
    ref = np.asarray(ref, np.float64)
    if out.shape != ref.shape:
        return math.inf
    if not np.all(np.isfinite(out)):
        return math.inf
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


# ---------------------------------------------------------------------------------------- variants
@dataclass
class Variant:
    """One way of computing a tick (or, for ``kind == "forward"``, a sequential forward).

    ``check()`` runs it once from the problem's inputs and returns what it computed;
    ``run`` is the callable that is timed (``units_per_call`` ticks/forwards per call);
    ``timer`` is "host" (perf_counter, the callable waits for its result), or "cuda" (device events).
    """

    method: str
    kind: str  # "tick" | "forward"
    check: Callable[[], np.ndarray]
    run: Callable[[], Any]
    units_per_call: int = 1
    timer: str = "host"
    note: str = ""
    close: Callable[[], None] | None = None
    peek: Callable[[], np.ndarray] | None = None  # the timed path's current state (tests)


# numpy -------------------------------------------------------------------------------------------
def _np_forward(W, b, x):
    n = len(W)
    for i in range(n):
        x = x @ W[i]
        x += b[i]
        if i < n - 1:
            np.maximum(x, 0, out=x)
    return x


def numpy_sequential(prob: Problem) -> Variant:
    W, b, obs = prob.W, prob.b, prob.obs
    return Variant("numpy-seq", "forward", lambda: _np_forward(W, b, obs.copy()),
                   lambda: _np_forward(W, b, obs.copy()))


class _NumpyTick:
    """Ping-pong buffers buf[0] = observation, buf[1:] = layer outputs; one tick reads src, writes dst."""

    def __init__(self, prob: Problem, threads: int = 1):
        self.W, self.b, self.obs, self.n = prob.W, prob.b[:, None, :], prob.obs, prob.depth
        self.bufs = [np.empty((self.n + 1, prob.batch, prob.hidden), np.float32) for _ in range(2)]
        self.reset(prob.h0)
        self.threads = threads
        n = self.n
        bounds = np.linspace(0, n, min(threads, n) + 1).round().astype(int)
        self.chunks = [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def reset(self, h0):
        self.bufs[0][0] = self.obs
        self.bufs[0][1:] = h0
        self.bufs[1][:] = np.nan
        self.cur = 0

    def _layers(self, src, dst, lo, hi):
        # numpy's matmul releases the GIL, so chunks run in parallel on several cores
        np.matmul(src[lo:hi], self.W[lo:hi], out=dst[lo + 1:hi + 1])
        dst[lo + 1:hi + 1] += self.b[lo:hi]
        top = min(hi, self.n - 1)  # the head (last layer) stays linear
        if top > lo:
            np.maximum(dst[lo + 1:top + 1], 0, out=dst[lo + 1:top + 1])

    def tick(self):
        src, dst = self.bufs[self.cur], self.bufs[1 - self.cur]
        if self.pool is None:
            self._layers(src, dst, 0, self.n)
        else:
            for f in [self.pool.submit(self._layers, src, dst, lo, hi) for lo, hi in self.chunks]:
                f.result()
        dst[0] = self.obs
        self.cur = 1 - self.cur
        return dst

    def check(self, h0):
        self.reset(h0)
        return self.tick()[1:].copy()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()


def numpy_fused(prob: Problem) -> Variant:
    t = _NumpyTick(prob)
    return Variant("numpy-fused", "tick", lambda: t.check(prob.h0), t.tick)


def numpy_threads(prob: Problem, threads: int = 2) -> Variant:
    t = _NumpyTick(prob, threads)
    return Variant(f"numpy-threads{threads}", "tick", lambda: t.check(prob.h0), t.tick,
                   note=f"{len(t.chunks)} chunks of layers on a pool of {threads} threads", close=t.close)


# JAX ---------------------------------------------------------------------------------------------
def _stack_act(prob: Problem, state) -> np.ndarray:
    return np.stack([np.asarray(state["act"][n]) for n in prob.names])


def scan_observations(prob: Problem, ticks: int) -> np.ndarray:
    """[ticks, B, H]: the observations of the scanned (timed) JAX ticks, o_k = o + 0.01·k.

    With one fixed observation XLA hoists whatever depends only on it out of the loop (with N = 1 the
    whole tick), and the loop would time nothing.
    """
    k = np.arange(ticks, dtype=np.float32)[:, None, None]
    return (prob.obs[None] + 0.01 * k).astype(np.float32)


def jax_variants(prob: Problem, scan: int = 64, per_call: bool = True, reference: bool = True,
                 unroll: int = 1) -> list[Variant]:
    """The core's own code paths under ``jax.jit``.

    * ``jax-fused``: ``PipelinedNetwork.fused_step`` with ``fuse_params`` (one batched op per group of
      the fused plan), ``scan`` ticks chained in one ``lax.scan`` per call: device time per tick;
    * ``jax-fused-call``: one jitted ``fused_step`` per call, waited for: what a Python control loop pays;
    * ``jax-ref``: ``PipelinedNetwork.step`` (layer by layer) scanned the same way;
    * ``jax-seq`` / ``jax-seq-call``: the instantaneous network's forward, scanned (each forward's
      input is o + the previous forward's output, so forwards cannot be merged) or one per call.

    ``unroll`` unrolls the scan of ``jax-fused`` (straight-line code: no per-iteration loop overhead,
    which is ~13 µs per iteration on the H100 machine); ``jax-ref``/``jax-seq`` keep the loop.
    """
    import jax
    import jax.numpy as jnp

    net, inst = prob.net, prob.inst
    params = jax.device_put(prob.params)
    fparams = jax.device_put(net.fuse_params(params))
    obs = jax.device_put(jnp.asarray(prob.obs))
    state0 = jax.device_put(prob.state0)
    zero_inst = jax.device_put(inst.zero_state((prob.batch,)))
    out: list[Variant] = []

    obs_seq = jax.device_put(jnp.asarray(scan_observations(prob, scan)))

    def scanned(step, p, unroll):
        def f(p, s, os):  # a new observation every tick: nothing in the loop body is loop-invariant
            return jax.lax.scan(lambda c, o: (step(p, c, o)[1], None), s, os, unroll=unroll)[0]
        return jax.jit(f)

    def tick_variant(method, step, p, note, unroll=1):
        one = jax.jit(step)
        many = scanned(step, p, unroll)
        holder = {"s": state0}

        def run():
            holder["s"] = many(p, holder["s"], obs_seq)
            jax.block_until_ready(holder["s"]["act"][prob.names[-1]])

        return Variant(method, "tick", lambda: _stack_act(prob, one(p, state0, obs)[1]), run,
                       units_per_call=scan, note=note, peek=lambda: _stack_act(prob, holder["s"]))

    groups = "+".join(str(g) for g in prob.fused_groups)
    out.append(tick_variant("jax-fused", net.fused_step, fparams,
                            f"core fused_step, batched groups of {groups} layers, {scan} ticks per lax.scan"
                            + (f" unrolled {unroll}x" if unroll > 1 else ""), unroll=unroll))
    if per_call:
        one = jax.jit(net.fused_step)
        holder = {"s": state0}

        def run_call():
            head, holder["s"] = one(fparams, holder["s"], obs)
            head.block_until_ready()

        out.append(Variant("jax-fused-call", "tick", lambda: _stack_act(prob, one(fparams, state0, obs)[1]),
                           run_call, note="one jitted fused_step per call, waited for"))
    if reference:
        out.append(tick_variant("jax-ref", net.step, params,
                                f"core reference step (layer by layer), {scan} ticks per lax.scan"))

    fwd = jax.jit(lambda p, o: inst.output(p, zero_inst, o))

    def chain(p, x0):
        return jax.lax.scan(lambda x, _: (x0 + inst.output(p, zero_inst, x), None), x0, None, length=scan)[0]

    chain_j = jax.jit(chain)
    out.append(Variant("jax-seq", "forward", lambda: np.asarray(fwd(params, obs)),
                       lambda: chain_j(params, obs).block_until_ready(), units_per_call=scan,
                       note=f"instantaneous forward, {scan} chained forwards per lax.scan"))
    if per_call:
        out.append(Variant("jax-seq-call", "forward", lambda: np.asarray(fwd(params, obs)),
                           lambda: fwd(params, obs).block_until_ready(), note="one jitted forward per call"))
    return out


def runtime_variants(prob: Problem, scan: int = 64, unroll: int = 1, backends=("jax",)) -> list[Variant]:
    """The deployment runtime (batch 1).

    * ``runtime-act`` (JAX backend) / ``runtime-act-torch`` (torch backend: CUDA graph, Triton): the
      closed loop, numpy obs in, numpy action out, one tick per ``act``;
    * ``runtime-scan``: the JAX backend's compiled tick (state as one flat buffer), ``scan`` ticks per
      ``lax.scan``: its device time.
    """
    from pipelag.runtime.policy import PipelinedPolicy

    if prob.batch != 1:
        raise ValueError("the runtime acts at batch 1")
    obs = prob.obs[0]
    out = []
    for backend in backends:
        pol = PipelinedPolicy(prob.net, prob.params, backend=backend)

        def check(pol=pol):
            pol.reset()
            pol.set_state(prob.state0)
            pol.act(obs)
            return _stack_act(prob, pol.state())[:, None, :]

        out.append(Variant("runtime-act" + ("" if backend == "jax" else f"-{backend}"), "tick", check,
                           lambda pol=pol: pol.act(obs),
                           note=f"PipelinedPolicy.act, {pol.describe_backend()}: host obs in, host action out"))
        if backend == "jax":
            out.append(_runtime_scan(prob, pol, scan, unroll))
    return out


def _runtime_scan(prob: Problem, pol, scan: int, unroll: int) -> Variant:
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    tick, fp, o = pol._tick_fn, pol._fparams, jnp.asarray(prob.obs[0])
    os = jax.device_put(jnp.asarray(scan_observations(prob, scan)[:, 0]))
    many = jax.jit(lambda p, f: jax.lax.scan(lambda c, ob: (tick(p, c, ob, None)[1], None), f, os,
                                             unroll=unroll)[0])
    flat0 = ravel_pytree(jax.tree.map(lambda a: a[0], prob.state0))[0]
    holder = {"f": flat0}

    def run():
        holder["f"] = many(fp, holder["f"])
        holder["f"].block_until_ready()

    def check_scan():
        f = jax.jit(lambda p, f: tick(p, f, o, None)[1])(fp, flat0)
        return _stack_act(prob, pol._unravel(f))[:, None, :]

    return Variant("runtime-scan", "tick", check_scan, run, units_per_call=scan,
                   note=f"the runtime's compiled tick (flat state), {scan} ticks per lax.scan"
                   + (f" unrolled {unroll}x" if unroll > 1 else ""))


def jax_overheads(repeats: int = 5) -> dict:
    """µs of a trivial jitted call waited for, and of one iteration of a trivial lax.scan loop."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones(8)
    inc = jax.jit(lambda x: x + 1)
    loop = jax.jit(lambda x: jax.lax.scan(lambda c, _: (c * 1.0001 + 1, None), x, None, length=256)[0])
    call = statistics.median(time_host(lambda: inc(x).block_until_ready(), repeats, 0.02)) * 1e6
    it = statistics.median(time_host(lambda: loop(x).block_until_ready(), repeats, 0.02)) * 1e6 / 256
    return {"jax_call_us": call, "jax_scan_iteration_us": it}


def runtime_breakdown(prob: Problem, repeats: int = 5) -> dict:
    """Where the JAX backend's ``act`` spends its time (µs): the jitted tick alone, with a host
    observation, with the action copied back, and the whole ``act``."""
    import jax.numpy as jnp

    from pipelag.runtime.policy import PipelinedPolicy

    pol = PipelinedPolicy(prob.net, prob.params, backend="jax")
    obs = prob.obs[0]
    out = {"act": statistics.median(time_host(lambda: pol.act(obs), repeats, 0.02)) * 1e6}
    fp, dev_obs = pol._fparams, jnp.asarray(obs)
    holder = {"f": pol._flat}  # the tick donates its state: from here on only the holder's copy is live
    pol._flat = None

    def tick_dev():
        _, holder["f"] = pol._tick(fp, holder["f"], dev_obs, None)
        holder["f"].block_until_ready()

    def tick_host():
        _, holder["f"] = pol._tick(fp, holder["f"], obs, None)
        holder["f"].block_until_ready()

    def tick_host_action():
        a, holder["f"] = pol._tick(fp, holder["f"], obs, None)
        np.asarray(a)

    for name, fn in (("tick, device obs", tick_dev), ("tick, host obs", tick_host),
                     ("tick, host obs, action to host", tick_host_action)):
        out[name] = statistics.median(time_host(fn, repeats, 0.02)) * 1e6
    return out


# ---------------------------------------------------------------------------------------- timing
def time_host(fn: Callable[[], Any], repeats: int = 5, min_time: float = 0.05, warmup: int = 2) -> list[float]:
    """Seconds per call: median-able samples, each over enough calls to last ``min_time``."""
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    n = int(min(max(1, min_time / one), 100_000))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return samples


def copy_bandwidth_host(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Bytes/s of a large numpy copy, counting bytes read plus written."""
    a = np.ones(nbytes // 4, np.float32)
    b = np.empty_like(a)
    samples = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        np.copyto(b, a)
        samples.append(time.perf_counter() - t0)
    return 2 * nbytes / statistics.median(samples[1:])


# ---------------------------------------------------------------------------------------- results
@dataclass
class Row:
    device: str
    hidden: int
    batch: int
    depth: int
    method: str
    kind: str
    us: float | None = None  # median µs per tick (or per forward)
    us_samples: list[float] = field(default_factory=list)
    err: float | None = None
    status: str = "ok"  # ok | wrong | skipped | error
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def measure(variant: Variant, ref: np.ndarray, device: str, prob: Problem, timer: Callable,
            repeats: int, min_time: float, tol: float = TOLERANCE) -> Row:
    row = Row(device, prob.hidden, prob.batch, prob.depth, variant.method, variant.kind, note=variant.note)
    try:
        got = variant.check()
        row.err = rel_err(got, ref)
        if not row.err <= tol:
            row.status = "wrong"
            row.note = (row.note + f"; differs from the core reference (rel err {row.err:.2e} > {tol:g})").lstrip("; ")
            return row
        samples = timer(variant.run, repeats, min_time)
        row.us_samples = [s * 1e6 / variant.units_per_call for s in samples]
        row.us = statistics.median(row.us_samples)
    except Exception as e:  # noqa: BLE001 - a variant failing is a result, not a crash of the sweep
        row.status = "error"
        row.note = (row.note + f"; {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}").lstrip("; ")
    finally:
        if variant.close is not None:
            variant.close()
    return row
