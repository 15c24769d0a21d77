"""Scalar logging: always a JSON-lines file, plus TensorBoard event files when ``tensorboardX`` is
installed (an optional dependency; nothing breaks without it).

Each JSONL record is ``{"step": int, "tag": value, ...}``; one line per :meth:`ScalarLogger.log` call.
The JSONL file is appended and flushed line by line (a crash loses at most the line being written);
on resume, records with ``step`` beyond the checkpoint are dropped by :meth:`truncate_after`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from pipelag.algorithms.common.io import atomic_write_text, to_jsonable


def tensorboard_available() -> bool:
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        return False
    return True


class ScalarLogger:
    """Log scalars to ``<dir>/<name>.jsonl`` (and ``<dir>/tb/`` if tensorboardX is installed)."""

    def __init__(self, directory: str | os.PathLike, name: str = "metrics", tensorboard: bool | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / f"{name}.jsonl"
        self._tb = None
        if tensorboard is None:
            tensorboard = tensorboard_available()
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.directory / "tb"))
        self._file = None

    def _open(self):
        if self._file is None:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open between logs
        return self._file

    def log(self, step: int, scalars: dict[str, Any]) -> None:
        record = {"step": int(step), **{k: to_jsonable(v) for k, v in scalars.items()}}
        f = self._open()
        f.write(json.dumps(record) + "\n")
        f.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float) and math.isfinite(v):
                    self._tb.add_scalar(k, v, int(step))

    def truncate_after(self, step: int) -> None:
        """Drop records with ``step > step`` (used when resuming from a checkpoint at ``step``)."""
        self.close()
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.flush()
