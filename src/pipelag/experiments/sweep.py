"""Run an experiment's grid: every (spec, seeds) task once, all seeds of a run in one trainer call (vmapped).

* **Skips** every (run, seed) already in the store (``<out>/results.jsonl``), so a sweep can be rerun at
  will: it only trains what is missing. Runs shared by several experiments are trained once.
* **Resumes** an interrupted run: the trainer gets the same run directory again and continues from its
  checkpoint (``run_config`` passes ``resume=True`` when one is there).
* **Never loses a finished result**: records are appended to the store (fsync'd) as soon as their run
  ends; a failing or killed run is reported and the sweep carries on with the others.

Backends: ``local`` (one run after another in this process), ``process`` (each run in its own
subprocess, ``workers`` at a time: a crash or kill takes down only that run), ``ray`` (tasks on a Ray
cluster, ``pip install 'pipelag[sweep]'``; the driver writes the store, so only ``--out`` needs to be
on a shared file system for resuming on another machine).

The trainer is one function, ``run_config(config, seeds, out_dir) -> {seed: {"return": float, ...}}``;
tests inject a fake one with the same signature (``trainer=``).

**Compatible configs batched with vmap.** A trainer may also have ``batch_key(config) -> key | None`` and
``batched(configs, seeds, out_dir) -> [{seed: result}, ...]``: runs with the same (non-None) key and the
same missing seeds are trained by one ``batched`` call, as one vmapped program (``run_config``: SAC runs
on a JAX env that differ only in δ and/or dropout rate, e.g. Figure 12, Figure 3). Each run's records go to
the store on their own; the group has its own run directory (resumed as a whole). ``batch=False`` (CLI
``--no-batch``) trains every run on its own.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelag.errors import PipelagError
from pipelag.experiments.definitions import (
    MJX_PREFIX,
    Budget,
    Experiment,
    Task,
    describe_spec,
    get_experiment,
    gym_option_names,
    mjx_option_names,
)
from pipelag.experiments.store import ResultStore, atomic_write_text, make_record

Trainer = Callable[[dict[str, Any], list[int], str], dict[int, dict[str, Any]]]
BACKENDS = ("local", "process", "ray")


# ============================================================================ the adapter to the real trainers
def run_config(config: dict[str, Any], seeds: list[int], out_dir: str) -> dict[int, dict[str, Any]]:
    """Train ``config`` (a spec from ``definitions``) for all ``seeds`` in one (vmapped) trainer call in
    ``out_dir``; resume it if ``out_dir`` holds a checkpoint, or read it back if it already finished.
    Returns ``{seed: {"return": final evaluation return, ...other per-seed numbers}}``."""
    algo = config.get("algo")
    if algo == "ppo":
        return _run_ppo(config, seeds, out_dir)
    if algo == "sac":
        return _run_sac(config, seeds, out_dir)
    raise PipelagError(f"unknown algorithm {algo!r} in {config!r}")


def _load_algo(algo: str):
    """(config class, run function) of a trainer package, or raise ImportError."""
    cfg_mod = importlib.import_module(f"pipelag.algorithms.{algo}.config")
    train_mod = importlib.import_module(f"pipelag.algorithms.{algo}.train")
    return getattr(cfg_mod, f"{algo.upper()}Config"), train_mod.run


def check_config(config: dict[str, Any]) -> str | None:
    """Why ``run_config`` cannot run ``config`` here (None: it can)."""
    algo = config.get("algo")
    if algo not in ("ppo", "sac"):
        return f"unknown algorithm {algo!r}"
    try:
        config_cls, _ = _load_algo(algo)
    except (ImportError, AttributeError) as e:
        return f"the {algo.upper()} trainer (pipelag.algorithms.{algo}) is not available ({e})"
    fields = set(config_cls.__dataclass_fields__)
    extra = [k for k in _trainer_fields(config) if k not in fields]
    if extra:
        return f"the {algo.upper()} trainer has no option {', '.join(extra)}"
    if algo == "ppo":
        from pipelag.envs import list_envs

        if config["env"] not in list_envs():
            return f"{config['env']} is not a JAX environment (pipelag.envs.list_envs())"
    from pipelag.networks import ARCHITECTURES

    if config["arch"] not in ARCHITECTURES:
        return f"architecture {config['arch']!r} does not exist (pipelag archs)"
    return None


run_config.check = check_config  # the sweep asks a trainer's ``check`` before running it


#: spec fields that runs of one batch may differ in (SACConfig fields the trainer takes as per-member data)
BATCHED_FIELDS = ("dropout", "delta")


def batch_key(config: dict[str, Any]) -> str | None:
    """Runs with the same key train as one vmapped program (:func:`run_batched`); None: on their own.
    At a whole δ ≥ 1 (δ < 1 changes the network): PPO runs that differ only in δ; SAC runs on a JAX env
    (MJX, PointTarget) that differ only in δ and dropout rate (but not in whether they drop at all: rate
    0 draws no masks, its own program)."""
    algo = config.get("algo")
    delta = config.get("delta", 1.0)
    if algo not in ("ppo", "sac") or delta < 1 or delta != int(delta):
        return None
    if algo == "ppo":  # PPO trains on JAX envs only
        return json.dumps({k: v for k, v in config.items() if k != "delta"}, sort_keys=True, default=str)
    from pipelag.algorithms.sac.toy import TOY_ENVS

    if not (str(config["env"]).startswith(MJX_PREFIX) or config["env"] in TOY_ENVS):
        return None  # a gymnasium env on the host: one process per env, nothing to vmap
    rest = {k: v for k, v in config.items() if k not in BATCHED_FIELDS}
    return json.dumps({**rest, "drops": bool(config.get("dropout"))}, sort_keys=True, default=str)


def run_batched(configs: list[dict[str, Any]], seeds: list[int], out_dir: str) -> list[dict[int, dict[str, Any]]]:
    """Train ``configs`` (same :func:`batch_key`) for all ``seeds`` as one vmapped program in ``out_dir``
    (resumed if it holds a checkpoint). Returns one ``{seed: result}`` per config, in order."""
    keys = {batch_key(c) for c in configs}
    if len(keys) != 1 or None in keys:
        raise PipelagError("run_batched needs PPO configs that differ only in δ (whole, ≥ 1), or SAC configs on a "
                           "JAX env that differ only in δ and dropout rate (all > 0 or all 0)")
    if configs[0]["algo"] == "ppo":
        return _run_ppo_batched(configs, seeds, out_dir)
    varying = [f for f in BATCHED_FIELDS if len({float(c.get(f) or 0.0) for c in configs}) > 1]
    batch = [{f: float(c.get(f) or 0.0) for f in varying} for c in configs]
    base = dict(configs[0])
    base["delta"] = max(float(c.get("delta", 1.0)) for c in configs)  # the program's; run() takes it from batch
    out: list[dict[int, dict[str, Any]]] = [{} for _ in configs]
    for res in _sac_ranges(_sac_config(base), seeds, out_dir, batch=batch):
        for i, b in enumerate(batch):
            member = next(m for m in res["members"] if all(float(m[f]) == v for f, v in b.items()))
            out[i].update(_per_seed(member, "eval_return_mean_action", _SAC_EXTRAS))
    return out


run_config.batch_key = batch_key
run_config.batched = run_batched


def _trainer_fields(config: dict[str, Any]) -> dict[str, Any]:
    """Our spec → the trainers' config fields (PPOConfig and SACConfig share these names)."""
    out = {"env_id": config["env"], "env_options": dict(config.get("env_options") or {}), "delta": config["delta"],
           "arch": config["arch"], "instantaneous": config["instantaneous"],
           "action_history": config["action_history"], "total_timesteps": config["steps"]}
    if config.get("frame_stack") or config["algo"] == "ppo":
        out["frame_stack"] = config.get("frame_stack", 0)
    for k in ("num_layers", "dropout"):
        if k in config:
            out[k] = config[k]
    out.update(config.get("trainer_options") or {})
    return out


