"""A pytree's leaves as one flat array per dtype.

Why: every leaf of a jitted call's arguments and results is a device buffer the runtime handles on the
host (bookkeeping, donation, a new buffer per result). A host loop that calls a jitted step per env step
with a training state of ~70 leaves pays for that every step; packed, the same state is a handful of
arrays. Inside the jitted function ``unpack`` is free (slices and reshapes) and ``pack`` is one
concatenation per dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


class Packing:
    """Packs trees shaped like ``example`` (one unbatched tree: arrays or ShapeDtypeStructs) into
    ``{dtype name: 1-D array}`` and back. Use inside ``vmap`` for a batch of trees."""

    def __init__(self, example: Any):
        leaves, self.treedef = jax.tree.flatten(example)
        self.shapes = [tuple(x.shape) for x in leaves]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.groups: dict[str, list[int]] = {}
        for i, x in enumerate(leaves):
            self.groups.setdefault(jnp.dtype(x.dtype).name, []).append(i)

    def pack(self, tree: Any) -> dict[str, jax.Array]:
        leaves, treedef = jax.tree.flatten(tree)
        if treedef != self.treedef:
            raise ValueError(f"tree structure {treedef} is not the packing's {self.treedef}")
        return {name: jnp.concatenate([jnp.ravel(leaves[i]) for i in idx]) for name, idx in self.groups.items()}

    def unpack(self, packed: dict[str, jax.Array]) -> Any:
        leaves: list[Any] = [None] * len(self.shapes)
        for name, idx in self.groups.items():
            start = 0
            for i in idx:
                leaves[i] = packed[name][start:start + self.sizes[i]].reshape(self.shapes[i])
                start += self.sizes[i]
        return jax.tree.unflatten(self.treedef, leaves)
