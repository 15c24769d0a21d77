"""JAX MiniGrid: ``MiniGrid-Empty-Random-5x5-v0`` and ``MiniGrid-DoorKey-5x5-v0``, equal to ``minigrid``.

A small, self-contained re-implementation of the Farama ``minigrid`` package (3.x) for the two
environments of DESIGN.md §4; it does not import ``minigrid`` (only the tests do). What is
reproduced, and checked against minigrid by ``tests/envs/test_minigrid.py``:

* the grid and its encoding: ``state.grid[x, y] = (OBJECT_IDX, COLOR_IDX, STATE)`` exactly as
  ``Grid.encode()`` writes it (empty cell = ``(1, 0, 0)``, door state 0 open / 1 closed / 2 locked);
* ``reset``: the layout distribution of ``_gen_grid`` (``place_obj``'s rejection sampling is uniform
  over the free cells of its rectangle, which is what is sampled here, from 32 random bits per draw:
  modulo bias below 1e-8); the layouts themselves can't be seed-identical since the RNG is JAX's.
  :func:`state_from_minigrid` copies a minigrid env's state instead;
* ``step``: the 7 actions (left, right, forward, pickup, drop, toggle, done) with ``MiniGridEnv.step``'s
  semantics, reward ``1 - 0.9 * step_count / max_steps`` on reaching the goal (``terminated``), 0
  otherwise, ``truncated`` once ``step_count >= max_steps`` (both can be true on the same step, as in
  minigrid);
* observations: ``view="symbolic"`` is ``gen_obs()["image"]`` (7x7x3, indexed ``[x, y]`` like
  minigrid) as float32; ``view="rgb"`` is ``RGBImgPartialObsWrapper(tile_size=8)``'s image, i.e.
  ``get_pov_render``: 56x56x3 divided by 255 (float32). Both use ``gen_obs_grid``: the 7x7 view in
  front of the agent, cells outside the grid are walls, ``process_vis`` occlusion unless the env sees
  through walls (minigrid's ``EmptyEnv`` passes ``see_through_walls=True``, ``DoorKeyEnv`` keeps the
  default False), the carried object shown at the agent's cell; the RGB view highlights the visible
  cells and draws the agent triangle pointing up, with tiles pre-rendered by minigrid's own renderer
  (``data/minigrid_tiles.npz``, made by ``scripts/make_minigrid_tiles.py``).

Differences: actions outside ``0..6`` raise ``PipelagError`` when given as Python/NumPy ints; traced
out-of-range actions act like ``done`` (minigrid raises ``ValueError``). Rewards are float32
(``float32(minigrid's float64 reward)``, read from a table).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pipelag.envs.base import JaxEnv, Step
from pipelag.errors import PipelagError

# minigrid.core.constants
OBJECT_TO_IDX = {
    "unseen": 0,
    "empty": 1,
    "wall": 2,
    "floor": 3,
    "door": 4,
    "key": 5,
    "ball": 6,
    "box": 7,
    "goal": 8,
    "lava": 9,
    "agent": 10,
}
COLOR_TO_IDX = {"red": 0, "green": 1, "blue": 2, "purple": 3, "yellow": 4, "grey": 5}
STATE_OPEN, STATE_CLOSED, STATE_LOCKED = 0, 1, 2
DIR_TO_VEC = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int32)  # right, down, left, up

EMPTY = OBJECT_TO_IDX["empty"]
WALL = OBJECT_TO_IDX["wall"]
DOOR = OBJECT_TO_IDX["door"]
KEY = OBJECT_TO_IDX["key"]
GOAL = OBJECT_TO_IDX["goal"]
LAVA = OBJECT_TO_IDX["lava"]

EMPTY_CELL = (EMPTY, 0, 0)
WALL_CELL = (WALL, COLOR_TO_IDX["grey"], 0)
GOAL_CELL = (GOAL, COLOR_TO_IDX["green"], 0)
LOCKED_YELLOW_DOOR = (DOOR, COLOR_TO_IDX["yellow"], STATE_LOCKED)
YELLOW_KEY = (KEY, COLOR_TO_IDX["yellow"], 0)

# WorldObj.can_overlap / can_pickup by object index (doors: overlap only when open, handled apart)
_CAN_OVERLAP = np.zeros(len(OBJECT_TO_IDX), bool)
_CAN_OVERLAP[[EMPTY, OBJECT_TO_IDX["floor"], GOAL, LAVA]] = True
_CAN_PICKUP = np.zeros(len(OBJECT_TO_IDX), bool)
_CAN_PICKUP[[KEY, OBJECT_TO_IDX["ball"], OBJECT_TO_IDX["box"]]] = True

# Actions (minigrid.core.actions.Actions)
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
NUM_ACTIONS = 7

VIEW_SIZE = 7  # agent_view_size
TILE_SIZE = 8  # RGBImgPartialObsWrapper(tile_size=8)
VIEWS = ("rgb", "symbolic")


@dataclasses.dataclass(frozen=True)
class _Spec:
    layout: str
    size: int
    max_steps: int
    see_through_walls: bool


# Registered kwargs of minigrid/__init__.py; max_steps and see_through_walls as EmptyEnv/DoorKeyEnv set them.
SPECS: dict[str, _Spec] = {
    "MiniGrid-Empty-Random-5x5-v0": _Spec("empty_random", 5, 4 * 5**2, True),
    "MiniGrid-DoorKey-5x5-v0": _Spec("doorkey", 5, 10 * 5**2, False),
}


class MiniGridState(NamedTuple):
    grid: jax.Array  # int32 (W, H, 3): minigrid's Grid.encode(), indexed [x, y]
    agent_pos: jax.Array  # int32 (2,): x, y
    agent_dir: jax.Array  # int32 (): 0 right, 1 down, 2 left, 3 up
    carrying: jax.Array  # int32 (3,): encoding of the carried object, EMPTY_CELL when nothing
    step_count: jax.Array  # int32 ()


@functools.cache
def _tiles() -> np.ndarray:
    """float32 (11*6*3*2*2, 8, 8, 3) tiles in [0, 1], flat index of [obj, color, state, highlight, agent]."""
    ref = importlib.resources.files("pipelag.envs") / "data" / "minigrid_tiles.npz"
    with ref.open("rb") as f, np.load(f) as data:
        tiles = data["tiles"]
    if tiles.shape != (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), 3, 2, 2, TILE_SIZE, TILE_SIZE, 3):
        raise PipelagError(
            f"corrupt MiniGrid tile table {ref} (shape {tiles.shape}); regenerate it with "
            "scripts/make_minigrid_tiles.py"
        )
    return tiles.reshape(-1, TILE_SIZE, TILE_SIZE, 3).astype(np.float32) / np.float32(255)


def _process_vis(see_behind: jax.Array) -> jax.Array:
    """``Grid.process_vis`` on the agent's view (agent at (W//2, H-1)): a bool mask indexed [x, y].

    minigrid visits the rows bottom-up; in each row a left-to-right pass then a right-to-left pass,
    where a visible, see-through cell ``i`` makes ``i±1`` visible in its row (sequentially, so
    visibility runs along the row within one pass) and ``i``, ``i±1`` in the row above. Here each
    pass is closed-form: cell ``i`` is reached from a visible cell ``k`` iff the cells it crosses
    (``k..i-1`` left-to-right, ``i+1..k`` right-to-left) all see behind. The left-to-right pass
    spreads upward from cells ``0..W-2`` as they are after that pass, the right-to-left pass from
    cells ``1..W-1`` as they are after both passes: the same updates in the same order as minigrid.
    """
    w, h = see_behind.shape
    ks, is_ = np.arange(w)[:, None], np.arange(w)[None, :]
    lower, upper = ks <= is_, ks >= is_

    def row(mask, s):  # mask: the row's cells made visible so far (by the row below); s: see-behind
        c = jnp.concatenate([jnp.zeros((1,), jnp.int32), jnp.cumsum(~s, dtype=jnp.int32)])  # blocked in s[:i]
        ltr = lower & (c[:w][:, None] == c[:w][None, :])  # k reaches i: s[k:i] all see-through
        m1 = jnp.any(mask[:, None] & ltr, axis=0)
        rtl = upper & (c[1:][:, None] == c[1:][None, :])  # k reaches i: s[i+1:k+1] all see-through
        m2 = jnp.any(m1[:, None] & rtl, axis=0)
        go_ltr = m1 & s & (np.arange(w) <= w - 2)
        go_rtl = m2 & s & (np.arange(w) >= 1)
        up = go_ltr | go_rtl
        up = up.at[1:].set(up[1:] | go_ltr[:-1])  # i+1 from the left-to-right pass
        up = up.at[:-1].set(up[:-1] | go_rtl[1:])  # i-1 from the right-to-left pass
        return up, m2  # the row above starts with what this row made visible

    start = jnp.zeros((w,), bool).at[w // 2].set(True)
    _, rows = jax.lax.scan(row, start, see_behind.T[::-1])  # rows bottom-up, as minigrid
    return rows[::-1].T


def _below(bits: jax.Array, n: Any) -> jax.Array:
    """A uniform integer in ``[0, n)`` from 32 random bits (modulo bias below ``n / 2**32``)."""
    return (bits % jnp.asarray(n, jnp.uint32)).astype(jnp.int32)


def turn_warning(env_id: str, delta: int, default_policy: str) -> str | None:
    """What β = "repeat" does to a MiniGrid agent's turns at this δ (None: nothing bad). Four quarter turns
    are no turn: repeating a turn δ times leaves δ mod 4 of them."""
    if default_policy != "repeat" or delta % 2:
        return None
    effect = ("a turn repeated δ times is no turn, so the agent can never change direction"
              if delta % 4 == 0 else "a turn repeated δ times is a half turn, so the agent can never turn by 90°")
    return (f"{env_id} at delta={delta} with default_policy='repeat' (the paper's β): {effect}; returns fall "
            f"to what walking straight reaches. default_policy='noop' lets time pass with minigrid's 'done' "
            f"action instead (docs/experiments.md, Table 10).")


class MiniGrid(JaxEnv):
    """``MiniGrid(name, view="rgb")``: a minigrid environment in JAX (see the module docstring)."""

    num_actions = NUM_ACTIONS
    obs_dtype = jnp.float32
    #: minigrid's "done" action does nothing but count the step
    noop_action = DONE

    def __init__(self, name: str, view: str = "rgb"):
        if name not in SPECS:
            raise PipelagError(f"unknown MiniGrid environment {name!r}; valid names: {', '.join(SPECS)}")
        if view not in VIEWS:
            raise PipelagError(f"unknown MiniGrid view {view!r}; valid views: {', '.join(VIEWS)}")
        self.env_id = name
        self.view = view
        self.spec = SPECS[name]
        self.max_episode_steps = self.spec.max_steps
        if view == "rgb":
            self.obs_shape = (VIEW_SIZE * TILE_SIZE, VIEW_SIZE * TILE_SIZE, 3)
            self._tile_table = _tiles()
        else:
            self.obs_shape = (VIEW_SIZE, VIEW_SIZE, 3)
        s = self.spec.size
        # float32(minigrid's float64 reward) for every step count, so rewards are bit-equal
        counts = np.arange(self.spec.max_steps + 1)
        self._rewards = (1 - 0.9 * (counts / self.spec.max_steps)).astype(np.float32)
        walls = np.zeros((s, s), bool)
        walls[[0, -1], :] = walls[:, [0, -1]] = True
        self._walled = np.where(walls[..., None], np.array(WALL_CELL), np.array(EMPTY_CELL)).astype(np.int32)
        self._walled[s - 2, s - 2] = GOAL_CELL  # both layouts: put_obj(Goal(), width - 2, height - 2)

    def __repr__(self) -> str:
        return f"MiniGrid({self.env_id!r}, view={self.view!r})"

    def default_policy_warning(self, delta: int, default_policy: str) -> str | None:
        return turn_warning(self.env_id, delta, default_policy)

    # ------------------------------------------------------------------ reset
    def _place(self, bits: jax.Array, grid: jax.Array, region: jax.Array, agent_pos: jax.Array) -> jax.Array:
        """``place_obj``: uniform over the free cells of ``region`` (rejection sampling's distribution)."""
        s = self.spec.size
        xs, ys = jnp.meshgrid(jnp.arange(s), jnp.arange(s), indexing="ij")
        free = region & (grid[..., 0] == EMPTY) & ~((xs == agent_pos[0]) & (ys == agent_pos[1]))
        counts = jnp.cumsum(free.reshape(-1).astype(jnp.int32))
        rank = _below(bits, counts[-1])  # the rank-th free cell, in raster order
        idx = jnp.argmax(counts > rank)
        return jnp.stack([idx // s, idx % s]).astype(jnp.int32)

    def reset_env(self, key: jax.Array) -> tuple[MiniGridState, jax.Array]:
        s = self.spec.size
        grid = jnp.asarray(self._walled)
        xs = jnp.arange(s)[:, None] * jnp.ones((1, s), jnp.int32)
        nowhere = jnp.array([-1, -1], jnp.int32)
        # one draw of random bits for the whole layout (one threefry call: cheap to compile)
        b_agent, b_dir, b_split, b_door, b_key = jax.random.bits(key, (5,), jnp.uint32)
        if self.spec.layout == "empty_random":  # EmptyEnv(agent_start_pos=None): place_agent()
            pos = self._place(b_agent, grid, jnp.ones((s, s), bool), nowhere)
        else:  # DoorKeyEnv._gen_grid
            split = 2 + _below(b_split, s - 4)  # _rand_int(2, width - 2)
            grid = jnp.where((xs == split)[..., None], jnp.array(WALL_CELL), grid)  # vert_wall(split, 0)
            left = xs < split
            pos = self._place(b_agent, grid, left, nowhere)  # place_agent(size=(split, height))
            door_y = 1 + _below(b_door, s - 3)  # _rand_int(1, height - 2)
            grid = grid.at[split, door_y].set(jnp.array(LOCKED_YELLOW_DOOR))
            key_pos = self._place(b_key, grid, left, pos)  # place_obj(Key, size=(split, height))
            grid = grid.at[key_pos[0], key_pos[1]].set(jnp.array(YELLOW_KEY))
        state = MiniGridState(
            grid=grid.astype(jnp.int32),
            agent_pos=pos,
            agent_dir=_below(b_dir, 4),  # place_agent: _rand_int(0, 4)
            carrying=jnp.array(EMPTY_CELL, jnp.int32),
            step_count=jnp.zeros((), jnp.int32),
        )
        return state, self.observe(state)

    # ------------------------------------------------------------------ step
    def step_env(self, key: jax.Array, state: MiniGridState, action: jax.Array) -> tuple[MiniGridState, Step]:
        del key  # minigrid's dynamics are deterministic
        if isinstance(action, (int, np.integer)) and not 0 <= int(action) < NUM_ACTIONS:
            raise PipelagError(f"MiniGrid action must be in 0..{NUM_ACTIONS - 1}, got {action}")
        action = jnp.asarray(action, jnp.int32)
        grid, pos, agent_dir, carrying, step_count = state
        step_count = step_count + 1
        s = self.spec.size
        fwd = pos + jnp.asarray(DIR_TO_VEC)[agent_dir]
        fx, fy = jnp.clip(fwd[0], 0, s - 1), jnp.clip(fwd[1], 0, s - 1)
        cell = grid[fx, fy]
        obj, color, door_state = cell[0], cell[1], cell[2]
        is_empty = obj == EMPTY
        can_overlap = jnp.asarray(_CAN_OVERLAP)[obj] | ((obj == DOOR) & (door_state == STATE_OPEN))
        carries = carrying[0] != EMPTY

        # left / right
        new_dir = jnp.where(action == LEFT, (agent_dir + 3) % 4, agent_dir)
        new_dir = jnp.where(action == RIGHT, (agent_dir + 1) % 4, new_dir)
        # forward
        fwd_action = action == FORWARD
        new_pos = jnp.where(fwd_action & can_overlap, jnp.stack([fx, fy]), pos)
        reached_goal = fwd_action & (obj == GOAL)
        terminated = reached_goal | (fwd_action & (obj == LAVA))
        # pickup / drop / toggle: the new content of the cell in front and of the agent's hands
        pickup = (action == PICKUP) & jnp.asarray(_CAN_PICKUP)[obj] & ~carries
        drop = (action == DROP) & is_empty & carries
        toggle = action == TOGGLE
        unlock = (obj == DOOR) & (door_state == STATE_LOCKED) & (carrying[0] == KEY) & (carrying[1] == color)
        flip = (obj == DOOR) & (door_state != STATE_LOCKED)
        toggled_door = jnp.stack([obj, color, jnp.where(unlock, STATE_OPEN, 1 - door_state)])
        empty_cell = jnp.array(EMPTY_CELL, jnp.int32)
        new_cell = jnp.where(pickup, empty_cell, cell)
        new_cell = jnp.where(drop, carrying, new_cell)
        new_cell = jnp.where(toggle & (unlock | flip), toggled_door, new_cell)
        new_cell = jnp.where(toggle & (obj == OBJECT_TO_IDX["box"]), empty_cell, new_cell)  # box: its contents (None)
        new_carrying = jnp.where(pickup, cell, jnp.where(drop, empty_cell, carrying))

        next_state = MiniGridState(
            grid=grid.at[fx, fy].set(new_cell),
            agent_pos=new_pos,
            agent_dir=new_dir,
            carrying=new_carrying,
            step_count=step_count,
        )
        reward = jnp.where(
            reached_goal, jnp.asarray(self._rewards)[jnp.minimum(step_count, self.spec.max_steps)], jnp.float32(0)
        )
        truncated = step_count >= self.spec.max_steps
        obs = self.observe(next_state)
        return next_state, Step(obs=obs, reward=reward, terminated=terminated, truncated=truncated, final_obs=obs)

    # ------------------------------------------------------------------ observation
    def view_grid(self, state: MiniGridState) -> tuple[jax.Array, jax.Array]:
        """``gen_obs_grid`` + ``encode``: the (7, 7, 3) int32 view indexed [x, y] and its visibility mask."""
        grid, pos, agent_dir = state.grid, state.agent_pos, state.agent_dir
        s = self.spec.size
        d = jnp.asarray(DIR_TO_VEC)[agent_dir]
        r = jnp.stack([-d[1], d[0]])  # right_vec
        vx = jnp.arange(VIEW_SIZE)[:, None]
        vy = jnp.arange(VIEW_SIZE)[None, :]
        # inverse of get_view_coords: view cell (vx, vy) sees world cell pos + d*(6 - vy) + r*(vx - 3)
        wx = pos[0] + d[0] * (VIEW_SIZE - 1 - vy) + r[0] * (vx - VIEW_SIZE // 2)
        wy = pos[1] + d[1] * (VIEW_SIZE - 1 - vy) + r[1] * (vx - VIEW_SIZE // 2)
        inside = (wx >= 0) & (wx < s) & (wy >= 0) & (wy < s)
        cells = grid[jnp.clip(wx, 0, s - 1), jnp.clip(wy, 0, s - 1)]
        cells = jnp.where(inside[..., None], cells, jnp.array(WALL_CELL, jnp.int32))  # Grid.slice
        if self.spec.see_through_walls:
            vis = jnp.ones((VIEW_SIZE, VIEW_SIZE), bool)
        else:
            obj = cells[..., 0]
            see_behind = (obj != WALL) & ((obj != DOOR) | (cells[..., 2] == STATE_OPEN))
            vis = _process_vis(see_behind)
        view = jnp.where(vis[..., None], cells, 0)  # unseen: (0, 0, 0)
        view = view.at[VIEW_SIZE // 2, VIEW_SIZE - 1].set(state.carrying)  # what the agent carries
        return view, vis

    def observe(self, state: MiniGridState) -> jax.Array:
        """The observation of ``state`` in this env's view."""
        view, vis = self.view_grid(state)
        if self.view == "symbolic":
            return view.astype(jnp.float32)
        agent = jnp.zeros((VIEW_SIZE, VIEW_SIZE), jnp.int32).at[VIEW_SIZE // 2, VIEW_SIZE - 1].set(1)
        idx = (((view[..., 0] * len(COLOR_TO_IDX) + view[..., 1]) * 3 + view[..., 2]) * 2 + vis) * 2 + agent
        tiles = jnp.asarray(self._tile_table)[idx]  # (x, y, 8, 8, 3)
        return tiles.transpose(1, 2, 0, 3, 4).reshape(self.obs_shape)  # image rows = y, columns = x

    # ------------------------------------------------------------------ minigrid interop
    def state_from_minigrid(self, env: Any) -> MiniGridState:
        """The state of a (reset) ``minigrid`` env of this env's id; see :func:`state_from_minigrid`."""
        u = getattr(env, "unwrapped", env)
        spec = getattr(u, "spec", None)
        env_id = getattr(spec, "id", None)
        if env_id is not None and env_id != self.env_id:
            raise PipelagError(f"state_from_minigrid: {self.env_id} can't take the state of a {env_id} env")
        size = (getattr(u, "width", None), getattr(u, "height", None))
        if size != (self.spec.size, self.spec.size) or getattr(u, "max_steps", None) != self.spec.max_steps:
            raise PipelagError(
                f"state_from_minigrid: expected a {self.env_id} env ({self.spec.size}x"
                f"{self.spec.size}, max_steps={self.spec.max_steps}), got {env!r}"
            )
        return state_from_minigrid(env)


def state_from_minigrid(env: Any) -> MiniGridState:
    """Copy the current state of a ``minigrid`` ``MiniGridEnv`` (or a wrapper of one) into a JAX state.

    Reads only the env's attributes (``grid``, ``agent_pos``, ``agent_dir``, ``carrying``,
    ``step_count``), so it does not import minigrid.
    """
    u = getattr(env, "unwrapped", env)
    if not all(hasattr(u, a) for a in ("grid", "agent_pos", "agent_dir", "carrying", "step_count")):
        raise PipelagError(f"state_from_minigrid needs a reset minigrid MiniGridEnv, got {env!r}")
    carrying = u.carrying.encode() if u.carrying is not None else EMPTY_CELL
    return MiniGridState(
        grid=jnp.asarray(np.asarray(u.grid.encode(), dtype=np.int32)),
        agent_pos=jnp.asarray(np.asarray(u.agent_pos, dtype=np.int32)),
        agent_dir=jnp.asarray(int(u.agent_dir), jnp.int32),
        carrying=jnp.asarray(np.asarray(carrying, dtype=np.int32)),
        step_count=jnp.asarray(int(u.step_count), jnp.int32),
    )