def _resume_state(out_dir: str | Path) -> str:
    d = Path(out_dir)
    if (d / "results.json").exists():
        return "finished"
    if (d / "checkpoint.msgpack").exists():
        return "resume"
    return "fresh"


def _finished_or_trained(out_dir: str | Path, train: Callable[[bool], dict[str, Any]]) -> dict[str, Any]:
    """The results.json of ``out_dir`` if its run finished; else ``train(resume)`` (resume: a checkpoint
    is there)."""
    state = _resume_state(out_dir)
    if state == "finished":
        return json.loads((Path(out_dir) / "results.json").read_text())
    return train(state == "resume")


#: per-seed numbers besides the main evaluation (their results.json keys): PPO's (main: sampled), SAC's (mean action)
_PPO_EXTRAS = {"greedy": "eval_greedy", "train_last5pct": "train_return_last5pct"}
_SAC_EXTRAS = {"sampled": "eval_return_sampled"}


def _run_ppo(config: dict[str, Any], seeds: list[int], out_dir: str) -> dict[int, dict[str, Any]]:
    _, run = _load_algo("ppo")
    res = _finished_or_trained(out_dir, lambda resume: run(_ppo_config(config), seeds=seeds, out_dir=out_dir,
                                                           resume=resume))
    return _per_seed(res, "eval_sampled", _PPO_EXTRAS)


