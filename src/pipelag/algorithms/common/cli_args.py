"""Command-line helpers shared by the trainers' `pipelag train` flags and the other subcommands."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pipelag.errors import PipelagError


def parse_value(text: str) -> Any:
    """JSON if it parses (numbers, booleans, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["a=1", "b-c=x"]`` → ``{"a": 1, "b_c": "x"}``; a malformed item names the expected form."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise PipelagError(f"{what} must look like KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = parse_value(v)
    return out


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts (seeds, workers, episodes): an integer ≥ 1."""
    try:
        n = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from e
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n
