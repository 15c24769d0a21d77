"""Wrappers on a deterministic toy chain env whose rewards encode the step and the action."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag.envs.base import JaxEnv, Step
from pipelag.envs.wrappers import (
    ActionHistory,
    EpisodeStats,
    FrameStack,
    RealTime,
    episode_stats,
    raw_steps,
    realtime_env,
    with_member_delta,
    wrap_env,
)
from pipelag.errors import PipelagError


class Chain(JaxEnv):
    """t counts env steps in the episode. Action a at step t (t = 0, 1, ...) gives reward
    10*(t+1) + value(a), where value(a) = a (discrete) or a[0] + 2*a[1] (continuous, shape (2,)).
    Terminates when t+1 == length, truncates when t+1 == time_limit (if not terminated).
    Observation: [t, value of the last action (-1 at reset)] (+ a key-dependent uniform if
    ``noisy``); with ``image`` the same values as a (2, 2, C) image, one channel per value."""

    def __init__(self, length=5, time_limit=None, num_actions=3, continuous=False, image=False, noisy=False):
        self.length, self.time_limit, self.image, self.noisy = length, time_limit, image, noisy
        self.num_actions = None if continuous else num_actions
        self.action_shape = (2,) if continuous else ()
        c = 3 if noisy else 2
        self.obs_shape = (2, 2, c) if image else (c,)
        self.max_episode_steps = time_limit
        self.env_id = "Chain"

    def value(self, action):
        if self.num_actions is None:
            return action[0] + 2.0 * action[1]
        return action.astype(jnp.float32)

    def _obs(self, t, last, key):
        vals = [t.astype(jnp.float32), jnp.asarray(last, jnp.float32)]
        if self.noisy:
            vals.append(jax.random.uniform(key))
        v = jnp.stack(vals)
        return jnp.broadcast_to(v, (2, 2, v.shape[0])) if self.image else v

    def reset_env(self, key):
        t = jnp.zeros((), jnp.int32)
        return t, self._obs(t, -1.0, key)

    def step_env(self, key, state, action):
        t1 = state + 1
        value = self.value(jnp.asarray(action))
        reward = (10.0 * t1 + value).astype(jnp.float32)
        terminated = t1 >= self.length
        if self.time_limit is None:
            truncated = jnp.zeros((), bool)
        else:
            truncated = jnp.logical_and(t1 >= self.time_limit, jnp.logical_not(terminated))
        obs = self._obs(t1, value, key)
        return t1, Step(obs, reward, terminated, truncated, obs)


def run(env, actions, key=0):
    """Unjitted python loop over env.step; returns lists of (state, Step)."""
    k = jax.random.PRNGKey(key)
    k, k0 = jax.random.split(k)
    state, obs = jax.jit(env.reset)(k0)
    step_fn = jax.jit(env.step)
    out = []
    for a in actions:
        k, ks = jax.random.split(k)
        state, step = step_fn(ks, state, jnp.asarray(a))
        out.append((state, step))
    return obs, out


def col(out, field):
    return np.array([getattr(s, field) for _, s in out])


# ---------------------------------------------------------------------------------------------- RealTime


def test_realtime_repeat_sums_rewards_and_stops_at_episode_end():
    env = RealTime(Chain(length=5), 3, "repeat")
    _, out = run(env, [2, 2, 1, 1])
    # ep 1: steps t=0,1,2 (12+22+32), then t=3,4 and the episode ends after 2 raw steps (42+52)
    np.testing.assert_array_equal(col(out, "reward"), [66, 94, 63, 92])
    np.testing.assert_array_equal(col(out, "terminated"), [False, True, False, True])
    np.testing.assert_array_equal(col(out, "truncated"), [False] * 4)
    np.testing.assert_array_equal(out[0][1].obs, [3, 2])
    np.testing.assert_array_equal(out[1][1].final_obs, [5, 2])  # not stepped past t = 5
    np.testing.assert_array_equal(out[1][1].obs, [0, -1])  # auto-reset
    assert [int(s.last_raw_steps) for s, _ in out] == [3, 0, 3, 0]  # after auto-reset: reset state
    env_state, _ = env.step_env(jax.random.PRNGKey(0), out[0][0], jnp.asarray(2))
    assert int(raw_steps(env, env_state)) == 2


def test_realtime_single_remaining_step():
    env = RealTime(Chain(length=4), 3)
    _, out = run(env, [2, 2])
    np.testing.assert_array_equal(col(out, "reward"), [66, 42])  # not 42 + 52 + 62
    np.testing.assert_array_equal(out[1][1].final_obs, [4, 2])


def test_realtime_noop_discrete():
    env = RealTime(Chain(length=5), 3, "noop")
    _, out = run(env, [2, 2])
    np.testing.assert_array_equal(col(out, "reward"), [12 + 20 + 30, 42 + 50])
    np.testing.assert_array_equal(out[0][1].obs, [3, 0])  # last executed action was the no-op 0


def test_realtime_continuous_repeat_and_noop():
    a = jnp.array([1.0, 0.5])  # value 2
    _, out = run(RealTime(Chain(length=9, continuous=True), 2, "repeat"), [a, a])
    np.testing.assert_allclose(col(out, "reward"), [12 + 22, 32 + 42])
    _, out = run(RealTime(Chain(length=9, continuous=True), 2, "noop"), [a, a])
    np.testing.assert_allclose(col(out, "reward"), [12 + 20, 32 + 40])


def test_realtime_truncation_inside_tick():
    env = RealTime(Chain(length=10, time_limit=4), 3)
    assert env.max_episode_steps == 2
    _, out = run(env, [1, 1, 1])
    np.testing.assert_array_equal(col(out, "reward"), [63, 41, 63])
    np.testing.assert_array_equal(col(out, "truncated"), [False, True, False])
    np.testing.assert_array_equal(col(out, "terminated"), [False, False, False])


def test_realtime_uses_distinct_keys_per_env_step():
    env = RealTime(Chain(length=10, noisy=True), 3)
    state, _ = env.reset(jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    _, step = env.step_env(key, state, jnp.asarray(1))
    # δ env steps with the δ keys split from the agent step's key (the obs noise is the last key's)
    keys = jax.random.split(key, 3)
    inner = Chain(length=10, noisy=True)
    s = state.env_state
    for k in keys:
        s, inner_step = inner.step_env(k, s, jnp.asarray(1))
    np.testing.assert_array_equal(step.obs, inner_step.obs)


@pytest.mark.parametrize(
    "delta, match",
    [
        (0.5, "grouping layers"),
        (0.25, "realtime_env"),
        (0, "positive"),
        (-2, "positive"),
        (2.5, "integer"),
        (True, "positive number"),
        ("2", "positive number"),
        (float("nan"), "positive number"),
    ],
)
def test_realtime_delta_errors(delta, match):
    with pytest.raises(PipelagError, match=match):
        RealTime(Chain(), delta)


def test_realtime_accepts_integral_float_and_checks_policy():
    assert RealTime(Chain(), 2.0).delta == 2
    with pytest.raises(PipelagError, match="repeat"):
        RealTime(Chain(), 2, "zero")


def test_realtime_env_helper():
    env = Chain()
    assert realtime_env(env, 1) is env
    assert realtime_env(env, 0.5) is env
    wrapped = realtime_env(env, 3, "noop")
    assert isinstance(wrapped, RealTime) and wrapped.delta == 3 and wrapped.default_policy == "noop"
    with pytest.raises(PipelagError):
        realtime_env(env, 0)
    with pytest.raises(PipelagError):
        realtime_env(env, 1.5)


# ---------------------------------------------------------------------------------------------- ActionHistory


def test_action_history_vector_contents():
    env = ActionHistory(Chain(length=4), 2)
    assert env.obs_shape == (2 + 2 * 3,)
    obs0, out = run(env, [1, 2, 0, 1, 2])
    np.testing.assert_array_equal(obs0, [0, -1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out[0][1].obs, [1, 1, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(out[1][1].obs, [2, 2, 0, 1, 0, 0, 0, 1])
    np.testing.assert_array_equal(out[2][1].obs, [3, 0, 0, 0, 1, 1, 0, 0])
    # episode ends at the 4th step: final_obs has the history, obs is the reset obs (zeros)
    np.testing.assert_array_equal(out[3][1].final_obs, [4, 1, 1, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(out[3][1].obs, [0, -1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out[4][1].obs, [1, 2, 0, 0, 0, 0, 0, 1])
    assert out[4][1].obs.dtype == jnp.float32


def test_action_history_continuous_vector():
    env = ActionHistory(Chain(length=9, continuous=True), 2)
    obs0, out = run(env, [jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0])])
    np.testing.assert_array_equal(obs0, [0, -1, 0, 0, 0, 0])
    np.testing.assert_array_equal(out[1][1].obs, [2, 11, 1, 2, 3, 4])


def test_action_history_onehot_planes():
    env = ActionHistory(Chain(length=9, image=True), 2, "onehot_planes")
    assert env.obs_shape == (2, 2, 2 + 2 * 3)
    obs0, out = run(env, [2, 1])
    np.testing.assert_array_equal(obs0.shape, (2, 2, 8))
    for y in range(2):
        for x in range(2):
            np.testing.assert_array_equal(obs0[y, x], [0, -1, 0, 0, 0, 0, 0, 0])
            np.testing.assert_array_equal(out[0][1].obs[y, x], [1, 2, 0, 0, 0, 0, 0, 1])
            np.testing.assert_array_equal(out[1][1].obs[y, x], [2, 1, 0, 0, 1, 0, 1, 0])


def test_action_history_encoding_errors():
    with pytest.raises(PipelagError, match="onehot_planes"):
        ActionHistory(Chain(image=True), 2, "vector")
    with pytest.raises(PipelagError, match="vector"):
        ActionHistory(Chain(), 2, "onehot_planes")
    with pytest.raises(PipelagError, match="encoding"):
        ActionHistory(Chain(), 2, "planes")
    with pytest.raises(PipelagError, match="positive integer"):
        ActionHistory(Chain(), 0)


def test_action_history_outside_realtime_records_agent_actions():
    env = ActionHistory(RealTime(Chain(length=20), 3, "noop"), 2)
    _, out = run(env, [1, 2])
    # the history holds the agent's actions, not β's no-ops; the obs's last action is β's 0
    np.testing.assert_array_equal(out[1][1].obs, [6, 0, 0, 1, 0, 0, 0, 1])


# ---------------------------------------------------------------------------------------------- FrameStack


def test_frame_stack_vector_padding_and_order():
    env = FrameStack(Chain(length=3), 3)
    assert env.obs_shape == (6,)
    obs0, out = run(env, [1, 2, 0, 1])
    np.testing.assert_array_equal(obs0, [0, -1, 0, -1, 0, -1])
    np.testing.assert_array_equal(out[0][1].obs, [0, -1, 0, -1, 1, 1])
    np.testing.assert_array_equal(out[1][1].obs, [0, -1, 1, 1, 2, 2])
    np.testing.assert_array_equal(out[2][1].final_obs, [1, 1, 2, 2, 3, 0])
    np.testing.assert_array_equal(out[2][1].obs, [0, -1, 0, -1, 0, -1])  # padded again after reset
    np.testing.assert_array_equal(out[3][1].obs, [0, -1, 0, -1, 1, 1])


def test_frame_stack_image_channels():
    env = FrameStack(Chain(length=9, image=True), 2)
    assert env.obs_shape == (2, 2, 4)
    obs0, out = run(env, [2])
    np.testing.assert_array_equal(obs0[1, 0], [0, -1, 0, -1])
    np.testing.assert_array_equal(out[0][1].obs[0, 1], [0, -1, 1, 2])


# ---------------------------------------------------------------------------------------------- EpisodeStats


@pytest.mark.parametrize("order", ["stats(hist(rt))", "stats(rt(hist))"])
def test_episode_stats_raw_and_agent_steps(order):
    inner = Chain(length=5)
    if order == "stats(hist(rt))":
        env = EpisodeStats(ActionHistory(RealTime(inner, 2), 1))
    else:
        env = EpisodeStats(RealTime(ActionHistory(inner, 1), 2))
    _, out = run(env, [1] * 7)
    stats = [tuple(np.asarray(x).item() for x in episode_stats(s)) for s, _ in out]
    # agent steps: t0-1 (11+21), t2-3 (31+41), t4 (51, ends after 1 raw step)
    assert stats[:3] == [(0.0, 0, 0, False), (0.0, 0, 0, False), (155.0, 5, 3, True)]
    assert stats[3:5] == [(155.0, 5, 3, False), (155.0, 5, 3, False)]
    assert stats[5] == (155.0, 5, 3, True)
    assert stats[6] == (155.0, 5, 3, False)


def test_episode_stats_leaves_trajectory_unchanged():
    inner = RealTime(Chain(length=4, noisy=True), 2)
    obs_a, out_a = run(inner, [1, 0, 2, 1, 1])
    obs_b, out_b = run(EpisodeStats(inner), [1, 0, 2, 1, 1])
    np.testing.assert_array_equal(obs_a, obs_b)
    for (_, sa), (_, sb) in zip(out_a, out_b, strict=True):
        for x, y in zip(sa, sb, strict=True):
            np.testing.assert_array_equal(x, y)


def test_episode_stats_must_be_outermost():
    with pytest.raises(PipelagError, match="outermost"):
        RealTime(EpisodeStats(Chain()), 2)
    state, _ = Chain().reset(jax.random.PRNGKey(0))
    with pytest.raises(PipelagError, match="EpisodeStats"):
        episode_stats(state)


def test_wrapper_attribute_forwarding():
    env = wrap_env(Chain(length=7), delta=2, action_history=1, frame_stack=2)
    assert env.length == 7 and env.num_actions == 3 and env.env_id == "Chain"
    assert env.obs_shape == (4 + 3,)


# ---------------------------------------------------------------------------------------------- jit / vmap


def test_jit_vmap_scan_matches_python_loop():
    env = wrap_env(Chain(length=5, noisy=True), delta=3, action_history=2, frame_stack=2)
    n, t = 3, 6
    actions = jax.random.randint(jax.random.PRNGKey(3), (t, n), 0, 3)
    keys = jax.random.split(jax.random.PRNGKey(7), n)

    @jax.jit
    def rollout(keys, actions):
        def one(key, acts):
            key, k0 = jax.random.split(key)
            state, _ = env.reset(k0)

            def body(carry, a):
                state, key = carry
                key, ks = jax.random.split(key)
                state, step = env.step(ks, state, a)
                return (state, key), (step, episode_stats(state))

            return jax.lax.scan(body, (state, key), acts)[1]

        return jax.vmap(one)(keys, actions.T)

    steps, stats = rollout(keys, actions)
    assert steps.obs.shape == (n, t, 3 * 2 + 2 * 3)
    reset_fn, step_fn = jax.jit(env.reset), jax.jit(env.step)  # one env, no vmap, no scan
    for i in range(n):
        key, k0 = jax.random.split(keys[i])
        state, _ = reset_fn(k0)
        for j in range(t):
            key, ks = jax.random.split(key)
            state, step = step_fn(ks, state, actions[j, i])
            np.testing.assert_allclose(steps.obs[i, j], step.obs, rtol=1e-6)
            np.testing.assert_allclose(steps.final_obs[i, j], step.final_obs, rtol=1e-6)
            assert float(steps.reward[i, j]) == float(step.reward)
            assert bool(steps.terminated[i, j]) == bool(step.terminated)
            for a, b in zip(stats, episode_stats(state), strict=True):
                assert np.asarray(a[i, j]).item() == np.asarray(b).item()
    # δ=3 on a 5-step chain: every 2nd agent step ends an episode of 5 raw steps
    np.testing.assert_array_equal(steps.terminated, np.tile([False, True], (n, t // 2)))
    np.testing.assert_array_equal(stats[1][:, 1::2], 5)
    np.testing.assert_array_equal(stats[2][:, 1::2], 2)


# ---------------------------------------------------------------------------------------------- real envs


@pytest.mark.parametrize(
    "env_id, options, encoding",
    [
        ("MinAtar/Breakout-v0", {}, "onehot_planes"),
        ("MiniGrid-Empty-Random-5x5-v0", {"view": "symbolic"}, "onehot_planes"),
    ],
)
def test_wrapped_real_envs_jit_vmap(env_id, options, encoding):
    from pipelag.envs import make

    try:
        base = make(env_id, **options)
    except ModuleNotFoundError:
        pytest.skip(f"the JAX env module for {env_id} is not written yet")
    env = wrap_env(base, delta=2, action_history=2, action_encoding=encoding, frame_stack=2)
    h, w, c = base.obs_shape
    assert env.obs_shape == (h, w, 2 * c + 2 * base.num_actions)
    n, t = 2, 40

    @jax.jit
    def rollout(key):
        state, obs0 = jax.vmap(env.reset)(jax.random.split(key, n))

        def body(state, k):
            ka, ks = jax.random.split(k)
            a = jax.random.randint(ka, (n,), 0, base.num_actions)
            state, step = jax.vmap(env.step)(jax.random.split(ks, n), state, a)
            return state, (a, step, episode_stats(state))

        return obs0, jax.lax.scan(body, state, jax.random.split(key, t))[1]

    obs0, (a, steps, stats) = rollout(jax.random.PRNGKey(0))
    assert steps.obs.shape == (t, n, *env.obs_shape)
    np.testing.assert_array_equal(obs0[..., :c], obs0[..., c : 2 * c])  # frame-stack padding
    np.testing.assert_array_equal(obs0[..., 2 * c :], 0)  # empty action history
    # the newest history entry of every non-reset observation is the agent's action, tiled
    newest = steps.final_obs[:, :, 0, 0, 2 * c + base.num_actions :]
    np.testing.assert_array_equal(newest, np.eye(base.num_actions)[np.asarray(a)])
    # raw length = 2 per agent step, except possibly the last one of an episode
    ended = np.asarray(stats[3])
    if env_id.startswith("MinAtar"):
        assert ended.any()  # random Breakout episodes are short: the check below is not vacuous
    raw, agent = np.asarray(stats[1])[ended], np.asarray(stats[2])[ended]
    assert np.all((raw == 2 * agent) | (raw == 2 * agent - 1))


def test_several_deltas_vmapped_in_one_program_step_as_their_own_envs():
    """Each member of δ ∈ {1, 2, 3, 4} vmapped through one RealTime(env, 4) (the steps past its δ masked)
    gets exactly the trajectory of its own env: RealTime(env, δ), and the bare env for δ = 1. MinAtar's
    sticky actions draw from the keys, so the keys must match too."""
    from pipelag.envs import make

    base = make("MinAtar/Breakout-v0")
    deltas, t = (1, 2, 3, 4), 60
    acts = jax.random.randint(jax.random.PRNGKey(5), (t,), 0, base.num_actions)

    def rollout(env):
        def body(state, xs):
            k, a = xs
            state, step = env.step(k, state, a)
            return state, (step.obs, step.reward, step.done, episode_stats(state))

        state, _ = env.reset(jax.random.PRNGKey(1))
        return jax.lax.scan(body, state, (jax.random.split(jax.random.PRNGKey(2), t), acts))[1]

    big = EpisodeStats(realtime_env(base, max(deltas)))
    batched = jax.jit(jax.vmap(lambda d: rollout(with_member_delta(big, d))))(jnp.asarray(deltas))
    for i, d in enumerate(deltas):
        own = jax.jit(lambda d=d: rollout(EpisodeStats(realtime_env(base, d))))()
        jax.tree.map(lambda b, o, i=i: np.testing.assert_array_equal(np.asarray(b)[i], np.asarray(o)), batched, own)
    assert np.asarray(batched[3][1])[:, 3].max() > np.asarray(batched[3][1])[:, 0].max()  # δ = 4 took more raw steps
    with pytest.raises(PipelagError, match="largest δ"):
        with_member_delta(EpisodeStats(base), 2)
