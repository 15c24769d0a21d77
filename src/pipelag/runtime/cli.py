"""``pipelag bench inference``: the inference speed-up of pipelined execution (paper Fig. 1a).

    pipelag bench inference --device cpu --quick                      # a minute on a laptop
    pipelag bench inference --device gpu --json results_gpu.json      # the full GPU sweep
    pipelag bench report results_gpu.json results_cpu.json            # docs/inference.md + figures

Registered into the main CLI by ``pipelag.cli`` (``add_bench_parser``). torch is imported only when
torch variants run (``--device gpu``, or ``--torch`` on the CPU); it is the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from pipelag.errors import PipelagError

MAIN_DEPTHS = (1, 2, 3, 5, 10, 20, 30, 50, 75, 100)
OTHER_DEPTHS = (1, 10, 30, 100)
CPU_DEPTHS = (1, 2, 5, 10, 20, 50, 100)


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected integers like 1,10,100 (got {text!r})") from e


def _configs(text: str) -> tuple[tuple[int, int], ...]:
    """'256x1,1024x1,256x64' -> ((256, 1), (1024, 1), (256, 64)): hidden x batch."""
    try:
        out = tuple(tuple(int(v) for v in c.split("x")) for c in text.split(",") if c)
        if not all(len(c) == 2 and min(c) > 0 for c in out):
            raise ValueError
        return out  # type: ignore[return-value]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"configs look like 256x1,1024x1,256x64 (hidden x batch), got {text!r}") from e


def add_bench_parser(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmarks (inference speed-up of pipelined execution)")
    sub = p.add_subparsers(dest="bench_command", required=True)

    q = sub.add_parser("inference", help="time sequential vs pipelined (fused) ticks of deep MLPs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto")
    q.add_argument("--configs", type=_configs, default=None,
                   help="hidden x batch, e.g. 256x1,1024x1,256x64 (first = the main one, every depth)")
    q.add_argument("--depths", type=_ints, default=None, help="depths of the main config")
    q.add_argument("--other-depths", type=_ints, default=None, help="depths of the other configs")
    q.add_argument("--repeats", type=int, default=5, help="timed samples per variant (median reported)")
    q.add_argument("--min-time", type=float, default=None, help="seconds per sample")
    q.add_argument("--scan", type=int, default=None, help="ticks per lax.scan call for the JAX device time")
    q.add_argument("--unroll", type=int, default=None, help="unroll the scan of the fused JAX ticks this much")
    q.add_argument("--graph-ticks", type=int, default=8, help="ticks per CUDA graph replay (even)")
    q.add_argument("--threads", type=int, default=2, help="threads of the multi-threaded numpy tick")
    q.add_argument("--torch", action="store_true", help="on the CPU, also time the torch variants")
    q.add_argument("--time-budget", type=float, default=None, help="stop starting new depths after this many s")
    q.add_argument("--quick", action="store_true", help="few depths, short samples (a smoke run)")
    q.add_argument("--json", type=Path, default=None, help="write the results here (after every depth)")
    q.add_argument("--report", type=Path, default=None, help="also write the Markdown report (e.g. docs/inference.md)")
    q.add_argument("--figures", type=Path, default=Path("docs/figures"), help="folder for the PNG plots")
    q.set_defaults(func=run_bench)

    r = sub.add_parser("report", help="write docs/inference.md and its figures from saved results")
    r.add_argument("results", type=Path, nargs="+", help="JSON files written by `bench inference --json`")
    r.add_argument("--out", type=Path, default=Path("docs/inference.md"))
    r.add_argument("--figures", type=Path, default=Path("docs/figures"))
    r.set_defaults(func=run_report)


def run_report(args) -> int:
    from pipelag.runtime.report import write_report

    results = []
    for path in args.results:
        if not path.is_file():
            raise PipelagError(f"no results file {path}; make one with `pipelag bench inference --json {path}`")
        try:
            results.append(json.loads(path.read_text()))
        except json.JSONDecodeError as e:
            raise PipelagError(f"{path} is not a results file ({e}); re-run `pipelag bench inference`") from e
    write_report(results, args.out, args.figures)
    print(f"wrote {args.out} and figures in {args.figures}")
    return 0


def run_bench(args) -> int:
    if args.graph_ticks < 2 or args.graph_ticks % 2:
        raise PipelagError(f"--graph-ticks must be even and ≥ 2 (ping-pong buffers), got {args.graph_ticks}")
    if args.repeats < 1 or (args.scan or 1) < 1 or args.threads < 1 or (args.unroll or 1) < 1:
        raise PipelagError("--repeats, --scan, --unroll and --threads must be ≥ 1")
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU with torch
    device = args.device
    if device == "auto":
        device = "gpu" if _have_cuda() else "cpu"
    if device == "gpu" and not _have_cuda():
        raise PipelagError("--device gpu needs torch with CUDA and a GPU (pip install 'pipelag[bench]'); "
                           "use --device cpu here")
    if args.quick:
        configs = args.configs or ((64, 1),)
        depths = args.depths or (1, 5, 20)
        other = args.other_depths or (1, 5)
        min_time = args.min_time or 0.005
    else:
        configs = args.configs or (((256, 1), (1024, 1), (256, 64)) if device == "gpu" else ((256, 1), (256, 64)))
        depths = args.depths or (MAIN_DEPTHS if device == "gpu" else CPU_DEPTHS)
        other = args.other_depths or (OTHER_DEPTHS if device == "gpu" else (1, 10, 100))
        min_time = args.min_time or (0.02 if device == "gpu" else 0.05)
    scan = args.scan or (16 if device == "gpu" else 64)
    unroll = args.unroll or (scan if device == "gpu" else 1)
    if scan % unroll:
        raise PipelagError(f"--unroll ({unroll}) must divide --scan ({scan})")
    result = sweep(device, configs, depths, other, repeats=args.repeats, min_time=min_time, scan=scan, unroll=unroll,
                   graph_ticks=args.graph_ticks, threads=args.threads, with_torch=args.torch or device == "gpu",
                   json_path=args.json, time_budget=args.time_budget)
    if args.report is not None:
        from pipelag.runtime.report import write_report

        write_report([result], args.report, args.figures)
        print(f"wrote {args.report}")
    bad = [r for r in result["rows"] if r["status"] in ("wrong",)]
    return 1 if bad else 0


def _have_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


# ----------------------------------------------------------------------------------------- sweep
def sweep(device: str, configs, depths, other_depths, *, repeats: int, min_time: float, scan: int, unroll: int = 1,
          graph_ticks: int, threads: int, with_torch: bool, json_path: Path | None = None,
          time_budget: float | None = None, log=print) -> dict:
    import jax

    from pipelag.runtime import inference_bench as ib

    t_start = time.perf_counter()
    gpu = device == "gpu"
    tt = None
    if with_torch:
        try:
            from pipelag.runtime import torch_tick as tt
        except ImportError as e:
            raise PipelagError("torch variants need torch: pip install 'pipelag[bench]'") from e
    if gpu:
        jax.config.update("jax_default_matmul_precision", "highest")  # fp32 everywhere (no TF32)
        if jax.default_backend() != "gpu":
            log(f"warning: JAX runs on {jax.default_backend()}, not the GPU: JAX rows are CPU times")
        bw = tt.copy_bandwidth_cuda()
        dev_name = tt.device_name()
        timer = tt.time_cuda
    else:
        bw = ib.copy_bandwidth_host()
        dev_name = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
        timer = None
        if tt is not None:
            import torch

            torch.set_num_threads(1)
    meta = {"device": device, "device_name": dev_name, "copy_bandwidth_GBps": bw / 1e9,
            "jax": jax.__version__, "jax_backend": jax.default_backend(), "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_count": os.cpu_count(), "scan": scan, "unroll": unroll,
            "graph_ticks": graph_ticks, "repeats": repeats, "min_time": min_time, "argv": sys.argv,
            "configs": [list(c) for c in configs], "skipped": []}
    if tt is not None:
        import torch

        meta["torch"] = torch.__version__
    result = {"meta": meta, "rows": []}
    meta.update(ib.jax_overheads(repeats))
    log(f"# {dev_name}: copy bandwidth {bw / 1e9:.0f} GB/s (read + write); JAX call {meta['jax_call_us']:.1f} µs, "
        f"scan iteration {meta['jax_scan_iteration_us']:.2f} µs")
    triton_cfg: dict[tuple, tuple] = {}
    for ci, (hidden, batch) in enumerate(configs):
        for depth in (depths if ci == 0 else other_depths):
            if time_budget is not None and time.perf_counter() - t_start > time_budget:
                meta["skipped"].append(f"H={hidden} B={batch} N={depth}: time budget")
                log(f"skip H={hidden} B={batch} N={depth}: time budget")
                continue
            prob = ib.make_problem(depth, hidden, batch)
            rows = [ib.Row(dev_name, hidden, batch, depth, "floor", "tick", us=prob.weight_bytes / bw * 1e6,
                           note=f"{prob.weight_bytes / 2**20:.1f} MiB of weights / {bw / 1e9:.0f} GB/s")]
            if ci == 0 and batch == 1 and depth == max(depths):
                meta["runtime_breakdown_us"] = {"depth": depth, **ib.runtime_breakdown(prob, repeats)}
                log(f"  runtime act breakdown: {meta['runtime_breakdown_us']}")
            for v, ref in _variants(prob, gpu, tt, scan, unroll, graph_ticks, threads, main=ci == 0, log=log):
                if isinstance(v, ib.Row):  # could not be built
                    v.device = dev_name
                    rows.append(v)
                    continue
                t = timer if (v.timer == "cuda") else ib.time_host
                rows.append(ib.measure(v, ref, dev_name, prob, t, repeats, min_time))
            if gpu and batch == 1 and tt is not None:
                rows.append(_triton(prob, tt, triton_cfg, graph_ticks, repeats, min_time, dev_name, log))
            for r in rows:
                result["rows"].append(r.to_dict())
            log(_line(prob, rows))
            if json_path is not None:
                json_path.parent.mkdir(parents=True, exist_ok=True)
                json_path.write_text(json.dumps(result, indent=1))
    if gpu and tt is not None:
        _sparse_graph_probe(result, tt, configs, depths, graph_ticks, repeats, min_time, dev_name, log)
    meta["seconds"] = time.perf_counter() - t_start
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=1))
    return result


def _variants(prob, gpu: bool, tt, scan, unroll, graph_ticks, threads, *, main: bool, log):
    """(variant, reference) pairs for one problem; a builder that fails gives rows that say why."""
    from pipelag.runtime import inference_bench as ib

    tick_ref, fwd_ref = prob.ref_tick, prob.ref_forward
    builders = []
    if not gpu:
        builders += [(["numpy-seq"], lambda: [ib.numpy_sequential(prob)]),
                     (["numpy-fused"], lambda: [ib.numpy_fused(prob)]),
                     ([f"numpy-threads{threads}"], lambda: [ib.numpy_threads(prob, threads)])]
    if tt is not None:
        dev = "cuda" if gpu else "cpu"
        builders += [(["torch-seq-eager", "torch-seq-graph" if gpu else None],
                      lambda: tt.sequential_variants(prob, dev, graph_ticks)),
                     (["torch-bmm-eager", "torch-bmm-graph" if gpu else None],
                      lambda: tt.bmm_variants(prob, dev, graph_ticks)),
                     (["torch-bd-dense-eager", "torch-bd-dense-graph" if gpu else None],
                      lambda: tt.dense_variants(prob, dev, graph_ticks)),
                     (["torch-bd-sparse-eager"], lambda: tt.sparse_variants(prob, dev, graph_ticks, graphs=False))]
    builders.append((["jax-fused"], lambda: ib.jax_variants(prob, scan=scan, per_call=True, reference=main,
                                                            unroll=unroll)))
    if prob.batch == 1:
        backends = ("jax", "torch") if gpu else ("jax",)
        builders.append((["runtime-act", "runtime-scan"], lambda: ib.runtime_variants(prob, scan, unroll, backends)))
    for names, build in builders:
        try:
            vs = build()
        except Exception as e:  # noqa: BLE001 - e.g. the dense block-diagonal matrix over its memory cap
            why = f"{type(e).__name__}: {e}"
            log(f"  (not built: {why})")
            for name in names:
                if name is not None:
                    yield ib.Row("", prob.hidden, prob.batch, prob.depth, name, "tick", status="skipped",
                                 note=why[:200]), None
            continue
        for v in vs:
            yield v, (tick_ref if v.kind == "tick" else fwd_ref)


def _triton(prob, tt, cache, graph_ticks, repeats, min_time, dev_name, log):
    """The fastest Triton config for this problem (every config tried; compiled once per hidden size)."""
    from pipelag.runtime import inference_bench as ib

    configs = list(tt.TRITON_CONFIGS)
    best, last = None, None
    for cfg in configs:
        try:
            v = [x for x in tt.triton_variants(prob, "cuda", graph_ticks, config=cfg) if x.method == "triton-graph"][0]
        except Exception as e:  # noqa: BLE001 - no triton, or a config that does not compile
            last = ib.Row(dev_name, prob.hidden, prob.batch, prob.depth, "triton-graph", "tick", status="error",
                          note=f"{type(e).__name__}: {str(e)[:200]}")
            continue
        last = ib.measure(v, prob.ref_tick, dev_name, prob, tt.time_cuda, repeats, min_time)
        if last.status == "ok" and (best is None or last.us < best[1].us):
            best = (cfg, last)
    if best is None:
        return last
    cache[(prob.hidden, prob.depth)] = best[0]
    return best[1]


def _sparse_graph_probe(result, tt, configs, depths, graph_ticks, repeats, min_time, dev_name, log):
    """Last (a failed capture can poison the CUDA context): can the paper's sparse tick be graph-captured?"""
    from pipelag.runtime import inference_bench as ib

    hidden, batch = configs[0]
    for depth in sorted({max(depths), 10}):
        try:
            prob = ib.make_problem(depth, hidden, batch)
            v = [x for x in tt.sparse_variants(prob, "cuda", graph_ticks, graphs=True)
                 if x.method.endswith("graph")][0]
            row = ib.measure(v, prob.ref_tick, dev_name, prob, tt.time_cuda, repeats, min_time)
        except Exception as e:  # noqa: BLE001
            row = ib.Row(dev_name, hidden, batch, depth, "torch-bd-sparse-graph", "tick", status="error",
                         note=f"{type(e).__name__}: {str(e)[:200]}")
        result["rows"].append(row.to_dict())
        log(f"  sparse graph N={depth}: {row.status} {row.us} {row.note}")


def _line(prob, rows) -> str:
    parts = []
    for r in rows:
        if r.status == "ok":
            parts.append(f"{r.method}={r.us:.1f}")
        else:
            parts.append(f"{r.method}={r.status.upper()}")
    return f"H={prob.hidden} B={prob.batch} N={prob.depth}: " + " ".join(parts)
