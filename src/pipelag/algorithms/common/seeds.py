"""Running one program per seed: ``over_seeds(fn)`` maps ``fn`` over a leading seed axis.

On a GPU the seeds are vmapped (one batched program, the seeds run in parallel). On a CPU they run one
after another (``lax.map``): XLA's CPU runtime (jaxlib 0.10.2) deadlocks on PPO's vmapped MinAtar programs
with two or more seeds of realistic size, idle in ``block_until_ready``, even with the scheduler flag
``import pipelag`` sets (docs/ppo.md, "Fixed: several seeds on a 2-core CPU hung"); the same program
mapped seed by seed finishes, and on a few cores parallel seeds gain little anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import jax


def over_seeds(fn: Callable) -> Callable:
    """``fn`` applied to each index of the leading (seed) axis of all its arguments, results stacked."""

    def mapped(*args):
        if jax.default_backend() == "cpu":  # decided when traced, i.e. for the device it compiles for
            return jax.lax.map(lambda a: fn(*a), args)
        return jax.vmap(fn)(*args)

    return mapped
