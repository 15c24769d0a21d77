"""pipelag.envs.mjx (MuJoCo tasks on MJX) against gymnasium's v4 envs on CPU MuJoCo.

Every comparison runs gymnasium itself (through :mod:`pipelag.envs.mujoco`), never stored numbers:

* per step: gymnasium's state (qpos, qvel and the rest of ``MjData``) is copied into the MJX state
  and both take the same action: next qpos/qvel, observation, reward, terminated agree to float32
  tolerance; episode starts go through the MJX reset path (``state_from_qpos_qvel``);
* trajectories: 100 steps from the same initial state and actions, no re-syncing (the gentle policy
  keeps the tasks in a non-chaotic regime; see the tolerances below);
* statistics: return and length of a uniform random policy with random resets, MJX (vmapped, with
  auto-reset and the 1000-step limit) vs gymnasium, means within 4 standard errors, KS test;
* reset noise: per-coordinate mean/std and distribution of qpos − qpos0, qvel;
* ``speedup`` = 2 against gymnasium with ``speedup`` = 2; errors; SAC's JAX path;
* solver caps (``solver_iterations``, ``ls_iterations``): they reach the MJX model and nothing else, the
  default keeps gymnasium's options, bad values raise, capped HalfCheetah per step against gymnasium;
* the physics alone in float64 (subprocess with ``JAX_ENABLE_X64``): every difference left in float32
  is rounding.

Tolerances (float32 state, float64 gymnasium). x64 runs of the same physics agree to ~1e-10, so what
remains is float32 rounding, largest in velocities after stiff contacts: measured over 60 random steps
per task, qpos ≤ 7e-6, qvel ≤ 6e-4 (HalfCheetah), reward ≤ 7e-6. Rewards are Δx/dt, so a position
rounding error is multiplied by 1/dt (≤ 125). Hence: qpos 1e-4, qvel 5e-3, reward 1e-3 (absolute).
Compile-heavy tests (every task but HalfCheetah, statistics, speedup, float64) are ``slow``.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("mujoco.mjx")
pytest.importorskip("gymnasium")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from pipelag.envs import make  # noqa: E402
from pipelag.envs import mjx as mjx_env  # noqa: E402
from pipelag.envs.mujoco import mujoco_env_fn  # noqa: E402
from pipelag.errors import PipelagError  # noqa: E402

TASKS = ("HalfCheetah", "Hopper", "Walker2d", "Ant")
QPOS_ATOL, QVEL_ATOL, REWARD_ATOL = 1e-4, 5e-3, 1e-3
KEY = jax.random.key(0)


def _task_param(task: str, fast: tuple[str, ...] = ("HalfCheetah",)):
    return pytest.param(task, marks=() if task in fast else pytest.mark.slow)


def _mjx(task: str, speedup: float = 1, **solver_caps):
    """The MJX env and its jitted ``step_env`` (compiled once per task and options for the whole module)."""
    return _mjx_cached(task, float(speedup), tuple(sorted(solver_caps.items())))


@functools.cache
def _mjx_cached(task: str, speedup: float, solver_caps: tuple = ()):
    env = make(f"MJX/{task}-v4", **({"speedup": speedup} if speedup != 1 else {}), **dict(solver_caps))
    return env, jax.jit(env.step_env)


def _on_device(state):
    """Commit every leaf to the device: jit compiles again for the same shapes when only some leaves are
    committed (put_data's are, host-made ones are not)."""
    return jax.device_put(state, jax.devices()[0])


def _gym(task: str, speedup: float = 1):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mujoco_env_fn(f"{task}-v4", speedup=speedup)()


def _split_obs(env, obs):
    nq = env.mj_model.nq - env.spec.qpos_skip
    return obs[..., :nq], obs[..., nq:]


def _assert_close(name, got, want, atol, where):
    err = float(np.max(np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))))
    assert err <= atol, f"{where}: {name} differs by {err:.3g} (atol {atol})"
    return err


