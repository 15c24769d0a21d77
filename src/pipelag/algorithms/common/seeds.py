"""Running one program per seed: ``over_seeds(fn)`` maps ``fn`` over a leading seed axis.

On a GPU the seeds are vmapped (one batched program, the seeds run in parallel). On a CPU they run one
after another (``lax.map``): XLA's CPU runtime (jaxlib 0.10.2) deadlocks on PPO's vmapped MinAtar programs
with two or more seeds of realistic size, idle in ``block_until_ready``, even with the scheduler flag
``import pipelag`` sets (docs/ppo.md, "Fixed: several seeds on a 2-core CPU hung"); the same program
mapped seed by seed finishes, and on a few cores parallel seeds gain little anyway.

``how`` overrides that choice ("vmap" or "map"; "auto" is the above), e.g. to time seeds one after another
on a GPU: vmapping a convolution over seeds with different weights makes it a grouped convolution, which
may be slower than running the seeds in turn (docs/ppo.md).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from pipelag.errors import PipelagError

#: how the seeds of one program run: "auto" (vmap on a GPU, one after another on a CPU), "vmap", "map"
SEED_BATCHING = ("auto", "vmap", "map")


def check_seed_batching(how: str) -> str:
    if how not in SEED_BATCHING:
        raise PipelagError(f"seed_batching must be one of {list(SEED_BATCHING)} ('auto': vmap on a GPU, one "
                           f"seed after another on a CPU), got {how!r}")
    return how


def _in_turn(how: str) -> bool:
    """Whether seeds run one after another (``lax.map``) on the device JAX runs on now."""
    return how == "map" or (how == "auto" and jax.default_backend() == "cpu")


def vmapped_seed_count(how: str, seeds: int) -> int:
    """How many seeds one vmapped program holds when ``seeds`` run as ``how`` says (1: one at a time),
    for the device JAX runs on now."""
    check_seed_batching(how)
    return 1 if _in_turn(how) else max(1, int(seeds))


def over_seeds(fn: Callable, how: str = "auto") -> Callable:
    """``fn`` applied to each index of the leading (seed) axis of all its arguments, results stacked:
    vmapped or one seed after another (``lax.map``), see :data:`SEED_BATCHING`."""
    check_seed_batching(how)

    def mapped(*args):
        if _in_turn(how):  # decided when traced, i.e. for the device it compiles for
            return jax.lax.map(lambda a: fn(*a), args)
        return jax.vmap(fn)(*args)

    return mapped
