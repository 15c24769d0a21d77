"""The tick rule of DESIGN §1, defined once, for a graph of layers.

A network is a list of :class:`Node` (layers) in topological order. Sources a node can read:

* ``"obs"``    – the observation o_t held during tick t (always current);
* ``"action"`` – the recent actions, newest = a_t, the action executed during tick t (known to the
  agent, so a_{t+1} may depend on it: DESIGN §2);
* ``"action_planes"`` – the same actions as one-hot planes tiled over the observation image;
* a layer name – that layer's output. If the layer is in the *same stage* it is read fresh (computed
  earlier in this tick); otherwise the value it held at the start of the tick (computed last tick).

Every layer belongs to a stage (its tick slot). With δ ≥ 1 each layer is its own stage, so a layer
never consumes an output produced in the same tick. With δ < 1, ``1/δ`` layers form one stage and
are computed serially inside the tick. Residual sources are added *after* the layer, from the same
tick's pre-residual outputs (a non-layer op that costs no tick). The action used during tick t is
the value the head held at the start of tick t.

This module is pure Python (no JAX): the stage assignment, validation and the delay profile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pipelag.errors import PipelagError

INPUT_SOURCES = ("obs", "action", "action_planes")


@dataclass(frozen=True)
class Node:
    """One layer of a pipelined network."""

    name: str
    op: str  # "dense" | "conv" | "lstm"
    inputs: tuple[str, ...]
    features: int
    activation: str | None = "relu"
    kernel: int = 3
    stride: int = 1
    padding: str = "SAME"
    #: layers whose same-tick pre-residual output is added to this layer's output (no tick cost)
    residual: tuple[str, ...] = ()
    #: spatial size to max-pool image sources to before flattening (dense/lstm inputs)
    pool_to: tuple[int, int] | None = None
    init_scale: float = math.sqrt(2.0)


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    #: name of the action head (its stored value is the action output)
    head: str
    stages: dict[str, int] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def reads_fresh(self, node: Node, src: str) -> bool:
        """Whether ``node`` reads ``src``'s output of this tick (True) or of last tick (False)."""
        if src in INPUT_SOURCES:
            return True
        return self.stages[src] == self.stages[node.name]


def layer_depths(nodes: tuple[Node, ...]) -> dict[str, int]:
    """Longest path in layers from the inputs to each layer (residual edges cost nothing)."""
    depth: dict[str, int] = {}
    for n in nodes:
        srcs = [depth[s] for s in n.inputs if s not in INPUT_SOURCES]
        res = [depth[r] - 1 for r in n.residual]
        depth[n.name] = max([0, *srcs, *res]) + 1
    return depth


def shortest_layer_paths(nodes: tuple[Node, ...]) -> dict[str, int]:
    """Fewest layers on any path from the observation to each layer, ignoring time entirely.

    Used by the delay test as an independent bound: a_t can only depend on o_{t-k} if
    k ≥ ceil(shortest · δ). Residual edges bypass the receiving layer (cost 0).
    """
    inf = 10**9
    short: dict[str, int] = {}
    for n in nodes:
        via_inputs = [1 if s == "obs" else (short[s] + 1 if s not in INPUT_SOURCES else inf) for s in n.inputs]
        via_res = [short[r] for r in n.residual]
        short[n.name] = min([inf, *via_inputs, *via_res])
    return short


def assign_stages(nodes: tuple[Node, ...], layers_per_tick: float) -> dict[str, int]:
    """Stage of each layer: layer at depth d goes to stage ceil(d / layers_per_tick)."""
    depth = layer_depths(nodes)
    return {name: math.ceil(d / layers_per_tick - 1e-9) for name, d in depth.items()}


