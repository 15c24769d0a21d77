"""Host (gymnasium) environments with the same real-time semantics as the JAX wrappers.

    env = make_host_env("CartPole-v1", num_envs=8, seed=0, delta=2, action_history=2)
    obs = env.reset()                                            # [num_envs, ...] float32
    obs, reward, terminated, truncated, final_obs, stats = env.step(actions)

Per sub-env the stack is, innermost first (the same order as :func:`pipelag.envs.wrappers.wrap_env`):
array observation (a dict observation with an ``"image"`` key, e.g. minigrid's, gives its image; cast
to float32) → real time (δ env steps per agent step, default policy β, rewards summed, stop at the
episode end) → frame stack → action history; the vector layer adds episode statistics. The buffer
updates and statistics are the array functions of :mod:`pipelag.envs.wrappers`, called with numpy.

Auto-reset: gymnasium ``SyncVectorEnv`` with ``AutoresetMode.SAME_STEP``, so as for ``JaxEnv.step``
the returned ``obs`` of a finished sub-env is the first observation of its next episode and
``final_obs`` the (augmented) last observation of the finished one (equal to ``obs`` otherwise).
``stats`` is a dict of ``[num_envs]`` arrays: ``returned_episode_return``,
``returned_episode_raw_length``, ``returned_episode_agent_length``, ``episode_ended`` (as
:func:`pipelag.envs.wrappers.episode_stats`) and ``raw_steps`` (env steps taken by this agent step).

Seeding: ``reset()`` seeds sub-env i with ``seed + i`` (gymnasium's convention); later resets continue
the sub-envs' own random streams.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from pipelag.envs.wrappers import (
    augmented_history_shape,
    check_default_policy,
    check_delta,
    check_history_length,
    default_action,
    encode_action,
    fill_history,
    frame_stack_shape,
    history_observation,
    init_episode_statistics,
    push_history,
    stack_frames,
    update_episode_statistics,
)
from pipelag.errors import PipelagError

_INF = np.float32(np.inf)


class ArrayObservation(gym.ObservationWrapper):
    """Observations as float32 arrays (``obs["image"]`` for dict observations with an image)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if isinstance(space, gym.spaces.Dict):
            if "image" not in space.spaces:
                raise PipelagError(
                    f"the host adapter needs array observations; this env has a dict observation "
                    f"without an 'image' key ({list(space.spaces)}). Pass a factory that wraps it "
                    f"(e.g. with gymnasium.wrappers.FlattenObservation)."
                )
            self._key = "image"
            space = space.spaces["image"]
        else:
            self._key = None
        if not isinstance(space, gym.spaces.Box):
            raise PipelagError(f"the host adapter needs Box observations, got {space}.")
        self.observation_space = gym.spaces.Box(-_INF, _INF, shape=space.shape, dtype=np.float32)

    def observation(self, observation):
        if self._key is not None:
            observation = observation[self._key]
        return np.asarray(observation, dtype=np.float32)


def host_noop_action(env: gym.Env) -> int | None:
    """The action that only lets time pass: minigrid's "done" for minigrid envs (their action 0 is a left
    turn); None for other envs (β = "noop" then sends action 0 / zeros)."""
    done = getattr(getattr(env.unwrapped, "actions", None), "done", None)
    return int(done) if done is not None else None


