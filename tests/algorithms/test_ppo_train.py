"""End-to-end PPO: learning on a toy task with a delayed actor, resume, run directory, CLI errors."""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np
import pytest

from pipelag.algorithms.common.toy_envs import DelayedCue
from pipelag.algorithms.ppo import PPO, PPOConfig, Runner, run, train_seeds
from pipelag.algorithms.ppo.cli import config_from_args
from pipelag.cli import main as cli_main
from pipelag.errors import PipelagError


def test_pipelined_ppo_learns_a_delayed_cue():
    """The rewarded action is shown 3 steps ahead; a 3-layer MLP actor (delay 3 ticks) can learn it.
    Random play earns 16/3 ≈ 5.3 per 16-step episode, the best delayed policy ≈ 14. Pure path:
    ``train_seeds`` = jit(vmap(train)) over 2 seeds."""
    env = DelayedCue(num_actions=3, lag=3, max_steps=16)
    cfg = PPOConfig(env_id="toy", arch="mlp", hidden=32, critic_hidden=32, num_envs=16, num_steps=16,
                    num_minibatches=2, total_timesteps=16 * 16 * 60, lr=1e-3, eval_episodes=64, eval_max_steps=32)
    out = train_seeds(cfg, [0, 1], env)
    assert cfg.num_updates == 60 and out["metrics"]["episode_return"].shape == (2, 60)
    sampled = np.asarray(out["eval"]["sampled"]["returns"]).mean(axis=1)
    greedy = np.asarray(out["eval"]["greedy"]["returns"]).mean(axis=1)
    assert bool(np.asarray(out["eval"]["greedy"]["finished"]).all())
    random_return = 16 / 3
    assert (sampled > random_return + 3.5).all(), sampled
    assert (greedy > random_return + 5.0).all(), greedy
    # the training curve goes up
    curve = np.asarray(out["metrics"]["episode_return"])
    assert (np.nanmean(curve[:, -10:], axis=1) > np.nanmean(curve[:, :5], axis=1) + 2.0).all()


@pytest.fixture(scope="module")
def resume_setup():
    env = DelayedCue(num_actions=3, lag=1, max_steps=6, terminate_prob=0.2)
    cfg = PPOConfig(env_id="toy", arch="mlp", action_history=1, hidden=16, critic_hidden=16, num_envs=4,
                    num_steps=8, num_minibatches=2, total_timesteps=4 * 8 * 6, updates_per_chunk=2,
                    checkpoint_every=2, eval_every=2, eval_episodes=4, eval_max_steps=16)
    return cfg, env, Runner(cfg, [0, 1], env)


