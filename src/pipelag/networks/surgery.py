"""Connection removal at inference (paper §5.3, Fig. 5): cut graph edges by zeroing their parameters.

An *edge* ``src->dst`` is one of the inputs of layer ``dst`` (see :mod:`pipelag.networks.graph`):
``src`` is ``obs``, ``action``, ``action_planes`` or an earlier layer. A layer combines its inputs by
concatenation (:func:`pipelag.networks.layers.gather_input`) followed by one kernel, so each source owns
a contiguous slice of the kernel's input axis:

* dense: rows ``kernel[slice, :]``;
* conv: input channels ``kernel[:, :, slice, :]`` (every source is pooled to the first one's size first);
* LSTM cell: the rows of the four input kernels ``ii/if/ig/io`` (the recurrent ``h*`` kernels and the
  biases are not an edge of the graph and stay).

Zeroing that slice removes the edge exactly: the layer's output no longer depends on the source
through it, and nothing else changes (biases and every other source's weights are untouched).
Residual sums (``Node.residual``) are parameter-free additions: they cannot be cut this way, so an
input edge whose pair of nodes also carries a residual sum (``*-res`` architectures) is refused with an
error instead of being half-removed.

``remove_connections(net, params, edges)`` is pure (new arrays, ``params`` untouched); apply it
before :meth:`~pipelag.networks.PipelinedNetwork.fuse_params` for the fused execution.
:func:`connection_groups` names the removals of Fig. 5 for ``mlp-proj-to-action``.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from pipelag.errors import PipelagError
from pipelag.networks.layers import gather_input

SEP = "->"
LSTM_INPUT_KERNELS = ("ii", "if", "ig", "io")


@dataclass(frozen=True)
class Connection:
    """One input edge of a layer and the slice of that layer's kernel input axis that carries it."""

    source: str
    dest: str
    start: int
    stop: int

    @property
    def name(self) -> str:
        return f"{self.source}{SEP}{self.dest}"


@dataclass(frozen=True)
class ConnectionGroup:
    """A named set of edges removed together (one bar of Fig. 5)."""

    name: str
    edges: tuple[str, ...]
    label: str


def _source_shapes(net) -> dict[str, tuple[int, ...]]:
    """Per-example shapes of every source a layer can read (inputs and layer outputs)."""
    shapes: dict[str, tuple[int, ...]] = {}
    obs = tuple(net.obs_shape)
    shapes["obs"] = (*obs[:-1], obs[-1] * getattr(net, "obs_history", 1))
    spec = net.action_spec
    if spec.history > 0:
        flat = spec.history * spec.width
        shapes["action"] = (flat,)
        if len(obs) == 3:
            shapes["action_planes"] = (obs[0], obs[1], flat)
    act = jax.eval_shape(lambda: net.zero_state((1,)))["act"]
    shapes.update({name: tuple(v.shape[1:]) for name, v in act.items()})
    return shapes


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _connections(net) -> dict[str, Connection]:
    """Every input edge of the network, in graph order, with its kernel slice (cached per network and graph)."""
    try:
        graph, cached = _CACHE[net]
        if graph is net.graph:
            return cached
    except (KeyError, TypeError):
        pass
    shapes = _source_shapes(net)
    out: dict[str, Connection] = {}
    for node in net.graph.nodes:
        start = 0
        for src in node.inputs:
            if src not in shapes:
                raise PipelagError(f"layer {node.name!r} reads {src!r}, which this network does not provide")
            one = jax.eval_shape(lambda s=src, n=node: gather_input(n, [jnp.zeros((1, *shapes[s]))]))
            width = int(one.shape[-1])
            c = Connection(src, node.name, start, start + width)
            out[c.name] = c
            start += width
    try:
        _CACHE[net] = (net.graph, out)
    except TypeError:  # not weak-referenceable: recompute next time
        pass
    return out


def _residual_pairs(net) -> set[str]:
    return {f"{r}{SEP}{n.name}" for n in net.graph.nodes for r in n.residual}


def list_connections(net) -> list[str]:
    """The name (``"src->dst"``, e.g. ``"obs->head"``) of every edge :func:`remove_connections` can cut,
    in graph order. Edges that are also residual sums are left out (they have no parameters)."""
    residual = _residual_pairs(net)
    return [name for name in _connections(net) if name not in residual]


