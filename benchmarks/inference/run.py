"""Run the inference benchmark without the main CLI: same arguments as ``pipelag bench ...``.

    python benchmarks/inference/run.py inference --device cpu --quick
    python benchmarks/inference/run.py inference --device gpu --json benchmarks/inference/results_gpu.json
    python benchmarks/inference/run.py report benchmarks/inference/results_*.json
"""

from __future__ import annotations

import argparse
import sys

from pipelag.errors import PipelagError
from pipelag.runtime.cli import add_bench_parser


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/inference/run.py")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_parser(sub)
    # `run.py inference ...` and `run.py bench inference ...` both work
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "bench":
        argv = ["bench", *argv]
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PipelagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
