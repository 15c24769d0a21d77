"""`--mujoco mjx` / `--env-option`: the MuJoCo cells of an experiment train on the JAX port MJX/<Task>-v4
with the given env options, as runs of their own; every other cell and every default key stay as they were.
Trainers are fakes (no MJX program is compiled); only the option check builds an MJX env, in a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelag.cli import main
from pipelag.errors import PipelagError
from pipelag.experiments import sweep as sweep_mod
from pipelag.experiments.definitions import (
    Budget,
    Cell,
    Entry,
    Experiment,
    PlotSpec,
    Row,
    get_experiment,
    run_key,
)
from pipelag.experiments.importer import import_runs
from pipelag.experiments.report import compute, markdown
from pipelag.experiments.store import ResultStore, make_record
from pipelag.experiments.sweep import _trainer_fields, run_config, sweep

REPO = Path(__file__).resolve().parents[2]
QUIET = lambda s: None  # noqa: E731
HC, BREAKOUT = "HalfCheetah-v4", "MinAtar/Breakout-v0"
FAST = (("ls_iterations", 8), ("unroll_line_search", True))
MJX = Budget(0.001, 2, mujoco="mjx", env_options=FAST)
GYM = Budget(0.001, 2)
TRAINER = ["--trainer", "tests.experiments.test_sweep:counting_trainer"]


@pytest.fixture
def fake_dir(tmp_path, monkeypatch) -> Path:
    """Where test_sweep's counting_trainer records its calls."""
    d = tmp_path / "calls"
    monkeypatch.setenv("PIPELAG_FAKE_DIR", str(d))
    return d


def mixed() -> Experiment:
    """One MuJoCo column and one MinAtar column (each with its instantaneous baseline): 4 runs."""
    row = Row("delayed", {HC: Entry((Cell(HC, "mlp3", 1.0),)), BREAKOUT: Entry((Cell(BREAKOUT, "cnn", 1.0),))})
    return Experiment("mixed", "Test", "MuJoCo + MinAtar", (HC, BREAKOUT), (row,), "returns", PlotSpec("bars"))


def specs(budget: Budget) -> dict[tuple[str, str], dict]:
    """(domain env as in the table, arch) → spec."""
    return {(c.env, c.spec(budget)["arch"]): c.spec(budget) for c in mixed().cells()}


@pytest.fixture
def trainer_configs(monkeypatch):
    """The real adapter (`run_config`) with the trainers' `run` replaced: records the PPOConfig / SACConfig
    it builds, i.e. exactly what the real trainer would train."""
    from pipelag.algorithms.ppo.config import PPOConfig
    from pipelag.algorithms.sac.config import SACConfig

    seen: list = []

    def fake_sac_run(cfg, out_dir, num_seeds, seed, resume):
        seen.append(cfg)
        seeds = list(range(seed, seed + num_seeds))
        return {"seeds": seeds, "eval_return_mean_action": {"per_seed": [10.0 + s for s in seeds]}}

    def fake_ppo_run(cfg, seeds, out_dir, resume):
        seen.append(cfg)
        return {"seeds": list(seeds), "eval_sampled": {"per_seed": [1.0 + s for s in seeds]}}

    algos = {"sac": (SACConfig, fake_sac_run), "ppo": (PPOConfig, fake_ppo_run)}
    monkeypatch.setattr(sweep_mod, "_load_algo", lambda algo: algos[algo])
    return seen


# ---------------------------------------------------------------------------- what the trainer gets
def test_mjx_flag_trains_the_mujoco_cells_on_the_mjx_port_with_the_env_options(tmp_path, trainer_configs):
    from pipelag.algorithms.sac.train import resolve_backend

    rep = sweep(mixed(), MJX, tmp_path, trainer=run_config, log=QUIET)
    assert rep.ok and len(rep.done) == 4 and rep.unsupported == []
    sac = [c for c in trainer_configs if type(c).__name__ == "SACConfig"]
    ppo = [c for c in trainer_configs if type(c).__name__ == "PPOConfig"]
    assert len(sac) == 2 and len(ppo) == 2
    for cfg in sac:  # the baseline and the delayed agent
        assert cfg.env_id == "MJX/HalfCheetah-v4"
        assert cfg.env_options == {"ls_iterations": 8, "unroll_line_search": True}
        assert resolve_backend(cfg) == "jax"  # SAC's jitted driver, env inside
    assert {(c.arch, c.instantaneous) for c in sac} == {("mlp", True), ("mlp", False)}
    for cfg in ppo:  # MinAtar: untouched
        assert cfg.env_id == BREAKOUT and cfg.env_options == {}

    # the same sweep with the defaults: the CPU env, and the MinAtar configs are the same as above
    trainer_configs.clear()
    rep = sweep(mixed(), GYM, tmp_path, trainer=run_config, log=QUIET)
    assert rep.ok and len(rep.done) == 2 and len(rep.skipped) == 2  # the MinAtar runs are already there
    assert {(c.env_id, str(c.env_options)) for c in trainer_configs} == {(HC, "{}")}
    assert all(resolve_backend(c) == "host" for c in trainer_configs)