class RealTimeHost(gym.Wrapper):
    """Host twin of :class:`pipelag.envs.wrappers.RealTime`: δ env steps per agent step, the agent's
    action first, then the default policy β; rewards summed; stops at the episode end. The raw env
    steps taken are in ``info["raw_steps"]`` (0 in the info of ``reset``)."""

    def __init__(self, env: gym.Env, delta: int, default_policy: str = "repeat"):
        super().__init__(env)
        d = check_delta(delta)
        if d < 1:
            raise PipelagError(
                f"RealTimeHost needs an integer delta >= 1, got {delta!r}; δ < 1 is handled by the "
                f"network (layers grouped into stages): leave the env unwrapped."
            )
        self.delta = int(d)
        self.default_policy = check_default_policy(default_policy)
        self.noop_action = host_noop_action(env)
        if self.noop_action is not None:  # a minigrid env: repeated turns may cancel
            from pipelag.envs.minigrid import turn_warning

            why = turn_warning(getattr(env.spec, "id", "this MiniGrid env"), self.delta, self.default_policy)
            if why:
                warnings.warn(why, UserWarning, stacklevel=2)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "raw_steps": 0}

    def step(self, action):
        total, n = 0.0, 0
        a = action
        for i in range(self.delta):
            obs, reward, terminated, truncated, info = self.env.step(a)
            total += float(reward)
            n += int(info.get("raw_steps", 1))
            if terminated or truncated:
                break
            if i == 0:
                a = default_action(action, self.default_policy, np, self.noop_action)
        return obs, total, terminated, truncated, {**info, "raw_steps": n}


class FrameStackHost(gym.Wrapper):
    """Host twin of :class:`pipelag.envs.wrappers.FrameStack`."""

    def __init__(self, env: gym.Env, k: int):
        super().__init__(env)
        self.k = check_history_length(k, "frame_stack")
        space = env.observation_space
        self.observation_space = gym.spaces.Box(
            -_INF, _INF, shape=frame_stack_shape(space.shape, self.k), dtype=space.dtype
        )
        self._frames = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._frames = fill_history(np.asarray(obs), self.k, np)
        return stack_frames(self._frames, np), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames = push_history(self._frames, np.asarray(obs), np)
        return stack_frames(self._frames, np), reward, terminated, truncated, info


class ActionHistoryHost(gym.Wrapper):
    """Host twin of :class:`pipelag.envs.wrappers.ActionHistory` (zeros at reset, newest last)."""

    def __init__(self, env: gym.Env, k: int, encoding: str = "vector"):
        super().__init__(env)
        self.k = check_history_length(k, "action_history")
        self.encoding = encoding
        space = env.action_space
        if isinstance(space, gym.spaces.Discrete):
            self._num_actions, size = int(space.n), int(space.n)
        elif isinstance(space, gym.spaces.Box):
            self._num_actions, size = None, int(np.prod(space.shape))
        else:
            raise PipelagError(f"action_history needs a Discrete or Box action space, got {space}.")
        shape = augmented_history_shape(env.observation_space.shape, self.k, size, encoding)
        self.observation_space = gym.spaces.Box(-_INF, _INF, shape=shape, dtype=np.float32)
        self._size = size
        self._actions = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._actions = np.zeros((self.k, self._size), np.float32)
        return history_observation(np.asarray(obs), self._actions, self.encoding, np), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        item = encode_action(np.asarray(action), self._num_actions, np)
        self._actions = push_history(self._actions, item, np)
        obs = history_observation(np.asarray(obs), self._actions, self.encoding, np)
        return obs, reward, terminated, truncated, info


def _gym_factory(env_id_or_fn: str | Callable[..., gym.Env], gym_kwargs: dict[str, Any]):
    if callable(env_id_or_fn):
        return lambda: env_id_or_fn(**gym_kwargs)
    env_id = str(env_id_or_fn)
    if env_id.startswith("MinAtar/"):
        try:
            from minatar.gym import register_envs
        except ImportError as e:
            raise PipelagError(f"{env_id} needs the minatar package: pip install minatar==1.0.15") from e
        if env_id not in gym.registry:
            register_envs()  # `import minatar` alone does not register the gymnasium ids
    elif env_id.startswith("MiniGrid-") or env_id.startswith("BabyAI-"):
        try:
            import minigrid  # noqa: F401  (registers the ids)
        except ImportError as e:
            raise PipelagError(f"{env_id} needs the minigrid package: pip install minigrid") from e
    if env_id not in gym.registry:
        raise PipelagError(
            f"unknown gymnasium id {env_id!r} (is its package installed and imported?). For the "
            f"JAX-native envs see pipelag.envs.list_envs()."
        )

    def factory():
        with warnings.catch_warnings():
            # MinAtar -v0 (all 6 actions) is what we want; gymnasium suggests -v1 (minimal action set)
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            return gym.make(env_id, **gym_kwargs)

    return factory


