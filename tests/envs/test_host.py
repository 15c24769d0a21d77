"""Host adapter: equal to the JAX wrappers on the toy chain env implemented both ways, and working
with gymnasium's CartPole and the real minatar / minigrid gymnasium envs."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag.envs.host import make_host_env
from pipelag.envs.wrappers import episode_stats, wrap_env
from pipelag.errors import PipelagError

try:
    from tests.envs.test_wrappers import Chain
except ModuleNotFoundError:  # tests/envs collected as rootdir-less modules (no __init__.py)
    from test_wrappers import Chain


class ChainGym(gym.Env):
    """The toy :class:`Chain` env as a gymnasium env (same rewards, observations, episode ends)."""

    def __init__(self, length=5, time_limit=None, num_actions=3, continuous=False, image=False):
        self.length, self.time_limit, self.image, self.continuous = length, time_limit, image, continuous
        shape = (2, 2, 2) if image else (2,)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
        if continuous:
            self.action_space = gym.spaces.Box(-5.0, 5.0, (2,), np.float32)
        else:
            self.action_space = gym.spaces.Discrete(num_actions)

    def _obs(self, last):
        v = np.array([self.t, last], np.float32)
        return np.broadcast_to(v, (2, 2, 2)).copy() if self.image else v

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(-1.0), {}

    def step(self, action):
        value = float(action[0] + 2 * action[1]) if self.continuous else float(action)
        self.t += 1
        terminated = self.t >= self.length
        truncated = self.time_limit is not None and self.t >= self.time_limit and not terminated
        return self._obs(value), 10.0 * self.t + value, terminated, truncated, {}


def jax_rollout(env, actions):
    """Vmapped rollout of the JAX env: actions [T, N] -> per step (obs, reward, term, trunc, final, stats)."""
    n = actions.shape[1]
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    state, obs0 = jax.jit(jax.vmap(env.reset))(keys)
    step_fn = jax.jit(jax.vmap(env.step))
    out = []
    for a in actions:
        keys = jax.vmap(lambda k: jax.random.split(k)[0])(keys)
        state, step = step_fn(keys, state, jnp.asarray(a))
        out.append((step, episode_stats(state)))
    return np.asarray(obs0), out


@pytest.mark.parametrize(
    "kw, gym_kw",
    [
        (dict(delta=3, default_policy="repeat", action_history=2, frame_stack=2), dict(length=5)),
        (dict(delta=2, default_policy="noop", action_history=1), dict(length=4, time_limit=3)),
        (dict(delta=1, frame_stack=3), dict(length=3)),
        (
            dict(delta=2, action_history=2, frame_stack=2, action_encoding="onehot_planes"),
            dict(length=6, image=True),
        ),
    ],
)
def test_host_equals_jax_wrappers_on_toy_env(kw, gym_kw):
    n, t = 3, 14
    actions = np.random.default_rng(0).integers(0, 3, (t, n))
    host = make_host_env(lambda: ChainGym(**gym_kw), n, seed=0, **kw)
    jenv = wrap_env(Chain(**gym_kw), **kw)
    assert host.obs_shape == jenv.obs_shape
    obs0_j, out_j = jax_rollout(jenv, actions)
    np.testing.assert_array_equal(host.reset(), obs0_j)
    ended = 0
    for a, (step, stats) in zip(actions, out_j, strict=True):
        obs, reward, term, trunc, final_obs, hstats = host.step(a)
        np.testing.assert_array_equal(obs, step.obs)
        np.testing.assert_array_equal(final_obs, step.final_obs)
        np.testing.assert_array_equal(reward, step.reward)
        np.testing.assert_array_equal(term, step.terminated)
        np.testing.assert_array_equal(trunc, step.truncated)
        names = [
            "returned_episode_return",
            "returned_episode_raw_length",
            "returned_episode_agent_length",
            "episode_ended",
        ]
        for name, value in zip(names, stats, strict=True):
            np.testing.assert_array_equal(hstats[name], value, err_msg=name)
        ended += int(hstats["episode_ended"].sum())
    assert ended >= n  # the comparison covered auto-resets
    host.close()


def test_host_continuous_noop():
    host = make_host_env(lambda: ChainGym(length=9, continuous=True), 2, seed=0, delta=2, default_policy="noop",
                         action_history=1)
    host.reset()
    obs, reward, *_ = host.step(np.array([[1.0, 0.5], [0.0, 1.0]], np.float32))
    np.testing.assert_array_equal(reward, [12 + 20, 12 + 20])
    np.testing.assert_array_equal(obs, [[2, 0, 1, 0.5], [2, 0, 0, 1]])


def test_cartpole_realtime_semantics():
    delta, seed = 3, 5
    host = make_host_env("CartPole-v1", 2, seed=seed, delta=delta)
    ref = gym.make("CartPole-v1")
    obs = host.reset()
    ref_obs, _ = ref.reset(seed=seed)
    np.testing.assert_allclose(obs[0], ref_obs, rtol=1e-6)
    rng = np.random.default_rng(0)
    agent_steps = 0
    while True:
        a = rng.integers(0, 2, 2)
        obs, reward, term, trunc, final_obs, stats = host.step(a)
        agent_steps += 1
        r = 0.0
        for _ in range(delta):
            ref_obs, rr, rt, rtr, _ = ref.step(int(a[0]))
            r += rr
            if rt or rtr:
                break
        assert reward[0] == r
        assert stats["raw_steps"][0] == int(r)  # CartPole: reward 1 per raw step
        np.testing.assert_allclose(final_obs[0], ref_obs, rtol=1e-6)
        assert bool(term[0]) == rt
        if term[0] or trunc[0]:
            break
    assert stats["episode_ended"][0]
    raw = stats["returned_episode_raw_length"][0]
    assert stats["returned_episode_return"][0] == raw
    assert stats["returned_episode_agent_length"][0] == agent_steps == -(-raw // delta)
    assert not np.array_equal(obs[0], final_obs[0])  # obs is the next episode's first observation
    host.close()


def test_minatar_gym_lockstep_with_original_environment():
    minatar = pytest.importorskip("minatar")
    delta, seed = 2, 3
    host = make_host_env("MinAtar/Breakout-v0", 2, seed=seed, delta=delta, action_history=1,
                         action_encoding="onehot_planes")
    assert host.obs_shape == (10, 10, 4 + 6)
    ref = minatar.Environment("breakout")
    ref.seed(seed)
    ref.reset()
    obs = host.reset()
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs[0, :, :, :4], ref.state())
    np.testing.assert_array_equal(obs[0, :, :, 4:], 0)
    rng = np.random.default_rng(1)
    ep_return, ep_raw, ep_agent = 0.0, 0, 0
    for _ in range(300):
        a = rng.integers(0, 6, 2)
        obs, reward, term, trunc, final_obs, stats = host.step(a)
        r, done = 0.0, False
        for _ in range(delta):
            rr, done = ref.act(int(a[0]))
            r += rr
            ep_raw += 1
            if done:
                break
        ep_return += r
        ep_agent += 1
        assert reward[0] == r
        np.testing.assert_array_equal(final_obs[0, :, :, :4], ref.state())
        np.testing.assert_array_equal(final_obs[0, 0, 0, 4:], np.eye(6)[a[0]])
        assert bool(term[0]) == done
        if done:
            break
    assert done, "a random Breakout episode should end within 600 env steps"
    assert stats["episode_ended"][0]
    assert stats["returned_episode_return"][0] == ep_return
    assert stats["returned_episode_raw_length"][0] == ep_raw
    assert stats["returned_episode_agent_length"][0] == ep_agent
    np.testing.assert_array_equal(obs[0, :, :, 4:], 0)  # history zero-filled after the auto-reset
    host.close()


def test_minigrid_truncation_stats_and_views():
    pytest.importorskip("minigrid")
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    host = make_host_env("MiniGrid-Empty-Random-5x5-v0", 2, seed=0, delta=2)
    assert host.obs_shape == (7, 7, 3) and host.num_actions == 7
    host.reset()
    for i in range(50):  # max_steps = 100 raw steps; turning left never reaches the goal
        obs, reward, term, trunc, final_obs, stats = host.step(np.zeros(2, np.int64))
        assert trunc.all() == (i == 49)
    assert not term.any()
    np.testing.assert_array_equal(stats["returned_episode_raw_length"], [100, 100])
    np.testing.assert_array_equal(stats["returned_episode_agent_length"], [50, 50])
    host.close()

    rgb = make_host_env(
        lambda: ImgObsWrapper(RGBImgPartialObsWrapper(gym.make("MiniGrid-DoorKey-5x5-v0"))), 2, seed=0,
        frame_stack=2,
    )
    obs = rgb.reset()
    assert obs.shape == (2, 56, 56, 6)
    np.testing.assert_array_equal(obs[..., :3], obs[..., 3:])  # padded with the first frame
    obs, *_ = rgb.step(np.array([0, 0]))  # turn left: the view changes
    assert not np.array_equal(obs[..., :3], obs[..., 3:])
    rgb.close()


def test_host_errors():
    with pytest.raises(PipelagError, match="unknown gymnasium id"):
        make_host_env("NoSuchEnv-v9", 1, seed=0)
    with pytest.raises(PipelagError, match="positive"):
        make_host_env("CartPole-v1", 1, seed=0, delta=0)
    with pytest.raises(PipelagError, match="integer"):
        make_host_env("CartPole-v1", 1, seed=0, delta=1.5)
    with pytest.raises(PipelagError, match="num_envs"):
        make_host_env("CartPole-v1", 0, seed=0)
    with pytest.raises(PipelagError, match="onehot_planes"):
        make_host_env("CartPole-v1", 1, seed=0, action_history=1, action_encoding="onehot_planes")


@pytest.mark.parametrize("delta, policy, quarter_turns_left, warns", [
    (4, "repeat", 0, True), (3, "repeat", 3, False), (4, "noop", 1, False)])
def test_minigrid_turns_under_the_host_default_policy(delta, policy, quarter_turns_left, warns):
    """The host twin of test_turns_under_the_default_policy, on the real minigrid env: β = "noop" is
    minigrid's "done" (its action 0 is a left turn), and β = "repeat" at δ = 4 cancels every turn (with a
    warning)."""
    import warnings

    import minigrid  # noqa: F401  (registers the MiniGrid-* ids)

    from pipelag.envs.host import RealTimeHost

    env = gym.make("MiniGrid-DoorKey-5x5-v0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rt = RealTimeHost(env, delta, policy)
    assert any("can never" in str(w.message) for w in caught) == warns
    rt.reset(seed=3)
    u = env.unwrapped
    d0, pos0, n0 = u.agent_dir, tuple(u.agent_pos), u.step_count
    rt.step(0)  # minigrid's left turn
    assert u.agent_dir == (d0 - quarter_turns_left) % 4
    assert tuple(u.agent_pos) == pos0 and u.step_count == n0 + delta
    rt.close()