def check_per_step(task: str, speedup: float = 1, steps: int = 60, seed: int = 0, **solver_caps) -> dict[str, float]:
    """Copy gymnasium's state into MJX, take the same action in both, compare; ``steps`` times."""
    env, step_fn = _mjx(task, speedup, **solver_caps)
    cpu = _gym(task, speedup).unwrapped
    cpu.reset(seed=seed)
    rng = np.random.default_rng(seed)
    worst = dict.fromkeys(("qpos", "qvel", "obs_qpos", "obs_qvel", "reward"), 0.0)
    fresh, t, terminations = True, 0, 0
    for i in range(steps):
        # beyond the ctrlrange on purpose: both write it to ctrl unclipped, MuJoCo/MJX clamp the force
        action = rng.uniform(1.2 * env.action_low, 1.2 * env.action_high).astype(np.float32)
        if fresh:  # episode start: MJX's own reset path (set_state semantics)
            state = env.state_from_qpos_qvel(cpu.data.qpos, cpu.data.qvel)
        else:
            state = env.state_from_mujoco(cpu.data, t)
        state, step = step_fn(KEY, _on_device(state), action)
        obs, reward, terminated, truncated, _ = cpu.step(action)
        where = f"{task} step {i}"
        worst["qpos"] = max(worst["qpos"], _assert_close("qpos", state.data.qpos, cpu.data.qpos, QPOS_ATOL, where))
        worst["qvel"] = max(worst["qvel"], _assert_close("qvel", state.data.qvel, cpu.data.qvel, QVEL_ATOL, where))
        (mq, mv), (cq, cv) = _split_obs(env, np.asarray(step.obs)), _split_obs(env, obs)
        worst["obs_qpos"] = max(worst["obs_qpos"], _assert_close("obs (positions)", mq, cq, QPOS_ATOL, where))
        worst["obs_qvel"] = max(worst["obs_qvel"], _assert_close("obs (velocities)", mv, cv, QVEL_ATOL, where))
        worst["reward"] = max(worst["reward"], _assert_close("reward", step.reward, reward, REWARD_ATOL, where))
        assert bool(step.terminated) == terminated, f"{where}: terminated {bool(step.terminated)} vs {terminated}"
        assert not bool(step.truncated) and step.obs.dtype == jnp.float32 and step.obs.shape == env.obs_shape
        if terminated:
            terminations += 1
            cpu.reset(seed=seed + 1 + i)
            fresh, t = True, 0
        else:
            fresh, t = False, t + 1
    if env.spec.healthy_reward:  # the health rule was exercised (random actions topple these robots)
        assert terminations >= 1, f"{task}: no termination in {steps} steps; the test would not check the rule"
    print(f"{task} speedup {speedup} {solver_caps}: worst per-step differences {worst}")
    return worst


# ------------------------------------------------------------------------------------------ per step
@pytest.mark.parametrize("task", [_task_param(t) for t in TASKS])
def test_step_matches_gymnasium(task):
    check_per_step(task, steps=60 if task == "HalfCheetah" else 100)


def test_truncation_after_max_episode_steps():
    env, step_fn = _mjx("HalfCheetah")
    cpu = _gym("HalfCheetah").unwrapped
    cpu.reset(seed=3)
    action = np.zeros(env.action_shape, np.float32)
    _, step = step_fn(KEY, _on_device(env.state_from_mujoco(cpu.data, t=998)), action)
    assert not bool(step.truncated)
    state, step = step_fn(KEY, _on_device(env.state_from_mujoco(cpu.data, t=999)), action)
    assert bool(step.truncated) and not bool(step.terminated) and int(state.t) == 1000


# -------------------------------------------------------------------------------------- trajectories
TRAJECTORY_TOL = {  # (positions, velocities) of the observation, over 100 steps and 4 seeds
    "HalfCheetah": (1e-4, 1e-4),  # measured ≤ 2e-6 / 6e-5
    "Hopper": (1e-4, 1e-4),  # measured ≤ 1e-6 / 1e-5
    # stick/slip switches of the feet amplify float32 rounding (gymnasium itself, with its state rounded to
    # float32 every step, drifts by up to 2e-1): measured ≤ 2e-4 / 2.4e-2
    "Walker2d": (1e-3, 5e-2),
}


