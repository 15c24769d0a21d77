"""SAC drivers: a pure, jittable ``train(rng)`` for JAX envs, and a host loop for gymnasium envs.

Both drive the same per-seed functions of :class:`SACAgent` (one env per seed, as the paper):

    runner = agent.act(runner, mode)          # a_t from the actor's output, then the actor's tick on (o_t, a_t)
    (env step: a_t → r_t, o_{t+1})
    runner = agent.observe(runner, ...)       # store the transition; fresh actor state at an episode end
    runner, m = agent.learn(runner, n_actor)  # windows from the buffer → critic update (+ n_actor actor updates)

Schedule (cleanRL / Table 6): agent steps 0 … learning_starts−1 act uniformly at random (the actor
still ticks on the executed actions, so its activations and history stay those of the episode); from
then on every step is followed by one critic update and every ``policy_frequency``-th step by
``policy_frequency`` actor (and α) updates on the same windows. The steps after ``learning_starts``
are rounded down to a multiple of ``policy_frequency``.

* :func:`make_train` ``(config) -> train(rng)``: everything in ``lax.scan``, jit- and vmap-able over
  seeds (``jax.jit(jax.vmap(train))(keys)``).
* :func:`run`: the command-line entry: a run directory (config, checkpoints/resume, metrics, atomic
  results) around the same chunks (JAX envs) or around the host loop (gymnasium envs, e.g. MuJoCo):
  two jitted calls per env step (HostDriver), the replay buffer in device memory (donated, updated in place), the
  env on the CPU; several seeds step in lockstep (one host env per seed, vmapped learner).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pipelag.algorithms.common.packing import Packing
from pipelag.algorithms.common.seeds import over_seeds
from pipelag.algorithms.sac.buffer import (
    Buffer,
    Transition,
    buffer_add,
    buffer_init,
    filled_rows,
    gather,
    sample_windows,
    trimmed,
    untrimmed,
)
from pipelag.algorithms.sac.config import SACConfig
from pipelag.algorithms.sac.losses import Learner, SACState
from pipelag.algorithms.sac.networks import (
    TwinCritic,
    actor_window,
    build_actor,
    critic_input,
    history_of,
    mean_action,
    sample_action,
)
from pipelag.algorithms.sac.toy import TOY_ENVS
from pipelag.errors import PipelagError

MODES = ("random", "sample", "mean")


# ============================================================================================ environments
@dataclass(frozen=True)
class EnvSpec:
    obs_shape: tuple[int, ...]
    act_dim: int
    low: np.ndarray
    high: np.ndarray
    #: agent steps per evaluation episode at most
    eval_max_steps: int


def is_jax_env_id(env_id: str) -> bool:
    from pipelag.envs import list_envs

    # every "MJX/..." id goes to the registry, whose error lists the MJX ids (not to gymnasium)
    return env_id in TOY_ENVS or env_id in list_envs() or str(env_id).startswith("MJX/")


def resolve_backend(config: SACConfig) -> str:
    jax_env = is_jax_env_id(config.env_id)
    if config.backend == "auto":
        return "jax" if jax_env else "host"
    if config.backend == "jax" and not jax_env:
        from pipelag.envs import list_envs

        raise PipelagError(f"backend 'jax' needs a JAX env; {config.env_id!r} is not one (JAX envs: "
                           f"{', '.join([*TOY_ENVS, *list_envs()])}); use backend 'host' for gymnasium envs")
    if config.backend == "host" and config.env_id in TOY_ENVS:
        raise PipelagError(f"{config.env_id} is a JAX-only env; use backend 'jax' (or 'auto')")
    return config.backend


def _continuous_check(env_id: str, num_actions, action_shape) -> int:
    if num_actions is not None:
        raise PipelagError(f"SAC needs continuous actions, but {env_id} has {num_actions} discrete actions; "
                           "train it with PPO (pipelag train --algo ppo)")
    if len(tuple(action_shape)) != 1:
        raise PipelagError(f"SAC needs a flat action vector, {env_id} has action shape {tuple(action_shape)}")
    return int(action_shape[0])


def make_jax_env(config: SACConfig):
    """The wrapped JAX env (RealTime for δ > 1, EpisodeStats outermost) and its :class:`EnvSpec`."""
    from pipelag.envs import make
    from pipelag.envs.wrappers import wrap_env

    if config.env_id in TOY_ENVS:
        try:
            base = TOY_ENVS[config.env_id](**config.env_options)
        except TypeError as e:
            raise PipelagError(f"bad env_options for {config.env_id}: {e}") from e
    else:
        base = make(config.env_id, **config.env_options)
    act_dim = _continuous_check(config.env_id, base.num_actions, base.action_shape)
    env = wrap_env(base, delta=config.delta, default_policy=config.default_policy, episode_stats=True)
    low = np.broadcast_to(np.asarray(getattr(base, "action_low", -1.0), np.float32), (act_dim,)).copy()
    high = np.broadcast_to(np.asarray(getattr(base, "action_high", 1.0), np.float32), (act_dim,)).copy()
    limit = config.eval_max_steps or env.max_episode_steps or 1000
    return env, EnvSpec(tuple(env.obs_shape), act_dim, low, high, int(limit))


def make_host_vec_env(config: SACConfig, num_envs: int, seed: int):
    """The host (gymnasium) vector env of ``config``: MuJoCo tasks through :mod:`pipelag.envs.mujoco`,
    any other gymnasium id through :func:`pipelag.envs.host.make_host_env`."""
    import gymnasium as gym

    from pipelag.envs.host import make_host_env
    from pipelag.envs.mujoco import is_mujoco_id, make_mujoco_env

    delta = config.delta if config.delta > 1 else 1
    opts = dict(config.env_options)
    try:
        if is_mujoco_id(config.env_id):
            env = make_mujoco_env(config.env_id, num_envs, seed, delta=delta, default_policy=config.default_policy,
                                  **opts)
        else:
            env = make_host_env(config.env_id, num_envs, seed, delta=delta, default_policy=config.default_policy,
                                **opts)
    except PipelagError as e:
        if is_mujoco_id(config.env_id) or "unknown gymnasium id" not in str(e):
            raise
        raise PipelagError(f"unknown env {config.env_id!r}: not a JAX env ({', '.join(TOY_ENVS)} or "
                           f"pipelag.envs.list_envs()), not a MuJoCo task and not a registered gymnasium id") from e
    except (TypeError, gym.error.Error) as e:
        raise PipelagError(f"cannot create {config.env_id} with env_options {opts}: {e}") from e
    space = env.single_action_space
    if not isinstance(space, gym.spaces.Box):
        env.close()
        _continuous_check(config.env_id, getattr(space, "n", "several"), ())
    return env


def host_env_spec(config: SACConfig, env) -> EnvSpec:
    space = env.single_action_space
    act_dim = _continuous_check(config.env_id, None, space.shape)
    low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise PipelagError(f"{config.env_id} has an unbounded action space; SAC's tanh policy needs finite bounds")
    limit = config.eval_max_steps
    if not limit:
        try:
            limit = env.envs.envs[0].spec.max_episode_steps or 1000
        except AttributeError:
            limit = 1000
    return EnvSpec(tuple(env.obs_shape), act_dim, low, high, int(limit))


# ============================================================================================ the agent
class Runner(NamedTuple):
    """Everything one seed's training carries from step to step."""

    sac: SACState
    buffer: Buffer
    actor_state: Any  # the actor's state at the start of the current tick (after ``act``: after it)
    obs: jax.Array  # o_t
    start: jax.Array  # o_t is the first observation of an episode
    action: jax.Array  # a_t (set by ``act``)
    history: Any  # the actor's history before tick t (set by ``act``)
    key: jax.Array
    step: jax.Array  # transitions recorded
    env_state: Any  # JAX driver only (None on the host)
    #: this member's config when several configs train as one vmapped program (None: the driver's)
    member: Any = None


