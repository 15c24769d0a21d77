"""JAX MinAtar: Breakout, Seaquest, Freeway, Asterix, SpaceInvaders, equal to ``minatar`` 1.0.15.

``MinAtar(game, sticky_action_prob)`` behaves like ``minatar.Environment(game, sticky_action_prob,
difficulty_ramping=True)`` driven through the ``MinAtar/<Game>-v0`` gym ids: the full action set of 6
actions ``n l u r d f`` (each game reads the action *letter*; letters a game does not use are
no-ops), sticky actions (with probability ``p`` the previous *executed* action is repeated, and the
repeated action becomes the new "previous" one), difficulty ramping, rewards, terminal conditions.
Observations are minatar's ``state()`` (10x10xC, same channel order) as float32 0/1.

Breakout, Freeway, Asterix and SpaceInvaders use the deterministic cores of ``pgx.minatar`` 2.6
(``_init_det``/``_step_det``/``_observe``, which take the random decisions as arguments); the sticky
action and the random decisions are drawn here. Seaquest is re-implemented below because pgx's port
deviates from minatar in several places. ``tests/envs/test_minatar.py`` runs every game in lockstep
with minatar (same random decisions fed to both; identical observation, reward and terminal on every
step, including hand-made states that exercise ramping, refills, surfacing and oxygen death) and
compares episode statistics of the full, keyed env under a random policy.

Deviations of pgx 2.6 from minatar 1.0.15 found, and what is done about them
-------------------------------------------------------------------------------
Seaquest (all fixed by the re-implementation here):

1. Oxygen death one step late: minatar ends the episode when ``oxygen <= 0`` (checked before this
   step's decrement), pgx only when ``oxygen < 0``.
2. Oxygen gauge: pgx draws 9 gauge cells when ``oxygen < 0`` (a "hotfix" for an older minatar that
   sliced ``0:oxygen*10//200``); minatar 1.0.15 slices ``0:max(0, oxygen)*10//200``, i.e. none.
3. Ramping order on surfacing: minatar decreases the enemy move interval when the *old*
   ``ramp_index`` is odd (then increments it); pgx increments first and tests the new index, so enemies
   speed up on the first surfacing instead of the second.
4. Enemy bullets leaving the screen are never removed in pgx (its test is
   ``x < 0 & y > 9`` instead of ``x < 0 | x > 9``): they keep flying off-screen, show up again as
   ghost bullets in column 8/9 of the observation (negative indices wrap) and fill the 25 slots, after
   which new bullets overwrite slot 0 and bullets stop moving.
5. An enemy sub that is destroyed in its own update (moved onto a friendly bullet) still fires if its
   shot timer is due in minatar (the loop keeps using the removed list element); pgx does not fire.
6. Capacities: pgx keeps 25 fish/subs/enemy bullets; with full ramping (a spawn every step, enemies
   moving every 3rd step) up to 29 enemies can be alive. Here the lists hold 32 (see below).

All games (fixed in :class:`MinAtar`):

7. pgx defaults to the minimal action set; the ``-v0`` ids use all 6 actions. pgx's cores read the
   full-set action numbers (1=l, 2=u, 3=r, 4=d, 5=f as in minatar's ``action_map``), so the 6
   actions are passed through unchanged and unused letters are no-ops, as in minatar.
8. Sticky actions across episodes: ``minatar.Environment.reset()`` does not clear ``last_action``, so
   the first step of an episode can repeat the last action of the previous one; pgx restarts from 0.
   :meth:`MinAtar.step` (with its auto-reset) carries ``last_action`` over; an explicit
   :meth:`MinAtar.reset` starts from 0 like a fresh ``minatar.Environment``. (pgx also has a
   ``sticky_action_prob`` constructor argument with the same logic -- ``uniform < p`` repeats the
   stored executed action -- but ``pgx.make`` cannot set it; the wrapper draws it itself.)

Checked and equal (no change needed): Breakout, Freeway (its 2500-step timer ends the game on the
2501st step in both), Asterix (spawns, both collision passes, ramping every 101 steps),
SpaceInvaders (stable nearest-alien search, alien march, refill and ramping), observation channel
orders of all games, rewards, and the random spawn distributions.

Freeway's end is reported as ``terminated`` (minatar sets ``terminal``): it is the game's own clock,
as in Atari Freeway (a game over in the ALE), not an external time limit, and MinAtar's published
baselines treat it as terminal. The clock is not in the observation, as in the original game.

Remaining, knowingly not reproduced (both unreachable in practice): minatar's Python lists are
unbounded while ours hold 32 enemies of each kind / enemy bullets (a spawn beyond that is dropped);
and minatar's ``list.remove`` removes the first *equal* element, which differs from removing the
element at hand only when two fish/subs have identical fields, spawned one step apart after full
ramping, and then only by an extra one-step timer decrement.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import pgx.minatar.asterix as _pgx_asterix
import pgx.minatar.breakout as _pgx_breakout
import pgx.minatar.freeway as _pgx_freeway
import pgx.minatar.space_invaders as _pgx_space_invaders

from pipelag.envs.base import JaxEnv, Step
from pipelag.errors import PipelagError

ACTION_LETTERS = ("n", "l", "u", "r", "d", "f")
NOOP, LEFT, UP, RIGHT, DOWN, FIRE = range(6)

_I32 = jnp.int32


class MinAtarState(NamedTuple):
    """``game``: the game's own state; ``last_action``: the last executed action (for sticky)."""

    game: Any
    last_action: jax.Array