@pytest.mark.parametrize("task", [_task_param(t) for t in TRAJECTORY_TOL])
def test_trajectory_matches_gymnasium(task):
    """100 steps without re-syncing, gentle random actions (0.2 × the ctrlrange: random full-range
    actions make HalfCheetah chaotic, CPU against CPU from a 1e-7 nudge diverges by ~10)."""
    env, step_fn = _mjx(task)
    pos_tol, vel_tol = TRAJECTORY_TOL[task]
    worst = [0.0, 0.0, 0.0]
    for seed in range(4):
        cpu = _gym(task).unwrapped
        cpu.reset(seed=seed)
        state = _on_device(env.state_from_qpos_qvel(cpu.data.qpos, cpu.data.qvel))
        rng = np.random.default_rng(seed)
        for i in range(100):  # past terminations too: step_env does not reset, the raw gymnasium env goes on
            action = (0.2 * rng.uniform(env.action_low, env.action_high)).astype(np.float32)
            state, step = step_fn(KEY, state, action)
            obs, reward, terminated, _, _ = cpu.step(action)
            where = f"{task} seed {seed} step {i}"
            (mq, mv), (cq, cv) = _split_obs(env, np.asarray(step.obs)), _split_obs(env, obs)
            worst[0] = max(worst[0], _assert_close("obs (positions)", mq, cq, pos_tol, where))
            worst[1] = max(worst[1], _assert_close("obs (velocities)", mv, cv, vel_tol, where))
            worst[2] = max(worst[2], _assert_close("reward", step.reward, reward, REWARD_ATOL * 10, where))
            assert bool(step.terminated) == terminated, where
    print(f"{task}: worst trajectory differences (positions, velocities, reward) {worst}")


# -------------------------------------------------------------------------------------- statistics
STAT_RUNS = {  # task: (MJX envs, MJX steps, episodes kept per MJX env, gymnasium episodes)
    "HalfCheetah": (32, 1000, 1, 32),
    "Hopper": (16, 500, 8, 160),
    "Walker2d": (16, 500, 8, 160),
    "Ant": (32, 1000, 1, 64),
}


def _mjx_episodes(env, num_envs: int, num_steps: int, per_env: int, seed: int):
    """Returns and lengths of the first ``per_env`` episodes of each of ``num_envs`` vmapped envs under
    a uniform random policy (``env.step``: auto-reset and time limit as in training)."""
    low, high = jnp.asarray(env.action_low), jnp.asarray(env.action_high)

    @jax.jit
    def run(key):
        k_reset, k_run = jax.random.split(key)
        state, _ = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))
        zeros = jnp.zeros(num_envs)

        def body(carry, key):
            state, ret, length = carry
            k_act, k_env = jax.random.split(key)
            action = jax.random.uniform(k_act, (num_envs, *env.action_shape), minval=low, maxval=high)
            state, step = jax.vmap(env.step)(jax.random.split(k_env, num_envs), state, action)
            ret, length = ret + step.reward, length + 1
            done = step.done
            return (state, jnp.where(done, 0.0, ret), jnp.where(done, 0, length)), (done, ret, length)

        _, out = jax.lax.scan(body, (state, zeros, zeros.astype(jnp.int32)), jax.random.split(k_run, num_steps))
        return out

    done, ret, length = (np.asarray(x) for x in run(jax.random.key(seed)))
    returns, lengths = [], []
    for e in range(num_envs):
        ends = np.flatnonzero(done[:, e])
        assert len(ends) >= per_env, f"env {e} finished {len(ends)} < {per_env} episodes; lengthen the run"
        returns += list(ret[ends[:per_env], e])
        lengths += list(length[ends[:per_env], e])
    return np.asarray(returns, np.float64), np.asarray(lengths, np.float64)


def _gym_episodes(task: str, episodes: int, seed: int):
    env = _gym(task)  # with gymnasium's TimeLimit(1000)
    rng = np.random.default_rng(seed)
    low, high = env.action_space.low, env.action_space.high
    returns, lengths = [], []
    for ep in range(episodes):
        env.reset(seed=seed * 10_000 + ep)
        total, n = 0.0, 0
        while True:
            _, reward, terminated, truncated, _ = env.step(rng.uniform(low, high).astype(np.float32))
            total, n = total + reward, n + 1
            if terminated or truncated:
                break
        returns.append(total)
        lengths.append(n)
    return np.asarray(returns), np.asarray(lengths, np.float64)


