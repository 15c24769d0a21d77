"""Run the inference benchmark without the installed entry point: same arguments as ``pipelag bench ...``.

    python benchmarks/inference/run.py inference --device cpu --quick
    python benchmarks/inference/run.py inference --device gpu --json benchmarks/inference/results_gpu.json
    python benchmarks/inference/run.py report benchmarks/inference/results_*.json
"""

from __future__ import annotations

import sys

from pipelag.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(argv if argv[:1] == ["bench"] else ["bench", *argv]))
