"""Pipelined networks: the tick rule (graph), its execution (pipeline) and the architectures."""

from pipelag.networks.architectures import ARCHITECTURES, build_network, list_architectures
from pipelag.networks.graph import DelayProfile, Graph, Node, delay_profile, make_graph
from pipelag.networks.pipeline import ActionSpec, PipelinedNetwork

__all__ = ["ARCHITECTURES", "ActionSpec", "DelayProfile", "Graph", "Node", "PipelinedNetwork", "build_network",
           "delay_profile", "list_architectures", "make_graph"]
