"""pipelag's JAX MiniGrid against the ``minigrid`` package (the reference, a dev dependency)."""

from __future__ import annotations

import collections
import functools
import importlib.util
import math
import os
import pathlib
import subprocess
import sys
import types

import gymnasium as gym
import jax
import jax.numpy as jnp
import minigrid  # noqa: F401  (registers the MiniGrid-* gymnasium ids; a dev dependency)
import numpy as np
import pytest
from minigrid.core.grid import Grid
from minigrid.core.world_object import Door, Key, Wall
from minigrid.wrappers import RGBImgPartialObsWrapper

from pipelag.envs.minigrid import MiniGrid, _process_vis, state_from_minigrid
from pipelag.errors import PipelagError

NAMES = ["MiniGrid-Empty-Random-5x5-v0", "MiniGrid-DoorKey-5x5-v0"]
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
DIRS = [(1, 0), (0, 1), (-1, 0), (0, -1)]
ROOT = pathlib.Path(__file__).resolve().parents[2]


def ref_env(name):
    """minigrid env whose observation is the paper's RGB view; ``.unwrapped.gen_obs()`` gives the symbolic one."""
    return RGBImgPartialObsWrapper(gym.make(name), tile_size=8)


def rgb_ref(img_uint8):
    return np.asarray(img_uint8).astype(np.float32) / np.float32(255)


@functools.cache
def jitted(name, view):
    """One env and its jitted functions per (name, view), shared by the tests (compiles are the cost)."""
    env = MiniGrid(name, view)

    def roll(state, actions):  # step_env along an action sequence, no auto-reset
        def body(s, a):
            s, st = env.step_env(jax.random.key(0), s, a)
            return s, (s, st.obs, st.reward, st.terminated, st.truncated)

        return jax.lax.scan(body, state, actions)[1]

    return types.SimpleNamespace(
        env=env,
        reset=jax.jit(env.reset),
        step=jax.jit(env.step),
        step_env=jax.jit(env.step_env),
        observe=jax.jit(env.observe),
        roll=jax.jit(roll),
        vreset=jax.jit(jax.vmap(env.reset)),
        vstep=jax.jit(jax.vmap(env.step)),
        vreset_state=jax.jit(jax.vmap(lambda k: env.reset(k)[0])),
    )


# ---------------------------------------------------------------------------------------------- basics
@pytest.mark.parametrize("name", NAMES)
def test_attributes_match_minigrid(name):
    u = gym.make(name).unwrapped
    env = MiniGrid(name)
    assert env.env_id == name and env.num_actions == 7 == u.action_space.n
    assert env.max_episode_steps == u.max_steps == {NAMES[0]: 100, NAMES[1]: 250}[name]
    assert env.obs_shape == (56, 56, 3) == ref_env(name).observation_space["image"].shape
    assert env.obs_dtype == jnp.float32
    assert MiniGrid(name, "symbolic").obs_shape == (7, 7, 3) == u.observation_space["image"].shape
    assert env.spec.see_through_walls == u.see_through_walls


def test_bad_input_raises_pipelag_error():
    with pytest.raises(PipelagError, match="MiniGrid-DoorKey-5x5-v0"):
        MiniGrid("MiniGrid-DoorKey-6x6-v0")
    with pytest.raises(PipelagError, match="rgb, symbolic"):
        MiniGrid(NAMES[0], view="pixels")
    env = MiniGrid(NAMES[1], "symbolic")
    state, _ = jax.eval_shape(env.reset, jax.random.key(0))
    for bad in (7, -1, np.int64(9)):
        with pytest.raises(PipelagError, match="0..6"):
            env.step(jax.random.key(0), state, bad)
    with pytest.raises(PipelagError, match="can't take the state"):
        env.state_from_minigrid(gym.make(NAMES[0]))
    with pytest.raises(PipelagError, match="needs a reset minigrid"):
        state_from_minigrid(object())


