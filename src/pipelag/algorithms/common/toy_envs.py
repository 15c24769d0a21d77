"""Tiny JAX environments for fast, robust algorithm tests (seconds on a CPU).

:class:`DelayedCue`: the observation o_t shows which action will be rewarded ``lag`` steps later;
r_t = 1 if a_t equals the target shown in o_{t−lag}. A pipelined actor whose delay is at most
``lag`` ticks can learn it perfectly, a random policy earns 1/num_actions per step, and an actor
slower than ``lag`` cannot beat random. Episodes end by termination (probability
``terminate_prob`` per step) or truncation (``max_steps``), so both episode ends are exercised.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pipelag.envs.base import JaxEnv, Step
from pipelag.errors import PipelagError


class DelayedCueState(NamedTuple):
    targets: jax.Array  # [lag + 1]: targets of steps t, t+1, ..., t+lag (the last one is shown in o_t)
    t: jax.Array


class DelayedCue(JaxEnv):
    def __init__(self, num_actions: int = 3, lag: int = 1, max_steps: int = 16, terminate_prob: float = 0.0,
                 image: bool = False, size: int = 5):
        if num_actions < 2 or lag < 0 or max_steps < 1 or not 0.0 <= terminate_prob < 1.0:
            raise PipelagError("DelayedCue needs num_actions >= 2, lag >= 0, max_steps >= 1, 0 <= terminate_prob < 1")
        self.env_id = f"DelayedCue-a{num_actions}-lag{lag}"
        self.num_actions = int(num_actions)
        self.lag = int(lag)
        self.max_episode_steps = int(max_steps)
        self.terminate_prob = float(terminate_prob)
        self.image = bool(image)
        self.size = int(size)
        self.obs_shape = (size, size, num_actions) if image else (num_actions,)
        self.obs_dtype = jnp.float32

    def _obs(self, state: DelayedCueState) -> jax.Array:
        v = jax.nn.one_hot(state.targets[-1], self.num_actions)
        return jnp.broadcast_to(v, self.obs_shape) if self.image else v

    def reset_env(self, key):
        targets = jax.random.randint(key, (self.lag + 1,), 0, self.num_actions)
        state = DelayedCueState(targets, jnp.zeros((), jnp.int32))
        return state, self._obs(state)

    def step_env(self, key, state, action):
        k_target, k_term = jax.random.split(key)
        reward = (jnp.asarray(action) == state.targets[0]).astype(jnp.float32)
        new = jax.random.randint(k_target, (1,), 0, self.num_actions)
        state = DelayedCueState(jnp.concatenate([state.targets[1:], new]), state.t + 1)
        obs = self._obs(state)
        terminated = jax.random.uniform(k_term) < self.terminate_prob
        truncated = state.t >= self.max_episode_steps
        return state, Step(obs, reward, terminated, truncated, obs)
