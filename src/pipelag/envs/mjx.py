"""The paper's MuJoCo tasks as pure JAX envs on ``mujoco-mjx`` (for jit/vmap training on a GPU).

    env = pipelag.envs.make("MJX/HalfCheetah-v4")            # or Hopper, Walker2d, Ant; -v4 only
    state, obs = env.reset(key); state, step = env.step(key, state, action)

Same model files (gymnasium's own XMLs, loaded by ``mujoco.MjModel.from_xml_path``) and the same
gymnasium v4 semantics as the CPU env of :mod:`pipelag.envs.mujoco` (``half_cheetah_v4.py`` etc. with
their default arguments):

=============  ==========  ====  ===================================  ==================================
task           frame_skip  obs   reward                               terminated (health rule)
=============  ==========  ====  ===================================  ==================================
HalfCheetah    5           17    Δx/dt − 0.1·|a|²                     never
Hopper         4           11    Δx/dt + 1 − 1e-3·|a|²                not (z > 0.7, |angle| < 0.2,
                                                                      |qpos[2:], qvel| < 100)
Walker2d       4           17    Δx/dt + 1 − 1e-3·|a|²                not (0.8 < z < 2, |angle| < 1)
Ant            5           27    Δx_torso/dt + 1 − 0.5·|a|²           not (finite, 0.2 ≤ z ≤ 1)
=============  ==========  ====  ===================================  ==================================

Observations are qpos without the x position (Ant: without x, y) followed by qvel (Hopper/Walker2d:
qvel clipped to ±10; Ant: no contact forces, as v4's default ``use_contact_forces=False``). x is
``qpos[0]`` before and after the step; Ant's is the torso's centre of mass (``xipos``) as gymnasium's
``get_body_com`` reads it, i.e. from the kinematics of the *last physics substep's start* (MuJoCo
integrates after computing it); the state carries the whole ``mjx.Data``, so this is reproduced
exactly. Reset noise: HalfCheetah qpos + U(±0.1), qvel + 0.1·N(0, 1); Hopper/Walker2d qpos, qvel +
U(±0.005); Ant qpos + U(±0.1), qvel + 0.1·N(0, 1) (around ``model.qpos0`` and zero velocity). The
action is written to ``ctrl`` unclipped (as gymnasium's ``do_simulation``); MuJoCo and MJX both clamp it
to the actuators' ``ctrlrange`` when computing forces, while the control cost uses the raw action.
The time limit (``max_episode_steps``, 1000) is a truncation; ``terminated`` comes from the health rule.

``speedup`` = s divides the physics timestep by s (the paper's sped-up env, same semantics as
:mod:`pipelag.envs.mujoco`, whose helpers validate the options). Everything is float32; nothing global
(no ``jax_enable_x64``) is switched on. Needs ``pip install 'pipelag[mjx]'`` (``mujoco-mjx``) and
gymnasium (for the XML files, ``pip install 'pipelag[mujoco]'``).

The physics is MuJoCo's, not MJX 3.17's where the two differ on these models: plane–capsule contacts
get MuJoCo's contact frame (MJX falls back to a fixed tangent for steep capsules, which turns the
pyramidal friction cone: Ant's feet), and RK4 models with a free joint (Ant) get MuJoCo 4.0's RK4 with
the Runge–Kutta–Munthe-Kaas correction of orientations. With both, one physics step equals ``mj_step``
to 1e-12 in float64 (``physics_step``; MJX internals are patched only while our step is traced).

``solver_iterations`` / ``ls_iterations`` (opt-in; default None keeps the model's ``opt.iterations`` = 100
and ``opt.ls_iterations`` = 50, i.e. the physics above) cap MJX's constraint solver, as MuJoCo
Playground's and Brax's MJX envs do, for per-step latency on a GPU. MJX 3.17's Newton solver is a
``while_loop`` that exits early on ``opt.tolerance``; each iteration runs a line search that is a
fixed-length ``scan`` of ``ls_iterations`` steps, each a ``lax.cond`` (a no-op once converged), so the
line search always costs ``ls_iterations`` loop trips. Set before ``put_model`` (both ``mj_model.opt``
and the MJX model get them). With a cap the step is no longer guaranteed to be ``mj_step``'s; measured
deviations from CPU MuJoCo: docs/environments.md, "MJX solver caps". ``unroll_line_search``,
``unroll_solver`` and ``unroll_substeps`` trace those loops (and the ``frame_skip`` physics steps) as
straight-line code: the same numbers, fewer loop trips (each costs a host round trip on a GPU).

Equality with the CPU env (``tests/envs/test_mjx.py``, docs/environments.md "MJX (GPU)"): from the
same state and action every step matches to float32 tolerance; whole trajectories match where the task
is not chaotic; return/length distributions match for all four.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pipelag.envs.base import JaxEnv, Step
from pipelag.envs.mujoco import DEFAULT_MAX_EPISODE_STEPS, MUJOCO_TASKS, _check
from pipelag.errors import PipelagError

MJX_PREFIX = "MJX/"
MJX_VERSION = "v4"
MJX_IDS = tuple(f"{MJX_PREFIX}{task}-{MJX_VERSION}" for task in MUJOCO_TASKS)
INSTALL_HINT = "pip install 'pipelag[mjx]'"


class _Task(NamedTuple):
    xml: str
    frame_skip: int
    ctrl_cost_weight: float
    healthy_reward: float  # 0: no health rule (never terminates)
    qpos_skip: int  # leading qpos entries left out of the observation (x; Ant: x, y)
    clip_qvel: float | None  # observation clips qvel to ±this
    noise_scale: float
    normal_qvel_noise: bool  # qvel noise scale·N(0, 1) (else U(±scale))


# gymnasium v4 defaults (half_cheetah_v4.py, hopper_v4.py, walker2d_v4.py, ant_v4.py)
TASKS: dict[str, _Task] = {
    "HalfCheetah": _Task("half_cheetah.xml", 5, 0.1, 0.0, 1, None, 0.1, True),
    "Hopper": _Task("hopper.xml", 4, 1e-3, 1.0, 1, 10.0, 5e-3, False),
    "Walker2d": _Task("walker2d.xml", 4, 1e-3, 1.0, 1, 10.0, 5e-3, False),
    "Ant": _Task("ant.xml", 5, 0.5, 1.0, 2, None, 0.1, True),
}
assert set(TASKS) == set(MUJOCO_TASKS)


class MjxState(NamedTuple):
    #: the full MJX simulation state (qpos, qvel, ctrl, qacc_warmstart, kinematics, contacts, ...)
    data: Any
    #: env steps taken in this episode
    t: jax.Array


def import_mjx():
    """``mujoco.mjx`` (its import prints a line about the optional warp backend: silenced)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return importlib.import_module("mujoco.mjx")