class HostVecEnv:
    """``num_envs`` host envs stepped in lockstep (see the module docstring for the interface)."""

    def __init__(self, env_fns: list[Callable[[], gym.Env]], seed: int):
        self.envs = gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.num_envs = self.envs.num_envs
        self.seed = seed
        self.single_observation_space = self.envs.single_observation_space
        self.single_action_space = self.envs.single_action_space
        self.obs_shape = tuple(self.single_observation_space.shape)
        space = self.single_action_space
        self.num_actions = int(space.n) if isinstance(space, gym.spaces.Discrete) else None
        self.action_shape = () if self.num_actions is not None else tuple(space.shape)
        self._stats = init_episode_statistics(np, (self.num_envs,))

    def reset(self) -> np.ndarray:
        obs, _ = self.envs.reset(seed=self.seed)
        self.envs.action_space.seed(self.seed)
        self._stats = init_episode_statistics(np, (self.num_envs,))
        return obs

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.envs.step(np.asarray(actions))
        done = np.logical_or(terminated, truncated)
        final_obs = obs.copy()
        raw = np.asarray(info.get("raw_steps", np.ones(self.num_envs, np.int64)), np.int32).copy()
        if done.any():
            final_info = info.get("final_info", {})
            for i in np.flatnonzero(done):
                final_obs[i] = info["final_obs"][i]
                raw[i] = final_info["raw_steps"][i] if "raw_steps" in final_info else 1
        reward = np.asarray(reward, np.float32)
        self._stats = update_episode_statistics(self._stats, reward, done, raw, np)
        s = self._stats
        stats = {
            "returned_episode_return": s.returned_episode_return,
            "returned_episode_raw_length": s.returned_episode_raw_length,
            "returned_episode_agent_length": s.returned_episode_agent_length,
            "episode_ended": s.episode_ended,
            "raw_steps": raw,
        }
        return obs, reward, np.asarray(terminated), np.asarray(truncated), final_obs, stats

    def close(self) -> None:
        self.envs.close()


def make_host_env(
    env_id_or_fn: str | Callable[..., gym.Env],
    num_envs: int,
    seed: int,
    delta: int | float = 1,
    default_policy: str = "repeat",
    action_history: int = 0,
    frame_stack: int = 0,
    *,
    action_encoding: str = "vector",
    **gym_kwargs: Any,
) -> HostVecEnv:
    """A vector of gymnasium envs with pipelag's real-time semantics.

    ``env_id_or_fn``: a gymnasium id (``MinAtar/*`` and ``MiniGrid-*`` ids are registered on demand)
    or a factory called as ``fn(**gym_kwargs)``. ``delta``: δ > 1 gives one agent step = δ env steps
    (``default_policy`` "repeat"/"noop" in between); 0 < δ ≤ 1 leaves the env unchanged.
    ``action_history``/``frame_stack``: k > 0 appends the last k actions / stacks the last k
    observations (``action_encoding`` "vector" or "onehot_planes"), as the JAX wrappers do.
    """
    d = check_delta(delta)
    check_default_policy(default_policy)
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise PipelagError(f"num_envs must be a positive integer, got {num_envs!r}.")
    base = _gym_factory(env_id_or_fn, gym_kwargs)

    def env_fn():
        env = ArrayObservation(base())
        if d > 1:
            env = RealTimeHost(env, int(d), default_policy)
        if frame_stack:
            env = FrameStackHost(env, frame_stack)
        if action_history:
            env = ActionHistoryHost(env, action_history, action_encoding)
        return env

    return HostVecEnv([env_fn] * num_envs, seed)
