"""PPO with a pipelined actor and an undelayed critic (paper App. A, DESIGN §3), fully jit-compiled.

Pure functions (PureJaxRL style)::

    train = make_train(config)          # or make_train(config, env=my_jax_env)
    out = jax.jit(train)(jax.random.PRNGKey(0))
    outs = train_seeds(config, [0, 1, 2])   # vmapped over seeds

Host-side runner with progress, checkpoints, resume and a results directory: :func:`run`.

One update (everything inside ``jit``; ``lax.scan`` over updates):

1. Rollout: ``num_envs`` envs × ``num_steps`` ticks. Each env keeps its actor state; per tick the
   action a_t is sampled from ``actor.output`` (for a pipelined actor: what the head stored last
   tick), then ``actor.step`` consumes o_t and a_t. When an episode ends (terminated or truncated)
   the actor's activations are reset (``actor.initial_state`` on the first observation of the next
   episode) and that observation is flagged ``first``.
2. The undelayed critic evaluates V(o_t) and V(final_obs_t) in one batched pass; GAE (losses.py)
   bootstraps truncations from V(final_obs) and never bootstraps terminations.
3. ``update_epochs`` epochs × ``num_minibatches`` minibatches; a minibatch is a subset of the envs
   with their whole ``num_steps`` sequences (recurrent-PPO style). The actor is unrolled over the
   sequence from the actor state stored at the rollout's start, activations reset where ``first``,
   gradients through all ticks (BPTT). The time-parallel unroll (PipelinedNetwork.unroll_layerwise) gives the
   same logits as the tick-by-tick ``net.unroll`` at a fraction of the cost.

Before the first gradient step the unrolled log-probs equal those of the rollout exactly (tested).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pipelag.algorithms.common.seeds import over_seeds, seed_device_count, vmapped_seed_count
from pipelag.algorithms.ppo.config import PPOConfig
from pipelag.algorithms.ppo.losses import compute_gae, ppo_loss
from pipelag.algorithms.ppo.networks import (
    acting_conv_impl_for,
    advance,
    build_actor,
    build_actor_critic,
    instant_values,
    take_envs,
)
from pipelag.envs.base import JaxEnv
from pipelag.envs.wrappers import EpisodeStats, episode_stats, wrap_env
from pipelag.errors import PipelagError


class RunnerState(NamedTuple):
    params: dict[str, Any]  # {"actor": ..., "critic": ...}
    opt_state: Any
    env_state: Any  # [N, ...]
    obs: jax.Array  # [N, *obs_shape]: o_t, the observation of the coming tick
    actor_state: Any  # [N, ...]: the actor's activations at the start of the coming tick
    first: jax.Array  # [N]: o_t is the first observation of an episode
    rng: jax.Array
    update: jax.Array  # updates done
    #: planned length of training in updates (a runtime value: it only sets the learning-rate annealing,
    #: so one compiled program serves any length)
    num_updates: jax.Array
    #: this member's δ when several δs train as one vmapped program (None: the config's), see run's batch
    delta: Any = None


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    logp: jax.Array
    reward: jax.Array
    terminated: jax.Array
    done: jax.Array
    first: jax.Array
    final_obs: jax.Array
    episode_return: jax.Array  # raw-env return of the episode that ended at this step (0 otherwise)
    episode_length: jax.Array  # its length in raw env steps
    ended: jax.Array


METRIC_NAMES = ("episode_return", "episode_length", "episodes", "loss", "policy_loss", "value_loss", "entropy",
                "approx_kl", "clip_frac", "learning_rate")


def make_env(config: PPOConfig, env: JaxEnv | None = None) -> JaxEnv:
    """The training env: ``pipelag.envs.make(config.env_id, **config.env_options)`` (or ``env``, an
    unwrapped JaxEnv) inside the canonical wrappers: RealTime (δ > 1), FrameStack, EpisodeStats.
    Action history is not an env wrapper here: the actor network sees a_t itself."""
    if env is None:
        from pipelag.envs import make

        env = make(config.env_id, **config.env_options)
    if not isinstance(env, JaxEnv):
        raise PipelagError(f"PPO trains on a pipelag JaxEnv, got {type(env).__name__}")
    if isinstance(env, EpisodeStats):
        raise PipelagError("pass the env unwrapped: PPO adds RealTime/FrameStack/EpisodeStats itself")
    if env.num_actions is None:
        raise PipelagError(f"{env.env_id} has continuous actions; PPO here is for discrete actions (use SAC)")
    return wrap_env(env, delta=config.delta, default_policy=config.default_policy, frame_stack=config.frame_stack,
                    episode_stats=True)


class PPO:
    """All pure functions of one PPO configuration (built once; every method is jittable)."""

    def __init__(self, config: PPOConfig, env: JaxEnv | None = None, vmapped_seeds: int = 1,
                 host_spaces: tuple[tuple[int, ...], int] | None = None):
        """``vmapped_seeds``: how many seeds one program vmaps (``vmapped_seed_count``); a speed choice only
        (the conv implementation on a GPU, see ``conv_impl_for``). ``host_spaces``: (obs_shape, num_actions)
        of host envs stepped outside (pipelag.algorithms.ppo.host): no JAX env, so no ``rollout``/``init``."""
        self.config = config.validate()
        if host_spaces is None:
            self.env = make_env(config, env)
            obs_shape, num_actions = self.env.obs_shape, self.env.num_actions
        else:
            self.env, (obs_shape, num_actions) = None, host_spaces
        self.actor, self.critic = build_actor_critic(config, obs_shape, num_actions, vmapped_seeds)
        #: the actor while acting (rollout, evaluation): the same network and parameters, its convs maybe
        #: computed another way (acting_conv_impl_for: one CUDA graph per tick on a GPU)
        self.acting_actor = self.actor
        acting_impl = acting_conv_impl_for(config, vmapped_seeds, obs_shape)
        if acting_impl != self.actor.conv_impl and any(n.op == "conv" for n in self.actor.graph.nodes):
            self.acting_actor = build_actor(config, obs_shape, num_actions, vmapped_seeds, conv_impl=acting_impl)
        c = config
        on_gpu = jax.default_backend() in ("gpu", "cuda", "rocm")
        self.rollout_unroll = c.rollout_unroll or (8 if on_gpu and c.num_updates >= 2048 else 1)
        # Adam with the learning rate applied by hand (annealed from the runtime num_updates)
        self.tx = optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.scale_by_adam(eps=c.adam_eps))

    def learning_rate(self, opt_step: jax.Array, num_updates: jax.Array) -> jax.Array:
        """lr linearly annealed to 0 over all optimizer steps (num_updates × epochs × minibatches)."""
        c = self.config
        if not c.anneal_lr:
            return jnp.asarray(c.lr, jnp.float32)
        total = num_updates * c.update_epochs * c.num_minibatches
        return c.lr * (1.0 - opt_step.astype(jnp.float32) / total.astype(jnp.float32))

    # ------------------------------------------------------------------ init
    def init(self, rng: jax.Array, delta=None) -> RunnerState:
        """``delta``: this member's own δ (several δs as one vmapped program, see :func:`run`'s ``batch``;
        the env was built with the largest), None for the config's."""
        c = self.config
        params, opt_state, rng, k_env = self.init_agent(rng)
        env_state, obs = jax.vmap(self.env_for(delta).reset)(jax.random.split(k_env, c.num_envs))
        actor_state = self.acting_actor.initial_state(params["actor"], obs)
        return RunnerState(params, opt_state, env_state, obs, actor_state,
                           jnp.ones((c.num_envs,), bool), rng, jnp.zeros((), jnp.int32),
                           jnp.asarray(c.num_updates, jnp.int32), delta)

    def init_agent(self, rng: jax.Array):
        """(parameters, optimizer state, the key to train on, the key of the envs' reset) of a seed's ``rng``:
        the same agent whichever backend steps the envs."""
        rng, k_actor, k_critic, k_env = jax.random.split(rng, 4)
        params = {"actor": self.actor.init(k_actor), "critic": self.critic.init(k_critic)}
        return params, self.tx.init(params), rng, k_env

    def env_for(self, delta=None) -> JaxEnv:
        """The env of a member: the training env, or a view stepping the member's own δ."""
        from pipelag.envs.wrappers import with_member_delta

        return with_member_delta(self.env, delta)

    # ------------------------------------------------------------------ rollout
    def _act(self, params, actor_state, obs, key, greedy: bool = False, gumbel: jax.Array | None = None):
        """a_t and its log-prob. Sampled: argmax(logits + Gumbel noise), the noise drawn from ``key`` or given
        (``gumbel``, [N, A]: the rollout draws every tick's noise at once)."""
        logits = self.acting_actor.output(params, actor_state, obs)
        if gumbel is None:
            gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
        sampled = jnp.argmax(logits + gumbel, axis=-1)  # what jax.random.categorical computes
        if isinstance(greedy, bool):
            action = jnp.argmax(logits, axis=-1) if greedy else sampled
        else:  # a traced flag (evaluate_both vmaps over it)
            action = jnp.where(greedy, jnp.argmax(logits, axis=-1), sampled)
        logp = jnp.take_along_axis(jax.nn.log_softmax(logits), action[..., None], axis=-1)[..., 0]
        return action, logp

    def _env_step(self, params, env_state, obs, actor_state, action, env_keys, env: JaxEnv):
        """Step every env with a_t (``env_keys``: one key per env), advance the actor, reset its activations
        where an episode ended."""
        env_state, step = jax.vmap(env.step)(env_keys, env_state, action)
        done = jnp.logical_or(step.terminated, step.truncated)
        return env_state, step, done, self.advance_actor(params, actor_state, obs, action, done, step.obs)

    def advance_actor(self, params, actor_state, obs, action, done, next_obs):
        """The actor state after tick t (o_t seen, a_t taken); where the episode ended, the initial state
        of the next episode's first observation ``next_obs``."""
        actor_state = advance(self.acting_actor, params, actor_state, obs, action)
        fresh = self.acting_actor.initial_state(params, next_obs)
        return jax.tree.map(
            lambda f, s: jnp.where(done.reshape(done.shape + (1,) * (s.ndim - 1)), f, s), fresh, actor_state)

    def rollout(self, rs: RunnerState) -> tuple[RunnerState, Transition]:
        pa, env = rs.params["actor"], self.env_for(rs.delta)
        # bf16 layers: cast their parameters once here, not in every trip of the loop (XLA keeps the cast
        # of the 16406×512 skip-layer kernel inside it; docs/ppo.md); the same values either way
        pa = self.acting_actor.cast_params(pa)
        rng, *noise = self.rollout_noise(rs.rng, rs.obs.shape[0], self.env.num_actions)

        def tick(rs: RunnerState, tick_noise):
            gumbel, env_keys = tick_noise
            action, logp = self._act(pa, rs.actor_state, rs.obs, None, gumbel=gumbel)
            env_state, step, done, actor_state = self._env_step(pa, rs.env_state, rs.obs, rs.actor_state, action,
                                                                env_keys, env)
            ret, raw_len, _, ended = episode_stats(env_state)
            tr = Transition(rs.obs, action, logp, step.reward.astype(jnp.float32), step.terminated, done, rs.first,
                            step.final_obs, jnp.where(ended, ret, 0.0), jnp.where(ended, raw_len, 0), ended)
            rs = rs._replace(env_state=env_state, obs=step.obs, actor_state=actor_state, first=done)
            return rs, tr

        rs, traj = jax.lax.scan(tick, rs, tuple(noise), unroll=self.rollout_unroll)
        return rs._replace(rng=rng), traj

    def rollout_noise(self, rng: jax.Array, num_envs: int, num_actions: int):
        """(next key, Gumbel noise [T, N, A], env keys [T, N]) of one rollout: every tick's random numbers
        drawn before the loop, one kernel each instead of small ones in every tick."""
        T = self.config.num_steps
        rng, k_act, k_env = jax.random.split(rng, 3)
        return rng, jax.random.gumbel(k_act, (T, num_envs, num_actions)), jax.random.split(k_env, (T, num_envs))

    # ------------------------------------------------------------------ update
    def _minibatch_loss(self, params, mb):
        c = self.config
        logits = self.actor.unroll_layerwise(params["actor"], mb["state0"], mb["obs"], mb["action"], mb["first"])
        values = instant_values(self.critic, params["critic"], mb["obs"])
        return ppo_loss(logits, mb["action"], mb["logp"], mb["advantages"], values, mb["values"], mb["returns"],
                        clip_eps=c.clip_eps, clip_value=c.clip_value, vf_coef=c.vf_coef, ent_coef=c.ent_coef,
                        norm_adv=c.norm_adv)

    def update(self, rs: RunnerState, _=None) -> tuple[RunnerState, dict[str, jax.Array]]:
        """One PPO update: rollout, GAE, epochs × minibatches. Returns per-update metrics."""
        state0 = rs.actor_state
        rs, traj = self.rollout(rs)
        return self.learn(rs, state0, traj)

    def learn(self, rs: RunnerState, state0, traj: Transition) -> tuple[RunnerState, dict[str, jax.Array]]:
        """The update after a rollout ``traj`` [T, N] that started from the actor state ``state0``: GAE
        with the critic's values, epochs × minibatches, metrics. Uses rs's parameters, optimizer state, key
        and update count only (the host path steps its envs outside: pipelag.algorithms.ppo.host)."""
        c = self.config
        T, N = c.num_steps, c.num_envs
        both = instant_values(self.critic, rs.params["critic"], jnp.concatenate([traj.obs, traj.final_obs], axis=0))
        values, next_values = both[:T], both[T:]
        advantages, returns = compute_gae(traj.reward, values, next_values, traj.terminated, traj.done, c.gamma,
                                          c.gae_lambda, unroll=self.rollout_unroll)
        data = {"obs": traj.obs, "action": traj.action, "logp": traj.logp, "first": traj.first,
                "advantages": advantages, "returns": returns, "values": values}
        grad_fn = jax.value_and_grad(self._minibatch_loss, has_aux=True)

        def minibatch(carry, idx):
            params, opt_state, opt_step = carry
            mb = take_envs(data, idx, axis=1)
            mb["state0"] = take_envs(state0, idx, axis=0)
            (_, info), grads = grad_fn(params, mb)
            updates, opt_state = self.tx.update(grads, opt_state, params)
            lr = self.learning_rate(opt_step, rs.num_updates)
            params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
            return (params, opt_state, opt_step + 1), info

        def epoch(carry, key):
            perm = jax.random.permutation(key, N).reshape(c.num_minibatches, c.envs_per_minibatch)
            return jax.lax.scan(minibatch, carry, perm)

        rng, k_epochs = jax.random.split(rs.rng)
        step0 = rs.update * (c.update_epochs * c.num_minibatches)
        (params, opt_state, _), infos = jax.lax.scan(epoch, (rs.params, rs.opt_state, step0),
                                                     jax.random.split(k_epochs, c.update_epochs))
        n_ended = traj.ended.sum()
        metrics = {
            "episode_return": jnp.where(n_ended > 0, traj.episode_return.sum() / jnp.maximum(n_ended, 1), jnp.nan),
            "episode_length": jnp.where(n_ended > 0, traj.episode_length.sum() / jnp.maximum(n_ended, 1), jnp.nan),
            "episodes": n_ended,
            **{name: getattr(infos, field).mean() for name, field in
               (("loss", "total"), ("policy_loss", "policy"), ("value_loss", "value"), ("entropy", "entropy"),
                ("approx_kl", "approx_kl"), ("clip_frac", "clip_frac"))},
            "learning_rate": self.learning_rate(step0, rs.num_updates),
        }
        rs = rs._replace(params=params, opt_state=opt_state, rng=rng, update=rs.update + 1)
        return rs, metrics

    def run_updates(self, rs: RunnerState, num_updates: int) -> tuple[RunnerState, dict[str, jax.Array]]:
        """``num_updates`` updates in one ``lax.scan`` (metrics stacked along a leading axis)."""
        return jax.lax.scan(self.update, rs, None, length=num_updates)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, params, rng: jax.Array, greedy: bool = False, num_episodes: int | None = None,
                 max_steps: int | None = None, delta=None) -> dict[str, jax.Array]:
        """One episode in each of ``num_episodes`` fresh envs (a separate instance from training).
        Returns raw-env episode returns [num_episodes] and whether each episode finished within
        ``max_steps`` agent steps (an unfinished one keeps its return so far). ``delta``: the member's δ."""
        c, env = self.config, self.env_for(delta)
        n = c.eval_episodes if num_episodes is None else num_episodes
        max_steps = max_steps or c.eval_max_steps
        if n == 0:  # evaluation switched off
            return {"returns": jnp.zeros((0,)), "lengths": jnp.zeros((0,)), "finished": jnp.zeros((0,), bool)}
        pa = params["actor"]
        k_reset, rng = jax.random.split(rng)
        env_state, obs = jax.vmap(env.reset)(jax.random.split(k_reset, n))
        actor_state = self.acting_actor.initial_state(pa, obs)
        zeros = jnp.zeros((n,), jnp.float32)
        carry = (env_state, obs, actor_state, jnp.zeros((n,), bool), zeros, zeros, jnp.zeros((), jnp.int32), rng)

        def cond(carry):
            return jnp.logical_and(carry[6] < max_steps, jnp.logical_not(carry[3].all()))

        def body(carry):
            env_state, obs, actor_state, finished, ret, length, t, rng = carry
            rng, k_act, k_env = jax.random.split(rng, 3)
            action, _ = self._act(pa, actor_state, obs, k_act, greedy=greedy)
            env_state, step, done, actor_state = self._env_step(pa, env_state, obs, actor_state, action,
                                                                jax.random.split(k_env, n), env)
            active = jnp.logical_not(finished)
            ret = ret + jnp.where(active, step.reward, 0.0)
            length = length + active.astype(jnp.float32)
            return env_state, step.obs, actor_state, finished | done, ret, length, t + 1, rng

        out = jax.lax.while_loop(cond, body, carry)
        return {"returns": out[4], "lengths": out[5], "finished": out[3]}

    def evaluate_both(self, params, rng: jax.Array, delta=None) -> dict[str, dict[str, jax.Array]]:
        """Sampled and greedy evaluation in one program (vmapped over the greedy flag)."""
        keys = jax.random.split(rng)
        out = jax.vmap(lambda k, g: self.evaluate(params, k, g, delta=delta))(keys, jnp.array([False, True]))
        return {"sampled": jax.tree.map(lambda x: x[0], out), "greedy": jax.tree.map(lambda x: x[1], out)}