# ------------------------------------------------------------------------------------------------
# Random decisions of each game (what minatar draws from its RandomState), as explicit inputs.


class NoDraws(NamedTuple):
    """Breakout and SpaceInvaders steps (and the resets of Asterix, Seaquest, SpaceInvaders)."""


class BreakoutReset(NamedTuple):
    ball_start: jax.Array  # minatar: randint(2); 0 -> ball at x=0 going down-right, 1 -> x=9 down-left


class FreewayCars(NamedTuple):
    """minatar ``_randomize_cars``: ``randint(1, 6, 8)`` and ``sign(rand(8) - 0.5)``."""

    speeds: jax.Array  # (8,) in 1..5
    directions: jax.Array  # (8,) in {-1, +1}


class AsterixSpawn(NamedTuple):
    lr: jax.Array  # rand() < 1/2: spawn at x=0 moving right
    is_gold: jax.Array  # rand() < 1/3
    slot: jax.Array  # a uniformly chosen empty slot (ignored when there is none)


class SeaquestSpawn(NamedTuple):
    enemy_lr: jax.Array  # rand() < 1/2
    is_sub: jax.Array  # rand() < 1/3
    enemy_y: jax.Array  # randint(1, 9)
    diver_lr: jax.Array  # rand() < 1/2
    diver_y: jax.Array  # randint(1, 9)


# ------------------------------------------------------------------------------------------------
# Seaquest (re-implementation of minatar/environments/seaquest.py)
#
# minatar keeps ordered Python lists and iterates them in reverse, removing elements as it goes.
# Here each list is a fixed-capacity array kept compact in insertion order plus a length; "remove
# element i" shifts the later rows down, "append" writes row n. The reverse iteration only ever
# removes the current element (or one of another list), so the element order and the visiting
# order are those of minatar.

SQ_RAMP_MAX_OXYGEN = 200
SQ_INIT_SPAWN_SPEED = 20
SQ_DIVER_SPAWN_SPEED = 30
SQ_INIT_MOVE_INTERVAL = 5
SQ_SHOT_COOL_DOWN = 5
SQ_ENEMY_SHOT_INTERVAL = 10
SQ_DIVER_MOVE_INTERVAL = 5
SQ_F_BULLETS = 5  # friendly bullets: one per 5 steps, each lives <= 10 steps -> at most 2 alive
SQ_DIVERS = 8  # one per 30 steps, each lives <= 60 steps -> at most 3 alive
SQ_ENEMIES = 32  # fish, subs, enemy bullets each: <= 29 alive at full ramping (see module doc)


class SeaquestState(NamedTuple):
    oxygen: jax.Array
    diver_count: jax.Array
    sub_x: jax.Array
    sub_y: jax.Array
    sub_or: jax.Array  # 1: facing right
    f_bullets: jax.Array  # (SQ_F_BULLETS, 3): x, y, moving right
    n_f_bullets: jax.Array
    e_bullets: jax.Array  # (SQ_ENEMIES, 3): x, y, moving right
    n_e_bullets: jax.Array
    e_fish: jax.Array  # (SQ_ENEMIES, 4): x, y, moving right, move timer
    n_e_fish: jax.Array
    e_subs: jax.Array  # (SQ_ENEMIES, 5): x, y, moving right, move timer, shot timer
    n_e_subs: jax.Array
    divers: jax.Array  # (SQ_DIVERS, 4): x, y, moving right, move timer
    n_divers: jax.Array
    e_spawn_speed: jax.Array
    e_spawn_timer: jax.Array
    d_spawn_timer: jax.Array
    move_speed: jax.Array
    ramp_index: jax.Array
    shot_timer: jax.Array
    surface: jax.Array  # bool
    terminal: jax.Array  # bool


