"""Deployment runtime: checkpoint round trip, the tick loop equals stepping the core, clear errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag.errors import PipelagError
from pipelag.networks import build_network
from pipelag.runtime import PipelinedPolicy, load_policy, save_policy

MLP = {"arch": "mlp", "obs_shape": [5], "num_outputs": 4, "num_layers": 3, "hidden": 16}


def _params(kw, seed=0):
    kw = dict(kw)
    net = build_network(kw.pop("arch"), tuple(kw.pop("obs_shape")), kw.pop("num_outputs"), **kw)
    params = net.init(jax.random.PRNGKey(seed))
    # non-zero biases so that a runtime dropping a term would be caught
    params = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.PRNGKey(seed + 1), a.shape), params)
    return net, params


def _obs_seq(shape, n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def _core_loop(net, params, obs_seq, choose):
    """The agent loop of the pipeline module's docstring, with the reference (layer-by-layer) tick."""
    state = net.initial_state(params, jnp.asarray(obs_seq[0]))
    outs, actions = [], []
    for o in obs_seq:
        o = jnp.asarray(o)
        out = net.output(params, state, o)
        a = choose(out)
        _, state = net.step(params, state, o, a if net.action_spec.history else None)
        outs.append(np.asarray(out))
        actions.append(np.asarray(a))
    return np.stack(outs), np.stack(actions)


CASES = {
    "mlp": (MLP, "raw"),
    "mlp-proj-to-action-res": ({**MLP, "arch": "mlp-proj-to-action-res", "num_layers": 4}, "raw"),
    "mlp-lstm-history": ({**MLP, "arch": "mlp-lstm", "num_actions": 4, "action_history": 2}, "discrete"),
    "cnn-skip-instant-init": ({"arch": "cnn-skip", "obs_shape": [6, 6, 3], "num_outputs": 5, "hidden": 16,
                               "channels": [4, 8, 8], "init_activations": "instant"}, "raw"),
    "delta-half": ({**MLP, "num_layers": 4, "delta": 0.5}, "raw"),
    "frame-stack": ({**MLP, "obs_history": 3}, "raw"),
    "instantaneous": ({**MLP, "instantaneous": True}, "discrete"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_save_load_act_equals_stepping_the_network(tmp_path, case):
    kw, head = CASES[case]
    try:
        net, params = _params(kw)
    except TypeError as e:  # an option this core does not have (yet)
        pytest.skip(f"build_network does not take this case's options: {e}")
    save_policy(tmp_path / "ck", kw, params, head={"type": head})
    pol = PipelinedPolicy.load(tmp_path / "ck")
    assert pol.fused == (not kw.get("instantaneous", False))
    obs = _obs_seq(net.obs_shape, 9, seed=3)
    choose = (lambda out: jnp.argmax(out, -1)) if head == "discrete" else (lambda out: out)
    ref_outs, ref_actions = _core_loop(net, params, obs, choose)
    got = np.stack([np.asarray(pol.act(o)) for o in obs])
    np.testing.assert_allclose(got, ref_actions, rtol=1e-5, atol=1e-6)
    assert np.abs(ref_outs).max() > 0  # the comparison is not between zeros
    # reset: the next episode starts from scratch and repeats the first episode exactly
    pol.reset()
    again = np.stack([np.asarray(pol.act(o)) for o in obs])
    np.testing.assert_allclose(again, got, rtol=1e-6, atol=1e-7)


def test_an_action_depends_only_on_observations_as_old_as_the_depth():
    net, params = _params(MLP)  # 3 layers: a_t depends on o_(t-3) and older
    pol = PipelinedPolicy(net, params)
    a = [pol.act(o) for o in _obs_seq((5,), 5, seed=1)]
    pol.reset()
    b = [pol.act(o) for o in _obs_seq((5,), 5, seed=2)]
    for t in range(3):
        np.testing.assert_array_equal(a[t], b[t])
    assert not np.allclose(a[3], b[3]) and not np.allclose(a[4], b[4])


def test_loaded_params_are_the_saved_ones(tmp_path):
    net, params = _params(MLP, seed=4)
    save_policy(tmp_path / "ck", MLP, params)
    loaded = load_policy(tmp_path / "ck")
    assert loaded.arch_kwargs == MLP and loaded.head == {"type": "raw"}
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    meta = json.loads((tmp_path / "ck" / "policy.json").read_text())
    assert meta["format"] == "pipelag-policy" and meta["version"] == 1 and len(meta["params_sha256"]) == 64


def test_gaussian_head_greedy_and_sampled(tmp_path):
    kw = {**MLP, "num_outputs": 4}  # action_dim 2: mean and log-std
    net, params = _params(kw)
    head = {"type": "gaussian", "low": [-2.0, 0.0], "high": [2.0, 1.0]}
    save_policy(tmp_path / "ck", kw, params, head=head)
    obs = _obs_seq((5,), 12, seed=1)
    greedy = PipelinedPolicy.load(tmp_path / "ck")
    _, ref = _core_loop(net, params, obs, lambda out: out)
    low, high = np.array([-2.0, 0.0]), np.array([2.0, 1.0])
    expect = np.tanh(ref[:, :2]) * (high - low) / 2 + (high + low) / 2
    np.testing.assert_allclose(np.stack([greedy.act(o) for o in obs]), expect, rtol=1e-5, atol=1e-6)
    s1 = PipelinedPolicy.load(tmp_path / "ck", mode="sample", seed=1)
    s2 = PipelinedPolicy.load(tmp_path / "ck", mode="sample", seed=1)
    s3 = PipelinedPolicy.load(tmp_path / "ck", mode="sample", seed=2)
    a1, a2, a3 = (np.stack([s.act(o) for o in obs]) for s in (s1, s2, s3))
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, a3) and not np.allclose(a1, expect)
    assert np.all(a1 >= low) and np.all(a1 <= high)


def test_discrete_sampling_follows_the_softmax(tmp_path):
    net, params = _params(MLP)
    # a state whose head holds fixed logits: act returns a draw from softmax(logits) every time
    logits = np.array([2.0, 0.0, 0.0, -1.0], np.float32)
    pol = PipelinedPolicy(net, params, head={"type": "discrete"}, mode="sample", seed=0)
    counts = np.zeros(4)
    for _ in range(2000):
        st = net.zero_state()
        st["act"]["head"] = jnp.asarray(logits)
        pol.set_state(st)
        counts[pol.act(np.zeros(5, np.float32))] += 1
    p = np.exp(logits) / np.exp(logits).sum()
    assert np.abs(counts / counts.sum() - p).max() < 0.04


def test_stats_and_benchmark_report_actions_per_second():
    net, params = _params(MLP)
    pol = PipelinedPolicy(net, params)
    for o in _obs_seq((5,), 5):
        pol.act(o)
    st = pol.stats()
    assert st["acts"] == 5 and st["actions_per_second"] > 0 and sum(st["fused_groups"]) == 3
    assert pol.benchmark(num_acts=20, warmup=2) > 0


# ---------------------------------------------------------------------------------- errors
def test_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(PipelagError, match="does not exist.*save_policy"):
        load_policy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelagError, match="no policy.json"):
        PipelinedPolicy.load(tmp_path / "empty")


