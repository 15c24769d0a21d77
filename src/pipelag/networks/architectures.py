"""Every architecture of DESIGN §2 as a short declaration on top of the pipeline core."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pipelag.errors import PipelagError
from pipelag.networks.graph import Node, make_graph
from pipelag.networks.layers import COMPUTE_DTYPES, CONV_IMPLS
from pipelag.networks.pipeline import ActionSpec, PipelinedNetwork, check_dropout


@dataclass(frozen=True)
class ArchSpec:
    name: str
    family: str  # "mlp" | "cnn"
    description: str
    build: Callable[..., list[Node]]


def _obs(action_in_obs: bool, planes: bool = False) -> tuple[str, ...]:
    if not action_in_obs:
        return ("obs",)
    return ("obs", "action_planes" if planes else "action")


# ---------------------------------------------------------------- MLPs (SAC actors)
def _mlp(num_layers, hidden, num_outputs, head_scale, action_in_obs, *, skip_from_obs=False, skip_to_action=False,
         residual=False, all_skips=False, lstm=False):
    obs = _obs(action_in_obs)
    hidden_names = [f"fc{i}" for i in range(1, num_layers)]
    nodes: list[Node] = []
    for i, name in enumerate(hidden_names):
        earlier = hidden_names[:i]
        if i == 0:
            inputs = obs
        elif all_skips:
            inputs = (*obs, *earlier)
        elif skip_from_obs:
            inputs = (*obs, earlier[-1])
        else:
            inputs = (earlier[-1],)
        is_lstm = lstm and i == len(hidden_names) - 1
        nodes.append(Node(name, "lstm" if is_lstm else "dense", inputs, hidden,
                          residual=(earlier[-1],) if residual and i > 0 else ()))
    if not hidden_names:
        head_inputs = obs
    elif skip_to_action or all_skips:
        head_inputs = (*obs, *hidden_names)
    elif skip_from_obs:
        head_inputs = (*obs, hidden_names[-1])
    else:
        head_inputs = (hidden_names[-1],)
    nodes.append(Node("head", "dense", head_inputs, num_outputs, activation=None, init_scale=head_scale))
    return nodes


# ---------------------------------------------------------------- CNNs (PPO actors)
def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    return math.ceil(size / stride) if padding == "SAME" else (size - kernel) // stride + 1


def _cnn(obs_shape, channels, strides, padding, hidden, num_outputs, head_scale, action_mode, *, skip=False,
         residual=False, lstm=False):
    planes = action_mode == "planes"
    obs = _obs(planes, planes=True)
    fc_action = ("action",) if action_mode == "fc" else ()
    size = obs_shape[0]
    nodes: list[Node] = []
    for i, (c, s) in enumerate(zip(channels, strides, strict=True)):
        size = _conv_out(size, 3, s, padding)
        inputs = obs if i == 0 else (f"conv{i}",)
        nodes.append(Node(f"conv{i + 1}", "conv", inputs, c, kernel=3, stride=s, padding=padding,
                          residual=(f"conv{i}",) if residual and i > 0 else ()))
    convs = tuple(n.name for n in nodes)
    if skip:  # stored features of the observation and every conv, max-pooled to the last conv's size
        f_inputs, pool = (*obs, *convs, *fc_action), (size, size)
    else:
        f_inputs, pool = (convs[-1], *fc_action), None
    nodes.append(Node("fc1", "lstm" if lstm else "dense", f_inputs, hidden, pool_to=pool))
    nodes.append(Node("head", "dense", ("fc1", *fc_action), num_outputs, activation=None, init_scale=head_scale))
    return nodes


ARCHITECTURES: dict[str, ArchSpec] = {}


def _register(name, family, description, build):
    ARCHITECTURES[name] = ArchSpec(name, family, description, build)


_register("mlp", "mlp", "vanilla MLP: o -> fc1 -> ... -> head (delay = number of layers)",
          lambda **k: _mlp(**k))
_register("mlp-proj-from-obs", "mlp", "observation concatenated into every layer and the head",
          lambda **k: _mlp(**k, skip_from_obs=True))
_register("mlp-proj-to-action", "mlp", "every layer's output and the observation feed the head",
          lambda **k: _mlp(**k, skip_to_action=True))
_register("mlp-proj-to-action-res", "mlp", "proj-to-action plus residual sums of same-tick layer outputs",
          lambda **k: _mlp(**k, skip_to_action=True, residual=True))
_register("mlp-all-skips", "mlp", "every earlier node (observation included) feeds every later node",
          lambda **k: _mlp(**k, all_skips=True))
_register("mlp-lstm", "mlp", "an LSTM cell replaces the second-last layer", lambda **k: _mlp(**k, lstm=True))
_register("cnn", "cnn", "3 convs + 2 FCs, vanilla pipeline (delay 5)", lambda **k: _cnn(**k))
_register("cnn-skip", "cnn", "FC input = max-pooled stored features of o_t and every conv (delay 2)",
          lambda **k: _cnn(**k, skip=True))
_register("cnn-skip-res", "cnn", "cnn-skip plus residual sums of same-tick conv outputs",
          lambda **k: _cnn(**k, skip=True, residual=True))
_register("cnn-lstm", "cnn", "an LSTM cell replaces the first FC layer", lambda **k: _cnn(**k, lstm=True))
_register("cnn-skip-lstm", "cnn", "cnn-skip with an LSTM cell as the first FC layer",
          lambda **k: _cnn(**k, skip=True, lstm=True))

CNN_PRESETS = {
    "minatar": dict(channels=(32, 64, 64), strides=(1, 1, 1), padding="SAME"),
    "minigrid": dict(channels=(32, 64, 64), strides=(4, 2, 1), padding="VALID"),
}


def list_architectures() -> list[str]:
    return list(ARCHITECTURES)


def layers_per_tick_for(delta: float | None, layers_per_tick: float | None) -> tuple[float, float, int]:
    """Validate δ / layers-per-tick. Returns (δ, layers per tick, env steps per tick)."""
    if layers_per_tick is not None:
        if delta is not None and abs(delta * layers_per_tick - 1) > 1e-6 and delta != 1.0:
            raise PipelagError(f"give either delta ({delta}) or layers_per_tick ({layers_per_tick}), not both")
        if layers_per_tick < 1:
            raise PipelagError(f"layers_per_tick must be ≥ 1 (got {layers_per_tick}); for slower layers use delta > 1")
        delta = 1.0 / layers_per_tick
    if delta is None:
        delta = 1.0
    if not isinstance(delta, int | float) or math.isnan(delta) or delta <= 0:
        raise PipelagError(f"delta (neuron execution time in env steps) must be > 0, got {delta!r}")
    if delta > 1:
        if abs(delta - round(delta)) > 1e-9:
            raise PipelagError(f"delta > 1 must be a whole number of env steps (got {delta}); e.g. 2 or 3")
        return float(delta), 1.0, int(round(delta))
    lpt = 1.0 / delta
    if abs(lpt * 2 - round(lpt * 2)) > 1e-6:
        raise PipelagError(f"delta = {delta:g} gives {lpt:.4g} layers per tick, which does not split layers into "
                           "stages; use a delta whose inverse is a whole or half number (1, 0.5, 0.4, 1/3, 0.25)")
    return float(delta), round(lpt * 2) / 2, 1


def build_network(arch: str, obs_shape, num_outputs: int, *, delta: float | None = None,
                  layers_per_tick: float | None = None, num_layers: int = 3, hidden: int | None = None,
                  num_actions: int | None = None, action_dim: int | None = None, action_history: int = 0,
                  action_input: str = "auto", instantaneous: bool = False, init_activations: str = "zeros",
                  head_init_scale: float = 0.01, cnn_preset: str = "auto", channels: tuple[int, ...] | None = None,
                  obs_history: int = 1, stages: dict[str, int] | None = None,
                  compute_dtype: str = "float32", dropout: float = 0.0, conv_impl: str = "xla") -> PipelinedNetwork:
    """Build a pipelined (or instantaneous) network by architecture name.

    ``num_outputs``: width of the head (logits for discrete actions; 2·action_dim for a Gaussian).
    ``action_history``: how many recent actions (a_t first) the network sees; needs ``num_actions``
    or ``action_dim``. ``action_input``: "obs" (concatenated wherever the observation is read),
    "planes" (one-hot planes tiled over an image observation), "fc" (into the FC layers), "auto".
    ``obs_history``: the network keeps the last m observations (a frame stack, oldest first, padded
    with the episode's first observation) so deployment can feed raw observations.
    ``compute_dtype``: "float32" or "bfloat16" (mixed precision: dense/conv products in bf16, float32
    parameters, activations and outputs).
    ``dropout``: probability p ∈ [0, 1) of zeroing each unit of every hidden layer (not the head, not
    the inputs) on every tick, kept units scaled by 1/(1−p) (paper App. D, Fig. 12). With p > 0 the
    network's step/unroll/unroll_layerwise (and output, if instantaneous) need a PRNG ``key``.
    ``conv_impl``: "xla" (lax.conv) or "gemm" (image patches times the kernel: same parameters, same
    outputs up to float rounding; 18–28× faster on a CPU, 0.8–0.9× on an H100; docs/ppo.md).
    """
    if arch not in ARCHITECTURES:
        raise PipelagError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    spec = ARCHITECTURES[arch]
    obs_shape = tuple(int(d) for d in obs_shape)
    delta, lpt, env_steps = layers_per_tick_for(delta, layers_per_tick)
    if action_history < 0:
        raise PipelagError(f"action_history must be ≥ 0 (number of recent actions seen), got {action_history}")
    if action_history > 0 and num_actions is None and action_dim is None:
        raise PipelagError("action_history > 0 needs num_actions (discrete) or action_dim (continuous)")
    if obs_history < 1:
        raise PipelagError(f"obs_history must be ≥ 1 (1 = the current observation only), got {obs_history}")
    if init_activations not in ("zeros", "instant"):
        raise PipelagError(f"init_activations must be 'zeros' or 'instant', got {init_activations!r}")
    if num_outputs < 1:
        raise PipelagError(f"num_outputs must be ≥ 1, got {num_outputs}")
    dropout = check_dropout(dropout)
    if compute_dtype not in COMPUTE_DTYPES:
        raise PipelagError(f"compute_dtype must be one of {list(COMPUTE_DTYPES)}, got {compute_dtype!r}")
    if conv_impl not in CONV_IMPLS:
        raise PipelagError(f"conv_impl must be one of {list(CONV_IMPLS)}, got {conv_impl!r}")
    if action_input == "auto":
        action_input = "obs" if spec.family == "mlp" else "fc"
    if action_input not in (("obs",) if spec.family == "mlp" else ("fc", "planes")):
        raise PipelagError(f"action_input {action_input!r} does not fit {arch}; use "
                           + ("'obs'" if spec.family == "mlp" else "'fc' or 'planes'"))
    if spec.family == "mlp":
        if len(obs_shape) != 1:
            raise PipelagError(f"{arch} needs a flat observation vector but got shape {obs_shape}; use a cnn-* "
                               "architecture for images")
        min_layers = 2 if arch == "mlp-lstm" else 1
        if num_layers < min_layers:
            raise PipelagError(f"{arch} needs num_layers ≥ {min_layers}, got {num_layers}")
        nodes = spec.build(num_layers=num_layers, hidden=hidden or 256, num_outputs=num_outputs,
                           head_scale=head_init_scale, action_in_obs=action_history > 0)
    else:
        if len(obs_shape) != 3:
            raise PipelagError(f"{arch} needs an image observation (H, W, C) but got shape {obs_shape}; use an "
                               "mlp-* architecture for vectors")
        if cnn_preset == "auto":
            cnn_preset = "minigrid" if obs_shape[0] >= 32 else "minatar"
        if cnn_preset not in CNN_PRESETS:
            raise PipelagError(f"unknown cnn_preset {cnn_preset!r}; choose one of {list(CNN_PRESETS)}")
        preset = dict(CNN_PRESETS[cnn_preset])
        if channels is not None:
            if len(channels) != len(preset["channels"]) or min(channels) < 1:
                raise PipelagError(f"channels must be {len(preset['channels'])} positive ints, got {channels}")
            preset["channels"] = tuple(channels)
        size = min(obs_shape[:2])
        for s in preset["strides"]:
            size = _conv_out(size, 3, s, preset["padding"])
        if size < 1:
            raise PipelagError(f"observation {obs_shape} is too small for the {cnn_preset} CNN (strides "
                               f"{preset['strides']}); use cnn_preset='minatar' (stride 1, same padding)")
        if obs_shape[0] != obs_shape[1]:
            raise PipelagError(f"{arch} expects square images, got {obs_shape[:2]}")
        nodes = spec.build(obs_shape=obs_shape, hidden=hidden or 512, num_outputs=num_outputs,
                           head_scale=head_init_scale,
                           action_mode=action_input if action_history > 0 else "none", **preset)
    total = len(nodes)
    if not instantaneous and lpt >= total and total > 1:
        raise PipelagError(f"{lpt:g} layers per tick puts all {total} layers of {arch} in one tick; that is an "
                           "instantaneous network: pass instantaneous=True instead")
    graph = make_graph(nodes, head="head", layers_per_tick=lpt, stages=stages)
    net = PipelinedNetwork(graph, obs_shape, ActionSpec(num_actions, action_dim, action_history), delta=delta,
                           env_steps_per_tick=env_steps, instantaneous=instantaneous,
                           init_activations=init_activations, obs_history=obs_history,
                           compute_dtype=compute_dtype, dropout=dropout, conv_impl=conv_impl, name=arch)
    if not instantaneous:
        bad = net.delay_profile().violations()
        if bad:
            raise PipelagError(f"{arch} at delta={delta:g} breaks the constraint L(s_(t-k), a_t) <= floor(k/delta): "
                               f"(k, layers) = {bad}; use fewer layers per tick or different stages")
    return net
