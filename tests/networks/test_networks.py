import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag import PipelagError
from pipelag.networks import build_network, list_architectures
from pipelag.networks.graph import Graph

from .delay_check import assert_delay_correct, observed_dependence

MINATAR = (6, 6, 3)  # small image: same code path as MinAtar's 10×10×C, faster to differentiate
MINIGRID = (40, 40, 3)
VEC = (5,)


def small(arch, shape=None, **kw):
    shape = shape or (VEC if arch.startswith("mlp") else MINATAR)
    kw.setdefault("hidden", 8)
    if not arch.startswith("mlp"):
        kw.setdefault("channels", (4, 5, 6))
    return build_network(arch, shape, 3, **kw)


def params_of(net, seed=0):
    params = net.init(jax.random.PRNGKey(seed))
    # non-zero biases so that ReLUs are not silently dead; the head gets a normal scale
    return jax.tree.map(lambda p: p + 0.1 if p.ndim == 1 else p * (30.0 if p.shape[-1] == 3 else 1.0), params)


INVALID = {("cnn-skip-res", 0.4)}  # a same-tick residual would chain 4 layers in one 2.5-layer tick


@pytest.mark.parametrize("delta", [0.4, 0.5, 1, 2])
@pytest.mark.parametrize("arch", list_architectures())
def test_delay_jacobian(arch, delta):
    if (arch, delta) in INVALID:
        with pytest.raises(PipelagError, match="breaks the constraint"):
            small(arch, delta=delta)
        return
    net = small(arch, delta=delta, num_actions=3, action_history=1)
    assert_delay_correct(net, params_of(net))


@pytest.mark.parametrize("arch", ["cnn", "cnn-skip-res", "cnn-skip-lstm"])
def test_delay_jacobian_minigrid_strides(arch):
    net = small(arch, MINIGRID)
    assert_delay_correct(net, params_of(net))


def test_delay_test_catches_a_same_tick_layer_chain():
    """Wire every layer to read this tick's outputs (the paper code's CNN 'res' bug): must fail."""
    net = small("cnn")
    params = params_of(net)

    class SameTickGraph(Graph):
        def reads_fresh(self, node, src):
            return True

    net.graph = SameTickGraph(**{f.name: getattr(net.graph, f.name) for f in dataclasses.fields(Graph)})
    with pytest.raises(AssertionError, match="depends on"):
        assert_delay_correct(net, params)


def test_explicit_stages_chaining_layers_in_one_tick_are_rejected():
    stages = {"conv1": 1, "conv2": 1, "conv3": 2, "fc1": 3, "head": 4}
    with pytest.raises(PipelagError, match="breaks the constraint"):
        small("cnn", stages=stages)


@pytest.mark.parametrize("arch", list_architectures())
def test_instantaneous_version_sees_current_observation(arch):
    net = small(arch, instantaneous=True)
    dep = observed_dependence(net, params_of(net), horizon=3)
    assert dep[0], "an instantaneous network must depend on o_t"
    if "lstm" not in arch:
        assert not dep[1:].any(), "a feed-forward instantaneous network must not depend on the past"


def test_delay_profiles():
    assert small("mlp", num_layers=3).delay_profile().rows == ((3, 3, 3),)
    assert small("mlp", num_layers=1).delay_profile().rows == ((1, 1, 1),)
    assert small("mlp-proj-from-obs").delay_profile().rows == ((1, 1, 1), (2, 2, 2), (3, 3, 3))
    assert small("cnn").delay_profile().rows == ((5, 5, 5),)
    assert small("cnn-skip").delay_profile().min_delay_ticks == 2
    # δ = 0.4: 2.5 layers per tick, the 5-layer CNN acts on o_(t-2)
    assert small("cnn", delta=0.4).delay_profile().rows == ((2, 5, 5),)
    # δ = 2: the same ticks, twice the env steps
    prof = small("cnn-skip", delta=2).delay_profile()
    assert prof.env_steps_per_tick == 2 and prof.min_delay_ticks == 2