def test_incomplete_and_corrupt_checkpoints_name_the_fix(tmp_path):
    net, params = _params(MLP)
    ck = save_policy(tmp_path / "ck", MLP, params)
    blob = (ck / "params.msgpack").read_bytes()
    (ck / "params.msgpack").write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(PipelagError, match="corrupt.*checksum"):
        load_policy(ck)
    (ck / "params.msgpack").unlink()
    with pytest.raises(PipelagError, match="missing.*incomplete"):
        load_policy(ck)
    (ck / "policy.json").write_text("{not json")
    with pytest.raises(PipelagError, match="corrupt.*re-save"):
        load_policy(ck)
    (ck / "policy.json").write_text(json.dumps({"format": "pipelag-policy", "version": 99}))
    with pytest.raises(PipelagError, match="version 99"):
        load_policy(ck)


def test_params_that_do_not_fit_the_architecture_are_refused(tmp_path):
    _, params = _params({**MLP, "hidden": 8})
    with pytest.raises(PipelagError, match="do not fit the architecture"):
        save_policy(tmp_path / "ck", MLP, params)
    with pytest.raises(PipelagError, match="lacks"):
        save_policy(tmp_path / "ck", {"arch": "mlp"}, params)
    with pytest.raises(PipelagError, match="unknown architecture"):
        save_policy(tmp_path / "ck", {**MLP, "arch": "nope"}, params)


