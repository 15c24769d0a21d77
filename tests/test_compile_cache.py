"""The command line's persistent compilation cache: on by default, reused across processes, switchable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROGRAM = r"""
import json, os, sys
from pipelag.runtime.compile_cache import enable_compile_cache
path = enable_compile_cache()
import jax, jax.numpy as jnp
f = jax.jit(lambda x: jax.lax.scan(lambda c, _: (jnp.tanh(c @ c), None), x, None, length=7)[0])
f(jnp.ones((8, 8))).block_until_ready()
print(json.dumps({"path": path, "jax": jax.config.jax_compilation_cache_dir,
                  "env": os.environ.get("JAX_COMPILATION_CACHE_DIR")}))
"""


def _run(env_update: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELAG_COMPILE", "JAX_COMPILATION"))}
    env.update({"JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", **env_update})
    out = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _entries(path) -> dict[str, int]:
    return {name: os.stat(os.path.join(path, name)).st_mtime_ns for name in os.listdir(path)}


def test_cache_is_written_once_and_reused_by_the_next_process(tmp_path):
    cache = tmp_path / "xla"
    first = _run({"PIPELAG_COMPILE_CACHE_DIR": str(cache)})
    assert first["path"] == first["jax"] == first["env"] == str(cache)
    written = _entries(cache)
    assert written, "the first process wrote no executable"
    second = _run({"PIPELAG_COMPILE_CACHE_DIR": str(cache)})
    assert second["path"] == str(cache)
    # the same programs: read back, so nothing is compiled and (re)written
    assert _entries(cache) == written


def test_switched_off_and_users_own_folder_win(tmp_path):
    off = _run({"PIPELAG_COMPILE_CACHE": "0", "PIPELAG_COMPILE_CACHE_DIR": str(tmp_path / "unused")})
    assert off["path"] is None and not off["jax"] and not (tmp_path / "unused").exists()
    mine = tmp_path / "mine"
    own = _run({"JAX_COMPILATION_CACHE_DIR": str(mine), "PIPELAG_COMPILE_CACHE_DIR": str(tmp_path / "other")})
    assert own["path"] == str(mine) and not (tmp_path / "other").exists()
