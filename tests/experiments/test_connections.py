"""`pipelag analyze connections` (Fig. 5) end to end: train a tiny SAC with a proj-to-action actor, evaluate it
with connections removed, check the written results, table and plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelag.algorithms.sac import SACConfig
from pipelag.algorithms.sac.train import run
from pipelag.cli import main as cli_main
from pipelag.errors import PipelagError
from pipelag.experiments.connections import analyze_connections
from pipelag.experiments.definitions import Budget, get_experiment

TINY = dict(
    arch="mlp-proj-to-action",
    action_history=0,
    num_layers=3,
    hidden=16,
    critic_hidden=16,
    batch_size=16,
    q_lr=3e-3,
    policy_lr=1e-3,
)


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """PointTarget-v0 (a JAX env, jitted driver), 400 agent steps, 2 seeds."""
    d = tmp_path_factory.mktemp("run") / "pta"
    cfg = SACConfig(
        env_id="PointTarget-v0", total_timesteps=400, learning_starts=100, steps_per_chunk=100, eval_episodes=2, **TINY
    )
    run(cfg, d, num_seeds=2, progress=False)
    return d


def test_analysis_writes_results_table_and_plot(toy_run, tmp_path):
    out = tmp_path / "fig5"
    assert (
        cli_main(
            ["analyze", "connections", "--checkpoint", str(toy_run), "--episodes", "6", "--out", str(out), "--quiet"]
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    assert res["arch"] == "mlp-proj-to-action" and res["seeds"] == [0, 1] and res["episodes"] == 6
    assert [g["name"] for g in res["groups"]] == ["intact", "obs-proj", "fc1-proj", "fc2-conn", "all"]
    assert res["groups"][-1]["removed"] == ["obs->head", "fc1->head", "fc2->head"]
    for g in res["groups"]:
        for mode in ("mean_action", "sampled"):
            s = g[mode]
            assert np.asarray(s["returns"]).shape == (2, 6) and s["episodes"] == 12
            assert np.isclose(s["mean"], np.mean(s["returns"])) and s["sd"] >= 0
    groups = {g["name"]: g for g in res["groups"]}
    # the same episodes (JAX env, same keys) for every removal: cutting every input of the head changes them
    intact, cut = (np.asarray(groups[n]["mean_action"]["returns"]) for n in ("intact", "all"))
    assert not np.allclose(intact, cut)
    md = (out / "connections.md").read_text()
    assert "| fc2-conn | `fc2->head` |" in md and "±" in md
    png = (out / "connections.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_analysis_is_deterministic_and_takes_custom_removals(toy_run, tmp_path):
    kw = dict(episodes=3, modes=("mean",), log=lambda s: None)
    a, _ = analyze_connections(toy_run, tmp_path / "a", remove=["obs-proj", "obs->head,fc1->head"], **kw)
    b, _ = analyze_connections(toy_run, tmp_path / "b", remove=["obs-proj"], **kw)
    assert [g["name"] for g in a["groups"]] == ["intact", "obs-proj", "obs->head,fc1->head"]
    assert a["groups"][2]["removed"] == ["obs->head", "fc1->head"] and "sampled" not in a["groups"][0]
    assert a["groups"][:2] == b["groups"]  # same eval seed: the same returns
    with pytest.raises(PipelagError, match="unknown connection 'obs->fc2'.*valid connections"):
        analyze_connections(toy_run, tmp_path / "c", remove=["obs->fc2"], **kw)


def test_list_and_errors(toy_run, tmp_path, capsys):
    assert cli_main(["analyze", "connections", "--checkpoint", str(toy_run), "--list"]) == 0
    printed = capsys.readouterr().out
    assert "obs->fc1, fc1->fc2, obs->head, fc1->head, fc2->head" in printed and "fc1-proj" in printed
    assert cli_main(["analyze", "connections", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run directory" in err and "pipelag train --algo sac" in err
    # a run that has not finished: its checkpoint is there, its final parameters are not
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((toy_run / "config.json").read_text())
    (unfinished / "checkpoint.msgpack").write_bytes(b"x")
    with pytest.raises(PipelagError, match="has not finished.*pipelag train-sac --resume --out"):
        analyze_connections(unfinished, tmp_path / "o")


def test_host_env_path(tmp_path):
    """A gymnasium env (Pendulum-v1) goes through the host driver: one env per removal in lockstep."""
    cfg = SACConfig(
        env_id="Pendulum-v1",
        total_timesteps=150,
        learning_starts=100,
        steps_per_chunk=50,
        eval_episodes=0,
        eval_max_steps=20,
        **TINY,
    )
    run(cfg, tmp_path / "run", progress=False)
    res, paths = analyze_connections(tmp_path / "run", tmp_path / "out", episodes=2, remove=["all"], log=lambda s: None)
    assert [g["name"] for g in res["groups"]] == ["intact", "all"]
    assert np.asarray(res["groups"][1]["sampled"]["returns"]).shape == (1, 2)
    assert all(p.exists() for p in paths.values())


def test_fig5_experiment_trains_the_papers_agent():
    exp = get_experiment("fig5")
    specs = [t.spec for t in exp.tasks(Budget())]
    agent = [s for s in specs if not s["instantaneous"]]
    assert len(agent) == 1 and {k: agent[0][k] for k in ("algo", "env", "delta", "arch", "num_layers")} == {
        "algo": "sac",
        "env": "Ant-v4",
        "delta": 4.0,
        "arch": "mlp-proj-to-action",
        "num_layers": 3,
    }
    assert [t.seeds for t in exp.tasks(Budget()) if not t.spec["instantaneous"]] == [(0,)]
