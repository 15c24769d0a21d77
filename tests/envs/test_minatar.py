"""pipelag.envs.minatar against the original ``minatar`` package (1.0.15).

* Lockstep: minatar's RandomState is replaced by a recorder, every random decision it takes is fed
  to ``MinAtar.step_det``, and observation, reward and terminal must be identical on every step,
  over whole episodes from ``reset`` and from hand-made states (converted from minatar's game state)
  that exercise what random play rarely reaches: ramping, brick/alien refills, surfacing with divers,
  oxygen death, Freeway's clock.
* The keyed env (sticky actions, JAX-drawn spawns) against ``minatar.Environment``: episode return
  and length of a uniform random policy agree within 4 standard errors; the spawn draws have
  minatar's probabilities.
* Sticky actions, attributes, bad input.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from minatar import Environment

from pipelag.envs.minatar import (
    GAMES,
    SQ_DIVERS,
    SQ_ENEMIES,
    SQ_F_BULLETS,
    AsterixSpawn,
    BreakoutReset,
    FreewayCars,
    MinAtar,
    MinAtarState,
    NoDraws,
    SeaquestSpawn,
)
from pipelag.errors import PipelagError

CHANNELS = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}
ENV_IDS = {
    "asterix": "MinAtar/Asterix-v0",
    "breakout": "MinAtar/Breakout-v0",
    "freeway": "MinAtar/Freeway-v0",
    "seaquest": "MinAtar/Seaquest-v0",
    "space_invaders": "MinAtar/SpaceInvaders-v0",
}


# ------------------------------------------------------------------------------------------------
# minatar side: recorded randomness, state conversion, draw parsing


class RecordingRandom:
    """Stands in for minatar's ``np.random.RandomState``; remembers every value it hands out."""

    def __init__(self, seed: int):
        self._rs = np.random.RandomState(seed)
        self.calls: list[tuple[str, object]] = []

    def rand(self, *shape):
        value = self._rs.rand(*shape)
        self.calls.append(("rand", np.copy(value)))  # minatar may modify arrays in place
        return value

    def randint(self, *args, **kwargs):
        value = self._rs.randint(*args, **kwargs)
        self.calls.append(("randint", np.copy(value)))
        return value

    def take(self):
        calls, self.calls = self.calls, []
        return calls


def _freeway_cars(calls):
    (k1, speeds), (k2, u) = calls
    assert (k1, k2) == ("randint", "rand") and not np.any(u == 0.5)
    return FreewayCars(np.asarray(speeds, np.int32), np.sign(u - 0.5).astype(np.int32))


ZERO_DRAWS = {
    "breakout": NoDraws(),
    "space_invaders": NoDraws(),
    "asterix": AsterixSpawn(np.int32(0), np.int32(0), np.int32(0)),
    "freeway": FreewayCars(np.ones(8, np.int32), np.ones(8, np.int32)),
    "seaquest": SeaquestSpawn(*(np.int32(v) for v in (0, 0, 1, 0, 1))),
}


def pre_step_info(game, e):
    """What is needed to interpret the draws of the next ``act``."""
    if game == "asterix":
        return [i for i, x in enumerate(e.entities) if x is None]
    if game == "seaquest":
        return e.e_spawn_timer == 0, e.d_spawn_timer == 0
    return None


def parse_step_draws(game, calls, info):
    """minatar's random calls during one ``act`` -> the draws ``MinAtar.step_det`` takes."""
    if game in ("breakout", "space_invaders"):
        assert not calls
        return NoDraws()
    if game == "freeway":
        return _freeway_cars(calls) if calls else ZERO_DRAWS["freeway"]
    if game == "asterix":
        if not calls:
            return ZERO_DRAWS["asterix"]
        lr, gold = calls[0][1] < 0.5, calls[1][1] < 1 / 3
        slot = info[calls[2][1]] if len(calls) == 3 else 0
        return AsterixSpawn(np.int32(lr), np.int32(gold), np.int32(slot))
    enemy, diver = info
    calls = list(calls)
    e_lr, is_sub, e_y, d_lr, d_y = 0, 0, 1, 0, 1
    if enemy:
        e_lr, is_sub, e_y = calls[0][1] < 0.5, calls[1][1] < 1 / 3, calls[2][1]
        calls = calls[3:]
    if diver:
        d_lr, d_y = calls[0][1] < 0.5, calls[1][1]
        calls = calls[2:]
    assert not calls
    return SeaquestSpawn(*(np.int32(v) for v in (e_lr, is_sub, e_y, d_lr, d_y)))