def _same_distribution(name: str, a: np.ndarray, b: np.ndarray):
    from scipy.stats import ks_2samp

    if a.std() == 0 and b.std() == 0:
        assert a[0] == b[0], f"{name}: constant {a[0]} vs {b[0]}"
        return
    se = np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert abs(a.mean() - b.mean()) <= 4 * se, f"{name}: mean {a.mean():.3f} (MJX) vs {b.mean():.3f}, 4 SE {4 * se:.3f}"
    p = ks_2samp(a, b).pvalue
    assert p > 1e-3, f"{name}: KS p = {p:.2g}"


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_return_and_length_distributions_match(task):
    num_envs, num_steps, per_env, gym_episodes = STAT_RUNS[task]
    env, _ = _mjx(task)
    m_ret, m_len = _mjx_episodes(env, num_envs, num_steps, per_env, seed=1)
    g_ret, g_len = _gym_episodes(task, gym_episodes, seed=1)
    print(f"{task}: return MJX {m_ret.mean():.1f}±{m_ret.std() / np.sqrt(len(m_ret)):.1f} (n={len(m_ret)}) "
          f"gym {g_ret.mean():.1f}±{g_ret.std() / np.sqrt(len(g_ret)):.1f} (n={len(g_ret)}); "
          f"length MJX {m_len.mean():.1f} gym {g_len.mean():.1f}")
    _same_distribution(f"{task} return", m_ret, g_ret)
    _same_distribution(f"{task} length", m_len, g_len)
    if task == "HalfCheetah":  # never terminates: every episode is truncated at exactly 1000 steps
        assert set(m_len) == {1000.0}


# -------------------------------------------------------------------------------------- reset noise
@pytest.mark.parametrize("task", TASKS)
def test_reset_noise_matches_gymnasium(task):
    from scipy.stats import ks_2samp

    n = 2000
    env, _ = _mjx(task)
    states, obs = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(1), n))
    m_pos = np.asarray(states.data.qpos, np.float64) - env.mj_model.qpos0
    m_vel = np.asarray(states.data.qvel, np.float64)
    cpu = _gym(task).unwrapped
    g_pos, g_vel = [], []
    for i in range(n):
        cpu.reset(seed=i)
        g_pos.append(cpu.data.qpos - cpu.init_qpos)
        g_vel.append(cpu.data.qvel - cpu.init_qvel)
    g_pos, g_vel = np.asarray(g_pos), np.asarray(g_vel)
    np.testing.assert_allclose(env.mj_model.qpos0, cpu.init_qpos)
    assert not np.any(cpu.init_qvel)
    for name, m, g in (("qpos", m_pos, g_pos), ("qvel", m_vel, g_vel)):
        se = np.sqrt((m.var(0) + g.var(0)) / n)
        assert np.all(np.abs(m.mean(0) - g.mean(0)) <= 5 * se + 1e-9), f"{task} {name} means {m.mean(0)} vs {g.mean(0)}"
        np.testing.assert_allclose(m.std(0), g.std(0), rtol=0.08, err_msg=f"{task} {name} std per coordinate")
        bound = np.abs(g).max()  # uniform noise is bounded by the scale, normal noise is not
        p = ks_2samp(m.ravel(), g.ravel()).pvalue
        assert p > 1e-3, f"{task} {name}: KS p = {p:.2g} (max |noise| MJX {np.abs(m).max():.3g}, gym {bound:.3g})"
    # the first observation is gymnasium's _get_obs of the reset state
    for i in range(3):
        cpu.set_state(np.asarray(states.data.qpos[i], np.float64), np.asarray(states.data.qvel[i], np.float64))
        np.testing.assert_allclose(np.asarray(obs[i]), cpu._get_obs(), atol=1e-6)
    assert obs.dtype == jnp.float32 and obs.shape == (n, *env.obs_shape)