# ---------------------------------------------------------------------------- pure entry points
def make_train(config: PPOConfig, env: JaxEnv | None = None, vmapped_seeds: int = 1):
    """``train(rng)``: init, ``config.num_updates`` updates, final evaluation (sampled and greedy).
    Pure and jittable; vmap it over seeds (:func:`train_seeds`; say how many in ``vmapped_seeds``)."""
    ppo = PPO(config, env, vmapped_seeds)

    def train(rng: jax.Array) -> dict[str, Any]:
        rng, k_init, k_eval = jax.random.split(rng, 3)
        rs = ppo.init(k_init)
        rs, metrics = ppo.run_updates(rs, ppo.config.num_updates)
        evals = ppo.evaluate_both(rs.params, k_eval)
        return {"runner_state": rs, "metrics": metrics, "eval": evals}

    return train


def train_seeds(config: PPOConfig, seeds: Sequence[int], env: JaxEnv | None = None) -> dict[str, Any]:
    """Train one agent per seed in one jitted call (vmapped; one after another on a CPU: ``over_seeds``).
    Leaves have a leading seed axis."""
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    devices = seed_device_count(config.seed_devices, len(keys))
    train = make_train(config, env, vmapped_seed_count(config.seed_batching, len(keys) // devices))
    return jax.jit(over_seeds(train, config.seed_batching, devices))(keys)


# ---------------------------------------------------------------------------- host-side runner
def _eval_key(seed: int, update: int) -> jax.Array:
    return jax.random.fold_in(jax.random.PRNGKey(int(seed) + 1_000_003), int(update))


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    se = float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else 0.0
    return float(x.mean()), se


class Runner:
    """Chunked training of several seeds (vmapped) with progress, checkpoints and resume. ``deltas``: one
    δ per seed (member) when several δs train as one program (``config.delta`` is their largest)."""

    def __init__(self, config: PPOConfig, seeds: Sequence[int], env: JaxEnv | None = None,
                 deltas: Sequence[int] | None = None):
        self.config = config.validate()
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise PipelagError("give at least one seed")
        self.deltas = None if deltas is None else [int(d) for d in deltas]
        how = self.config.seed_batching
        #: local devices the seeds are split over (seed_device_count); each vmaps (or maps) its share
        self.devices = seed_device_count(self.config.seed_devices, len(self.seeds))
        self.ppo = PPO(config, env, vmapped_seed_count(how, len(self.seeds) // self.devices))
        self._init = jax.jit(over_seeds(self.ppo.init, how, self.devices))
        self._chunks: dict[int, Any] = {}
        self._eval = jax.jit(over_seeds(self.ppo.evaluate_both, how, self.devices))

    def _members(self) -> tuple:
        return () if self.deltas is None else (jnp.asarray(self.deltas, jnp.int32),)

    def init_state(self) -> RunnerState:
        return self._init(jnp.stack([jax.random.PRNGKey(s) for s in self.seeds]), *self._members())

    def chunk(self, rs: RunnerState, n: int) -> tuple[RunnerState, dict[str, jax.Array]]:
        if n not in self._chunks:
            self._chunks[n] = jax.jit(over_seeds(functools.partial(self.ppo.run_updates, num_updates=n),
                                                 self.config.seed_batching, self.devices))
        return self._chunks[n](rs)

    def evaluate(self, params, update: int) -> dict[str, dict[str, np.ndarray]]:
        """Sampled and greedy evaluation of every seed; keys depend on (seed, update) only."""
        keys = jnp.stack([_eval_key(s, update) for s in self.seeds])
        return jax.tree.map(np.asarray, self._eval(params, keys, *self._members()))


def run(config: PPOConfig, seeds: Sequence[int] = (0,), out_dir: str | None = None, resume: bool = False,
        env: JaxEnv | None = None, progress: bool = True, stop_after_updates: int | None = None,
        runner: Runner | None = None, time_budget_s: float | None = None,
        batch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train ``seeds`` (vmapped) in jitted chunks of updates; between chunks print progress, log
    metrics, evaluate (every ``config.eval_every`` updates) and checkpoint (every
    ``config.checkpoint_every``). With ``out_dir`` everything is written there atomically
    (see :class:`~pipelag.algorithms.common.rundir.RunDir`); ``resume=True`` continues from its
    checkpoint, bit-identically on CPU. ``stop_after_updates`` ends early (after checkpointing), as an
    interruption would. ``runner``: reuse the compiled functions of an earlier :class:`Runner` of the
    same config and seeds.

    ``time_budget_s``: if, timed on the second chunk, ``config.total_timesteps`` would not fit in the
    budget, training restarts from scratch with fewer updates (a multiple of the chunk size, about 90%
    of what fits) — the same compiled program, the learning rate annealed over the new length, so the
    result is that of a run configured with the smaller ``total_timesteps`` (written to config.json).
    If the estimate still overruns, training stops at the budget (``stopped_by_time_budget``) and is
    evaluated as it is. Returns the results dict (also ``results.json``).

    ``batch``: configs that differ from ``config`` only in a whole δ ≥ 1, as ``[{"delta": 1}, {"delta": 2}, …]``,
    trained as one vmapped program of ``len(batch) × len(seeds)`` members (the env loops the largest δ's
    steps, the others masked; member (δ, seed) computes what a run of ``config.replace(delta=δ)`` with that
    seed computes). results.json then holds every member (``"batch"``) and ``"members"``: one results dict
    per δ, as its own run would write it."""
    from pipelag.algorithms.common import Progress, RunDir

    deltas = check_batch(batch)
    c = config.validate()
    if deltas is not None:
        c = c.replace(delta=float(max(deltas)))  # the program's env loops the largest δ
    member_seeds = [int(s) for s in seeds] if deltas is None else [int(s) for _ in deltas for s in seeds]
    member_deltas = None if deltas is None else [d for d in deltas for _ in seeds]
    if runner is None:
        from pipelag.algorithms.ppo.host import HostRunner, resolve_backend

        if env is None and resolve_backend(c) == "host":
            if deltas is not None:
                raise PipelagError("several δs batched in one program need a JAX env; run each δ on its own for "
                                   "the host backend")
            runner = HostRunner(c, member_seeds)
        else:
            runner = Runner(c, member_seeds, env, member_deltas)
    elif runner.config != c or runner.seeds != member_seeds or runner.deltas != member_deltas:
        raise PipelagError("the runner passed to run() was built for another config or other seeds")
    seeds = runner.seeds
    if resume and out_dir is None:
        raise PipelagError("resume needs an out_dir")
    rundir = RunDir(out_dir) if out_dir is not None else None
    stored = {} if deltas is None else {"batch": [{"delta": float(d)} for d in deltas]}
    resuming = (rundir.prepare({"algo": "ppo", **c.to_dict(), "seeds": seeds, **stored}, resume,
                               defaults=PPOConfig().to_dict()) if rundir else False)
    logger = rundir.logger() if rundir is not None else None
    t_start = time.perf_counter()
    chunk = c.chunk_size
    total = c.num_updates
    tag = f"ppo {c.env_id} {'instantaneous ' if c.instantaneous else ''}{c.arch}"

    def fresh():
        return (runner.init_state(), 0, {k: [] for k in METRIC_NAMES}, {"update": [], "sampled": [], "greedy": []},
                {"compile_s": 0.0, "train_s": 0.0, "train_steps": 0.0})

    rs, done, curves, evals, timing = fresh()
    prog = Progress(total * c.batch_size, len(seeds), tag=tag, enabled=progress)
    if resuming:
        rs, meta = rundir.load_checkpoint(rs)
        rs = jax.tree.map(jnp.asarray, rs)
        done, total = int(meta["update"]), int(meta["total_updates"])
        curves = {k: [np.asarray(meta["curves"][k])] for k in METRIC_NAMES}
        evals = {"update": list(meta["evals"]["update"]),
                 **{k: [np.asarray(v) for v in meta["evals"][k]] for k in ("sampled", "greedy")}}
        timing = {k: float(v) for k, v in meta["timing"].items()}
        logger.truncate_after(done * c.batch_size)
        prog.message(f"resumed {rundir.path} at update {done}/{total}")

    def checkpoint():
        if rundir is None:
            return
        meta = {"update": done, "total_updates": total, "timing": timing,
                "curves": {k: np.concatenate(v, axis=1) if v else np.zeros((len(seeds), 0)) for k, v in curves.items()},
                "evals": {"update": list(evals["update"]),
                          "sampled": [np.asarray(x) for x in evals["sampled"]],
                          "greedy": [np.asarray(x) for x in evals["greedy"]]}}
        rundir.save_checkpoint(rs, meta)

    ckpt_every = max(1, math.ceil(c.checkpoint_every / chunk)) * chunk if c.checkpoint_every else None
    chunks_run = 0
    budget_checked = resuming or not time_budget_s
    stopped_by_time = False
    while done < total:
        n = min(chunk, total - done)
        t0 = time.perf_counter()
        rs, m = runner.chunk(rs, n)
        jax.block_until_ready(rs)
        dt = time.perf_counter() - t0
        chunks_run += 1
        if chunks_run == 1:  # the first call compiles (and runs): counted apart
            timing["compile_s"] += dt
        else:
            timing["train_s"] += dt
            timing["train_steps"] += n * c.batch_size * len(seeds)
        done += n
        m = {k: np.asarray(v) for k, v in m.items()}
        for k in METRIC_NAMES:
            curves[k].append(m[k])
        if not budget_checked and chunks_run == 2:
            budget_checked = True
            reserve = 0.05 * time_budget_s + timing["compile_s"]  # evaluation: compile and run
            fits = int((time_budget_s - (time.perf_counter() - t_start) - reserve) / (dt / n)) + done
            if fits < total:
                total = max(chunk, int(0.9 * fits) // chunk * chunk)
                prog.message(f"{c.total_timesteps:,} steps do not fit in {time_budget_s:.0f}s at "
                             f"{n * c.batch_size * len(seeds) / dt:,.0f} steps/s: restarting with "
                             f"{total * c.batch_size:,} steps per seed")
                c = c.replace(total_timesteps=total * c.batch_size, updates_per_chunk=chunk)
                if rundir is not None:
                    from pipelag.algorithms.common.io import atomic_write_json, read_json

                    stored_json = read_json(rundir.path / rundir.CONFIG)
                    stored_json["config"] = {"algo": "ppo", **c.to_dict(), "seeds": seeds, **stored}
                    stored_json["time_budget"] = {"budget_s": time_budget_s, "planned_total_timesteps":
                                                  config.total_timesteps}
                    atomic_write_json(rundir.path / rundir.CONFIG, stored_json)
                    logger.truncate_after(0)
                compile_s = timing["compile_s"]
                rs, done, curves, evals, timing = fresh()
                rs = rs._replace(num_updates=jnp.full_like(rs.num_updates, total))
                timing["compile_s"] = compile_s
                prog = Progress(total * c.batch_size, len(seeds), tag=tag, enabled=progress)
                chunks_run = 1
                continue
        if prog._t0 is None:
            prog.start(done * c.batch_size)
        recent = np.nanmean(np.where(m["episodes"] > 0, m["episode_return"], np.nan), axis=1) \
            if np.any(m["episodes"] > 0) else np.full(len(seeds), np.nan)
        mean, se = _mean_se(recent)
        extra = f"return {mean:.2f} ± {se:.2f}" if np.isfinite(mean) else "return n/a"
        if c.eval_every and (done // c.eval_every) > ((done - n) // c.eval_every) and done < total:
            ev = runner.evaluate(rs.params, done)
            evals["update"].append(done)
            evals["sampled"].append(ev["sampled"]["returns"].mean(axis=1))
            evals["greedy"].append(ev["greedy"]["returns"].mean(axis=1))
            extra += f" | eval {evals['sampled'][-1].mean():.2f} (greedy {evals['greedy'][-1].mean():.2f})"
        prog.report(done * c.batch_size, extra)
        if logger is not None:
            logger.log(done * c.batch_size, {"update": done, "return_mean": mean, "return_se": se,
                                             **{k: float(np.nanmean(m[k])) for k in METRIC_NAMES
                                                if k != "episode_return"},
                                             "steps_per_s": prog.steps_per_second(done * c.batch_size)})
        stop = stop_after_updates is not None and done >= stop_after_updates and done < total
        over = (time_budget_s is not None and done < total
                and time.perf_counter() - t_start + 0.05 * time_budget_s + dt > time_budget_s)
        if ckpt_every and (done % ckpt_every == 0 or stop or over):
            checkpoint()
        if stop:
            if logger is not None:
                logger.close()
            return {"stopped_at_update": done, "runner_state": rs}
        if over:
            prog.message(f"time budget {time_budget_s:.0f}s reached at update {done}/{total}: evaluating now")
            stopped_by_time = True
            break

    if not stopped_by_time:  # before the final evaluation: a kill during it keeps the trained agent
        checkpoint()
    final = runner.evaluate(rs.params, done)
    timing["total_s"] = time.perf_counter() - t_start
    curves_arr = {k: np.concatenate(v, axis=1) for k, v in curves.items()}
    results = _results(c, seeds, curves_arr, final, timing, done)
    if deltas is not None:  # one results dict per δ, as its own run would write it
        results["batch"] = [{"delta": float(d)} for d in member_deltas]
        results["members"] = []
        for d in deltas:
            idx = np.asarray([i for i, x in enumerate(member_deltas) if x == d])
            results["members"].append(_results(
                c.replace(delta=float(d)), [seeds[i] for i in idx], {k: v[idx] for k, v in curves_arr.items()},
                jax.tree.map(lambda x, idx=idx: x[idx], final), dict(timing), done))
    results["stopped_by_time_budget"] = stopped_by_time
    if time_budget_s:
        results["time_budget_s"] = time_budget_s
        results["planned_total_timesteps"] = config.total_timesteps
    if rundir is not None:
        rundir.write_curves(update=np.arange(1, done + 1), agent_steps=np.arange(1, done + 1) * c.batch_size,
                            seeds=np.asarray(seeds), **curves_arr,
                            eval_update=np.asarray(evals["update"]),
                            eval_sampled=np.asarray(evals["sampled"]).reshape(len(evals["update"]), len(seeds)),
                            eval_greedy=np.asarray(evals["greedy"]).reshape(len(evals["update"]), len(seeds)))
        rundir.write_results(results)
        logger.close()
        prog.message(f"results in {rundir.path}")
    prog.message(_summary(results))
    results["runner_state"] = rs
    return results


def check_batch(batch) -> list[int] | None:
    """``run``'s ``batch`` as a list of whole δs (None stays None); one clear error otherwise."""
    from pipelag.algorithms.common.batch import check_batch as check_fields

    out = check_fields(batch, ("delta",), "δ")
    return None if out is None else [int(b["delta"]) for b in out]


def _results(c: PPOConfig, seeds, curves, final, timing, updates_done: int) -> dict[str, Any]:
    out: dict[str, Any] = {"algo": "ppo", "env_id": c.env_id, "arch": c.arch, "instantaneous": c.instantaneous,
                           "delta": c.delta, "action_history": c.action_history, "seeds": list(seeds),
                           "num_updates": updates_done, "agent_steps": updates_done * c.batch_size,
                           "env_steps_per_agent_step": max(1, int(round(c.delta))) if c.delta > 1 else 1,
                           "timing": timing}
    for mode in ("sampled", "greedy"):
        returns = final[mode]["returns"]
        if returns.shape[1] == 0:  # eval_episodes = 0: no evaluation (None, not NaN, in the JSON)
            out[f"eval_{mode}"] = {"per_seed": [None] * len(seeds), "mean": None, "se": None,
                                   "episodes_per_seed": 0, "unfinished": 0}
            continue
        per_seed = returns.mean(axis=1)
        mean, se = _mean_se(per_seed)
        out[f"eval_{mode}"] = {"per_seed": per_seed.tolist(), "mean": mean, "se": se,
                               "episodes_per_seed": int(final[mode]["returns"].shape[1]),
                               "unfinished": int((~final[mode]["finished"]).sum())}
    # training curve tail: mean return of episodes finished in the last 5% of updates
    ret, eps = curves["episode_return"], curves["episodes"]
    k = max(1, ret.shape[1] // 20)
    tail = np.array([np.nansum(np.nan_to_num(r[-k:]) * e[-k:]) / max(e[-k:].sum(), 1) for r, e in zip(ret, eps,
                                                                                                     strict=True)])
    mean, se = _mean_se(tail)
    out["train_return_last5pct"] = {"per_seed": tail.tolist(), "mean": mean, "se": se}
    if timing.get("train_s"):
        out["timing"]["steps_per_s_all_seeds"] = timing["train_steps"] / timing["train_s"]
    return out


def _summary(r: dict[str, Any]) -> str:
    s, g = r["eval_sampled"], r["eval_greedy"]
    if s["mean"] is None:
        return "no final evaluation (eval_episodes = 0)"
    return (f"final eval ({s['episodes_per_seed']} episodes/seed, {len(r['seeds'])} seeds): sampled "
            f"{s['mean']:.2f} ± {s['se']:.2f}, greedy {g['mean']:.2f} ± {g['se']:.2f}")
