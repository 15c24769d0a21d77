"""``pipelag sweep`` and ``pipelag report``: :func:`add_parsers` registers both on the main CLI's
subparsers (`pipelag sweep`, `pipelag report`)."""

from __future__ import annotations

import argparse
import json
import sys

from pipelag.algorithms.common.cli_args import positive_int


def _fraction(text: str) -> float:
    try:
        x = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--budget must be a number in (0, 1], got {text!r}") from e
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"--budget must be a fraction in (0, 1], got {text!r}")
    return x


def _option(text: str, flag: str = "--set") -> tuple[str, object]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise argparse.ArgumentTypeError(f"{flag} needs KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _budget(args, exp):
    """The runs' budget and options; ``--mujoco`` / ``--env-option`` mistakes are one-line PipelagErrors."""
    from pipelag.errors import PipelagError
    from pipelag.experiments.definitions import MUJOCO_BACKENDS, Budget

    try:
        env_options = tuple(_option(o, "--env-option") for o in args.env_option or ())
    except argparse.ArgumentTypeError as e:
        raise PipelagError(str(e)) from None
    mujoco = args.mujoco
    if mujoco not in MUJOCO_BACKENDS:
        raise PipelagError(f"--mujoco must be one of {', '.join(MUJOCO_BACKENDS)}, got {mujoco!r}")
    if (mujoco != "gym" or env_options) and not exp.has_mujoco:  # nothing they could change: same runs as without
        print(f"note: {exp.name} has no MuJoCo cells; --mujoco and --env-option change nothing", file=sys.stderr)
        mujoco, env_options = "gym", ()
    return Budget(args.budget, args.seeds, tuple(args.set or ()), mujoco, env_options)


def _list(out=print) -> int:
    from pipelag.experiments.definitions import EXPERIMENTS

    for exp in EXPERIMENTS.values():
        out(exp.summary())
    return 0


def _experiment(args):
    from pipelag.experiments.definitions import get_experiment

    exp = get_experiment(args.experiment)
    if args.columns:
        exp = exp.only_columns([c for c in args.columns.split(",") if c.strip()])
    return exp


def cmd_sweep(args) -> int:
    from pipelag.experiments.sweep import check_env_options, sweep

    if args.experiment == "list":
        return _list()
    exp = _experiment(args)
    budget = _budget(args, exp)
    if args.import_runs:
        from pipelag.experiments.importer import import_runs

        n = import_runs(exp, budget, args.out, args.import_runs)
        print(f"imported {n} (run, seed) results into {args.out}/results.jsonl", flush=True)
        return 0
    check_env_options(exp, budget)  # one clear line now, not a failure per run later
    rep = sweep(exp, budget, args.out, trainer=args.trainer,
                backend=args.backend, workers=args.workers, ray_address=args.ray_address,
                gpus_per_run=args.gpus_per_run, dry_run=args.dry_run,
                gpus=tuple(g for g in args.gpus.split(",") if g.strip()), batch=not args.no_batch)
    print(rep.summary(), flush=True)
    return 0 if rep.ok else 1


def cmd_report(args) -> int:
    from pipelag.experiments.report import report

    if args.experiment == "list":
        return _list()
    exp = _experiment(args)
    md, paths = report(exp, _budget(args, exp), args.out, metric=args.metric,
                       plots=not args.no_plots)
    print(md)
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_parsers(subparsers) -> None:
    """Register ``sweep`` and ``report`` on an ``argparse`` subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("experiment", help="table1…table10, fig1b, fig3, fig7, fig11, fig12, or 'list'")
    common.add_argument("--budget", type=_fraction, default=1.0,
                        help="fraction of the paper's training steps (default 1); the grid stays the same")
    common.add_argument("--seeds", type=positive_int, default=None,
                        help="seeds per run (default: the paper's count, mostly 3)")
    common.add_argument("--columns", default=None, metavar="COL[,COL]",
                        help="only these columns of the table, e.g. --columns Breakout (the report is named "
                             "<experiment>-<columns>)")
    common.add_argument("--out", default="runs", help="sweep directory holding results.jsonl (default runs/)")
    common.add_argument("--set", type=_option, action="append", metavar="KEY=VALUE",
                        help="a trainer config field for every run, e.g. --set eval_episodes=10 (JSON values; "
                             "part of the runs' identity, so give the same to report)")
    common.add_argument("--mujoco", default="gym", metavar="{gym,mjx}",
                        help="how the MuJoCo cells run: gym = the gymnasium env on the CPU (default), mjx = its JAX "
                             "port MJX/<Task>-v4, jitted end to end on a GPU (part of the runs' identity)")
    common.add_argument("--env-option", action="append", metavar="KEY=VALUE",
                        help="an env option for every MuJoCo run, e.g. --mujoco mjx --env-option ls_iterations=8 "
                             "--env-option unroll_line_search=true (JSON values; part of the runs' identity)")

    p = subparsers.add_parser("sweep", parents=[common], help="train an experiment's grid (skips finished runs)",
                              description="Train every missing (run, seed) of a paper table/figure. Finished runs "
                                          "are skipped, interrupted ones resumed; each finished run is appended to "
                                          "<out>/results.jsonl at once.")
    p.add_argument("--backend", choices=("local", "process", "ray"), default="local",
                   help="local: one run after another here; process: a subprocess per run (--workers at a "
                        "time); ray: a Ray cluster (pip install 'pipelag[sweep]')")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel runs for --backend process")
    p.add_argument("--gpus", default="", metavar="0,1", help="--backend process: spread the runs over these GPUs "
                   "(each run sees one; the least busy is chosen)")
    p.add_argument("--ray-address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--gpus-per-run", type=float, default=None, help="Ray: GPUs per run (default 1 if the cluster "
                                                                    "has GPUs, else 0)")
    p.add_argument("--dry-run", action="store_true", help="print what would be trained and stop")
    p.add_argument("--no-batch", action="store_true",
                   help="train every run on its own (default: runs that differ only in a batchable option, e.g. "
                        "Figure 12's SAC dropout rates on MJX, train as one vmapped program)")
    p.add_argument("--trainer", default=None, help=argparse.SUPPRESS)  # "module:function" (tests, custom trainers)
    p.add_argument("--import-runs", nargs="+", default=None, metavar="RUN_DIR",
                   help="train nothing: add these finished `pipelag train --out RUN_DIR` runs to the store under the "
                        "cells they match (same budget, --columns and --set as the sweep)")
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser("report", parents=[common], help="tables and plots: ours beside the paper's",
                              description="Normalised scores (÷ the instantaneous baseline on the same env and "
                                          "budget), mean ± SE over seeds, beside the paper's numbers; writes "
                                          "<out>/reports/<experiment>-b<budget>.md and .png.")
    p.add_argument("--metric", default="return",
                   help="per-seed number to report: return (final sampled evaluation, default), greedy, "
                        "train_last5pct")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG")
    p.set_defaults(func=cmd_report)