class Member(NamedTuple):
    """What one member of a batch of configs (one vmapped program) has of its own: the actor's dropout
    rate and the env's δ (each None when the batch does not vary it)."""

    dropout: Any = None
    delta: Any = None


class SACAgent:
    """The SAC of DESIGN §3 for one env spec: networks, learner and the per-seed step functions."""

    def __init__(self, config: SACConfig, spec: EnvSpec):
        self.config = config.validate()
        self.spec = spec
        self.net = build_actor(config, spec.obs_shape, spec.act_dim)
        self.window = actor_window(self.net, config.window)
        if config.learning_starts < self.window:
            raise PipelagError(f"learning_starts ({config.learning_starts}) must be ≥ the actor's window "
                               f"({self.window} steps): windows are sampled from the buffer")
        self.critic = TwinCritic(config.critic_hidden, config.critic_layers)
        low, high = jnp.asarray(spec.low), jnp.asarray(spec.high)
        self.low, self.high = low, high
        self.scale, self.bias = (high - low) / 2.0, (high + low) / 2.0
        self.learner = Learner(self.net, self.critic, scale=self.scale, bias=self.bias, gamma=config.gamma,
                               tau=config.tau, policy_lr=config.policy_lr, q_lr=config.q_lr,
                               adam_eps=config.adam_eps, autotune=config.autotune, alpha=config.alpha,
                               target_entropy=-config.target_entropy_scale * spec.act_dim,
                               target_network_frequency=config.target_network_frequency)
        pf = config.policy_frequency
        self.train_iterations = (config.total_timesteps - config.learning_starts) // pf
        #: agent steps of the run (learning_starts + a multiple of policy_frequency)
        self.total_steps = config.learning_starts + pf * self.train_iterations

    def with_dropout_rate(self, rate) -> SACAgent:
        """This agent with its actor dropping at ``rate`` (may be traced: one member of a vmapped batch
        of dropout rates). The actor must have been built with dropout > 0 (see
        ``PipelinedNetwork.with_dropout_rate``); the critics never drop."""
        view = copy.copy(self)
        view.net = self.net.with_dropout_rate(rate)
        view.learner = copy.copy(self.learner)
        view.learner.net = view.net
        return view

    def for_member(self, member: Member | None) -> SACAgent:
        """The agent of a member: itself, or a view with the member's dropout rate."""
        return self if member is None or member.dropout is None else self.with_dropout_rate(member.dropout)

    def for_runner(self, runner: Runner) -> SACAgent:
        return self.for_member(runner.member)

    # ------------------------------------------------------------------ per seed, unbatched
    def init_runner(self, key: jax.Array, obs: jax.Array, env_state: Any = None) -> Runner:
        k_sac, k_run = jax.random.split(key)
        obs = jnp.asarray(obs, jnp.float32)
        hist = history_of(self.net.zero_state(()))  # shapes only (the values come from initial_state)
        critic_dim = critic_input(obs[None], jax.tree.map(lambda h: h[None], hist)).shape[-1]
        sac = self.learner.init(k_sac, critic_dim, self.spec.act_dim)
        state0 = self.net.initial_state(sac.actor_params, obs)
        hist = history_of(state0)
        action = jnp.zeros((self.spec.act_dim,), jnp.float32)
        example = Transition(obs, action, jnp.zeros((), jnp.float32), jnp.zeros((), bool), obs,
                             jnp.zeros((), bool), hist)
        buffer = buffer_init(self.config.capacity, example)
        return Runner(sac, buffer, state0, obs, jnp.ones((), bool), action, hist, k_run,
                      jnp.zeros((), jnp.int32), env_state)

    def restart_episode(self, runner: Runner, obs: jax.Array) -> Runner:
        """Begin a new episode at ``obs`` (host resume: the gymnasium env state is not checkpointed)."""
        obs = jnp.asarray(obs, jnp.float32)
        return runner._replace(obs=obs, start=jnp.ones((), bool),
                               actor_state=self.net.initial_state(runner.sac.actor_params, obs))

    def policy(self, params, actor_state, obs, key, mode: str):
        """``(a_t, state after the tick, history before it)`` for one env.

        With ``config.dropout`` > 0 a key for this tick's dropout masks is split off ``key``: the actor
        drops in every mode (warm-up ticks, training rollouts, and evaluation with the mean or sampled
        action, as the paper applies dropout at inference too)."""
        action, k_drop = self.draw(params, actor_state, obs, key, mode)
        hist = history_of(actor_state)
        _, after = self.net.step(params, actor_state, obs, action if self.net.action_spec.history else None,
                                 key=k_drop)
        return action, after, hist

    def draw(self, params, actor_state, obs, key, mode: str):
        """``(a_t, the tick's dropout key or None)``: the action of ``policy`` without the tick."""
        if mode not in MODES:
            raise PipelagError(f"unknown action mode {mode!r}; use one of {MODES}")
        k_drop = None
        if self.net.uses_dropout:
            key, k_drop = jax.random.split(key)
        if mode == "random":
            return jax.random.uniform(key, (self.spec.act_dim,), minval=self.low, maxval=self.high), k_drop
        out = self.net.output(params, actor_state, obs, key=k_drop)
        if mode == "sample":
            return sample_action(out, key, self.scale, self.bias)[0], k_drop
        return mean_action(out, self.scale, self.bias), k_drop

    @property
    def acts_before_update(self) -> bool:
        """Whether the next action is known before this step's update: a pipelined actor acts on the head
        value it stored last tick (no parameters involved), an instantaneous one on a pass with the updated
        parameters."""
        return not self.net.instantaneous

    def next_action(self, runner: Runner, learn: bool, mode: str) -> jax.Array:
        """The action ``act(learn(runner)[0] if learn else runner, mode)`` takes, computed without the
        update (``acts_before_update`` actors only): the host driver steps the env with it while the
        device learns. The keys are split as ``learn`` and ``act`` split them (tested equal)."""
        if not self.acts_before_update:
            raise ValueError("an instantaneous actor's next action needs the update first")
        key = runner.key
        if learn:  # learn splits the runner's key twice (the windows, then the update) before act
            key = jax.random.split(jax.random.split(key)[0])[0]
        return self.draw(runner.sac.actor_params, runner.actor_state, runner.obs, jax.random.split(key)[1], mode)[0]

    @property
    def acts_ahead(self) -> bool:
        """Whether the action after next is known when ``act`` has ticked, up to one bit the env gives
        later: whether the episode ends in between (``next_actions_ahead``). True for a pipelined actor
        whose activations restart at zeros (its action after a reset is then that of a zero head)."""
        return self.acts_before_update and self.net.init_activations == "zeros"

    def next_actions_ahead(self, runner: Runner, learn: bool, mode: str) -> jax.Array:
        """``[2, act_dim]``: the action ``next_action`` will give after the coming ``observe``, if the
        episode goes on (row 0) or ends there (row 1), with ``learn``/``mode`` the schedule of that step.
        ``observe`` leaves the key alone and a pipelined actor's action does not read the observation, so
        both rows are exact (tested): the host driver picks one by the env's ``done`` and never waits for
        ``store``."""
        if not self.acts_ahead:
            raise ValueError("only a pipelined actor with zero initial activations acts ahead")
        reset = runner._replace(actor_state=self.net.initial_state(runner.sac.actor_params, runner.obs))
        return jnp.stack([self.next_action(runner, learn, mode), self.next_action(reset, learn, mode)])

    def act(self, runner: Runner, mode: str) -> Runner:
        key, k = jax.random.split(runner.key)
        action, after, hist = self.policy(runner.sac.actor_params, runner.actor_state, runner.obs, k, mode)
        return runner._replace(actor_state=after, action=action, history=hist, key=key)

    def observe(self, runner: Runner, reward, terminated, truncated, final_obs, next_obs) -> Runner:
        terminated = jnp.asarray(terminated, bool)
        done = jnp.logical_or(terminated, jnp.asarray(truncated, bool))
        tr = Transition(runner.obs, runner.action, jnp.asarray(reward, jnp.float32), terminated,
                        jnp.asarray(final_obs, jnp.float32), runner.start, runner.history)
        buffer = buffer_add(runner.buffer, tr)
        next_obs = jnp.asarray(next_obs, jnp.float32)
        fresh = self.net.initial_state(runner.sac.actor_params, next_obs)
        actor_state = jax.tree.map(lambda f, s: jnp.where(done, f, s), fresh, runner.actor_state)
        return runner._replace(buffer=buffer, actor_state=actor_state, obs=next_obs, start=done,
                               step=runner.step + 1)

    def sample(self, runner: Runner, read_in_loop: bool = True):
        """``(runner, windows, first)``: a batch of windows from the buffer (see :mod:`.buffer`).
        ``read_in_loop=False`` only in a program that does not also write the buffer (``buffer._read``)."""
        key, k = jax.random.split(runner.key)
        idx, first = sample_windows(runner.buffer, k, self.config.batch_size, self.window, read_in_loop)
        return runner._replace(key=key), gather(runner.buffer, idx, read_in_loop), first

    def learn(self, runner: Runner, actor_updates: int, read_in_loop: bool = True):
        """One critic update and ``actor_updates`` actor/α updates on one batch of windows."""
        runner, window, first = self.sample(runner, read_in_loop)
        key, k = jax.random.split(runner.key)
        sac, metrics = self.learner.update(runner.sac, window, first, k, actor_updates)
        return runner._replace(sac=sac, key=key), metrics

    def schedule(self, t: int) -> tuple[bool, int, str]:
        """For the transition of agent step ``t``: (critic update?, actor updates, mode of step t+1)."""
        c = self.config
        learn = t >= c.learning_starts and t < self.total_steps
        actor = c.policy_frequency if learn and (t - c.learning_starts) % c.policy_frequency == \
            c.policy_frequency - 1 else 0
        return learn, actor, ("random" if t + 1 < c.learning_starts else "sample")


