"""A host-side progress line: steps, steps/s, ETA and a recent return, printed between chunks."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def format_count(n: float) -> str:
    n = float(n)
    if abs(n) >= 1e6:
        return f"{n / 1e6:.2f}M"
    if abs(n) >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


class Progress:
    """Prints ``[tag] 1.23M/10.00M steps (12%) | 41.2k steps/s | return 12.3 ± 0.4 | ETA 3m10s``.

    ``steps/s`` counts agent steps of all seeds together over the time spent in training chunks since
    the first report (compilation excluded: the first chunk's time is reported separately)."""

    def __init__(self, total_steps: int, num_seeds: int = 1, tag: str = "train", stream: TextIO | None = None,
                 enabled: bool = True):
        self.total = int(total_steps)
        self.num_seeds = int(num_seeds)
        self.tag = tag
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self._t0: float | None = None
        self._s0 = 0

    def start(self, steps_done: int) -> None:
        """Start the clock at ``steps_done`` (after the first, compiling, chunk)."""
        self._t0, self._s0 = time.perf_counter(), int(steps_done)

    def steps_per_second(self, steps_done: int) -> float | None:
        if self._t0 is None:
            return None
        dt = time.perf_counter() - self._t0
        return (int(steps_done) - self._s0) * self.num_seeds / dt if dt > 0 and steps_done > self._s0 else None

    def report(self, steps_done: int, extra: str = "") -> str:
        frac = steps_done / self.total if self.total else 1.0
        parts = [f"[{self.tag}] {format_count(steps_done)}/{format_count(self.total)} steps ({100 * frac:.0f}%)"]
        sps = self.steps_per_second(steps_done)
        if sps:
            parts.append(f"{format_count(sps)} steps/s" + (f" ({self.num_seeds} seeds)" if self.num_seeds > 1 else ""))
            remaining = (self.total - steps_done) * self.num_seeds / sps
            parts.append(f"ETA {format_duration(remaining)}")
        if extra:
            parts.append(extra)
        line = " | ".join(parts)
        if self.enabled:
            print(line, file=self.stream, flush=True)
        return line

    def message(self, text: str) -> None:
        if self.enabled:
            print(f"[{self.tag}] {text}", file=self.stream, flush=True)