_TEMPLATES: dict = {}


def _template(env: MinAtar):
    if env.game not in _TEMPLATES:
        draws = BreakoutReset(np.int32(0)) if env.game == "breakout" else ZERO_DRAWS[env.game]
        _TEMPLATES[env.game] = env._impl.init_det(draws)
    return _TEMPLATES[env.game]


def to_jax_state(env: MinAtar, e) -> MinAtarState:
    """minatar's game object ``e`` -> our state (same dtypes/shapes as ``init_det``)."""
    game = env.game
    template = _template(env)
    if game == "breakout":
        fields = dict(
            _ball_y=e.ball_y, _ball_x=e.ball_x, _ball_dir=e.ball_dir, _pos=e.pos,
            _brick_map=e.brick_map != 0, _strike=e.strike, _last_x=e.last_x, _last_y=e.last_y,
            _terminal=e.terminal,
        )
    elif game == "asterix":
        ents = np.full((8, 4), 99)
        for i, x in enumerate(e.entities):
            if x is not None:
                ents[i] = [x[0], x[1], int(x[2]), int(x[3])]
        fields = dict(
            _player_x=e.player_x, _player_y=e.player_y, _entities=ents, _spawn_speed=e.spawn_speed,
            _spawn_timer=e.spawn_timer, _move_speed=e.move_speed, _move_timer=e.move_timer,
            _ramp_timer=e.ramp_timer, _ramp_index=e.ramp_index, _terminal=e.terminal,
        )
    elif game == "freeway":
        fields = dict(
            _cars=np.array(e.cars), _pos=e.pos, _move_timer=e.move_timer,
            _terminate_timer=e.terminate_timer, _terminal=e.terminal,
        )
    elif game == "space_invaders":
        fields = dict(
            _pos=e.pos, _f_bullet_map=e.f_bullet_map != 0, _e_bullet_map=e.e_bullet_map != 0,
            _alien_map=e.alien_map != 0, _alien_dir=e.alien_dir,
            _enemy_move_interval=e.enemy_move_interval, _alien_move_timer=e.alien_move_timer,
            _alien_shot_timer=e.alien_shot_timer, _ramp_index=e.ramp_index, _shot_timer=e.shot_timer,
            _terminal=e.terminal,
        )
    else:

        def pad(rows, cap, width):
            out = np.zeros((cap, width), np.int32)
            for i, row in enumerate(rows):
                out[i] = [int(v) for v in row]
            return out, len(rows)

        f_bullets, n_f = pad(e.f_bullets, SQ_F_BULLETS, 3)
        e_bullets, n_eb = pad(e.e_bullets, SQ_ENEMIES, 3)
        e_fish, n_fish = pad(e.e_fish, SQ_ENEMIES, 4)
        e_subs, n_subs = pad(e.e_subs, SQ_ENEMIES, 5)
        divers, n_div = pad(e.divers, SQ_DIVERS, 4)
        fields = dict(
            oxygen=e.oxygen, diver_count=e.diver_count, sub_x=e.sub_x, sub_y=e.sub_y,
            sub_or=int(e.sub_or), f_bullets=f_bullets, n_f_bullets=n_f, e_bullets=e_bullets,
            n_e_bullets=n_eb, e_fish=e_fish, n_e_fish=n_fish, e_subs=e_subs, n_e_subs=n_subs,
            divers=divers, n_divers=n_div, e_spawn_speed=e.e_spawn_speed,
            e_spawn_timer=e.e_spawn_timer, d_spawn_timer=e.d_spawn_timer, move_speed=e.move_speed,
            ramp_index=e.ramp_index, shot_timer=e.shot_timer, surface=e.surface, terminal=e.terminal,
        )
    state = template._replace(**fields) if game == "seaquest" else template.replace(**fields)
    state = jax.tree.map(lambda ref, x: jnp.asarray(np.asarray(x), ref.dtype).reshape(ref.shape), template, state)
    return MinAtarState(state, jnp.int32(0))