def test_runtime_does_not_import_minigrid():
    code = (
        "import sys, jax; from pipelag.envs.minigrid import MiniGrid\n"
        "e = MiniGrid('MiniGrid-DoorKey-5x5-v0'); k = jax.random.key(0)\n"
        "s, o = jax.eval_shape(e.reset, k); jax.eval_shape(e.step, k, s, 2)\n"
        "assert 'minigrid' not in sys.modules, sorted(m for m in sys.modules if 'minigrid' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_tile_table_is_minigrids_rendering():
    """The committed tiles are what scripts/make_minigrid_tiles.py produces with the installed minigrid."""
    spec = importlib.util.spec_from_file_location("make_minigrid_tiles", ROOT / "scripts/make_minigrid_tiles.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with np.load(ROOT / "src/pipelag/envs/data/minigrid_tiles.npz") as data:
        tiles = data["tiles"]
        assert "minigrid" in str(data["header"]) and "renderer" in str(data["header"])
    for o, c, s, h, a in [
        (2, 5, 0, 1, 0),
        (4, 4, 0, 1, 0),
        (4, 4, 1, 1, 0),
        (4, 4, 2, 0, 0),
        (5, 4, 0, 1, 1),
        (8, 1, 0, 1, 0),
        (1, 0, 0, 1, 1),
        (0, 0, 0, 0, 0),
        (1, 0, 0, 1, 0),
    ]:
        np.testing.assert_array_equal(tiles[o, c, s, h, a], mod.render_tile(mod.make_obj(o, c, s), h, a))
    assert len({t.tobytes() for t in tiles[[0, 1, 2, 4, 5, 8], :, :, :, :].reshape(-1, 8, 8, 3)}) > 20


# ---------------------------------------------------------------------------------------------- visibility
def test_process_vis_equals_minigrid_on_random_views():
    """Our closed-form ``process_vis`` against minigrid's loops on 3000 random 7x7 views of walls/doors."""
    rng = np.random.default_rng(0)
    n = 3000
    kinds = rng.choice(4, size=(n, 7, 7), p=[0.55, 0.25, 0.1, 0.1])  # empty, wall, open door, closed door
    see_behind = (kinds == 0) | (kinds == 2)
    ours = np.asarray(jax.jit(jax.vmap(_process_vis))(jnp.asarray(see_behind)))
    for b in range(n):
        g = Grid(7, 7)
        for i in range(7):
            for j in range(7):
                k = kinds[b, i, j]
                g.set(i, j, [None, Wall(), Door("yellow", is_open=True), Door("yellow")][k])
        ref = g.process_vis(agent_pos=(3, 6))
        np.testing.assert_array_equal(ours[b], ref, err_msg=f"view {b}")


# ---------------------------------------------------------------------------------------------- reset layouts
def _layout_ref(u):
    return (tuple(int(v) for v in u.agent_pos), int(u.agent_dir), u.grid.encode().tobytes())


def _layouts_jax(name, n, seed):
    states = jitted(name, "symbolic").vreset_state(jax.random.split(jax.random.key(seed), n))
    grids = np.asarray(states.grid).astype(np.uint8)
    pos, dirs = np.asarray(states.agent_pos), np.asarray(states.agent_dir)
    assert (np.asarray(states.step_count) == 0).all() and (np.asarray(states.carrying) == [1, 0, 0]).all()
    return [((int(p[0]), int(p[1])), int(d), g.tobytes()) for p, d, g in zip(pos, dirs, grids, strict=True)]


def _chi2_homogeneity(c1: collections.Counter, c2: collections.Counter) -> tuple[float, int]:
    keys = sorted(set(c1) | set(c2))
    a = np.array([c1[k] for k in keys], float)
    b = np.array([c2[k] for k in keys], float)
    tot = a + b
    e1, e2 = tot * a.sum() / tot.sum(), tot * b.sum() / tot.sum()
    return float(((a - e1) ** 2 / e1).sum() + ((b - e2) ** 2 / e2).sum()), len(keys) - 1


def _chi2_critical(df: int, z: float = 3.0902) -> float:
    """Upper 0.1% quantile of chi2(df) by Wilson-Hilferty (within 0.5% of the exact one for df >= 10)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


# expected number of distinct layouts, from minigrid's _gen_grid: Empty-Random: 8 free cells x 4 dirs;
# DoorKey-5x5: split column always 2, agent in 3 cells x 4 dirs x door row 1..2 x key in 2 other cells
N_LAYOUTS = {NAMES[0]: 32, NAMES[1]: 48}


@pytest.mark.parametrize("name", NAMES)
def test_reset_layout_distribution_equals_minigrid(name):
    env = gym.make(name)
    ref = collections.Counter()
    for seed in range(3000):
        env.reset(seed=seed)
        ref[_layout_ref(env.unwrapped)] += 1
    ours = collections.Counter(_layouts_jax(name, 6000, seed=1))
    assert set(ours) == set(ref)
    assert len(ref) == N_LAYOUTS[name]
    stat, df = _chi2_homogeneity(ref, ours)
    assert stat < _chi2_critical(df), (stat, df)


def test_chi2_check_detects_a_biased_layout_distribution():
    """The frequency check above is not vacuous: a 60/40 bias on the agent's direction is rejected."""
    ours = _layouts_jax(NAMES[1], 6000, seed=2)
    rng = np.random.default_rng(0)
    biased = [lay for lay in ours if lay[1] != 0 or rng.random() < 0.6]
    stat, df = _chi2_homogeneity(collections.Counter(ours[:3000]), collections.Counter(biased))
    assert stat > _chi2_critical(df)
    stat, df = _chi2_homogeneity(collections.Counter(ours[:3000]), collections.Counter(ours[3000:]))
    assert stat < _chi2_critical(df)


# ---------------------------------------------------------------------------------------------- lockstep
def _planner_action(u, rng, eps):
    """Mostly-greedy DoorKey/Empty solver on minigrid's state (key -> door -> goal), random w.p. eps.

    With eps in (0, 1) it also closes an open door in front of it half of the time.
    """
    if rng.random() < eps:
        return int(rng.integers(7))
    cells = {(i, j): u.grid.get(i, j) for i in range(u.width) for j in range(u.height)}
    front = cells[tuple(int(v) for v in u.front_pos)]
    if 0 < eps < 1 and front is not None and front.type == "door" and front.is_open and rng.random() < 0.5:
        return TOGGLE
    where = {c.type: (p, c) for p, c in cells.items() if c is not None and c.type != "wall"}
    door = where.get("door", (None, None))[1]
    if door is not None and not door.is_open and "key" in where and u.carrying is None:
        target, final = where["key"][0], PICKUP
    elif door is not None and not door.is_open:
        target, final = where["door"][0], TOGGLE
    else:
        target, final = where["goal"][0], FORWARD

    def passable(p):
        c = cells[p]
        return c is None or (c.can_overlap() and c.type != "goal")

    start = (tuple(int(v) for v in u.agent_pos), int(u.agent_dir))
    frontier, first = collections.deque([start]), {start: None}
    while frontier:
        (p, d) = node = frontier.popleft()
        if (p[0] + DIRS[d][0], p[1] + DIRS[d][1]) == target:
            return final if first[node] is None else first[node]
        fwd = (p[0] + DIRS[d][0], p[1] + DIRS[d][1])
        for a, nxt in ((LEFT, (p, (d + 3) % 4)), (RIGHT, (p, (d + 1) % 4)), (FORWARD, (fwd, d))):
            if a == FORWARD and not passable(fwd):
                continue
            if nxt not in first:
                first[nxt] = a if first[node] is None else first[node]
                frontier.append(nxt)
    return int(rng.integers(7))


def _ref_snapshot(u):
    carrying = u.carrying.encode() if u.carrying is not None else (1, 0, 0)
    return u.grid.encode().astype(np.int32), tuple(int(v) for v in u.agent_pos), int(u.agent_dir), tuple(carrying)


def _run_ref(env, seed, rng, eps, step_offset=0, actions=None, keep_state=False):
    """One minigrid episode (from ``reset(seed)``, or the env's current state with ``keep_state``);
    returns the initial state copy and per-step references."""
    u = env.unwrapped
    obs = {"image": u.get_frame(tile_size=8, agent_pov=True)} if keep_state else env.reset(seed=seed)[0]
    u.step_count += step_offset
    init = state_from_minigrid(env)
    out = {
        "rgb0": rgb_ref(obs["image"]),
        "sym0": u.gen_obs()["image"].astype(np.float32),
        "actions": [],
        "rgb": [],
        "sym": [],
        "reward": [],
        "terminated": [],
        "truncated": [],
        "snap": [],
    }
    for t in range(u.max_steps):
        a = _planner_action(u, rng, eps) if actions is None else actions[t]
        obs, r, term, trunc, _ = env.step(a)
        out["actions"].append(a)
        out["rgb"].append(rgb_ref(obs["image"]))
        out["sym"].append(u.gen_obs()["image"].astype(np.float32))
        out["reward"].append(r)
        out["terminated"].append(term)
        out["truncated"].append(trunc)
        out["snap"].append(_ref_snapshot(u))
        if term or trunc:
            break
    return init, out


def _events(out, before):
    """Which interesting transitions the reference episode went through."""
    ev = collections.Counter()
    prev = before
    for snap, a in zip(out["snap"], out["actions"], strict=True):
        g0, p0, _, c0 = prev
        g, p, _, c = snap
        ev["pickup"] += c0[0] == 1 and c[0] == 5
        ev["drop"] += c0[0] == 5 and c[0] == 1
        ev["unlock"] += bool(((g0[..., 0] == 4) & (g0[..., 2] == 2) & (g[..., 2] == 0)).any())
        ev["close"] += bool(((g0[..., 0] == 4) & (g0[..., 2] == 0) & (g[..., 2] == 1)).any())
        ev["blocked_forward"] += a == FORWARD and p == p0
        ev["useless_pickup"] += a == PICKUP and c == c0
        prev = snap
    ev["goal"] += out["terminated"][-1]
    ev["timeout"] += out["truncated"][-1]
    ev["goal_at_time_limit"] += out["terminated"][-1] and out["truncated"][-1]
    return ev


def _check_lockstep(name, init, out, label):
    n = len(out["actions"])
    sym, rgb = jitted(name, "symbolic"), jitted(name, "rgb")
    roll_s, obs_s, roll_r, obs_r = sym.roll, sym.observe, rgb.roll, rgb.observe
    actions = jnp.asarray(out["actions"] + [DONE] * (sym.env.max_episode_steps - n), jnp.int32)
    np.testing.assert_array_equal(np.asarray(obs_s(init)), out["sym0"], err_msg=f"{label} reset symbolic")
    np.testing.assert_array_equal(np.asarray(obs_r(init)), out["rgb0"], err_msg=f"{label} reset rgb")
    for view, roll in (("symbolic", roll_s), ("rgb", roll_r)):
        states, obs, rew, term, trunc = jax.device_get(roll(init, actions))
        for t in range(n):
            at = f"{label} {view} step {t} (action {out['actions'][t]})"
            g, p, d, c = out["snap"][t]
            np.testing.assert_array_equal(states.grid[t], g, err_msg=at)
            assert (tuple(states.agent_pos[t]), states.agent_dir[t], tuple(states.carrying[t])) == (p, d, c), at
            np.testing.assert_array_equal(obs[t], out["sym" if view == "symbolic" else "rgb"][t], err_msg=at)
            assert rew[t] == np.float32(out["reward"][t]), (at, rew[t], out["reward"][t])
            assert bool(term[t]) == out["terminated"][t] and bool(trunc[t]) == out["truncated"][t], at


@pytest.mark.parametrize("name", NAMES)
def test_lockstep_with_minigrid(name):
    env = ref_env(name)
    rng = np.random.default_rng(123)
    total = collections.Counter()
    epsilons = [1.0, 0.6, 0.3, 0.0]
    for seed in range(24):
        eps = epsilons[seed % len(epsilons)]
        init, out = _run_ref(env, seed, rng, eps)
        init_snap = (np.asarray(init.grid), tuple(int(v) for v in init.agent_pos), int(init.agent_dir), (1, 0, 0))
        total += _events(out, init_snap)
        _check_lockstep(name, init, out, f"{name} seed {seed} eps {eps}")
    # an episode reaching the goal on the very last allowed step: terminated and truncated together
    _, solved = _run_ref(env, 1000, rng, eps=0.0)
    n = len(solved["actions"])
    init, out = _run_ref(env, 1000, rng, eps=0.0, step_offset=env.unwrapped.max_steps - n, actions=solved["actions"])
    assert out["terminated"][-1] and out["truncated"][-1] and len(out["actions"]) == n
    _check_lockstep(name, init, out, f"{name} goal at the time limit")
    total["goal_at_time_limit"] += 1
    # the episodes went through every kind of transition the env has
    needed = ["goal", "timeout", "blocked_forward", "useless_pickup", "goal_at_time_limit"]
    if "DoorKey" in name:
        needed += ["pickup", "drop", "unlock", "close"]
    assert all(total[k] > 0 for k in needed), total


def test_lockstep_wrong_colour_key_does_not_unlock():
    """States edited in minigrid: a blue key never opens the yellow door (only yellow exists after reset)."""
    env = ref_env(NAMES[1])
    rng = np.random.default_rng(5)
    for seed in range(2):
        env.reset(seed=seed)
        u = env.unwrapped
        for i in range(u.width):
            for j in range(u.height):
                if u.grid.get(i, j) is not None and u.grid.get(i, j).type == "key":
                    u.grid.set(i, j, None)
        u.carrying = Key("blue")
        init = state_from_minigrid(env)
        # the planner walks to the locked door and keeps toggling it; drops/pickups w.p. 0.2
        _, out = _run_ref(env, seed, rng, eps=0.2, actions=None, keep_state=True)
        assert out["truncated"][-1] and not any(out["terminated"])
        assert sum(a == TOGGLE for a in out["actions"]) > 20
        assert not any(((snap[0][..., 0] == 4) & (snap[0][..., 2] != 2)).any() for snap in out["snap"])
        _check_lockstep(NAMES[1], init, out, f"blue key, seed {seed}")


# ---------------------------------------------------------------------------------------------- jit / vmap
@pytest.mark.parametrize("name", NAMES)
def test_jit_vmap_batch_equals_single_env(name):
    f = jitted(name, "rgb")
    b = 4
    keys = jax.random.split(jax.random.key(7), b)
    reset_b, step_b, reset_1, step_1 = f.vreset, f.vstep, f.reset, f.step
    states, obs = reset_b(keys)
    assert obs.shape == (b, 56, 56, 3) and obs.dtype == jnp.float32
    assert states.grid.shape == (b, 5, 5, 3)
    singles = [reset_1(k) for k in keys]
    rng = np.random.default_rng(0)
    for t in range(3):
        for i in range(b):
            np.testing.assert_array_equal(obs[i], singles[i][1])
            jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x, i=i: x[i], states), singles[i][0])
        actions = jnp.asarray(rng.integers(7, size=b), jnp.int32)
        step_keys = jax.random.split(jax.random.key(100 + t), b)
        states, st = step_b(step_keys, states, actions)
        obs = st.obs
        assert st.reward.shape == st.terminated.shape == st.truncated.shape == (b,)
        assert st.final_obs.shape == (b, 56, 56, 3)
        singles = [(s, o.obs) for s, o in (step_1(step_keys[i], singles[i][0], actions[i]) for i in range(b))]