def test_mjx_and_env_options_are_part_of_a_mujoco_runs_identity_only():
    gym, mjx = specs(GYM), specs(MJX)
    ls8 = specs(Budget(0.001, 2, mujoco="mjx", env_options=(("ls_iterations", 8),)))
    plain = specs(Budget(0.001, 2, mujoco="mjx"))
    fast_gym = specs(Budget(0.001, 2, env_options=(("speedup", 2),)))
    for k in gym:
        keys = {run_key(s[k]) for s in (gym, mjx, ls8, plain, fast_gym)}
        assert len(keys) == (1 if k[0] == BREAKOUT else 5), k
        assert mjx[k] == ({**gym[k], "env": "MJX/HalfCheetah-v4", "env_options": dict(FAST)} if k[0] == HC
                          else gym[k])
    assert plain[(HC, "mlp")]["env"] == "MJX/HalfCheetah-v4" and "env_options" not in plain[(HC, "mlp")]
    assert fast_gym[(HC, "mlp")]["env"] == HC and fast_gym[(HC, "mlp")]["env_options"] == {"speedup": 2}
    # option order does not matter
    assert Budget(0.001, 2, mujoco="mjx", env_options=FAST[::-1]) == MJX


def test_the_defaults_leave_specs_keys_and_existing_stores_as_they_were():
    # a MuJoCo spec exactly as before the flags existed (no env_options field, the gymnasium id)
    assert Cell(HC, "sac").spec(Budget(0.05)) == {
        "algo": "sac", "env": HC, "delta": 1.0, "arch": "mlp", "instantaneous": True, "action_history": 0,
        "frame_stack": 0, "steps": 50_000, "num_layers": 3}
    assert Budget(0.05, 2, mujoco="gym", env_options=()) == Budget(0.05, 2)
    b = Budget(0.05, 2, (("compute_dtype", "bfloat16"),))
    assert (b.tag(), b.cli_args()) == ("b0.05-s2-od5c912", " --budget 0.05 --seeds 2 --set compute_dtype=bfloat16")
    # the committed Table 10 store: every finished run is still found under its cell's key
    store = ResultStore(REPO / "docs/results/sweeps/table10-b0.05").read()
    if not store.records:
        pytest.skip("the committed table10-b0.05 store is not in this checkout")
    noop = Budget(0.05, 2, (("compute_dtype", "bfloat16"), ("default_policy", "noop")))  # its δ = 4 runs with β = noop
    keys = {t.key for t in get_experiment("table10").tasks(b)}
    keys_noop = {t.key for t in get_experiment("table10").tasks(noop)}
    assert set(store.by_key()) <= keys | keys_noop and len(set(store.by_key()) & keys) >= 12


# ---------------------------------------------------------------------------- report
def put(store: ResultStore, cell: Cell, returns: list[float], budget: Budget) -> None:
    spec = cell.spec(budget)
    store.append([make_record(run_key(spec), s, {"return": r}, spec, 1.0) for s, r in enumerate(returns)])


def test_report_with_the_same_flags_finds_the_mjx_runs_and_says_so(tmp_path, capsys):
    s = ResultStore(tmp_path)
    put(s, Cell(HC, "sac"), [1000.0, 1200.0], MJX)
    put(s, Cell(HC, "mlp3", 1.0), [550.0, 650.0], MJX)
    put(s, Cell(HC, "mlp3", 1.0), [1.0, 1.0], GYM)  # a CPU result in the same store: never mixed in
    exp = mixed().only_columns([HC])
    res = compute(exp, MJX, tmp_path)
    assert res.entries[(0, HC)].raw.mean == 600.0 and res.entries[(0, HC)].norm.mean == pytest.approx(600 / 1100)
    md = markdown(res)
    assert "MuJoCo on MJX (MJX/<Task>-v4) with env options ls_iterations=8 unroll_line_search=true" in md
    with pytest.raises(PipelagError, match="no instantaneous baseline run for sac HalfCheetah-v4 δ=1"):
        compute(exp, GYM, tmp_path)  # the CPU cell is not normalised by the MJX baseline

    # the command line: the same flags find them; what is missing is named with the flags
    put(s, Cell(HC, "sac"), [900.0, 1100.0], Budget(0.05, 2, mujoco="mjx", env_options=FAST))
    flags = ["--budget", "0.05", "--seeds", "2", "--mujoco", "mjx", "--env-option", "ls_iterations=8",
             "--env-option", "unroll_line_search=true", "--out", str(tmp_path), "--no-plots"]
    assert main(["report", "table5", "--columns", "HalfCheetah", *flags]) == 0
    out = capsys.readouterr().out
    assert "| SAC (instantaneous, no delay) | 1000 ± 100 (n=2)" in out and "MuJoCo on MJX" in out
    assert ("1 runs not in the store yet (`pipelag sweep table5 --columns HalfCheetah-v4 --budget 0.05 --seeds 2 "
            f"--mujoco mjx --env-option ls_iterations=8 --env-option unroll_line_search=true --out {tmp_path}`)") in out
    assert (tmp_path / "reports" / f"table5-HalfCheetah-v4-{Budget(0.05, 2, mujoco='mjx', env_options=FAST).tag()}"
            ".md").exists()
    assert main(["report", "table5", "--columns", "HalfCheetah", *flags[:4], "--out", str(tmp_path)]) == 2
    assert "no results for table5-HalfCheetah-v4" in capsys.readouterr().err  # without the flags: CPU runs only


