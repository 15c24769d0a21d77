"""Dropout in every hidden layer (paper App. D, Fig. 12): masks, scaling, keys, equal executions, delays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag import PipelagError
from pipelag.networks import build_network

from .delay_check import assert_delay_correct, observed_dependence
from .test_networks import params_of, small

KEY = jax.random.PRNGKey(42)


def random_state(net, params, batch, seed=1):
    """A state reached by a few (dropped-out) ticks from random observations."""
    state = net.zero_state((batch,))
    key = jax.random.PRNGKey(seed)
    for _ in range(3):
        key, k1, k2, k3 = jax.random.split(key, 4)
        obs = jax.random.normal(k1, (batch, *net.obs_shape))
        _, state = net.step(params, state, obs, jax.random.randint(k2, (batch,), 0, 3), key=k3)
    return state


def _seq(net, T, B, seed=5):
    obs = jax.random.normal(jax.random.PRNGKey(seed), (T, B, *net.obs_shape))
    acts = jax.random.randint(jax.random.PRNGKey(seed + 1), (T, B), 0, 3)
    return obs, acts


def test_zero_rate_ignores_the_key_and_draws_no_random_numbers():
    net = small("mlp-proj-from-obs", num_actions=3, action_history=2)
    explicit = small("mlp-proj-from-obs", num_actions=3, action_history=2, dropout=0.0)
    params = params_of(net)
    state = random_state(net, params, 4)
    obs, acts = _seq(net, 5, 4)
    out, st = net.step(params, state, obs[0], acts[0])
    out_k, st_k = explicit.step(params, state, obs[0], acts[0], key=KEY)
    np.testing.assert_array_equal(out_k, out)
    jax.tree.map(np.testing.assert_array_equal, st_k, st)
    np.testing.assert_array_equal(
        explicit.unroll(params, state, obs, acts, key=KEY)[0], net.unroll(params, state, obs, acts)[0]
    )
    np.testing.assert_array_equal(
        explicit.unroll_layerwise(params, state, obs, acts, key=KEY), net.unroll_layerwise(params, state, obs, acts)
    )
    # the same compiled program as without dropout: no random-number primitive in it
    jaxpr = str(jax.make_jaxpr(lambda k: explicit.unroll(params, state, obs, acts, key=k))(KEY))
    assert "random_bits" not in jaxpr and "threefry" not in jaxpr
    dropped = small("mlp-proj-from-obs", num_actions=3, action_history=2, dropout=0.5)
    jaxpr = str(jax.make_jaxpr(lambda k: dropped.unroll(params, state, obs, acts, key=k))(KEY))
    assert "random_bits" in jaxpr or "threefry" in jaxpr


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_fraction_of_zeroed_hidden_units_is_p_and_the_mean_is_preserved(p):
    kw = dict(num_layers=3, hidden=256)
    ref, net = build_network("mlp", (8,), 3, **kw), build_network("mlp", (8,), 3, dropout=p, **kw)
    params = params_of(ref)
    B = 64
    state = ref.zero_state((B,))
    state["act"] = {
        k: jnp.abs(jax.random.normal(jax.random.PRNGKey(i), v.shape)) + 0.1
        for i, (k, v) in enumerate(state["act"].items())
    }  # every hidden unit active (> 0)
    obs = jax.random.normal(jax.random.PRNGKey(3), (B, 8))
    _, clean = ref.step(params, state, obs)
    _, drop = net.step(params, state, obs, key=KEY)
    for layer in ("fc1", "fc2"):
        c, d = np.asarray(clean["act"][layer]), np.asarray(drop["act"][layer])
        alive = c > 0
        assert alive.sum() > 3000
        zeroed = (d == 0) & alive
        assert abs(zeroed.sum() / alive.sum() - p) < 0.03, (layer, zeroed.sum() / alive.sum())
        kept = alive & ~zeroed
        np.testing.assert_allclose(d[kept], c[kept] / (1 - p), rtol=1e-5)  # inverted dropout
        assert abs(d.mean() / c.mean() - 1) < 0.05  # mean preserved
    # the head is never dropped: it stays the dense function of the (dropped) stored fc2
    head = np.asarray(drop["act"]["head"])
    assert np.all(head != 0)
    expect = params["head"]["kernel"].T @ state["act"]["fc2"].T
    np.testing.assert_allclose(head, (expect.T + params["head"]["bias"]), rtol=1e-4, atol=1e-5)


def test_inputs_and_the_head_are_never_dropped():
    """A network whose only layer is the head has nothing to drop: dropout changes nothing."""
    ref = build_network("mlp", (5,), 3, num_layers=1, instantaneous=True)
    net = build_network("mlp", (5,), 3, num_layers=1, instantaneous=True, dropout=0.9)
    params = params_of(ref)
    obs = jax.random.normal(jax.random.PRNGKey(0), (16, 5))
    np.testing.assert_array_equal(
        net.output(params, net.zero_state((16,)), obs, key=KEY), ref.output(params, ref.zero_state((16,)), obs)
    )


def test_same_key_same_output_different_keys_different():
    net = small("mlp-proj-from-obs", num_actions=3, action_history=2, dropout=0.3)
    params = params_of(net)
    obs, acts = _seq(net, 6, 4)
    state = random_state(net, params, 4)
    a = net.unroll(params, state, obs, acts, key=jax.random.PRNGKey(1))[0]
    b = net.unroll(params, state, obs, acts, key=jax.random.PRNGKey(1))[0]
    c = net.unroll(params, state, obs, acts, key=jax.random.PRNGKey(2))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[1:], c[1:], atol=1e-4)
    # fresh masks every tick: the same input twice in a row is dropped differently
    s1 = net.step(params, state, obs[0], acts[0], key=net.tick_key(KEY, 0))[1]
    s2 = net.step(params, state, obs[0], acts[0], key=net.tick_key(KEY, 1))[1]
    assert not np.array_equal(s1["act"]["fc1"], s2["act"]["fc1"])


CASES = [
    ("mlp-proj-from-obs", 1, False, "instant"),
    ("mlp-proj-to-action-res", 0.5, False, "instant"),
    ("mlp-all-skips", 2, False, "zeros"),
    ("mlp-lstm", 1, False, "instant"),
    ("cnn", 1, False, "zeros"),
    ("mlp-proj-from-obs", 1, True, "zeros"),
]


@pytest.mark.parametrize(("arch", "delta", "inst", "init"), CASES)
def test_step_unroll_and_layerwise_unroll_agree_with_dropout(arch, delta, inst, init):
    """The same key gives identical outputs tick by tick, in the scan and layer by layer over all ticks
    (what makes SAC's actor loss unroll the very network that acts)."""
    net = small(
        arch, delta=delta, num_actions=3, action_history=2, dropout=0.4, instantaneous=inst, init_activations=init
    )
    params = params_of(net)
    T, B = 6, 3
    obs, acts = _seq(net, T, B)
    resets = jnp.zeros((T, B), bool).at[0, 0].set(True).at[3, 1].set(True)
    state0 = random_state(net, params, B, seed=9) if not inst else net.zero_state((B,))
    scan_out, final = net.unroll(params, state0, obs, acts, resets, key=KEY)
    layer_out = net.unroll_layerwise(params, state0, obs, acts, resets, key=KEY)
    np.testing.assert_allclose(layer_out, scan_out, rtol=1e-5, atol=1e-5)
    state, fused_state, fused = state0, state0, (None if inst else net.fuse_params(params))
    for t in range(T):
        fresh = net.initial_state(params, obs[t])
        pick = lambda f, s, t=t: jnp.where(resets[t].reshape((B,) + (1,) * (f.ndim - 1)), f, s)
        state = jax.tree.map(pick, fresh, state)
        k = net.tick_key(KEY, t)
        np.testing.assert_allclose(net.output(params, state, obs[t], key=k), scan_out[t], rtol=1e-5, atol=1e-5)
        _, state = net.step(params, state, obs[t], acts[t], key=k)
        if not inst:
            fused_state = jax.tree.map(pick, fresh, fused_state)
            _, fused_state = net.fused_step(fused, fused_state, obs[t], acts[t], key=k)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), fused_state, state)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5), final, state)
    # the comparison has teeth: other masks give other outputs
    other = net.unroll_layerwise(params, state0, obs, acts, resets, key=jax.random.PRNGKey(7))
    assert not np.allclose(other, scan_out, atol=1e-4)