def random_state(net, params, batch, seed=1):
    """A state reached by running a few ticks from random observations (non-trivial activations)."""
    state = net.zero_state((batch,))
    key = jax.random.PRNGKey(seed)
    for _ in range(3):
        key, k1, k2 = jax.random.split(key, 3)
        obs = jax.random.normal(k1, (batch, *net.obs_shape))
        act = jax.random.randint(k2, (batch,), 0, 3)
        _, state = net.step(params, state, obs, act)
    return state


@pytest.mark.parametrize("delta", [1, 0.5])
@pytest.mark.parametrize("arch", list_architectures())
def test_fused_equals_reference(arch, delta):
    net = small(arch, delta=delta, num_actions=3, action_history=2)
    params = params_of(net)
    state = random_state(net, params, 4)
    obs = jax.random.normal(jax.random.PRNGKey(7), (4, *net.obs_shape))
    act = jnp.array([0, 1, 2, 1])
    out_ref, s_ref = net.step(params, state, obs, act)
    out_fused, s_fused = net.fused_step(net.fuse_params(params), state, obs, act)
    np.testing.assert_allclose(out_fused, out_ref, rtol=1e-5, atol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s_fused, s_ref)


def test_fused_plan_batches_same_shaped_layers():
    net = build_network("mlp", (16,), 16, num_layers=10, hidden=16)
    assert [len(g) for wave in net._fused_plan for g in wave] == [10]
    params = params_of(net)
    state = random_state(net, params, 2)
    obs = jnp.ones((2, 16))
    out_ref, _ = net.step(params, state, obs)
    out_fused, _ = net.fused_step(net.fuse_params(params), state, obs)
    np.testing.assert_allclose(out_fused, out_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["mlp-proj-to-action-res", "cnn-skip", "cnn-skip-lstm", "mlp-lstm"])
def test_unroll_equals_repeated_step_with_resets(arch):
    net = small(arch, num_actions=3, action_history=1, init_activations="instant")
    params = params_of(net)
    T = 7
    obs = jax.random.normal(jax.random.PRNGKey(3), (T, *net.obs_shape))
    acts = jax.random.randint(jax.random.PRNGKey(4), (T,), 0, 3)
    resets = jnp.array([True, False, False, True, False, False, False])
    outs, final = net.unroll(params, net.zero_state(), obs, acts, resets)
    state = net.zero_state()
    for t in range(T):
        if resets[t]:
            state = net.initial_state(params, obs[t])
        np.testing.assert_allclose(outs[t], net.output(params, state, obs[t]), rtol=1e-5, atol=1e-6)
        _, state = net.step(params, state, obs[t], acts[t])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), final, state)


def test_reset_cuts_dependence_on_the_previous_episode():
    net = small("mlp-proj-from-obs")
    params = params_of(net)
    T = 6
    obs = jax.random.normal(jax.random.PRNGKey(0), (T, *net.obs_shape))
    resets = jnp.zeros((T,), bool).at[3].set(True)
    jac = jax.jacrev(lambda o: net.unroll(params, net.zero_state(), o, None, resets)[0][-1])(obs)
    assert jnp.all(jac[:, :3] == 0) and jnp.any(jac[:, 3:] != 0)


def test_instant_initial_activations_are_the_steady_state_of_the_first_observation():
    net = small("mlp", num_layers=3, init_activations="instant")
    inst = small("mlp", num_layers=3, instantaneous=True)
    params = params_of(net)
    obs = jnp.arange(5.0)
    state = net.initial_state(params, obs)
    np.testing.assert_allclose(net.output(params, state, obs), inst.output(params, inst.zero_state(), obs),
                               rtol=1e-6)
    # constant input keeps a steady state: the next tick's output is unchanged
    out_next, _ = net.step(params, state, obs)
    np.testing.assert_allclose(out_next, net.output(params, state, obs), rtol=1e-6)


@pytest.mark.parametrize("arch, lag", [("mlp-proj-from-obs", 1), ("mlp", 3), ("cnn-skip", 1), ("cnn", 1)])
def test_current_action_reaches_the_next_action(arch, lag):
    """a_t is known during tick t; with action history it reaches a_{t+lag} (DESIGN §2)."""
    net = small(arch, num_actions=3, action_history=1)
    params = params_of(net)
    obs = jnp.ones(net.obs_shape)

    def output_after(first_action):
        state = net.zero_state()
        _, state = net.step(params, state, obs, first_action)
        for _ in range(lag - 1):
            _, state = net.step(params, state, obs, 0)
        return net.output(params, state, obs)

    assert not np.allclose(output_after(1), output_after(2))
    if lag > 1:  # and not earlier
        state0 = net.zero_state()
        s1 = net.step(params, state0, obs, 1)[1]
        s2 = net.step(params, state0, obs, 2)[1]
        np.testing.assert_allclose(net.output(params, s1, obs), net.output(params, s2, obs))


