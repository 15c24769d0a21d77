"""Configs batched as one vmapped program (``run(..., batch=[...])`` of PPO and SAC): the shared checks."""

from __future__ import annotations

from typing import Any

from pipelag.errors import PipelagError


def check_batch(batch, fields: tuple[str, ...], differ_in: str) -> list[dict[str, Any]] | None:
    """``batch`` as a list of dicts that all set the same ``fields`` (a subset), δs whole numbers ≥ 1 as
    floats (None stays None); one clear error otherwise. ``differ_in``: those fields in words."""
    if batch is None:
        return None
    if not isinstance(batch, list | tuple) or not batch or not all(isinstance(b, dict) for b in batch):
        raise PipelagError(f"batch must be a non-empty list of dicts such as {{'delta': 2}}, got {batch!r}")
    keys = set(batch[0])
    if not keys or not keys <= set(fields) or any(set(b) != keys for b in batch):
        raise PipelagError(f"batched configs may differ only in {differ_in}: every config of a batch must set the "
                           f"same fields, among {', '.join(fields)} (the others are one program's), got {batch!r}")
    out = []
    for b in batch:
        b = dict(b)
        if "delta" in b:
            d = b["delta"]
            if isinstance(d, bool) or not isinstance(d, int | float) or d < 1 or d != int(d):
                raise PipelagError(f"a batch of δs needs whole numbers ≥ 1 (δ < 1 changes the network), got {d!r}")
            b["delta"] = float(d)
        out.append(b)
    if len({tuple(sorted(b.items())) for b in out}) != len(out):
        raise PipelagError(f"the configs of a batch must differ, got {batch!r}")
    return out