METRIC_KEYS = ("q_loss", "q_mean", "target_mean", "actor_loss", "entropy", "alpha")


# ============================================================================================ JAX driver
class JaxDriver:
    """The jitted driver's pieces (per seed, pure): ``init``, ``warmup``, ``iterate``, ``evaluate``."""

    def __init__(self, config: SACConfig, env=None):
        if env is None:
            if resolve_backend(config.validate()) != "jax":
                raise PipelagError(f"{config.env_id!r} is not a JAX env; the jitted driver needs one of "
                                   f"{', '.join(TOY_ENVS)} or pipelag.envs.list_envs() (use run() / the host loop "
                                   "for gymnasium envs)")
            env, spec = make_jax_env(config)
        else:
            act_dim = _continuous_check(env.env_id, env.num_actions, env.action_shape)
            low = np.broadcast_to(np.asarray(getattr(env, "action_low", -1.0), np.float32), (act_dim,)).copy()
            high = np.broadcast_to(np.asarray(getattr(env, "action_high", 1.0), np.float32), (act_dim,)).copy()
            spec = EnvSpec(tuple(env.obs_shape), act_dim, low, high,
                           int(config.eval_max_steps or env.max_episode_steps or 1000))
        self.env, self.spec = env, spec
        self.agent = SACAgent(config, spec)
        self.config = self.agent.config

    def init(self, key: jax.Array, member: Member | None = None) -> Runner:
        """A member's runner; ``member``: its own dropout rate / δ (several configs as one vmapped
        program, see :func:`run`'s ``batch``), None for the driver's config."""
        k_env, k_agent = jax.random.split(key)
        env_state, obs = self.env_for(member).reset(k_env)
        runner = self.agent.init_runner(k_agent, obs, env_state)
        return runner._replace(member=member)

    def env_for(self, member: Member | None):
        """The env of a member: the driver's, or a view stepping the member's δ (built with the largest)."""
        from pipelag.envs.wrappers import with_member_delta

        return with_member_delta(self.env, None if member is None else member.delta)

    def _env_step(self, runner: Runner, mode: str):
        from pipelag.envs.wrappers import episode_stats

        runner = self.agent.for_runner(runner).act(runner, mode)
        key, k_env = jax.random.split(runner.key)
        env_state, st = self.env_for(runner.member).step(k_env, runner.env_state, runner.action)
        runner = runner._replace(env_state=env_state, key=key)
        runner = self.agent.observe(runner, st.reward, st.terminated, st.truncated, st.final_obs, st.obs)
        ret, _, _, ended = episode_stats(env_state)
        return runner, (jnp.where(ended, ret, 0.0), ended.astype(jnp.float32))

    def warmup(self, runner: Runner, steps: int):
        """``steps`` random-action steps, no learning. Returns (runner, summary)."""
        def body(r, _):
            return self._env_step(r, "random")

        runner, (ret, ended) = jax.lax.scan(body, runner, None, length=steps)
        return runner, _summary(ret, ended, None)

    def iterate(self, runner: Runner, iterations: int):
        """``iterations`` × (policy_frequency steps with a critic update each, then policy_frequency actor
        updates on the last step's windows). Returns (runner, summary of episodes ended and mean losses).

        The policy_frequency steps are an inner ``lax.scan`` (one buffer write and one read per loop
        body: two writes in one body would make XLA copy the buffer, see ``buffer._read``)."""
        pf, agent = self.config.policy_frequency, self.agent.for_runner(runner)

        def step(carry, _):
            r = carry[0]
            r, (ret, ended) = self._env_step(r, "sample")
            r, window, first = agent.sample(r)
            key, k = jax.random.split(r.key)
            sac, m = agent.learner.critic_step(r.sac, window, first, k)
            return (r._replace(sac=sac, key=key), window, first), (ret, ended, m)

        def body(r, _):
            example = agent.sample(r)
            (r, window, first), (rets, ends, ms) = jax.lax.scan(step, (r, *example[1:]), None, length=pf)
            key, k = jax.random.split(r.key)
            sac = r.sac
            for kk in jax.random.split(k, pf):
                sac, m_actor = agent.learner.actor_step(sac, window, first, kk)
            m = {**jax.tree.map(lambda x: x[-1], ms), **m_actor, "alpha": agent.learner.alpha(sac)}
            return r._replace(sac=sac, key=key), (jnp.sum(rets), jnp.sum(ends), m)

        runner, (ret, ended, metrics) = jax.lax.scan(body, runner, None, length=iterations)
        return runner, _summary(ret, ended, metrics)

    def evaluate(self, actor_params, key: jax.Array, episodes: int, mode: str = "mean", member: Member | None = None):
        """Returns ``[episodes]`` undiscounted raw-env returns (episodes cut at ``eval_max_steps``).
        ``member``: the member's dropout rate / δ (None: the driver's config)."""
        agent, env = self.agent.for_member(member), self.env_for(member)
        net = agent.net

        def one(k):
            k_reset, k_run = jax.random.split(k)
            env_state, obs = env.reset(k_reset)
            s = net.initial_state(actor_params, obs)

            def body(c, kk):
                env_state, s, obs, ret, done = c
                k_a, k_e = jax.random.split(kk)
                action, s2, _ = agent.policy(actor_params, s, obs, k_a, mode)
                env_state, st = env.step(k_e, env_state, action)
                ret = ret + jnp.where(done, 0.0, st.reward)
                return (env_state, s2, st.obs, ret, jnp.logical_or(done, st.done)), None

            init = (env_state, s, obs, jnp.zeros(()), jnp.zeros((), bool))
            (_, _, _, ret, _), _ = jax.lax.scan(body, init, jax.random.split(k_run, self.spec.eval_max_steps))
            return ret

        return jax.vmap(one)(jax.random.split(key, episodes))

    # ------------------------------------------------------------------ compiled, vmapped over seeds (cached)
    def compiled_init(self):
        return self._cached(("init",), lambda: jax.jit(over_seeds(self.init)))  # (HostDriver: why not vmap)

    def compiled(self, kind: str, n: int):
        f = partial(self.warmup, steps=n) if kind == "warmup" else partial(self.iterate, iterations=n)
        return self._cached((kind, n), lambda: jax.jit(jax.vmap(f), donate_argnums=0))

    def compiled_eval(self, mode: str):
        """``f(actor_params, keys[, members])`` vmapped over the members."""
        def f(params, key, member=None):
            return self.evaluate(params, key, self.config.eval_episodes, mode, member)

        return self._cached(("eval", mode), lambda: jax.jit(jax.vmap(f)))

    def _cached(self, key, make):
        cache = self.__dict__.setdefault("_jit_cache", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]

    @property
    def iterations_per_chunk(self) -> int:
        return max(1, self.config.chunk_size // self.config.policy_frequency)

    def chunks(self) -> list[tuple[str, int]]:
        """The run as a list of (kind, count) chunks: ("warmup", steps) then ("train", iterations)."""
        c = self.config
        out: list[tuple[str, int]] = []
        left = c.learning_starts
        while left > 0:
            out.append(("warmup", min(c.chunk_size, left)))
            left -= out[-1][1]
        left = self.agent.train_iterations
        while left > 0:
            out.append(("train", min(self.iterations_per_chunk, left)))
            left -= out[-1][1]
        return out


def _summary(ret, ended, metrics):
    n = jnp.sum(ended)
    out = {"episodes": n, "episode_return": jnp.where(n > 0, jnp.sum(ret) / jnp.maximum(n, 1), jnp.nan)}
    if metrics is not None:
        out.update({k: jnp.mean(v) for k, v in metrics.items()})
    return out


def make_train(config: SACConfig, env=None):
    """``train(rng) -> dict``: a whole SAC run for one seed, pure and jittable (vmap it over seeds).

    ``env``: a continuous :class:`~pipelag.envs.base.JaxEnv` already wrapped (``wrap_env(..., episode_stats=
    True)``); by default the env of ``config.env_id`` (must be a JAX env). Returns ``{"state": SACState,
    "metrics": per-chunk summaries, "eval_mean": [eval_episodes] returns with the mean action,
    "eval_sample": ... with sampled actions}``."""
    driver = JaxDriver(config, env)

    def train(rng):
        k_init, k_eval_m, k_eval_s = jax.random.split(rng, 3)
        runner = driver.init(k_init)
        pick = lambda s: {k: jnp.asarray(s.get(k, jnp.nan), jnp.float32)
                          for k in ("episodes", "episode_return", *METRIC_KEYS)}
        summaries = []
        if config.learning_starts:
            runner, s = driver.warmup(runner, config.learning_starts)
            summaries.append(jax.tree.map(lambda x: x[None], pick(s)))
        per, iters = driver.iterations_per_chunk, driver.agent.train_iterations
        if iters // per:  # identical chunks in one scan (one compiled body)
            runner, s = jax.lax.scan(lambda r, _: (lambda o: (o[0], pick(o[1])))(driver.iterate(r, per)),
                                     runner, None, length=iters // per)
            summaries.append(s)
        if iters % per:
            runner, s = driver.iterate(runner, iters % per)
            summaries.append(jax.tree.map(lambda x: x[None], pick(s)))
        metrics = {k: jnp.concatenate([s[k] for s in summaries]) for k in summaries[0]}
        out = {"state": runner.sac, "metrics": metrics}
        if config.eval_episodes:
            out["eval_mean"] = driver.evaluate(runner.sac.actor_params, k_eval_m, config.eval_episodes, "mean")
            out["eval_sample"] = driver.evaluate(runner.sac.actor_params, k_eval_s, config.eval_episodes, "sample")
        return out

    train.driver = driver  # type: ignore[attr-defined]
    return train


# ============================================================================================ host driver
class HostStep(NamedTuple):
    """What ``HostDriver.step`` returns."""

    state: Any  # the packed runner
    action: Any  # the next action, [seeds, act_dim] (device or host array)
    metrics: Any  # (names, [seeds, len(names)] values) of this step's update
    learned: bool  # a critic update ran
    actor_updates: int
    ahead: Any  # [seeds, 2, act_dim]: the action after next if the episode goes on / ends (or None)


def _rest(runner: Runner) -> Runner:
    """The runner without its SAC state and replay data (what the host driver packs as "rest")."""
    return runner._replace(sac=None, buffer=runner.buffer._replace(data=None))


def _joined(sac, rest: Runner, data) -> Runner:
    """``_rest`` undone: the runner ``rest`` with its SAC state and replay data put back."""
    return rest._replace(sac=sac, buffer=rest.buffer._replace(data=data))


def _pack_step(reward, terminated, truncated, final_obs, next_obs) -> np.ndarray:
    """An env step's outputs for all seeds as one float32 array [seeds, 3 + 2·obs] (one host→device copy)."""
    n = len(reward)
    return np.concatenate([np.asarray(reward, np.float32).reshape(n, 1), np.asarray(terminated).reshape(n, 1),
                           np.asarray(truncated).reshape(n, 1), np.asarray(final_obs).reshape(n, -1),
                           np.asarray(next_obs).reshape(n, -1)], axis=1, dtype=np.float32)


def _unpack_step(packed: jax.Array, obs_shape: tuple[int, ...]):
    """``_pack_step`` undone for one seed (inside the jitted step)."""
    size = int(np.prod(obs_shape))
    return (packed[0], packed[1] > 0.5, packed[2] > 0.5, packed[3:3 + size].reshape(obs_shape),
            packed[3 + size:].reshape(obs_shape))


def _pick_ahead(ahead, terminated, truncated) -> np.ndarray:
    """The next action from ``HostStep.ahead`` [seeds, 2, act_dim], by whether each seed's episode ended."""
    done = np.logical_or(terminated, truncated).astype(int)
    return np.asarray(ahead)[np.arange(len(done)), done]


class _run_now:
    """``ThreadPoolExecutor.submit``'s result without a thread: the call made at once."""

    def __init__(self, fn, *args):
        self._value = fn(*args)

    def result(self):
        return self._value


class HostDriver:
    """SAC on gymnasium envs: one host env per seed (lockstep), two jitted calls per env step (below)."""

    def __init__(self, config: SACConfig, num_seeds: int, seed: int, overlap: bool | None = None):
        self.config = config.validate()
        # dispatch the device calls beside the env step (run_steps); by default on a GPU only: on a CPU
        # the device work needs the same cores as the env and the thread's hand-over costs a little
        self.overlap = jax.default_backend() != "cpu" if overlap is None else bool(overlap)
        self.num_seeds, self.seed = int(num_seeds), int(seed)
        self.env = make_host_vec_env(config, self.num_seeds, self.seed)
        self.spec = host_env_spec(config, self.env)
        self.agent = SACAgent(config, self.spec)
        agent = self.agent
        # the init runs seed by seed on a CPU (over_seeds): vmapped over 8 seeds of the paper's MuJoCo sizes
        # it hung in XLA's CPU runtime (the steps themselves run vmapped)
        self._init = jax.jit(over_seeds(agent.init_runner))
        self._restart = jax.jit(jax.vmap(agent.restart_episode), donate_argnums=0)
        self._act = {m: jax.jit(jax.vmap(partial(agent.act, mode=m)), donate_argnums=0) for m in MODES}
        self._steps: dict[Any, Any] = {}
        # how the SAC state and the rest of one seed's runner pack (shapes only: nothing is computed)
        one = jax.eval_shape(agent.init_runner, jax.random.PRNGKey(0), jnp.zeros(self.spec.obs_shape))
        self._packing = (Packing(one.sac), Packing(_rest(one)))
        self._metric_names: dict[tuple, tuple[str, ...]] = {}

    # One env step is two jitted calls on the runner split into three parts (``pack``): the SAC state
    # (networks and optimisers), the replay buffer and the rest (actor state, observation, keys, ...):
    #   store: write the transition into the buffer (in place), reset the actor at episode ends and, for a
    #          pipelined actor, compute the next action (``SACAgent.next_action``: it needs no update);
    #          reads the SAC state, donates buffer and rest;
    #   learn: sample windows, update, tick the actor (``act``); reads the buffer, donates SAC state and rest.
    # The host takes the action from ``store`` and steps its env while the device runs ``learn``; with
    # ``acts_ahead`` actors ``learn`` also returns the action after next for both outcomes of the next env
    # step, and the host picks one by ``done`` without waiting for ``store`` at all. Why not
    # one call: a program that writes the buffer and then reads it must read in a loop (buffer._read), and
    # on a GPU each trip of that loop makes the host wait; the learning call only reads, with one gather.
    # The SAC state and the rest travel packed, one array per dtype (common.packing): ~70 leaves per call
    # cost the host more than the device work of a step.
    def pack(self, runner: Runner):
        """``(sac, buffer, rest)``: the runner as the step's calls take it (the buffer as it is)."""
        sac_pk, rest_pk = self._packing
        if "pack" not in self._steps:
            self._steps["pack"] = jax.jit(jax.vmap(lambda sac, rest: (sac_pk.pack(sac), rest_pk.pack(rest))))
        sac, rest = self._steps["pack"](runner.sac, _rest(runner))
        return sac, runner.buffer.data, rest

    def unpack(self, state) -> Runner:
        sac_pk, rest_pk = self._packing
        if "unpack" not in self._steps:
            self._steps["unpack"] = jax.jit(jax.vmap(lambda sac, rest: (sac_pk.unpack(sac), rest_pk.unpack(rest))))
        sac, data, rest = state
        return _joined(*self._steps["unpack"](sac, rest), data)

    def _join(self, state) -> Runner:
        """``unpack`` inside a jitted step (one seed)."""
        sac_pk, rest_pk = self._packing
        sac, data, rest = state
        return _joined(sac_pk.unpack(sac), rest_pk.unpack(rest), data)

    def _store_fn(self, learn: bool, next_mode: str):
        key = ("store", learn, next_mode)
        if key not in self._steps:
            agent, shape, (_, rest_pk) = self.agent, self.spec.obs_shape, self._packing
            peek = agent.acts_before_update

            def one(sac, buffer, rest, packed):
                runner = self._join((sac, buffer, rest))
                reward, term, trunc, final_obs, next_obs = _unpack_step(packed, shape)
                runner = agent.observe(runner, reward, term, trunc, final_obs, next_obs)
                action = agent.next_action(runner, learn, next_mode) if peek else runner.action
                return runner.buffer.data, rest_pk.pack(_rest(runner)), action

            self._steps[key] = jax.jit(jax.vmap(one), donate_argnums=(1, 2))
        return self._steps[key]

    def _learn_fn(self, learn: bool, actor_updates: int, next_mode: str, ahead: tuple | None):
        """``ahead``: (learn, mode) of the next step's schedule, to compute the actions after next
        (``SACAgent.next_actions_ahead``), or None."""
        key = ("learn", learn, actor_updates, next_mode, ahead)
        if key not in self._steps:
            agent, (sac_pk, rest_pk) = self.agent, self._packing

            def one(sac, buffer, rest):
                runner = self._join((sac, buffer, rest))
                metrics = jnp.zeros((0,))
                if learn:  # the metrics as one array (one buffer to hand back, not one per metric)
                    runner, m = agent.learn(runner, actor_updates, read_in_loop=False)
                    self._metric_names[key] = tuple(sorted(m))  # (known when traced, before the first result)
                    metrics = jnp.stack([jnp.asarray(m[k], jnp.float32) for k in self._metric_names[key]])
                runner = agent.act(runner, next_mode)
                later = jnp.zeros((0,)) if ahead is None else agent.next_actions_ahead(runner, *ahead)
                return sac_pk.pack(runner.sac), rest_pk.pack(_rest(runner)), runner.action, metrics, later

            self._steps[key] = jax.jit(jax.vmap(one), donate_argnums=(0, 2))
        return self._steps[key]

    def step(self, state, t: int, reward, terminated, truncated, final_obs, next_obs, ahead=None) -> HostStep:
        """Record the env step of agent step ``t`` in the packed runner ``state`` (``pack``) and do what the
        schedule says (update, next action). ``ahead``: the previous step's ``HostStep.ahead`` (None at
        the start of ``run_steps``): the next action is then picked from it on the host by the env's
        ``done`` instead of waiting for this step's ``store`` call."""
        agent = self.agent
        learn, n_actor, next_mode = agent.schedule(t)
        sac, data, rest = state
        data, rest, action = self._store_fn(learn, next_mode)(
            sac, data, rest, _pack_step(reward, terminated, truncated, final_obs, next_obs))
        later = agent.schedule(t + 1)[::2] if agent.acts_ahead else None
        sac, rest, acted, metrics, new_ahead = self._learn_fn(learn, n_actor, next_mode, later)(sac, data, rest)
        if not agent.acts_before_update:
            action = acted
        elif ahead is not None:  # both candidates were computed a step ago: no wait for `store`
            action = _pick_ahead(ahead, terminated, truncated)
        names = self._metric_names.get(("learn", learn, n_actor, next_mode, later), ())
        return HostStep((sac, data, rest), action, (names, metrics), learn, n_actor,
                        new_ahead if later is not None else None)

    def init(self, keys: jax.Array) -> Runner:
        obs = self.env.reset()
        runner = self._init(keys, jnp.asarray(obs))
        return self._act["random" if self.config.learning_starts > 0 else "sample"](runner)

    def resume(self, runner: Runner, env_seed: int) -> Runner:
        """Continue a restored runner: a fresh env episode per seed (env states are not checkpointed)."""
        self.env.close()
        self.env = make_host_vec_env(self.config, self.num_seeds, env_seed)
        obs = self.env.reset()
        runner = self._restart(runner, jnp.asarray(obs))
        t = int(np.asarray(runner.step)[0])
        return self._act["random" if t < self.config.learning_starts else "sample"](runner)

    def run_steps(self, runner: Runner, n: int, on_episode=None):
        """``n`` env steps. ``on_episode(seed_index, raw_return)`` is called for every finished episode.
        Returns (runner, {"updates": critic updates done, "metrics": last metrics (host floats)}).

        With an ``acts_ahead`` actor and ``overlap`` on, a worker thread dispatches each step's calls while
        this thread steps the env: the next env step needs only the previous step's ``ahead``, so launching
        the device work (which releases the GIL) runs beside gymnasium's Python. The calls, their order and
        so the results are those of the loop without the thread (tested)."""
        t = int(np.asarray(runner.step)[0])
        updates, last, action = 0, None, runner.action
        chain = [self.pack(runner)]  # the latest packed state; only the dispatching thread moves it on

        def dispatch(t: int, env_out) -> HostStep:
            out = self.step(chain[0], t, *env_out)
            chain[0] = out.state
            return out

        def count(out: HostStep):
            nonlocal updates, last
            if out.learned:
                updates += 1
                if out.actor_updates:
                    last = out.metrics

        pool = ThreadPoolExecutor(1, "pipelag-dispatch") if self.overlap and self.agent.acts_ahead else None
        submit = pool.submit if pool is not None else _run_now
        previous = None  # the previous step's job (its ``ahead`` holds this step's next action)
        try:
            for _ in range(n):
                next_obs, reward, term, trunc, final_obs, stats = self.env.step(np.asarray(action))
                job = submit(dispatch, t, (reward, term, trunc, final_obs, next_obs))
                before = previous.result() if previous is not None else None
                if before is not None and before.ahead is not None:  # no wait for this step's calls
                    action = _pick_ahead(before.ahead, term, trunc)
                else:
                    action = job.result().action
                if before is not None:
                    count(before)
                previous = job
                if on_episode is not None and stats["episode_ended"].any():
                    for i in np.flatnonzero(stats["episode_ended"]):
                        on_episode(int(i), float(stats["returned_episode_return"][i]))
                t += 1
            if previous is not None:
                count(previous.result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        metrics = {}
        if last is not None:  # back to {name: [seeds]}
            names, values = last
            metrics = dict(zip(names, np.moveaxis(np.asarray(values), -1, 0), strict=True))
        return self.unpack(chain[0]), {"updates": updates, "metrics": metrics}

    def evaluate(self, actor_params, episodes: int, mode: str, seed: int) -> np.ndarray:
        """``[num_seeds, episodes]`` raw returns on a fresh env per seed (seed ``seed + i``)."""
        env = make_host_vec_env(self.config, self.num_seeds, seed)
        agent = self.agent
        step = self._eval_step(mode)

        obs = jnp.asarray(env.reset())
        state = jax.vmap(agent.net.initial_state)(actor_params, obs)
        done = jnp.ones((self.num_seeds,), bool)
        key = jax.random.PRNGKey(seed)
        returns: list[list[float]] = [[] for _ in range(self.num_seeds)]
        partial_ret = np.zeros(self.num_seeds)
        budget = episodes * self.spec.eval_max_steps + 1
        for _ in range(budget):
            key, k = jax.random.split(key)
            actions, state = step(actor_params, state, done, obs, jax.random.split(k, self.num_seeds))
            next_obs, reward, term, trunc, _, stats = env.step(np.asarray(actions))
            partial_ret += reward
            ended = np.logical_or(term, trunc)
            for i in np.flatnonzero(stats["episode_ended"]):
                if len(returns[i]) < episodes:
                    returns[i].append(float(stats["returned_episode_return"][i]))
                partial_ret[i] = 0.0
            done, obs = jnp.asarray(ended), jnp.asarray(next_obs)
            if all(len(r) >= episodes for r in returns):
                break
        env.close()
        for i, r in enumerate(returns):  # an env without a time limit: count the unfinished episode
            while len(r) < episodes:
                r.append(float(partial_ret[i]))
        return np.asarray(returns)

    def _eval_step(self, mode: str):
        cache = self.__dict__.setdefault("_eval_cache", {})
        if mode not in cache:
            agent = self.agent

            def one(p, s, d, o, k):
                s = jax.tree.map(lambda f, x: jnp.where(d, f, x), agent.net.initial_state(p, o), s)
                a, s2, _ = agent.policy(p, s, o, k, mode)
                return a, s2

            cache[mode] = jax.jit(jax.vmap(one))
        return cache[mode]

    def close(self):
        self.env.close()


# ============================================================================================ run directory
def _stderr(x) -> float:
    x = np.asarray(x, np.float64)
    return float(np.std(x, ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


def _results(config: SACConfig, seeds: list[int], eval_mean: np.ndarray, eval_sample: np.ndarray, extra: dict):
    per_mean = [float(np.mean(r)) for r in eval_mean] if eval_mean.size else []
    per_sample = [float(np.mean(r)) for r in eval_sample] if eval_sample.size else []
    return {
        "algo": "sac",
        "env_id": config.env_id,
        "arch": config.arch,
        "delta": config.delta,
        "instantaneous": config.instantaneous,
        "dropout": config.dropout,
        "seeds": seeds,
        "eval_episodes": config.eval_episodes,
        "eval_return_mean_action": {"per_seed": per_mean, "mean": float(np.mean(per_mean)) if per_mean else None,
                                    "stderr": _stderr(per_mean)},
        "eval_return_sampled": {"per_seed": per_sample, "mean": float(np.mean(per_sample)) if per_sample else None,
                                "stderr": _stderr(per_sample)},
        **extra,
    }


def make_driver(config: SACConfig, num_seeds: int = 1, seed: int = 0):
    """The driver ``run`` uses for ``config``: :class:`JaxDriver` (JAX envs) or :class:`HostDriver`."""
    return JaxDriver(config) if resolve_backend(config.validate()) == "jax" else HostDriver(config, num_seeds, seed)


def run(config: SACConfig, out: str, num_seeds: int = 1, seed: int = 0, resume: bool = False,
        progress: bool = True, *, driver=None, stop_after_steps: int | None = None,
        time_budget_s: float | None = None, batch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Train ``num_seeds`` seeds (``seed``, ``seed + 1``, …) of ``config`` into the run directory ``out``.

    Writes config.json, metrics.jsonl, checkpoint.msgpack (every ``checkpoint_every`` steps and at the end),
    curves.npz, results.json (atomic) and policy/seed_<s>/ (deployable actors). ``resume=True`` continues
    from the checkpoint: exactly for JAX envs (env states are in the checkpoint), with a fresh episode per
    seed for gymnasium envs. ``driver`` (from :func:`make_driver`) reuses compiled functions across runs;
    ``stop_after_steps``: checkpoint and return early (``{"stopped_at_step": n}``) once that many agent
    steps are done (for tests and time-limited jobs). ``time_budget_s``: stop training at the first chunk
    boundary after this many seconds of training, then evaluate and write the results as usual, with
    ``"stopped_early"`` (steps reached, steps planned) in them: SAC has no schedule tied to the planned
    length, so this is exactly a run of the shorter length. Returns the results.

    ``batch`` (JAX envs): configs that differ from ``config`` only in ``dropout`` and/or ``delta``, as
    dicts of those fields (e.g. ``[{"dropout": 0.1}, {"dropout": 0.2}]`` or ``[{"delta": 1}, {"delta": 2}]``),
    trained as one vmapped program of ``len(batch) × num_seeds`` members: member (config, seed) starts
    from the key of ``seed`` and computes what a run of ``config.replace(**that dict)`` computes. The
    program loops the largest δ's env steps per agent step (the others masked) and drops only if every
    rate is > 0. results.json then holds every member (``"batch"``: each member's dict) and
    ``"members"``: one results dict per config, as its own run would write it; policies go to
    ``policy/<config>/seed_<s>``.
    """
    from pipelag.algorithms.common import Progress, RunDir

    if isinstance(num_seeds, bool) or not isinstance(num_seeds, int) or num_seeds < 1:
        raise PipelagError(f"num_seeds must be a positive integer, got {num_seeds!r}")
    batch = check_batch(batch, config)
    if batch is not None:  # the program's config: the largest δ, and dropout if the members drop
        config = config.replace(**{k: max(b[k] for b in batch) for k in batch[0]})
    config = config.validate()
    if time_budget_s is not None and not time_budget_s > 0:
        raise PipelagError(f"--time-budget must be a positive number of seconds, got {time_budget_s!r}")
    backend = resolve_backend(config)
    seeds = list(range(seed, seed + num_seeds))
    own = driver is None
    # build the env and the agent first: a bad env/architecture fails before anything is written
    driver = make_driver(config, num_seeds, seed) if own else driver
    if own and batch is not None and "delta" in batch[0]:  # evaluation episodes as long as the smallest δ's
        small = make_jax_env(config.replace(delta=min(b["delta"] for b in batch)))[1]
        driver.spec = dataclasses.replace(driver.spec, eval_max_steps=small.eval_max_steps)
    if driver.config != config or (backend == "host" and (driver.num_seeds, driver.seed) != (num_seeds, seed)):
        raise PipelagError("the driver passed to run() was built for another config or other seeds")
    try:
        rundir = RunDir(out)
        stored = {} if batch is None else {"batch": batch}
        resuming = rundir.prepare({"algo": "sac", **config.to_dict(), "num_seeds": num_seeds, "seed": seed,
                                   "backend": backend, **stored}, resume=resume,
                                  defaults=SACConfig().to_dict())
        member_seeds = seeds if batch is None else [s for _ in batch for s in seeds]
        members = None if batch is None else [b for b in batch for _ in seeds]
        book = _Book(rundir, config, member_seeds, Progress(driver.agent.total_steps, len(member_seeds),
                                                            tag=f"sac {config.env_id}", enabled=progress),
                     members=members)
        keys = jnp.stack([jax.random.PRNGKey(s) for s in member_seeds])
        loop = _run_jax if backend == "jax" else _run_host
        return loop(driver, book, keys, resuming, stop_after_steps, time_budget_s or math.inf)
    finally:
        if own and backend == "host":
            driver.close()


#: the SACConfig fields a batch of configs may vary (one vmapped program, see ``run``'s ``batch``)
BATCHABLE_FIELDS = ("dropout", "delta")


def check_batch(batch, config: SACConfig) -> list[dict[str, Any]] | None:
    """``run``'s ``batch`` as a list of dicts with the same keys (None stays None); a clear error otherwise."""
    from pipelag.algorithms.common.batch import check_batch as check_fields
    from pipelag.networks.pipeline import check_dropout

    out = check_fields(batch, BATCHABLE_FIELDS, "δ and/or dropout rate")
    if out is None:
        return None
    for b in out:
        if "dropout" in b:
            b["dropout"] = check_dropout(b["dropout"])
            if b["dropout"] <= 0:
                raise PipelagError(f"a batch of dropout rates needs rates > 0, got {b['dropout']!r}: rate 0 "
                                   "(no dropout) draws no masks, so it runs as its own config (dropout=0)")
    if resolve_backend(config.validate()) != "jax":
        raise PipelagError(f"a batch of configs is one jitted program, which needs a JAX env; {config.env_id!r} "
                           "runs on the host. Use its MJX port (MJX/...) or run each config on its own")
    return out


def member_name(b: dict[str, Any]) -> str:
    """A batch member's config as a folder name, e.g. ``delta_2-dropout_0.1``."""
    return "-".join(f"{k}_{v:g}" for k, v in sorted(b.items()))


class _Book:
    """Bookkeeping shared by both loops: curves, metrics.jsonl, progress lines, checkpoints, results.
    ``seeds`` and ``members`` (each member's config fields when configs are batched, or None): one entry
    per member."""

    def __init__(self, rundir, config: SACConfig, seeds: list[int], prog, members: list[dict] | None = None):
        self.rundir, self.config, self.seeds, self.prog = rundir, config, seeds, prog
        self.members = members
        self.logger = rundir.logger()
        self.curves: dict[str, list] = {"step": [], "episode_return": []}
        self.started = False

    def restore(self, template):
        def stored_tree(meta):  # the tree as save() wrote it: no buffer, or its filled slots only
            if not self.config.checkpoint_buffer:
                return template._replace(buffer=None)
            rows = meta.get("buffer_rows")  # absent in checkpoints of the whole buffer (before session 4)
            return template if rows is None else template._replace(buffer=trimmed(template.buffer, int(rows)))

        restored, meta = self.rundir.load_checkpoint(stored_tree)
        if not self.config.checkpoint_buffer:
            restored = restored._replace(buffer=template.buffer)
        elif meta.get("buffer_rows") is not None:
            restored = restored._replace(buffer=untrimmed(restored.buffer, template.buffer))
        self.curves = json.loads(meta["curves"])
        self.logger.truncate_after(int(meta["step"]))
        return jax.tree.map(jnp.asarray, restored), meta

    def save(self, runner, step: int, **extra):
        """The buffer's filled slots only (a preallocated 1M-slot buffer early in a run is mostly zeros)."""
        tree = runner._replace(buffer=None)
        if self.config.checkpoint_buffer:
            rows = filled_rows(runner.buffer)
            tree, extra = runner._replace(buffer=trimmed(runner.buffer, rows)), {**extra, "buffer_rows": rows}
        self.rundir.save_checkpoint(tree, {"step": int(step), "curves": json.dumps(self.curves), **extra})

    def record(self, step: int, per_seed_returns, rec: dict[str, Any]):
        if not self.started:
            self.prog.start(step)
            self.started = True
        self.curves["step"].append(int(step))
        self.curves["episode_return"].append([None if v is None or not np.isfinite(v) else float(v)
                                              for v in per_seed_returns])
        vals = [v for v in self.curves["episode_return"][-1] if v is not None]
        rec = {"episode_return": float(np.mean(vals)) if vals else None, **rec}
        self.logger.log(step, rec)
        self.prog.report(step, _extra(rec))

    def finish(self, agent, runner, eval_mean, eval_sample, extra):
        """Write curves, policies and results.json; returns the results plus ``"runner"`` (not written)."""
        extra = {k: v for k, v in extra.items() if k != "runner"}
        steps = np.asarray(self.curves["step"], np.int64)
        rets = np.asarray([[np.nan if v is None else v for v in row] for row in self.curves["episode_return"]],
                          np.float64)
        self.rundir.write_curves(step=steps, episode_return=rets.T if rets.size else rets,
                                 eval_mean=np.asarray(eval_mean), eval_sample=np.asarray(eval_sample))
        eval_mean, eval_sample = np.asarray(eval_mean), np.asarray(eval_sample)
        steps = {"agent_steps": int(np.asarray(runner.step)[0])}
        if self.members is None:
            policies = export_policies(agent, runner.sac.actor_params, self.rundir.path / "policy", self.seeds)
            results = _results(self.config, self.seeds, eval_mean, eval_sample,
                               {**steps, **extra, "policies": policies})
        else:  # one results dict (and policy folder) per config, then all members together
            members, policies = [], []
            for name in dict.fromkeys(member_name(m) for m in self.members):
                idx = [i for i, m in enumerate(self.members) if member_name(m) == name]
                config = self.config.replace(**self.members[idx[0]])
                params = jax.tree.map(lambda x, idx=idx: x[np.asarray(idx)], runner.sac.actor_params)
                seeds = [self.seeds[i] for i in idx]
                view = copy.copy(agent)
                view.config = config  # the exported policy's build arguments (δ) are the member's
                pol = export_policies(view, params, self.rundir.path / "policy" / name, seeds)
                policies += pol
                members.append(_results(config, seeds, eval_mean[idx], eval_sample[idx],
                                        {**steps, **extra, "policies": pol}))
            results = {**_results(self.config, self.seeds, eval_mean, eval_sample,
                                  {**steps, **extra, "policies": policies}), "batch": list(self.members),
                       "members": members}
        self.rundir.write_results(results)
        self.logger.close()
        return {**results, "runner": runner}

    def stop(self, runner, step: int, **extra):
        self.save(runner, step, **extra)
        self.logger.close()
        return {"stopped_at_step": int(step)}


_clock = time.perf_counter  # the training clock (wall time and time budget); tests replace it


def _stopped_early(step: int, total: int) -> dict[str, Any]:
    return {"stopped_early": {"reason": "time budget", "agent_steps": int(step), "planned_agent_steps": int(total)}}


def _member_arrays(members: list[dict[str, Any]]) -> Member:
    """The members' own config fields as arrays with a leading member axis (None for fields not batched)."""
    m = members[0]
    return Member(dropout=jnp.asarray([x["dropout"] for x in members], jnp.float32) if "dropout" in m else None,
                  delta=jnp.asarray([x["delta"] for x in members], jnp.int32) if "delta" in m else None)


def _run_jax(driver: JaxDriver, book: _Book, keys, resuming: bool, stop_after_steps, time_budget_s: float):
    config = driver.config
    members = () if book.members is None else (_member_arrays(book.members),)  # per member, if batched
    runner = driver.compiled_init()(keys, *members)
    done_chunks = 0
    if resuming:
        runner, meta = book.restore(runner)
        done_chunks = int(meta["chunks"])

    def evaluate(mode, salt):
        f = driver.compiled_eval(mode)
        return np.asarray(f(runner.sac.actor_params, jax.vmap(lambda k: jax.random.fold_in(k, salt))(keys), *members))

    plan = driver.chunks()
    t0 = _clock()
    last_ckpt = last_eval = int(np.asarray(runner.step)[0])
    for i, (kind, n) in enumerate(plan):
        if i < done_chunks:
            continue
        runner, s = driver.compiled(kind, n)(runner)
        step = int(np.asarray(runner.step)[0])
        rec = {k: float(np.mean(np.asarray(s[k]))) for k in METRIC_KEYS if k in s}
        if config.eval_every and step // config.eval_every > last_eval // config.eval_every and i + 1 < len(plan):
            rec["eval_return"] = float(np.mean(evaluate("mean", 3 + i)))
            last_eval = step
        book.record(step, np.asarray(s["episode_return"], np.float64), rec)
        if stop_after_steps is not None and step >= stop_after_steps and i + 1 < len(plan):
            return book.stop(runner, step, chunks=i + 1)
        if config.checkpoint_every and step - last_ckpt >= config.checkpoint_every and i + 1 < len(plan):
            book.save(runner, step, chunks=i + 1)
            last_ckpt = step
        if _clock() - t0 > time_budget_s and i + 1 < len(plan):
            early = _stopped_early(step, driver.agent.total_steps)
            break
    else:
        early = {}
    wall = _clock() - t0
    # a run stopped early is finished as it stands (its checkpoint is not resumable past the stop)
    book.save(runner, int(np.asarray(runner.step)[0]), chunks=len(plan))
    eval_mean = eval_sample = np.zeros((len(book.seeds), 0))
    if config.eval_episodes:
        eval_mean, eval_sample = evaluate("mean", 1), evaluate("sample", 2)
    return book.finish(driver.agent, runner, eval_mean, eval_sample,
                       {"backend": "jax", "wall_s": wall, "window": driver.agent.window, **early})


def _run_host(driver: HostDriver, book: _Book, keys, resuming: bool, stop_after_steps, time_budget_s: float):
    config, seeds = driver.config, book.seeds
    runner = driver.init(keys)
    if resuming:
        runner, meta = book.restore(runner)
        runner = driver.resume(runner, env_seed=seeds[0] + 7919 * (int(meta["step"]) + 1))
    step = int(np.asarray(runner.step)[0])
    total = driver.agent.total_steps
    recent: list[list[float]] = [[] for _ in seeds]
    t_start, updates_total, last_ckpt, last_eval = _clock(), 0, step, step

    def on_episode(i, r):
        recent[i].append(r)

    while step < total:
        n = min(config.chunk_size - step % config.chunk_size, total - step)
        t0 = _clock()
        runner, info = driver.run_steps(runner, n, on_episode)
        dt = _clock() - t0
        step += n
        updates_total += info["updates"]
        per_seed = [float(np.mean(r)) if r else None for r in recent]
        recent = [[] for _ in seeds]
        rec = {"env_steps_per_s": n / dt, "updates_per_s": info["updates"] / dt,
               **{k: float(np.mean(np.asarray(v))) for k, v in info["metrics"].items()}}
        if config.eval_every and step // config.eval_every > last_eval // config.eval_every and step < total:
            rec["eval_return"] = float(np.mean(driver.evaluate(runner.sac.actor_params, config.eval_episodes, "mean",
                                                               seeds[0] + 300_000 + step)))
            last_eval = step
        book.record(step, per_seed, rec)
        if stop_after_steps is not None and step >= stop_after_steps and step < total:
            return book.stop(runner, step)
        if config.checkpoint_every and step - last_ckpt >= config.checkpoint_every and step < total:
            book.save(runner, step)
            last_ckpt = step
        if _clock() - t_start > time_budget_s and step < total:
            early = _stopped_early(step, total)
            break
    else:
        early = {}
    wall = _clock() - t_start
    book.save(runner, step)
    eval_mean = eval_sample = np.zeros((len(seeds), 0))
    if config.eval_episodes:
        params = runner.sac.actor_params
        eval_mean = driver.evaluate(params, config.eval_episodes, "mean", seeds[0] + 100_000)
        eval_sample = driver.evaluate(params, config.eval_episodes, "sample", seeds[0] + 200_000)
    return book.finish(driver.agent, runner, eval_mean, eval_sample,
                       {"backend": "host", "wall_s": wall, "window": driver.agent.window,
                        "critic_updates_this_session": updates_total, **early})


def _extra(rec):
    parts = []
    if rec.get("episode_return") is not None:
        parts.append(f"return {rec['episode_return']:.1f}")
    if rec.get("eval_return") is not None:
        parts.append(f"eval {rec['eval_return']:.1f}")
    if "alpha" in rec:
        parts.append(f"α {rec['alpha']:.3f}")
    if "q_loss" in rec:
        parts.append(f"q_loss {rec['q_loss']:.3g}")
    return " | ".join(parts)


def policy_arch_kwargs(agent: SACAgent) -> dict[str, Any]:
    """The ``build_network`` arguments of the actor (for :func:`pipelag.runtime.save_policy`)."""
    c = agent.config
    return {"arch": c.arch, "obs_shape": list(agent.spec.obs_shape), "num_outputs": 2 * agent.spec.act_dim,
            "delta": c.delta, "num_layers": c.num_layers, "hidden": c.hidden, "action_dim": agent.spec.act_dim,
            "action_history": c.action_history, "instantaneous": c.instantaneous,
            "init_activations": c.init_activations}


def export_policies(agent: SACAgent, actor_params, directory, seeds: list[int]) -> list[str]:
    """One deployable policy per seed (``<dir>/seed_<s>``, :mod:`pipelag.runtime` format, Gaussian head)."""
    from pipelag.runtime.checkpoint import save_policy

    head = {"type": "gaussian", "low": [float(x) for x in agent.spec.low],
            "high": [float(x) for x in agent.spec.high]}
    paths = []
    for i, s in enumerate(seeds):
        params = jax.tree.map(lambda x, i=i: np.asarray(x[i]), actor_params)
        paths.append(str(save_policy(Path(directory) / f"seed_{s}", policy_arch_kwargs(agent), params, head=head)))
    return paths
