"""A run directory: config, checkpoint, metrics, results — every file written atomically.

Layout::

    <out>/config.json        what was run (algorithm config, seeds, env, versions)
    <out>/checkpoint.msgpack latest train state of all seeds (see common.checkpoint)
    <out>/metrics.jsonl      progress records (and <out>/tb/ if tensorboardX is installed)
    <out>/curves.npz         per-update training curves, one row per seed
    <out>/results.json       final per-seed evaluation returns and their mean ± standard error

Starting a run in a directory that already holds a checkpoint is refused unless ``resume=True``; a
resumed run must have the same config as the one stored.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from pipelag.algorithms.common.checkpoint import load_checkpoint, save_checkpoint
from pipelag.algorithms.common.io import atomic_write_json, atomic_write_npz, read_json, to_jsonable
from pipelag.algorithms.common.logging import ScalarLogger
from pipelag.errors import PipelagError


def versions() -> dict[str, str]:
    import jax

    out = {"python": platform.python_version(), "jax": jax.__version__}
    for name in ("flax", "optax", "pgx", "numpy"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - optional packages
            pass
    try:
        out["device"] = str(jax.devices()[0].device_kind)
    except Exception:  # noqa: BLE001
        pass
    out["xla_flags"] = os.environ.get("XLA_FLAGS", "")  # they change kernels, speed and (on a GPU) determinism
    return out


class RunDir:
    CONFIG = "config.json"
    CHECKPOINT = "checkpoint.msgpack"
    RESULTS = "results.json"
    CURVES = "curves.npz"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    # -------------------------------------------------------------- lifecycle
    def prepare(self, config: dict[str, Any], resume: bool = False, defaults: dict[str, Any] | None = None) -> bool:
        """Create the directory and write ``config.json``. Returns True if a checkpoint will be resumed.

        Refuses (PipelagError) to overwrite a run that has a checkpoint unless ``resume``; on resume the
        stored config must equal ``config``. ``defaults``: the config class's default values; a field the
        stored config lacks (written by an older pipelag) counts as equal when ``config`` has its default."""
        has_ckpt = self.checkpoint_path.exists()
        if self.path.exists() and not self.path.is_dir():
            raise PipelagError(f"--out {self.path} exists and is not a directory")
        if resume:
            if not has_ckpt:
                raise PipelagError(f"nothing to resume: no {self.CHECKPOINT} in {self.path}")
            stored = read_json(self.path / self.CONFIG).get("config")
            if stored is not None and defaults:
                stored = {**{k: v for k, v in to_jsonable(defaults).items() if k in config}, **stored}
            if stored != to_jsonable(config):
                diff = sorted(k for k in set(stored or {}) | set(to_jsonable(config))
                              if (stored or {}).get(k) != to_jsonable(config).get(k))
                raise PipelagError(f"cannot resume {self.path}: the config differs from the stored one in {diff}")
            return True
        if has_ckpt or (self.path / self.RESULTS).exists():
            raise PipelagError(f"{self.path} already holds a run; pass --resume to continue it or choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path / self.CONFIG, {"config": config, "versions": versions()})
        return False

    # -------------------------------------------------------------- files
    @property
    def checkpoint_path(self) -> Path:
        return self.path / self.CHECKPOINT

    def save_checkpoint(self, tree: Any, metadata: dict[str, Any]) -> Path:
        return save_checkpoint(self.checkpoint_path, tree, metadata)

    def load_checkpoint(self, template: Any) -> tuple[Any, dict[str, Any]]:
        return load_checkpoint(self.checkpoint_path, template)

    def logger(self, name: str = "metrics", tensorboard: bool | None = None) -> ScalarLogger:
        return ScalarLogger(self.path, name, tensorboard)

    def write_results(self, results: dict[str, Any]) -> Path:
        return atomic_write_json(self.path / self.RESULTS, results)

    def write_curves(self, **arrays: Any) -> Path:
        return atomic_write_npz(self.path / self.CURVES, **arrays)

    def read_results(self) -> dict[str, Any]:
        return read_json(self.path / self.RESULTS)
