"""Deployment runtime: load a trained pipelined policy and run its tick loop at batch 1.

``save_policy`` / ``load_policy`` define the checkpoint format (:mod:`pipelag.runtime.checkpoint`);
``PipelinedPolicy`` runs it (:mod:`pipelag.runtime.policy`). The inference benchmark
(``pipelag bench inference``) lives in :mod:`pipelag.runtime.cli`; torch is never imported here.
"""

from pipelag.runtime.checkpoint import LoadedPolicy, load_policy, save_policy
from pipelag.runtime.policy import PipelinedPolicy

__all__ = ["LoadedPolicy", "PipelinedPolicy", "load_policy", "save_policy"]