def connection_groups(net) -> dict[str, ConnectionGroup]:
    """Named removals for the analysis of Fig. 5: ``intact`` (nothing), then, for every edge into the
    action head, a group removing it alone, then ``all`` (every edge into the head: the head outputs
    its bias only). For ``mlp-proj-to-action`` the groups carry the paper's names: ``obs-proj`` (a) the
    projections from the observations to the action, ``fc1-proj`` (b) the projections from the first
    layer's representation (``fc<i>-proj`` for deeper ones), ``fc<N-1>-conn`` (c) the connections from
    the last hidden layer (the second in the paper's three-layer agent) to the action."""
    head = net.graph.head
    removable = set(list_connections(net))
    head_edges = [name for name in _connections(net) if name.endswith(f"{SEP}{head}") and name in removable]
    groups = {"intact": ConnectionGroup("intact", (), "intact agent (nothing removed)")}
    hidden = [n.name for n in net.graph.nodes if n.name != head]
    proj_to_action = getattr(net, "name", "") == "mlp-proj-to-action"
    for edge in head_edges:
        src = edge.split(SEP)[0]
        if proj_to_action and src == "obs":
            name, label = "obs-proj", "(a) without the projections from the observations to the action"
        elif proj_to_action and hidden and src == hidden[-1]:
            ordinal = _ordinal(len(hidden))
            name, label = f"{src}-conn", f"(c) without the connections from the {ordinal}-layer representation"
        elif proj_to_action and src in hidden:
            ordinal = _ordinal(hidden.index(src) + 1)
            tag = "(b) " if src == hidden[0] else ""
            name, label = f"{src}-proj", f"{tag}without the projections from the {ordinal}-layer representation"
        else:
            name, label = f"no-{src}", f"without the connection {edge}"
        groups[name] = ConnectionGroup(name, (edge,), label)
    if head_edges:
        groups["all"] = ConnectionGroup(
            "all", tuple(head_edges), "every connection into the action removed (the head outputs its bias)"
        )
    return groups


def _ordinal(i: int) -> str:
    return {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth"}.get(i, f"{i}th")


def resolve_removal(net, spec: str | Iterable[str]) -> tuple[str, ...]:
    """Edge names of a removal given as a group name, an edge name, or several of them (a list, or one
    comma-separated string). Raises :class:`PipelagError` naming the valid choices."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    groups = connection_groups(net)
    edges: list[str] = []
    for item in items:
        if not item:
            continue
        found = groups[item].edges if item in groups else (item,)
        for e in found:
            _check_edge(net, e, groups)
            if e not in edges:
                edges.append(e)
    return tuple(edges)


def _check_edge(net, edge: str, groups: dict[str, ConnectionGroup] | None = None) -> None:
    valid = list_connections(net)
    if edge in valid:
        return
    if edge in _residual_pairs(net):
        raise PipelagError(
            f"{edge} in {getattr(net, 'name', 'this network')} is (also) a residual sum, a "
            "parameter-free addition: it cannot be removed by zeroing parameters (it would need "
            "masking inside the pipeline, which pipelag does not offer). Removable connections: "
            f"{', '.join(valid)}"
        )
    group_names = list(groups or connection_groups(net))
    raise PipelagError(
        f"unknown connection {edge!r} of {getattr(net, 'name', 'this network')}; valid connections: "
        f"{', '.join(valid)}; groups: {', '.join(group_names)}"
    )


def remove_connections(net, params: dict[str, Any], edges: Iterable[str] | str) -> dict[str, Any]:
    """``params`` with the edges ``edges`` (names from :func:`list_connections`, e.g. ``"obs->head"``,
    or group names from :func:`connection_groups`) cut: the kernel slice that carries each edge is zeroed.
    Pure: returns a new parameter tree; removing nothing returns ``params`` itself."""
    names = resolve_removal(net, edges)
    if not names:
        return params
    conns = _connections(net)
    out = dict(params)
    for name in names:
        c = conns[name]
        node = net.graph.node(c.dest)
        out[c.dest] = _zero_slice(node, out[c.dest], c)
    return out


def _zero_slice(node, layer_params, c: Connection):
    def cut(kernel, axis: int):
        if kernel.shape[axis] < c.stop:
            raise PipelagError(
                f"cannot remove {c.name}: layer {node.name!r} has a kernel with input size "
                f"{kernel.shape[axis]}, but its sources need {c.stop}; the parameters do not "
                "belong to this network"
            )
        index = [slice(None)] * kernel.ndim
        index[axis] = slice(c.start, c.stop)
        return jnp.asarray(kernel).at[tuple(index)].set(0)

    p = dict(layer_params)
    if node.op == "dense":
        p["kernel"] = cut(p["kernel"], 0)
    elif node.op == "conv":
        p["kernel"] = cut(p["kernel"], 2)
    elif node.op == "lstm":
        for gate in LSTM_INPUT_KERNELS:
            p[gate] = {**p[gate], "kernel": cut(p[gate]["kernel"], 0)}
    else:  # pragma: no cover - make_graph admits only the ops above
        raise PipelagError(f"layer {node.name!r}: cannot remove connections of op {node.op!r}")
    return p
