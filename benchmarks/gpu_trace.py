"""Summarise a ``jax.profiler`` trace: device time, kernels per step and the kernels that took the most time.

Used by ``ppo_speed.py --profile`` and ``sac_speed.py --profile``::

    with jax.profiler.trace(out_dir, create_perfetto_trace=True):
        ...  # `steps` steps
    print_trace_summary(out_dir, steps, "4 updates, 1 seed")
"""

from __future__ import annotations

import glob
import gzip
import json
from collections import defaultdict


def trace_summary(out_dir: str, steps: int) -> dict:
    """Device time and kernel counts of the newest perfetto trace under ``out_dir`` (per step)."""
    files = sorted(glob.glob(f"{out_dir}/**/perfetto_trace.json.gz", recursive=True))
    if not files:
        return {}
    with gzip.open(files[-1]) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    pid_names = {e["pid"]: e["args"].get("name", "") for e in events
                 if e.get("ph") == "M" and e.get("name") == "process_name"}
    device_pids = {p for p, n in pid_names.items() if "gpu" in n.lower() or "stream" in n.lower()}
    per_name, count = defaultdict(float), defaultdict(int)
    for e in events:
        if e.get("ph") == "X" and e.get("pid") in device_pids:
            per_name[e["name"]] += e.get("dur", 0.0)
            count[e["name"]] += 1
    total = sum(per_name.values())
    return {"device_ms_per_step": total / 1e3 / steps, "kernels_per_step": sum(count.values()) / steps,
            "devices": sorted({pid_names[p] for p in device_pids}),
            "top": [{"name": n, "share": d / max(total, 1e-9), "ms_per_step": d / 1e3 / steps,
                     "calls_per_step": count[n] / steps}
                    for n, d in sorted(per_name.items(), key=lambda kv: -kv[1])]}


def print_trace_summary(out_dir: str, steps: int, what: str, top: int = 45) -> dict:
    s = trace_summary(out_dir, steps)
    if not s:
        print(f"profile: no perfetto trace under {out_dir}")
        return s
    print(f"profile ({what}): {s['device_ms_per_step']:.3f} ms of device events and "
          f"{s['kernels_per_step']:.0f} events per step, in {s['devices']}")
    for k in s["top"][:top]:
        print(f"  {100 * k['share']:5.1f}%  {k['ms_per_step']:8.4f} ms  x{k['calls_per_step']:6.1f}/step  "
              f"{k['name'][:100]}")
    return s
