"""PPO on gymnasium envs (any registered id, the original minatar/minigrid packages, a user's own env):
the envs step on the host through :func:`pipelag.envs.host.make_host_env`, the networks and the update
stay on the device.

    pipelag train --algo ppo --env CartPole-v1 --arch mlp --backend host      # (auto picks host for it)
    run(PPOConfig(env_id="CartPole-v1", arch="mlp"), seeds=[0, 1], out_dir="runs/cartpole")

One update per seed: ``num_steps`` ticks of (jitted act → host env step → jitted actor advance, with the
actor's activations reset where an episode ended), then the same jitted ``PPO.learn`` as the JAX path
(GAE, epochs, metrics). Acting follows the JAX rollout exactly: a_t = argmax(logits + Gumbel noise) with
every tick's noise drawn from the seed's key before the loop, the host envs' own seeds (seed + i for
sub-env i) for their randomness. :class:`HostRunner` has :class:`~pipelag.algorithms.ppo.train.Runner`'s
interface, so :func:`~pipelag.algorithms.ppo.train.run` gives host runs the same progress, run directory,
checkpoints and results.

Resuming a host run restores the agent (parameters, optimizer, keys, update count), not the envs: a
gymnasium env's state cannot be saved, so the envs are reset and every episode starts afresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pipelag.algorithms.ppo.config import PPOConfig
from pipelag.algorithms.ppo.train import PPO, RunnerState, Transition
from pipelag.errors import PipelagError


def gymnasium_id_known(env_id: str) -> bool:
    """Whether ``env_id`` is a gymnasium id the host adapter can make (MinAtar/MiniGrid ids registered on demand)."""
    from pipelag.envs.host import _gym_factory

    try:
        _gym_factory(env_id, {})
    except PipelagError:
        return False
    return True


def resolve_backend(config: PPOConfig) -> str:
    """``config.backend`` with "auto" resolved: "jax" for pipelag's JAX env ids (MinAtar ids included: the
    original minatar package needs ``backend="host"``), "host" for any other registered gymnasium id, and
    "jax" otherwise (whose error names the closest JAX id)."""
    from pipelag.envs import list_envs

    jax_env = config.env_id in list_envs()
    if config.backend == "auto":
        return "jax" if jax_env or not gymnasium_id_known(config.env_id) else "host"
    if config.backend == "jax" and not jax_env and gymnasium_id_known(config.env_id):
        raise PipelagError(f"backend 'jax' needs a JAX env; {config.env_id!r} is a gymnasium id: use backend 'host' "
                           f"(or 'auto'). JAX envs: {', '.join(list_envs())}")
    return config.backend


class HostRunner:
    """Chunks of PPO updates for every seed on host (gymnasium) envs; ``Runner``'s interface for ``run``."""

    def __init__(self, config: PPOConfig, seeds: Sequence[int], env_fn=None):
        """``env_fn``: a gymnasium env factory ``fn(**config.env_options)`` instead of ``config.env_id``."""
        self.config = c = config.validate()
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise PipelagError("give at least one seed")
        self.deltas = None
        self._env_fn = env_fn
        self.envs = [self._make_env(c.num_envs, s) for s in self.seeds]
        env = self.envs[0]
        if env.num_actions is None:
            raise PipelagError(f"{c.env_id} has continuous actions; PPO here is for discrete actions (use SAC)")
        num_actions = env.num_actions
        self.ppo = PPO(c, host_spaces=(tuple(env.obs_shape), num_actions))
        ppo = self.ppo
        self._init_agent = jax.jit(ppo.init_agent)
        self._start = jax.jit(lambda params, obs: ppo.acting_actor.initial_state(params["actor"], obs))
        self._act = jax.jit(lambda params, state, obs, gumbel: ppo._act(params["actor"], state, obs, None,
                                                                       gumbel=gumbel))
        self._act_eval = jax.jit(lambda params, state, obs, key, greedy: ppo._act(params["actor"], state, obs, key,
                                                                                 greedy=greedy),
                                 static_argnums=4)
        self._advance = jax.jit(lambda params, *a: ppo.advance_actor(params["actor"], *a))
        self._noise = jax.jit(lambda rng: ppo.rollout_noise(rng, c.num_envs, num_actions)[:2])
        self._learn = jax.jit(ppo.learn)
        self._live: Any = None  # the runner state this runner's envs are in step with

    def _make_env(self, num_envs: int, seed: int):
        from pipelag.envs.host import make_host_env

        c = self.config
        try:
            return make_host_env(self._env_fn or c.env_id, num_envs, seed, delta=c.delta if c.delta > 1 else 1,
                                 default_policy=c.default_policy, frame_stack=c.frame_stack, **c.env_options)
        except TypeError as e:
            raise PipelagError(f"cannot create {c.env_id} with env_options {c.env_options}: {e}") from e

    # ------------------------------------------------------------------ Runner interface
    def init_state(self) -> RunnerState:
        states = []
        for seed, env in zip(self.seeds, self.envs, strict=True):
            params, opt_state, rng, _ = self._init_agent(jax.random.PRNGKey(seed))
            obs = jnp.asarray(env.reset())
            states.append(RunnerState(params, opt_state, None, obs, self._start(params, obs),
                                      jnp.ones((self.config.num_envs,), bool), rng, jnp.zeros((), jnp.int32),
                                      jnp.asarray(self.config.num_updates, jnp.int32)))
        self._live = _stack(states)
        return self._live

    def chunk(self, rs: RunnerState, n: int) -> tuple[RunnerState, dict[str, jax.Array]]:
        states = [jax.tree.map(lambda x, i=i: x[i], rs) for i in range(len(self.seeds))]
        if rs is not self._live:  # restored from a checkpoint (or changed): the envs start new episodes
            states = [self._restart(s, env) for s, env in zip(states, self.envs, strict=True)]
        metrics = [[] for _ in self.seeds]
        for _ in range(n):
            for i, env in enumerate(self.envs):
                states[i], m = self.update(states[i], env)
                metrics[i].append(m)
        self._live = _stack(states)
        per_seed = [{k: jnp.stack([m[k] for m in ms]) for k in ms[0]} for ms in metrics]
        return self._live, {k: jnp.stack([m[k] for m in per_seed]) for k in per_seed[0]}

    def _restart(self, rs: RunnerState, env) -> RunnerState:
        obs = jnp.asarray(env.reset())
        return rs._replace(obs=obs, actor_state=self._start(rs.params, obs),
                           first=jnp.ones((self.config.num_envs,), bool))

    def update(self, rs: RunnerState, env) -> tuple[RunnerState, dict[str, jax.Array]]:
        """One rollout of ``env`` (host) and the jitted ``PPO.learn`` on it."""
        rs, state0, traj = self.rollout(rs, env)
        return self._learn(rs, state0, traj)

    def rollout(self, rs: RunnerState, env) -> tuple[RunnerState, Any, Transition]:
        """``num_steps`` ticks of one seed's host envs: (runner state after, actor state before, trajectory)."""
        c = self.config
        rng, gumbel = self._noise(rs.rng)
        state0 = actor_state = rs.actor_state
        obs, first = rs.obs, np.asarray(rs.first)
        ticks = []
        for t in range(c.num_steps):
            action, logp = self._act(rs.params, actor_state, obs, gumbel[t])
            next_obs, reward, term, trunc, final_obs, stats = env.step(np.asarray(action))
            done = np.logical_or(term, trunc)
            next_obs = jnp.asarray(next_obs)
            actor_state = self._advance(rs.params, actor_state, obs, action, jnp.asarray(done), next_obs)
            ended = stats["episode_ended"]
            ticks.append((obs, action, logp, reward, term, done, first, final_obs,
                          np.where(ended, stats["returned_episode_return"], 0.0).astype(np.float32),
                          np.where(ended, stats["returned_episode_raw_length"], 0).astype(np.int32), ended))
            obs, first = next_obs, done
        traj = Transition(*(jnp.stack([jnp.asarray(x) for x in field]) for field in zip(*ticks, strict=True)))
        return rs._replace(obs=obs, actor_state=actor_state, first=jnp.asarray(first), rng=rng), state0, traj

    def evaluate(self, params, update: int) -> dict[str, dict[str, np.ndarray]]:
        """Sampled and greedy evaluation of every seed: ``eval_episodes`` episodes each, in fresh host envs of
        their own (seeded by seed and update), an episode cut at ``eval_max_steps`` agent steps."""
        from pipelag.algorithms.ppo.train import _eval_key

        out: dict[str, list] = {"sampled": [], "greedy": []}
        for i, seed in enumerate(self.seeds):
            p = jax.tree.map(lambda x, i=i: x[i], params)
            for mode in ("sampled", "greedy"):
                env_seed = 1_000_003 + 7919 * seed + 2 * update + (mode == "greedy")
                out[mode].append(self._episodes(p, _eval_key(seed, update), mode == "greedy", env_seed))
        return {mode: {k: np.stack([r[k] for r in rows]) for k in rows[0]} for mode, rows in out.items()}

    def _episodes(self, params, key, greedy: bool, env_seed: int) -> dict[str, np.ndarray]:
        c = self.config
        n = c.eval_episodes
        if n == 0:
            return {"returns": np.zeros(0, np.float32), "lengths": np.zeros(0, np.float32),
                    "finished": np.zeros(0, bool)}
        env = self._make_env(n, env_seed)
        try:
            obs = jnp.asarray(env.reset())
            state = self._start(params, obs)
            finished = np.zeros(n, bool)
            ret, length = np.zeros(n, np.float32), np.zeros(n, np.float32)
            for _ in range(c.eval_max_steps):
                key, k = jax.random.split(key)
                action, _ = self._act_eval(params, state, obs, k, greedy)
                next_obs, reward, term, trunc, _, _ = env.step(np.asarray(action))
                done = np.logical_or(term, trunc)
                active = ~finished
                ret += np.where(active, reward, 0.0).astype(np.float32)
                length += active
                next_obs = jnp.asarray(next_obs)
                state = self._advance(params, state, obs, action, jnp.asarray(done), next_obs)
                obs, finished = next_obs, finished | done
                if finished.all():
                    break
        finally:
            env.close()
        return {"returns": ret, "lengths": length, "finished": finished}

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _stack(states: list[RunnerState]) -> RunnerState:
    return jax.tree.map(lambda *x: jnp.stack(x), *states)
