"""Add runs trained outside a sweep (``pipelag train ... --out DIR``) to an experiment's result store.

A run directory holds the trainer's ``config.json`` and ``results.json``. It belongs to the experiment
cell whose trainer config it matches: every field the cell sets (env, δ, architecture, instantaneous,
action history, frame stack, layers, ``--set`` options, ...) must be equal in the run's config, and the
steps it trained (results' ``agent_steps``: a run stopped by ``--time-budget`` trained fewer than planned) must
equal the cell's within one step unit of its domain (PPO: one rollout, so a
``--total-steps 10000000`` run is the paper's 10M-step cell, which the budget rounds to 9,766 rollouts).
Its seeds that the cell wants and the store lacks are appended, as a sweep would have written them;
``pipelag report`` then shows them beside the paper's numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelag.errors import PipelagError
from pipelag.experiments.definitions import Budget, Experiment, Task, describe_spec, domain_of, get_experiment
from pipelag.experiments.store import ResultStore, make_record
from pipelag.experiments.sweep import _per_seed, _trainer_fields

# the per-seed numbers of each trainer's results.json, as the sweep's adapters read them
_MAIN = {"ppo": ("eval_sampled", {"greedy": "eval_greedy", "train_last5pct": "train_return_last5pct"}),
         "sac": ("eval_return_mean_action", {"sampled": "eval_return_sampled"})}


def _load_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    files = [run_dir / "config.json", run_dir / "results.json"]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise PipelagError(f"{run_dir} has no {' or '.join(missing)}: only finished runs of `pipelag train "
                           "--out DIR` can be imported (resume an unfinished one with --resume first)")
    config, results = (json.loads(f.read_text()) for f in files)
    return config.get("config", config), results


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def trained_steps(config: dict[str, Any], results: dict[str, Any]) -> int:
    """The steps a run actually trained: its results' ``agent_steps`` (a run stopped by ``--time-budget``
    trained fewer than its config's ``total_timesteps``), else the config's."""
    return int(results.get("agent_steps", config.get("total_timesteps", -10**12)))


def matches(task: Task, config: dict[str, Any], steps: int | None = None) -> bool:
    """Whether a trainer config (a run's config.json) that trained ``steps`` steps (default: its
    ``total_timesteps``) is the run of ``task``'s cell."""
    want = _trainer_fields(task.spec)
    cell_steps = want.pop("total_timesteps")
    for k, v in want.items():
        have = config.get(k, {} if k == "env_options" else None)
        if not _same(have, v):
            return False
    unit = domain_of(task.spec["env"]).step_granularity
    steps = int(config.get("total_timesteps", -10**12)) if steps is None else steps
    return abs(steps - int(cell_steps)) <= unit  # a run of --total-steps N trains whole units, the cell rounds


def import_runs(experiment: Experiment | str, budget: Budget, out: str | Path, run_dirs: list[str | Path],
                log: Callable[[str], None] | None = None) -> int:
    """Append the finished runs in ``run_dirs`` to the store at ``out`` under their cells of ``experiment``
    at ``budget``. Returns how many (run, seed) records were added; a run that fits no cell is an error."""
    exp = get_experiment(experiment) if isinstance(experiment, str) else experiment
    log = log or (lambda s: print(s, flush=True))
    store = ResultStore(out)
    finished = store.read().finished()
    tasks = exp.tasks(budget)
    added = 0
    for d in map(Path, run_dirs):
        config, results = _load_run(d)
        steps = trained_steps(config, results)
        task = next((t for t in tasks if t.spec.get("algo") == results.get("algo") and matches(t, config, steps)),
                    None)
        if task is None:
            stopped = results.get("stopped_early") or results.get("stopped_by_time_budget")  # SAC / PPO
            early = f" (stopped early by its time budget; {config.get('total_timesteps')} planned)" if stopped else ""
            raise PipelagError(
                f"{d} (arch {config.get('arch')}, δ {config.get('delta')}, env {config.get('env_id')}, "
                f"{steps} steps trained{early}) matches no cell of {exp.name} at {budget.describe()}: "
                "check --budget, --columns, the --set options and (MuJoCo) --mujoco / --env-option it was "
                f"trained with (`pipelag sweep {exp.cli_name or exp.name} --dry-run` lists the cells)")
        main, extras = _MAIN[results["algo"]]
        per_seed = _per_seed(results, main, extras)
        seeds = [s for s in task.seeds if s in per_seed and (task.key, s) not in finished]
        wall = float((results.get("timing") or {}).get("total_s") or results.get("wall_s") or 0.0)
        store.append([make_record(task.key, s, per_seed[s], task.spec, wall) for s in seeds])
        finished |= {(task.key, s) for s in seeds}
        added += len(seeds)
        log(f"  {d}: {describe_spec(task.spec)} seeds {seeds} added"
            + (f" (already in the store or not wanted: {sorted(set(per_seed) - set(seeds))})"
               if set(per_seed) - set(seeds) else ""))
    return added