def _sq_init() -> SeaquestState:
    z = _I32(0)
    return SeaquestState(
        oxygen=_I32(SQ_RAMP_MAX_OXYGEN),
        diver_count=z,
        sub_x=_I32(5),
        sub_y=z,
        sub_or=z,
        f_bullets=jnp.zeros((SQ_F_BULLETS, 3), _I32),
        n_f_bullets=z,
        e_bullets=jnp.zeros((SQ_ENEMIES, 3), _I32),
        n_e_bullets=z,
        e_fish=jnp.zeros((SQ_ENEMIES, 4), _I32),
        n_e_fish=z,
        e_subs=jnp.zeros((SQ_ENEMIES, 5), _I32),
        n_e_subs=z,
        divers=jnp.zeros((SQ_DIVERS, 4), _I32),
        n_divers=z,
        e_spawn_speed=_I32(SQ_INIT_SPAWN_SPEED),
        e_spawn_timer=_I32(SQ_INIT_SPAWN_SPEED),
        d_spawn_timer=_I32(SQ_DIVER_SPAWN_SPEED),
        move_speed=_I32(SQ_INIT_MOVE_INTERVAL),
        ramp_index=z,
        shot_timer=z,
        surface=jnp.bool_(True),
        terminal=jnp.bool_(False),
    )


