"""SAC units: the window sampler, the actor unroll vs the rollout, the update maths vs numpy, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelag.algorithms.sac.buffer import Transition, buffer_add, buffer_init, gather, sample_windows
from pipelag.algorithms.sac.config import SACConfig
from pipelag.algorithms.sac.losses import (
    Learner,
    actor_loss_from_values,
    alpha_loss,
    critic_loss_from_values,
    td_target,
    unroll_actor,
)
from pipelag.algorithms.sac.networks import (
    TwinCritic,
    actor_window,
    build_actor,
    critic_input,
    gaussian_params,
    mean_action,
    sample_action,
)
from pipelag.algorithms.sac.train import JaxDriver
from pipelag.errors import PipelagError

TOY = dict(env_id="PointTarget-v0", hidden=16, critic_hidden=16, batch_size=8, learning_starts=16,
           total_timesteps=64, eval_episodes=0)


# ============================================================================ the window sampler
CAP = 16


def _fake_buffer(episode_lengths: list[int], n_adds: int):
    """A buffer of capacity CAP after ``n_adds`` single adds; obs = global time, start = episode start."""
    starts = []
    for length in episode_lengths:
        starts += [True] + [False] * (length - 1)
    starts = (starts * (n_adds // max(1, len(starts)) + 2))[:n_adds]
    t = np.arange(n_adds)
    obs = np.full((CAP, 1), -1.0, np.float32)
    start = np.zeros(CAP, bool)
    obs[t % CAP, 0] = t  # later adds overwrite earlier ones, as in the ring buffer
    start[t % CAP] = np.asarray(starts, bool)
    example = Transition(jnp.zeros(1), jnp.zeros(1), 0.0, False, jnp.zeros(1), False, {})
    buf = buffer_init(CAP, example)
    data = buf.data._replace(obs=jnp.asarray(obs), start=jnp.asarray(start))
    return buf._replace(data=data, ptr=jnp.asarray(n_adds % CAP, jnp.int32),
                        size=jnp.asarray(min(n_adds, CAP), jnp.int32))


_sample = jax.jit(sample_windows, static_argnums=(2, 3))
_gather = jax.jit(gather)


def test_gather_reads_every_field_in_one_loop():
    """A window batch is read in one loop over the window (not one per field): on a GPU each loop trip costs a
    host round trip. Same values as plain indexing."""
    buf = _fake_buffer([3, 4], 20)
    idx, _ = _sample(buf, jax.random.PRNGKey(0), 8, 4)
    assert jax.jit(gather).lower(buf, idx).as_text().count("stablehlo.while") == 1
    for got, d in zip(jax.tree.leaves(_gather(buf, idx)), jax.tree.leaves(buf.data), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(d)[np.asarray(idx)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lengths=st.lists(st.integers(1, 7), min_size=1, max_size=6), window=st.integers(1, 5),
       n_adds=st.integers(5, 45), seed=st.integers(0, 2**16))
def test_windows_never_cross_an_episode_start_or_the_write_pointer(lengths, window, n_adds, seed):
    n_adds = max(n_adds, window)
    buf = _fake_buffer(lengths, n_adds)
    idx, first = _sample(buf, jax.random.PRNGKey(seed), 64, window)
    w = _gather(buf, idx)
    times, starts, first = np.asarray(w.obs[..., 0]), np.asarray(w.start), np.asarray(first)
    oldest = max(0, n_adds - CAP)
    assert (times >= oldest).all() and (times < n_adds).all()  # only written, still stored slots
    assert (np.diff(times, axis=1) == 1).all()  # consecutive in time: never wraps over the write pointer
    for b in range(idx.shape[0]):
        f = first[b]
        assert not starts[b, f + 1:].any(), "the valid part of a window contains an episode start"
        assert f == 0 or starts[b, f], "the mask must begin exactly at an episode start"


def test_the_sampler_reaches_every_valid_window_end():
    buf = _fake_buffer([3, 5, 2], 40)  # wrapped: slots hold times 24..39
    idx, _ = _sample(buf, jax.random.PRNGKey(0), 4096, 4)
    last_times = set(np.asarray(_gather(buf, idx).obs[:, -1, 0]).astype(int).tolist())
    assert last_times == set(range(24 + 3, 40))


def test_buffer_add_wraps_and_keeps_time_order():
    example = Transition(jnp.zeros(1), jnp.zeros(1), 0.0, False, jnp.zeros(1), False, {"a": jnp.zeros((2, 1))})

    def add(buf, t):
        tr = Transition(jnp.full(1, t, jnp.float32), jnp.zeros(1), t, False, jnp.zeros(1), t % 3 == 0,
                        {"a": jnp.full((2, 1), t, jnp.float32)})
        return buffer_add(buf, tr), None

    buf, _ = jax.lax.scan(add, buffer_init(5, example), jnp.arange(12.0))
    assert int(buf.ptr) == 12 % 5 and int(buf.size) == 5
    np.testing.assert_array_equal(np.asarray(buf.data.reward), [10, 11, 7, 8, 9])
    np.testing.assert_array_equal(np.asarray(buf.data.history["a"][:, 0, 0]), [10, 11, 7, 8, 9])


# ============================================================================ unroll == rollout
def _collect(config: SACConfig, steps: int, seed: int = 0):
    """Run the actor (mean actions, larger random weights so actions vary) and return (driver, runner)."""
    driver = JaxDriver(config)
    runner = driver.init(jax.random.PRNGKey(seed))
    params = driver.agent.net.init(jax.random.PRNGKey(seed + 1))
    params = {**params, "head": jax.tree.map(lambda x: 100.0 * x, params["head"])}
    runner = runner._replace(sac=runner.sac._replace(actor_params=params))
    runner = runner._replace(actor_state=driver.agent.net.initial_state(params, runner.obs))

    def body(r, _):
        return driver._env_step(r, "mean")[0], None

    runner, _ = jax.jit(lambda r: jax.lax.scan(body, r, None, length=steps))(runner)
    return driver, runner


def _all_windows(runner, window):
    size = int(runner.buffer.size)
    last = np.arange(window - 1, size)
    idx = last[:, None] - (window - 1) + np.arange(window)[None]
    starts = np.asarray(runner.buffer.data.start)[idx]
    pos = np.arange(window)[None]
    first = np.max(np.where(starts & (pos > 0), pos, 0), axis=1)
    return jnp.asarray(idx), jnp.asarray(first), starts


def _unrolled_actions(driver, runner, idx, first):
    agent = driver.agent
    w = gather(runner.buffer, idx)
    outs, _ = jax.jit(lambda p, w, f: unroll_actor(agent.net, p, w, f))(runner.sac.actor_params, w, first)
    return np.asarray(mean_action(outs[-1], agent.scale, agent.bias)), np.asarray(w.action[:, -1])


@pytest.mark.parametrize("overrides, feedforward", [
    (dict(arch="mlp-proj-from-obs", action_history=2), True),
    (dict(arch="mlp", action_history=0, init_activations="instant"), True),
    (dict(arch="mlp-lstm", action_history=1), False),
    (dict(arch="mlp-all-skips", action_history=2, delta=0.5), True),
    (dict(arch="mlp", instantaneous=True, action_history=2), True),
])
def test_unrolled_last_action_equals_the_rollout_action(overrides, feedforward):
    config = SACConfig(**{**TOY, **overrides})
    driver, runner = _collect(config, 60)
    W = driver.agent.window
    idx, first, starts = _all_windows(runner, W)
    unrolled, taken = _unrolled_actions(driver, runner, idx, first)
    assert np.std(taken) > 0.01  # the actions really vary
    at_start = (np.asarray(first) > 0) | starts[:, 0]
    assert at_start.sum() >= 5 and (~at_start).sum() >= 5
    # windows whose valid part starts at an episode start (terminations and truncations alike)
    np.testing.assert_allclose(unrolled[at_start], taken[at_start], atol=1e-5)
    if feedforward:  # window ≥ delay + 1 flushes the arbitrary initial activations: exact everywhere
        np.testing.assert_allclose(unrolled, taken, atol=1e-5)


def test_a_window_shorter_than_delay_plus_one_would_not_reproduce_the_rollout():
    config = SACConfig(**{**TOY, "arch": "mlp", "action_history": 0})
    driver, runner = _collect(config, 60)
    W = driver.agent.window
    assert W == 4  # a vanilla 3-layer pipeline acts on o_(t-3)
    idx, first, starts = _all_windows(runner, W - 1)
    mid = ~((np.asarray(first) > 0) | starts[:, 0])
    unrolled, taken = _unrolled_actions(driver, runner, idx, first)
    assert np.abs(unrolled[mid] - taken[mid]).max() > 1e-3


# ============================================================================ update maths vs numpy
def _np_mlp(params, x):
    h = x
    names = sorted(params, key=lambda n: int(n.split("_")[1]))
    for i, n in enumerate(names):
        h = h @ np.asarray(params[n]["kernel"]) + np.asarray(params[n]["bias"])
        if i < len(names) - 1:
            h = np.maximum(h, 0)
    return h[..., 0]


def _np_mlp_grad(params, x, dout):
    """Gradient of sum(dout * mlp(x)) w.r.t. the parameters (manual backprop)."""
    names = sorted(params, key=lambda n: int(n.split("_")[1]))
    hs, pre = [x], []
    for i, n in enumerate(names):
        z = hs[-1] @ np.asarray(params[n]["kernel"]) + np.asarray(params[n]["bias"])
        pre.append(z)
        hs.append(np.maximum(z, 0) if i < len(names) - 1 else z)
    g = dout[:, None]
    grads = {}
    for i in reversed(range(len(names))):
        n = names[i]
        grads[n] = {"kernel": hs[i].T @ g, "bias": g.sum(0)}
        g = g @ np.asarray(params[n]["kernel"]).T
        if i > 0:
            g = g * (pre[i - 1] > 0)
    return grads


def test_sample_action_matches_a_numpy_squashed_gaussian():
    rng = np.random.default_rng(0)
    # moderate std (no tanh saturation, where float32's 1 − tanh² loses its digits)
    out = jnp.asarray(np.concatenate([rng.normal(size=(5, 3)), rng.normal(-1.5, 0.5, size=(5, 3))], 1), jnp.float32)
    scale, bias = jnp.asarray([1.0, 2.0, 0.5]), jnp.asarray([0.0, 1.0, -0.5])
    key = jax.random.PRNGKey(3)
    a, logp = sample_action(out, key, scale, bias)
    eps = np.asarray(jax.random.normal(key, (5, 3)))
    o = np.asarray(out, np.float64)
    mean, raw = o[:, :3], o[:, 3:]
    log_std = -5 + 3.5 * (np.tanh(raw) + 1)
    u = mean + np.exp(log_std) * eps
    ref_a = np.tanh(u) * np.asarray(scale) + np.asarray(bias)
    normal = -0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    ref_logp = (normal - np.log(np.asarray(scale) * (1 - np.tanh(u) ** 2) + 1e-6)).sum(-1)
    np.testing.assert_allclose(np.asarray(a), ref_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(logp), ref_logp, rtol=1e-4, atol=1e-4)
    _, ls = gaussian_params(jnp.asarray([[0.0, -1e3], [0.0, 1e3]]))
    np.testing.assert_allclose(np.asarray(ls)[:, 0], [-5.0, 2.0])
    np.testing.assert_allclose(np.asarray(mean_action(out, scale, bias)), np.tanh(mean) * np.asarray(scale)
                               + np.asarray(bias), rtol=1e-5, atol=1e-6)


def test_critic_update_matches_numpy():
    """One critic step: TD target (termination stops bootstrapping, truncation does not), the summed
    twin MSE, its gradient, Adam's first step and the Polyak target update, against numpy."""
    config = SACConfig(**{**TOY, "arch": "mlp", "action_history": 1, "critic_hidden": 8, "gamma": 0.9, "tau": 0.1})
    driver = JaxDriver(config)
    agent = driver.agent
    runner = driver.init(jax.random.PRNGKey(0))
    runner, _ = jax.jit(lambda r: jax.lax.scan(lambda r, _: (driver._env_step(r, "random")[0], None), r, None,
                                               length=40))(runner)
    idx, first = sample_windows(runner.buffer, jax.random.PRNGKey(1), 8, agent.window)
    w = gather(runner.buffer, idx)
    # make sure both kinds of episode end are in the batch
    term = np.zeros(8, bool)
    term[:3] = True
    w = w._replace(terminated=w.terminated.at[:, -1].set(jnp.asarray(term)))
    sac = runner.sac
    q_target = jax.tree.map(lambda x: x + 0.05, sac.q_params)  # targets differ from the online nets
    sac = sac._replace(q_target=q_target, log_alpha=jnp.asarray(np.log(0.3), jnp.float32))
    key = jax.random.PRNGKey(7)
    new, metrics = jax.jit(agent.learner.critic_step)(sac, w, first, key)

    # the pieces the reference takes from the code under test: a' and log π(a') (checked above)
    _, final = unroll_actor(agent.net, sac.actor_params, w, first)
    next_out = agent.net.output(sac.actor_params, final, w.next_obs[:, -1])
    a_next, logp_next = (np.asarray(v, np.float64) for v in sample_action(next_out, key, agent.scale, agent.bias))
    last = jax.tree.map(lambda x: np.asarray(x[:, -1]), w)
    x = np.asarray(critic_input(jnp.asarray(last.obs), jax.tree.map(jnp.asarray, last.history)), np.float64)
    # the next history: the actor's history after pushing a_j (newest first)
    hist_next = np.concatenate([last.action[:, None], last.history["actions"][:, :-1]], axis=1)
    x_next = np.concatenate([last.next_obs, hist_next.reshape(8, -1)], axis=1)
    xa, xa_next = np.concatenate([x, last.action], 1), np.concatenate([x_next, a_next], 1)
    tp = [jax.tree.map(lambda v, i=i: np.asarray(v[i], np.float64), q_target) for i in range(2)]
    op = [jax.tree.map(lambda v, i=i: np.asarray(v[i], np.float64), sac.q_params) for i in range(2)]
    q_next = np.min([_np_mlp(p, xa_next) for p in tp], axis=0)
    y = last.reward + 0.9 * (1 - last.terminated) * (q_next - 0.3 * logp_next)
    q = [_np_mlp(p, xa) for p in op]
    loss = sum(np.mean((qi - y) ** 2) for qi in q)
    np.testing.assert_allclose(float(metrics["q_loss"]), loss, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["target_mean"]), y.mean(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(td_target(jnp.asarray(np.stack([q_next, q_next + 1])), jnp.asarray(
        logp_next), jnp.asarray(last.reward), jnp.asarray(last.terminated), 0.3, 0.9)), y, rtol=1e-4, atol=1e-5)
    for i in range(2):
        g = _np_mlp_grad(op[i], xa, 2 * (q[i] - y) / len(y))
        lr, eps = config.q_lr, config.adam_eps
        for n in op[i]:
            for k in ("kernel", "bias"):
                # Adam's first step: m̂ = g, v̂ = g² → Δ = −lr·g/(|g| + ε)
                ref = op[i][n][k] - lr * g[n][k] / (np.abs(g[n][k]) + eps)
                got = np.asarray(new.q_params[n][k][i])
                np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
                np.testing.assert_allclose(np.asarray(new.q_target[n][k][i]), 0.9 * tp[i][n][k] + 0.1 * got,
                                           rtol=1e-5, atol=1e-6)


