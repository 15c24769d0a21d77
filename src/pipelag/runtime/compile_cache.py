"""A persistent XLA compilation cache for pipelag's command line.

A sweep runs the same programs (same architecture, env and shapes; other seeds or envs of equal shapes)
in many processes, and on a GPU compiling them took a large share of each short run (docs/experiments.md).
JAX can keep compiled executables on disk and reuse them across processes; the command line turns that on
(library users decide for themselves). Switch it off with ``PIPELAG_COMPILE_CACHE=0``; choose the folder
with ``PIPELAG_COMPILE_CACHE_DIR``; a cache folder the user already gave JAX (``JAX_COMPILATION_CACHE_DIR``
or ``jax.config``) is kept as it is.
"""

from __future__ import annotations

import os

DEFAULT_DIR = "~/.cache/pipelag/xla"
_OFF = ("0", "off", "false", "no")


def enable_compile_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache; returns its folder, or None when switched off."""
    if os.environ.get("PIPELAG_COMPILE_CACHE", "1").strip().lower() in _OFF:
        return None
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:  # the user's own choice
        return current
    path = os.path.expanduser(path or os.environ.get("PIPELAG_COMPILE_CACHE_DIR") or DEFAULT_DIR)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:  # a read-only home: run without the cache rather than fail
        return None
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path  # the sweep's subprocesses inherit it
    jax.config.update("jax_compilation_cache_dir", path)
    return path