def test_an_mjx_run_trained_outside_the_sweep_is_imported_into_its_mjx_cell(tmp_path):
    exp = get_experiment("table5").only_columns(["HalfCheetah"])
    task = next(t for t in exp.tasks(MJX) if t.spec["arch"] == "mlp")  # the SAC baseline on MJX
    run = tmp_path / "run"  # as `pipelag train --algo sac --env MJX/HalfCheetah-v4 --env-option ...` writes it
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": _trainer_fields(task.spec)}))
    (run / "results.json").write_text(json.dumps({"algo": "sac", "seeds": [0, 1],
                                                  "eval_return_mean_action": {"per_seed": [5.0, 7.0]}}))
    with pytest.raises(PipelagError, match="matches no cell of table5-HalfCheetah-v4.*--mujoco / --env-option"):
        import_runs(exp, GYM, tmp_path / "store", [run], log=QUIET)
    assert import_runs(exp, MJX, tmp_path / "store", [run], log=QUIET) == 2
    assert set(ResultStore(tmp_path / "store").read().by_key()) == {task.key}


# ---------------------------------------------------------------------------- the command line
def test_sweep_then_report_from_the_command_line(tmp_path, fake_dir, capsys):
    args = ["table5", "--columns", "HalfCheetah", "--budget", "0.001", "--seeds", "1", "--mujoco", "mjx",
            "--env-option", "ls_iterations=8", "--out", str(tmp_path)]
    assert main(["sweep", *args, *TRAINER]) == 0  # checks the options by making the MJX env once (CPU subprocess)
    recs = ResultStore(tmp_path).read().records
    assert len(recs) == 2 and {r["spec"]["env"] for r in recs} == {"MJX/HalfCheetah-v4"}
    assert all(r["spec"]["env_options"] == {"ls_iterations": 8} for r in recs)
    assert main(["report", *args, "--no-plots"]) == 0 and "MuJoCo on MJX" in capsys.readouterr().out
    assert main(["sweep", *args, *TRAINER, "--dry-run"]) == 0
    assert "0 runs to train (dry run), 2 already finished" in capsys.readouterr().out


def test_experiments_without_mujoco_cells_ignore_the_flags(tmp_path, fake_dir, capsys):
    assert main(["sweep", "table3", "--budget", "0.001", "--seeds", "1", "--out", str(tmp_path), *TRAINER]) == 0
    capsys.readouterr()
    assert main(["sweep", "table3", "--budget", "0.001", "--seeds", "1", "--out", str(tmp_path), *TRAINER,
                 "--mujoco", "mjx", "--env-option", "ls_iterations=8"]) == 0
    out, err = capsys.readouterr()
    assert "0 runs trained, 15 already finished" in out  # the same runs
    assert "table3 has no MuJoCo cells; --mujoco and --env-option change nothing" in err


@pytest.mark.parametrize("flags, message", [
    (["--env-option", "ls_iterations=8"], "--env-option ls_iterations: an option of the MJX port of the MuJoCo "
                                          "envs only, not of the gymnasium (CPU) envs: add --mujoco mjx"),
    (["--mujoco", "mjx", "--env-option", "ls_iteration=8"], "--env-option ls_iteration: not an option of the MJX "
                                                            "envs; valid options: speedup, max_episode_steps"),
    (["--mujoco", "cuda"], "--mujoco must be one of gym, mjx, got 'cuda'"),
    (["--mujoco", "mjx", "--env-option", "ls_iterations"], "--env-option needs KEY=VALUE"),
    (["--mujoco", "mjx", "--env-option", "ls_iterations=0"],  # the MJX env's own check, in the subprocess
     "MJX/HalfCheetah-v4 cannot be made with env options {'ls_iterations': 0}: ls_iterations must be None"),
    (["--env-option", "speedup=0.5"], "--env-option: speedup must be a number ≥ 1"),
    (["--env-option", "no_such_option=1"], "the gymnasium (CPU) env HalfCheetah-v4 cannot be made with "
                                           "{'no_such_option': 1} (TypeError"),
])
def test_bad_flags_are_one_clear_line(tmp_path, fake_dir, capsys, flags, message):
    if "speedup" in str(flags) or "no_such" in str(flags):
        pytest.importorskip("gymnasium")
        pytest.importorskip("mujoco")
    assert main(["sweep", "table5", "--budget", "0.001", "--out", str(tmp_path), *TRAINER, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "results.jsonl").exists() and not fake_dir.exists()  # nothing was trained
