"""Functional wrappers around :class:`~pipelag.envs.base.JaxEnv` (real-time stepping, history
augmentation, episode statistics).

Every wrapper is itself a ``JaxEnv`` that wraps the inner env's ``reset_env``/``step_env`` (one
episode, no auto-reset), so the base class's auto-reset stays on the outside: when an episode ends,
the *whole* wrapped state (inner state and the wrapper's buffers) is replaced by a fresh
``reset_env`` and ``Step.final_obs`` is the wrapped (augmented) last observation of the episode.

Canonical order (what :func:`wrap_env` and the host adapter :mod:`pipelag.envs.host` build)::

    EpisodeStats(ActionHistory(FrameStack(RealTime(env, delta), k_obs), k_act))

* ``RealTime`` innermost: one agent step = δ env steps, so the history wrappers record one entry per
  *agent* step (the agent's actions and the observations it actually receives). Putting
  ``ActionHistory`` inside ``RealTime`` would instead record every raw env step, including the
  actions of the default policy β.
* ``EpisodeStats`` must be the outermost wrapper (enforced): it overrides ``step`` so that the stats
  of a finished episode survive the auto-reset. It counts raw env steps through
  :meth:`Wrapper.raw_steps`, which finds every ``RealTime`` in the stack, whatever the order of the
  other wrappers.

The per-step array logic (action encoding, history buffer updates, episode statistics) is written
once as functions of an array module ``xp`` (``jax.numpy`` here, ``numpy`` in the host adapter) so
the JAX and host versions cannot drift apart.
"""

from __future__ import annotations

import copy
import math
import numbers
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pipelag.envs.base import JaxEnv
from pipelag.errors import PipelagError

DEFAULT_POLICIES = ("repeat", "noop")
ACTION_ENCODINGS = ("vector", "onehot_planes")

# ----------------------------------------------------------------------------------------------
# Shared array logic (xp = jax.numpy or numpy; all functions act on ONE env, unbatched)
# ----------------------------------------------------------------------------------------------


def check_delta(delta: Any) -> int | float:
    """Validate a neuron execution time δ. Returns an ``int`` for δ ≥ 1, the float for 0 < δ < 1."""
    if isinstance(delta, bool) or not isinstance(delta, numbers.Real) or not math.isfinite(delta):
        raise PipelagError(
            f"delta (the neuron execution time δ, in env steps per layer) must be a positive number, "
            f"got {delta!r}; use e.g. delta=1 (one env step per layer) or delta=2."
        )
    if delta <= 0:
        raise PipelagError(
            f"delta must be positive, got {delta!r}: δ is the time one layer takes, in env steps. "
            f"Use delta=1 for one env step per layer, an integer > 1 for slower layers, or "
            f"0 < delta < 1 for layers faster than the env."
        )
    if delta >= 1:
        if float(delta) != int(delta):
            raise PipelagError(
                f"delta={delta!r} is not an integer: for δ > 1 one agent step spans δ env steps, so δ "
                f"must be a whole number of env steps. Round it (e.g. delta={max(1, round(delta))}) "
                f"or express fractional timing as 0 < delta < 1 (several layers per env step)."
            )
        return int(delta)
    return float(delta)


def check_default_policy(default_policy: str) -> str:
    if default_policy not in DEFAULT_POLICIES:
        raise PipelagError(
            f"unknown default_policy {default_policy!r}; the default policy β acting between agent "
            f"actions must be one of {DEFAULT_POLICIES} ('repeat': repeat the agent action, "
            f"'noop': the env's no-op action, e.g. MiniGrid's 'done'; action 0 / zeros where the env names none)."
        )
    return default_policy


def default_action(action: Any, default_policy: str, xp: Any, noop_action: int | None = None) -> Any:
    """The action of the default policy β for the δ−1 env steps after the agent's action: the agent's
    own ("repeat") or the env's ``noop_action`` (action 0 / zeros where the env names none)."""
    if default_policy == "repeat":
        return action
    if noop_action is not None:
        return xp.full_like(action, noop_action)
    return xp.zeros_like(action)


