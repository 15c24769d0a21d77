"""End-to-end SAC: learning on a toy task with a pipelined actor, run directory, exact resume, the host
loop on a gymnasium env, the CLI."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from pipelag.algorithms.sac import SACConfig, make_train
from pipelag.algorithms.sac.cli import config_from_args
from pipelag.algorithms.sac.train import make_driver, run
from pipelag.cli import main as cli_main
from pipelag.errors import PipelagError

SMALL = dict(hidden=32, critic_hidden=32, batch_size=32, q_lr=3e-3, policy_lr=1e-3)


def test_pipelined_sac_beats_random_on_point_target():
    """A 3-layer proj-from-obs actor (acts on o_(t-1) at the earliest) with its last 2 actions learns to
    reach the target: random play scores ≈ −4 per 8-step episode, the trained delayed actor ≈ −1.2.
    Pure path: jit(vmap(train)) over 2 seeds."""
    cfg = SACConfig(env_id="PointTarget-v0", total_timesteps=3000, learning_starts=200, steps_per_chunk=200,
                    eval_episodes=64, **SMALL)
    train = make_train(cfg)
    assert train.driver.agent.window == 4
    out = jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(0), 2))
    driver = train.driver
    params0 = jax.tree.map(lambda x: x[0], out["state"].actor_params)
    random_return = float(jax.jit(lambda k: driver.evaluate(params0, k, 256, "random").mean())(jax.random.PRNGKey(9)))
    assert -5.0 < random_return < -3.0
    mean_action = np.asarray(out["eval_mean"]).mean(axis=1)
    sampled = np.asarray(out["eval_sample"]).mean(axis=1)
    assert (mean_action > random_return + 2.0).all(), (mean_action, random_return)
    assert (sampled > random_return + 1.5).all(), (sampled, random_return)
    curve = np.asarray(out["metrics"]["episode_return"])
    assert curve.shape == (2, 1 + (3000 - 200) // 200)
    assert (np.nanmean(curve[:, -3:], axis=1) > curve[:, 0] + 1.5).all()
    alpha = np.asarray(out["metrics"]["alpha"])
    assert np.isnan(alpha[:, 0]).all() and (alpha[:, -1] < 0.5).all()  # autotuned entropy coefficient went down


@pytest.fixture(scope="module")
def toy_setup():
    cfg = SACConfig(env_id="PointTarget-v0", total_timesteps=600, learning_starts=100, steps_per_chunk=100,
                    checkpoint_every=200, eval_episodes=4, **SMALL)
    return cfg, make_driver(cfg)


def test_jax_run_directory_and_exact_resume(tmp_path, toy_setup):
    cfg, driver = toy_setup
    full = run(cfg, tmp_path / "full", num_seeds=2, driver=driver, progress=False)
    part = run(cfg, tmp_path / "part", num_seeds=2, driver=driver, progress=False, stop_after_steps=300)
    assert part == {"stopped_at_step": 300}
    assert not (tmp_path / "part" / "results.json").exists()
    with pytest.raises(PipelagError, match="already holds a run"):
        run(cfg, tmp_path / "part", num_seeds=2, driver=driver, progress=False)
    with pytest.raises(PipelagError, match="config differs"):
        run(cfg.replace(gamma=0.5), tmp_path / "part", num_seeds=2, resume=True, progress=False)
    with open(tmp_path / "part" / "metrics.jsonl", "a") as f:  # as if it crashed after logging past the checkpoint
        f.write('{"step": 400, "q_loss": 1.0}\n{"step": 5')
    ns = type("NS", (), {"resume": True, "out": str(tmp_path / "part")})()
    assert config_from_args(ns) == (cfg, 2, 0)  # the CLI's --resume reads the stored config back
    resumed = run(cfg, tmp_path / "part", num_seeds=2, resume=True, driver=driver, progress=False)
    for a, b in zip(jax.tree.leaves(full["runner"]), jax.tree.leaves(resumed["runner"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert full["eval_return_mean_action"] == resumed["eval_return_mean_action"]
    for d in ("full", "part"):
        res = json.loads((tmp_path / d / "results.json").read_text())
        assert res["agent_steps"] == 600 and res["backend"] == "jax" and len(res["policies"]) == 2
        steps = [r["step"] for r in map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())]
        assert steps == list(range(100, 601, 100))
        curves = np.load(tmp_path / d / "curves.npz")
        assert curves["episode_return"].shape == (2, 6) and curves["eval_mean"].shape == (2, 4)


def test_time_budget_stops_at_a_chunk_boundary_and_still_evaluates(tmp_path, toy_setup, monkeypatch):
    """A fake clock that advances 1 s per reading: a 2.5 s budget ends training after a few chunks; the
    results say so, and equal those of a run planned that long (same steps, same evaluation)."""
    from pipelag.algorithms.sac import train as sac_train

    cfg, driver = toy_setup
    clock = iter(range(10**6))
    monkeypatch.setattr(sac_train, "_clock", lambda: float(next(clock)))
    res = run(cfg, tmp_path / "b", num_seeds=2, driver=driver, progress=False, time_budget_s=2.5)
    early = res["stopped_early"]
    assert early == {"reason": "time budget", "agent_steps": 300, "planned_agent_steps": 600}  # 3 chunks of 100
    assert res["agent_steps"] == early["agent_steps"]
    assert json.loads((tmp_path / "b" / "results.json").read_text())["stopped_early"] == early
    monkeypatch.undo()
    short = run(cfg.replace(total_timesteps=early["agent_steps"]), tmp_path / "s", num_seeds=2, progress=False)
    assert "stopped_early" not in short
    assert short["eval_return_mean_action"] == res["eval_return_mean_action"]
    with pytest.raises(PipelagError, match="time-budget"):
        run(cfg, tmp_path / "z", num_seeds=1, driver=driver, progress=False, time_budget_s=0)


def test_checkpoints_store_only_the_filled_buffer_and_old_whole_buffer_ones_still_resume(tmp_path, toy_setup):
    """A checkpoint holds the replay buffer's written slots only, and resuming from it, or from a checkpoint
    of the whole buffer as written before (no ``buffer_rows``), continues exactly."""
    from pipelag.algorithms.common.checkpoint import load_checkpoint, save_checkpoint
    from pipelag.algorithms.sac.buffer import trimmed, untrimmed

    cfg, driver = toy_setup
    full = run(cfg, tmp_path / "full", num_seeds=2, driver=driver, progress=False)
    run(cfg, tmp_path / "part", num_seeds=2, driver=driver, progress=False, stop_after_steps=300)
    ckpt = tmp_path / "part" / "checkpoint.msgpack"
    template = driver.compiled_init()(jax.numpy.stack([jax.random.PRNGKey(s) for s in (0, 1)]))
    with pytest.raises(PipelagError, match="expected"):  # not the whole 600-slot buffer ...
        load_checkpoint(ckpt, template)
    stored, meta = load_checkpoint(ckpt, template._replace(buffer=trimmed(template.buffer, 300)))  # ... 300 slots
    assert meta["buffer_rows"] == 300 and meta["step"] == 300 and template.buffer.capacity == 600
    # rewrite it as an old checkpoint of the whole buffer (slots 300.. are a fresh buffer's zeros)
    save_checkpoint(ckpt, stored._replace(buffer=untrimmed(stored.buffer, template.buffer)),
                    {k: v for k, v in meta.items() if k != "buffer_rows"})
    resumed = run(cfg, tmp_path / "part", num_seeds=2, resume=True, driver=driver, progress=False)
    for a, b in zip(jax.tree.leaves(full["runner"]), jax.tree.leaves(resumed["runner"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # a long run early on: the checkpoint is a small fraction of its preallocated buffer
    long = cfg.replace(total_timesteps=200_000)
    run(long, tmp_path / "long", num_seeds=2, progress=False, stop_after_steps=300)
    whole_buffer = 2 * 200_000 * sum(np.asarray(x[0, 0]).nbytes for x in jax.tree.leaves(template.buffer.data))
    assert (tmp_path / "long" / "checkpoint.msgpack").stat().st_size < 0.05 * whole_buffer


def test_host_loop_on_a_gymnasium_env_with_resume_and_policy_export(tmp_path):
    """Pendulum-v1 (actions in [−2, 2]) through the host adapter: the host driver, its checkpoint/resume,
    and the exported policy, which pipelag.runtime reloads to the same mean actions."""
    from pipelag.runtime.policy import PipelinedPolicy

    cfg = SACConfig(env_id="Pendulum-v1", total_timesteps=300, learning_starts=100, steps_per_chunk=100,
                    checkpoint_every=100, eval_episodes=1, **SMALL)
    driver = make_driver(cfg, 2, 0)
    try:
        assert driver.agent.window == 4 and driver.spec.act_dim == 1
        np.testing.assert_allclose(np.asarray(driver.agent.scale), [2.0])
        part = run(cfg, tmp_path / "r", num_seeds=2, driver=driver, progress=False, stop_after_steps=200)
        assert part == {"stopped_at_step": 200}
        res = run(cfg, tmp_path / "r", num_seeds=2, resume=True, driver=driver, progress=False)
    finally:
        driver.close()
    assert res["agent_steps"] == 300 and res["backend"] == "host"
    assert len(res["eval_return_mean_action"]["per_seed"]) == 2
    assert all(-2000 < r < 0 for r in res["eval_return_mean_action"]["per_seed"])  # 200-step Pendulum returns
    actions = np.asarray(res["runner"].buffer.data.action)
    assert np.abs(actions).max() <= 2.0 and np.abs(actions).max() > 1.0  # scaled to the action bounds
    log = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [100, 200, 300] and log[-1]["updates_per_s"] > 0
    for key in ("q_loss", "actor_loss", "entropy", "alpha"):  # the host step's packed metrics, unpacked
        assert np.isfinite(log[-1][key]), key
    assert log[-1]["alpha"] != log[-1]["q_loss"]
    # the deployable policy reproduces the trained actor's mean action, tick by tick
    runner = res["runner"]
    params = jax.tree.map(lambda x: x[1], runner.sac.actor_params)
    policy = PipelinedPolicy.load(res["policies"][1], mode="greedy", backend="jax")
    net, agent = driver.agent.net, driver.agent
    obs_seq = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    state = net.initial_state(params, obs_seq[0])
    policy.reset()
    for o in obs_seq:
        a, state, _ = agent.policy(params, state, o, jax.random.PRNGKey(0), "mean")
        np.testing.assert_allclose(np.asarray(policy.act(o)), np.asarray(a), atol=1e-5)


def test_cli_config_and_errors(tmp_path, capsys):
    ns = type("NS", (), {})()
    ns.out, ns.env, ns.delta, ns.set = str(tmp_path / "x"), "Hopper-v4", 2.0, ["batch_size=64"]
    cfg, num_seeds, seed = config_from_args(ns)  # a namespace with only a few flags: SAC's defaults fill in
    assert (cfg.env_id, cfg.delta, cfg.batch_size, cfg.arch, cfg.action_history) == (
        "Hopper-v4", 2.0, 64, "mlp-proj-from-obs", 2)
    assert (num_seeds, seed) == (1, 0)
    SAC = ["train", "--algo", "sac"]
    for argv, message in [
        ([*SAC, "--env", "PointTarget-v0"], "--out is required"),
        ([*SAC, "--env", "NoSuchEnv-v0", "--out", str(tmp_path / "a")], "unknown env"),
        ([*SAC, "--env", "PointTarget-v0", "--delta", "-1", "--out", str(tmp_path / "b")], "delta"),
        ([*SAC, "--env", "PointTarget-v0", "--arch", "cnn", "--out", str(tmp_path / "c")], "MLP actors"),
        ([*SAC, "--env", "PointTarget-v0", "--set", "nope=1", "--out", str(tmp_path / "d")], "unknown SAC"),
        ([*SAC, "--resume", "--out", str(tmp_path / "e")], "nothing to resume"),
    ]:
        assert cli_main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert not (tmp_path / "a").exists()  # a bad env fails before the run directory is created


@pytest.mark.parametrize("field, values, check", [("dropout", [0.2, 0.5], 1), ("delta", [1.0, 2.0], 0)])
def test_configs_batched_in_one_program_train_as_their_own_runs(tmp_path, field, values, check):
    """run(batch=...) trains every (config, seed) member as one vmapped program; a member ends where its
    own run (same config, same seed) ends, and results/policies are split per config. Dropout rates share
    the actor's masks code; δs share one env looping the largest δ (a δ = 1 member: no RealTime at all
    in its own run, hence the check of that one)."""
    cfg = SACConfig(env_id="PointTarget-v0", total_timesteps=300, learning_starts=100, steps_per_chunk=100,
                    eval_episodes=2, arch="mlp-proj-from-obs", action_history=1, **SMALL)
    batch = [{field: v} for v in values]
    batched = run(cfg, tmp_path / "b", num_seeds=2, progress=False, batch=batch)
    assert batched["batch"] == [batch[0], batch[0], batch[1], batch[1]] and batched["seeds"] == [0, 1, 0, 1]
    for i, v in enumerate(values):
        member = batched["members"][i]
        assert member[field] == v and member["seeds"] == [0, 1]
        assert len(member["policies"]) == 2 and all(f"{field}_{v:g}" in p for p in member["policies"])
    own = run(cfg.replace(**batch[check]), tmp_path / "own", num_seeds=2, progress=False)
    member = batched["members"][check]
    np.testing.assert_allclose(member["eval_return_mean_action"]["per_seed"],
                               own["eval_return_mean_action"]["per_seed"], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(batched["runner"].sac.actor_params),
                    jax.tree.leaves(own["runner"].sac.actor_params), strict=True):
        np.testing.assert_allclose(np.asarray(a)[2 * check:2 * check + 2], np.asarray(b), rtol=1e-3, atol=1e-4)
    assert batched["members"][0]["eval_return_mean_action"] != batched["members"][1]["eval_return_mean_action"]
    stored = json.loads((tmp_path / "b" / "results.json").read_text())
    assert [m[field] for m in stored["members"]] == values
    ns = type("NS", (), {"resume": True, "out": str(tmp_path / "b")})()
    with pytest.raises(PipelagError, match="batched in one program; resume it where it was started"):
        config_from_args(ns)


@pytest.mark.parametrize("batch, match", [
    ([{"dropout": 0.0}, {"dropout": 0.3}], "rates > 0"),
    ([{"delta": 0.5}, {"delta": 2}], "whole numbers ≥ 1"),
    ([{"delta": 2}, {"dropout": 0.1}], "must set the same fields"),
    ([{"gamma": 0.9}, {"gamma": 0.5}], "must set the same fields"),
    ([{"delta": 2}, {"delta": 2.0}], "must differ"),
    ([], "non-empty list"),
])
def test_a_bad_batch_is_one_clear_error(tmp_path, batch, match):
    cfg = SACConfig(env_id="PointTarget-v0", total_timesteps=300, learning_starts=100, **SMALL)
    with pytest.raises(PipelagError, match=match):
        run(cfg, tmp_path / "x", batch=batch, progress=False)
    with pytest.raises(PipelagError, match="needs a JAX env"):
        run(cfg.replace(env_id="Pendulum-v1"), tmp_path / "h", batch=[{"delta": 1}, {"delta": 2}], progress=False)
    assert not (tmp_path / "x").exists()
