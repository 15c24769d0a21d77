"""PPO on gymnasium envs stepped on the host (pipelag.algorithms.ppo.host): CartPole-v1, CPU, seconds."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag.algorithms.ppo import HostRunner, PPOConfig, run
from pipelag.algorithms.ppo.host import resolve_backend
from pipelag.cli import main as cli_main
from pipelag.errors import PipelagError

SMALL = dict(env_id="CartPole-v1", hidden=32, critic_hidden=32, num_envs=8, num_steps=16)


def test_host_rollout_logprobs_equal_the_unrolled_actor():
    """The host rollout records o_t, a_t, log π(a_t) and episode starts as the JAX rollout does: unrolling the
    actor from the rollout's starting state over them gives the recorded log-probs (episodes end inside the
    rollout, so resets are exercised), and a one-tick shift of the resets does not."""
    cfg = PPOConfig(arch="mlp-proj-from-obs", action_history=1, total_timesteps=8 * 16 * 3, **SMALL)
    runner = HostRunner(cfg, [3])
    rs = jax.tree.map(lambda x: x[0], runner.init_state())
    rs = rs._replace(params={**rs.params, "actor": jax.tree.map(lambda p: 4 * p, rs.params["actor"])})
    rs, _, _ = runner.rollout(rs, runner.envs[0])  # the next rollout starts mid-episode
    rs, state0, traj = runner.rollout(rs, runner.envs[0])
    assert bool(traj.first[1:].any()) and bool((~traj.first[0]).any())
    unroll = lambda first: runner.ppo.actor.unroll_layerwise(rs.params["actor"], state0, traj.obs, traj.action, first)
    logp = lambda logits: jnp.take_along_axis(jax.nn.log_softmax(logits), traj.action[..., None], -1)[..., 0]
    np.testing.assert_allclose(np.asarray(logp(unroll(traj.first))), np.asarray(traj.logp), rtol=1e-5, atol=1e-5)
    assert float(jnp.abs(logp(unroll(jnp.roll(traj.first, 1, axis=0))) - traj.logp).max()) > 1e-4
    runner.close()


def test_host_ppo_learns_cartpole():
    """A pipelined actor (proj-from-obs, action history 1) learns CartPole through the host backend: after
    100 updates its training return is far above a random policy's (≈ 22)."""
    cfg = PPOConfig(env_id="CartPole-v1", arch="mlp-proj-from-obs", action_history=1, hidden=64, critic_hidden=64,
                    lr=1e-3, total_timesteps=32 * 32 * 100, eval_episodes=8)
    res = run(cfg, [0], progress=False)
    assert res["train_return_last5pct"]["mean"] > 60
    assert res["eval_greedy"]["mean"] > 60 and res["eval_sampled"]["episodes_per_seed"] == 8


def test_backend_resolution_and_errors():
    """auto: JAX env ids run as JAX envs, other gymnasium ids on the host; a typo of a JAX id keeps the JAX
    registry's hint; 'jax' for a gymnasium id and continuous actions are clear errors."""
    assert resolve_backend(PPOConfig(env_id="MinAtar/Breakout-v0")) == "jax"
    assert resolve_backend(PPOConfig(env_id="CartPole-v1")) == "host"
    assert resolve_backend(PPOConfig(env_id="MinAtar/Brekout-v0")) == "jax"
    with pytest.raises(PipelagError, match="backend 'jax' needs a JAX env"):
        resolve_backend(PPOConfig(env_id="CartPole-v1", backend="jax"))
    with pytest.raises(PipelagError, match="backend must be"):
        PPOConfig(backend="gpu").validate()
    with pytest.raises(PipelagError, match="continuous actions"):
        HostRunner(PPOConfig(env_id="Pendulum-v1", arch="mlp"), [0])


def test_host_cli_run_directory_and_resume(tmp_path, capsys):
    """`pipelag train` on a gymnasium id writes the run directory (two seeds: two agents, two sets of envs); an
    interrupted host run resumes to the same number of updates (the agent restored, the envs restarted)."""
    out = tmp_path / "cp"
    args = ["train", "--algo", "ppo", "--env", "CartPole-v1", "--arch", "mlp", "--total-steps", "512", "--seeds", "2",
            "--num-envs", "8", "--num-steps", "16", "--eval-episodes", "2", "--out", str(out), "--quiet"]
    assert cli_main(args) == 0
    res = json.loads((out / "results.json").read_text())
    per_seed = res["train_return_last5pct"]["per_seed"]
    assert len(per_seed) == 2 and per_seed[0] != per_seed[1]
    assert res["num_updates"] == 4 and json.loads((out / "config.json").read_text())["config"]["backend"] == "auto"
    cfg = PPOConfig(arch="mlp", total_timesteps=8 * 16 * 4, eval_episodes=2, checkpoint_every=1, **SMALL)
    run(cfg, [0], out_dir=tmp_path / "cut", progress=False, stop_after_updates=2)
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = run(cfg, [0], out_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed["num_updates"] == 4 and np.isfinite(resumed["eval_sampled"]["mean"])
    assert cli_main(["train", "--algo", "ppo", "--env", "CartPole-v1", "--backend", "jax"]) == 2
    assert "backend 'jax' needs a JAX env" in capsys.readouterr().err