@pytest.mark.parametrize(
    ("arch", "delta"),
    [
        ("mlp", 1),
        ("mlp-proj-from-obs", 0.5),
        ("mlp-proj-from-obs", 2),
        ("mlp-proj-to-action-res", 1),
        ("mlp-all-skips", 0.5),
    ],
)
def test_delay_jacobian_with_dropout(arch, delta):
    """Dropout (fixed masks) never opens a path the tick rule forbids; a_t still depends on exactly the
    lags the delay profile predicts (masks are random, so a path might in principle be cut: with
    p = 0.3 and 8+ units per layer the fixed key below keeps every path)."""
    net = small(arch, delta=delta, num_actions=3, action_history=1, dropout=0.3)
    params = params_of(net)
    assert_delay_correct(net, params, key=KEY)
    ref = small(arch, delta=delta, num_actions=3, action_history=1)
    assert (observed_dependence(net, params, 9, key=KEY) == observed_dependence(ref, params, 9)).all()


@pytest.mark.parametrize("p", [1.0, -0.1, float("nan"), True, "0.3", None])
def test_bad_dropout_rate_is_one_clear_error(p):
    with pytest.raises(PipelagError, match=r"dropout must be a probability in \[0, 1\)"):
        small("mlp", dropout=p)


def test_missing_key_is_one_clear_error():
    net = small("mlp-proj-from-obs", num_actions=3, action_history=2, dropout=0.3)
    params = params_of(net)
    obs, acts = _seq(net, 4, 2)
    state = net.zero_state((2,))
    for call in (
        lambda: net.step(params, state, obs[0], acts[0]),
        lambda: net.fused_step(net.fuse_params(params), state, obs[0], acts[0]),
        lambda: net.unroll(params, state, obs, acts),
        lambda: net.unroll_layerwise(params, state, obs, acts),
    ):
        with pytest.raises(PipelagError, match="dropout 0.3.*needs a PRNG key; pass key="):
            call()
    net.output(params, state, obs[0])  # a pipelined network's output is stored: no key needed
    inst = small("mlp", instantaneous=True, dropout=0.3)
    with pytest.raises(PipelagError, match=r"output\(\.\.\.\) needs a PRNG key"):
        inst.output(params_of(inst), inst.zero_state((2,)), obs[0])


