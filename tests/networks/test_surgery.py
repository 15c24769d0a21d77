"""Connection removal (networks/surgery.py): zeroing an edge's parameters cuts exactly the paths through it.

The path a dependence travels is told by its lag: under the tick rule a path of L layers from o_(t-k)
reaches a_t at lag k = L ticks (δ = 1), so the Jacobian of the unrolled output w.r.t. past observations
shows, lag by lag, which paths exist. After a removal the observed lags must equal those the tick rule
predicts for the graph without that edge (graph.path_pairs on the reduced graph).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pipelag.errors import PipelagError
from pipelag.networks import build_network
from pipelag.networks.graph import Graph, path_pairs
from pipelag.networks.surgery import connection_groups, list_connections, remove_connections, resolve_removal

from .delay_check import observed_dependence
from .test_networks import params_of, small

HORIZON = 6


def _reduced_graph(graph: Graph, edges) -> Graph:
    cut = {tuple(e.split("->")) for e in edges}
    nodes = tuple(
        dataclasses.replace(n, inputs=tuple(s for s in n.inputs if (s, n.name) not in cut)) for n in graph.nodes
    )
    return Graph(nodes=nodes, head=graph.head, stages=graph.stages)


def _predicted_lags(net, edges) -> np.ndarray:
    pairs = path_pairs(_reduced_graph(net.graph, edges), HORIZON, net.obs_history)[net.graph.head]
    return np.array([any(k == lag for k, _ in pairs) for lag in range(HORIZON)])


def _dependence_fn(net):
    """jit(params -> lags k at which a_t depends on o_(t-k)): compiled once, reused for every removal."""
    k_obs, k_act = jax.random.split(jax.random.PRNGKey(1))
    obs = jax.random.normal(k_obs, (HORIZON, *net.obs_shape))
    spec = net.action_spec
    actions = jax.random.normal(k_act, (HORIZON, spec.action_dim)) if spec.action_dim else None
    state = net.zero_state()

    def last(params, o):
        return net.unroll(params, state, o, actions)[0][-1]

    jac = jax.jit(jax.jacrev(last, argnums=1))

    def lags(params):
        j = jnp.abs(jac(params, obs)).reshape(-1, HORIZON, int(np.prod(net.obs_shape))).max(axis=(0, 2))
        return np.asarray(j[::-1] > 0)

    return lags


CASES = [
    ("mlp-proj-to-action", 1),
    ("mlp-all-skips", 1),
    ("mlp-all-skips", 0.5),
    ("mlp-proj-from-obs", 1),
    ("mlp-lstm", 1),
    ("mlp-proj-to-action-res", 1),
    ("cnn-skip-lstm", 1),
    ("cnn", 1),
]


@pytest.mark.parametrize("arch,delta", CASES)
def test_removal_cuts_exactly_the_paths_through_the_edge(arch, delta):
    net = small(arch, delta=delta)
    params = params_of(net)
    lags = _dependence_fn(net)
    intact = lags(params)
    np.testing.assert_array_equal(intact, _predicted_lags(net, ()))
    changed = 0
    removals = [(e,) for e in list_connections(net)] + [g.edges for g in connection_groups(net).values()]
    for edges in removals:
        cut = remove_connections(net, params, edges)
        got = lags(cut)
        np.testing.assert_array_equal(got, _predicted_lags(net, edges), err_msg=f"{arch}: removing {edges}")
        changed += int((got != intact).any())
    assert changed >= 2, "no removal changed which observations reach the action: the test would be vacuous"


def test_proj_to_action_each_removal_silences_its_own_lag_only():
    """Three-layer proj-to-action at δ = 1: obs->head is the lag-1 path, obs->fc1->head lag 2,
    obs->fc1->fc2->head lag 3; each of Fig. 5's removals zeroes its lag and keeps the others."""
    net = small("mlp-proj-to-action")
    params = params_of(net)
    dep = observed_dependence(net, params, horizon=5)
    np.testing.assert_array_equal(dep, [False, True, True, True, False])
    for group, silent in (("obs-proj", 1), ("fc1-proj", 2), ("fc2-conn", 3)):
        dep = observed_dependence(net, remove_connections(net, params, group), horizon=5)
        expected = [k in (1, 2, 3) and k != silent for k in range(5)]
        np.testing.assert_array_equal(dep, expected, err_msg=group)
    dep = observed_dependence(net, remove_connections(net, params, "all"), horizon=5)
    assert not dep.any()