def _sac_config(config: dict[str, Any]):
    config_cls, _ = _load_algo("sac")
    cfg = config_cls(**_trainer_fields(config))
    steps = cfg.total_timesteps
    if cfg.learning_starts >= steps // 2:  # a small budget: keep some learning (paper: 10k of 1M steps)
        cfg = cfg.replace(learning_starts=max(cfg.batch_size, steps // 10))
    return cfg.replace(checkpoint_every=max(1, steps // 10))  # agent steps


def _ppo_config(config: dict[str, Any]):
    config_cls, _ = _load_algo("ppo")
    cfg = config_cls(**_trainer_fields(config))
    return cfg.replace(checkpoint_every=max(1, cfg.num_updates // 10))  # updates


def _run_ppo_batched(configs: list[dict[str, Any]], seeds: list[int], out_dir: str) -> list[dict[int, dict[str, Any]]]:
    _, run = _load_algo("ppo")
    deltas = [float(c["delta"]) for c in configs]
    cfg = _ppo_config({**configs[0], "delta": max(deltas)})
    res = _finished_or_trained(out_dir, lambda resume: run(cfg, seeds=seeds, out_dir=out_dir, resume=resume,
                                                           batch=[{"delta": d} for d in deltas]))
    by_delta = {float(m["delta"]): m for m in res["members"]}
    return [_per_seed(by_delta[d], "eval_sampled", _PPO_EXTRAS) for d in deltas]


def _run_sac(config: dict[str, Any], seeds: list[int], out_dir: str) -> dict[int, dict[str, Any]]:
    """SAC trains a contiguous range of seeds per call: one call (and sub-directory) per range."""
    out: dict[int, dict[str, Any]] = {}
    for res in _sac_ranges(_sac_config(config), seeds, out_dir):
        out.update(_per_seed(res, "eval_return_mean_action", _SAC_EXTRAS))
    return out


def _sac_ranges(cfg, seeds: list[int], out_dir: str, **run_kwargs) -> list[dict[str, Any]]:
    """The results of ``cfg`` for each contiguous range of ``seeds`` (SAC trains one range per call, in
    its own sub-directory unless the range is all the seeds), read back where that run finished."""
    _, run = _load_algo("sac")
    out = []
    for first, n in _ranges(seeds):
        d = Path(out_dir) if len(seeds) == n else Path(out_dir) / f"seeds-{first}-{first + n - 1}"
        out.append(_finished_or_trained(d, lambda resume, d=d, first=first, n=n: run(
            cfg, str(d), num_seeds=n, seed=first, resume=resume, **run_kwargs)))
    return out


def _ranges(seeds: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(seeds):
        if out and out[-1][0] + out[-1][1] == s:
            out[-1] = (out[-1][0], out[-1][1] + 1)
        else:
            out.append((s, 1))
    return out


def _per_seed(res: dict[str, Any], main: str, extras: dict[str, str]) -> dict[int, dict[str, Any]]:
    """Per-seed numbers from a trainer's ``results.json``-style dict (``<main>.per_seed``…)."""
    out: dict[int, dict[str, Any]] = {}
    for i, s in enumerate(int(x) for x in res["seeds"]):
        v = res[main]["per_seed"][i]
        rec: dict[str, Any] = {"return": float("nan") if v is None else float(v)}
        for name, key in extras.items():
            if key in res and res[key]["per_seed"]:
                x = res[key]["per_seed"][i]
                rec[name] = None if x is None else float(x)
        for k in ("agent_steps", "num_updates"):
            if k in res:
                rec[k] = res[k]
        out[s] = rec
    return out


# ============================================================================ --mujoco / --env-option
_ENV_CHECK = """\
import json, sys
try:
    from pipelag.envs import make
    make(sys.argv[1], **json.loads(sys.argv[2]))
except Exception as e:
    from pipelag.errors import PipelagError
    msg = str(e) if isinstance(e, PipelagError) else f"{type(e).__name__}: {e}"
    print("ENV-CHECK-ERROR " + (msg.splitlines() or [""])[0])
    sys.exit(1)
"""


def check_env_options(experiment: Experiment, budget: Budget) -> None:
    """Raise a one-line PipelagError, before anything is trained, if the MuJoCo runs of ``experiment`` could
    not make their env as ``budget`` says (``--mujoco``, ``--env-option``: an option the env does not take,
    a bad value, MJX not installed). The gymnasium env is made here; the MJX env in a CPU-only subprocess,
    so that this process never holds GPU memory that the runs' processes need."""
    if budget.mujoco_default or not experiment.has_mujoco:
        return
    env = next(c.env for c in experiment.cells() if c.domain.name == "mujoco")
    opts = dict(budget.env_options)
    if budget.mujoco == "gym":
        from pipelag.envs.mujoco import mujoco_env_fn

        try:
            mujoco_env_fn(env, **opts)().close()
        except PipelagError as e:
            raise PipelagError(f"--env-option: {e}") from None
        except Exception as e:  # noqa: BLE001 - gymnasium's constructor refuses an option (TypeError) or a value
            raise PipelagError(
                f"--env-option: the gymnasium (CPU) env {env} cannot be made with {opts} ({_one_line(e)}); "
                f"the MuJoCo runs take pipelag's options {', '.join(gym_option_names())} and the keyword arguments "
                f"of gymnasium's {env} class, or with --mujoco mjx: {', '.join(mjx_option_names())}") from None
        return
    env_id = f"{MJX_PREFIX}{env}"
    try:
        p = subprocess.run([sys.executable, "-c", _ENV_CHECK, env_id, json.dumps(opts)], capture_output=True,
                           text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=600)
    except subprocess.TimeoutExpired:
        raise PipelagError(f"--mujoco mjx: making {env_id} to check its env options took over 10 minutes") from None
    if p.returncode != 0:
        err = [line for line in p.stdout.splitlines() if line.startswith("ENV-CHECK-ERROR ")]
        why = err[-1].removeprefix("ENV-CHECK-ERROR ") if err else (p.stderr.strip().splitlines() or ["?"])[-1]
        raise PipelagError(f"--mujoco mjx: {env_id} cannot be made with env options {opts}: {why}")


# ============================================================================ running tasks
def resolve_trainer(trainer: Trainer | str | None) -> Trainer:
    """``None`` → :func:`run_config`; ``"module:function"`` → that function; a callable as is."""
    if trainer is None:
        return run_config
    if isinstance(trainer, str):
        mod, _, attr = trainer.partition(":")
        if not attr:
            raise PipelagError(f"--trainer must look like 'package.module:function', got {trainer!r}")
        try:
            return getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise PipelagError(f"cannot load trainer {trainer!r}: {e}") from e
    if not callable(trainer):
        raise PipelagError(f"trainer must be callable, got {trainer!r}")
    return trainer


def execute(trainer: Trainer | str | None, spec: dict[str, Any], seeds: list[int], out_dir: str
            ) -> tuple[dict[int, dict[str, Any]], float]:
    """One trainer call for all ``seeds`` of ``spec``. Returns (per-seed results, wall seconds)."""
    results, wall = execute_job(trainer, [spec], seeds, out_dir)
    return results[0], wall


def execute_job(trainer: Trainer | str | None, specs: list[dict[str, Any]], seeds: list[int], out_dir: str
                ) -> tuple[list[dict[int, dict[str, Any]]], float]:
    """One trainer call for all ``seeds`` of ``specs``: ``trainer`` for one spec, ``trainer.batched`` for
    several (one vmapped program). Returns (per-seed results of each spec, wall seconds)."""
    fn = resolve_trainer(trainer)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if len(specs) == 1:
        out = [fn(dict(specs[0]), list(seeds), str(out_dir))]
    else:
        out = fn.batched([dict(s) for s in specs], list(seeds), str(out_dir))
        if not isinstance(out, list | tuple) or len(out) != len(specs):
            raise PipelagError(f"the trainer's batched call returned {type(out).__name__}, not one "
                               f"{{seed: result}} per config ({len(specs)})")
    wall = time.perf_counter() - t0
    checked = []
    for results in out:
        if not isinstance(results, dict):
            raise PipelagError(f"the trainer returned {type(results).__name__}, not {{seed: result}}")
        results = {int(k): v for k, v in results.items()}
        missing = [s for s in seeds if s not in results]
        if missing:
            raise PipelagError(f"the trainer returned no result for seeds {missing}")
        checked.append(results)
    return checked, wall


def _records(task: Task, seeds: list[int], results: dict[int, dict[str, Any]], wall: float) -> list[dict[str, Any]]:
    return [make_record(task.key, s, results[s], task.spec, wall) for s in seeds]


@dataclass(frozen=True)
class Job:
    """One trainer call: one run, or several compatible runs batched into one vmapped program."""

    tasks: tuple[Task, ...]
    seeds: tuple[int, ...]

    @property
    def key(self) -> str:
        """Its run directory's name: the run's key, or one derived from all the batched runs' keys."""
        if len(self.tasks) == 1:
            return self.tasks[0].key
        return "batch-" + hashlib.sha256(" ".join(sorted(t.key for t in self.tasks)).encode()).hexdigest()[:12]

    def describe(self) -> str:
        if len(self.tasks) == 1:
            return describe_spec(self.tasks[0].spec)
        return f"{len(self.tasks)} runs batched: " + "; ".join(describe_spec(t.spec) for t in self.tasks)


def plan_jobs(todo: list[tuple[Task, list[int]]], trainer, batch: bool = True) -> list[Job]:
    """Group ``todo`` into trainer calls: runs with the same ``trainer.batch_key`` (not None) and the same
    missing seeds share one call (if ``batch`` and the trainer has ``batched``); all others one each."""
    key_of = getattr(trainer, "batch_key", None) if batch and hasattr(trainer, "batched") else None
    groups: dict[Any, list[Task]] = {}
    order: list[Any] = []
    for i, (t, seeds) in enumerate(todo):
        k = key_of(t.spec) if key_of is not None else None
        gk = ("batch", k, tuple(seeds)) if k is not None else ("one", i)
        if gk not in groups:
            groups[gk] = []
            order.append((gk, tuple(seeds)))
        groups[gk].append(t)
    return [Job(tuple(groups[gk]), seeds) for gk, seeds in order]


@dataclass
class SweepReport:
    experiment: str
    budget: Budget
    out: Path
    done: list[tuple[Task, list[int]]] = field(default_factory=list)
    skipped: list[Task] = field(default_factory=list)
    unsupported: list[tuple[Task, str]] = field(default_factory=list)
    failed: list[tuple[Task, list[int], str]] = field(default_factory=list)
    planned: list[tuple[Task, list[int]]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        trained = f"{len(self.planned)} runs to train (dry run)" if self.dry_run else f"{len(self.done)} runs trained"
        lines = [f"sweep {self.experiment} ({self.budget.describe()}) in {self.out}: "
                 f"{trained}, {len(self.skipped)} already finished, "
                 f"{len(self.unsupported)} unsupported, {len(self.failed)} failed"]
        reasons: dict[str, int] = {}
        for _, why in self.unsupported:
            reasons[why] = reasons.get(why, 0) + 1
        lines += [f"  unsupported ({n} runs): {why}" for why, n in reasons.items()]
        lines += [f"  FAILED {describe_spec(t.spec)} seeds {s}: {err}" for t, s, err in self.failed]
        if self.failed:
            lines.append("  every finished run is in the store; rerun the same command to retry only the failed ones")
        return "\n".join(lines)


def sweep(experiment: Experiment | str, budget: Budget | None = None, out: str | os.PathLike = "runs", *,
          trainer: Trainer | str | None = None, backend: str = "local", workers: int = 1,
          ray_address: str | None = None, gpus_per_run: float | None = None, dry_run: bool = False,
          gpus: tuple[str, ...] | list[str] = (), log: Callable[[str], None] | None = None,
          batch: bool = True) -> SweepReport:
    """Train every missing (run, seed) of ``experiment`` at ``budget`` into the store at ``out``.

    ``batch``: train compatible runs (the trainer's ``batch_key``) as one vmapped program each.

    ``gpus`` (process backend): device ids; each run gets the least busy one as its only visible GPU, so
    ``workers=6, gpus=("0", "1")`` runs three at a time on each of two GPUs."""
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    budget = budget or Budget()
    if backend not in BACKENDS:
        raise PipelagError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not isinstance(workers, int) or workers < 1:
        raise PipelagError(f"--workers must be a positive integer, got {workers!r}")
    gpus = tuple(str(g).strip() for g in gpus)
    if gpus and (backend != "process" or not all(g.isdigit() for g in gpus)):
        raise PipelagError(f"--gpus takes device numbers such as 0,1 and needs --backend process, got {gpus!r}")
    log = log or (lambda s: print(s, flush=True))
    store = ResultStore(out)
    contents = store.read()
    if contents.bad_lines:
        log(f"warning: {store.path}: skipped unreadable lines {contents.bad_lines}")
    finished = contents.finished()
    fn = resolve_trainer(trainer)
    check = getattr(fn, "check", None)

    report = SweepReport(exp.name, budget, Path(out), dry_run=dry_run)
    todo: list[tuple[Task, list[int]]] = []
    for t in exp.tasks(budget):
        missing = [s for s in t.seeds if (t.key, s) not in finished]
        if not missing:
            report.skipped.append(t)
            continue
        why = t.unsupported or (check(t.spec) if check is not None else None)
        if why:
            report.unsupported.append((t, why))
            continue
        todo.append((t, missing))
    report.planned = list(todo)
    log(f"sweep {exp.name} ({exp.source}, {budget.describe()}): {len(todo)} runs to train, "
        f"{len(report.skipped)} finished, {len(report.unsupported)} unsupported")
    if gpus and workers > len(gpus):
        log(f"note: {workers} workers on {len(gpus)} GPU(s) run several trainings per GPU at once. On one H100 "
            "three PPO runs together trained at ≈ 3.7k steps/s each, against ≈ 60k for one alone; latency-bound "
            "runs (SAC on MJX) gained 1.9× with NVIDIA MPS on (nvidia-cuda-mps-control -d). Without MPS prefer "
            "--workers equal to the number of GPUs (docs/experiments.md)")
    jobs = plan_jobs(todo, fn, batch)
    if len(jobs) < len(todo):
        log(f"{len(todo)} runs in {len(jobs)} trainer calls: compatible runs batched into one vmapped program")
    if dry_run:
        for job in jobs:
            log(f"  would train {job.describe()} seeds {list(job.seeds)}  [{job.key}]")
        return report
    if not todo:
        return report
    runner = {"local": _run_local, "process": _run_processes, "ray": _run_ray}[backend]
    kwargs = {"workers": workers, "gpus": gpus} if backend == "process" else {}
    if backend == "ray":
        kwargs = {"address": ray_address, "gpus_per_run": gpus_per_run}
    # a "module:function" trainer travels by name (subprocesses and Ray workers import it themselves)
    runner(jobs, store, trainer if isinstance(trainer, str) else fn, report, log, **kwargs)
    return report


def _finish(job: Job, results: list[dict[int, dict[str, Any]]], wall: float, store: ResultStore,
            report: SweepReport, log) -> None:
    """Each run of ``job`` into the store on its own (a run whose results are malformed fails alone)."""
    seeds = list(job.seeds)
    for task, res in zip(job.tasks, results, strict=True):
        try:
            recs = _records(task, seeds, res, wall)
        except PipelagError as e:
            _fail(Job((task,), job.seeds), str(e), report, log)
            continue
        store.append(recs)
        report.done.append((task, seeds))
        rets = ", ".join(f"{r['return']:.4g}" if r["return"] is not None else "nan" for r in recs)
        log(f"  done {describe_spec(task.spec)} seeds {seeds}: return {rets} ({wall:.1f}s)")


def _fail(job: Job, err: str, report: SweepReport, log) -> None:
    for task in job.tasks:
        report.failed.append((task, list(job.seeds), err))
    log(f"  FAILED {job.describe()} seeds {list(job.seeds)}: {err}")


def _job_dir(store: ResultStore, job: Job) -> Path:
    return store.run_dir(job.key, job.seeds)


# ---------------------------------------------------------------------------- local: one after another
def _run_local(jobs: list[Job], store: ResultStore, trainer, report: SweepReport, log) -> None:
    for i, job in enumerate(jobs, 1):
        log(f"[{i}/{len(jobs)}] {job.describe()} seeds {list(job.seeds)}")
        try:
            results, wall = execute_job(trainer, [t.spec for t in job.tasks], list(job.seeds),
                                        str(_job_dir(store, job)))
        except Exception as e:  # noqa: BLE001 - one failing run must not stop the sweep
            _fail(job, _one_line(e), report, log)
            continue
        _finish(job, results, wall, store, report, log)


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0][:500]


# ---------------------------------------------------------------------------- process: a subprocess per run
RESULT_FILE = "sweep_result.json"


def _child(trainer, specs, seeds, out_dir, result_path, mem_fraction, device) -> None:  # pragma: no cover - subprocess
    if device is not None:  # before JAX starts: this run sees one GPU only
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    if mem_fraction is not None:
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{mem_fraction:.3f}")
    try:
        results, wall = execute_job(trainer, specs, seeds, out_dir)
        payload = {"ok": True, "wall_s": wall, "results": [{str(k): v for k, v in r.items()} for r in results]}
    except BaseException as e:  # noqa: BLE001
        payload = {"ok": False, "error": _one_line(e), "traceback": traceback.format_exc()}
    atomic_write_text(result_path, json.dumps(payload, default=float))
    sys.exit(0 if payload["ok"] else 1)


def _run_processes(jobs: list[Job], store: ResultStore, trainer, report: SweepReport, log, workers: int,
                   gpus: tuple[str, ...] = ()) -> None:
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")  # never fork a process that may hold JAX / GPU state
    per_device = math.ceil(workers / max(1, len(gpus)))  # runs sharing one device's memory
    mem_fraction = 0.9 / per_device if per_device > 1 else None
    pending = list(enumerate(jobs, 1))
    running: dict[Any, tuple[Any, Job, Path, str | None]] = {}
    while pending or running:
        while pending and len(running) < workers:
            i, job = pending.pop(0)
            # the least busy GPU of `gpus` (None: the child sees whatever this process sees)
            busy = [r[3] for r in running.values()]
            device = min(gpus, key=lambda g: (busy.count(g), gpus.index(g))) if gpus else None
            run_dir = _job_dir(store, job)
            run_dir.mkdir(parents=True, exist_ok=True)
            result_path = run_dir / RESULT_FILE
            result_path.unlink(missing_ok=True)
            p = ctx.Process(target=_child, args=(trainer, [t.spec for t in job.tasks], list(job.seeds), str(run_dir),
                                                 str(result_path), mem_fraction, device), daemon=False)
            p.start()
            on = f", GPU {device}" if device is not None else ""
            log(f"[{i}/{len(jobs)}] started {job.describe()} seeds {list(job.seeds)} (pid {p.pid}{on})")
            running[p.sentinel] = (p, job, result_path, device)
        for sentinel in wait(list(running)):
            p, job, result_path, _ = running.pop(sentinel)
            p.join()
            try:
                payload = json.loads(result_path.read_text())
            except (OSError, json.JSONDecodeError):
                _fail(job, f"worker died (exit code {p.exitcode}) before reporting a result", report, log)
                continue
            if not payload.get("ok"):
                _fail(job, payload.get("error", "unknown error"), report, log)
                continue
            results = [{int(k): v for k, v in r.items()} for r in payload["results"]]
            _finish(job, results, payload["wall_s"], store, report, log)


# ---------------------------------------------------------------------------- ray: tasks on a cluster
def import_ray():
    try:
        import ray
    except ImportError as e:
        raise PipelagError("the ray backend needs Ray: pip install 'pipelag[sweep]' (or pip install ray)") from e
    return ray


def _ray_task(trainer, specs, seeds, out_dir):  # pragma: no cover - runs in a Ray worker
    return execute_job(trainer, specs, seeds, out_dir)


def _run_ray(jobs: list[Job], store: ResultStore, trainer, report: SweepReport, log, address: str | None = None,
             gpus_per_run: float | None = None) -> None:
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True, log_to_driver=True)
    if gpus_per_run is None:
        gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    remote = ray.remote(_ray_task).options(num_cpus=1, num_gpus=gpus_per_run, max_retries=0)
    refs = {}
    for job in jobs:
        ref = remote.remote(trainer, [t.spec for t in job.tasks], list(job.seeds), str(_job_dir(store, job).resolve()))
        refs[ref] = job
    log(f"submitted {len(refs)} runs to Ray ({gpus_per_run:g} GPU each)")
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            job = refs.pop(ref)
            try:
                results, wall = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - a crashed worker or a failing run: report, go on
                _fail(job, _one_line(getattr(e, "cause", None) or e), report, log)
                continue
            _finish(job, results, wall, store, report, log)