@pytest.mark.parametrize("name", NAMES)
def test_auto_reset_at_the_time_limit(name):
    f = jitted(name, "rgb")
    state, _ = f.reset(jax.random.key(3))
    state = state._replace(step_count=jnp.asarray(f.env.max_episode_steps - 1, jnp.int32))
    key = jax.random.key(4)
    new_state, st = f.step(key, state, DONE)
    assert bool(st.truncated) and not bool(st.terminated) and float(st.reward) == 0.0
    assert int(new_state.step_count) == 0
    _, final = f.step_env(jax.random.split(key)[0], state, DONE)
    np.testing.assert_array_equal(st.final_obs, final.obs)
    assert not np.array_equal(st.obs, st.final_obs)
    reset_state, reset_obs = f.reset(jax.random.split(key)[1])
    np.testing.assert_array_equal(st.obs, reset_obs)
    jax.tree.map(np.testing.assert_array_equal, new_state, reset_state)


# ---------------------------------------------------------------------------- δ > 1: the default policy β
@pytest.mark.parametrize("delta, policy, quarter_turns_left", [
    (1, "repeat", 1), (3, "repeat", 3), (4, "repeat", 0), (2, "repeat", 2), (4, "noop", 1), (8, "noop", 1)])
def test_turns_under_the_default_policy(delta, policy, quarter_turns_left):
    """The paper's β repeats the agent's action for δ env steps: four left turns are no turn, which is
    why every Table 10 agent at δ = 4 stays at the walk-straight floor. β = "noop" lets time pass with
    minigrid's "done" action: one turn, δ steps counted."""
    import warnings

    from pipelag.envs.minigrid import LEFT
    from pipelag.envs.wrappers import realtime_env

    base = MiniGrid("MiniGrid-DoorKey-5x5-v0", view="symbolic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = realtime_env(base, delta, policy)
    warned = [w for w in caught if "can never" in str(w.message)]
    assert bool(warned) == (policy == "repeat" and delta % 2 == 0)
    state, _ = env.reset(jax.random.PRNGKey(0))
    inner = state if delta == 1 else state.env_state
    new_state, step = env.step_env(jax.random.PRNGKey(1), state, jnp.asarray(LEFT))
    new_inner = new_state if delta == 1 else new_state.env_state
    assert int(new_inner.agent_dir) == (int(inner.agent_dir) - quarter_turns_left) % 4
    assert int(new_inner.step_count) == int(inner.step_count) + delta
    assert np.array_equal(np.asarray(new_inner.agent_pos), np.asarray(inner.agent_pos))


def test_wrappers_pass_the_no_op_and_the_turn_warning_through():
    """A δ wrapper outside another wrapper still sees MiniGrid's no-op action and its turn warning."""
    import warnings

    from pipelag.envs.minigrid import DONE, LEFT
    from pipelag.envs.wrappers import FrameStack, RealTime

    stacked = FrameStack(MiniGrid("MiniGrid-Empty-Random-5x5-v0", view="symbolic"), 2)
    assert stacked.noop_action == DONE
    with pytest.warns(UserWarning, match="can never change direction"):
        RealTime(stacked, 4, "repeat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = RealTime(stacked, 4, "noop")
    state, _ = env.reset(jax.random.PRNGKey(0))
    new_state, _ = env.step_env(jax.random.PRNGKey(1), state, jnp.asarray(LEFT))
    inner, new_inner = state.env_state.env_state, new_state.env_state.env_state
    assert int(new_inner.agent_dir) == (int(inner.agent_dir) - 1) % 4