def parse_mjx_id(env_id: str) -> str | None:
    """``"MJX/Hopper-v4"`` → ``"Hopper"``; None if it is not one of :data:`MJX_IDS`."""
    return str(env_id)[len(MJX_PREFIX):].split("-")[0] if env_id in MJX_IDS else None


class MjxMujoco(JaxEnv):
    """A gymnasium v4 MuJoCo task on MJX; ``task_id`` is ``"HalfCheetah-v4"`` etc. (see the module doc)."""

    num_actions = None
    obs_dtype = jnp.float32

    def __init__(self, task_id: str, speedup: float = 1, max_episode_steps: int = DEFAULT_MAX_EPISODE_STEPS,
                 solver_iterations: int | None = None, ls_iterations: int | None = None,
                 unroll_line_search: bool = False, unroll_solver: bool = False, unroll_substeps: bool = False):
        env_id = f"{MJX_PREFIX}{task_id}"
        task, version = _check(task_id, speedup, max_episode_steps)
        _check_iterations("solver_iterations", solver_iterations, "opt.iterations, 100 in these models")
        _check_iterations("ls_iterations", ls_iterations, "opt.ls_iterations, 50 in these models")
        for name, flag in (("unroll_line_search", unroll_line_search), ("unroll_solver", unroll_solver),
                           ("unroll_substeps", unroll_substeps)):
            if not isinstance(flag, bool):
                raise PipelagError(f"{name} must be true or false, got {flag!r}")
        if (unroll_line_search or unroll_solver) and (ls_iterations is None or ls_iterations > MAX_UNROLLED_LS):
            raise PipelagError(f"{'unroll_solver' if unroll_solver else 'unroll_line_search'} needs ls_iterations ≤ "
                               f"{MAX_UNROLLED_LS} (e.g. ls_iterations=8): unrolling the model's 50 line-search "
                               "trips would take minutes to compile")
        if unroll_solver and (solver_iterations is None or solver_iterations > MAX_UNROLLED_SOLVER):
            raise PipelagError(f"unroll_solver needs solver_iterations ≤ {MAX_UNROLLED_SOLVER} (e.g. "
                               "solver_iterations=4): its Newton loop becomes that many unrolled iterations")
        #: the line search's fixed-length loop as straight-line code (same numbers, no loop trips)
        self.unroll_line_search = unroll_line_search or unroll_solver
        #: the Newton loop as solver_iterations unrolled iterations that idle once converged (no loop trips)
        self.unroll_solver = unroll_solver
        #: the frame_skip physics steps of one env step traced one after the other (no substep loop; with
        #: unroll_solver, HalfCheetah's step has no loop at all). Same numbers; longer compilation
        self.unroll_substeps = unroll_substeps
        if version != MJX_VERSION:
            raise PipelagError(f"{env_id}: the MJX port has gymnasium {MJX_VERSION} semantics only; use one of "
                               f"{', '.join(MJX_IDS)}")
        try:
            mjx = import_mjx()
        except ImportError as e:
            raise PipelagError(f"{env_id} needs MuJoCo MJX ({e}): {INSTALL_HINT}") from None
        import mujoco

        self.env_id = env_id
        self.task = task
        self.spec = TASKS[task]
        self.speedup = float(speedup)
        self.max_episode_steps = int(max_episode_steps)
        self.frame_skip = self.spec.frame_skip
        self.mj_model = mujoco.MjModel.from_xml_path(model_path(self.spec.xml))
        self.mj_model.opt.timestep /= self.speedup  # before put_model: the MJX model copies it
        # opt-in caps of MJX's constraint solver (not MuJoCo's physics any more: see the module doc)
        self.solver_iterations = None if solver_iterations is None else int(solver_iterations)
        self.ls_iterations = None if ls_iterations is None else int(ls_iterations)
        if self.solver_iterations is not None:
            self.mj_model.opt.iterations = self.solver_iterations
        if self.ls_iterations is not None:
            self.mj_model.opt.ls_iterations = self.ls_iterations
        self.dt = float(self.mj_model.opt.timestep) * self.frame_skip
        self.mjx = mjx
        self.model = mjx.put_model(self.mj_model)
        self._template = mjx.put_data(self.mj_model, mujoco.MjData(self.mj_model))  # as after mj_resetData
        self.init_qpos = jnp.asarray(self.mj_model.qpos0, jnp.float32)
        self.init_qvel = jnp.zeros(self.mj_model.nv, jnp.float32)
        self._torso = self.mj_model.body("torso").id
        self._rot_dofs = rotation_dofs(self.mj_model) if _mujoco_rk4_is_munthe_kaas(self.mj_model) else None
        nu = self.mj_model.nu
        self.action_shape = (nu,)
        self.action_low = self.mj_model.actuator_ctrlrange[:, 0].astype(np.float32)
        self.action_high = self.mj_model.actuator_ctrlrange[:, 1].astype(np.float32)
        self.obs_shape = (self.mj_model.nq - self.spec.qpos_skip + self.mj_model.nv,)

    # ------------------------------------------------------------------------------------------ pieces
    def _obs(self, data) -> jax.Array:
        qvel = data.qvel
        if self.spec.clip_qvel is not None:
            qvel = jnp.clip(qvel, -self.spec.clip_qvel, self.spec.clip_qvel)
        return jnp.concatenate([data.qpos[self.spec.qpos_skip:], qvel]).astype(jnp.float32)

    def _x(self, data) -> jax.Array:
        if self.task == "Ant":  # get_body_com("torso")[0]: the kinematics MuJoCo computed last
            return data.xipos[self._torso, 0]
        return data.qpos[0]

    def _healthy(self, data) -> jax.Array:
        qpos, qvel = data.qpos, data.qvel
        if self.task == "Hopper":
            state = jnp.concatenate([qpos[2:], qvel])
            return (jnp.all((state > -100.0) & (state < 100.0)) & (qpos[1] > 0.7)
                    & (qpos[2] > -0.2) & (qpos[2] < 0.2))
        if self.task == "Walker2d":
            return (qpos[1] > 0.8) & (qpos[1] < 2.0) & (qpos[2] > -1.0) & (qpos[2] < 1.0)
        if self.task == "Ant":
            return (jnp.all(jnp.isfinite(qpos)) & jnp.all(jnp.isfinite(qvel)) & (qpos[2] >= 0.2)
                    & (qpos[2] <= 1.0))
        return jnp.array(True)

    def state_from_qpos_qvel(self, qpos, qvel) -> MjxState:
        """A fresh episode's state at ``(qpos, qvel)`` (gymnasium's ``set_state``: warm start zero,
        kinematics computed so Ant's first Δx starts from the torso's current centre of mass). qpos is
        kept as given: MJX's kinematics normalises quaternions in place, MuJoCo's does not (gymnasium's
        first Ant observation holds the noisy, unnormalised quaternion; the first step normalises it in
        both)."""
        qpos = jnp.asarray(qpos, jnp.float32)
        data = self._template.replace(qpos=qpos, qvel=jnp.asarray(qvel, jnp.float32))
        return MjxState(self.mjx.kinematics(self.model, data).replace(qpos=qpos), jnp.zeros((), jnp.int32))

    def state_from_mujoco(self, mj_data, t: int = 0) -> MjxState:
        """The state of a CPU ``mujoco.MjData`` of the same model (e.g. a gymnasium env's ``.data``),
        everything included (warm start, Ant's last kinematics), at episode step ``t``."""
        return MjxState(self.mjx.put_data(self.mj_model, mj_data), jnp.asarray(t, jnp.int32))

    def physics_step(self, data):
        """One ``mj_step`` as MuJoCo computes it: ``mjx.step`` with MuJoCo's plane–capsule contact frames
        (:func:`mujoco_c_capsule_frames`) and, for RK4 models with free/ball joints (Ant), MuJoCo ≥ 4.0's
        RK4 (Runge–Kutta–Munthe-Kaas orientations, :func:`rk4_munthe_kaas`)."""
        unrolled_ls = unrolled_line_search() if self.unroll_line_search else contextlib.nullcontext()
        unrolled_newton = (unrolled_solver_loop(self.solver_iterations) if self.unroll_solver
                           else contextlib.nullcontext())
        with mujoco_c_capsule_frames(), unrolled_ls, unrolled_newton:  # traced now: the compiled step keeps them
            if self._rot_dofs is None:
                return self.mjx.step(self.model, data)
            return rk4_munthe_kaas(self.model, self.mjx.forward(self.model, data), self._rot_dofs)

    # --------------------------------------------------------------------------------------- interface
    def reset_env(self, key):
        k_pos, k_vel = jax.random.split(key)
        scale = self.spec.noise_scale
        qpos = self.init_qpos + jax.random.uniform(k_pos, self.init_qpos.shape, jnp.float32, -scale, scale)
        if self.spec.normal_qvel_noise:
            qvel = self.init_qvel + scale * jax.random.normal(k_vel, self.init_qvel.shape, jnp.float32)
        else:
            qvel = self.init_qvel + jax.random.uniform(k_vel, self.init_qvel.shape, jnp.float32, -scale, scale)
        state = self.state_from_qpos_qvel(qpos, qvel)
        return state, self._obs(state.data)

    def step_env(self, key, state, action):
        del key  # deterministic physics
        action = jnp.asarray(action, jnp.float32).reshape(self.action_shape)
        data = state.data
        x_before = self._x(data)

        def substep(d, _):
            return self.physics_step(d), None

        data, _ = jax.lax.scan(substep, data.replace(ctrl=action), None, length=self.frame_skip,
                               unroll=self.unroll_substeps)
        x_velocity = (self._x(data) - x_before) / self.dt
        healthy = self._healthy(data)
        # healthy_reward = float(is_healthy or terminate_when_unhealthy) * w: always w (v4 terminates)
        reward = x_velocity + self.spec.healthy_reward - self.spec.ctrl_cost_weight * jnp.sum(jnp.square(action))
        terminated = jnp.logical_not(healthy) if self.spec.healthy_reward else jnp.array(False)
        t = state.t + 1
        obs = self._obs(data)
        step = Step(obs, reward.astype(jnp.float32), terminated, t >= self.max_episode_steps, obs)
        return MjxState(data, t), step


