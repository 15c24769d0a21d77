"""The sweep: skips finished runs, survives failing / killed runs without losing finished ones, resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pipelag.errors import PipelagError
from pipelag.experiments.definitions import (
    EXPERIMENTS,
    Budget,
    Cell,
    Entry,
    Experiment,
    PlotSpec,
    Row,
    get_experiment,
    run_key,
)
from pipelag.experiments.store import ResultStore
from pipelag.experiments.sweep import _trainer_fields, plan_jobs, run_config, sweep

REPO = Path(__file__).resolve().parents[2]
QUIET = lambda s: None  # noqa: E731


# ---------------------------------------------------------------------------- fake trainers (importable by name)
def fake_return(config: dict, seed: int) -> float:
    return int(run_key(config)[:6], 16) % 1000 / 10 + seed


def _mark(config: dict, seeds: list[int]) -> int:
    """Record a call in $PIPELAG_FAKE_DIR; returns the number of calls before this one."""
    d = Path(os.environ["PIPELAG_FAKE_DIR"])
    d.mkdir(parents=True, exist_ok=True)
    before = len(list(d.iterdir()))
    (d / f"{run_key(config)}_{'-'.join(map(str, seeds))}_{uuid.uuid4().hex[:8]}").touch()
    return before


def counting_trainer(config: dict, seeds: list[int], out_dir: str) -> dict:
    _mark(config, seeds)
    return {s: {"return": fake_return(config, s), "greedy": 1.0} for s in seeds}


def killing_trainer(config: dict, seeds: list[int], out_dir: str) -> dict:
    """SIGKILLs its own process at call number $PIPELAG_KILL_AT (as an OOM killer or a lost node would)."""
    if _mark(config, seeds) + 1 == int(os.environ["PIPELAG_KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return {s: {"return": fake_return(config, s)} for s in seeds}


def exiting_trainer(config: dict, seeds: list[int], out_dir: str) -> dict:
    """The worker process dies abruptly on Seaquest."""
    _mark(config, seeds)
    if "Seaquest" in config["env"]:
        os._exit(137)
    return {s: {"return": fake_return(config, s)} for s in seeds}


def _batch_key(config: dict):
    return run_config.batch_key(config)


def batching_trainer(config: dict, seeds: list[int], out_dir: str) -> dict:
    return counting_trainer(config, seeds, out_dir)


def _batched(configs: list[dict], seeds: list[int], out_dir: str) -> list[dict]:
    """One call for all ``configs``: marked once (under the first config's key) with the out_dir."""
    before = _mark(configs[0], seeds)
    (Path(os.environ["PIPELAG_FAKE_DIR"]).parent / f"batched-{before}.txt").write_text(
        "\n".join([out_dir, *(run_key(c) for c in configs)]))
    if os.environ.get("PIPELAG_FAIL_BATCH"):
        raise RuntimeError("batched call failed")
    return [{s: {"return": fake_return(c, s)} for s in seeds} for c in configs]


batching_trainer.batch_key = _batch_key
batching_trainer.batched = _batched


def calls(d: Path) -> list[tuple[str, str]]:
    """(run key, seeds) of every call so far."""
    return sorted(tuple(p.name.split("_")[:2]) for p in d.iterdir()) if d.exists() else []


def call_ids(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


@pytest.fixture
def fake_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "calls"
    monkeypatch.setenv("PIPELAG_FAKE_DIR", str(d))
    return d


def mini() -> Experiment:
    envs = ("MinAtar/Breakout-v0", "MinAtar/Seaquest-v0")
    rows = (Row("CNN", {e: Entry((Cell(e, "cnn", 1.0),)) for e in envs}, series="cnn"),)
    return Experiment("mini", "Test", "two envs × (PPO baseline + CNN)", envs, rows, "returns", PlotSpec("bars"))


def keys_of(exp: Experiment, budget: Budget) -> dict[str, tuple[int, ...]]:
    return {t.key: t.seeds for t in exp.tasks(budget)}


# ---------------------------------------------------------------------------- skipping
def test_sweep_trains_each_run_once_with_all_its_seeds_and_skips_finished_ones(tmp_path, fake_dir):
    exp, budget = get_experiment("table3"), Budget(0.001, seeds=2)
    rep = sweep(exp, budget, tmp_path / "out", trainer=counting_trainer, log=QUIET)
    assert rep.ok and len(rep.done) == 15 and rep.skipped == []
    assert len(calls(fake_dir)) == 15 and {s for _, s in calls(fake_dir)} == {"0-1"}  # all seeds in one call
    store = ResultStore(tmp_path / "out").read()
    assert store.finished() == {(k, s) for k in keys_of(exp, budget) for s in (0, 1)}
    assert all(r["return"] == fake_return(r["spec"], r["seed"]) for r in store.records)

    rep = sweep(exp, budget, tmp_path / "out", trainer=counting_trainer, log=QUIET)  # nothing left to do
    assert len(calls(fake_dir)) == 15 and len(rep.skipped) == 15 and rep.done == []

    rep = sweep(exp, Budget(0.001, seeds=3), tmp_path / "out", trainer=counting_trainer, log=QUIET)  # a third seed
    assert len(calls(fake_dir)) == 30 and sorted(s for _, s in calls(fake_dir))[-15:] == ["2"] * 15


def test_runs_shared_between_experiments_are_trained_once(tmp_path, fake_dir):
    budget = Budget(0.001, seeds=1)
    sweep("table9", budget, tmp_path, trainer=counting_trainer, log=QUIET)
    n9 = len(calls(fake_dir))
    rep = sweep("table1", budget, tmp_path, trainer=counting_trainer, log=QUIET)
    # table1's MinAtar cells (PPO baseline, CNN w/ skip at δ = 1) come from table9's runs
    shared = set(keys_of(EXPERIMENTS["table1"], budget)) & set(keys_of(EXPERIMENTS["table9"], budget))
    assert len(shared) == 10 and len(rep.skipped) == 10
    assert len(calls(fake_dir)) == n9 + len(rep.done)


def test_dry_run_trains_nothing(tmp_path, fake_dir):
    rep = sweep("table10", Budget(0.01), tmp_path, trainer=counting_trainer, dry_run=True, log=QUIET)
    assert len(rep.planned) == 34 and calls(fake_dir) == [] and not ResultStore(tmp_path).path.exists()
    assert "34 runs to train (dry run)" in rep.summary()


def test_unsupported_runs_are_reported_not_run(tmp_path, fake_dir):
    rep = sweep("table2", Budget(0.01), tmp_path, trainer=counting_trainer, log=QUIET)
    assert len(rep.unsupported) == 21 and calls(fake_dir) == [] and rep.ok
    assert "no ALE adapter" in rep.summary()

    def picky(config, seeds, out_dir):
        return counting_trainer(config, seeds, out_dir)

    picky.check = lambda spec: "no LSTM here" if "lstm" in spec["arch"] else None
    rep = sweep("table10", Budget(0.01, 1), tmp_path, trainer=picky, log=QUIET)
    assert len(rep.unsupported) == 16 and len(calls(fake_dir)) == 34 - 16
    assert all("lstm" not in t.spec["arch"] for t, _ in rep.done)


# ---------------------------------------------------------------------------- failures never lose results
def test_a_failing_run_does_not_stop_the_sweep_and_a_rerun_does_only_what_is_missing(tmp_path, fake_dir):
    def flaky(config, seeds, out_dir):
        _mark(config, seeds)
        (Path(out_dir) / "checkpoint.msgpack").write_text("half-way")  # the trainer's own checkpoint
        if "Seaquest" in config["env"]:
            raise RuntimeError("CUDA out of memory")
        return {s: {"return": fake_return(config, s)} for s in seeds}

    exp, budget = get_experiment("table3"), Budget(0.001)
    rep = sweep(exp, budget, tmp_path, trainer=flaky, log=QUIET)
    assert not rep.ok and len(rep.failed) == 3 and len(rep.done) == 12
    assert all("out of memory" in err for _, _, err in rep.failed) and "FAILED" in rep.summary()
    assert len(ResultStore(tmp_path).read().records) == 12 * 3

    resumed = []

    def resuming(config, seeds, out_dir):  # the real trainers resume from the checkpoint in out_dir
        resumed.append((Path(out_dir) / "checkpoint.msgpack").exists())
        return counting_trainer(config, seeds, out_dir)

    rep = sweep(exp, budget, tmp_path, trainer=resuming, log=QUIET)
    assert rep.ok and len(rep.done) == 3 and len(rep.skipped) == 12 and resumed == [True] * 3
    assert all("Seaquest" in t.spec["env"] for t, _ in rep.done)
    assert ResultStore(tmp_path).read().finished() == {(k, s) for k in keys_of(exp, budget) for s in range(3)}


def test_a_trainer_returning_garbage_is_a_failure_not_a_record(tmp_path, fake_dir):
    rep = sweep(mini(), Budget(0.001, 2), tmp_path, log=QUIET,
                trainer=lambda c, seeds, d: {seeds[0]: {"return": 1.0}})  # a seed missing
    assert len(rep.failed) == 4 and "no result for seeds [1]" in rep.failed[0][2]
    assert ResultStore(tmp_path).read().records == []


def test_a_killed_sweep_keeps_every_finished_record_and_a_rerun_completes_the_rest(tmp_path, fake_dir):
    env = {**os.environ, "PIPELAG_KILL_AT": "4", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pipelag.cli", "sweep", "table3", "--budget", "0.001", "--out",
           str(tmp_path), "--trainer", "tests.experiments.test_sweep:killing_trainer"]
    p = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    exp, budget = get_experiment("table3"), Budget(0.001)
    done = ResultStore(tmp_path).read()
    assert len(done.records) == 3 * 3 and len(done.by_key()) == 3  # the first three runs, all seeds
    first_calls = call_ids(fake_dir)
    assert len(first_calls) == 4  # the fourth run was killed mid-run

    rep = sweep(exp, budget, tmp_path, trainer=counting_trainer, log=QUIET)
    assert rep.ok and len(rep.done) == 12 and len(rep.skipped) == 3
    rerun = {tuple(name.split("_")[:2]) for name in call_ids(fake_dir) - first_calls}
    assert len(rerun) == 12 and not {k for k, _ in rerun} & set(done.by_key())
    assert ResultStore(tmp_path).read().finished() == {(k, s) for k in keys_of(exp, budget) for s in range(3)}


def test_process_backend_survives_a_killed_worker(tmp_path, fake_dir):
    exp, budget = mini(), Budget(0.001, 2)
    rep = sweep(exp, budget, tmp_path, trainer=exiting_trainer, backend="process", workers=2, log=QUIET)
    assert len(rep.failed) == 2 and len(rep.done) == 2  # Seaquest's baseline and CNN died, Breakout's finished
    assert all("exit code 137" in err for _, _, err in rep.failed)
    assert {t.spec["env"] for t, _ in rep.done} == {"MinAtar/Breakout-v0"}
    assert len(ResultStore(tmp_path).read().records) == 4

    rep = sweep(exp, budget, tmp_path, trainer=counting_trainer, backend="process", workers=2, log=QUIET)
    assert rep.ok and len(rep.done) == 2 and len(calls(fake_dir)) == 4 + 2
    assert ResultStore(tmp_path).read().finished() == {(k, s) for k in keys_of(exp, budget) for s in (0, 1)}


def test_ray_backend_with_a_crashing_worker(tmp_path):
    ray = pytest.importorskip("ray")
    marks = tmp_path / "marks"
    marks.mkdir()

    def trainer(config, seeds, out_dir):  # a closure: Ray ships it by value
        (marks / f"{run_key(config)}_{uuid.uuid4().hex[:6]}").touch()
        if "Seaquest" in config["env"] and not (marks / "healed").exists():
            os._exit(1)
        return {s: {"return": float(s)} for s in seeds}

    exp, budget = mini(), Budget(0.001, 2)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        rep = sweep(exp, budget, tmp_path / "out", trainer=trainer, backend="ray", log=QUIET)
        assert len(rep.done) == 2 and len(rep.failed) == 2  # no retries: a crash is reported
        assert len(ResultStore(tmp_path / "out").read().records) == 4
        (marks / "healed").touch()
        n = len(list(marks.iterdir()))
        rep = sweep(exp, budget, tmp_path / "out", trainer=trainer, backend="ray", log=QUIET)
        assert rep.ok and len(rep.done) == 2 and len(list(marks.iterdir())) == n + 2
    finally:
        ray.shutdown()
    assert len(ResultStore(tmp_path / "out").read().records) == 8


# ---------------------------------------------------------------------------- inputs and the real adapter
def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(PipelagError, match="unknown experiment 'table6'.*Valid experiments: table1, table2"):
        sweep("table6", Budget(), tmp_path)
    with pytest.raises(PipelagError, match="unknown backend"):
        sweep("table3", Budget(), tmp_path, trainer=counting_trainer, backend="slurm")
    with pytest.raises(PipelagError, match="cannot load trainer"):
        sweep("table3", Budget(), tmp_path, trainer="tests.nothing:here")
    with pytest.raises(PipelagError, match="fraction in"):
        Budget(1.5)


def test_every_spec_maps_onto_the_trainers_configs():
    """Our specs → PPOConfig / SACConfig fields, valid for every supported run of every experiment."""
    ppo = pytest.importorskip("pipelag.algorithms.ppo.config")
    sac = pytest.importorskip("pipelag.algorithms.sac.config")
    n = 0
    for exp in EXPERIMENTS.values():
        for t in exp.tasks(Budget()):
            if t.unsupported or t.spec.get("dropout"):
                continue
            cls = ppo.PPOConfig if t.spec["algo"] == "ppo" else sac.SACConfig
            cfg = cls(**_trainer_fields(t.spec)).validate()
            assert (cfg.env_id, cfg.delta, cfg.arch, cfg.total_timesteps) == (
                t.spec["env"], t.spec["delta"], t.spec["arch"], t.spec["steps"])
            n += 1
    assert n > 300


def test_trainer_options_reach_the_trainer_and_are_part_of_the_run_identity(tmp_path, fake_dir):
    seen = []

    def trainer(config, seeds, out_dir):
        seen.append(_trainer_fields(config))
        return counting_trainer(config, seeds, out_dir)

    quick = Budget(0.001, 1, (("eval_episodes", 4), ("eval_max_steps", 100)))
    rep = sweep("table3", quick, tmp_path, trainer=trainer, log=QUIET)
    assert len(rep.done) == 15 and all(f["eval_episodes"] == 4 and f["eval_max_steps"] == 100 for f in seen)
    rep = sweep("table3", Budget(0.001, 1), tmp_path, trainer=trainer, log=QUIET)  # other runs: trained anew
    assert len(rep.done) == 15 and "eval_episodes" not in seen[-1]
    assert quick.cli_args() == " --budget 0.001 --seeds 1 --set eval_episodes=4 --set eval_max_steps=100"

    from pipelag.cli import main

    assert main(["sweep", "table3", "--budget", "0.001", "--seeds", "1", "--set", "eval_episodes=4", "--set",
                 "eval_max_steps=100", "--out", str(tmp_path), "--trainer",
                 "tests.experiments.test_sweep:counting_trainer"]) == 0
    assert len(calls(fake_dir)) == 30  # nothing new: the same options name the same runs


def device_trainer(config: dict, seeds: list[int], out_dir: str) -> dict:
    """Reports the GPU the process backend gave it (as a number, through `greedy`)."""
    _mark(config, seeds)
    return {s: {"return": fake_return(config, s), "greedy": float(os.environ.get("CUDA_VISIBLE_DEVICES", "-1"))}
            for s in seeds}


def test_process_backend_spreads_runs_over_the_given_gpus(tmp_path, fake_dir):
    exp, budget = mini(), Budget(0.001, 1)
    rep = sweep(exp, budget, tmp_path, trainer=device_trainer, backend="process", workers=2, gpus=["0", "3"],
                log=QUIET)
    assert rep.ok and len(rep.done) == 4
    devices = [r["metrics"]["greedy"] for r in ResultStore(tmp_path).read().records]
    assert set(devices) == {0.0, 3.0}  # both GPUs used, each run saw exactly one of them
    with pytest.raises(PipelagError, match="--gpus"):
        sweep(exp, budget, tmp_path / "x", trainer=device_trainer, backend="local", gpus=["0"], log=QUIET)


def test_several_workers_per_gpu_get_a_note_about_sharing_the_gpu(tmp_path):
    exp, budget = mini(), Budget(0.001, 1)
    for workers, gpus, noted in ((3, ["0"], True), (2, ["0", "1"], False)):
        lines: list[str] = []
        sweep(exp, budget, tmp_path, trainer=device_trainer, backend="process", workers=workers, gpus=gpus,
              dry_run=True, log=lines.append)
        assert any("several trainings per GPU" in x and "MPS" in x for x in lines) == noted, lines


def test_one_column_of_a_table_sweeps_only_its_runs_and_names_its_command(tmp_path, fake_dir):
    full = get_experiment("table9")
    exp = full.only_columns(["breakout"])  # case and version suffix are optional
    assert exp.columns == ("Breakout-v0",) and exp.name == "table9-Breakout-v0"
    assert {t.spec["env"] for t in exp.tasks(Budget(0.001, 1))} == {"MinAtar/Breakout-v0"}
    assert len(exp.tasks(Budget(0.001, 1))) == 12  # 11 agents + the instantaneous baseline
    rep = sweep(exp, Budget(0.001, 1), tmp_path, trainer=counting_trainer, log=QUIET)
    assert rep.ok and len(rep.done) == 12 and len(calls(fake_dir)) == 12
    # the full table then only trains the other columns
    rep = sweep(full, Budget(0.001, 1), tmp_path, trainer=counting_trainer, log=QUIET, dry_run=True)
    assert len(rep.skipped) == 12 and "MinAtar/Breakout-v0" not in {t.spec["env"] for t, _ in rep.planned}
    assert exp.cli_name == "table9 --columns Breakout-v0"
    with pytest.raises(PipelagError, match="no column 'Pong'.*Breakout-v0"):
        full.only_columns(["Pong"])


def test_the_default_policy_option_is_part_only_of_the_runs_it_changes():
    """β acts only between the env steps of a tick (δ > 1): with --set default_policy=noop, Table 10's δ = 1
    and baseline runs keep their keys (so they are not trained again), the δ = 4 runs get new ones."""
    plain = Budget(0.05, 2, (("compute_dtype", "bfloat16"),))
    noop = Budget(0.05, 2, (("compute_dtype", "bfloat16"), ("default_policy", "noop")))
    exp = get_experiment("table10")
    old, new = {True: set(), False: set()}, {True: set(), False: set()}
    for t in exp.tasks(plain):
        old[t.spec["delta"] > 1].add(t.key)
    for t in exp.tasks(noop):
        new[t.spec["delta"] > 1].add(t.key)
        assert ("default_policy" in t.spec.get("trainer_options", {})) == (t.spec["delta"] > 1)
    assert new[False] == old[False] and len(old[False]) == 18
    assert not new[True] & old[True] and len(new[True]) == 16


# ---------------------------------------------------------------------------- compatible configs batched
def test_compatible_runs_train_in_one_batched_call_and_are_stored_per_run(tmp_path, fake_dir):
    """Figure 12 on MJX: the six dropout rates > 0 (same agent, env, δ) are one vmapped trainer call; the
    baseline and the rate-0 agent run on their own. Records are per run, as if each had run alone."""
    exp, budget = get_experiment("fig12"), Budget(0.01, seeds=2, mujoco="mjx")
    rep = sweep(exp, budget, tmp_path / "out", trainer=batching_trainer, log=QUIET)
    assert rep.ok and len(rep.done) == 8
    assert len(calls(fake_dir)) == 3  # baseline, dropout 0, one call for dropouts 0.1 … 0.6
    (record,) = tmp_path.glob("batched-*.txt")
    out_dir, *batched_keys = record.read_text().splitlines()
    tasks = {t.key: t for t in exp.tasks(budget)}
    assert sorted(tasks[k].spec["dropout"] for k in batched_keys) == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    assert Path(out_dir).name == "seeds-0-1" and Path(out_dir).parent.name.startswith("batch-")
    store = ResultStore(tmp_path / "out").read()
    assert store.finished() == {(k, s) for k in tasks for s in (0, 1)}
    assert all(r["return"] == fake_return(r["spec"], r["seed"]) for r in store.records)
    rep = sweep(exp, budget, tmp_path / "out", trainer=batching_trainer, log=QUIET)  # all finished
    assert rep.done == [] and len(calls(fake_dir)) == 3

    # --no-batch: one call per run; the gymnasium (CPU) env: nothing to vmap, one call per run
    for i, b in enumerate((Budget(0.01, seeds=3, mujoco="mjx"), Budget(0.01, seeds=2))):
        n = len(calls(fake_dir))
        rep = sweep(exp, b, tmp_path / f"out{i}", trainer=batching_trainer, log=QUIET, batch=i == 1)
        assert rep.ok and len(rep.done) == 8 and len(calls(fake_dir)) == n + 8


def test_batch_keys_group_only_runs_that_differ_in_delta_or_dropout_rate():
    """SAC: δ and dropout rate; PPO: δ; never δ < 1, another agent, env or budget."""
    mjx = [t for t in get_experiment("fig12").tasks(Budget(0.01, seeds=2, mujoco="mjx"))]
    keys = {(t.spec["arch"], t.spec.get("dropout", 0)): run_config.batch_key(t.spec) for t in mjx}
    drops = {keys[k] for k in keys if k[1]}
    assert len(drops) == 1 and keys[("mlp-proj-from-obs", 0)] not in drops  # rate 0 draws no masks: alone
    assert keys[("mlp", 0)] != keys[("mlp-proj-from-obs", 0)]  # another agent
    # Figure 3 on MJX: each agent's δ = 1, 2, 3, 4 share one program per env, and nothing else does
    fig3 = [t for t in get_experiment("fig3").tasks(Budget(0.01, seeds=2, mujoco="mjx")) if not t.unsupported]
    groups: dict = {}
    for t in fig3:
        groups.setdefault(run_config.batch_key(t.spec), []).append(t.spec)
    big = [g for g in groups.values() if len(g) > 1]
    assert big and all(sorted(x["delta"] for x in g) == [1.0, 2.0, 3.0, 4.0] for g in big)
    assert all(len({(x["env"], x["arch"], x["action_history"]) for x in g}) == 1 for g in big)
    assert run_config.batch_key({**fig3[0].spec, "delta": 0.5}) is None  # δ < 1 changes the network
    gym = get_experiment("fig12").tasks(Budget(0.01, seeds=2))
    assert all(run_config.batch_key(t.spec) is None for t in gym)  # host envs: one process per env
    # Table 10: each PPO agent's δ = 1 and δ = 4 share one program per env; the baselines run alone
    ppo: dict = {}
    for t in get_experiment("table10").tasks(Budget(0.01, seeds=2)):
        ppo.setdefault(run_config.batch_key(t.spec), []).append(t.spec)
    assert sorted(len(g) for g in ppo.values()) == [1, 1] + [2] * 16
    assert all(sorted(x["delta"] for x in g) == [1.0, 4.0] for g in ppo.values() if len(g) == 2)
    # other seeds or another budget never share a call
    a, b = mjx[-1], get_experiment("fig12").tasks(Budget(0.02, seeds=2, mujoco="mjx"))[-1]
    assert run_config.batch_key(a.spec) != run_config.batch_key(b.spec)
    jobs = plan_jobs([(t, [0, 1] if t.spec.get("dropout", 0) < 0.35 else [1]) for t in mjx], batching_trainer)
    assert sorted(len(j.tasks) for j in jobs) == [1, 1, 3, 3]


def test_a_failed_batched_call_fails_its_runs_only_and_a_rerun_resumes_in_the_same_directory(
        tmp_path, fake_dir, monkeypatch):
    exp, budget = get_experiment("fig12"), Budget(0.01, seeds=2, mujoco="mjx")
    monkeypatch.setenv("PIPELAG_FAIL_BATCH", "1")
    rep = sweep(exp, budget, tmp_path / "out", trainer="tests.experiments.test_sweep:batching_trainer",
                backend="process", workers=2, log=QUIET)
    assert len(rep.failed) == 6 and len(rep.done) == 2 and all("batched call failed" in e for _, _, e in rep.failed)
    first_dir = next(tmp_path.glob("batched-*.txt")).read_text().splitlines()[0]
    monkeypatch.delenv("PIPELAG_FAIL_BATCH")
    for f in tmp_path.glob("batched-*.txt"):
        f.unlink()
    rep = sweep(exp, budget, tmp_path / "out", trainer="tests.experiments.test_sweep:batching_trainer",
                backend="process", workers=2, log=QUIET)
    assert rep.ok and len(rep.done) == 6 and len(rep.skipped) == 2
    assert next(tmp_path.glob("batched-*.txt")).read_text().splitlines()[0] == first_dir  # its checkpoint is there
    assert len(ResultStore(tmp_path / "out").read().finished()) == 16


def test_the_real_batched_sac_call_returns_what_each_run_alone_returns(tmp_path):
    """run_config.batched (one vmapped SAC program for two configs differing in δ and dropout rate)
    against run_config per spec."""
    spec = {"algo": "sac", "env": "PointTarget-v0", "delta": 1.0, "arch": "mlp-proj-from-obs", "instantaneous": False,
            "action_history": 1, "frame_stack": 0, "steps": 150,
            "trainer_options": {"hidden": 16, "critic_hidden": 16, "batch_size": 8, "eval_episodes": 2}}
    specs = [{**spec, "dropout": 0.2}, {**spec, "dropout": 0.5, "delta": 2.0}]
    assert run_config.batch_key(specs[0]) == run_config.batch_key(specs[1]) is not None
    batched = run_config.batched(specs, [0, 1], str(tmp_path / "batch"))
    alone = run_config(specs[1], [0, 1], str(tmp_path / "alone"))  # the second member: its rate, its seeds
    assert batched[0].keys() == batched[1].keys() == alone.keys() == {0, 1}
    for seed in (0, 1):
        assert batched[1][seed]["return"] == pytest.approx(alone[seed]["return"], rel=1e-4)
    assert batched[0][0]["return"] != batched[1][0]["return"]
    again = run_config.batched(specs, [0, 1], str(tmp_path / "batch"))  # finished: read back, not trained
    assert again == batched
    with pytest.raises(PipelagError, match="differ only in δ"):
        run_config.batched([specs[0], {**specs[1], "arch": "mlp"}], [0], str(tmp_path / "bad"))


def test_the_real_batched_ppo_call_returns_what_each_run_alone_returns(tmp_path):
    """run_config.batched for PPO runs that differ only in δ (one vmapped program) against run_config."""
    spec = {"algo": "ppo", "env": "MinAtar/Breakout-v0", "delta": 1.0, "arch": "cnn", "instantaneous": False,
            "action_history": 0, "frame_stack": 0, "steps": 32,
            "trainer_options": {"channels": [2, 2, 2], "hidden": 8, "critic_hidden": 8, "num_envs": 4,
                                "num_steps": 4, "eval_episodes": 2, "eval_max_steps": 20}}
    specs = [spec, {**spec, "delta": 2.0}]
    assert run_config.batch_key(specs[0]) == run_config.batch_key(specs[1]) is not None
    batched = run_config.batched(specs, [0], str(tmp_path / "batch"))
    alone = run_config(specs[1], [0], str(tmp_path / "alone"))
    assert batched[1][0]["return"] == pytest.approx(alone[0]["return"], rel=1e-5)
    assert batched[1][0]["agent_steps"] == alone[0]["agent_steps"] == 32
    assert run_config.batched(specs, [0], str(tmp_path / "batch")) == batched  # finished: read back
