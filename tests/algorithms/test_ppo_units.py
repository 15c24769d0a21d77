"""PPO building blocks: GAE, the time-parallel unroll, rollout/update log-prob alignment, checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag.algorithms.common import load_checkpoint, save_checkpoint
from pipelag.algorithms.common.toy_envs import DelayedCue
from pipelag.algorithms.ppo import PPO, PPOConfig, compute_gae
from pipelag.errors import PipelagError
from pipelag.networks import build_network


# ---------------------------------------------------------------------------- GAE
def gae_reference(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Textbook GAE, one env, written per episode: walk forward from t, summing (γλ)^l δ_{t+l} until
    the episode ends (inclusive) or the rollout ends. A termination contributes r_t − V(s_t); a
    truncation r_t + γ V(final_obs_t) − V(s_t)."""
    T = len(rewards)
    adv = np.zeros(T)
    for t in range(T):
        total, discount = 0.0, 1.0
        for u in range(t, T):
            if terminated[u]:
                delta = rewards[u] - values[u]
            else:  # inside an episode next_values[u] = V(o_{u+1}); at a truncation V(final_obs_u)
                delta = rewards[u] + gamma * next_values[u] - values[u]
            total += discount * delta
            if terminated[u] or truncated[u]:
                break
            discount *= gamma * lam
        adv[t] = total
    return adv


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gae_matches_reference_with_terminations_and_truncations(seed):
    rng = np.random.default_rng(seed)
    T, N = 20, 5
    rewards = rng.normal(size=(T, N))
    values = rng.normal(size=(T, N))
    next_values = rng.normal(size=(T, N))
    terminated = rng.random((T, N)) < 0.15
    truncated = (rng.random((T, N)) < 0.15) & ~terminated
    terminated[3, 0], truncated[3, 1] = True, True  # at least one of each
    adv, ret = compute_gae(jnp.asarray(rewards, jnp.float32), jnp.asarray(values, jnp.float32),
                           jnp.asarray(next_values, jnp.float32), jnp.asarray(terminated),
                           jnp.asarray(terminated | truncated), 0.99, 0.95)
    ref = np.stack([gae_reference(rewards[:, i], values[:, i], next_values[:, i], terminated[:, i], truncated[:, i],
                                  0.99, 0.95) for i in range(N)], axis=1)
    np.testing.assert_allclose(np.asarray(adv), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(ret), ref + values, rtol=1e-4, atol=1e-4)


def test_gae_truncation_bootstraps_and_termination_does_not():
    # one env, 2 steps, each ends an episode: step 0 truncated, step 1 terminated; γ=1 λ=1
    r = jnp.array([[1.0], [1.0]])
    v = jnp.array([[0.0], [0.0]])
    nv = jnp.array([[10.0], [10.0]])
    adv, _ = compute_gae(r, v, nv, jnp.array([[False], [True]]), jnp.array([[True], [True]]), 1.0, 1.0)
    assert adv[:, 0].tolist() == [11.0, 1.0]


# ---------------------------------------------------------------------------- time-parallel unroll
UNROLL_CASES = [
    ("mlp", (5,), {}),
    ("mlp-proj-to-action-res", (5,), {}),
    ("mlp-all-skips", (5,), {"delta": 0.5}),
    ("cnn-skip", (6, 6, 2), {"channels": (4, 8, 8), "hidden": 16}),
    ("cnn-skip-res", (6, 6, 2), {"channels": (4, 8, 8), "hidden": 16, "init_activations": "instant"}),
    ("cnn", (6, 6, 2), {"channels": (4, 8, 8), "hidden": 16, "instantaneous": True}),
]


@pytest.mark.parametrize("history", [0, 2])
@pytest.mark.parametrize("arch,shape,kw", UNROLL_CASES, ids=[c[0] + str(c[2].get("delta", "")) for c in UNROLL_CASES])
def test_layerwise_unroll_equals_tick_by_tick_unroll(arch, shape, kw, history):
    T, B = 10, 3
    net = build_network(arch, shape, 4, num_actions=4, action_history=history, **kw)
    key = jax.random.PRNGKey(0)
    params = net.init(key)
    obs = jax.random.normal(key, (T, B, *shape))
    actions = jax.random.randint(jax.random.PRNGKey(2), (T, B), 0, 4)
    resets = jax.random.uniform(jax.random.PRNGKey(1), (T, B)) < 0.25
    state0 = net.zero_state((B,))
    for i in range(3):  # a non-trivial starting state (activations and action history)
        state0 = net.step(params, state0, obs[i] + 1.0, actions[i])[1]
    ref, _ = net.unroll(params, state0, obs, actions, resets)
    par = net.unroll_layerwise(params, state0, obs, actions, resets)
    assert float(jnp.abs(ref).max()) > 0
    np.testing.assert_allclose(np.asarray(par), np.asarray(ref), rtol=1e-5, atol=1e-6)
    if not net.instantaneous or history:  # the comparison is sensitive to misaligned resets
        shifted = net.unroll_layerwise(params, state0, obs, actions, jnp.roll(resets, 1, axis=0))
        assert float(jnp.abs(shifted - ref).max()) > 1e-5


