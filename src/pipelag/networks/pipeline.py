"""Pipelined execution of a layer graph: step, unroll, reference and fused ticks.

The loop of an agent, one tick at a time (DESIGN §1–2)::

    state = net.initial_state(params, obs)          # at every episode start
    out = net.output(params, state, obs)            # what the agent acts on during this tick
    action = sample(out)                            # a_t
    _, state = net.step(params, state, obs, action) # layers consume o_t (and a_t); outputs seen next tick

For a pipelined network ``output`` is the head's stored value (computed last tick), so a_t never
depends on o_t. For an instantaneous network (a baseline or a critic) ``output`` is a plain forward
pass on o_t and the action history a_{t-1}, a_{t-2}, ...

``step`` returns ``(head value computed this tick, new_state)``; for a pipelined network that is the
output the agent acts on during the next tick.

Dropout (paper App. D, Fig. 12): a network built with ``dropout=p > 0`` zeroes every unit of every
hidden layer (all layers but the head; never the inputs) with probability p on every tick, and scales
the kept ones by 1/(1−p) (inverted dropout), at training and at inference alike. The mask is applied to
a layer's own output (after its activation, before residual sums, so a dropped unit is zero wherever it
is read). It needs a PRNG key: ``step``/``fused_step``/``output`` take the key of the tick, ``unroll``
and ``unroll_layerwise`` the key of the sequence and use :meth:`PipelinedNetwork.tick_key` (key, t) at
tick t; layer i of the graph draws its mask from ``fold_in(tick key, i)``. So tick-by-tick ``step``
with ``tick_key(key, t)``, ``unroll`` and ``unroll_layerwise`` with ``key`` compute the same masks and
the same outputs. ``dropout=0`` ignores keys and runs exactly the code without dropout. The
instantaneous pass of ``init_activations="instant"`` (``initial_state``) never drops.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from pipelag.errors import PipelagError
from pipelag.networks.graph import INPUT_SOURCES, Graph, delay_profile
from pipelag.networks.layers import COMPUTE_DTYPES, activate, apply_layer, gather_input, match_shape, module_for

State = dict[str, Any]


@dataclass(frozen=True)
class ActionSpec:
    """How actions enter the network: ``num_actions`` (discrete, one-hot) or ``action_dim``."""

    num_actions: int | None = None
    action_dim: int | None = None
    history: int = 0  # how many recent actions (a_t, a_{t-1}, ...) the network sees

    @property
    def width(self) -> int:
        return self.num_actions if self.num_actions is not None else (self.action_dim or 0)

    def encode(self, action: jax.Array) -> jax.Array:
        if self.num_actions is not None:
            return jax.nn.one_hot(action, self.num_actions)
        return action.astype(jnp.float32)


class PipelinedNetwork:
    """A layer graph executed under the tick rule. Stateless: parameters and state are pytrees."""

    def __init__(self, graph: Graph, obs_shape: tuple[int, ...], action_spec: ActionSpec = ActionSpec(), *,
                 delta: float = 1.0, env_steps_per_tick: int = 1, instantaneous: bool = False,
                 init_activations: str = "zeros", obs_history: int = 1, compute_dtype: str = "float32",
                 dropout: float = 0.0, conv_impl: str = "xla", name: str = "network"):
        self.graph = graph
        self.obs_shape = tuple(obs_shape)
        #: frame stack kept in the state: the "obs" source is the last m observations, oldest first,
        #: concatenated on the last axis (padded with the first observation of the episode)
        self.obs_history = obs_history
        self.action_spec = action_spec
        self.delta = delta
        self.env_steps_per_tick = env_steps_per_tick
        self.instantaneous = instantaneous
        self.init_activations = init_activations
        self.name = name
        self.compute_dtype = compute_dtype
        self.conv_impl = conv_impl
        #: dropout probability of every hidden unit, every tick (0: none; see the module docstring)
        self.dropout = check_dropout(dropout)
        #: static: whether the network drops at all (keys are needed and split). Fixed at build time, so a
        #: view from :meth:`with_dropout_rate` can carry a traced rate (configs batched with vmap)
        self.uses_dropout = self.dropout > 0.0
        #: hidden layer → index folded into the tick key for its mask (its position in the graph)
        self._dropout_index = {n.name: i for i, n in enumerate(graph.nodes) if n.name != graph.head}
        self.modules = {n.name: module_for(n, compute_dtype, conv_impl) for n in graph.nodes}
        self._reference_plan = [[(n.name,)] for n in graph.nodes]
        self._shapes, self._input_shapes = self._shapes_of_layers()
        self._fused_plan = self._make_fused_plan()

    # ------------------------------------------------------------------ parameters and state
    def init(self, key: jax.Array) -> dict[str, Any]:
        """Random parameters, one entry per layer."""
        return self._init_with_outputs(key)[0]

    def cast_params(self, params) -> dict[str, Any]:
        """``params`` with the dense and conv layers' parameters in the compute dtype: the values those
        layers multiply with anyway (they cast per call), so every output is the same. For a loop over
        ticks: cast once before it (XLA leaves the per-call cast inside the loop). LSTM cells and
        float32 networks are returned as they are."""
        if self.compute_dtype == "float32":
            return params
        dtype = COMPUTE_DTYPES[self.compute_dtype]
        ops = {n.name: n.op for n in self.graph.nodes}
        return {name: jax.tree.map(lambda p: p.astype(dtype) if p.dtype == jnp.float32 else p, layer)
                if ops.get(name) in ("dense", "conv") else layer for name, layer in params.items()}

    def _init_with_outputs(self, key: jax.Array):
        params: dict[str, Any] = {}
        inputs = self._dummy_inputs(1)
        outs: dict[str, jax.Array] = {}
        xs: dict[str, jax.Array] = {}
        for node, k in zip(self.graph.nodes, jax.random.split(key, len(self.graph.nodes)), strict=True):
            x = gather_input(node, [inputs[s] if s in INPUT_SOURCES else outs[s] for s in node.inputs])
            mod = self.modules[node.name]
            carry = mod.initialize_carry(k, x.shape) if node.op == "lstm" else None
            params[node.name] = (mod.init(k, carry, x) if node.op == "lstm" else mod.init(k, x))["params"]
            outs[node.name] = apply_layer(node, mod, params[node.name], x, carry)[0]
            xs[node.name] = x
        return params, outs, xs

    def zero_state(self, batch_shape: tuple[int, ...] = ()) -> State:
        state: State = {"act": {n: jnp.zeros((*batch_shape, *s)) for n, s in self._shapes.items()},
                        "carry": {}, "actions": None}
        for n in self.graph.nodes:
            if n.op == "lstm":
                z = jnp.zeros((*batch_shape, n.features))
                state["carry"][n.name] = (z, z)
        if self.action_spec.history > 0:
            state["actions"] = jnp.zeros((*batch_shape, self.action_spec.history, self.action_spec.width))
        state["observations"] = (jnp.zeros((*batch_shape, self.obs_history - 1, *self.obs_shape))
                                 if self.obs_history > 1 else None)
        return state

    def initial_state(self, params, obs: jax.Array) -> State:
        """Activations at an episode start: zeros, or an instantaneous pass on the first observation."""
        batch_shape = obs.shape[: obs.ndim - len(self.obs_shape)]
        state = self.zero_state(batch_shape)
        if self.obs_history > 1:  # pad the frame stack with the first observation
            state["observations"] = jnp.broadcast_to(jnp.expand_dims(obs.astype(jnp.float32), len(batch_shape)),
                                                     state["observations"].shape)
        if self.init_activations == "zeros" or self.instantaneous:
            return state
        return self._batched(lambda s, o, a: self._tick(self._reference_plan, params, s, o, a, all_fresh=True,
                                                        stacked=False, push_action=False)[1],
                             state, obs, None)

    # ------------------------------------------------------------------ the tick
    def output(self, params, state: State, obs: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """What the agent acts on during this tick. ``key``: the tick's dropout key, needed only by an
        instantaneous network with dropout (a pipelined network returns its stored head value)."""
        if not self.instantaneous:
            return state["act"][self.graph.head]
        key = self._dropout_key(key, "output")
        return self._batched(lambda s, o, a: self._tick(self._reference_plan, params, s, o, a, all_fresh=True,
                                                        stacked=False, push_action=False, key=key)[0],
                             state, obs, None)

    def step(self, params, state: State, obs: jax.Array, action: jax.Array | None = None,
             key: jax.Array | None = None):
        """One tick of the reference execution (layer by layer). ``action`` is a_t; ``key`` the tick's
        dropout key (needed with dropout > 0, ignored otherwise)."""
        key = self._dropout_key(key, "step")
        return self._batched(lambda s, o, a: self._tick(self._reference_plan, params, s, o, a,
                                                        all_fresh=self.instantaneous, stacked=False, key=key),
                             state, obs, action)

    def fused_step(self, fused_params, state: State, obs: jax.Array, action: jax.Array | None = None,
                   key: jax.Array | None = None):
        """One tick with all same-shaped layers that can run together batched into one op (same dropout
        masks as ``step`` for the same ``key``)."""
        if self.instantaneous:
            raise ValueError("fused execution is for pipelined networks; an instantaneous pass is serial")
        key = self._dropout_key(key, "fused_step")
        return self._batched(lambda s, o, a: self._tick(self._fused_plan, fused_params, s, o, a,
                                                        all_fresh=False, stacked=True, key=key),
                             state, obs, action)

    @staticmethod
    def tick_key(key: jax.Array, t) -> jax.Array:
        """The dropout key of tick ``t`` of a sequence that ``unroll``/``unroll_layerwise`` get ``key`` for:
        ``step(..., key=tick_key(key, t))`` at tick t reproduces them."""
        return jax.random.fold_in(key, t)

    def fuse_params(self, params) -> list:
        """Stack the parameters of each group of the fused plan (do it once, outside the loop)."""
        return [[jax.tree.map(lambda *p: jnp.stack(p), *[params[n] for n in group]) for group in wave]
                for wave in self._fused_plan]

    def unroll(self, params, state: State, obs_seq: jax.Array, action_seq: jax.Array | None = None,
               resets: jax.Array | None = None, key: jax.Array | None = None, scan_unroll: int | bool = 1):
        """Run T ticks (lax.scan). Returns (outputs[t] = what a_t was drawn from, final state).

        ``scan_unroll``: the scan's unroll factor (speed only; ``True``: no loop, for short sequences
        such as SAC's windows).

        ``resets[t]`` marks o_t as the first observation of an episode: the activations are reset
        before tick t (so gradients never flow across episode boundaries). ``key``: the dropout key of
        the sequence (tick t uses ``tick_key(key, t)``); needed with dropout > 0, ignored otherwise.
        """
        T = obs_seq.shape[0]
        key = self._dropout_key(key, "unroll")
        if resets is None:
            resets = jnp.zeros((T,), bool)
        if action_seq is None:
            action_seq = jnp.zeros((T,), jnp.int32)

        def tick(carry, xs):
            obs, action, reset = xs[:3]
            k = None if key is None else self.tick_key(key, xs[3])
            fresh = self.initial_state(params, obs)
            carry = jax.tree.map(lambda f, c: jnp.where(_bcast(reset, f), f, c), fresh, carry)
            out = self.output(params, carry, obs, key=k)
            _, carry = self.step(params, carry, obs, action if self.action_spec.history else None, key=k)
            return carry, out

        xs = (obs_seq, action_seq, resets) if key is None else (obs_seq, action_seq, resets, jnp.arange(T))
        state, outs = jax.lax.scan(tick, state, xs, unroll=scan_unroll)
        return outs, state

    def unroll_layerwise(self, params, state: State, obs_seq: jax.Array, action_seq: jax.Array | None = None,
                         resets: jax.Array | None = None, key: jax.Array | None = None) -> jax.Array:
        """``unroll(...)[0]`` for obs_seq [T, B, ...], computed layer by layer over all T ticks at once.

        Under the tick rule a layer at tick t reads what its inputs held at the start of tick t: their
        outputs of tick t−1 (or the episode's initial activations after a reset). So each layer is one
        batched op over T·B inputs shifted by one tick, instead of T sequential ticks — the fast path
        for training by BPTT. An LSTM (a true recurrence) or a frame stack kept in the network state
        falls back to the tick-by-tick scan. ``key``: as for ``unroll`` (the same dropout masks).
        """
        if obs_seq.ndim != len(self.obs_shape) + 2:
            raise ValueError(f"unroll_layerwise needs obs_seq [T, B, *{self.obs_shape}], got {obs_seq.shape}")
        key = self._dropout_key(key, "unroll_layerwise")
        if self.obs_history > 1 or any(n.op == "lstm" for n in self.graph.nodes):
            return self.unroll(params, state, obs_seq, action_seq, resets, key=key)[0]
        T, B = obs_seq.shape[:2]
        resets = jnp.zeros((T, B), bool) if resets is None else resets
        flat = lambda x: x.reshape((T * B, *x.shape[2:]))
        hist = None
        if self.action_spec.history > 0:
            if action_seq is None:
                raise ValueError("this network sees its action history: pass action_seq")
            # what the layers see during tick t: a_t pushed (pipelined) or not yet (instantaneous output)
            hist = self._action_histories(state, action_seq, resets, pushed=not self.instantaneous)
        sources = self._sources(flat(obs_seq), None if hist is None else flat(hist))
        init = None
        if not self.instantaneous and self.init_activations == "instant":
            init = self.initial_state(params, obs_seq)["act"]  # [T, B, ...]: the pass on every o_t
        held: dict[str, jax.Array] = {}

        def stored(name: str, new: dict[str, jax.Array]) -> jax.Array:
            if name not in held:
                prev = new[name].reshape((T, B, *new[name].shape[1:]))
                shifted = jnp.concatenate([state["act"][name][None].astype(prev.dtype), prev[:-1]], axis=0)
                start = jnp.zeros_like(shifted) if init is None else init[name].astype(prev.dtype)
                held[name] = flat(jnp.where(_bcast(resets, shifted), start, shifted))
            return held[name]

        drop = None
        if key is not None:  # tick t's masks, drawn as step draws them for a batch of B, then flattened
            tick_keys = jax.vmap(lambda t: self.tick_key(key, t))(jnp.arange(T))

            def drop(name: str, y: jax.Array) -> jax.Array:
                keep = jax.vmap(lambda k: self._keep_mask(k, name, (B, *y.shape[1:])))(tick_keys)
                return self._apply_mask(y, flat(keep))

        new, _ = self._layers(self._reference_plan, params, sources, stored, {}, all_fresh=self.instantaneous,
                              stacked=False, drop=drop)
        out = new[self.graph.head] if self.instantaneous else stored(self.graph.head, new)
        return out.reshape((T, B, *out.shape[1:]))

    def _action_histories(self, state: State, action_seq: jax.Array, resets: jax.Array, pushed: bool):
        """Action histories (newest first) seen during each tick, [T, B, k, A], zero before an episode start."""
        spec, k, T = self.action_spec, self.action_spec.history, action_seq.shape[0]
        enc = spec.encode(action_seq)  # [T, B, A]
        old = jnp.swapaxes(state["actions"], 0, 1)[::-1]  # [k, B, A], oldest first
        every = jnp.concatenate([old.astype(enc.dtype), enc], axis=0)  # every[k + t] = a_t
        t = jnp.arange(T)
        ep_start = jax.lax.cummax(jnp.where(resets, t[:, None], -(T + k + 1)), axis=0)  # [T, B]
        src_t = t[:, None] - (0 if pushed else 1) - jnp.arange(k)[None, :]  # [T, k]
        vals = every[src_t + k] * (src_t[:, :, None] >= ep_start[:, None, :])[..., None]  # [T, k, B, A]
        return jnp.transpose(vals, (0, 2, 1, 3))

    def delay_profile(self, max_ticks: int = 16):
        return delay_profile(self.graph, self.delta, self.env_steps_per_tick, max_ticks, self.obs_history)

    @property
    def num_layers(self) -> int:
        return len(self.graph.nodes)

    # ------------------------------------------------------------------ internals
    def _tick(self, plan, params, state: State, obs, action, *, all_fresh: bool, stacked: bool,
              push_action: bool = True, key: jax.Array | None = None):
        spec = self.action_spec
        actions = state["actions"]
        if spec.history > 0 and push_action and action is not None:
            actions = jnp.concatenate([spec.encode(action)[:, None], actions[:, :-1]], axis=1)
        prev_obs, obs_in, observations = state["observations"], obs.astype(jnp.float32), None
        if prev_obs is not None:  # frame stack: o_(t-m+1) .. o_t on the last axis, oldest first
            obs_in = jnp.concatenate([prev_obs[:, i] for i in range(prev_obs.shape[1])] + [obs_in], axis=-1)
            observations = jnp.concatenate([prev_obs[:, 1:], obs.astype(jnp.float32)[:, None]], axis=1)
        sources = self._sources(obs_in, actions)
        drop = None
        if key is not None:
            def drop(name: str, y: jax.Array) -> jax.Array:
                return self._apply_mask(y, self._keep_mask(key, name, y.shape))
        new, carry = self._layers(plan, params, sources, lambda name, _: state["act"][name], state["carry"],
                                  all_fresh=all_fresh, stacked=stacked, drop=drop)
        new_state = {"act": new, "carry": carry, "actions": actions, "observations": observations}
        return new[self.graph.head], new_state

    def _layers(self, plan, params, sources, stored, carries, *, all_fresh: bool, stacked: bool, drop=None):
        """Every layer once. ``stored(name, new)``: what ``name`` held at the start of the tick, given
        this tick's outputs so far (``new``). ``drop(name, y)``: dropout of a hidden layer's output."""
        pre: dict[str, jax.Array] = {}
        new: dict[str, jax.Array] = {}
        carry: dict[str, Any] = {}
        for gi_wave, wave in enumerate(plan):
            for gi, group in enumerate(wave):
                xs, cs = [], []
                for name in group:
                    node = self.graph.node(name)
                    vals = [sources[s] if s in INPUT_SOURCES else
                            (new[s] if (all_fresh or self.graph.reads_fresh(node, s)) else stored(s, new))
                            for s in node.inputs]
                    xs.append(gather_input(node, vals))
                    cs.append(carries.get(name))
                node0 = self.graph.node(group[0])
                if stacked:
                    p = params[gi_wave][gi]
                    if len(group) == 1:
                        p = jax.tree.map(lambda a: a[0], p)
                        ys, new_cs = _one(node0, self.modules[group[0]], p, xs[0], cs[0])
                    else:
                        # one batched op for the group; activations may differ, so they come after
                        ys, new_cs = jax.vmap(lambda pp, x, c, n=node0, m=self.modules[group[0]]:
                                              apply_layer(n, m, pp, x, c, with_activation=False)
                                              )(p, jnp.stack(xs), _stack(cs))
                        ys = [activate(self.graph.node(name), y) for name, y in zip(group, ys, strict=True)]
                        new_cs = [None if new_cs is None else jax.tree.map(lambda a, i=i: a[i], new_cs)
                                  for i in range(len(group))]
                else:
                    ys, new_cs = _one(node0, self.modules[group[0]], params[group[0]], xs[0], cs[0])
                for name, y, c in zip(group, ys, new_cs, strict=True):
                    if drop is not None and name in self._dropout_index:
                        y = drop(name, y)
                    pre[name] = y
                    if c is not None:
                        carry[name] = c
            for group in wave:  # residual sums use this tick's pre-residual outputs (no tick cost)
                for name in group:
                    node = self.graph.node(name)
                    y = pre[name]
                    if node.residual:
                        y = (y + sum(match_shape(pre[r], y.shape) for r in node.residual)) / math.sqrt(
                            1 + len(node.residual))
                    new[name] = y
        return new, carry

    def with_dropout_rate(self, rate) -> PipelinedNetwork:
        """This network dropping with probability ``rate`` instead: a shallow copy sharing the layers, for
        running several dropout rates as one vmapped program (``rate`` may be a traced scalar; it is not
        checked). Only a network built with dropout > 0 can take another rate: one built without dropout
        draws no masks and splits no keys, so a rate could not turn dropout on without changing its code."""
        if not self.uses_dropout:
            raise PipelagError(f"{self.name} was built without dropout; build it with dropout > 0 to give it "
                               "another rate (with_dropout_rate)")
        view = copy.copy(self)
        view.dropout = rate
        return view

    def _dropout_key(self, key, where: str):
        """The key to drop with (None: no dropout); a clear error if dropout needs one and none came."""
        if not self.uses_dropout:
            return None
        if key is None:
            rate = f" {self.dropout:g}" if isinstance(self.dropout, float) else ""  # a traced rate has no value
            raise PipelagError(f"{self.name} has dropout{rate}: {where}(...) needs a PRNG key; pass "
                               f"key=jax.random.PRNGKey(...) (a fresh one per tick for step/output), or build "
                               "the network with dropout=0")
        return key

    def _keep_mask(self, tick_key: jax.Array, name: str, shape) -> jax.Array:
        return jax.random.bernoulli(jax.random.fold_in(tick_key, self._dropout_index[name]), 1.0 - self.dropout,
                                    tuple(shape))

    def _apply_mask(self, y: jax.Array, keep: jax.Array) -> jax.Array:
        return jnp.where(keep, y * (1.0 / (1.0 - self.dropout)), jnp.zeros((), y.dtype)).astype(y.dtype)

    def _sources(self, obs, actions):
        sources = {"obs": obs.astype(jnp.float32)}
        if actions is not None:
            flat = actions.reshape(actions.shape[0], -1)
            sources["action"] = flat
            if len(self.obs_shape) == 3:
                h, w = self.obs_shape[:2]
                sources["action_planes"] = jnp.broadcast_to(flat[:, None, None, :], (flat.shape[0], h, w,
                                                                                      flat.shape[-1]))
        return sources

    def _batched(self, fn, state, obs, action):
        """Run ``fn`` on inputs with one leading batch axis, adding/removing it as needed."""
        extra = obs.ndim - len(self.obs_shape)
        if extra == 1:
            return fn(state, obs, action)
        if extra == 0:
            add = lambda x: None if x is None else x[None]
            out = fn(jax.tree.map(add, state), obs[None], None if action is None else jnp.asarray(action)[None])
            return jax.tree.map(lambda x: x[0], out)
        lead = obs.shape[:extra]
        flat = lambda x, n=extra: x.reshape((-1, *x.shape[n:]))
        out = fn(jax.tree.map(flat, state), flat(obs), None if action is None else flat(jnp.asarray(action)))
        return jax.tree.map(lambda x: x.reshape((*lead, *x.shape[1:])), out)

    def _dummy_inputs(self, batch: int):
        obs = jnp.zeros((batch, *self.obs_shape[:-1], self.obs_shape[-1] * self.obs_history))
        actions = (jnp.zeros((batch, self.action_spec.history, self.action_spec.width))
                   if self.action_spec.history > 0 else None)
        return self._sources(obs, actions)

    def _shapes_of_layers(self):
        _, outs, xs = jax.eval_shape(lambda: self._init_with_outputs(jax.random.PRNGKey(0)))
        return ({k: tuple(v.shape[1:]) for k, v in outs.items()}, {k: tuple(v.shape[1:]) for k, v in xs.items()})

    def _make_fused_plan(self):
        """Waves of layers that can run together; inside a wave, groups of identically shaped layers."""
        wave_of: dict[str, int] = {}
        for n in self.graph.nodes:
            fresh = [wave_of[s] + 1 for s in n.inputs if s not in INPUT_SOURCES and self.graph.reads_fresh(n, s)]
            res = [wave_of[r] for r in n.residual]
            wave_of[n.name] = max([0, *fresh, *res])
        waves: list[list[tuple[str, ...]]] = []
        for w in range(max(wave_of.values()) + 1):
            groups: dict[Any, list[str]] = {}
            for n in self.graph.nodes:
                if wave_of[n.name] == w:
                    key = (n.op, n.features, n.kernel, n.stride, n.padding, self._input_shapes[n.name])
                    groups.setdefault(key, []).append(n.name)
            waves.append([tuple(g) for g in groups.values()])
        return waves


def check_dropout(p) -> float:
    """A dropout probability in [0, 1), as a float; a clear error otherwise."""
    ok = isinstance(p, int | float) and not isinstance(p, bool) and math.isfinite(p) and 0 <= p < 1
    if not ok:
        raise PipelagError(f"dropout must be a probability in [0, 1) (0 = no dropout), got {p!r}")
    return float(p)


def _one(node, module, params, x, carry):
    y, c = apply_layer(node, module, params, x, carry)
    return [y], [c]


def _stack(cs):
    if cs[0] is None:
        return None
    return jax.tree.map(lambda *a: jnp.stack(a), *cs)


def _bcast(mask: jax.Array, like: jax.Array) -> jax.Array:
    return mask.reshape(mask.shape + (1,) * (like.ndim - mask.ndim))