def test_actor_and_alpha_losses_match_numpy():
    rng = np.random.default_rng(1)
    q_pi, logp = rng.normal(size=(2, 7)), rng.normal(size=7)
    np.testing.assert_allclose(float(actor_loss_from_values(jnp.asarray(q_pi), jnp.asarray(logp), 0.2)),
                               np.mean(0.2 * logp - q_pi.min(0)), rtol=1e-5)
    q, y = rng.normal(size=(2, 7)), rng.normal(size=7)
    np.testing.assert_allclose(float(critic_loss_from_values(jnp.asarray(q), jnp.asarray(y))),
                               ((q - y) ** 2).mean(1).sum(), rtol=1e-5)
    la = jnp.asarray(np.log(0.5), jnp.float32)
    g = jax.grad(alpha_loss)(la, jnp.asarray(logp, jnp.float32), -3.0)
    np.testing.assert_allclose(float(g), -0.5 * (logp.mean() - 3.0), rtol=1e-5)


def test_actor_update_moves_the_policy_towards_higher_q():
    """With a critic that prefers a = +1, actor updates push the unrolled mean action up."""
    config = SACConfig(**{**TOY, "arch": "mlp-proj-from-obs", "autotune": False, "alpha": 0.0, "policy_lr": 1e-2})
    driver = JaxDriver(config)
    agent = driver.agent
    runner = driver.init(jax.random.PRNGKey(0))
    runner, _ = jax.jit(lambda r: jax.lax.scan(lambda r, _: (driver._env_step(r, "random")[0], None), r, None,
                                               length=40))(runner)
    idx, first = sample_windows(runner.buffer, jax.random.PRNGKey(1), 16, agent.window)
    w = gather(runner.buffer, idx)

    class Linear(TwinCritic):
        def apply(self, params, x, a):
            return jnp.stack([a[..., 0], a[..., 0]])

    learner = Learner(agent.net, Linear(), scale=agent.scale, bias=agent.bias, gamma=0.99, tau=0.005,
                      policy_lr=1e-2, q_lr=1e-3, adam_eps=1e-8, autotune=False, alpha=0.0, target_entropy=-1.0)

    def mean_act(params):
        outs, _ = unroll_actor(agent.net, params, w, first)
        return float(jnp.mean(mean_action(outs[-1], agent.scale, agent.bias)))

    sac = runner.sac
    before = mean_act(sac.actor_params)
    step = jax.jit(learner.actor_step)
    for k in range(30):
        sac, _ = step(sac, w, first, jax.random.PRNGKey(k))
    assert mean_act(sac.actor_params) > before + 0.3


