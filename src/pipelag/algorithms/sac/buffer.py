"""A pure-JAX circular replay buffer of transitions, sampled as *windows* (sub-trajectories).

One buffer per seed (``vmap`` it for several); the same code runs inside ``lax.scan`` (jitted driver)
and on the host loop (the buffer lives in device memory there too; donate it to the jitted step so the
update is in place).

Every slot holds one transition of one env, in time order::

    obs o_t, action a_t, reward r_t, terminated_t, next_obs (o_{t+1}, or the episode's final
    observation if it ended at t), start_t (o_t is the first observation of an episode),
    history_t (the actor's exact history before tick t: recent actions / stacked observations)

Windows: :func:`sample_windows` draws the *last* index j of each window uniformly over the stored
transitions that have ``window − 1`` predecessors in the buffer (so a window never wraps over the
write pointer, where the oldest and the newest data meet), and returns the window's slots and
``first``: the position inside the window of the latest episode start after its first slot (0 if
none). Positions before ``first`` belong to an earlier episode (or to a truncated one: truncations are
episode starts like terminations); they are masked, i.e. the actor's state is reset at ``first``
(``PipelinedNetwork.unroll``'s ``resets``), so nothing crosses an episode boundary: the valid part
``first..W−1`` of every window lies inside one episode, and when it starts at an episode start it is
exactly the computation the rollout did.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    next_obs: jax.Array
    start: jax.Array
    history: Any  # dict of arrays (may be empty)


class Buffer(NamedTuple):
    data: Transition  # every leaf [capacity, ...]
    ptr: jax.Array  # next slot to write
    size: jax.Array  # slots written (≤ capacity)

    @property
    def capacity(self) -> int:
        return int(self.data.reward.shape[-1])


def buffer_init(capacity: int, example: Transition) -> Buffer:
    """An empty buffer for transitions shaped like ``example`` (one unbatched transition)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example)
    return Buffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def filled_rows(buffer: Buffer) -> int:
    """Slots written so far (the largest over seeds): slots from here on still hold buffer_init's zeros."""
    return int(np.max(np.asarray(buffer.size)))


def trimmed(buffer: Buffer, rows: int) -> Buffer:
    """The buffer with only its first ``rows`` slots (any leading seed axes kept): what a checkpoint stores."""
    axis = buffer.data.reward.ndim - 1  # the slot axis, after the seed axes
    return buffer._replace(data=jax.tree.map(lambda x: x[(slice(None),) * axis + (slice(0, rows),)], buffer.data))


def untrimmed(part: Buffer, empty: Buffer) -> Buffer:
    """Undo :func:`trimmed`: ``part``'s slots, then ``empty``'s (a fresh buffer's zeros) up to capacity."""
    axis = empty.data.reward.ndim - 1
    rows = part.data.reward.shape[axis]
    data = jax.tree.map(lambda p, e: np.concatenate([np.asarray(p), np.asarray(e[(slice(None),) * axis
                                                                                + (slice(rows, None),)])], axis),
                        part.data, empty.data)
    return part._replace(data=data)


def buffer_add(buffer: Buffer, transition: Transition) -> Buffer:
    """Write one transition at the pointer (overwriting the oldest once full)."""
    cap = buffer.data.reward.shape[0]
    data = jax.tree.map(lambda d, x: d.at[buffer.ptr].set(jnp.asarray(x, d.dtype)), buffer.data, transition)
    return Buffer(data, (buffer.ptr + 1) % cap, jnp.minimum(buffer.size + 1, cap))


def sample_windows(buffer: Buffer, key: jax.Array, batch_size: int, window: int,
                   read_in_loop: bool = True) -> tuple[jax.Array, jax.Array]:
    """``(idx [B, W], first [B])``: slots of ``batch_size`` windows of ``window`` consecutive transitions
    (oldest first) and the position of the latest episode start in ``1..W−1`` (0 if none).

    Needs ``size ≥ window`` (the drivers start learning after ``learning_starts ≥ window`` steps).
    ``read_in_loop``: see :func:`_read`."""
    cap = buffer.data.reward.shape[0]
    oldest = jnp.where(buffer.size >= cap, buffer.ptr, 0)
    # offset of the window's last step from the oldest stored step: window-1 .. size-1
    offset = jax.random.randint(key, (batch_size,), window - 1, jnp.maximum(buffer.size, window))
    last = (oldest + offset) % cap
    idx = (last[:, None] - (window - 1) + jnp.arange(window)[None, :]) % cap
    starts = _read(buffer.data.start, idx, read_in_loop)
    pos = jnp.arange(window)[None, :]
    first = jnp.max(jnp.where(starts & (pos > 0), pos, 0), axis=1)
    return idx, first


def gather(buffer: Buffer, idx: jax.Array, read_in_loop: bool = True) -> Transition:
    """The transitions at ``idx`` ``[B, W]``: every leaf ``[B, W, ...]``."""
    return _read(buffer.data, idx, read_in_loop)


def _read(data, idx: jax.Array, in_loop: bool = True):
    """``data[idx]`` for ``idx [B, W]`` and every leaf of ``data`` (an array or a pytree of them), read
    inside one loop over W (``in_loop``), or as a plain gather in a program that does not write the buffer
    (the host driver's learning step, which must not pay for the loop: below).

    Why a loop: when a step writes a transition (``buffer_add``) and then samples in the same XLA
    computation, XLA fuses the write into a plain gather (it recomputes "old buffer + new row" inside the
    gather) and must then copy the whole buffer every step to keep the old one alive for that fusion —
    ~200 MB per step for a 1M MuJoCo buffer, which made the host loop 7× slower. A read inside a loop
    body cannot absorb the write, so the write stays in place. One loop for all the fields (not one
    per field): on a GPU every loop trip costs a host round trip."""
    if not in_loop:
        return jax.tree.map(lambda d: d[idx], data)
    _, rows = jax.lax.scan(lambda c, i: (c, jax.tree.map(lambda d: d[i], data)), None, jnp.swapaxes(idx, 0, 1))
    return jax.tree.map(lambda r: jnp.swapaxes(r, 0, 1), rows)