# ------------------------------------------------------------------------------------------------
# Scenarios: minatar states that random play reaches rarely (all reachable by the game's rules or
# the same rules from a different ramp level)


def make_scenario(game, e, rng):
    if game == "breakout":
        keep = rng.rand() < 0.8
        e.brick_map[1:4, :] = (rng.rand(3, 10) < 0.12) if keep else 0
        e.pos = rng.randint(10)
    elif game == "asterix":
        e.player_x, e.player_y = rng.randint(10), rng.randint(1, 9)
        e.spawn_speed = rng.randint(1, 11)
        e.spawn_timer = rng.randint(e.spawn_speed + 1)
        e.move_speed = rng.randint(1, 6)
        e.move_timer = rng.randint(e.move_speed + 1)
        e.ramp_timer = rng.randint(-1, 30)
        e.ramp_index = rng.randint(12)
    elif game == "space_invaders":
        aliens = np.zeros((10, 10))
        aliens[0:4, 2:8] = rng.rand(4, 6) < 0.15
        aliens[rng.randint(4), rng.randint(2, 8)] = 1
        e.alien_map = aliens
        e.alien_dir = rng.choice([-1, 1])
        e.enemy_move_interval = rng.randint(6, 13)
        e.alien_move_timer = rng.randint(min(int(aliens.sum()), e.enemy_move_interval) + 1)
        e.alien_shot_timer = rng.randint(11)
        e.ramp_index = rng.randint(7)
        e.pos = rng.randint(10)
    elif game == "freeway":
        e.terminate_timer = rng.randint(0, 250)
        e.pos = rng.randint(10)
    elif game == "seaquest":
        e.diver_count = rng.choice([0, 1, 3, 5, 6, 6])
        e.oxygen = rng.randint(1, 12) if rng.rand() < 0.5 else rng.randint(1, 201)
        e.sub_y = rng.randint(0, 4)
        e.sub_x = rng.randint(1, 9)
        e.surface = e.sub_y == 0 and rng.rand() < 0.5
        e.ramp_index = rng.randint(6)
        e.move_speed = rng.randint(2, 6)
        e.e_spawn_speed = rng.randint(1, 8)
        e.e_spawn_timer = rng.randint(e.e_spawn_speed + 1)
        e.d_spawn_timer = rng.randint(31)
        if rng.rand() < 0.5:  # a crowd of enemy subs with due shot timers, and friendly bullets
            for y in rng.choice(np.arange(1, 9), size=4, replace=False):
                lr = bool(rng.rand() < 0.5)
                for x in rng.choice(10, size=2, replace=False):
                    e.e_subs.append([int(x), int(y), lr, rng.randint(e.move_speed + 1), rng.randint(3)])
            for _ in range(2):
                e.f_bullets.append([rng.randint(10), rng.randint(1, 9), bool(rng.rand() < 0.5)])


POLICIES = {  # probabilities of n, l, u, r, d, f
    "uniform": np.full(6, 1 / 6),
    "up": np.array([0.1, 0.1, 0.5, 0.1, 0.1, 0.1]),
    "fire": np.array([0.1, 0.15, 0.15, 0.15, 0.15, 0.3]),
    "surface": np.array([0.1, 0.1, 0.3, 0.1, 0.1, 0.3]),
}


def snapshot(game, e):
    if game == "breakout":
        return dict(bricks=int(np.count_nonzero(e.brick_map)))
    if game in ("asterix", "space_invaders"):
        return dict(ramp=e.ramp_index)
    if game == "freeway":
        return {}
    return dict(
        oxygen=e.oxygen, ramp=e.ramp_index, move_speed=e.move_speed, divers=e.diver_count,
        subs=[(s, s[0], s[4]) for s in e.e_subs],
        exits=sum((b[0] == 0 and not b[2]) or (b[0] == 9 and b[2]) for b in e.e_bullets),
    )