def action_size(num_actions: int | None, action_shape: tuple[int, ...]) -> int:
    """Length of one encoded action: ``num_actions`` (one-hot) or the flattened continuous shape."""
    return int(num_actions) if num_actions is not None else int(math.prod(action_shape))


def encode_action(action: Any, num_actions: int | None, xp: Any) -> Any:
    """One-hot (discrete) or flattened (continuous) float32 encoding of one action."""
    if num_actions is not None:
        return (xp.arange(num_actions) == action).astype(xp.float32)
    return xp.asarray(action, dtype=xp.float32).reshape(-1)


def push_history(buffer: Any, item: Any, xp: Any) -> Any:
    """Drop the oldest entry of ``buffer`` ``[k, ...]`` and append ``item`` as the newest (last)."""
    return xp.concatenate([buffer[1:], item[None]], axis=0)


def fill_history(item: Any, k: int, xp: Any) -> Any:
    """A buffer ``[k, ...]`` whose k entries all equal ``item``."""
    return xp.stack([item] * k, axis=0)


def stack_frames(frames: Any, xp: Any) -> Any:
    """``[k, ..., C]`` → ``[..., k*C]``: frames concatenated on the last axis, oldest first."""
    return xp.concatenate([frames[i] for i in range(frames.shape[0])], axis=-1)


def history_observation(obs: Any, actions: Any, encoding: str, xp: Any) -> Any:
    """Append the action history ``[k, A]`` (oldest first) to one observation.

    ``"vector"``: ``[D]`` → ``[D + k*A]``. ``"onehot_planes"``: ``[H, W, C]`` → ``[H, W, C + k*A]``,
    each encoded action tiled over H×W as A constant planes.
    """
    flat = actions.reshape(-1)
    obs = obs.astype(xp.float32)
    if encoding == "vector":
        return xp.concatenate([obs, flat], axis=-1)
    planes = xp.broadcast_to(flat, tuple(obs.shape[:-1]) + (flat.shape[0],))
    return xp.concatenate([obs, planes], axis=-1)


def augmented_history_shape(obs_shape: tuple[int, ...], k: int, size: int, encoding: str) -> tuple[int, ...]:
    if encoding not in ACTION_ENCODINGS:
        raise PipelagError(f"unknown action history encoding {encoding!r}; use one of {ACTION_ENCODINGS}.")
    if encoding == "vector":
        if len(obs_shape) != 1:
            raise PipelagError(
                f"encoding='vector' appends actions to a vector observation, but the observation has "
                f"shape {obs_shape}; use encoding='onehot_planes' for image observations "
                f"(or inject the actions into the network's fully connected layers)."
            )
        return (obs_shape[0] + k * size,)
    if len(obs_shape) != 3:
        raise PipelagError(
            f"encoding='onehot_planes' tiles actions over an image [H, W, C], but the observation has "
            f"shape {obs_shape}; use encoding='vector' for vector observations."
        )
    return (*obs_shape[:2], obs_shape[2] + k * size)


def frame_stack_shape(obs_shape: tuple[int, ...], k: int) -> tuple[int, ...]:
    if len(obs_shape) == 0:
        raise PipelagError("FrameStack needs observations with at least one axis (got a scalar).")
    return (*obs_shape[:-1], obs_shape[-1] * k)


def check_history_length(k: Any, what: str) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise PipelagError(f"{what} must be a positive integer (number of past entries), got {k!r}.")
    return int(k)


class EpisodeStatistics(NamedTuple):
    """Running and last-finished episode statistics of one env (batched under ``vmap``).

    ``returned_*`` hold the stats of the most recently *finished* episode (zeros until one finishes);
    ``episode_ended`` is True exactly on the step that finished an episode. A trainer logs
    ``returned_episode_return[episode_ended]`` (e.g. ``sum(r * ended) / max(sum(ended), 1)``).
    """

    episode_return: Any
    episode_raw_length: Any
    episode_agent_length: Any
    returned_episode_return: Any
    returned_episode_raw_length: Any
    returned_episode_agent_length: Any
    episode_ended: Any


