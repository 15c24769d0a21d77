"""The interface every JAX-native environment of pipelag follows.

An environment is a frozen object with pure functions, usable inside ``jit``/``vmap``/``lax.scan``:

    state, obs = env.reset(key)
    state, step = env.step(key, state, action)      # auto-resets when the episode ended

``step`` returns a :class:`Step`: the next observation (already the first observation of a new
episode if this one ended), the reward, ``terminated`` and ``truncated`` kept apart (truncation
must be bootstrapped, termination must not), and ``final_obs``: the last observation of the
episode that just ended (equal to ``obs`` when nothing ended), needed to bootstrap truncations.

Subclasses implement ``reset_env`` and ``step_env`` (one episode, no auto-reset); the base class
adds auto-reset. Episode statistics live in wrappers (``pipelag.envs.wrappers``).
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Step(NamedTuple):
    obs: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array

    @property
    def done(self) -> jax.Array:
        return jnp.logical_or(self.terminated, self.truncated)


class JaxEnv(abc.ABC):
    """A pure, functional environment. Attributes describe its spaces."""

    env_id: str = "unnamed"
    #: number of discrete actions, or None for continuous actions
    num_actions: int | None = None
    #: shape of a continuous action (``()`` for discrete)
    action_shape: tuple[int, ...] = ()
    obs_shape: tuple[int, ...] = ()
    obs_dtype: Any = jnp.float32
    #: time limit in env steps (None: no limit)
    max_episode_steps: int | None = None
    #: the discrete action that lets time pass and changes nothing (default policy β = "noop");
    #: None: action 0, or zeros for continuous actions
    noop_action: int | None = None

    def default_policy_warning(self, delta: int, default_policy: str) -> str | None:
        """Why ``default_policy`` acting for the δ−1 steps after each agent action degrades this env
        (None: it doesn't). Printed as a warning by the δ > 1 wrappers."""
        return None

    @abc.abstractmethod
    def reset_env(self, key: jax.Array) -> tuple[Any, jax.Array]:
        """Start an episode: ``(state, obs)``."""

    @abc.abstractmethod
    def step_env(self, key: jax.Array, state: Any, action: jax.Array) -> tuple[Any, Step]:
        """One step of the current episode, no auto-reset (``final_obs`` = ``obs``)."""

    def reset(self, key: jax.Array) -> tuple[Any, jax.Array]:
        return self.reset_env(key)

    def step(self, key: jax.Array, state: Any, action: jax.Array) -> tuple[Any, Step]:
        key_step, key_reset = jax.random.split(key)
        next_state, step = self.step_env(key_step, state, action)
        reset_state, reset_obs = self.reset_env(key_reset)
        done = step.done
        state = jax.tree.map(lambda r, n: jnp.where(done, r, n), reset_state, next_state)
        obs = jnp.where(done, reset_obs, step.obs)
        return state, step._replace(obs=obs, final_obs=step.obs)

    @property
    def is_discrete(self) -> bool:
        return self.num_actions is not None