def count_events(game, before, e, r, term, events):
    """Count the rare situations a rollout went through (to check the lockstep exercises them)."""
    add = lambda name, n=1: events.__setitem__(name, events.get(name, 0) + int(n))
    if game == "breakout":
        add("brick_refill", np.count_nonzero(e.brick_map) > before["bricks"])
    elif game in ("asterix", "space_invaders"):
        add("ramp", e.ramp_index > before["ramp"])
    elif game == "freeway":
        add("crossing", r > 0)
        add("clock_end", term)
    else:
        add("oxygen_death", term and before["oxygen"] <= 0)
        add("surface_with_6_divers", before["divers"] == 6 and e.diver_count == -1)
        add("ramp_on_odd_index", e.ramp_index > before["ramp"] and before["ramp"] % 2 == 1)
        add("speed_up", e.move_speed < before["move_speed"])
        add("enemy_bullet_leaves", before["exits"])
        # a sub destroyed in its own update (in bounds) while its shot timer was due still fires
        alive = {id(s) for s in e.e_subs}
        add("killed_sub_fires", sum(
            id(s) not in alive and s[0] != x and 0 <= s[0] <= 9 and t == 0 for s, x, t in before["subs"]
        ))


def record_minatar(game, *, seed, episodes, scenario, max_steps, policy):
    """Play minatar with sticky 0 and recorded randomness: initial states + per-step data."""
    env = MinAtar(game, sticky_action_prob=0.0)
    menv = Environment(game, sticky_action_prob=0.0)
    rec = RecordingRandom(seed)
    menv.env.random = rec
    rng = np.random.RandomState(seed + 1)
    probs = POLICIES[policy]
    starts, acts, draws, obs, rews, terms, lens, events = [], [], [], [], [], [], [], {}
    for _ in range(episodes):
        menv.reset()
        if scenario:
            make_scenario(game, menv.env, rng)
        starts.append(to_jax_state(env, menv.env))
        ep = dict(a=[], d=[], o=[], r=[], t=[])
        rec.take()
        for _ in range(max_steps):
            info = pre_step_info(game, menv.env)
            before = snapshot(game, menv.env)
            a = int(rng.choice(6, p=probs))
            r, term = menv.act(a)
            count_events(game, before, menv.env, r, term, events)
            ep["a"].append(a)
            ep["d"].append(parse_step_draws(game, rec.take(), info))
            ep["o"].append(menv.state())
            ep["r"].append(r)
            ep["t"].append(term)
            if term:
                break
        n = len(ep["a"])
        lens.append(n)
        pad = max_steps - n
        acts.append(np.array(ep["a"] + [0] * pad, np.int32))
        draws.append(ep["d"] + [ZERO_DRAWS[game]] * pad)
        obs.append(np.concatenate([np.array(ep["o"]), np.zeros((pad, *ep["o"][0].shape), bool)]))
        rews.append(np.array(ep["r"] + [0] * pad, np.float32))
        terms.append(np.array(ep["t"] + [False] * pad))
    stack = lambda *xs: np.stack([np.asarray(x) for x in xs])
    draws = jax.tree.map(stack, *[jax.tree.map(stack, *d) for d in draws])
    return dict(
        env=env, starts=jax.tree.map(stack, *starts), actions=np.stack(acts), draws=draws,
        obs=np.stack(obs), rewards=np.stack(rews), terminals=np.stack(terms), lengths=np.array(lens),
        events=events,
    )


def jax_rollout(env, starts, actions, draws):
    def one(state, acts, drs):
        def body(s, x):
            s, step = env.step_det(s, *x)
            return s, (step.obs, step.reward, step.terminated)

        return jax.lax.scan(body, state, (acts, drs))[1]

    return jax.jit(jax.vmap(one))(starts, actions, draws)


def assert_lockstep(game, data, label):
    rollout = jax_rollout(data["env"], data["starts"], data["actions"], data["draws"])
    obs, rew, term = (np.asarray(x) for x in rollout)
    valid = np.arange(data["actions"].shape[1])[None, :] < data["lengths"][:, None]
    bad_obs = (obs != data["obs"]).reshape(*valid.shape, -1).any(-1)
    bad = valid & (bad_obs | (rew != data["rewards"]) | (term != data["terminals"]))
    if bad.any():
        ep, t = np.argwhere(bad)[0]
        where = f"{game} ({label}) episode {ep} step {t} (action {data['actions'][ep, t]})"
        diff = np.argwhere(obs[ep, t] != data["obs"][ep, t])[:6].tolist()
        pytest.fail(
            f"{where}: first difference from minatar: observation cells (y, x, channel) {diff}, "
            f"reward {rew[ep, t]} vs {data['rewards'][ep, t]}, "
            f"terminal {term[ep, t]} vs {data['terminals'][ep, t]}"
        )