def test_a_view_with_another_rate_vmapped_over_rates_equals_networks_built_with_each_rate():
    """Several dropout rates as one vmapped program (a sweep batching Fig. 12's rates): each member
    computes exactly what a network built with its rate computes, tick by tick and unrolled."""
    rates = (0.2, 0.5)
    built = [small("mlp-proj-from-obs", num_actions=3, action_history=2, dropout=p) for p in rates]
    params = params_of(built[0])
    state = random_state(built[0], params, 4)
    obs, acts = _seq(built[0], 5, 4)

    def member(rate):
        view = built[0].with_dropout_rate(rate)
        return view.step(params, state, obs[0], acts[0], key=KEY)[0], view.unroll(params, state, obs, acts, key=KEY)[0]

    steps, unrolls = jax.vmap(member)(jnp.asarray(rates))
    for i, net in enumerate(built):
        np.testing.assert_allclose(steps[i], net.step(params, state, obs[0], acts[0], key=KEY)[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(unrolls[i], net.unroll(params, state, obs, acts, key=KEY)[0], rtol=1e-6, atol=1e-6)
    assert not np.allclose(unrolls[0], unrolls[1])  # the rates did differ
    assert built[0].dropout == 0.2  # the view left the network alone
    with pytest.raises(PipelagError, match="built without dropout"):
        small("mlp-proj-from-obs", num_actions=3, action_history=2).with_dropout_rate(0.3)