# -------------------------------------------------------------------------------------------- speedup
def test_speedup_divides_the_timestep_like_the_cpu_env():
    base, fast = make("MJX/HalfCheetah-v4"), make("MJX/HalfCheetah-v4", speedup=2)
    cpu_base, cpu_fast = _gym("HalfCheetah").unwrapped, _gym("HalfCheetah", speedup=2).unwrapped
    assert fast.mj_model.opt.timestep == base.mj_model.opt.timestep / 2 == cpu_fast.model.opt.timestep == 0.005
    assert float(fast.model.opt.timestep) == pytest.approx(0.005)  # the MJX model got it too
    assert fast.dt == pytest.approx(cpu_fast.dt) == pytest.approx(cpu_base.dt / 2) == pytest.approx(0.025)
    assert fast.frame_skip == base.frame_skip == cpu_fast.frame_skip == 5
    assert fast.max_episode_steps == 1000


@pytest.mark.slow
def test_speedup_steps_match_gymnasium_speedup():
    check_per_step("HalfCheetah", speedup=2, steps=40)


# ------------------------------------------------------------------------------------- solver caps
def test_solver_caps_set_the_solver_options_and_nothing_else():
    default, capped = make("MJX/HalfCheetah-v4"), make("MJX/HalfCheetah-v4", solver_iterations=4, ls_iterations=8)
    cpu = _gym("HalfCheetah").unwrapped
    # default: gymnasium's model as loaded (MuJoCo's defaults: Newton, 100 iterations, 50 line-search steps)
    for opt in (default.mj_model.opt, default.model.opt):
        assert (opt.iterations, opt.ls_iterations) == (cpu.model.opt.iterations, cpu.model.opt.ls_iterations)
        assert (opt.iterations, opt.ls_iterations) == (100, 50)
    assert default.solver_iterations is None and default.ls_iterations is None
    for opt in (capped.mj_model.opt, capped.model.opt):  # the MJX model (what the jitted step reads) too
        assert (opt.iterations, opt.ls_iterations) == (4, 8)
    assert (capped.solver_iterations, capped.ls_iterations) == (4, 8)
    for name in ("timestep", "tolerance", "ls_tolerance", "solver", "cone", "integrator"):
        assert getattr(capped.mj_model.opt, name) == getattr(default.mj_model.opt, name) == getattr(cpu.model.opt, name)
    one = make("MJX/Ant-v4", ls_iterations=np.int64(4), speedup=2)  # one cap alone; numpy integers accepted
    assert (one.mj_model.opt.iterations, one.mj_model.opt.ls_iterations) == (100, 4) and one.dt == pytest.approx(0.025)
    assert cpu.model.opt.iterations == 100  # gymnasium's own model untouched


def test_capped_solver_steps_match_gymnasium():
    """solver_iterations=4, ls_iterations=8 against (uncapped) CPU MuJoCo, per step, random actions beyond the
    ctrlrange. Measured over 200 steps of in-range random actions: the same differences as uncapped (qpos
    4.3e-6, qvel 4.0e-4, reward 3.8e-6); in this test's 60 steps too (qpos 2.2e-6, qvel 3.0e-4, reward
    5.1e-6). MJX's Newton solver stops after ≤ 5 iterations here anyway, and the line searches cut from
    24–25 to 8 steps did not change the result (docs/environments.md, "MJX solver caps"). Hence the
    uncapped test's tolerances. (Not so for Walker2d and Ant: solver_iterations=4 moves their per-step
    qvel by 1.9e-2 and 0.14.)"""
    env, _ = _mjx("HalfCheetah", solver_iterations=4, ls_iterations=8)
    assert int(env.model.opt.iterations) == 4 and int(env.model.opt.ls_iterations) == 8
    check_per_step("HalfCheetah", steps=60, solver_iterations=4, ls_iterations=8)


def _loops_in_step(env) -> int:
    """``while`` loops in one env step's lowered program (the physics substeps, solver, line search)."""
    state, _ = env.reset(jax.random.PRNGKey(0))
    text = jax.jit(env.step_env).lower(jax.random.PRNGKey(1), state, jnp.zeros(env.action_shape)).as_text()
    return text.count("stablehlo.while")


