"""XLA flags pipelag sets for its own training processes (before JAX starts its backend).

XLA reads ``XLA_FLAGS`` once, when the first computation starts the backend, so a command sets them
first thing. A flag the user already gave in ``XLA_FLAGS`` (either value) is left as the user set it.
"""

from __future__ import annotations

import os

#: PPO on a GPU: cuBLAS instead of Triton for the matrix products. Measured on an H100 (Breakout,
#: ``cnn-skip``, bf16): 4.6 % faster in session 7, 11 % in session 8 (docs/ppo.md). Ignored on a CPU.
PPO_GPU_FLAGS = ("--xla_gpu_enable_triton_gemm=false",)

#: ``pipelag train --deterministic``: the same seed gives the same numbers run after run on a GPU. Without
#: it, atomic reductions and autotuning (which picks kernels by timing) change the rounding from run to
#: run, and RL training amplifies that: session 3's Breakout skip & aug code and seeds gave 24.1 and, rerun,
#: 18.3 (docs/ppo.md). Costs speed (measured there). No effect on a CPU, which is deterministic anyway.
DETERMINISTIC_GPU_FLAGS = ("--xla_gpu_deterministic_ops=true",)


def add_default_xla_flags(flags=PPO_GPU_FLAGS, environ=None) -> list[str]:
    """Append each of ``flags`` to ``XLA_FLAGS`` unless that flag is already there; returns those added."""
    environ = os.environ if environ is None else environ
    current = environ.get("XLA_FLAGS", "")
    added = [f for f in flags if f.split("=", 1)[0] not in current]
    if added:
        environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
    return added