def init_episode_statistics(xp: Any, shape: tuple[int, ...] = ()) -> EpisodeStatistics:
    f = xp.zeros(shape, dtype=xp.float32)
    i = xp.zeros(shape, dtype=xp.int32)
    return EpisodeStatistics(f, i, i, f, i, i, xp.zeros(shape, dtype=bool))


def update_episode_statistics(
    stats: EpisodeStatistics, reward: Any, done: Any, raw_steps: Any, xp: Any
) -> EpisodeStatistics:
    """Add one agent step (``raw_steps`` env steps, summed ``reward``); roll over if ``done``."""
    ep_return = stats.episode_return + xp.asarray(reward, dtype=xp.float32)
    raw_len = stats.episode_raw_length + xp.asarray(raw_steps, dtype=xp.int32)
    agent_len = stats.episode_agent_length + xp.asarray(1, dtype=xp.int32)
    done = xp.asarray(done, dtype=bool)
    return EpisodeStatistics(
        episode_return=xp.where(done, xp.zeros_like(ep_return), ep_return),
        episode_raw_length=xp.where(done, xp.zeros_like(raw_len), raw_len),
        episode_agent_length=xp.where(done, xp.zeros_like(agent_len), agent_len),
        returned_episode_return=xp.where(done, ep_return, stats.returned_episode_return),
        returned_episode_raw_length=xp.where(done, raw_len, stats.returned_episode_raw_length),
        returned_episode_agent_length=xp.where(done, agent_len, stats.returned_episode_agent_length),
        episode_ended=done,
    )


# ----------------------------------------------------------------------------------------------
# JAX wrappers
# ----------------------------------------------------------------------------------------------


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class Wrapper(JaxEnv):
    """Base of the wrappers: copies the inner env's space attributes, forwards unknown attributes."""

    def __init__(self, env: JaxEnv):
        if not isinstance(env, JaxEnv):
            raise PipelagError(
                f"{type(self).__name__} wraps a pipelag JaxEnv, got {type(env).__name__}; for a "
                f"gymnasium env use pipelag.envs.host.make_host_env."
            )
        if isinstance(env, EpisodeStats):
            raise PipelagError(
                f"EpisodeStats must be the outermost wrapper (its stats would be reset by the outer "
                f"auto-reset); write EpisodeStats({type(self).__name__}(...)) instead."
            )
        self.env = env
        self.env_id = env.env_id
        self.num_actions = env.num_actions
        self.action_shape = tuple(env.action_shape)
        self.obs_shape = tuple(env.obs_shape)
        self.obs_dtype = env.obs_dtype
        self.max_episode_steps = env.max_episode_steps
        self.noop_action = env.noop_action

    def default_policy_warning(self, delta: int, default_policy: str) -> str | None:
        return self.env.default_policy_warning(delta, default_policy)

    def __getattr__(self, name: str) -> Any:
        # only called for attributes not found normally; guard against recursion before __init__
        if name == "env" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.env, name)

    def raw_steps(self, state: Any) -> jax.Array:
        """Raw env steps taken by the last step that produced ``state`` (1 without ``RealTime``)."""
        return raw_steps(self.env, state.env_state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.env!r})"


def raw_steps(env: JaxEnv, state: Any) -> jax.Array:
    """Number of raw env steps the last ``step_env`` of ``env`` took (1 for an unwrapped env)."""
    if isinstance(env, Wrapper):
        return env.raw_steps(state)
    return jnp.ones((), jnp.int32)


class RealTimeState(NamedTuple):
    env_state: Any
    #: raw env steps taken by the last agent step (0 after a reset; < δ if the episode ended early)
    last_raw_steps: jax.Array


