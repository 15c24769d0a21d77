"""Code shared by the training algorithms: atomic files, checkpoints, logging, progress, run directories,
and small toy environments for fast tests."""

from pipelag.algorithms.common.checkpoint import load_checkpoint, save_checkpoint
from pipelag.algorithms.common.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_npz,
    atomic_write_text,
    to_jsonable,
)
from pipelag.algorithms.common.logging import ScalarLogger, tensorboard_available
from pipelag.algorithms.common.progress import Progress
from pipelag.algorithms.common.rundir import RunDir

__all__ = [
    "Progress",
    "RunDir",
    "ScalarLogger",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_npz",
    "atomic_write_text",
    "load_checkpoint",
    "save_checkpoint",
    "tensorboard_available",
    "to_jsonable",
]
