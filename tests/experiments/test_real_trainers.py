"""The sweep with the real trainers (slow: compiles PPO / SAC; run with -m slow)."""

from __future__ import annotations

import json

import pytest

from pipelag.experiments.definitions import Budget, Cell, Entry, Experiment, PlotSpec, Row
from pipelag.experiments.report import compute
from pipelag.experiments.store import ResultStore
from pipelag.experiments.sweep import check_config, sweep

pytestmark = pytest.mark.slow
QUICK = (("eval_episodes", 2), ("eval_max_steps", 50))


def one_cell(env: str, variant: str, delta: float) -> Experiment:
    return Experiment("one", "Test", "one cell and its baseline", ("env",),
                      (Row(variant, {"env": Entry((Cell(env, variant, delta),))}),), "returns", PlotSpec("bars"))


@pytest.mark.parametrize("env, variant, delta, fraction", [
    ("MinAtar/Breakout-v0", "cnn+pta-res+aug", 1.0, 0.0001),  # one PPO rollout of 32 × 32 steps
    ("HalfCheetah-v4", "mlp3+pfo+aug", 2.0, 0.001),  # 1000 SAC steps
])
def test_sweep_and_report_with_the_real_trainer(tmp_path, env, variant, delta, fraction):
    exp, budget = one_cell(env, variant, delta), Budget(fraction, 1, QUICK)
    for t in exp.tasks(budget):
        assert check_config(t.spec) is None, t.spec
    rep = sweep(exp, budget, tmp_path, log=print)
    assert rep.ok and len(rep.done) == 2, rep.summary()
    store = ResultStore(tmp_path).read()
    assert len(store.records) == 2 and all(isinstance(r["return"], float) for r in store.records)
    for t in exp.tasks(budget):  # the trainer's own run directory, with the spec's settings
        cfg = json.loads((ResultStore(tmp_path).run_dir(t.key, [0]) / "config.json").read_text())["config"]
        assert (cfg["env_id"], cfg["arch"], cfg["delta"], cfg["eval_episodes"]) == (env, t.spec["arch"],
                                                                                     t.spec["delta"], 2)
    res = compute(exp, budget, tmp_path)
    assert res.entries[(0, "env")].raw.n == 1
    assert sweep(exp, budget, tmp_path, log=print).done == []  # finished: nothing to train