def test_removing_the_obs_projection_makes_the_first_ticks_blind_to_the_observation():
    """With zero initial activations only obs->head can bring o_0 to the action of tick 1."""
    net = small("mlp-proj-to-action")
    params = params_of(net)
    cut = remove_connections(net, params, ["obs->head"])
    rng = np.random.default_rng(0)
    seq_a, seq_b = (jnp.asarray(rng.normal(size=(4, *net.obs_shape)), jnp.float32) for _ in range(2))

    def outs(p, seq):
        return np.asarray(net.unroll(p, net.zero_state(), seq)[0])

    intact_a, intact_b = outs(params, seq_a), outs(params, seq_b)
    cut_a, cut_b = outs(cut, seq_a), outs(cut, seq_b)
    assert np.abs(intact_a[1] - intact_b[1]).max() > 1e-3  # the intact agent reacts at tick 1
    np.testing.assert_array_equal(cut_a[:2], cut_b[:2])  # without the projection: ticks 0 and 1 are blind
    assert np.abs(cut_a[2] - cut_b[2]).max() > 1e-3  # obs->fc1->head still arrives a tick later


def test_remove_nothing_returns_identical_params_and_never_mutates():
    net = small("mlp-proj-to-action")
    params = params_of(net)
    before = jax.tree.map(np.array, params)
    assert remove_connections(net, params, []) is params
    assert remove_connections(net, params, "intact") is params
    cut = remove_connections(net, params, "fc1-proj")
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    # only the head kernel's fc1 rows changed (obs is 5 wide, fc1 8), and they are zero
    kernel = np.asarray(cut["head"]["kernel"])
    assert (kernel[5:13] == 0).all() and (kernel[:5] == before["head"]["kernel"][:5]).all()
    np.testing.assert_array_equal(kernel[13:], before["head"]["kernel"][13:])
    for name in ("fc1", "fc2"):
        for a, b in zip(jax.tree.leaves(cut[name]), jax.tree.leaves(before[name]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), b)


@pytest.mark.parametrize("arch", ["mlp-all-skips", "mlp-lstm", "cnn-skip", "cnn-lstm"])
def test_slices_tile_each_kernel_input_exactly(arch):
    """Removing every input edge of a layer zeroes its whole input kernel: the slices cover it."""
    net = small(arch, num_actions=3, action_history=2)
    params = params_of(net)
    for node in net.graph.nodes:
        edges = [f"{s}->{node.name}" for s in node.inputs]
        cut = remove_connections(net, params, edges)[node.name]
        kernels = [cut[g]["kernel"] for g in ("ii", "if", "ig", "io")] if node.op == "lstm" else [cut["kernel"]]
        assert all((np.asarray(k) == 0).all() for k in kernels), node.name


def test_action_edges():
    """The action history reaches the head directly and through fc1/fc2; cutting all of it removes the
    dependence on past actions, cutting action->head alone does not."""
    net = small("mlp-proj-from-obs", action_dim=2, action_history=2)
    params = params_of(net)
    obs = jax.random.normal(jax.random.PRNGKey(0), (5, *net.obs_shape))
    actions = jax.random.normal(jax.random.PRNGKey(1), (5, 2))

    jac = jax.jit(jax.jacrev(lambda p, a: net.unroll(p, net.zero_state(), obs, a)[0][-1], argnums=1))

    def dependence(p):
        return float(jnp.abs(jac(p, actions)).max())

    action_edges = [e for e in list_connections(net) if e.startswith("action->")]
    assert action_edges == ["action->fc1", "action->fc2", "action->head"]
    assert dependence(params) > 0
    assert dependence(remove_connections(net, params, ["action->head"])) > 0
    assert dependence(remove_connections(net, params, action_edges)) == 0


def test_names_groups_and_errors():
    net = build_network("mlp-proj-to-action", (5,), 4, hidden=8)
    assert list_connections(net) == ["obs->fc1", "fc1->fc2", "obs->head", "fc1->head", "fc2->head"]
    groups = connection_groups(net)
    assert {k: g.edges for k, g in groups.items()} == {
        "intact": (),
        "obs-proj": ("obs->head",),
        "fc1-proj": ("fc1->head",),
        "fc2-conn": ("fc2->head",),
        "all": ("obs->head", "fc1->head", "fc2->head"),
    }
    assert resolve_removal(net, "obs-proj, fc2->head") == ("obs->head", "fc2->head")
    params = net.init(jax.random.PRNGKey(0))
    with pytest.raises(PipelagError, match=r"unknown connection 'obs->fc2'.*valid connections: obs->fc1, fc1->fc2"):
        remove_connections(net, params, ["obs->fc2"])
    res = build_network("mlp-proj-to-action-res", (5,), 4, hidden=8)
    assert "fc1->fc2" not in list_connections(res)
    with pytest.raises(PipelagError, match="residual sum.*cannot be removed by zeroing parameters"):
        remove_connections(res, res.init(jax.random.PRNGKey(0)), ["fc1->fc2"])
    # other architectures get one group per edge into the head, named after the source
    assert list(connection_groups(build_network("mlp", (5,), 4, hidden=8))) == ["intact", "no-fc2", "all"]
