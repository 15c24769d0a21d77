"""JAX-native environments (``make``, ``list_envs``), wrappers, and the host (gymnasium) adapter."""

from pipelag.envs.base import JaxEnv, Step
from pipelag.envs.registry import list_envs, make

__all__ = ["JaxEnv", "Step", "list_envs", "make"]
