"""Checkpoints of arbitrary pytrees (train states, env states, optimizer states) as msgpack.

The pytree is flattened to its leaves, which are stored with ``flax.serialization`` (exact bytes of
every array), together with a fingerprint of the tree structure and free-form metadata. Restoring
needs a *template* of the same structure (e.g. a freshly initialised train state): its tree
definition rebuilds the pytree, so any container type works (NamedTuples, pgx/flax dataclasses…).
Writes are atomic (temp file + ``os.replace``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from pipelag.algorithms.common.io import atomic_write_bytes
from pipelag.errors import PipelagError

FORMAT = "pipelag-checkpoint-v1"


def _leaf_to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        raise PipelagError("checkpoints store raw uint32 PRNG keys (jax.random.PRNGKey), not typed keys")
    return np.asarray(x)


def _dtype(x: Any) -> np.dtype:
    return np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype


def save_checkpoint(path: str | os.PathLike, tree: Any, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``tree`` (any pytree of arrays) and ``metadata`` (msgpack-able: numbers, strings, numpy
    arrays, nested dicts/lists) to ``path`` atomically."""
    leaves = [_leaf_to_numpy(x) for x in jax.tree.leaves(tree)]
    treedef = str(jax.tree.structure(tree))
    payload = {
        "format": FORMAT,
        "treedef": treedef,
        "leaves": {str(i): leaf for i, leaf in enumerate(leaves)},
        "metadata": metadata or {},
    }
    return atomic_write_bytes(path, serialization.msgpack_serialize(payload))


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`; ``template`` gives the tree structure (or is a
    callable that returns it for the checkpoint's metadata, for trees whose shapes the metadata records).

    Raises :class:`PipelagError` if the file is missing, not a checkpoint, or was written for a
    different structure (e.g. another config)."""
    path = Path(path)
    if not path.is_file():
        raise PipelagError(f"no checkpoint at {path}")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - any decoding failure means a corrupt/foreign file
        raise PipelagError(f"{path} is not a readable pipelag checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PipelagError(f"{path} is not a pipelag checkpoint (format {payload.get('format')!r})")
    if callable(template):
        template = template(payload.get("metadata", {}))
    t_leaves, t_def = jax.tree.flatten(template)
    leaves = payload["leaves"]
    if len(leaves) != len(t_leaves) or payload["treedef"] != str(t_def):
        raise PipelagError(f"checkpoint {path} does not match this run's state (different config or code "
                           f"version): {len(leaves)} arrays stored, {len(t_leaves)} expected")
    restored = []
    for i, t in enumerate(t_leaves):
        arr = np.asarray(leaves[str(i)])
        if arr.shape != np.shape(t) or arr.dtype != _dtype(t):
            raise PipelagError(f"checkpoint {path}: array {i} has {arr.dtype}{list(arr.shape)}, expected "
                               f"{_dtype(t)}{list(np.shape(t))} (different config?)")
        restored.append(arr)
    return jax.tree.unflatten(t_def, restored), payload.get("metadata", {})
