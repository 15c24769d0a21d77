"""A small checkpoint format for deploying a trained pipelined policy.

A checkpoint is a directory holding two files::

    policy.json      {"format": "pipelag-policy", "version": 1,
                      "arch_kwargs": {"arch": "mlp", "obs_shape": [17], "num_outputs": 12, ...},
                      "head": {"type": "gaussian", "low": [...], "high": [...]},
                      "params_file": "params.msgpack", "params_sha256": "..."}
    params.msgpack   flax.serialization.msgpack_serialize of the parameter pytree

``arch_kwargs`` are the arguments of :func:`pipelag.networks.build_network` (``arch``, ``obs_shape``
and ``num_outputs`` plus any keywords), so the network is rebuilt exactly as it was trained.
``head`` says how the head's output becomes an action (see :mod:`pipelag.runtime.policy`).
Every failure to load raises :class:`pipelag.errors.PipelagError` with a message that names the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelag.errors import PipelagError

FORMAT = "pipelag-policy"
VERSION = 1
META_FILE = "policy.json"
PARAMS_FILE = "params.msgpack"
HEAD_TYPES = ("raw", "discrete", "gaussian")
_TUPLE_KWARGS = ("obs_shape", "channels")
_HOW_TO_SAVE = "write one with pipelag.runtime.save_policy(path, arch_kwargs, params)"


@dataclass
class LoadedPolicy:
    net: Any  # PipelinedNetwork
    params: dict
    arch_kwargs: dict
    head: dict
    path: Path


def validate_head(head: dict | None, num_outputs: int) -> dict:
    head = dict(head or {"type": "raw"})
    kind = head.get("type")
    if kind not in HEAD_TYPES:
        raise PipelagError(f"head type must be one of {HEAD_TYPES}, got {kind!r}")
    if kind == "gaussian":
        if num_outputs % 2:
            raise PipelagError(f"a gaussian head needs 2·action_dim outputs (mean, log_std); got {num_outputs}")
        d = num_outputs // 2
        for k, default in (("low", -1.0), ("high", 1.0)):
            v = head.get(k, default)
            v = [float(v)] * d if isinstance(v, int | float) else [float(x) for x in v]
            if len(v) != d:
                raise PipelagError(f"head {k} must have {d} values (one per action dimension), got {len(v)}")
            head[k] = v
        if any(lo >= hi for lo, hi in zip(head["low"], head["high"], strict=True)):
            raise PipelagError("head low must be below high in every action dimension")
    return head


def _arch_from_json(arch_kwargs: dict) -> dict:
    kw = dict(arch_kwargs)
    for k in _TUPLE_KWARGS:
        if kw.get(k) is not None:
            kw[k] = tuple(kw[k])
    return kw


def _build(arch_kwargs: dict):
    from pipelag.networks import build_network

    missing = [k for k in ("arch", "obs_shape", "num_outputs") if k not in arch_kwargs]
    if missing:
        raise PipelagError(f"arch_kwargs lacks {missing}: give build_network's arch, obs_shape and num_outputs "
                           "plus its keyword arguments")
    kw = _arch_from_json(arch_kwargs)
    arch, obs_shape, num_outputs = kw.pop("arch"), kw.pop("obs_shape"), kw.pop("num_outputs")
    try:
        return build_network(arch, obs_shape, num_outputs, **kw)
    except TypeError as e:
        raise PipelagError(f"arch_kwargs do not fit build_network ({e}); keep only its arguments") from e


def _check_params(net, params) -> None:
    import jax
    import numpy as np
    from flax.serialization import to_state_dict

    template = jax.eval_shape(net.init, jax.random.PRNGKey(0))
    want = jax.tree_util.tree_flatten_with_path(to_state_dict(template))[0]
    got = jax.tree_util.tree_flatten_with_path(to_state_dict(params))[0]
    want_d = {jax.tree_util.keystr(p): tuple(v.shape) for p, v in want}
    got_d = {jax.tree_util.keystr(p): tuple(np.shape(v)) for p, v in got}
    if want_d != got_d:
        diff = sorted(set(want_d.items()) ^ set(got_d.items()))[:4]
        raise PipelagError(f"the parameters do not fit the architecture (first differences: {diff}); save the "
                           "params of the network that build_network(**arch_kwargs) builds")


def save_policy(path: str | os.PathLike, arch_kwargs: dict, params, *, head: dict | None = None) -> Path:
    """Write ``params`` and the ``build_network`` arguments that rebuild the network to directory ``path``."""
    from flax.serialization import msgpack_serialize, to_state_dict

    path = Path(path)
    net = _build(arch_kwargs)
    _check_params(net, params)
    head = validate_head(head, int(arch_kwargs["num_outputs"]))
    blob = msgpack_serialize(to_state_dict(_to_numpy(params)))
    meta = {"format": FORMAT, "version": VERSION, "arch_kwargs": arch_kwargs, "head": head,
            "params_file": PARAMS_FILE, "params_sha256": hashlib.sha256(blob).hexdigest()}
    try:
        text = json.dumps(meta, indent=2, default=_json_default)
    except TypeError as e:
        raise PipelagError(f"arch_kwargs must be JSON-serialisable (numbers, strings, lists, dicts): {e}") from e
    if path.exists() and not path.is_dir():
        raise PipelagError(f"{path} is a file; a policy checkpoint is a directory: pick another path")
    path.mkdir(parents=True, exist_ok=True)
    for name, data in ((PARAMS_FILE, blob), (META_FILE, text.encode())):
        tmp = path / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path / name)
    return path


def _to_numpy(params):
    import jax
    import numpy as np

    return jax.tree.map(np.asarray, params)


def _json_default(o):
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON-serialisable")


def load_policy(path: str | os.PathLike) -> LoadedPolicy:
    """Read a checkpoint written by :func:`save_policy`; rebuild the network and restore its parameters."""
    from flax.serialization import from_state_dict, msgpack_restore

    path = Path(path)
    meta_path = path / META_FILE
    if not path.exists():
        raise PipelagError(f"no policy checkpoint at {path}: the directory does not exist; {_HOW_TO_SAVE}")
    if not path.is_dir() or not meta_path.is_file():
        raise PipelagError(f"{path} is not a policy checkpoint (no {META_FILE} in it); point to the directory "
                           f"that save_policy wrote, or {_HOW_TO_SAVE}")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise PipelagError(f"{meta_path} is corrupt ({e}); re-save the policy with save_policy") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PipelagError(f"{meta_path} is not a pipelag policy file (format {FORMAT!r} expected); "
                           "re-save the policy with save_policy")
    if meta.get("version") != VERSION:
        raise PipelagError(f"{meta_path} has checkpoint version {meta.get('version')!r}; this pipelag reads "
                           f"version {VERSION}: re-save the policy with this version's save_policy")
    arch_kwargs = meta.get("arch_kwargs")
    if not isinstance(arch_kwargs, dict):
        raise PipelagError(f"{meta_path} has no arch_kwargs object; re-save the policy with save_policy")
    params_path = path / str(meta.get("params_file", PARAMS_FILE))
    if not params_path.is_file():
        raise PipelagError(f"{params_path} is missing: the checkpoint is incomplete; copy the whole directory, "
                           "or re-save the policy with save_policy")
    blob = params_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("params_sha256"):
        raise PipelagError(f"{params_path} is corrupt (its checksum differs from {META_FILE}'s); copy the "
                           "checkpoint again or re-save it with save_policy")
    net = _build(arch_kwargs)
    try:
        raw = msgpack_restore(blob)
    except Exception as e:  # noqa: BLE001 - msgpack raises several types on bad bytes
        raise PipelagError(f"{params_path} cannot be decoded ({type(e).__name__}); re-save the policy") from e
    _check_params(net, raw)
    import jax

    template = jax.eval_shape(net.init, jax.random.PRNGKey(0))
    params = jax.tree.map(lambda a: jax.numpy.asarray(a), from_state_dict(template, raw))
    head = validate_head(meta.get("head"), int(arch_kwargs["num_outputs"]))
    return LoadedPolicy(net, params, arch_kwargs, head, path)