def make_graph(nodes: list[Node] | tuple[Node, ...], head: str, layers_per_tick: float = 1.0,
               stages: dict[str, int] | None = None) -> Graph:
    nodes = tuple(nodes)
    seen: set[str] = set()
    for n in nodes:
        if n.name in INPUT_SOURCES or n.name in seen:
            raise PipelagError(f"layer name {n.name!r} is reserved or used twice; give each layer a unique name")
        for s in (*n.inputs, *n.residual):
            if s not in seen and s not in INPUT_SOURCES:
                raise PipelagError(
                    f"layer {n.name!r} reads {s!r}, which is not an earlier layer nor one of {INPUT_SOURCES}; "
                    "declare layers in topological order")
        if n.op not in ("dense", "conv", "lstm"):
            raise PipelagError(f"layer {n.name!r}: unknown op {n.op!r} (use dense, conv or lstm)")
        seen.add(n.name)
    if head not in seen:
        raise PipelagError(f"head {head!r} is not a layer of the network")
    stage_map = dict(stages) if stages is not None else assign_stages(nodes, layers_per_tick)
    missing = set(seen) - set(stage_map)
    if missing:
        raise PipelagError(f"explicit stages miss layers {sorted(missing)}; give every layer a stage index")
    for n in nodes:
        for s in n.inputs:
            if s not in INPUT_SOURCES and stage_map[s] > stage_map[n.name]:
                raise PipelagError(f"layer {n.name!r} (stage {stage_map[n.name]}) reads {s!r} from a later stage "
                                   f"({stage_map[s]}); stages must not decrease along edges")
    return Graph(nodes=nodes, head=head, stages=stage_map)


def path_pairs(graph: Graph, max_ticks: int, obs_history: int = 1) -> dict[str, set[tuple[int, int]]]:
    """For each layer n: the set of (k, L) such that the value n holds at the start of tick t
    depends on o_{t-k} through a path of L layers. Computed from the tick rule, not from code.
    ``obs_history`` = m: the observation source holds o_t..o_{t-m+1} (a frame stack, no layer)."""
    layer_part: dict[str, set[tuple[int, int]]] = {}
    held: dict[str, set[tuple[int, int]]] = {}
    for n in graph.nodes:
        pairs: set[tuple[int, int]] = set()
        for s in n.inputs:
            if s == "obs":
                pairs |= {(j, 1) for j in range(1, obs_history + 1)}
            elif s in INPUT_SOURCES:
                continue
            elif graph.reads_fresh(n, s):
                pairs |= {(k, L + 1) for k, L in held[s]}
            else:
                pairs |= {(k + 1, L + 1) for k, L in held[s] if k + 1 <= max_ticks}
        if n.op == "lstm":  # own carry from last tick: one more tick, one more layer, until no change
            frontier = set(pairs)
            while frontier:
                new = {(k + 1, L + 1) for k, L in frontier if k + 1 <= max_ticks} - pairs
                pairs |= new
                frontier = new
        layer_part[n.name] = pairs
        held[n.name] = pairs | set().union(*(layer_part[r] for r in n.residual)) if n.residual else pairs
    return held


@dataclass(frozen=True)
class DelayProfile:
    """For each k (in ticks and env steps): fewest/most layers on a path from o_{t-k} to a_t."""

    delta: float
    env_steps_per_tick: int
    rows: tuple[tuple[int, int, int], ...]  # (k_ticks, min_layers, max_layers)

    @property
    def min_delay_ticks(self) -> int:
        return min(k for k, _, _ in self.rows)

    @property
    def ticks(self) -> set[int]:
        return {k for k, _, _ in self.rows}

    def violations(self) -> list[tuple[int, int]]:
        """(k_env, layers) pairs breaking L(s_{t-k}, a_t) ≤ ⌊k/δ⌋."""
        bad = []
        for k, _, longest in self.rows:
            k_env = k * self.env_steps_per_tick
            if longest > math.floor(k_env / self.delta + 1e-9):
                bad.append((k_env, longest))
        return bad

    def format(self) -> str:
        lines = [f"δ = {self.delta:g} ({self.env_steps_per_tick} env step(s) per tick)",
                 "  k(ticks)  k(env steps)  shortest  longest   (layers on paths o_{t-k} -> a_t)"]
        for k, lo, hi in self.rows:
            lines.append(f"  {k:8d}  {k * self.env_steps_per_tick:12d}  {lo:8d}  {hi:7d}")
        return "\n".join(lines)


def delay_profile(graph: Graph, delta: float, env_steps_per_tick: int, max_ticks: int = 16,
                  obs_history: int = 1) -> DelayProfile:
    pairs = path_pairs(graph, max_ticks, obs_history)[graph.head]
    by_k: dict[int, list[int]] = {}
    for k, L in pairs:
        by_k.setdefault(k, []).append(L)
    rows = tuple((k, min(v), max(v)) for k, v in sorted(by_k.items()))
    return DelayProfile(delta=delta, env_steps_per_tick=env_steps_per_tick, rows=rows)
