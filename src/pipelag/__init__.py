"""pipelag: real-time reinforcement learning with pipelined neural networks."""

from pipelag.errors import PipelagError

__all__ = ["PipelagError"]
__version__ = "0.1.0"
