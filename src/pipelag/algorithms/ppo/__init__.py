"""PPO with a pipelined actor and an undelayed critic (paper App. A; docs/ppo.md)."""

from pipelag.algorithms.ppo.config import PPOConfig
from pipelag.algorithms.ppo.host import HostRunner
from pipelag.algorithms.ppo.losses import compute_gae, ppo_loss
from pipelag.algorithms.ppo.networks import build_actor_critic
from pipelag.algorithms.ppo.train import PPO, Runner, make_env, make_train, run, train_seeds

__all__ = ["PPO", "HostRunner", "PPOConfig", "Runner", "build_actor_critic", "compute_gae", "make_env", "make_train",
           "ppo_loss", "run", "train_seeds"]
