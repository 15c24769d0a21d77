"""The inference benchmark computes the right function in every variant, and reports it honestly."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pipelag.errors import PipelagError
from pipelag.runtime import inference_bench as ib

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_TRITON = importlib.util.find_spec("triton") is not None
NO_TORCH = "torch is not installed (the `bench` extra): pip install torch==2.13.0 for the CPU build"


@pytest.fixture(scope="module", params=[(1, 1), (2, 3), (4, 1)], ids=lambda p: f"N{p[0]}-B{p[1]}")
def prob(request):
    depth, batch = request.param
    return ib.make_problem(depth, 16, batch, seed=depth)


def _ref(prob, v):
    return prob.ref_tick if v.kind == "tick" else prob.ref_forward


def _assert_matches(prob, variants):
    assert variants
    for v in variants:
        got = v.check()
        err = ib.rel_err(got, _ref(prob, v))
        assert err <= ib.TOLERANCE, f"{v.method}: rel err {err}"
        v.run()  # the timed path runs too
        if v.close:
            v.close()


def test_core_reference_is_the_documented_tick(prob):
    tick, forward = ib.numpy_reference(prob)
    assert ib.rel_err(prob.ref_tick, tick) < 1e-5
    assert ib.rel_err(prob.ref_forward, forward) < 1e-5
    # the core's fused plan runs every layer of this MLP (head included) as one batched op
    assert prob.fused_groups == [prob.depth]


def test_numpy_variants_match_reference(prob):
    _assert_matches(prob, [ib.numpy_sequential(prob), ib.numpy_fused(prob), ib.numpy_threads(prob, 2)])


def test_jax_variants_match_reference(prob):
    vs = ib.jax_variants(prob, scan=4, unroll=2)
    assert {v.method for v in vs} == {"jax-fused", "jax-fused-call", "jax-ref", "jax-seq", "jax-seq-call"}
    _assert_matches(prob, vs)


def test_runtime_variant_matches_reference(prob):
    if prob.batch != 1:
        with pytest.raises(ValueError):
            ib.runtime_variants(prob)
        return
    backends = ("jax", "torch") if HAS_TORCH else ("jax",)
    vs = ib.runtime_variants(prob, scan=4, unroll=2, backends=backends)
    assert {v.method for v in vs} == {"runtime-act", "runtime-scan"} | ({"runtime-act-torch"} if HAS_TORCH else set())
    _assert_matches(prob, vs)


def test_scanned_ticks_see_a_new_observation_every_tick():
    """With N = 1 a tick depends only on o_t: a loop over one fixed observation would be hoisted."""
    import jax

    prob = ib.make_problem(1, 8, 2)
    obs = ib.scan_observations(prob, 4)
    assert obs.shape == (4, 2, 8) and len({o.tobytes() for o in obs}) == 4
    v = [x for x in ib.jax_variants(prob, scan=4, per_call=False, reference=False) if x.method == "jax-fused"][0]
    v.run()
    expect = prob.net.step(prob.params, prob.state0, jax.numpy.asarray(obs[-1]))[1]
    np.testing.assert_allclose(v.peek(), ib._stack_act(prob, expect), rtol=1e-5, atol=1e-6)


def test_scanned_jax_ticks_chain_like_repeated_steps():
    """The timed path (lax.scan of fused ticks) computes what stepping the core tick by tick gives."""
    import jax.numpy as jnp

    prob = ib.make_problem(3, 8, 1)
    v = [x for x in ib.jax_variants(prob, scan=5, per_call=False, reference=False) if x.method == "jax-fused"][0]
    v.run()  # 5 ticks from state0, one new observation each
    state = prob.state0
    for o in ib.scan_observations(prob, 5):
        _, state = prob.net.step(prob.params, state, jnp.asarray(o))
    np.testing.assert_allclose(v.peek(), ib._stack_act(prob, state), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_variants_match_reference(prob):
    from pipelag.runtime import torch_tick as tt

    vs = (tt.sequential_variants(prob, "cpu") + tt.bmm_variants(prob, "cpu") + tt.dense_variants(prob, "cpu")
          + tt.sparse_variants(prob, "cpu"))
    assert {v.method for v in vs} == {"torch-seq-eager", "torch-bmm-eager", "torch-bd-dense-eager",
                                      "torch-bd-sparse-eager"}
    _assert_matches(prob, vs)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_block_diagonal_csr_is_the_block_diagonal():
    import torch

    from pipelag.runtime.torch_tick import _block_diag_csr

    W = torch.randn(3, 4, 4)
    dense = _block_diag_csr(W).to_dense()
    assert torch.equal(dense, torch.block_diag(*[w.T for w in W]))


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_dense_refuses_matrices_over_the_cap(monkeypatch):
    from pipelag.runtime import torch_tick as tt

    monkeypatch.setitem(tt.DENSE_CAP_BYTES, "cpu", 1000)
    with pytest.raises(MemoryError, match="cap"):
        tt.dense_variants(ib.make_problem(2, 16, 1), "cpu")


@pytest.mark.skipif(not (HAS_TORCH and HAS_TRITON), reason="needs torch and triton (run in Triton's CPU interpreter)")
def test_triton_kernel_matches_reference_in_interpreter():
    code = textwrap.dedent("""
        from pipelag.runtime import inference_bench as ib, torch_tick as tt
        for depth in (1, 3):
            prob = ib.make_problem(depth, 32, 1, seed=depth)
            for v in tt.triton_variants(prob, "cpu", config=(16, 16, 1)):
                err = ib.rel_err(v.check(), prob.ref_tick)
                assert err <= ib.TOLERANCE, (depth, err)
        print("ok")
    """)
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


# ---------------------------------------------------------------------------- the check can fail
def _broken(prob, how):
    t = ib._NumpyTick(prob)

    def check():
        out = t.check(prob.h0)
        if how == "relu-head":
            out[-1] = np.maximum(out[-1], 0)
        elif how == "no-bias":
            out -= prob.b[:, None, :]
        elif how == "stale-obs":  # layer 0 reads last tick's observation slot (zeros) instead of o_t
            out[0] = np.maximum(prob.b[0], 0) if prob.depth > 1 else prob.b[0]
        elif how == "nan":
            out[0, 0, 0] = np.nan
        return out

    return ib.Variant(f"broken-{how}", "tick", check, t.tick)


@pytest.mark.parametrize("how", ["relu-head", "no-bias", "stale-obs", "nan"])
def test_a_variant_that_computes_something_else_is_reported_wrong_and_not_timed(how):
    prob = ib.make_problem(3, 16, 2, seed=7)
    timed = []
    row = ib.measure(_broken(prob, how), prob.ref_tick, "cpu", prob,
                     lambda fn, r, m: timed.append(1) or [1.0], repeats=1, min_time=0.001)
    assert row.status == "wrong" and row.us is None and not timed
    assert "differs from the core reference" in row.note


def test_a_variant_that_raises_is_an_error_row():
    prob = ib.make_problem(2, 8, 1)

    def boom():
        raise RuntimeError("no such device")

    row = ib.measure(ib.Variant("x", "tick", boom, boom), prob.ref_tick, "cpu", prob, ib.time_host, 1, 0.001)
    assert row.status == "error" and "no such device" in row.note


def test_overhead_probes_report_positive_times():
    over = ib.jax_overheads(repeats=1)
    assert over["jax_call_us"] > 0 and over["jax_scan_iteration_us"] > 0
    parts = ib.runtime_breakdown(ib.make_problem(2, 8, 1), repeats=1)
    assert set(parts) == {"tick, device obs", "tick, host obs", "tick, host obs, action to host", "act"}
    assert all(v > 0 for v in parts.values())


def test_time_host_returns_per_call_seconds():
    import time

    samples = ib.time_host(lambda: time.sleep(0.002), repeats=3, min_time=0.004, warmup=0)
    assert len(samples) == 3 and all(0.0015 < s < 0.05 for s in samples)


# ---------------------------------------------------------------------------- CLI, report, imports
def _parse(argv):
    from pipelag.runtime.cli import add_bench_parser

    p = argparse.ArgumentParser()
    add_bench_parser(p.add_subparsers(dest="command"))
    return p.parse_args(argv)


def test_cli_sweep_writes_verified_results_and_report(tmp_path):
    js, md, figs = tmp_path / "r.json", tmp_path / "inference.md", tmp_path / "fig"
    md.write_text("# hand-written intro\n\nkept text\n")
    args = _parse(["bench", "inference", "--device", "cpu", "--quick", "--configs", "16x1", "--depths", "1,3",
                   "--repeats", "1", "--min-time", "0.001", "--scan", "2", "--json", str(js), "--report", str(md),
                   "--figures", str(figs)])
    assert args.func(args) == 0
    res = json.loads(js.read_text())
    rows = res["rows"]
    assert {r["depth"] for r in rows} == {1, 3}
    assert all(r["status"] == "ok" for r in rows), [r for r in rows if r["status"] != "ok"]
    methods = {r["method"] for r in rows}
    assert {"floor", "numpy-seq", "numpy-fused", "numpy-threads2", "jax-fused", "jax-seq", "runtime-act"} <= methods
    assert all(r["err"] <= ib.TOLERANCE for r in rows if r["method"] != "floor")
    text = md.read_text()
    assert text.startswith("# hand-written intro") and "kept text" in text
    assert "| fused tick: core `fused_step`, JAX jit (device time, lax.scan) |" in text
    assert (figs / "inference_cpu.png").stat().st_size > 1000
    # regenerate: the generated block is replaced, not appended
    rep = _parse(["bench", "report", str(js), "--out", str(md), "--figures", str(figs)])
    assert rep.func(rep) == 0
    assert md.read_text().count("<!-- bench:begin") == 1


def test_cli_rejects_bad_arguments(tmp_path):
    args = _parse(["bench", "inference", "--device", "cpu", "--graph-ticks", "3"])
    with pytest.raises(PipelagError, match="even"):
        args.func(args)
    rep = _parse(["bench", "report", str(tmp_path / "missing.json")])
    with pytest.raises(PipelagError, match="no results file"):
        rep.func(rep)
    with pytest.raises(SystemExit):
        _parse(["bench", "inference", "--configs", "256"])


def test_report_speedups_and_floor_ratio(tmp_path):
    from pipelag.runtime.report import write_report

    def row(method, depth, us, status="ok"):
        return dict(device="x", hidden=8, batch=1, depth=depth, method=method, kind="tick", us=us,
                    us_samples=[us], err=0.0, status=status, note="boom" if status != "ok" else "")

    result = {"meta": {"device": "gpu", "device_name": "Fake GPU", "copy_bandwidth_GBps": 1000, "date": "d",
                       "repeats": 1, "graph_ticks": 8, "scan": 4, "jax": "0", "jax_backend": "gpu"},
              "rows": [row("floor", 10, 2.0), row("torch-seq-graph", 10, 100.0), row("torch-seq-eager", 10, 400.0),
                       row("torch-bmm-graph", 10, 4.0), row("jax-fused", 10, 5.0),
                       row("torch-bd-sparse-eager", 10, None, "wrong")]}
    md = tmp_path / "inference.md"
    write_report([result], md, tmp_path)
    text = md.read_text()
    assert "| fused tick: torch bmm, CUDA graph | 25× |" in text  # 100 / 4, over the fastest sequential
    assert "| fused tick: core `fused_step`, JAX jit (device time, lax.scan) | 20× |" in text
    assert "| best fused tick ÷ memory floor | 2.00 |" in text
    assert "WRONG" in text and "boom" in text


def test_importing_pipelag_never_imports_torch():
    code = ("import sys, pipelag, pipelag.networks, pipelag.runtime, pipelag.runtime.cli, pipelag.runtime.report,"
            " pipelag.runtime.inference_bench, pipelag.cli; pipelag.cli.build_parser();"
            " bad = [m for m in ('torch', 'triton') if m in sys.modules]; print('LOADED', bad); sys.exit(bool(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
