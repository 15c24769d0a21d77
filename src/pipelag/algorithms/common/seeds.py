"""Running one program per seed: ``over_seeds(fn)`` maps ``fn`` over a leading seed axis.

On a GPU the seeds are vmapped (one batched program, the seeds run in parallel). On a CPU they run one
after another (``lax.map``): XLA's CPU runtime (jaxlib 0.10.2) deadlocks on PPO's vmapped MinAtar programs
with two or more seeds of realistic size, idle in ``block_until_ready``, even with the scheduler flag
``import pipelag`` sets (docs/ppo.md, "Fixed: several seeds on a 2-core CPU hung"); the same program
mapped seed by seed finishes, and on a few cores parallel seeds gain little anyway.

``how`` overrides that choice ("vmap" or "map"; "auto" is the above), e.g. to time seeds one after another
on a GPU: vmapping a convolution over seeds with different weights makes it a grouped convolution, which
may be slower than running the seeds in turn (docs/ppo.md).

``devices`` > 1 splits the seeds over that many local devices (``shard_map``: each device runs the program
above on its share, with no communication between them), for machines with several GPUs: one H100 is
already busy with one paper-size PPO seed, so seeds only scale near-linearly across GPUs (docs/ppo.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import numpy as np

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


def seed_device_count(requested: int, seeds: int) -> int:
    """How many local devices ``seeds`` seeds are split over. ``requested`` 0 = auto: on a GPU as many of
    the local GPUs as split the seeds evenly (the greatest common divisor of the two counts), 1 on a CPU
    (one CPU device holds all its cores). Otherwise ``requested``, which must divide ``seeds`` and be at
    most the number of local devices."""
    available = jax.local_device_count()
    if requested == 0:
        return 1 if jax.default_backend() == "cpu" else math.gcd(int(seeds), available)
    if requested < 0 or requested > available or seeds % requested:
        raise PipelagError(f"seed_devices={requested}: the {seeds} seed(s) must split evenly over at most the "
                           f"{available} local {jax.default_backend()} device(s); give a divisor of the seed count "
                           "or 0 (auto)")
    return int(requested)


def over_seeds(fn: Callable, how: str = "auto", devices: int = 1) -> Callable:
    """``fn`` applied to each index of the leading (seed) axis of all its arguments, results stacked:
    vmapped or one seed after another (``lax.map``), see :data:`SEED_BATCHING`; with ``devices`` > 1
    the seed axis is split over that many local devices first (every argument and result is seed-leading)."""
    check_seed_batching(how)

    def mapped(*args):
        if _in_turn(how):  # decided when traced, i.e. for the device it compiles for
            return jax.lax.map(lambda a: fn(*a), args)
        return jax.vmap(fn)(*args)

    if devices == 1:
        return mapped
    mesh = jax.sharding.Mesh(np.array(jax.local_devices()[:devices]), ("seeds",))
    seeds = jax.sharding.PartitionSpec("seeds")
    return jax.shard_map(mapped, mesh=mesh, in_specs=seeds, out_specs=seeds, check_vma=False)