def _check_iterations(name: str, value: Any, default: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise PipelagError(f"{name} must be None (the model's {default}) or a positive integer, got {value!r}")


def rotation_dofs(mj_model) -> np.ndarray | None:
    """(n, 3) dof indices of the angular velocities of free and ball joints; None if there are none."""
    import mujoco

    rows = []
    for j in range(mj_model.njnt):
        adr = int(mj_model.jnt_dofadr[j])
        if mj_model.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            rows.append([adr + 3, adr + 4, adr + 5])
        elif mj_model.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
            rows.append([adr, adr + 1, adr + 2])
    return np.asarray(rows, np.int32) if rows else None


def _mujoco_rk4_is_munthe_kaas(mj_model) -> bool:
    """MuJoCo 4.0 made RK4 fourth-order for orientations (changelog 4.0.0, Engine 5); MJX 3.17 has the
    older RK4. Only RK4 models with free/ball joints differ."""
    import mujoco

    if mj_model.opt.integrator != mujoco.mjtIntegrator.mjINT_RK4 or rotation_dofs(mj_model) is None:
        return False
    return int(mujoco.__version__.split(".")[0]) >= 4


def rk4_munthe_kaas(m, d, rot_dofs: np.ndarray):
    """MuJoCo ≥ 4.0's RK4 integrator (``mj_RungeKutta``) for MJX, after ``mjx.forward(m, d)``.

    MJX's ``rungekutta4`` with the Runge–Kutta–Munthe-Kaas correction of the angular velocities ω of
    free/ball joints: each stage's ω becomes k = ω + ½ Θ×ω + (1/12) Θ×(Θ×ω), Θ = h·(the stage's rotation
    increment), and the corrected k both place the later stages and are combined for the final step.
    Verified against ``mj_step`` (float64: 1e-13 on Ant's qpos; without it 3e-6 per physics step)."""
    from mujoco.mjx._src import forward as fwd
    from mujoco.mjx._src import scan

    a_diag, b = np.diag(fwd._RK4_A), fwd._RK4_B
    h = m.opt.timestep
    d0 = d
    ks, accs, act_dots = [d.qvel], [d.qacc], [d.act_dot]
    integrate = lambda *args: fwd._integrate_pos(*args, dt=h)  # noqa: E731
    for i in range(3):
        increment = a_diag[i] * ks[-1]
        qpos = scan.flat(m, integrate, "jqv", "q", m.jnt_type, d0.qpos, increment)
        d = d.replace(qpos=qpos, qvel=d0.qvel + a_diag[i] * accs[-1] * h, act=d0.act + a_diag[i] * act_dots[-1] * h,
                      time=d0.time + a_diag[i] * h)
        d = fwd.forward(m, d)
        theta, omega = h * increment[rot_dofs], d.qvel[rot_dofs]
        cross = jnp.cross(theta, omega)
        ks.append(d.qvel.at[rot_dofs].set(omega + 0.5 * cross + jnp.cross(theta, cross) / 12.0))
        accs.append(d.qacc)
        act_dots.append(d.act_dot)
    qvel, qacc, act_dot = (sum(bj * x for bj, x in zip(b, xs, strict=True)) for xs in (ks, accs, act_dots))
    d = d.replace(qpos=d0.qpos, qvel=d0.qvel, act=d0.act, time=d0.time)
    return fwd._advance(m, d, act_dot, qacc, qvel)


_PLANE_CAPSULE_C = None


def _plane_capsule_c():
    """MJX's plane–capsule collider with MuJoCo's contact frame (``mjc_PlaneCapsule`` + ``mju_makeFrame``):
    the first tangent is the capsule axis projected onto the plane, however steep the capsule. MJX 3.17
    falls back to a fixed tangent (world y) when that projection is shorter than 0.5 (capsule within 60°
    of the normal; mujoco issue #2774); with the pyramidal friction cone of these models the tangent
    orients the pyramid, so the fallback changes the contact forces (Ant's legs: up to ~1 in qvel per
    step)."""
    global _PLANE_CAPSULE_C
    if _PLANE_CAPSULE_C is None:
        from mujoco.mjx._src import collision_primitive as cp

        @cp.collider(ncon=2)
        def plane_capsule(plane, cap):
            n, axis = plane.mat[:, 2], cap.mat[:, 2]
            b = axis - n * jnp.dot(n, axis)
            norm = jnp.linalg.norm(b)
            degenerate = norm < 1e-15  # mju_normalize3 of a zero vector gives (1, 0, 0)
            b = jnp.where(degenerate, jnp.array([1.0, 0.0, 0.0]), b / jnp.where(degenerate, 1.0, norm))
            frame = jnp.array([[n, b, jnp.cross(n, b)]])
            segment = axis * cap.size[1]
            out = []
            for offset in (segment, -segment):
                dist, pos = cp._plane_sphere(n, plane.pos, cap.pos + offset, cap.size[0])
                out.append((dist[None], pos[None], frame))
            return jax.tree.map(lambda *x: jnp.concatenate(x), *out)

        _PLANE_CAPSULE_C = plane_capsule
    return _PLANE_CAPSULE_C


@contextlib.contextmanager
def mujoco_c_capsule_frames():
    """While MJX is traced inside this block, plane–capsule contacts get MuJoCo's frames (see
    :func:`_plane_capsule_c`); MJX's own collider is restored afterwards (other MJX users unaffected)."""
    from mujoco.mjx._src import collision_driver as cd
    from mujoco.mjx._src.types import GeomType

    key = (GeomType.PLANE, GeomType.CAPSULE)
    old = cd._COLLISION_FUNC[key]
    cd._COLLISION_FUNC[key] = _plane_capsule_c()
    try:
        yield
    finally:
        cd._COLLISION_FUNC[key] = old


MAX_UNROLLED_LS = 16
MAX_UNROLLED_SOLVER = 8


def _unrolled_while(cond_fun, body_fun, init_val, max_iter: int):
    """``while cond_fun(v): v = body_fun(v)``, at most ``max_iter`` times, as straight-line code:
    ``max_iter`` unrolled trips, each a ``cond`` that idles once the loop would have stopped. The same
    signature and trips as MJX's ``solver._while_loop_scan``, without the scan's loop."""

    def one(val):
        nxt = body_fun(val)
        return nxt, cond_fun(nxt)

    def trip(carry, _):
        val, go = carry
        return jax.lax.cond(go, one, lambda x: (x, False), val), None

    return jax.lax.scan(trip, (init_val, cond_fun(init_val)), None, length=max_iter, unroll=True)[0][0]


@contextlib.contextmanager
def unrolled_line_search():
    """While MJX is traced inside this block, its solver's line search (``solver._while_loop_scan``: a
    ``scan`` of ``ls_iterations`` trips, each a ``cond`` that idles once converged) is traced with the
    scan fully unrolled: the same operations in the same order, so the same numbers, but no loop. On a
    GPU every loop trip costs a host round trip (docs/sac.md); MJX's own function is restored afterwards."""
    from mujoco.mjx._src import solver

    old = solver._while_loop_scan
    solver._while_loop_scan = _unrolled_while
    try:
        yield
    finally:
        solver._while_loop_scan = old


@contextlib.contextmanager
def unrolled_solver_loop(max_iter: int):
    """While MJX is traced inside this block, the Newton solver's ``jax.lax.while_loop`` (it stops early, and
    at the latest after ``opt.iterations`` = ``max_iter`` iterations) is traced by :func:`_unrolled_while`:
    the same iterations, no loop. Only ``solver``'s own name ``jax`` is swapped, for an object that hands
    out the real ``jax`` except for ``lax.while_loop``; restored afterwards."""
    from mujoco.mjx._src import solver

    real = solver.jax

    class _Lax:
        def __getattr__(self, name):
            return getattr(real.lax, name)

        @staticmethod
        def while_loop(cond_fun, body_fun, init_val):
            return _unrolled_while(cond_fun, body_fun, init_val, max_iter)

    class _Jax:
        lax = _Lax()

        def __getattr__(self, name):
            return getattr(real, name)

    solver.jax = _Jax()
    try:
        yield
    finally:
        solver.jax = real


def model_path(xml: str) -> str:
    """gymnasium's own copy of a MuJoCo model file."""
    try:
        import gymnasium.envs.mujoco as gym_mujoco
    except ImportError as e:
        raise PipelagError(f"the MJX envs load gymnasium's model files ({e}): pip install 'pipelag[mujoco]'") from None
    return os.path.join(os.path.dirname(gym_mujoco.__file__), "assets", xml)


def make_mjx_env(env_id: str, **options: Any) -> MjxMujoco:
    """``MjxMujoco`` from an ``"MJX/<Task>-v4"`` id (what ``pipelag.envs.make`` does)."""
    if parse_mjx_id(env_id) is None:
        raise PipelagError(f"unknown MJX environment id {env_id!r}; valid ids: {', '.join(MJX_IDS)}")
    return MjxMujoco(str(env_id)[len(MJX_PREFIX):], **options)