@pytest.mark.slow  # 13–19 s of compilation for an opt-in speed option: `make test-slow`
def test_unrolled_line_search_same_numbers_without_its_loop():
    """unroll_line_search traces the (capped) line search's scan unrolled: one loop fewer per solve in the
    step's program (what costs host round trips on a GPU), the same states step after step."""
    caps = {"solver_iterations": 4, "ls_iterations": 8}
    looped, step_looped = _mjx("HalfCheetah", **caps)
    unrolled, step_unrolled = _mjx("HalfCheetah", **caps, unroll_line_search=True)
    assert _loops_in_step(unrolled) == _loops_in_step(looped) - 1  # HalfCheetah: substeps, solver, line search
    from mujoco.mjx._src import solver

    assert solver._while_loop_scan.__name__ == "_while_loop_scan"  # MJX's own function is back
    key = jax.random.PRNGKey(3)
    a, _ = looped.reset(key)
    b, _ = unrolled.reset(key)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = jnp.asarray(rng.uniform(looped.action_low, looped.action_high), jnp.float32)
        a, sa = step_looped(key, _on_device(a), action)
        b, sb = step_unrolled(key, _on_device(b), action)
        np.testing.assert_allclose(np.asarray(b.data.qpos), np.asarray(a.data.qpos), rtol=0, atol=1e-6)
        np.testing.assert_allclose(np.asarray(b.data.qvel), np.asarray(a.data.qvel), rtol=0, atol=1e-5)
        np.testing.assert_allclose(float(sb.reward), float(sa.reward), rtol=0, atol=1e-5)


def test_unrolled_solver_leaves_only_the_substep_loop_and_matches_gymnasium():
    """unroll_solver traces the capped Newton loop (and its line searches) as unrolled iterations that idle
    once converged: HalfCheetah's step keeps one loop (its 5 physics substeps) and still matches CPU MuJoCo
    per step within the uncapped test's tolerances (same algorithm; per-step differences to the looped
    version measured at float32 rounding, ≤ 1.2e-5 in qvel)."""
    env, _ = _mjx("HalfCheetah", solver_iterations=4, ls_iterations=8, unroll_solver=True)
    assert env.unroll_line_search and _loops_in_step(env) == 1
    from mujoco.mjx._src import solver

    assert solver.jax is jax  # MJX's own module is back
    check_per_step("HalfCheetah", steps=60, solver_iterations=4, ls_iterations=8, unroll_solver=True)


# -------------------------------------------------------------------------------- float64 physics
_X64_SCRIPT = r"""
import sys, warnings
import jax, numpy as np, mujoco
from pipelag.envs import make
from pipelag.envs.mujoco import mujoco_env_fn
assert jax.config.jax_enable_x64
warnings.simplefilter("ignore")
worst = {}
for task in sys.argv[1:]:
    env = make(f"MJX/{task}-v4")
    cpu = mujoco_env_fn(f"{task}-v4")().unwrapped
    cpu.reset(seed=0)
    substep = jax.jit(env.physics_step)
    rng = np.random.default_rng(0)
    err = 0.0
    for i in range(40):
        cpu.data.ctrl[:] = rng.uniform(env.action_low, env.action_high)
        d = substep(env.mjx.put_data(cpu.model, cpu.data))
        mujoco.mj_step(cpu.model, cpu.data)  # one physics step (gymnasium does frame_skip of them)
        assert d.qpos.dtype == np.float64
        err = max(err, np.abs(np.asarray(d.qpos) - cpu.data.qpos).max(),
                  np.abs(np.asarray(d.qvel) - cpu.data.qvel).max())
        if i % 10 == 9:
            cpu.reset(seed=i)
    worst[task] = err
print(worst)
assert all(e < 1e-8 for e in worst.values()), worst
"""