# ============================================================================ errors
@pytest.mark.parametrize("overrides, message", [
    (dict(delta=-1.0), "delta"),
    (dict(delta=1.5), "whole number"),
    (dict(delta=float("nan")), "delta"),
    (dict(learning_starts=100, total_timesteps=50), "learning_starts"),
    (dict(batch_size=0), "batch_size"),
    (dict(backend="gpu"), "backend"),
])
def test_config_errors(overrides, message):
    with pytest.raises(PipelagError, match=message):
        SACConfig(**{**TOY, **overrides}).validate()


@pytest.mark.parametrize("overrides, message", [
    (dict(arch="cnn-skip"), "MLP actors"),
    (dict(arch="resnet"), "unknown architecture"),
    (dict(window=2, arch="mlp"), "shorter than the actor's delay"),
    (dict(learning_starts=2), "learning_starts"),
    (dict(env_id="MinAtar/Breakout-v0"), "continuous actions"),
    (dict(env_id="PointTarget-v0", env_options={"bogus": 1}), "env_options"),
    (dict(env_id="PointTarget-v0", backend="host"), "JAX-only"),
    (dict(env_id="NoSuchEnv-v0", backend="jax"), "needs a JAX env"),
])
def test_agent_errors(overrides, message):
    with pytest.raises(PipelagError, match=message):
        JaxDriver(SACConfig(**{**TOY, **overrides}).validate())