def test_vmap_and_jit_over_environments():
    net = small("cnn-skip", num_actions=3, action_history=1)
    params = params_of(net)
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, *net.obs_shape))
    acts = jnp.arange(5) % 3
    batched = jax.jit(net.step)(params, net.zero_state((5,)), obs, acts)
    per_env = jax.vmap(lambda s, o, a: net.step(params, s, o, a))(net.zero_state((5,)), obs, acts)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), batched, per_env)


@pytest.mark.parametrize("kwargs, message", [
    (dict(arch="resnet"), "unknown architecture"),
    (dict(delta=0), "must be > 0"),
    (dict(delta=-1), "must be > 0"),
    (dict(delta=1.5), "whole number"),
    (dict(delta=0.3), "does not split"),
    (dict(layers_per_tick=0.5), "layers_per_tick must be"),
    (dict(layers_per_tick=5), "instantaneous=True"),
    (dict(action_history=-1), "action_history must be"),
    (dict(action_history=2), "needs num_actions"),
    (dict(arch="mlp"), "flat observation vector"),
    (dict(arch="cnn", shape=(7,)), "image observation"),
    (dict(arch="cnn", shape=(10, 10, 3), cnn_preset="minigrid"), "too small"),
    (dict(arch="cnn", shape=(10, 10, 3), action_history=1, num_actions=3, action_input="obs"), "does not fit"),
])
def test_bad_input_gets_one_clear_error(kwargs, message):
    kwargs = dict(kwargs)
    arch = kwargs.pop("arch", "cnn-skip")
    shape = kwargs.pop("shape", MINATAR)
    with pytest.raises(PipelagError, match=message):
        build_network(arch, shape, 3, **kwargs)


