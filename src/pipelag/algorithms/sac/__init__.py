"""SAC with a pipelined actor and undelayed twin critics (paper §4.3, Algorithm 1; docs/sac.md)."""

from pipelag.algorithms.sac.buffer import Buffer, Transition, buffer_add, buffer_init, gather, sample_windows
from pipelag.algorithms.sac.config import SACConfig
from pipelag.algorithms.sac.losses import Learner, SACState, unroll_actor
from pipelag.algorithms.sac.networks import actor_window, build_actor, gaussian_params, mean_action, sample_action
from pipelag.algorithms.sac.toy import PointTarget
from pipelag.algorithms.sac.train import HostDriver, JaxDriver, Runner, SACAgent, make_train, run

__all__ = ["Buffer", "HostDriver", "JaxDriver", "Learner", "PointTarget", "Runner", "SACAgent", "SACConfig",
           "SACState", "Transition", "actor_window", "buffer_add", "buffer_init", "build_actor", "gather",
           "gaussian_params", "make_train", "mean_action", "run", "sample_action", "sample_windows", "unroll_actor"]