def test_unknown_env_and_image_obs_errors():
    from pipelag.algorithms.sac.train import HostDriver

    with pytest.raises(PipelagError, match="unknown env 'NoSuchEnv-v0'"):
        HostDriver(SACConfig(**{**TOY, "env_id": "NoSuchEnv-v0"}), 1, 0)
    with pytest.raises(PipelagError, match="flat observation vector"):
        build_actor(SACConfig(), (10, 10, 3), 2)
    net = build_actor(SACConfig(arch="mlp", num_layers=2), (4,), 2)
    assert actor_window(net) == 3 and actor_window(net, 5) == 5


# ============================================================================ the buffer is updated in place
def test_no_step_copies_the_replay_buffer():
    """The fused host step (store → sample → update → act) and the jitted training scan must write the
    buffer in place: XLA may not copy a [capacity, ...] array per step (it did, 7× slower, when the
    windows were read with a plain gather; see buffer._read)."""
    cap = 54_321
    config = SACConfig(**{**TOY, "buffer_size": cap, "total_timesteps": 10**6, "batch_size": 32})
    driver = JaxDriver(config)
    agent = driver.agent
    runner = jax.vmap(driver.init)(jax.random.split(jax.random.PRNGKey(0), 1))  # 1 seed: XLA's DUS path
    args = (jnp.zeros(1), jnp.zeros(1, bool), jnp.zeros(1, bool), jnp.zeros((1, 2)), jnp.zeros((1, 2)))

    def host_step(r, *a):
        r = agent.observe(r, *a)
        r, m = agent.learn(r, config.policy_frequency)
        return agent.act(r, "sample"), m

    def copies(fn, *a):
        hlo = jax.jit(jax.vmap(fn), donate_argnums=0).lower(runner, *a).compile().as_text()
        return [line for line in hlo.splitlines() if " copy(" in line and str(cap) in line]

    assert copies(host_step, *args) == []
    assert copies(lambda r: driver.iterate(r, 3)) == []
    assert copies(lambda r: driver.warmup(r, 3)) == []


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_next_action_of_a_pipelined_actor_is_known_before_the_update(dropout):
    """The host driver steps its env with ``next_action`` while the device learns: it must be exactly the
    action ``act`` takes after ``learn`` (random and sampled phases, with and without an update, dropout
    keys included). An instantaneous actor acts on the updated parameters: it has no such action."""
    config = SACConfig(**{**TOY, "dropout": dropout})
    driver = JaxDriver(config)
    agent = driver.agent
    runner, _ = driver.warmup(driver.init(jax.random.PRNGKey(0)), config.learning_starts + 3)
    for learn, mode, n_actor in ((False, "random", 0), (False, "sample", 0), (True, "sample", 0),
                                 (True, "sample", 2), (True, "mean", 2)):
        after = agent.learn(runner, n_actor)[0] if learn else runner
        taken = agent.act(after, mode).action
        np.testing.assert_array_equal(agent.next_action(runner, learn, mode), taken)
        if learn and mode == "sample":  # the check has teeth: ignoring the update's keys changes the action
            assert not np.array_equal(agent.next_action(runner, False, mode), taken)
    instant = JaxDriver(config.replace(arch="mlp", instantaneous=True, action_history=0, dropout=0.0)).agent
    assert not instant.acts_before_update
    with pytest.raises(ValueError, match="instantaneous"):
        instant.next_action(runner, True, "sample")


