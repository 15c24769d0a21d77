"""Reproducing the paper's tables and figures: definitions of every experiment's grid, a resumable sweep
with an append-only result store, and a report that puts our numbers beside the paper's.

    pipelag sweep table9 --budget 0.1 --seeds 3 --out runs/
    pipelag report table9 --budget 0.1 --seeds 3 --out runs/

See docs/experiments.md. Nothing here imports JAX until a real trainer runs.
"""

from pipelag.experiments.definitions import EXPERIMENTS, Budget, get_experiment, list_experiments

__all__ = ["EXPERIMENTS", "Budget", "get_experiment", "list_experiments"]
