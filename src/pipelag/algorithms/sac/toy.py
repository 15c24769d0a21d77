"""A tiny continuous JAX env for fast SAC tests and demos (seconds on a CPU).

:class:`PointTarget` ("PointTarget-v0"): a point on a line starts at x = 0; a target g ~ U(−1, 1) is
drawn per episode. Observation (x, g); action u ∈ [−1, 1]; x ← x + ``step_size``·u; reward −|x − g|
(after the move). The episode terminates when |x − g| < ``tolerance`` and is truncated after
``max_steps`` steps, so both kinds of episode end are exercised. A random policy scores about −5 per
8-step episode, a good policy about −1; a pipelined actor that knows its last action (action history)
can act well despite its delay, because x_t = x_{t−1} + step·a_{t−1}.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pipelag.envs.base import JaxEnv, Step
from pipelag.errors import PipelagError


class PointTargetState(NamedTuple):
    x: jax.Array
    goal: jax.Array
    t: jax.Array


class PointTarget(JaxEnv):
    env_id = "PointTarget-v0"
    num_actions = None
    action_shape = (1,)
    obs_shape = (2,)
    obs_dtype = jnp.float32
    action_low = -1.0
    action_high = 1.0

    def __init__(self, max_steps: int = 8, step_size: float = 0.3, tolerance: float = 0.05):
        if max_steps < 1 or step_size <= 0 or tolerance < 0:
            raise PipelagError("PointTarget needs max_steps >= 1, step_size > 0 and tolerance >= 0")
        self.max_episode_steps = int(max_steps)
        self.step_size = float(step_size)
        self.tolerance = float(tolerance)

    def _obs(self, s: PointTargetState) -> jax.Array:
        return jnp.stack([s.x, s.goal]).astype(jnp.float32)

    def reset_env(self, key):
        goal = jax.random.uniform(key, (), minval=-1.0, maxval=1.0)
        s = PointTargetState(jnp.zeros(()), goal, jnp.zeros((), jnp.int32))
        return s, self._obs(s)

    def step_env(self, key, state, action):
        u = jnp.clip(jnp.asarray(action, jnp.float32).reshape(()), -1.0, 1.0)
        x = state.x + self.step_size * u
        s = PointTargetState(x, state.goal, state.t + 1)
        dist = jnp.abs(x - state.goal)
        obs = self._obs(s)
        return s, Step(obs, -dist, dist < self.tolerance, s.t >= self.max_episode_steps, obs)


TOY_ENVS = {"PointTarget-v0": PointTarget}