@pytest.mark.parametrize("arch", ["mlp", "cnn-skip"])
def test_frame_stack_in_the_network_state(arch):
    net = small(arch, obs_history=3)
    params = params_of(net)
    assert_delay_correct(net, params)  # older frames reach a_t through the same layers, later
    assert net.delay_profile().ticks >= {net.delay_profile().min_delay_ticks + 2}
    # equals a network fed the stacked observation by hand (oldest first, padded with o_0)
    flat = small(arch, shape=(*net.obs_shape[:-1], net.obs_shape[-1] * 3))
    obs = jax.random.normal(jax.random.PRNGKey(2), (4, *net.obs_shape))
    s_stack, s_flat = net.initial_state(params, obs[0]), flat.zero_state()
    frames = [obs[0], obs[0]]
    for t in range(4):
        frames = frames[-2:] + [obs[t]]
        _, s_stack = net.step(params, s_stack, obs[t])
        _, s_flat = flat.step(params, s_flat, jnp.concatenate(frames, axis=-1))
        np.testing.assert_allclose(net.output(params, s_stack, obs[t]), flat.output(params, s_flat, obs[t]),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("init", ["zeros", "instant"])
@pytest.mark.parametrize("delta", [1, 0.5])
@pytest.mark.parametrize("arch", list_architectures())
def test_layerwise_unroll_equals_tick_by_tick(arch, delta, init):
    net = small(arch, delta=delta, num_actions=3, action_history=2, init_activations=init)
    params = params_of(net)
    T, B = 6, 3
    obs = jax.random.normal(jax.random.PRNGKey(5), (T, B, *net.obs_shape))
    acts = jax.random.randint(jax.random.PRNGKey(6), (T, B), 0, 3)
    resets = jnp.zeros((T, B), bool).at[0, 0].set(True).at[3, 1].set(True)
    state0 = random_state(net, params, B)
    scan_out, _ = net.unroll(params, state0, obs, acts, resets)
    layer_out = net.unroll_layerwise(params, state0, obs, acts, resets)
    np.testing.assert_allclose(layer_out, scan_out, rtol=1e-5, atol=1e-5)
    # the comparison has teeth: resets one tick late change the outputs
    late = net.unroll_layerwise(params, state0, obs, acts, jnp.roll(resets, 1, axis=0))
    assert not np.allclose(late, scan_out, atol=1e-5)


@pytest.mark.parametrize("arch", ["mlp-proj-from-obs", "cnn-skip-res", "cnn-skip-lstm"])
def test_bfloat16_compute_keeps_float32_state_and_passes_the_delay_test(arch):
    """Mixed precision: the same parameters give outputs within bf16 rounding of the float32 network,
    parameters and stored activations stay float32, and the delay test still holds."""
    kw = {"num_actions": 3, "action_history": 1}
    net32, net16 = small(arch, **kw), small(arch, compute_dtype="bfloat16", **kw)
    params = params_of(net32)
    assert jax.tree.structure(params) == jax.tree.structure(net16.init(jax.random.PRNGKey(0)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (7, *net32.obs_shape))
    actions = jnp.arange(7) % 3
    out32, st32 = net32.unroll(params, net32.zero_state(), obs, actions)
    out16, st16 = net16.unroll(params, net16.zero_state(), obs, actions)
    assert out16.dtype == jnp.float32
    assert all(x.dtype == y.dtype for x, y in zip(jax.tree.leaves(st32), jax.tree.leaves(st16), strict=True))
    scale = float(jnp.abs(out32).max())
    err = float(jnp.abs(out16 - out32).max())
    assert 0 < err < 0.05 * scale  # really computed in bf16 (not equal), and close
    assert_delay_correct(net16, params)


def test_unknown_compute_dtype_is_one_clear_error():
    with pytest.raises(PipelagError, match="compute_dtype"):
        small("mlp", compute_dtype="float16")


def test_unrolled_scan_has_no_loop_and_the_same_outputs():
    """``unroll(..., scan_unroll=True)`` (SAC's short windows): no loop in the program, the same outputs and
    final state as the looped scan, resets and action history included."""
    net = build_network("mlp-proj-from-obs", (5,), 4, hidden=8, action_dim=2, action_history=2)
    params = net.init(jax.random.PRNGKey(0))
    obs = jax.random.normal(jax.random.PRNGKey(1), (6, 3, 5))
    acts = jax.random.normal(jax.random.PRNGKey(2), (6, 3, 2))
    resets = jnp.zeros((6, 3), bool).at[3, 1].set(True)
    state0 = net.initial_state(params, obs[0])

    def run(unroll):
        return net.unroll(params, state0, obs, acts, resets, scan_unroll=unroll)

    assert jax.jit(lambda: run(True)).lower().as_text().count("stablehlo.while") == 0
    assert jax.jit(lambda: run(1)).lower().as_text().count("stablehlo.while") == 1
    for a, b in zip(jax.tree.leaves(run(True)), jax.tree.leaves(run(1)), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("padding,strides,size", [("SAME", (1, 1), 10), ("VALID", (4, 4), 40), ("VALID", (2, 2), 9),
                                                  ("SAME", (2, 2), 7)])
def test_gemm_conv_equals_lax_conv(padding, strides, size):
    """GemmConv (patches × kernel) has nn.Conv's parameters (same init) and outputs, also vmapped over
    parameter sets (seeds) and differentiated."""
    import flax.linen as nn

    from pipelag.networks.layers import GemmConv

    kw = dict(features=5, kernel_size=(3, 3), strides=strides, padding=padding)
    ref, gemm = nn.Conv(**kw), GemmConv(**kw)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))
    p_ref, p_gemm = ref.init(jax.random.PRNGKey(1), x), gemm.init(jax.random.PRNGKey(1), x)
    assert jax.tree.map(jnp.shape, p_ref) == jax.tree.map(jnp.shape, p_gemm)
    np.testing.assert_array_equal(p_ref["params"]["kernel"], p_gemm["params"]["kernel"])
    p = jax.tree.map(lambda a: a + 0.3, p_ref)  # non-zero bias
    y_ref, y_gemm = ref.apply(p, x), gemm.apply(p, x)
    assert y_ref.shape == y_gemm.shape
    np.testing.assert_allclose(y_gemm, y_ref, rtol=1e-5, atol=1e-5)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))
    g_ref, g_gemm = jax.grad(loss(ref), argnums=(0, 1))(p, x), jax.grad(loss(gemm), argnums=(0, 1))(p, x)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_gemm), strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    seeds = jax.vmap(lambda k: ref.init(k, x))(jax.random.split(jax.random.PRNGKey(2), 3))
    np.testing.assert_allclose(jax.vmap(gemm.apply, (0, None))(seeds, x), jax.vmap(ref.apply, (0, None))(seeds, x),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels", [4, 3, 8])
def test_padded_channels_conv_equals_nn_conv_in_bf16(channels):
    """The bf16 conv pads its input channels to a multiple of 8 (cuDNN's tensor-core kernels): nn.Conv's
    parameters (same init), outputs and gradients, vmapped over seeds too; its program convolves 8
    channels where the layer has fewer."""
    import flax.linen as nn

    from pipelag.networks.layers import PaddedChannelsConv

    kw = dict(features=5, kernel_size=(3, 3), padding="SAME", dtype=jnp.bfloat16)
    ref, padded = nn.Conv(**kw), PaddedChannelsConv(**kw)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 10, 10, channels))
    p_ref, p_pad = ref.init(jax.random.PRNGKey(1), x), padded.init(jax.random.PRNGKey(1), x)
    assert jax.tree.map(jnp.shape, p_ref) == jax.tree.map(jnp.shape, p_pad)
    np.testing.assert_array_equal(p_ref["params"]["kernel"], p_pad["params"]["kernel"])
    p = jax.tree.map(lambda a: a + 0.3, p_ref)  # non-zero bias
    y_ref, y_pad = ref.apply(p, x), padded.apply(p, x)
    assert y_ref.shape == y_pad.shape and y_pad.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(y_pad, np.float32), np.asarray(y_ref, np.float32), rtol=1e-2, atol=1e-2)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x).astype(jnp.float32)))
    g_ref, g_pad = jax.grad(loss(ref), argnums=(0, 1))(p, x), jax.grad(loss(padded), argnums=(0, 1))(p, x)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_pad), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(np.asarray(b, np.float32), np.asarray(a, np.float32), rtol=2e-2, atol=2e-2)
    seeds = jax.vmap(lambda k: ref.init(k, x))(jax.random.split(jax.random.PRNGKey(2), 3))
    np.testing.assert_allclose(np.asarray(jax.vmap(padded.apply, (0, None))(seeds, x), np.float32),
                               np.asarray(jax.vmap(ref.apply, (0, None))(seeds, x), np.float32), rtol=1e-2, atol=1e-2)
    hlo = jax.jit(padded.apply).lower(p, x).as_text()
    assert "stablehlo.convolution" in hlo and "x10x10x8xbf16" in hlo


