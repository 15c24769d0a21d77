"""pipelag: real-time reinforcement learning with pipelined neural networks."""

import os

from pipelag.errors import PipelagError

__all__ = ["PipelagError"]
__version__ = "0.1.0"

#: XLA's CPU "concurrency-optimized" scheduler deadlocks some of our programs on few cores (seen on 2
#: cores with jaxlib 0.10.2: PPO's whole training, init + a scan of updates, vmapped over 2 seeds, waits
#: forever with the process idle). Turned off here, before JAX starts its CPU backend, unless the user set
#: it; it only affects the CPU backend's compiler. Importing pipelag after JAX has already run something on
#: the CPU is too late: then set XLA_FLAGS yourself (tests/test_cpu_deadlock.py checks both ways).
CPU_DEADLOCK_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
if "xla_cpu_enable_concurrency_optimized_scheduler" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {CPU_DEADLOCK_FLAG}".strip()