@pytest.mark.slow
def test_physics_matches_mujoco_in_float64():
    """``physics_step`` (MJX with MuJoCo's capsule contact frames and RK4) is ``mj_step`` up to float64
    rounding (measured ≤ 1e-12 over 40 steps per task), so the float32 differences above are rounding
    only. Without the two corrections Ant differs by up to ~1 in qvel per env step (contact frames) and
    3e-6 per physics step in the orientation (RK4)."""
    env = {**os.environ, "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", _X64_SCRIPT, *TASKS], env=env, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    print(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------- interface, errors
def test_ids_attributes_and_spaces():
    from pipelag.envs import list_envs

    assert set(mjx_env.MJX_IDS) == {f"MJX/{t}-v4" for t in TASKS} and set(mjx_env.MJX_IDS) <= set(list_envs())
    for task in TASKS:
        env, cpu = make(f"MJX/{task}-v4"), _gym(task)
        assert env.env_id == f"MJX/{task}-v4" and env.num_actions is None and not env.is_discrete
        assert env.obs_shape == cpu.observation_space.shape and env.action_shape == cpu.action_space.shape
        np.testing.assert_array_equal(env.action_low, cpu.action_space.low)
        np.testing.assert_array_equal(env.action_high, cpu.action_space.high)
        assert env.frame_skip == cpu.unwrapped.frame_skip and env.dt == pytest.approx(cpu.unwrapped.dt)
        assert env.max_episode_steps == cpu.spec.max_episode_steps == 1000
    assert make("MJX/Ant-v4").obs_shape == (27,)  # v4 default: no contact forces
    assert make("MJX/Hopper-v4", max_episode_steps=50).max_episode_steps == 50


@pytest.mark.parametrize("env_id, options, match", [
    ("MJX/Humanoid-v4", {}, r"unknown JAX environment id 'MJX/Humanoid-v4'.*MJX/Hopper-v4"),
    ("MJX/HalfCheetah-v5", {}, r"Did you mean 'MJX/HalfCheetah-v4'"),
    ("MJX/HalfCheetah-v4", {"frame_skip": 2}, r"unknown option 'frame_skip'.*speedup, max_episode_steps"),
    ("MJX/HalfCheetah-v4", {"speedup": 0.5}, r"speedup must be a number ≥ 1"),
    ("MJX/Hopper-v4", {"max_episode_steps": 0}, r"max_episode_steps must be a positive integer"),
    ("MJX/HalfCheetah-v4", {"solver_iterations": 0}, r"solver_iterations must be None \(the model's "
                                                     r"opt.iterations.*or a positive integer, got 0"),
    ("MJX/HalfCheetah-v4", {"solver_iterations": True}, r"solver_iterations must be .* positive integer, got True"),
    ("MJX/Ant-v4", {"ls_iterations": 2.5}, r"ls_iterations must be None \(the model's opt.ls_iterations.*got 2.5"),
    ("MJX/Hopper-v4", {"ls_iterations": "8"}, r"ls_iterations must be .* positive integer, got '8'"),
    ("MJX/HalfCheetah-v4", {"iterations": 4}, r"unknown option 'iterations'.*solver_iterations, ls_iterations"),
    ("MJX/HalfCheetah-v4", {"unroll_line_search": True}, r"unroll_line_search needs ls_iterations ≤ 16"),
    ("MJX/Hopper-v4", {"unroll_line_search": True, "ls_iterations": 50}, r"needs ls_iterations ≤ 16"),
    ("MJX/Hopper-v4", {"unroll_line_search": 1, "ls_iterations": 8}, r"must be true or false, got 1"),
    ("MJX/Hopper-v4", {"unroll_substeps": "yes"}, r"unroll_substeps must be true or false"),
    ("MJX/Hopper-v4", {"unroll_solver": True, "ls_iterations": 8}, r"unroll_solver needs solver_iterations ≤ 8"),
    ("MJX/Hopper-v4", {"unroll_solver": True, "solver_iterations": 4}, r"unroll_solver needs ls_iterations ≤ 16"),
    ("MJX/Ant-v4", {"unroll_solver": True, "solver_iterations": 20, "ls_iterations": 8}, r"solver_iterations ≤ 8"),
])
def test_errors(env_id, options, match):
    with pytest.raises(PipelagError, match=match):
        make(env_id, **options)


def test_direct_construction_is_v4_only():
    with pytest.raises(PipelagError, match=r"v4 semantics only"):
        mjx_env.MjxMujoco("HalfCheetah-v5")
    with pytest.raises(PipelagError, match="unknown MJX environment id"):
        mjx_env.make_mjx_env("HalfCheetah-v4")
    assert mjx_env.make_mjx_env("MJX/Hopper-v4").task == "Hopper"


def test_missing_mjx_names_the_extra(monkeypatch):
    from pipelag.algorithms.sac.config import SACConfig
    from pipelag.algorithms.sac.train import make_jax_env

    monkeypatch.setitem(sys.modules, "mujoco.mjx", None)  # import mujoco.mjx now raises ImportError
    with pytest.raises(PipelagError, match=r"pip install 'pipelag\[mjx\]'") as err:
        make("MJX/HalfCheetah-v4")
    assert "\n" not in str(err.value) and err.value.__cause__ is None
    with pytest.raises(PipelagError, match=r"pip install 'pipelag\[mjx\]'"):
        make_jax_env(SACConfig(env_id="MJX/Walker2d-v4"))


def test_sac_uses_the_mjx_env():
    from pipelag.algorithms.sac.config import SACConfig
    from pipelag.algorithms.sac.train import make_jax_env, resolve_backend

    config = SACConfig(env_id="MJX/HalfCheetah-v4", env_options={"speedup": 2})
    assert resolve_backend(config) == "jax"
    env, spec = make_jax_env(config)
    assert spec.obs_shape == (17,) and spec.act_dim == 6 and spec.eval_max_steps == 1000
    np.testing.assert_array_equal(spec.low, -np.ones(6)) and np.testing.assert_array_equal(spec.high, np.ones(6))
    base = env
    while hasattr(base, "env"):
        base = base.env
    assert isinstance(base, mjx_env.MjxMujoco) and base.dt == pytest.approx(0.025)


def test_capsule_frame_patch_is_scoped():
    from mujoco.mjx._src import collision_driver as cd
    from mujoco.mjx._src.types import GeomType

    key = (GeomType.PLANE, GeomType.CAPSULE)
    original = cd._COLLISION_FUNC[key]
    with mjx_env.mujoco_c_capsule_frames():
        assert cd._COLLISION_FUNC[key] is not original
    assert cd._COLLISION_FUNC[key] is original


def test_sac_with_an_unknown_mjx_id_lists_the_mjx_ids():
    from pipelag.algorithms.sac.config import SACConfig
    from pipelag.algorithms.sac.train import make_jax_env, resolve_backend

    config = SACConfig(env_id="MJX/Humanoid-v4")
    assert resolve_backend(config) == "jax"  # not sent to gymnasium
    with pytest.raises(PipelagError, match=r"unknown JAX environment id 'MJX/Humanoid-v4'.*MJX/Hopper-v4"):
        make_jax_env(config)


@pytest.mark.slow  # 13–19 s of compilation for an opt-in speed option: `make test-slow`
def test_unrolled_substeps_remove_the_substep_loop_and_still_match_gymnasium():
    """unroll_substeps traces the frame_skip physics steps one after the other: one loop fewer in the step
    (with unroll_solver, none is left for HalfCheetah), and every step still matches CPU MuJoCo within the
    uncapped per-step tolerances (the same algorithm; XLA fuses the unrolled program differently, so it
    differs from the looped one by float32 rounding, measured ≤ 4e-5 in qvel of magnitude ~10)."""
    caps = {"solver_iterations": 4, "ls_iterations": 8, "unroll_line_search": True}
    looped, _ = _mjx("HalfCheetah", **caps)
    unrolled, _ = _mjx("HalfCheetah", **caps, unroll_substeps=True)
    assert unrolled.unroll_substeps and not looped.unroll_substeps
    assert _loops_in_step(unrolled) == _loops_in_step(looped) - 1
    assert _loops_in_step(make("MJX/HalfCheetah-v4", solver_iterations=4, ls_iterations=8, unroll_solver=True,
                               unroll_substeps=True)) == 0
    check_per_step("HalfCheetah", steps=60, **caps, unroll_substeps=True)
