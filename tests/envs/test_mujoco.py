"""The MuJoCo helpers: ids, the 1000-step limit through the host adapter, δ, the sped-up env, errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipelag.envs import mujoco as mj
from pipelag.errors import PipelagError


def test_ids():
    assert mj.parse_mujoco_id("HalfCheetah-v4") == ("HalfCheetah", "v4")
    assert mj.parse_mujoco_id("Hopper-v5") == ("Hopper", "v5")
    assert mj.parse_mujoco_id("Humanoid-v4") is None and mj.parse_mujoco_id("MinAtar/Breakout-v0") is None
    assert all(mj.is_mujoco_id(f"{t}-v4") for t in mj.MUJOCO_TASKS)


@pytest.mark.parametrize("env_id, kwargs, message", [
    ("Humanoid-v4", {}, "unknown MuJoCo task"),
    ("HalfCheetah-v3", {}, "not supported"),
    ("HalfCheetah-v4", {"speedup": 0.5}, "speedup"),
    ("HalfCheetah-v4", {"max_episode_steps": 0}, "max_episode_steps"),
])
def test_errors(env_id, kwargs, message):
    with pytest.raises(PipelagError, match=message):
        mj.mujoco_env_fn(env_id, **kwargs)


def test_missing_mujoco_names_the_extra(monkeypatch):
    monkeypatch.setattr(mj, "mujoco_available", lambda: False)
    with pytest.raises(PipelagError, match=r"pipelag\[mujoco\]"):
        mj.make_mujoco_env("Hopper-v4")


def test_time_limit_truncates_at_1000_steps_and_delta_counts_raw_steps():
    pytest.importorskip("mujoco")
    env = mj.make_mujoco_env("HalfCheetah-v4", num_envs=1, seed=0)
    obs = env.reset()
    assert obs.shape == (1, 17) and env.single_action_space.shape == (6,)
    a = np.zeros((1, 6), np.float32)
    steps = 0
    while steps < 1001:
        obs, r, term, trunc, final, stats = env.step(a)
        steps += 1
        assert not term[0]  # HalfCheetah never terminates
        if trunc[0]:
            break
    assert steps == 1000 and stats["episode_ended"][0] and stats["returned_episode_raw_length"][0] == 1000
    assert not np.array_equal(final, obs)  # final_obs is the last observation, obs the next episode's first
    env.close()
    env = mj.make_mujoco_env("HalfCheetah-v4", num_envs=1, seed=0, delta=3)
    env.reset()
    *_, stats = env.step(a)
    assert stats["raw_steps"][0] == 3
    env.close()


def test_speedup_halves_the_timestep():
    pytest.importorskip("mujoco")
    normal = mj.mujoco_env_fn("HalfCheetah-v4")()
    fast = mj.mujoco_env_fn("HalfCheetah-v4", speedup=2)()
    assert fast.unwrapped.dt == pytest.approx(normal.unwrapped.dt / 2)
    assert fast.unwrapped.model.opt.timestep == pytest.approx(0.005)
    assert fast.spec.max_episode_steps == 1000

    def travel(env, steps):
        env.reset(seed=0)
        for _ in range(steps):
            env.step(np.full(6, 0.5, np.float32))
        return env.unwrapped.data.time

    t_normal, t_fast = travel(normal, 20), travel(fast, 40)
    assert t_fast == pytest.approx(t_normal)  # 2× the steps cover the same simulated time
    v5 = mj.mujoco_env_fn("Walker2d-v5", frame_skip=2)()
    assert v5.unwrapped.dt == pytest.approx(0.004)
    for e in (normal, fast, v5):
        e.close()