def _remove_at(arr: jax.Array, n: jax.Array, i: jax.Array, do: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Remove row ``i`` of the list ``arr[:n]`` where ``do`` (later rows shift down)."""
    idx = jnp.arange(arr.shape[0])[:, None]
    shifted = jnp.concatenate([arr[1:], arr[-1:]])
    out = jnp.where(do & (idx >= i), shifted, arr)
    out = jnp.where(do & (idx == n - 1), 0, out)
    return out, n - do.astype(_I32)


def _append(arr: jax.Array, n: jax.Array, row: jax.Array, do: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Append ``row`` to the list ``arr[:n]`` where ``do`` (dropped when full: see module doc)."""
    do = do & (n < arr.shape[0])
    out = jnp.where(((jnp.arange(arr.shape[0]) == n) & do)[:, None], row[None, :].astype(_I32), arr)
    return out, n + do.astype(_I32)


def _first_at(arr: jax.Array, n: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(any, index of the first) element of ``arr[:n]`` at ``(x, y)``."""
    hit = (arr[:, 0] == x) & (arr[:, 1] == y) & (jnp.arange(arr.shape[0]) < n)
    return hit.any(), jnp.argmax(hit)

def _move_enemy(v, active, fb, nfb, sub_x, sub_y, move_speed):
    """One enemy (sub or fish: x, y, direction, move timer, ...) takes its turn, as minatar does:
    it hits the player's sub if it sits on it or rams it while moving, leaves the screen, or is shot by
    the first friendly bullet on its new cell. Returns (x, move timer, out, hit the sub, shot, bullet)."""
    moving = v[3] == 0
    x = jnp.where(moving, v[0] + _step_dir(v[2]), v[0])
    move_timer = jnp.where(moving, move_speed, v[3] - 1)
    out = moving & _out(x)
    rammed = moving & ~out & (x == sub_x) & (v[1] == sub_y)
    hit_sub = active & (((v[0] == sub_x) & (v[1] == sub_y)) | rammed)
    hit, k = _first_at(fb, nfb, x, v[1])
    shot = active & moving & ~out & ~rammed & hit
    return x, move_timer, out, hit_sub, shot, k


def _step_dir(right: jax.Array) -> jax.Array:
    return jnp.where(right != 0, 1, -1).astype(_I32)


def _out(x: jax.Array) -> jax.Array:
    return (x < 0) | (x > 9)


def _sq_step_det(
    s: SeaquestState, a: jax.Array, d: SeaquestSpawn
) -> tuple[SeaquestState, jax.Array, jax.Array]:
    r = _I32(0)
    terminal = s.terminal

    # Spawn enemy if timer is up; do not spawn in a row with an enemy going the other way.
    e_lr = jnp.asarray(d.enemy_lr).astype(_I32)
    e_y = jnp.asarray(d.enemy_y).astype(_I32)
    spawn = s.e_spawn_timer == 0
    clash_sub = (s.e_subs[:, 1] == e_y) & (s.e_subs[:, 2] != e_lr) & (jnp.arange(SQ_ENEMIES) < s.n_e_subs)
    clash_fish = (s.e_fish[:, 1] == e_y) & (s.e_fish[:, 2] != e_lr) & (jnp.arange(SQ_ENEMIES) < s.n_e_fish)
    spawn_ok = spawn & ~clash_sub.any() & ~clash_fish.any()
    e_x = jnp.where(e_lr == 1, 0, 9)
    is_sub = jnp.asarray(d.is_sub).astype(bool)
    e_subs, n_e_subs = _append(
        s.e_subs, s.n_e_subs, jnp.stack([e_x, e_y, e_lr, s.move_speed, _I32(SQ_ENEMY_SHOT_INTERVAL)]),
        spawn_ok & is_sub,
    )
    e_fish, n_e_fish = _append(
        s.e_fish, s.n_e_fish, jnp.stack([e_x, e_y, e_lr, s.move_speed]), spawn_ok & ~is_sub
    )
    e_spawn_timer = jnp.where(spawn, s.e_spawn_speed, s.e_spawn_timer)

    # Spawn diver if timer is up.
    d_lr = jnp.asarray(d.diver_lr).astype(_I32)
    d_spawn = s.d_spawn_timer == 0
    divers, n_divers = _append(
        s.divers, s.n_divers,
        jnp.stack([jnp.where(d_lr == 1, 0, 9), jnp.asarray(d.diver_y).astype(_I32), d_lr,
                   _I32(SQ_DIVER_MOVE_INTERVAL)]),
        d_spawn,
    )
    d_spawn_timer = jnp.where(d_spawn, SQ_DIVER_SPAWN_SPEED, s.d_spawn_timer)

    # Resolve player action (if/elif chain on the letter).
    fire = (a == FIRE) & (s.shot_timer == 0)
    sub_row = jnp.stack([s.sub_x, s.sub_y, s.sub_or])
    f_bullets, n_f_bullets = _append(s.f_bullets, s.n_f_bullets, sub_row, fire)
    shot_timer = jnp.where(fire, SQ_SHOT_COOL_DOWN, s.shot_timer)
    sub_x = jnp.where(a == RIGHT, jnp.minimum(9, s.sub_x + 1), s.sub_x)
    sub_x = jnp.where(a == LEFT, jnp.maximum(0, s.sub_x - 1), sub_x)
    sub_or = jnp.where(a == LEFT, 0, jnp.where(a == RIGHT, 1, s.sub_or)).astype(_I32)
    sub_y = jnp.where(a == DOWN, jnp.minimum(8, s.sub_y + 1), s.sub_y)
    sub_y = jnp.where(a == UP, jnp.maximum(0, s.sub_y - 1), sub_y)

    # Update friendly bullets.
    def f_bullet_body(i, c):
        fb, nfb, fish, nfish, subs, nsubs, rr = c
        j = SQ_F_BULLETS - 1 - i
        active = j < nfb
        b = fb[j]
        x = b[0] + _step_dir(b[2])
        out = _out(x)
        fish_hit, kf = _first_at(fish, nfish, x, b[1])
        fish_hit = active & ~out & fish_hit
        sub_hit, ks = _first_at(subs, nsubs, x, b[1])
        sub_hit = active & ~out & ~fish_hit & sub_hit
        fb = fb.at[j, 0].set(jnp.where(active, x, b[0]))
        fish, nfish = _remove_at(fish, nfish, kf, fish_hit)
        subs, nsubs = _remove_at(subs, nsubs, ks, sub_hit)
        fb, nfb = _remove_at(fb, nfb, j, active & (out | fish_hit | sub_hit))
        return fb, nfb, fish, nfish, subs, nsubs, rr + fish_hit + sub_hit

    f_bullets, n_f_bullets, e_fish, n_e_fish, e_subs, n_e_subs, r = jax.lax.fori_loop(
        0, SQ_F_BULLETS, f_bullet_body, (f_bullets, n_f_bullets, e_fish, n_e_fish, e_subs, n_e_subs, r)
    )

    # Update divers.
    def diver_body(i, c):
        dv, ndv, dc = c
        j = SQ_DIVERS - 1 - i
        active = j < ndv
        v = dv[j]
        pick0 = (v[0] == sub_x) & (v[1] == sub_y) & (dc < 6)
        moving = ~pick0 & (v[3] == 0)
        x = jnp.where(moving, v[0] + _step_dir(v[2]), v[0])
        timer = jnp.where(moving, SQ_DIVER_MOVE_INTERVAL, jnp.where(pick0, v[3], v[3] - 1))
        out = moving & _out(x)
        pick1 = moving & ~out & (x == sub_x) & (v[1] == sub_y) & (dc < 6)
        dv = dv.at[j].set(jnp.where(active, jnp.stack([x, v[1], v[2], timer]), v))
        dv, ndv = _remove_at(dv, ndv, j, active & (pick0 | out | pick1))
        return dv, ndv, dc + (active & (pick0 | pick1))

    divers, n_divers, diver_count = jax.lax.fori_loop(
        0, SQ_DIVERS, diver_body, (divers, n_divers, s.diver_count)
    )

    # Update enemy subs.
    def sub_body(i, c):
        subs, nsubs, fb, nfb, eb, neb, rr, term = c
        j = SQ_ENEMIES - 1 - i
        active = j < nsubs
        v = subs[j]
        x, move_timer, out, hit_sub, shot, k = _move_enemy(v, active, fb, nfb, sub_x, sub_y, s.move_speed)
        term = term | hit_sub
        fires = v[4] == 0
        shot_t = jnp.where(fires, SQ_ENEMY_SHOT_INTERVAL, v[4] - 1)
        subs = subs.at[j].set(jnp.where(active, jnp.stack([x, v[1], v[2], move_timer, shot_t]), v))
        subs, nsubs = _remove_at(subs, nsubs, j, active & (out | shot))
        fb, nfb = _remove_at(fb, nfb, k, shot)
        # minatar fires from the (possibly just removed) sub element: a sub destroyed here still shoots.
        eb, neb = _append(eb, neb, jnp.stack([x, v[1], v[2]]), active & fires)
        return subs, nsubs, fb, nfb, eb, neb, rr + shot, term

    e_subs, n_e_subs, f_bullets, n_f_bullets, e_bullets, n_e_bullets, r, terminal = jax.lax.fori_loop(
        0, SQ_ENEMIES, sub_body,
        (e_subs, n_e_subs, f_bullets, n_f_bullets, s.e_bullets, s.n_e_bullets, r, terminal),
    )

    # Update enemy bullets (independent of each other: done at once, order kept).
    valid = jnp.arange(SQ_ENEMIES) < n_e_bullets
    at_sub = (e_bullets[:, 0] == sub_x) & (e_bullets[:, 1] == sub_y)
    terminal = terminal | (valid & at_sub).any()
    new_x = e_bullets[:, 0] + _step_dir(e_bullets[:, 2])
    keep = valid & ~_out(new_x)
    terminal = terminal | (keep & (new_x == sub_x) & (e_bullets[:, 1] == sub_y)).any()
    moved = e_bullets.at[:, 0].set(new_x)
    order = jnp.argsort(~keep, stable=True)
    e_bullets = jnp.where(keep[order][:, None], moved[order], 0)
    n_e_bullets = keep.sum().astype(_I32)

    # Update enemy fish.
    def fish_body(i, c):
        fish, nfish, fb, nfb, rr, term = c
        j = SQ_ENEMIES - 1 - i
        active = j < nfish
        v = fish[j]
        x, move_timer, out, hit_sub, shot, k = _move_enemy(v, active, fb, nfb, sub_x, sub_y, s.move_speed)
        term = term | hit_sub
        fish = fish.at[j].set(jnp.where(active, jnp.stack([x, v[1], v[2], move_timer]), v))
        fish, nfish = _remove_at(fish, nfish, j, active & (out | shot))
        fb, nfb = _remove_at(fb, nfb, k, shot)
        return fish, nfish, fb, nfb, rr + shot, term

    e_fish, n_e_fish, f_bullets, n_f_bullets, r, terminal = jax.lax.fori_loop(
        0, SQ_ENEMIES, fish_body, (e_fish, n_e_fish, f_bullets, n_f_bullets, r, terminal)
    )

    # Update various timers.
    e_spawn_timer = e_spawn_timer - (e_spawn_timer > 0)
    d_spawn_timer = d_spawn_timer - (d_spawn_timer > 0)
    shot_timer = shot_timer - (shot_timer > 0)
    oxygen = s.oxygen
    terminal = terminal | (oxygen <= 0)  # pgx: oxygen < 0 (deviation 1)
    below = sub_y > 0
    oxygen = jnp.where(below, oxygen - 1, oxygen)
    surfacing = ~below & ~s.surface
    terminal = terminal | (surfacing & (diver_count == 0))
    do_surface = surfacing & (diver_count != 0)
    # _surface(): reward for 6 divers, refill oxygen, lose a diver (6 -> 0 -> -1, as minatar), ramp.
    full = diver_count == 6
    r = r + jnp.where(do_surface & full, oxygen * 10 // SQ_RAMP_MAX_OXYGEN, 0)
    diver_count = jnp.where(do_surface, jnp.where(full, 0, diver_count) - 1, diver_count)
    oxygen = jnp.where(do_surface, SQ_RAMP_MAX_OXYGEN, oxygen)
    move_speed, e_spawn_speed, ramp_index = s.move_speed, s.e_spawn_speed, s.ramp_index
    ramp = do_surface & ((e_spawn_speed > 1) | (move_speed > 2))
    # the parity of the ramp index *before* the increment decides (deviation 3)
    move_speed = jnp.where(ramp & (move_speed > 2) & (ramp_index % 2 == 1), move_speed - 1, move_speed)
    e_spawn_speed = jnp.where(ramp & (e_spawn_speed > 1), e_spawn_speed - 1, e_spawn_speed)
    ramp_index = jnp.where(ramp, ramp_index + 1, ramp_index)
    surface = jnp.where(below, False, s.surface | do_surface)

    new = SeaquestState(
        oxygen=oxygen, diver_count=diver_count, sub_x=sub_x, sub_y=sub_y, sub_or=sub_or,
        f_bullets=f_bullets, n_f_bullets=n_f_bullets, e_bullets=e_bullets, n_e_bullets=n_e_bullets,
        e_fish=e_fish, n_e_fish=n_e_fish, e_subs=e_subs, n_e_subs=n_e_subs, divers=divers,
        n_divers=n_divers, e_spawn_speed=e_spawn_speed, e_spawn_timer=e_spawn_timer,
        d_spawn_timer=d_spawn_timer, move_speed=move_speed, ramp_index=ramp_index,
        shot_timer=shot_timer, surface=surface, terminal=terminal,
    )
    return new, r, terminal


def _plane(ys: jax.Array, xs: jax.Array, mask: jax.Array) -> jax.Array:
    """10x10 bool plane with the cells ``(ys[k], xs[k])`` where ``mask[k]`` set (others ignored)."""
    cells = jnp.arange(10)
    hit = (ys[:, None, None] == cells[None, :, None]) & (xs[:, None, None] == cells[None, None, :])
    return (hit & mask[:, None, None]).any(0)


def _sq_observe(s: SeaquestState) -> jax.Array:
    cols = jnp.arange(10)
    one = jnp.ones(1, bool)
    planes = [jnp.zeros((10, 10), bool)] * 10
    planes[0] = _plane(s.sub_y[None], s.sub_x[None], one)
    back = jnp.where(s.sub_or == 1, s.sub_x - 1, s.sub_x + 1)
    planes[1] = _plane(s.sub_y[None], (back % 10)[None], one)  # numpy wraps -1 (never reached in play)
    # deviation 2: max(0, oxygen) as minatar 1.0.15
    gauge = cols < jnp.maximum(0, s.oxygen) * 10 // SQ_RAMP_MAX_OXYGEN
    planes[7] = jnp.zeros((10, 10), bool).at[9].set(gauge)
    planes[8] = jnp.zeros((10, 10), bool).at[9].set((cols >= 9 - s.diver_count) & (cols < 9))
    fb, eb = s.f_bullets, s.e_bullets
    planes[2] = _plane(fb[:, 1], fb[:, 0], jnp.arange(SQ_F_BULLETS) < s.n_f_bullets)
    planes[4] = _plane(eb[:, 1], eb[:, 0], jnp.arange(SQ_ENEMIES) < s.n_e_bullets)
    trail = jnp.zeros((10, 10), bool)
    for arr, n, ch in ((s.e_fish, s.n_e_fish, 5), (s.e_subs, s.n_e_subs, 6), (s.divers, s.n_divers, 9)):
        valid = jnp.arange(arr.shape[0]) < n
        planes[ch] = _plane(arr[:, 1], arr[:, 0], valid)
        back = jnp.where(arr[:, 2] == 1, arr[:, 0] - 1, arr[:, 0] + 1)
        trail = trail | _plane(arr[:, 1], back, valid & ~_out(back))
    planes[3] = trail
    return jnp.stack(planes, axis=-1)


# ------------------------------------------------------------------------------------------------
# The five games behind one interface


def _bernoulli_int(key: jax.Array, p: float, shape: tuple[int, ...] = ()) -> jax.Array:
    return (jax.random.uniform(key, shape) < p).astype(_I32)


class _Game:
    channels: int

    def draw_reset(self, key: jax.Array) -> Any:
        return NoDraws()

    def draw_step(self, key: jax.Array, game: Any) -> Any:
        return NoDraws()

    def init_det(self, draws: Any) -> Any:
        raise NotImplementedError

    def step_det(self, game: Any, action: jax.Array, draws: Any) -> tuple[Any, jax.Array, jax.Array]:
        """``(game, reward, terminal)`` after the executed action with the given random decisions."""
        raise NotImplementedError

    def observe(self, game: Any) -> jax.Array:
        raise NotImplementedError


class _PgxGame(_Game):
    def __init__(self, module: Any, channels: int):
        self.m = module
        self.channels = channels

    def step_det(self, game, action, draws):
        game = self.m._step_det(game, action, *draws)
        return game, game.rewards[0], game._terminal

    def observe(self, game):
        return self.m._observe(game)


def _one_hot_cell(y: jax.Array, x: jax.Array) -> jax.Array:
    """A 10×10 plane with cell (y, x) set, as ``zeros.at[y, x].set(True)`` makes it (a negative index
    counts from the end, one out of range sets nothing) but elementwise: no scatter kernel."""
    y = jnp.where(y < 0, y + 10, y)
    x = jnp.where(x < 0, x + 10, x)
    return (jnp.arange(10)[:, None] == y) & (jnp.arange(10)[None, :] == x)


class _Breakout(_PgxGame):
    def observe(self, game):
        # pgx's _observe, without its three scatters: vmapped over envs each is a kernel of its own, and
        # the rollout observes twice a step (the step and the auto-reset); equal plane for plane (tested)
        return jnp.stack([_one_hot_cell(jnp.int32(9), game._pos), _one_hot_cell(game._ball_y, game._ball_x),
                          _one_hot_cell(game._last_y, game._last_x), game._brick_map.astype(bool)], axis=-1)

    def draw_reset(self, key):
        return BreakoutReset(jax.random.randint(key, (), 0, 2))

    def init_det(self, draws):
        return self.m._init_det(draws.ball_start)


class _Freeway(_PgxGame):
    def _cars(self, key):
        k1, k2 = jax.random.split(key)
        speeds = jax.random.randint(k1, (8,), 1, 6, dtype=_I32)
        directions = jnp.where(jax.random.uniform(k2, (8,)) < 0.5, -1, 1).astype(_I32)
        return FreewayCars(speeds, directions)

    def draw_reset(self, key):
        return self._cars(key)

    def draw_step(self, key, game):
        return self._cars(key)

    def init_det(self, draws):
        return self.m._init_det(draws.speeds, draws.directions)


class _Asterix(_PgxGame):
    def draw_step(self, key, game):
        k1, k2, k3 = jax.random.split(key, 3)
        empty = game._entities[:, 0] == _pgx_asterix.INF
        logits = jnp.where(empty, 0.0, -jnp.inf)
        slot = jnp.where(empty.any(), jax.random.categorical(k3, logits), 0)
        return AsterixSpawn(_bernoulli_int(k1, 0.5), _bernoulli_int(k2, 1 / 3), slot.astype(_I32))

    def init_det(self, draws):
        return self.m.State()

    def step_det(self, game, action, draws):
        game = self.m._step_det(game, action, lr=draws.lr, is_gold=draws.is_gold, slot=draws.slot)
        return game, game.rewards[0], game._terminal


class _SpaceInvaders(_PgxGame):
    def init_det(self, draws):
        return self.m.State()


class _Seaquest(_Game):
    channels = 10

    def draw_step(self, key, game):
        k = jax.random.split(key, 5)
        return SeaquestSpawn(
            enemy_lr=_bernoulli_int(k[0], 0.5),
            is_sub=_bernoulli_int(k[1], 1 / 3),
            enemy_y=jax.random.randint(k[2], (), 1, 9, dtype=_I32),
            diver_lr=_bernoulli_int(k[3], 0.5),
            diver_y=jax.random.randint(k[4], (), 1, 9, dtype=_I32),
        )

    def init_det(self, draws):
        return _sq_init()

    def step_det(self, game, action, draws):
        return _sq_step_det(game, action, draws)

    def observe(self, game):
        return _sq_observe(game)


GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
_TITLES = {"asterix": "Asterix", "breakout": "Breakout", "freeway": "Freeway", "seaquest": "Seaquest",
           "space_invaders": "SpaceInvaders"}


def _make_game(game: str) -> _Game:
    if game == "breakout":
        return _Breakout(_pgx_breakout, 4)
    if game == "freeway":
        return _Freeway(_pgx_freeway, 7)
    if game == "asterix":
        return _Asterix(_pgx_asterix, 4)
    if game == "space_invaders":
        return _SpaceInvaders(_pgx_space_invaders, 6)
    return _Seaquest()


def canonical_game(game: Any) -> str:
    """``"Breakout"``, ``"SpaceInvaders"``, ``"space_invaders"``... -> minatar's module name."""
    key = game.lower().replace("_", "").replace("-", "").replace(" ", "") if isinstance(game, str) else None
    for name in GAMES:
        if key == name.replace("_", ""):
            return name
    raise PipelagError(
        f"unknown MinAtar game {game!r}; valid games: {', '.join(GAMES)} "
        "(case-insensitive; 'SpaceInvaders' is accepted for space_invaders)."
    )


class MinAtar(JaxEnv):
    """A MinAtar game with minatar's semantics (see the module docstring)."""

    num_actions = 6
    action_shape = ()
    obs_dtype = jnp.float32
    max_episode_steps = None  # Freeway ends on its own clock (terminated); no other time limit

    def __init__(self, game: str, sticky_action_prob: float = 0.1):
        self.game = canonical_game(game)
        p = sticky_action_prob
        valid_p = (
            not isinstance(p, bool)
            and isinstance(p, numbers.Real)
            and not math.isnan(float(p))
            and 0.0 <= float(p) <= 1.0
        )
        if not valid_p:
            raise PipelagError(
                f"MinAtar {self.game}: sticky_action_prob must be a probability in [0, 1] "
                f"(default 0.1), got {p!r}."
            )
        self.sticky_action_prob = float(p)
        self._impl = _make_game(self.game)
        self.env_id = f"MinAtar/{_TITLES[self.game]}-v0"
        self.obs_shape = (10, 10, self._impl.channels)

    def __repr__(self) -> str:
        return f"MinAtar({self.game!r}, sticky_action_prob={self.sticky_action_prob})"

    # -- deterministic core (the random decisions are inputs; used by the lockstep tests) ---------

    def init_det(self, draws: Any) -> tuple[MinAtarState, jax.Array]:
        """Start an episode with the given reset decisions (:class:`BreakoutReset`, :class:`FreewayCars`
        or :class:`NoDraws`)."""
        game = self._impl.init_det(draws)
        return MinAtarState(game, _I32(0)), self._observe(game)

    def step_det(self, state: MinAtarState, action: jax.Array, draws: Any) -> tuple[MinAtarState, Step]:
        """Execute ``action`` (already resolved: no sticky draw) with the given random decisions."""
        action = jnp.asarray(action).astype(_I32)
        game, reward, terminal = self._impl.step_det(state.game, action, draws)
        obs = self._observe(game)
        step = Step(obs, jnp.asarray(reward, jnp.float32), jnp.asarray(terminal, bool),
                    jnp.bool_(False), obs)
        return MinAtarState(game, action), step

    def draw_reset(self, key: jax.Array) -> Any:
        return self._impl.draw_reset(key)

    def draw_step(self, key: jax.Array, state: MinAtarState) -> Any:
        return self._impl.draw_step(key, state.game)

    def _observe(self, game: Any) -> jax.Array:
        return self._impl.observe(game).astype(jnp.float32)

    # -- JaxEnv -------------------------------------------------------------------------------------

    def reset_env(self, key: jax.Array) -> tuple[MinAtarState, jax.Array]:
        return self.init_det(self.draw_reset(key))

    def step_env(self, key: jax.Array, state: MinAtarState, action: jax.Array) -> tuple[MinAtarState, Step]:
        k_sticky, k_game = jax.random.split(key)
        action = jnp.asarray(action).astype(_I32)
        # minatar.Environment.act: if rand() < p: a = last_action; last_action = a
        sticky = jax.random.uniform(k_sticky) < self.sticky_action_prob
        action = jnp.where(sticky, state.last_action, action)
        return self.step_det(state, action, self.draw_step(k_game, state))

    def step(self, key: jax.Array, state: MinAtarState, action: jax.Array) -> tuple[MinAtarState, Step]:
        """As :meth:`JaxEnv.step`, but the executed action survives the auto-reset (deviation 8)."""
        key_step, key_reset = jax.random.split(key)
        next_state, step = self.step_env(key_step, state, action)
        reset_state, reset_obs = self.reset_env(key_reset)
        reset_state = reset_state._replace(last_action=next_state.last_action)
        done = step.done
        state = jax.tree.map(lambda r, n: jnp.where(done, r, n), reset_state, next_state)
        obs = jnp.where(done, reset_obs, step.obs)
        return state, step._replace(obs=obs, final_obs=step.obs)
