"""Importing runs trained with `pipelag train --out DIR` into an experiment's result store."""

from __future__ import annotations

import json

import pytest

from pipelag.errors import PipelagError
from pipelag.experiments.definitions import Budget, budget_from, get_experiment
from pipelag.experiments.importer import import_runs
from pipelag.experiments.store import ResultStore
from pipelag.experiments.sweep import _trainer_fields

EXP = get_experiment("table9").only_columns(["Breakout"])
BUDGET = budget_from(1.0, 2)


def _cell(arch: str, instantaneous: bool = False, history: int = 0):
    return next(t for t in EXP.tasks(BUDGET) if t.spec["arch"] == arch and t.spec["delta"] == 1.0
                and t.spec["instantaneous"] == instantaneous and t.spec["action_history"] == history)


def _write_run(d, task, returns, steps=10_000_000, **override):
    d.mkdir(parents=True)
    trained = override.pop("agent_steps", steps - steps % 1024)
    config = {**_trainer_fields(task.spec), "total_timesteps": steps, "num_envs": 32, **override}
    (d / "config.json").write_text(json.dumps({"config": config}))
    seeds = list(range(len(returns)))
    res = {"algo": "ppo", "seeds": seeds, "agent_steps": trained,
           "eval_sampled": {"per_seed": returns}, "eval_greedy": {"per_seed": [r + 1 for r in returns]},
           "train_return_last5pct": {"per_seed": returns}, "timing": {"total_s": 250.0},
           "stopped_by_time_budget": trained < steps - steps % 1024}
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_runs_land_in_their_cells_once(tmp_path):
    ppo, skip = _cell("cnn", instantaneous=True), _cell("cnn-skip-res", history=1)
    a = _write_run(tmp_path / "a", ppo, [20.0, 24.0, 99.0])  # seed 2 is not wanted at 2 seeds
    b = _write_run(tmp_path / "b", skip, [18.0, 22.0])
    store = tmp_path / "store"
    assert import_runs(EXP, BUDGET, store, [a, b], log=lambda s: None) == 4
    by_key = ResultStore(store).read().by_key()
    assert set(by_key) == {ppo.key, skip.key}
    assert {s: r["return"] for s, r in by_key[ppo.key].items()} == {0: 20.0, 1: 24.0}
    assert by_key[skip.key][1]["metrics"]["greedy"] == 23.0 and by_key[skip.key][1]["spec"] == skip.spec
    assert import_runs(EXP, BUDGET, store, [a, b], log=lambda s: None) == 0  # already there


def test_a_run_must_match_a_cell(tmp_path):
    ppo = _cell("cnn", instantaneous=True)
    off = _write_run(tmp_path / "short", ppo, [1.0, 2.0], steps=9_000_000)  # another budget
    with pytest.raises(PipelagError, match="matches no cell of table9"):
        import_runs(EXP, BUDGET, tmp_path / "s", [off], log=lambda s: None)
    other = _write_run(tmp_path / "f32", ppo, [1.0, 2.0])
    with pytest.raises(PipelagError, match="--set options"):  # the cells were asked with compute_dtype=bf16
        import_runs(EXP, Budget(1.0, 2, (("compute_dtype", "bfloat16"),)),
                    tmp_path / "s", [other], log=lambda s: None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelagError, match="no config.json or results.json"):
        import_runs(EXP, BUDGET, tmp_path / "s", [tmp_path / "empty"], log=lambda s: None)
    assert not (tmp_path / "s" / "results.jsonl").exists() or not ResultStore(tmp_path / "s").read().by_key()


def test_a_run_stopped_by_its_time_budget_is_not_the_full_budget_cell(tmp_path):
    """Matching uses the steps a run trained (results' agent_steps), not the steps its config planned."""
    ppo = _cell("cnn", instantaneous=True)
    early = _write_run(tmp_path / "early", ppo, [1.0, 2.0], agent_steps=2_000_896)  # --time-budget hit
    with pytest.raises(PipelagError, match=r"2000896 steps trained \(stopped early by its time budget; 10000000"):
        import_runs(EXP, BUDGET, tmp_path / "s", [early], log=lambda s: None)
    assert import_runs(EXP, budget_from(0.2, 2), tmp_path / "s", [early], log=lambda s: None) == 2