class RealTime(Wrapper):
    """Neuron execution time δ: one agent step = δ env steps.

    The agent's action is applied at the first env step; for the remaining δ−1 steps the default
    policy β acts (``"repeat"``: the agent action again; ``"noop"``: the env's ``noop_action``, else
    action 0 for discrete envs, zeros for continuous ones). Rewards are summed. When the episode ends
    inside the δ steps, the remaining steps are masked (their results discarded inside a ``lax.scan``):
    a finished episode is never advanced, and the returned ``Step`` is the one that ended it (with the
    summed reward).
    ``max_episode_steps`` is in agent steps (⌈limit/δ⌉). The raw steps of each agent step are in the
    state (:meth:`raw_steps`), for :class:`EpisodeStats`.

    δ must be an integer ≥ 1 here. δ < 1 (several layers per env step) is handled in the network by
    grouping layers into stages; use :func:`realtime_env`, which returns the env unchanged for δ ≤ 1.
    """

    def __init__(self, env: JaxEnv, delta: int, default_policy: str = "repeat"):
        d = check_delta(delta)
        if d < 1:
            raise PipelagError(
                f"RealTime needs an integer delta >= 1, got delta={delta!r}: δ < 1 (layers faster than "
                f"the env) is handled by grouping layers into stages in the network, while the env "
                f"steps once per agent step. Use realtime_env(env, delta), which returns env unchanged "
                f"for δ <= 1."
            )
        super().__init__(env)
        self.delta = int(d)
        self.default_policy = check_default_policy(default_policy)
        why = env.default_policy_warning(self.delta, self.default_policy)
        if why:  # β makes this env degenerate at this δ (e.g. MiniGrid turns repeated 4 times)
            warnings.warn(why, UserWarning, stacklevel=2)
        if env.max_episode_steps is not None:
            self.max_episode_steps = -(-env.max_episode_steps // self.delta)
        #: a traced δ ≤ ``delta`` of one member of a vmapped batch of δs (None: ``delta``), see with_member_delta
        self.member_delta = None

    def reset_env(self, key):
        env_state, obs = self.env.reset_env(key)
        return RealTimeState(env_state, jnp.zeros((), jnp.int32)), obs

    def step_env(self, key, state, action):
        keys = jax.random.split(key, self.delta)  # split(key, n)[i] does not depend on n (≥ i + 1)
        first = keys[0]
        member = self.member_delta
        if member is not None:  # a δ = 1 member steps with `key` itself, as its env without RealTime does
            first = jnp.where(member == 1, key, first)
        env_state, step = self.env.step_env(first, state.env_state, action)
        n = raw_steps(self.env, env_state).astype(jnp.int32)
        if self.delta > 1:
            beta_action = default_action(action, self.default_policy, jnp, self.env.noop_action)

            def body(carry, xs):
                k, i = xs
                env_state, step, n = carry
                active = jnp.logical_not(step.done)
                if member is not None:  # this member's tick ends after its own δ env steps
                    active = jnp.logical_and(active, i < member)
                new_state, new_step = self.env.step_env(k, env_state, beta_action)
                new_n = n + raw_steps(self.env, new_state).astype(jnp.int32)
                new_step = new_step._replace(reward=step.reward + new_step.reward)
                return _select(active, (new_state, new_step, new_n), (env_state, step, n)), None

            (env_state, step, n), _ = jax.lax.scan(body, (env_state, step, n), (keys[1:], jnp.arange(1, self.delta)))
        return RealTimeState(env_state, n), step._replace(final_obs=step.obs)

    def with_member_delta(self, delta) -> RealTime:
        """This wrapper stepping ``delta`` env steps per agent step instead (a traced integer in
        [1, ``self.delta``]: one member of several δs vmapped as one program). It still loops ``self.delta``
        times, the steps past ``delta`` masked out; keys are those of ``RealTime(env, delta)``, and a member
        with δ = 1 gets those of the bare env, so each member computes what its own env computes."""
        view = copy.copy(self)
        view.member_delta = jnp.asarray(delta, jnp.int32)
        return view

    def raw_steps(self, state):
        return state.last_raw_steps

    def __repr__(self):
        return f"RealTime({self.env!r}, delta={self.delta}, default_policy={self.default_policy!r})"


def with_member_delta(env: JaxEnv, delta) -> JaxEnv:
    """``env`` (a wrapper chain holding a :class:`RealTime`) with that RealTime stepping ``delta`` env
    steps per agent step (see ``RealTime.with_member_delta``); the other wrappers are shallow copies.
    ``delta`` None: ``env`` itself (a run of one config)."""
    if delta is None:
        return env
    if isinstance(env, RealTime):
        return env.with_member_delta(delta)
    if not isinstance(env, Wrapper):
        raise PipelagError("batching several δs needs the env built with the largest δ (> 1): no RealTime "
                           "wrapper found in the env")
    view = copy.copy(env)
    view.env = with_member_delta(env.env, delta)
    return view


def realtime_env(env: JaxEnv, delta: int | float, default_policy: str = "repeat") -> JaxEnv:
    """``RealTime(env, delta, default_policy)`` for δ > 1; ``env`` unchanged for 0 < δ ≤ 1 (δ < 1 is
    handled in the network by grouping layers; the env then steps once per agent step)."""
    d = check_delta(delta)
    check_default_policy(default_policy)
    if d <= 1:
        return env
    return RealTime(env, int(d), default_policy)


class ActionHistoryState(NamedTuple):
    env_state: Any
    #: ``[k, A]`` encoded past actions, oldest first (zeros = "no action yet")
    actions: jax.Array


class ActionHistory(Wrapper):
    """Appends the last k actions to the observation, newest last.

    Encodings: ``"vector"`` (observation ``[D]`` → ``[D + k*A]``, actions one-hot for discrete envs,
    flattened for continuous ones) or ``"onehot_planes"`` (image ``[H, W, C]`` → ``[H, W, C + k*A]``,
    each action's encoding tiled over H×W). The observation becomes float32.

    Reset convention: at the start of every episode the history is all zeros (an all-zero entry means
    "no action yet", distinct from the one-hot of action 0), so o_0 carries k zero entries, o_1 carries
    (0, …, 0, a_0), etc.

    This env-side history contains only actions executed *before* the observation was produced:
    o_t carries a_{t−k} … a_{t−1}. It never contains a_t, the action being executed while the network
    computes a_{t+1}; the pipelined network core is responsible for feeding a_t itself (DESIGN §2).
    Put it outside :class:`RealTime` so it records agent actions (one entry per agent step).
    """

    def __init__(self, env: JaxEnv, k: int, encoding: str = "vector"):
        super().__init__(env)
        self.k = check_history_length(k, "ActionHistory k")
        self.encoding = encoding
        self.action_size = action_size(env.num_actions, tuple(env.action_shape))
        self.obs_shape = augmented_history_shape(tuple(env.obs_shape), self.k, self.action_size, encoding)
        self.obs_dtype = jnp.float32

    def reset_env(self, key):
        env_state, obs = self.env.reset_env(key)
        actions = jnp.zeros((self.k, self.action_size), jnp.float32)
        return ActionHistoryState(env_state, actions), history_observation(obs, actions, self.encoding, jnp)

    def step_env(self, key, state, action):
        env_state, step = self.env.step_env(key, state.env_state, action)
        actions = push_history(state.actions, encode_action(action, self.num_actions, jnp), jnp)
        obs = history_observation(step.obs, actions, self.encoding, jnp)
        return ActionHistoryState(env_state, actions), step._replace(obs=obs, final_obs=obs)

    def __repr__(self):
        return f"ActionHistory({self.env!r}, k={self.k}, encoding={self.encoding!r})"


class FrameStackState(NamedTuple):
    env_state: Any
    #: ``[k, *obs_shape]``, oldest first
    frames: jax.Array


class FrameStack(Wrapper):
    """The last k observations, oldest first, concatenated on the last axis (channels for images,
    features for vectors): ``[..., C]`` → ``[..., k*C]``. At reset the stack is filled with k copies
    of the first observation."""

    def __init__(self, env: JaxEnv, k: int):
        super().__init__(env)
        self.k = check_history_length(k, "FrameStack k")
        self.obs_shape = frame_stack_shape(tuple(env.obs_shape), self.k)

    def reset_env(self, key):
        env_state, obs = self.env.reset_env(key)
        frames = fill_history(obs, self.k, jnp)
        return FrameStackState(env_state, frames), stack_frames(frames, jnp)

    def step_env(self, key, state, action):
        env_state, step = self.env.step_env(key, state.env_state, action)
        frames = push_history(state.frames, step.obs, jnp)
        obs = stack_frames(frames, jnp)
        return FrameStackState(env_state, frames), step._replace(obs=obs, final_obs=obs)

    def __repr__(self):
        return f"FrameStack({self.env!r}, k={self.k})"


class EpisodeStatsState(NamedTuple):
    env_state: Any
    stats: EpisodeStatistics


class EpisodeStats(Wrapper):
    """Tracks the episode return (sum of the raw env rewards) and length, in raw env steps and in
    agent steps, and keeps the stats of the last finished episode in the state.

    Read them with :func:`episode_stats`. Must be the outermost wrapper: it overrides ``step`` (same
    auto-reset and key use as :meth:`JaxEnv.step`, so trajectories are unchanged) to keep the stats out
    of the auto-reset. Raw steps come from :func:`raw_steps`, i.e. from any :class:`RealTime` inside.
    """

    def reset_env(self, key):
        env_state, obs = self.env.reset_env(key)
        return EpisodeStatsState(env_state, init_episode_statistics(jnp)), obs

    def _update(self, state, env_state, step):
        n = raw_steps(self.env, env_state)
        return update_episode_statistics(state.stats, step.reward, step.done, n, jnp)

    def step_env(self, key, state, action):
        env_state, step = self.env.step_env(key, state.env_state, action)
        return EpisodeStatsState(env_state, self._update(state, env_state, step)), step

    def step(self, key, state, action):
        key_step, key_reset = jax.random.split(key)
        next_state, step = self.env.step_env(key_step, state.env_state, action)
        stats = self._update(state, next_state, step)
        reset_state, reset_obs = self.env.reset_env(key_reset)
        done = step.done
        env_state = _select(done, reset_state, next_state)
        obs = jnp.where(done, reset_obs, step.obs)
        return EpisodeStatsState(env_state, stats), step._replace(obs=obs, final_obs=step.obs)


def episode_stats(state: EpisodeStatsState) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(returned_episode_return, returned_episode_raw_length, returned_episode_agent_length,
    episode_ended_flag)`` from the state of an :class:`EpisodeStats`-wrapped env (batched if the
    state is). The ``returned_*`` values describe the last finished episode (zeros before any ended);
    the flag is True exactly on the step that ended an episode."""
    if not isinstance(state, EpisodeStatsState):
        raise PipelagError(
            f"episode_stats needs the state of an EpisodeStats-wrapped env (outermost wrapper), got "
            f"{type(state).__name__}; wrap the env with EpisodeStats(env) or wrap_env(..., episode_stats=True)."
        )
    s = state.stats
    return (
        s.returned_episode_return,
        s.returned_episode_raw_length,
        s.returned_episode_agent_length,
        s.episode_ended,
    )


def wrap_env(
    env: JaxEnv,
    delta: int | float = 1,
    default_policy: str = "repeat",
    action_history: int = 0,
    action_encoding: str = "vector",
    frame_stack: int = 0,
    episode_stats: bool = True,
) -> JaxEnv:
    """The canonical stack (same as the host adapter):
    ``EpisodeStats(ActionHistory(FrameStack(realtime_env(env, delta), frame_stack), action_history))``,
    each augmentation only when its k > 0."""
    env = realtime_env(env, delta, default_policy)
    if frame_stack:
        env = FrameStack(env, frame_stack)
    if action_history:
        env = ActionHistory(env, action_history, action_encoding)
    if episode_stats:
        env = EpisodeStats(env)
    return env
