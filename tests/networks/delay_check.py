"""The delay test, by autodiff: which past observations can the action a_t depend on?"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from pipelag.networks.graph import shortest_layer_paths


def observed_dependence(net, params, horizon: int, seed: int = 0, key=None) -> np.ndarray:
    """dep[k] = whether ∂a_t/∂o_{t-k} is non-zero, for k = 0..horizon-1 (t = horizon-1).

    ``key``: the dropout key of the unroll (networks with dropout > 0: the masks are fixed by it, so the
    Jacobian is that of one fixed, sparser network)."""
    key_obs, key_act = jax.random.split(jax.random.PRNGKey(seed))
    obs = jax.random.normal(key_obs, (horizon, *net.obs_shape))
    spec = net.action_spec
    if spec.num_actions is not None:
        actions = jax.random.randint(key_act, (horizon,), 0, spec.num_actions)
    elif spec.action_dim is not None:
        actions = jax.random.normal(key_act, (horizon, spec.action_dim))
    else:
        actions = None
    state = net.zero_state()

    def last_output(obs_seq):
        outs, _ = net.unroll(params, state, obs_seq, actions, key=key)
        return outs[-1]

    jac = jax.jacrev(last_output)(obs)  # [out..., T, *obs_shape]
    jac = jnp.abs(jac).reshape(-1, horizon, int(np.prod(net.obs_shape))).max(axis=(0, 2))
    return np.asarray(jac[::-1] > 0)  # index k = lag


def assert_delay_correct(net, params, horizon: int = 9, key=None) -> None:
    """a_t never depends on an observation it could not yet have seen, and does where a path exists.
    ``key``: the dropout key, for networks built with dropout > 0."""
    dep = observed_dependence(net, params, horizon, key=key)
    ticks = net.env_steps_per_tick
    # 1) the constraint alone, from the static graph (no timing): a path of L layers needs
    #    k ≥ ceil(L·δ) env steps; so nothing may depend on o_{t-k} for smaller k.
    shortest = shortest_layer_paths(net.graph.nodes)[net.graph.head]
    min_env_steps = math.ceil(shortest * net.delta - 1e-9)
    for k in range(horizon):
        if k * ticks < max(min_env_steps, 1):
            assert not dep[k], f"a_t depends on o_(t-{k}) (k={k * ticks} env steps) but its shortest path has " \
                               f"{shortest} layers at delta={net.delta}"
    # 2) exactly the lags the delay profile (computed from the tick rule) predicts
    predicted = net.delay_profile(max_ticks=horizon).ticks
    for k in range(horizon):
        assert dep[k] == (k in predicted), (
            f"lag {k} ticks: jacobian says {'dependent' if dep[k] else 'independent'}, "
            f"profile predicts {sorted(predicted)}")