def test_resume_is_bit_identical(tmp_path, resume_setup):
    cfg, env, runner = resume_setup
    full = run(cfg, [0, 1], out_dir=tmp_path / "full", runner=runner, progress=False)
    part = run(cfg, [0, 1], out_dir=tmp_path / "part", runner=runner, progress=False, stop_after_updates=2)
    assert part["stopped_at_update"] == 2
    assert not (tmp_path / "part" / "results.json").exists()
    with pytest.raises(PipelagError, match="already holds a run"):
        run(cfg, [0, 1], out_dir=tmp_path / "part", runner=runner, progress=False)
    with open(tmp_path / "part" / "metrics.jsonl", "a") as f:  # as if it crashed after logging past the checkpoint
        f.write('{"step": 96, "update": 3}\n{"step": 128, "upd')
    resumed = run(cfg, [0, 1], out_dir=tmp_path / "part", resume=True, runner=runner, progress=False)
    a = jax.tree.leaves(full["runner_state"])
    b = jax.tree.leaves(resumed["runner_state"])
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    # the interruption mattered for nothing: same results and curves
    ra = json.loads((tmp_path / "full" / "results.json").read_text())
    rb = json.loads((tmp_path / "part" / "results.json").read_text())
    for key in ("eval_sampled", "eval_greedy", "train_return_last5pct"):
        assert ra[key] == rb[key]
    ca, cb = np.load(tmp_path / "full" / "curves.npz"), np.load(tmp_path / "part" / "curves.npz")
    assert set(ca.files) == set(cb.files)
    for k in ca.files:
        np.testing.assert_array_equal(ca[k], cb[k])
    assert ca["episode_return"].shape == (2, 6) and ca["eval_update"].tolist() == [2, 4]
    steps = [json.loads(line)["step"] for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [64, 128, 192]  # one record per chunk; those after the checkpoint were dropped on resume
    # a run that is already finished cannot be resumed into a different config
    with pytest.raises(PipelagError, match="config differs"):
        run(cfg.replace(lr=1e-3), [0, 1], out_dir=tmp_path / "part", resume=True, progress=False,
            env=env)
    # the comparison is meaningful: training moved the parameters after the interruption
    before, after = jax.tree.leaves(part["runner_state"].params), jax.tree.leaves(full["runner_state"].params)
    moved = [not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(before, after, strict=True)]
    assert all(moved)


def _cli(argv, capsys):
    code = cli_main(["train", *argv])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("argv,match", [
    (["--algo", "dqn"], "unknown algorithm 'dqn'"),
    (["--env", "MinAtar/Brekout-v0"], "unknown JAX environment id"),
    (["--env", "MiniGrid-DoorKey-5x5-v0", "--arch", "cnn-skipp"], "unknown architecture 'cnn-skipp'"),
    (["--env", "MiniGrid-DoorKey-5x5-v0", "--arch", "mlp"], "needs a flat observation vector"),
    (["--env", "MiniGrid-DoorKey-5x5-v0", "--set", "clip=0.2"], "unknown PPO config field"),
    (["--env", "MiniGrid-DoorKey-5x5-v0", "--set", "num_minibatches=5"], "divisible"),
    (["--env", "MiniGrid-DoorKey-5x5-v0", "--delta", "1.5"], "delta"),
    (["--resume"], "--resume needs --out"),
])
def test_cli_errors_are_one_line(argv, match, capsys):
    code, err = _cli(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipelag train: error:") and match in lines[0], err


def test_cli_resume_without_checkpoint(tmp_path, capsys):
    code, err = _cli(["--resume", "--out", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "nothing to resume" in err


def test_time_budget_shrinks_the_run_once(tmp_path, resume_setup, monkeypatch):
    """With a fake clock (5 s per reading, ~10 s per chunk), 6 updates (3 chunks of 2) do not fit in 30 s: the run
    restarts once with fewer updates (a multiple of the chunk) and finishes; config.json says so."""
    import pipelag.algorithms.ppo.train as train_mod

    cfg, env, runner = resume_setup

    class Clock:
        t = 0.0

        def perf_counter(self):
            self.t += 5.0
            return self.t

    monkeypatch.setattr(train_mod, "time", Clock())
    res = run(cfg, [0, 1], out_dir=tmp_path / "budget", runner=runner, progress=False, time_budget_s=30.0)
    assert res["planned_total_timesteps"] == cfg.total_timesteps
    assert 0 < res["agent_steps"] < cfg.total_timesteps and res["num_updates"] % cfg.chunk_size == 0
    stored = json.loads((tmp_path / "budget" / "config.json").read_text())
    assert stored["config"]["total_timesteps"] == res["agent_steps"]
    assert stored["time_budget"]["planned_total_timesteps"] == cfg.total_timesteps
    curves = np.load(tmp_path / "budget" / "curves.npz")
    assert curves["episode_return"].shape == (2, res["num_updates"])


def test_evaluation_can_be_switched_off(tmp_path):
    """eval_episodes=0 (allowed by the config) skips evaluation in the pure train and in run(), whose
    results then hold None (valid JSON), not NaN or a crash."""
    env = DelayedCue(num_actions=3, lag=1, max_steps=8)
    cfg = PPOConfig(env_id="toy", arch="mlp", hidden=8, critic_hidden=8, num_envs=4, num_steps=4,
                    total_timesteps=4 * 4 * 2, eval_episodes=0)
    out = train_seeds(cfg, [0], env)
    assert out["eval"]["sampled"]["returns"].shape == (1, 0)
    res = run(cfg, seeds=[0], out_dir=str(tmp_path / "r"), env=env, progress=False)
    assert res["eval_sampled"]["mean"] is None and res["eval_greedy"]["per_seed"] == [None]
    assert json.loads((tmp_path / "r" / "results.json").read_text(), parse_constant=lambda c: 1 / 0)


def test_rollout_unroll_is_speed_only():
    """rollout_unroll (lax.scan unroll of the rollout and GAE loops) changes no number; 0 means auto (1 on a
    CPU); negative is rejected."""
    env = DelayedCue(num_actions=3, lag=2, max_steps=8, terminate_prob=0.2)
    cfg = PPOConfig(env_id="toy", arch="mlp", hidden=8, critic_hidden=8, num_envs=4, num_steps=8,
                    total_timesteps=4 * 8 * 3, eval_episodes=0)
    a = train_seeds(cfg, [0], env)
    b = train_seeds(cfg.replace(rollout_unroll=8), [0], env)
    assert PPO(cfg, env).rollout_unroll == 1  # a short run (or a CPU): compile time matters more
    long_run = cfg.replace(total_timesteps=4 * 8 * 2048)
    assert PPO(long_run, env).rollout_unroll == (1 if jax.default_backend() == "cpu" else 8)
    for x, y in zip(jax.tree.leaves(a["runner_state"].params), jax.tree.leaves(b["runner_state"].params), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    assert np.asarray(a["metrics"]["loss"]).shape == (1, 3)
    with pytest.raises(PipelagError, match="rollout_unroll"):
        cfg.replace(rollout_unroll=-1).validate()


def test_seed_batching_is_speed_only():
    """Seeds vmapped or run one after another (PPOConfig.seed_batching) train the same agents, each seed
    its own; an unknown value is rejected by the config and by over_seeds."""
    from pipelag.algorithms.common.seeds import over_seeds

    env = DelayedCue(num_actions=3, lag=1, max_steps=8, terminate_prob=0.2)
    cfg = PPOConfig(env_id="toy", arch="mlp", hidden=8, critic_hidden=8, num_envs=4, num_steps=8,
                    total_timesteps=4 * 8 * 3, eval_episodes=4)
    a = train_seeds(cfg.replace(seed_batching="vmap"), [0, 1], env)
    b = train_seeds(cfg.replace(seed_batching="map"), [0, 1], env)
    pa, pb = jax.tree.leaves(a["runner_state"].params), jax.tree.leaves(b["runner_state"].params)
    for x, y in zip(pa, pb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(pa[0][0]), np.asarray(pa[0][1]))  # two different agents
    np.testing.assert_allclose(np.asarray(a["eval"]["sampled"]["returns"]),
                               np.asarray(b["eval"]["sampled"]["returns"]), rtol=1e-5)
    with pytest.raises(PipelagError, match="seed_batching"):
        cfg.replace(seed_batching="pmap").validate()
    with pytest.raises(PipelagError, match="seed_batching"):
        over_seeds(lambda k: k, "pmap")


def test_a_kill_during_the_final_evaluation_keeps_the_trained_agent(tmp_path, resume_setup, monkeypatch):
    """The final checkpoint is written before the final evaluation: a run killed while evaluating resumes
    straight to the evaluation, with the results of an uninterrupted run."""
    cfg, env, _ = resume_setup
    cfg = cfg.replace(checkpoint_every=4)  # chunks of 2 updates: no periodic checkpoint at the last (6th) update
    runner = Runner(cfg, [0, 1], env)
    run(cfg, [0, 1], out_dir=tmp_path / "full", runner=runner, progress=False)
    full = json.loads((tmp_path / "full" / "results.json").read_text())
    evaluate = runner.evaluate

    def killed_at_the_end(params, update):
        if update == cfg.num_updates:
            raise KeyboardInterrupt
        return evaluate(params, update)

    monkeypatch.setattr(runner, "evaluate", killed_at_the_end)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, [0, 1], out_dir=tmp_path / "cut", runner=runner, progress=False)
    assert not (tmp_path / "cut" / "results.json").exists()
    monkeypatch.setattr(runner, "evaluate", evaluate)
    chunks = []
    monkeypatch.setattr(runner, "chunk", lambda *a: chunks.append(a) or pytest.fail("trained again"))
    resumed = run(cfg, [0, 1], out_dir=tmp_path / "cut", resume=True, runner=runner, progress=False)
    assert not chunks and resumed["num_updates"] == cfg.num_updates
    for key in ("eval_sampled", "eval_greedy", "train_return_last5pct"):
        assert resumed[key] == full[key]


def test_conv_impl_reaches_actor_and_critic():
    """PPOConfig.conv_impl picks the conv layers of both networks (default "auto"); an unknown value is one
    clear error."""
    from pipelag.algorithms.ppo.networks import build_actor_critic
    from pipelag.networks.layers import GemmConv

    def conv_types(cfg):
        actor, critic = build_actor_critic(cfg, (10, 10, 4), 3)
        return {type(m) for net in (actor, critic) for n, m in net.modules.items()
                if net.graph.node(n).op == "conv"}

    assert conv_types(PPOConfig(conv_impl="gemm")) == {GemmConv}
    assert GemmConv not in conv_types(PPOConfig(conv_impl="xla"))
    on_cpu = jax.default_backend() == "cpu"  # "auto": patches × kernel on a CPU, lax.conv on a GPU
    assert (conv_types(PPOConfig()) == {GemmConv}) == on_cpu
    with pytest.raises(PipelagError, match="conv_impl"):
        PPOConfig(conv_impl="cudnn").validate()


def test_acting_conv_impl_is_speed_only(monkeypatch):
    """The actor acts (rollout, evaluation) with its own conv implementation (PPOConfig.acting_conv_impl;
    "auto" = patches × kernel on a GPU, where cuDNN calls split the rollout's CUDA graph): the same
    parameters, so the log-probs the rollout samples with equal the update's unrolled ones up to float
    rounding, and one clear error for an unknown value."""
    import jax.numpy as jnp

    from pipelag.algorithms.ppo.networks import acting_conv_impl_for
    from pipelag.networks.layers import GemmConv

    env = DelayedCue(num_actions=3, lag=1, max_steps=7, terminate_prob=0.2, image=True, size=5)
    cfg = PPOConfig(env_id="toy", arch="cnn-skip", action_history=1, channels=(4, 8, 8), hidden=16, num_envs=4,
                    num_steps=12, total_timesteps=48, critic_hidden=16, critic_channels=(4, 4, 4), conv_impl="gemm",
                    acting_conv_impl="xla")
    ppo = PPO(cfg, env)
    is_gemm = lambda net: {isinstance(m, GemmConv) for n, m in net.modules.items() if net.graph.node(n).op == "conv"}
    assert is_gemm(ppo.actor) == {True} and is_gemm(ppo.acting_actor) == {False}
    same = PPO(cfg.replace(acting_conv_impl="gemm"), env)
    assert same.acting_actor is same.actor  # nothing to build twice
    rollout = jax.jit(ppo.rollout)
    rs, _ = rollout(ppo.init(jax.random.PRNGKey(3)))
    state0 = rs.actor_state
    rs, traj = rollout(rs)
    logits = jax.jit(ppo.actor.unroll_layerwise)(rs.params["actor"], state0, traj.obs, traj.action, traj.first)
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), traj.action[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(np.asarray(logp), np.asarray(traj.logp), rtol=1e-4, atol=1e-4)
    # "auto": as the update on a CPU and for MiniGrid's large images, patches × kernel on a GPU for
    # MinAtar's; an explicit choice wins
    minatar, minigrid = (10, 10, 4), (56, 56, 3)
    assert acting_conv_impl_for(PPOConfig(conv_impl="xla"), 1, minatar) == "xla"
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert acting_conv_impl_for(PPOConfig(), 1, minatar) == "gemm"
    assert acting_conv_impl_for(PPOConfig(), 1, minigrid) == "xla"
    assert acting_conv_impl_for(PPOConfig(acting_conv_impl="xla"), 1, minatar) == "xla"
    with pytest.raises(PipelagError, match="acting_conv_impl"):
        PPOConfig(acting_conv_impl="cudnn").validate()


def test_rollout_draws_fresh_noise_every_tick_with_the_policys_frequencies():
    """The rollout draws every tick's Gumbel noise and env keys before its loop: each tick must still get
    its own (a reused draw would repeat the same actions tick after tick at the near-uniform initial
    policy), the sampled actions must follow softmax(logits), and the logged log-probs must be theirs."""
    import jax.numpy as jnp

    env = DelayedCue(num_actions=3, lag=1, max_steps=7, terminate_prob=0.2)
    cfg = PPOConfig(env_id="toy", arch="mlp", hidden=16, num_envs=64, num_steps=16, total_timesteps=1024,
                    critic_hidden=16)
    ppo = PPO(cfg, env)
    rollout = jax.jit(ppo.rollout)
    rs, traj = rollout(ppo.init(jax.random.PRNGKey(5)))
    actions = np.asarray(traj.action)  # [T, N]
    assert (actions[1:] != actions[:-1]).mean() > 0.4  # ≈ 2/3 for three near-equally likely actions
    counts = np.bincount(actions.ravel(), minlength=3) / actions.size
    np.testing.assert_allclose(counts, np.full(3, 1 / 3), atol=0.06)
    assert np.all(np.asarray(traj.logp) < 0) and float(jnp.abs(traj.logp + np.log(3)).max()) < 0.1
    again = rollout(rs)[1].action  # the next rollout continues the key stream: other draws
    assert (np.asarray(again) != actions).mean() > 0.4


def test_auto_conv_impl_on_a_gpu_avoids_grouped_convolutions_of_vmapped_seeds(monkeypatch):
    """On a GPU, "auto" takes lax.conv for one seed per program, patches × kernel when seeds of MiniGrid's
    strided CNN are vmapped (vmapping lax.conv over per-seed kernels is a grouped convolution, 7× slower
    there on an H100), and never overrides an explicit choice. The seeds a trainer vmaps follow seed_batching."""
    from pipelag.algorithms.common.seeds import vmapped_seed_count
    from pipelag.algorithms.ppo.networks import conv_impl_for

    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    minigrid, minatar = (56, 56, 3), (10, 10, 4)
    assert conv_impl_for(PPOConfig(), 1, minigrid) == "xla"
    assert conv_impl_for(PPOConfig(), 2, minigrid) == "gemm"
    assert conv_impl_for(PPOConfig(), 16, minatar) == "xla"  # stride-1 grouped convolutions are fast
    assert conv_impl_for(PPOConfig(conv_impl="xla"), 16, minigrid) == "xla"
    assert (vmapped_seed_count("auto", 3), vmapped_seed_count("map", 3), vmapped_seed_count("vmap", 1)) == (3, 1, 1)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert conv_impl_for(PPOConfig(), vmapped_seeds=1) == "gemm" and vmapped_seed_count("auto", 3) == 1


def test_deltas_batched_in_one_program_train_as_their_own_runs(tmp_path):
    """run(batch=[{"delta": 1}, {"delta": 2}]) trains every (δ, seed) member as one vmapped program; each
    member ends where its own run (that δ, same seed) ends: δ = 2 masks nothing of the program's loop,
    δ = 1 masks the second env step and has no RealTime in its own run. DelayedCue draws its targets
    from the keys, so the keys must match too."""
    env = DelayedCue(num_actions=3, lag=1, max_steps=8, terminate_prob=0.2)
    cfg = PPOConfig(env_id="toy", arch="mlp", hidden=8, critic_hidden=8, num_envs=4, num_steps=8,
                    total_timesteps=4 * 8 * 3, eval_episodes=4, checkpoint_every=1)
    batched = run(cfg, [0, 1], str(tmp_path / "b"), env=env, progress=False, batch=[{"delta": 1}, {"delta": 2}])
    assert batched["batch"] == [{"delta": 1.0}] * 2 + [{"delta": 2.0}] * 2 and batched["seeds"] == [0, 1, 0, 1]
    params = jax.tree.leaves(batched["runner_state"].params)
    for i, d in enumerate((1.0, 2.0)):
        own = run(cfg.replace(delta=d), [0, 1], env=env, progress=False)
        member = batched["members"][i]
        assert member["delta"] == d and member["seeds"] == [0, 1]
        assert member["env_steps_per_agent_step"] == int(d)
        np.testing.assert_allclose(member["eval_sampled"]["per_seed"], own["eval_sampled"]["per_seed"], rtol=1e-5)
        for x, y in zip(params, jax.tree.leaves(own["runner_state"].params), strict=True):
            np.testing.assert_allclose(np.asarray(x)[2 * i:2 * i + 2], np.asarray(y), rtol=1e-4, atol=1e-6)
    ns = argparse.Namespace(algo="ppo", resume=True, out=str(tmp_path / "b"))
    with pytest.raises(PipelagError, match="batched in one program; resume it where it was started"):
        config_from_args(ns)
    for bad, match in (([{"delta": 0.5}], "whole numbers"), ([{"dropout": 0.1}], "only in δ"),
                       ([{"delta": 2}, {"delta": 2.0}], "must differ")):
        with pytest.raises(PipelagError, match=match):
            run(cfg, [0], env=env, progress=False, batch=bad)


_TWO_DEVICES_SCRIPT = r"""
import json, sys
import jax, numpy as np
from pipelag.algorithms.common.seeds import seed_device_count
from pipelag.algorithms.common.toy_envs import DelayedCue
from pipelag.algorithms.ppo import PPOConfig, Runner, run, train_seeds
from pipelag.errors import PipelagError

out = sys.argv[1]
assert jax.local_device_count() == 2
env = DelayedCue(num_actions=3, lag=1, max_steps=6, terminate_prob=0.2)
cfg = PPOConfig(env_id="toy", arch="mlp", action_history=1, hidden=8, critic_hidden=8, num_envs=4, num_steps=8,
                total_timesteps=4 * 8 * 4, updates_per_chunk=2, checkpoint_every=2, eval_episodes=4,
                eval_max_steps=16)
one = train_seeds(cfg.replace(seed_devices=1), [0, 1, 2, 3], env)
two = train_seeds(cfg.replace(seed_devices=2), [0, 1, 2, 3], env)
for x, y in zip(jax.tree.leaves(one["runner_state"].params), jax.tree.leaves(two["runner_state"].params), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)
leaf = jax.tree.leaves(two["runner_state"].params)[0]
assert len(leaf.sharding.device_set) == 2, leaf.sharding  # each device held its share of the seeds
np.testing.assert_allclose(np.asarray(one["eval"]["sampled"]["returns"]), np.asarray(two["eval"]["sampled"]["returns"]))
# the run loop (chunks, checkpoints, resume) with the seeds split: a resumed run ends as an uninterrupted one
c2 = cfg.replace(seed_devices=2)
runner = Runner(c2, [0, 1], env)
assert runner.devices == 2
full = run(c2, [0, 1], out_dir=out + "/full", runner=runner, progress=False)
run(c2, [0, 1], out_dir=out + "/part", runner=runner, progress=False, stop_after_updates=2)
resumed = run(c2, [0, 1], out_dir=out + "/part", runner=runner, progress=False, resume=True)
for x, y in zip(jax.tree.leaves(full["runner_state"]), jax.tree.leaves(resumed["runner_state"]), strict=True):
    assert np.array_equal(np.asarray(x), np.asarray(y))
results = [json.load(open(out + d + "/results.json"))["eval_sampled"] for d in ("/full", "/part")]
assert results[0] == results[1]
for bad in (3, -1):
    try:
        seed_device_count(bad, 2)
        raise AssertionError("no error")
    except PipelagError as e:
        assert "seed_devices" in str(e)
assert seed_device_count(0, 3) == 1  # auto on a CPU: one device
print("ok")
"""


def test_seeds_split_over_two_devices_train_the_agents_one_device_trains(tmp_path):
    """PPOConfig.seed_devices=2 on two (simulated CPU) devices: each device trains its share of the seeds
    (the parameters live on both), the agents equal those trained on one device, the run loop checkpoints
    and resumes exactly; seed counts that do not split evenly get a clear error."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
                                      "--xla_cpu_enable_concurrency_optimized_scheduler=false"}
    done = subprocess.run([sys.executable, "-c", _TWO_DEVICES_SCRIPT, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_a_run_directory_of_an_older_pipelag_resumes_when_new_fields_keep_their_defaults(tmp_path, resume_setup):
    """A config.json written before a config field existed (here: seed_devices, session 10) still resumes
    when the field has its default; with another value it is refused as a different config."""
    from pipelag.algorithms.common.io import atomic_write_json, read_json

    cfg, env, runner = resume_setup
    run(cfg, [0, 1], out_dir=tmp_path / "r", runner=runner, progress=False, stop_after_updates=2)
    stored = read_json(tmp_path / "r" / "config.json")
    del stored["config"]["seed_devices"]
    atomic_write_json(tmp_path / "r" / "config.json", stored)
    with pytest.raises(PipelagError, match="seed_devices"):
        run(cfg.replace(seed_devices=1), [0, 1], out_dir=tmp_path / "r", resume=True, env=env, progress=False)
    resumed = run(cfg, [0, 1], out_dir=tmp_path / "r", resume=True, runner=runner, progress=False)
    assert resumed["num_updates"] == 6