@pytest.mark.parametrize("arch", ["cnn", "cnn-skip-res"])
def test_gemm_conv_network_matches_and_passes_the_delay_test(arch):
    """A whole network with conv_impl="gemm": the same parameters and outputs as "xla", no conv op left in
    its program, and the delay test holds."""
    kw = {"num_actions": 3, "action_history": 1}
    net_x, net_g = small(arch, MINIGRID, **kw), small(arch, MINIGRID, conv_impl="gemm", **kw)
    params = params_of(net_x)
    assert jax.tree.structure(params) == jax.tree.structure(net_g.init(jax.random.PRNGKey(0)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (7, *net_x.obs_shape))
    actions = jnp.arange(7) % 3
    out_x = net_x.unroll(params, net_x.zero_state(), obs, actions)[0]
    out_g = net_g.unroll(params, net_g.zero_state(), obs, actions)[0]
    np.testing.assert_allclose(out_g, out_x, rtol=1e-4, atol=1e-4 * float(jnp.abs(out_x).max()))
    hlo = jax.jit(lambda p, o: net_g.unroll(p, net_g.zero_state(), o, actions)[0]).lower(params, obs).as_text()
    assert "convolution" not in hlo and "conv_general" not in hlo
    assert_delay_correct(net_g, params)


def test_unknown_conv_impl_is_one_clear_error():
    with pytest.raises(PipelagError, match="conv_impl"):
        small("cnn", conv_impl="cudnn")