# (game, policy from reset, policy in scenarios, episodes each, max steps)
LOCKSTEP = {
    "breakout": ("uniform", "uniform", 40, 200),
    "asterix": ("uniform", "uniform", 30, 300),
    "space_invaders": ("fire", "fire", 30, 300),
    "seaquest": ("fire", "surface", 40, 300),
    "freeway": ("up", "up", 6, 2501),
}


@pytest.mark.parametrize("game", GAMES)
def test_lockstep_matches_minatar(game):
    policy_reset, policy_scenario, episodes, max_steps = LOCKSTEP[game]
    # Freeway: a few whole 2501-step games from reset, plus many short ones ending on the clock
    n_reset = 2 if game == "freeway" else episodes
    n_scen = 12 if game == "freeway" else episodes
    a = record_minatar(game, seed=11, episodes=n_reset, scenario=False, max_steps=max_steps,
                       policy=policy_reset)
    b = record_minatar(game, seed=12, episodes=n_scen, scenario=True, max_steps=max_steps,
                       policy=policy_scenario)
    concat = lambda x, y: np.concatenate([x, y])
    data = {k: a[k] if k in ("env", "events") else jax.tree.map(concat, a[k], b[k]) for k in a}
    assert_lockstep(game, data, "from reset, then scenarios")
    # the rollouts went through what they are meant to exercise (else the comparison proves little)
    assert data["rewards"].sum() > 0 and data["terminals"].any()
    events = {k: a["events"].get(k, 0) + b["events"].get(k, 0) for k in {*a["events"], *b["events"]}}
    missing = [k for k, n in events.items() if n == 0]
    assert not missing, f"{game}: the lockstep rollouts never exercised {missing} ({events})"
    if game == "freeway":
        assert a["lengths"].tolist() == [2501, 2501] and a["terminals"][:, 2500].all()


@pytest.mark.parametrize("game", ["breakout", "freeway"])
def test_reset_matches_minatar(game):
    """``init_det`` with minatar's reset draws gives minatar's initial state and observation."""
    env = MinAtar(game, sticky_action_prob=0.0)
    menv = Environment(game, sticky_action_prob=0.0)
    rec = RecordingRandom(3)
    menv.env.random = rec
    for _ in range(6):
        menv.reset()
        calls = rec.take()
        draws = BreakoutReset(np.int32(calls[0][1])) if game == "breakout" else _freeway_cars(calls)
        state, obs = env.init_det(draws)
        np.testing.assert_array_equal(np.asarray(obs), menv.state().astype(np.float32))
        ours, theirs = jax.tree.leaves(state), jax.tree.leaves(to_jax_state(env, menv.env))
        keys = [str(k) for k, _ in jax.tree_util.tree_leaves_with_path(state)]
        for k, x, y in zip(keys, ours, theirs, strict=True):
            if "observation" not in k and "legal_action_mask" not in k:
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=k)


@pytest.mark.parametrize("game", ["asterix", "seaquest", "space_invaders"])
def test_deterministic_reset_matches_minatar(game):
    env = MinAtar(game)
    menv = Environment(game)
    for seed in range(3):
        _, obs = jax.jit(env.reset)(jax.random.key(seed))
        menv.reset()
        np.testing.assert_array_equal(np.asarray(obs), menv.state().astype(np.float32))


# ------------------------------------------------------------------------------------------------
# The keyed env against minatar.Environment: statistics of a uniform random policy


def minatar_episode_stats(game, sticky, episodes, seed):
    menv = Environment(game, sticky_action_prob=sticky)
    menv.seed(seed)
    rng = np.random.RandomState(seed + 1)
    returns, lengths = [], []
    for _ in range(episodes):
        menv.reset()
        ret, n, done = 0.0, 0, False
        while not done:
            r, done = menv.act(rng.randint(6))
            ret += r
            n += 1
        returns.append(ret)
        lengths.append(n)
    return np.array(returns), np.array(lengths)