# ---------------------------------------------------------------------------- rollout vs update alignment
ALIGN_CASES = [
    # (name, arch, image, config overrides)
    ("mlp-delay3-hist2", "mlp", False, {"action_history": 2}),
    ("cnn-skip-hist1", "cnn-skip", True, {"action_history": 1, "channels": (4, 8, 8), "hidden": 16}),
    # bf16: the rollout casts the parameters once (PipelinedNetwork.cast_params), the update per call
    ("cnn-skip-hist1-bf16", "cnn-skip", True, {"action_history": 1, "channels": (4, 8, 8), "hidden": 16,
                                               "compute_dtype": "bfloat16"}),
    ("cnn-instant-init", "cnn", True, {"init_activations": "instant", "channels": (4, 8, 8), "hidden": 16}),
    ("instantaneous-hist1", "mlp", False, {"instantaneous": True, "action_history": 1}),
    ("delta-half", "mlp-proj-from-obs", False, {"delta": 0.5}),
    ("delta-2-realtime", "mlp-proj-to-action", False, {"delta": 2.0, "action_history": 1}),
]


@pytest.mark.parametrize("name,arch,image,kw", ALIGN_CASES, ids=[c[0] for c in ALIGN_CASES])
def test_unrolled_logprobs_equal_rollout_logprobs_before_update(name, arch, image, kw):
    """The update unrolls the actor from the state stored at the rollout's start with resets at episode
    starts; before any gradient step its log-probs must equal those the rollout sampled with. Any
    off-by-one in states, resets or action histories breaks this."""
    env = DelayedCue(num_actions=3, lag=1, max_steps=7, terminate_prob=0.2, image=image, size=5)
    cfg = PPOConfig(env_id="toy", arch=arch, hidden=kw.pop("hidden", 32), num_envs=4, num_steps=12,
                    total_timesteps=48, critic_hidden=16, critic_channels=(4, 4, 4) if image else None, **kw)
    ppo = PPO(cfg, env)
    assert ("RealTime" in repr(ppo.env)) == (cfg.delta > 1)  # δ > 1: δ env steps per agent step
    rollout = jax.jit(ppo.rollout)
    rs, _ = rollout(ppo.init(jax.random.PRNGKey(3)))  # a first rollout: the second starts mid-episode
    state0 = rs.actor_state
    rs, traj = rollout(rs)
    assert bool(traj.first[1:].any()) and bool((~traj.first[0]).any()), "episodes must start inside the rollout"
    pa = rs.params["actor"]
    fast = ppo.actor.unroll_layerwise(pa, state0, traj.obs, traj.action, traj.first)
    reference = ppo.actor.unroll(pa, state0, traj.obs, traj.action, traj.first)[0]
    for logits in (fast, reference):
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), traj.action[..., None], axis=-1)[..., 0]
        np.testing.assert_allclose(np.asarray(logp), np.asarray(traj.logp), rtol=1e-5, atol=1e-5)
    # sanity: the check can fail (resets one tick late)
    bad = ppo.actor.unroll_layerwise(pa, state0, traj.obs, traj.action, jnp.roll(traj.first, 1, axis=0))
    bad_logp = jnp.take_along_axis(jax.nn.log_softmax(bad), traj.action[..., None], axis=-1)[..., 0]
    if not cfg.instantaneous or cfg.action_history:
        assert float(jnp.abs(bad_logp - traj.logp).max()) > 1e-6


# ---------------------------------------------------------------------------- checkpoints and config
def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    tree = {"a": jnp.arange(5, dtype=jnp.float32), "b": (jnp.ones((2, 3), bool), jax.random.PRNGKey(1)),
            "c": jnp.int32(7)}
    path = save_checkpoint(tmp_path / "ck.msgpack", tree, {"update": 3, "curve": np.arange(4.0)})
    restored, meta = load_checkpoint(path, jax.tree.map(jnp.zeros_like, tree))
    for x, y in zip(jax.tree.leaves(tree), jax.tree.leaves(restored), strict=True):
        assert np.asarray(x).dtype == y.dtype and np.array_equal(np.asarray(x), y)
    assert meta["update"] == 3 and np.array_equal(meta["curve"], np.arange(4.0))
    assert [p.name for p in tmp_path.iterdir()] == ["ck.msgpack"]  # no temp files left behind
    with pytest.raises(PipelagError, match="does not match"):
        load_checkpoint(path, {"a": jnp.zeros(5)})
    with pytest.raises(PipelagError, match="array 0"):
        load_checkpoint(path, {**tree, "a": jnp.zeros(6)})
    with pytest.raises(PipelagError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing", tree)


@pytest.mark.parametrize("changes,match", [
    ({"num_envs": 30, "num_minibatches": 4}, "divisible"),
    ({"compute_dtype": "float16"}, "compute_dtype"),
    ({"total_timesteps": 10}, "less than one rollout"),
    ({"init_activations": "ones"}, "init_activations"),
    ({"num_steps": 0}, "positive integer"),
])
def test_config_validation(changes, match):
    with pytest.raises(PipelagError, match=match):
        PPOConfig(**changes).validate()


def test_config_roundtrip():
    cfg = PPOConfig(env_options={"view": "rgb"}, channels=(8, 8, 8))
    assert PPOConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(PipelagError, match="unknown PPO config keys"):
        PPOConfig.from_dict({"bogus": 1})