def test_bad_policy_arguments_are_refused(tmp_path):
    net, params = _params(MLP)
    with pytest.raises(PipelagError, match="no distribution"):
        PipelinedPolicy(net, params, mode="sample")
    with pytest.raises(PipelagError, match="mode"):
        PipelinedPolicy(net, params, mode="argmax")
    with pytest.raises(PipelagError, match="backend"):
        PipelinedPolicy(net, params, backend="tpu")
    with pytest.raises(PipelagError, match="2·action_dim"):
        PipelinedPolicy(build_network("mlp", (5,), 3, num_layers=2), params=None, head={"type": "gaussian"})
    pol = PipelinedPolicy(net, params)
    with pytest.raises(PipelagError, match=r"shape \(5,\)"):
        pol.act(np.zeros(6, np.float32))


# ---------------------------------------------------------------------------------- torch backend
HAS_TORCH = importlib.util.find_spec("torch") is not None
NO_TORCH = "torch is not installed (the `bench` extra): pip install torch==2.13.0 for the CPU build"


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
@pytest.mark.parametrize("dims", [(5, 16, 4, 4), (16, 16, 16, 3), (8, 16, 16, 1), (6, 16, 4, 2), (16, 16, 6, 5)])
def test_torch_backend_acts_like_the_core(tmp_path, dims):
    obs_dim, hidden, outputs, layers = dims
    kw = {"arch": "mlp", "obs_shape": [obs_dim], "num_outputs": outputs, "num_layers": layers, "hidden": hidden}
    net, params = _params(kw)
    save_policy(tmp_path / "ck", kw, params)
    pol = PipelinedPolicy.load(tmp_path / "ck", backend="torch")
    assert pol.backend == "torch" and pol.describe_backend().startswith("torch (cpu")
    obs = _obs_seq((obs_dim,), 7, seed=5)
    _, ref = _core_loop(net, params, obs, lambda out: out)
    got = np.stack([pol.act(o) for o in obs])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert np.abs(ref).max() > 0
    pol.reset()
    np.testing.assert_allclose(np.stack([pol.act(o) for o in obs]), got, rtol=1e-6, atol=1e-7)
    # state() / set_state() round trip through the torch buffers
    st = pol.state()
    pol2 = PipelinedPolicy(net, params, backend="jax")
    pol2.set_state(st)
    np.testing.assert_allclose(pol2.act(obs[0]), pol.act(obs[0]), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_backend_discrete_and_gaussian_heads_match_jax():
    kw = {**MLP, "num_outputs": 6}
    net, params = _params(kw)
    obs = _obs_seq((5,), 8, seed=2)
    for head, mode in (({"type": "discrete"}, "greedy"), ({"type": "discrete"}, "sample"),
                       ({"type": "gaussian", "low": -2.0, "high": 3.0}, "sample")):
        j = PipelinedPolicy(net, params, head=head, mode=mode, seed=3, backend="jax")
        t = PipelinedPolicy(net, params, head=head, mode=mode, seed=3, backend="torch")
        for o in obs:
            np.testing.assert_allclose(np.asarray(t.act(o)), np.asarray(j.act(o)), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH)
def test_torch_backend_refuses_what_it_cannot_run():
    net, params = _params({**MLP, "arch": "mlp-proj-to-action"})
    with pytest.raises(PipelagError, match="chains of dense layers.*backend='jax'"):
        PipelinedPolicy(net, params, backend="torch")
    # auto falls back to JAX (and, on a CPU, never picks torch)
    assert PipelinedPolicy(net, params, backend="auto").backend == "jax"
    net, params = _params(MLP)
    if jax.default_backend() == "cpu":
        assert PipelinedPolicy(net, params).backend == "jax"


@pytest.mark.skipif(not (HAS_TORCH and importlib.util.find_spec("triton")),
                    reason="needs torch and triton (run in Triton's CPU interpreter)")
def test_torch_backend_triton_segments_in_interpreter():
    code = textwrap.dedent("""
        import jax, numpy as np
        from pipelag.networks import build_network
        from pipelag.runtime.torch_backend import TorchChainTick
        from pipelag.runtime.policy import PipelinedPolicy
        net = build_network("mlp", (7,), 3, num_layers=5, hidden=128)
        params = jax.tree.map(lambda a: a + 0.01, net.init(jax.random.PRNGKey(0)))
        t = TorchChainTick(net, params, device="cpu", use_triton=True, graphs=False)
        assert [s["triton"] for s in t.segments] == [False, True, False], t.segments
        ref = PipelinedPolicy(net, params, backend="jax")
        obs = np.random.default_rng(0).standard_normal((7, 7)).astype(np.float32)
        t.load({n: np.zeros(s) for n, s in zip(t.names, t.sizes[1:])})
        for o in obs:
            np.testing.assert_allclose(t.step(o), ref.act(o), rtol=1e-4, atol=1e-5)
        print("ok")
    """)
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]