def jax_episode_stats(env, episodes, max_steps, seed):
    """Return and length of the first episode of each of ``episodes`` parallel envs."""

    @jax.jit
    def run(key):
        k_reset, k_run = jax.random.split(key)
        states, _ = jax.vmap(env.reset)(jax.random.split(k_reset, episodes))

        def body(carry):
            t, states, ret, length, done = carry
            k_act, k_step = jax.random.split(jax.random.fold_in(k_run, t))
            actions = jax.random.randint(k_act, (episodes,), 0, 6)
            states, step = jax.vmap(env.step)(jax.random.split(k_step, episodes), states, actions)
            ret = ret + jnp.where(done, 0.0, step.reward)
            length = length + (~done)
            return t + 1, states, ret, length, done | step.done

        zeros = jnp.zeros(episodes)
        init = (0, states, zeros, zeros.astype(jnp.int32), zeros.astype(bool))
        cond = lambda c: (c[0] < max_steps) & ~c[4].all()
        _, _, ret, length, done = jax.lax.while_loop(cond, body, init)
        return ret, length, done

    ret, length, done = run(jax.random.key(seed))
    assert bool(done.all()), f"{env.env_id}: some episodes did not end within {max_steps} steps"
    return np.asarray(ret), np.asarray(length)


def assert_same_mean(ours, theirs, what):
    se = math.sqrt(ours.var(ddof=1) / len(ours) + theirs.var(ddof=1) / len(theirs))
    diff = abs(ours.mean() - theirs.mean())
    assert diff <= 4 * se + 1e-9, (
        f"{what}: ours {ours.mean():.3f} vs minatar {theirs.mean():.3f} (|diff| {diff:.3f} > 4 SE = {4 * se:.3f})"
    )


# game -> (episodes each side, JAX step limit)
STATS = {
    "breakout": (600, 300),
    "asterix": (400, 1000),
    "seaquest": (400, 1000),
    "space_invaders": (400, 1000),
    "freeway": (150, 2502),
}


@pytest.mark.parametrize("game", GAMES)
def test_random_policy_statistics_match_minatar(game):
    episodes, max_steps = STATS[game]
    env = MinAtar(game)  # sticky 0.1, as the -v0 ids
    ours_r, ours_l = jax_episode_stats(env, episodes, max_steps, seed=5)
    theirs_r, theirs_l = minatar_episode_stats(game, 0.1, episodes, seed=6)
    assert_same_mean(ours_r, theirs_r, f"{game} mean return")
    if game == "freeway":
        assert (ours_l == 2501).all() and (theirs_l == 2501).all()
    else:
        assert_same_mean(ours_l, theirs_l, f"{game} mean episode length")


def draw_all(env, keys, state):
    return jax.jit(jax.vmap(env.draw_step, in_axes=(0, None)))(keys, state)


def test_spawn_draws_have_minatar_probabilities():
    keys = jax.random.split(jax.random.key(0), 6000)
    n = len(keys)

    def check(freq, p, what):
        se = math.sqrt(p * (1 - p) / n)
        assert abs(float(freq) - p) <= 4 * se, f"{what}: frequency {float(freq):.4f}, minatar's {p:.4f}"

    breakout = MinAtar("breakout")
    check(jnp.mean(jax.jit(jax.vmap(breakout.draw_reset))(keys).ball_start == 1), 0.5, "breakout ball start")

    freeway = MinAtar("freeway")
    cars = draw_all(freeway, keys, freeway.init_det(FreewayCars(jnp.ones(8, jnp.int32), jnp.ones(8, jnp.int32)))[0])
    for v in range(1, 6):
        check(jnp.mean(cars.speeds == v), 0.2, f"freeway speed {v}")
    check(jnp.mean(cars.directions == 1), 0.5, "freeway direction")
    assert set(np.unique(cars.directions).tolist()) == {-1, 1}

    asterix = MinAtar("asterix")
    state, _ = jax.jit(asterix.reset)(jax.random.key(1))
    entities = state.game._entities.at[jnp.array([0, 3, 4, 6]), 0].set(5)  # slots 1, 2, 5, 7 empty
    state = state._replace(game=state.game.replace(_entities=entities))
    spawn = draw_all(asterix, keys, state)
    check(jnp.mean(spawn.lr), 0.5, "asterix left/right")
    check(jnp.mean(spawn.is_gold), 1 / 3, "asterix gold")
    for slot in (1, 2, 5, 7):
        check(jnp.mean(spawn.slot == slot), 0.25, f"asterix slot {slot}")

    seaquest = MinAtar("seaquest")
    spawn = draw_all(seaquest, keys, seaquest.init_det(NoDraws())[0])
    check(jnp.mean(spawn.enemy_lr), 0.5, "seaquest enemy left/right")
    check(jnp.mean(spawn.diver_lr), 0.5, "seaquest diver left/right")
    check(jnp.mean(spawn.is_sub), 1 / 3, "seaquest sub vs fish")
    for y in range(1, 9):
        check(jnp.mean(spawn.enemy_y == y), 1 / 8, f"seaquest enemy row {y}")
        check(jnp.mean(spawn.diver_y == y), 1 / 8, f"seaquest diver row {y}")


