"""The paper's MuJoCo tasks (gymnasium, CPU) through the host adapter.

    env = make_mujoco_env("HalfCheetah-v4", num_envs=1, seed=0, delta=2)
    obs = env.reset(); obs, reward, terminated, truncated, final_obs, stats = env.step(actions)

Tasks: HalfCheetah, Walker2d, Ant, Hopper, versions v4 (the paper's) and v5, with the 1000-step time
limit (DESIGN §4; truncation, bootstrapped by the learners). Needs the optional extra
``pip install 'pipelag[mujoco]'`` (``mujoco`` and ``gymnasium[mujoco]``).

``speedup`` = s > 1 ("sped-up" env, the paper's other route to δ < 1): the physics timestep is divided
by s (``model.opt.timestep``; gymnasium's v4 classes hard-code ``frame_skip``, so the timestep is the
knob that works for v4 and v5), so one env step spans 1/s of the simulated time and the agent acts s
times as often. Rewards that are velocities (forward reward = Δx / dt) keep their scale per step. The
time limit stays ``max_episode_steps`` env steps (1000 by default, i.e. 1/s of the original simulated
time; pass ``max_episode_steps=1000 * s`` for episodes of the original length). v5 also accepts
``frame_skip`` directly (e.g. Walker2d/Hopper: 4 → 2).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pipelag.errors import PipelagError

MUJOCO_TASKS = ("HalfCheetah", "Walker2d", "Ant", "Hopper")
MUJOCO_VERSIONS = ("v4", "v5")
DEFAULT_MAX_EPISODE_STEPS = 1000

_ID = re.compile(r"^(?P<task>[A-Za-z0-9]+)-(?P<version>v\d+)$")


def parse_mujoco_id(env_id: str) -> tuple[str, str] | None:
    """``"HalfCheetah-v4"`` → ``("HalfCheetah", "v4")``; None if ``env_id`` is not one of our tasks."""
    m = _ID.match(str(env_id))
    if not m or m["task"] not in MUJOCO_TASKS:
        return None
    return m["task"], m["version"]


def is_mujoco_id(env_id: str) -> bool:
    return parse_mujoco_id(env_id) is not None


def mujoco_available() -> bool:
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True


def _check(env_id: str, speedup: Any, max_episode_steps: Any) -> tuple[str, str]:
    parsed = parse_mujoco_id(env_id)
    if parsed is None:
        raise PipelagError(f"unknown MuJoCo task {env_id!r}; use one of "
                           f"{', '.join(f'{t}-v4' for t in MUJOCO_TASKS)} (or -v5)")
    if parsed[1] not in MUJOCO_VERSIONS:
        raise PipelagError(f"{env_id}: version {parsed[1]} is not supported; use {' or '.join(MUJOCO_VERSIONS)}")
    if isinstance(speedup, bool) or not isinstance(speedup, int | float) or not speedup >= 1:
        raise PipelagError(f"speedup must be a number ≥ 1 (the factor the physics timestep is divided by), "
                           f"got {speedup!r}")
    if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, int) or max_episode_steps < 1:
        raise PipelagError(f"max_episode_steps must be a positive integer, got {max_episode_steps!r}")
    if not mujoco_available():
        raise PipelagError(f"{env_id} needs MuJoCo: pip install 'pipelag[mujoco]' (or pip install "
                           "'gymnasium[mujoco]')")
    return parsed


def mujoco_env_fn(env_id: str, speedup: float = 1, max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
                  **gym_kwargs: Any) -> Callable[..., Any]:
    """A factory ``fn(**kwargs) -> gymnasium.Env`` for the host adapter (``make_host_env(fn, ...)``)."""
    _check(env_id, speedup, max_episode_steps)

    def factory(**kwargs: Any):
        import warnings

        import gymnasium as gym

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")  # v4 is the paper's version
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            env = gym.make(env_id, max_episode_steps=max_episode_steps, **{**gym_kwargs, **kwargs})
        if speedup != 1:
            env.unwrapped.model.opt.timestep /= float(speedup)
        return env

    return factory


def make_mujoco_env(env_id: str, num_envs: int = 1, seed: int = 0, delta: int | float = 1,
                    default_policy: str = "repeat", *, speedup: float = 1,
                    max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS, **gym_kwargs: Any):
    """``make_host_env`` on a MuJoCo task (see the module docstring). Returns a ``HostVecEnv``."""
    from pipelag.envs.host import make_host_env

    fn = mujoco_env_fn(env_id, speedup=speedup, max_episode_steps=max_episode_steps, **gym_kwargs)
    return make_host_env(fn, num_envs, seed, delta=delta, default_policy=default_policy)
