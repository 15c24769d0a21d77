"""The append-only result store of a sweep: ``<out>/results.jsonl``, one JSON record per finished (run, seed).

* A record is appended only once its run has finished, with ``flush`` + ``fsync`` under an exclusive
  ``flock`` (several sweeps, or a sweep and its workers, may append to the same store). Records are never
  rewritten or deleted, so a finished result cannot be lost by a later crash.
* A crash in the middle of an append leaves at most a torn last line: readers ignore it, and the next
  append first terminates it with a newline so the new record stays readable. Any other unreadable line
  is skipped and counted (``StoreContents.bad_lines``).
* The same (key, seed) appended twice (two sweeps racing) is read once: the first record wins.

Record fields: ``key`` (hash of the spec, ``definitions.run_key``), ``seed``, ``return`` (the final
evaluation return of that seed), ``metrics`` (other per-seed numbers from the trainer), ``spec``,
``finished`` (UTC time), ``host``, ``wall_s``.

Per-run trainer directories (checkpoints, curves) live in ``<out>/runs/<key>/seeds-<s…>/``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelag.errors import PipelagError

try:  # POSIX advisory locks; on other systems appends rely on O_APPEND alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

SCHEMA = 1


@dataclass
class StoreContents:
    records: list[dict[str, Any]] = field(default_factory=list)
    torn_tail: bool = False
    bad_lines: list[int] = field(default_factory=list)
    duplicates: int = 0

    def by_key(self) -> dict[str, dict[int, dict[str, Any]]]:
        out: dict[str, dict[int, dict[str, Any]]] = {}
        for r in self.records:
            out.setdefault(r["key"], {})[int(r["seed"])] = r
        return out

    def finished(self) -> set[tuple[str, int]]:
        return {(r["key"], int(r["seed"])) for r in self.records}


def make_record(key: str, seed: int, result: dict[str, Any], spec: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """A store record from one seed's trainer result (which must have a numeric ``return``)."""
    if not isinstance(result, dict) or "return" not in result:
        raise PipelagError(f"the trainer's result for seed {seed} has no 'return': {result!r}")
    ret = result["return"]
    if isinstance(ret, bool) or not isinstance(ret, int | float):
        raise PipelagError(f"the trainer's 'return' for seed {seed} is not a number: {ret!r}")
    metrics = {k: _jsonable(v) for k, v in result.items() if k != "return"}
    return {"v": SCHEMA, "key": key, "seed": int(seed), "return": _jsonable(float(ret)), "metrics": metrics,
            "spec": spec, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(), "wall_s": round(float(wall_s), 3)}


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item):  # numpy scalar
        return _jsonable(v.item())
    return v


def _valid(rec: Any) -> bool:
    return (isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("seed"), int)
            and "return" in rec)


class ResultStore:
    FILE = "results.jsonl"

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / self.FILE

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    # ------------------------------------------------------------------ writing
    def append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` durably (one write, flush, fsync) under an exclusive lock."""
        if not records:
            return
        data = b"".join(json.dumps(r, sort_keys=True, allow_nan=False).encode() + b"\n" for r in records)
        self.root.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size > 0:
                with open(self.path, "rb") as f:  # a torn last line (crash mid-append): terminate it first
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        data = b"\n" + data
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        if created:
            _fsync_dir(self.root)

    # ------------------------------------------------------------------ reading
    def read(self) -> StoreContents:
        out = StoreContents()
        if not self.path.exists():
            return out
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        ends_with_newline = data.endswith(b"\n")
        if ends_with_newline:
            lines = lines[:-1]
        seen: set[tuple[str, int]] = set()
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                rec = None
            if not _valid(rec):
                if i == len(lines) - 1 and not ends_with_newline:
                    out.torn_tail = True
                else:
                    out.bad_lines.append(i + 1)
                continue
            ks = (rec["key"], rec["seed"])
            if ks in seen:
                out.duplicates += 1
                continue
            seen.add(ks)
            out.records.append(rec)
        return out

    def finished(self) -> set[tuple[str, int]]:
        return self.read().finished()

    # ------------------------------------------------------------------ trainer directories
    def run_dir(self, key: str, seeds: tuple[int, ...] | list[int]) -> Path:
        return self.root / "runs" / key / ("seeds-" + "-".join(str(s) for s in sorted(seeds)))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