# ------------------------------------------------------------------------------------------------
# Sticky actions


def executed_actions(env, agent_actions, key, batch):
    """Roll ``batch`` envs; return the executed action (``state.last_action``) of every step."""

    @jax.jit
    def run(key):
        states, _ = jax.vmap(env.reset)(jax.random.split(key, batch))

        def body(states, x):
            key, actions = x
            states, _ = jax.vmap(env.step)(jax.random.split(key, batch), states, actions)
            return states, states.last_action

        keys = jax.random.split(jax.random.fold_in(key, 1), agent_actions.shape[0])
        return jax.lax.scan(body, states, (keys, agent_actions))[1]

    return np.asarray(run(key))


def test_sticky_one_always_repeats_the_initial_noop_like_minatar():
    # minatar: last_action starts at 0 and with p=1 every act() executes it, forever
    menv = Environment("breakout", sticky_action_prob=1.0)
    menv.seed(0)
    for a in [3, 1, 5, 3]:
        menv.act(a)
        assert menv.last_action == 0

    env = MinAtar("breakout", sticky_action_prob=1.0)
    rng = np.random.RandomState(0)
    agent = jnp.asarray(rng.randint(1, 6, size=(60, 8)), jnp.int32)
    executed = executed_actions(env, agent, jax.random.key(0), 8)
    assert (executed == 0).all()

    # a non-zero last action is repeated forever: the paddle keeps moving right
    state, _ = env.reset(jax.random.key(1))
    state = state._replace(last_action=jnp.int32(3))
    positions = []
    step_env = jax.jit(env.step_env)
    for i in range(4):
        state, _ = step_env(jax.random.key(i), state, jnp.int32(1))
        positions.append(int(state.game._pos))
        assert int(state.last_action) == 3
    assert positions == [5, 6, 7, 8]


@pytest.mark.parametrize("p", [0.0, 0.25])
def test_sticky_repeat_frequency(p):
    env = MinAtar("breakout", sticky_action_prob=p)
    rng = np.random.RandomState(1)
    steps, batch = 120, 64
    agent = rng.randint(0, 6, size=(steps, batch)).astype(np.int32)
    executed = executed_actions(env, jnp.asarray(agent), jax.random.key(2), batch)
    previous = np.concatenate([np.zeros((1, batch), np.int32), executed[:-1]])
    # every executed action is the agent's or the repeated previous one
    assert ((executed == agent) | (executed == previous)).all()
    informative = agent != previous
    repeats = (executed == previous)[informative]
    n = repeats.size
    if p == 0.0:
        assert not repeats.any()
    else:
        se = math.sqrt(p * (1 - p) / n)
        assert abs(repeats.mean() - p) <= 4 * se, f"repeat frequency {repeats.mean():.4f} vs {p}"


def test_last_action_survives_auto_reset_like_minatar():
    # minatar.Environment.reset() keeps last_action, so a new episode may repeat the last one's
    menv = Environment("breakout", sticky_action_prob=0.0)
    menv.seed(0)
    done = False
    while not done:
        _, done = menv.act(3)
    menv.reset()
    assert menv.last_action == 3

    env = MinAtar("breakout", sticky_action_prob=0.0)
    state, _ = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    for i in range(100):
        state, out = step(jax.random.key(i), state, jnp.int32(3))
        assert not bool(out.truncated)  # no time limit; breakout ends only by termination
        if bool(out.done):
            break
    assert bool(out.done) and int(state.last_action) == 3
    assert not np.array_equal(np.asarray(out.obs), np.asarray(out.final_obs))  # it did auto-reset
    fresh, _ = env.reset(jax.random.key(0))
    assert int(fresh.last_action) == 0  # an explicit reset is a fresh minatar.Environment