def test_the_actions_ahead_are_the_next_action_after_observe_whether_the_episode_ends_or_not():
    """``next_actions_ahead`` (computed right after ``act``) must give exactly what ``next_action`` gives
    after the next ``observe``: row 0 if the episode goes on, row 1 if it ends there."""
    config = SACConfig(**{**TOY, "dropout": 0.2})
    driver = JaxDriver(config)
    agent = driver.agent
    runner, _ = driver.warmup(driver.init(jax.random.PRNGKey(1)), config.learning_starts + 2)
    runner = agent.act(runner, "sample")
    obs = jnp.full(runner.obs.shape, 0.3)
    for learn, mode in ((True, "sample"), (False, "sample"), (False, "random")):
        ahead = agent.next_actions_ahead(runner, learn, mode)
        for row, done in ((0, False), (1, True)):
            after = agent.observe(runner, 1.0, done, False, obs, obs)
            np.testing.assert_array_equal(ahead[row], agent.next_action(after, learn, mode))
        if mode != "random":
            assert not np.array_equal(ahead[0], ahead[1])  # the rows differ: the check can fail
    instant = JaxDriver(config.replace(init_activations="instant")).agent
    assert instant.acts_before_update and not instant.acts_ahead


def test_host_steps_acting_ahead_equal_host_steps_that_wait_for_the_store_call():
    """The host driver picks the next action from the previous step's two candidates, in ``run_steps``
    with the device calls dispatched from a worker thread beside the env step (overlap) or without it;
    the run must be the one it makes when every action comes from the store call (episode ends included:
    Pendulum truncates at 200 steps; run_steps in two pieces: the second starts without candidates)."""
    from pipelag.algorithms.sac.train import HostDriver, make_host_vec_env

    config = SACConfig(env_id="Pendulum-v1", hidden=16, critic_hidden=16, batch_size=8, learning_starts=100,
                       buffer_size=1000, total_timesteps=10**6)
    runs, returns = [], []
    driver = HostDriver(config, 2, 0)  # one driver (compiled once), a fresh env for each way
    try:
        for how in ("wait", "overlap", "one thread"):
            driver.env.close()
            driver.env, driver.overlap = make_host_vec_env(config, 2, 0), how == "overlap"
            assert driver.agent.acts_ahead
            runner = driver.init(jax.random.split(jax.random.PRNGKey(0), 2))
            if how == "wait":
                t, action, state = 0, runner.action, driver.pack(runner)
                for _ in range(230):
                    next_obs, reward, term, trunc, final_obs, _ = driver.env.step(np.asarray(action))
                    out = driver.step(state, t, reward, term, trunc, final_obs, next_obs, None)
                    state, action, t = out.state, out.action, t + 1
                runs.append(driver.unpack(state))
            else:
                ended: list = []

                def record(i, r, ended=ended):
                    ended.append((i, r))

                runner, info1 = driver.run_steps(runner, 150, on_episode=record)
                runner, info2 = driver.run_steps(runner, 80, on_episode=record)
                assert info1["updates"] + info2["updates"] == 230 - 100 and info2["metrics"]
                runs.append(runner)
                returns.append(ended)
    finally:
        driver.close()
    assert np.asarray(runs[0].buffer.data.start).sum() >= 4  # episodes ended and restarted meanwhile
    assert returns[0] == returns[1] and len(returns[0]) == 2
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0].buffer.data.action, other.buffer.data.action)
        for a, b in zip(jax.tree.leaves(runs[0].sac), jax.tree.leaves(other.sac), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(runs[0].action, other.action)


def test_the_host_drivers_learning_call_reads_the_buffer_without_a_loop_or_a_copy():
    """The host driver's step is two calls: ``store`` writes the buffer in place; ``learn`` only reads it,
    with a plain gather: no loop over the window (on a GPU each trip made the host wait) and no copy."""
    from pipelag.algorithms.sac.train import HostDriver

    cap = 54_321
    config = SACConfig(env_id="Pendulum-v1", hidden=16, critic_hidden=16, batch_size=8, learning_starts=16,
                       buffer_size=cap, total_timesteps=10**6)
    driver = HostDriver(config, 1, 0)
    try:
        runner = driver.init(jax.random.split(jax.random.PRNGKey(0), 1))
        obs = np.zeros((1, 3), np.float32)
        packed = jnp.asarray(np.concatenate([np.zeros((1, 3), np.float32), obs, obs], axis=1))

        def compiled(fn, *a):
            return fn.lower(*a).compile().as_text()

        def buffer_copies(hlo):
            return [line for line in hlo.splitlines() if " copy(" in line and str(cap) in line]

        def loops_over_the_buffer(hlo):
            return [line for line in hlo.splitlines() if " while(" in line and str(cap) in line]

        state = driver.pack(runner)
        assert len(jax.tree.leaves(state)) < len(jax.tree.leaves(runner)) // 3  # few buffers per call
        store = compiled(driver._store_fn(True, "sample"), *state, packed)
        learn = compiled(driver._learn_fn(True, 2, "sample", (True, "sample")), *state)
        assert buffer_copies(store) == [] and buffer_copies(learn) == []
        assert loops_over_the_buffer(learn) == []
        # the jitted driver's fused step (write, then read) keeps the loop: the check can see one
        agent = driver.agent
        fused = jax.jit(jax.vmap(lambda r: agent.learn(agent.observe(r, 0.0, False, False, obs[0], obs[0]), 2)))
        assert loops_over_the_buffer(compiled(fused, driver.unpack(state))) != []
    finally:
        driver.close()


def test_action_repeat_baseline_is_realtime_with_an_instantaneous_actor():
    """SAC-repeat-2 (Table 4): δ = 2 through the RealTime wrapper, an instantaneous actor (window 1);
    the pipelined actor at δ = 2 keeps its delay in ticks (window 4)."""
    from pipelag.envs.wrappers import RealTime

    rep = JaxDriver(SACConfig(**{**TOY, "arch": "mlp", "instantaneous": True, "action_history": 0, "delta": 2}))
    assert rep.agent.window == 1 and isinstance(rep.env.env, RealTime) and rep.env.env.delta == 2
    assert rep.spec.eval_max_steps == 4  # 8 env steps = 4 agent steps
    piped = JaxDriver(SACConfig(**{**TOY, "delta": 2}))
    assert piped.agent.window == 4 and piped.agent.net.env_steps_per_tick == 2
    half = JaxDriver(SACConfig(**{**TOY, "delta": 0.5}))
    assert half.agent.window == 3 and not isinstance(half.env.env, RealTime)


# ============================================================================ dropout (paper App. D, Fig. 12)
@pytest.mark.parametrize("p", [1.0, -0.2, float("nan"), True])
def test_dropout_must_be_a_probability(p):
    with pytest.raises(PipelagError, match=r"dropout must be a probability in \[0, 1\)"):
        SACConfig(**{**TOY, "dropout": p}).validate()


def test_sac_with_dropout_trains_and_acts_and_evaluates_with_dropout():
    """A few hundred steps of SAC whose actor drops 30 % of its hidden units, on the jitted path; the actor
    (critics untouched) and its mean action at evaluation depend on the dropout key, without dropout not."""
    from pipelag.algorithms.sac.train import make_train

    config = SACConfig(**{**TOY, "dropout": 0.3, "total_timesteps": 300, "learning_starts": 50,
                          "steps_per_chunk": 50, "eval_episodes": 2, "eval_max_steps": 20})
    train = make_train(config)
    agent = train.driver.agent
    assert agent.net.dropout == 0.3 and agent.config.dropout == 0.3
    out = jax.jit(train)(jax.random.PRNGKey(0))
    metrics = {k: np.asarray(v) for k, v in out["metrics"].items()}
    assert np.all(np.isfinite(metrics["q_loss"][1:])) and np.all(np.isfinite(metrics["actor_loss"][1:]))
    assert np.all(np.isfinite(np.asarray(out["eval_mean"])))
    params = out["state"].actor_params
    obs = jnp.ones((agent.spec.obs_shape[0],))
    state = agent.net.initial_state(params, obs)
    for _ in range(4):  # a few ticks so that the head holds a value computed from dropped hidden layers
        _, state, _ = agent.policy(params, state, obs, jax.random.PRNGKey(1), "mean")
    a1, _, _ = agent.policy(params, state, obs, jax.random.PRNGKey(2), "mean")
    a2, _, _ = agent.policy(params, state, obs, jax.random.PRNGKey(2), "mean")
    np.testing.assert_array_equal(a1, a2)
    _, s1, _ = agent.policy(params, state, obs, jax.random.PRNGKey(2), "mean")
    _, s2, _ = agent.policy(params, state, obs, jax.random.PRNGKey(3), "mean")
    assert not np.allclose(s1["act"]["fc2"], s2["act"]["fc2"], atol=1e-6)  # other masks this tick...
    # ...so the head computes another value next tick, and the action after that differs
    s1 = agent.policy(params, s1, obs, jax.random.PRNGKey(4), "mean")[1]
    s2 = agent.policy(params, s2, obs, jax.random.PRNGKey(4), "mean")[1]
    b1, b2 = (agent.policy(params, s, obs, jax.random.PRNGKey(5), "mean")[0] for s in (s1, s2))
    assert not np.allclose(b1, b2, atol=1e-6)
    # evaluation runs the dropped-out actor: on the same episodes (same key) the same parameters without
    # dropout return something else
    plain = JaxDriver(config.replace(dropout=0.0))
    k = jax.random.PRNGKey(5)
    dropped = jax.jit(lambda p: train.driver.evaluate(p, k, 2, "mean"))(params)
    clean = jax.jit(lambda p: plain.evaluate(p, k, 2, "mean"))(params)
    assert np.all(np.isfinite(dropped)) and not np.allclose(dropped, clean, atol=1e-5)


def test_the_actor_loss_unroll_is_the_tick_by_tick_dropped_out_actor():
    """``unroll_actor`` with a key = the actor stepped tick by tick with ``tick_key(key, t)``."""
    config = SACConfig(**{**TOY, "dropout": 0.5})
    driver, runner = _collect(config, 40)
    agent, W = driver.agent, driver.agent.window
    idx, first, _ = _all_windows(runner, W)
    w = gather(runner.buffer, idx[:8])
    key = jax.random.PRNGKey(11)
    outs, _ = unroll_actor(agent.net, runner.sac.actor_params, w, first[:8], key=key)
    again, _ = unroll_actor(agent.net, runner.sac.actor_params, w, first[:8], key=key)
    other, _ = unroll_actor(agent.net, runner.sac.actor_params, w, first[:8], key=jax.random.PRNGKey(12))
    np.testing.assert_array_equal(outs, again)
    assert not np.allclose(outs[-1], other[-1], atol=1e-6)
    net, params = agent.net, runner.sac.actor_params
    hist0 = jax.tree.map(lambda h: h[:, 0], w.history)
    state = {**net.initial_state(params, w.obs[:, 0]), **hist0}
    for t in range(W):
        reset = (t == np.asarray(first[:8])) & (np.asarray(first[:8]) > 0)
        fresh = net.initial_state(params, w.obs[:, t])
        pick = lambda f, s, r=reset: jnp.where(r.reshape((-1,) + (1,) * (f.ndim - 1)), f, s)
        state = jax.tree.map(pick, fresh, state)
        np.testing.assert_allclose(net.output(params, state, w.obs[:, t]), outs[t], rtol=1e-5, atol=1e-5)
        _, state = net.step(params, state, w.obs[:, t], w.action[:, t], key=net.tick_key(key, t))


def test_host_adapter_acts_learns_and_evaluates_with_dropout():
    from pipelag.algorithms.sac.train import make_driver

    cfg = SACConfig(env_id="Pendulum-v1", total_timesteps=130, learning_starts=100, hidden=16, critic_hidden=16,
                    batch_size=16, eval_episodes=1, eval_max_steps=30, dropout=0.3)
    driver = make_driver(cfg, 1, 0)
    try:
        assert driver.agent.net.dropout == 0.3
        runner = driver.init(jnp.stack([jax.random.PRNGKey(0)]))
        runner, info = driver.run_steps(runner, 130)
        assert info["updates"] == 30 and np.isfinite(float(np.asarray(info["metrics"]["actor_loss"])[0]))
        ret = driver.evaluate(runner.sac.actor_params, 1, "mean", 0)
        assert ret.shape == (1, 1) and np.all(np.isfinite(ret))
    finally:
        driver.close()


def test_fig12_dropout_variants_are_runnable_sac_configs():
    """The sweep's Figure 12 runs (dropout 0…0.6) map onto valid SAC configs with that dropout."""
    from pipelag.experiments.definitions import EXPERIMENTS, Budget
    from pipelag.experiments.sweep import _trainer_fields, check_config

    tasks = [t for t in EXPERIMENTS["fig12"].tasks(Budget()) if t.spec.get("dropout")]
    assert len(tasks) >= 3
    for t in tasks:
        assert check_config(t.spec) is None, check_config(t.spec)
        cfg = SACConfig(**_trainer_fields(t.spec)).validate()
        assert cfg.dropout == t.spec["dropout"] > 0 and cfg.env_id == "HalfCheetah-v4" and cfg.delta == 2