# ------------------------------------------------------------------------------------------------
# Attributes, names, bad input


@pytest.mark.parametrize("game", GAMES)
def test_attributes_match_minatar(game):
    env = MinAtar(game)
    menv = Environment(game)
    assert env.env_id == ENV_IDS[game]
    assert env.num_actions == menv.num_actions() == 6
    assert env.obs_shape == tuple(menv.state_shape()) == (10, 10, CHANNELS[game])
    assert env.obs_dtype == jnp.float32 and env.max_episode_steps is None and env.is_discrete
    assert env.sticky_action_prob == 0.1
    state, obs = jax.eval_shape(env.reset, jax.random.key(0))  # shapes only: no compilation
    assert obs.shape == env.obs_shape and obs.dtype == jnp.float32
    _, step = jax.eval_shape(env.step, jax.random.key(1), state, jnp.int32(0))
    for x in (step.obs, step.final_obs):
        assert x.shape == env.obs_shape and x.dtype == jnp.float32
    assert step.reward.shape == () and step.reward.dtype == jnp.float32
    assert step.terminated.shape == step.truncated.shape == () and step.terminated.dtype == jnp.bool_
    assert step.truncated.dtype == jnp.bool_


@pytest.mark.parametrize(
    ("name", "game"),
    [("Breakout", "breakout"), ("SpaceInvaders", "space_invaders"), ("space_invaders", "space_invaders"),
     ("SEAQUEST", "seaquest"), ("Freeway", "freeway"), ("asterix", "asterix")],
)
def test_game_names_are_case_insensitive(name, game):
    env = MinAtar(name, sticky_action_prob=0.25)
    assert env.game == game and env.env_id == ENV_IDS[game] and env.sticky_action_prob == 0.25


@pytest.mark.parametrize("name", ["pong", "", "breakout2", None, 3])
def test_unknown_game_is_rejected(name):
    with pytest.raises(PipelagError, match="unknown MinAtar game") as info:
        MinAtar(name)
    for game in GAMES:
        assert game in str(info.value)


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "0.1", True, None])
def test_bad_sticky_probability_is_rejected(p):
    with pytest.raises(PipelagError, match=r"sticky_action_prob must be a probability in \[0, 1\]"):
        MinAtar("breakout", sticky_action_prob=p)


@pytest.mark.parametrize("p", [0, 1, 0.0, 1.0, np.float32(0.25)])
def test_boundary_sticky_probabilities_are_accepted(p):
    assert MinAtar("breakout", sticky_action_prob=p).sticky_action_prob == float(p)


def test_breakout_observation_without_scatters_equals_pgx_observe():
    """Breakout's observation is built elementwise (no scatter kernels in the rollout); it must equal
    pgx's ``_observe`` (``.at[y, x].set``) on any state, negative and out-of-range cells included."""
    import pgx.minatar.breakout as pgx_breakout

    from pipelag.envs.minatar import _Breakout

    game = _Breakout(pgx_breakout, 4)
    keys = jax.random.split(jax.random.PRNGKey(3), 6)
    n = 4000
    cells = [jax.random.randint(k, (n,), -11, 12) for k in keys[:5]]
    bricks = jax.random.bernoulli(keys[5], 0.5, (n, 10, 10))
    base = pgx_breakout._init_det(jnp.int32(0))

    def states(by, bx, ly, lx, pos, bm):
        return base.replace(_ball_y=by, _ball_x=bx, _last_y=ly, _last_x=lx, _pos=pos, _brick_map=bm)

    batch = jax.vmap(states)(*cells, bricks)
    ours = jax.jit(jax.vmap(game.observe))(batch)
    theirs = jax.jit(jax.vmap(pgx_breakout._observe))(batch)
    assert ours.dtype == theirs.dtype and ours.shape == (n, 10, 10, 4)
    np.testing.assert_array_equal(ours, theirs)
    assert np.asarray(theirs[..., :3]).any(axis=(1, 2)).mean() < 1  # some cells were out of range (dropped)
