"""Layer modules and the non-layer glue (pooling, concatenation, residual matching).

All arrays here carry one leading batch axis: vectors are [B, D], images [B, H, W, C].
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from pipelag.networks.graph import Node

#: compute dtypes a network accepts; parameters and stored activations stay float32 either way
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def module_for(node: Node, compute_dtype: str = "float32") -> nn.Module:
    """The Flax module of a layer. ``compute_dtype="bfloat16"``: dense and conv layers multiply in bf16
    (float32 parameters, cast per call; mixed precision), their outputs are cast back to float32 by
    :func:`apply_layer`. LSTM cells always compute in float32 (their carry is state)."""
    init = nn.initializers.orthogonal(node.init_scale)
    dtype = COMPUTE_DTYPES[compute_dtype]
    if node.op == "dense":
        return nn.Dense(node.features, kernel_init=init, bias_init=nn.initializers.zeros, dtype=dtype)
    if node.op == "conv":
        return nn.Conv(node.features, (node.kernel, node.kernel), strides=(node.stride, node.stride),
                       padding=node.padding, kernel_init=init, bias_init=nn.initializers.zeros, dtype=dtype)
    if node.op == "lstm":
        return nn.OptimizedLSTMCell(node.features, kernel_init=init)
    raise ValueError(node.op)


def adaptive_max_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Max-pool [B, H, W, C] to [B, h, w, C] with bins [floor(i·H/h), ceil((i+1)·H/h))."""
    H, W = x.shape[1:3]
    h, w = size
    if (H, W) == (h, w):
        return x
    rows = []
    for i in range(h):
        r0, r1 = (i * H) // h, math.ceil((i + 1) * H / h)
        cols = []
        for j in range(w):
            c0, c1 = (j * W) // w, math.ceil((j + 1) * W / w)
            cols.append(jnp.max(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
        rows.append(jnp.stack(cols, axis=1))
    return jnp.stack(rows, axis=1)


def match_shape(x: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Bring a residual source to the receiver's shape: pool space, zero-pad or cut channels."""
    if x.ndim == 4:
        x = adaptive_max_pool(x, shape[1:3])
    c, target = x.shape[-1], shape[-1]
    if c < target:
        x = jnp.concatenate([x, jnp.zeros((*x.shape[:-1], target - c), x.dtype)], axis=-1)
    return x[..., :target]


def gather_input(node: Node, values: list[jax.Array]) -> jax.Array:
    """Combine a layer's sources into its input (concatenation is free: it is not a layer)."""
    if node.op == "conv":
        size = values[0].shape[1:3]
        return jnp.concatenate([adaptive_max_pool(v, size) for v in values], axis=-1)
    flat = []
    for v in values:
        if v.ndim == 4:
            if node.pool_to is not None:
                v = adaptive_max_pool(v, node.pool_to)
            v = v.reshape(v.shape[0], -1)
        flat.append(v)
    return jnp.concatenate(flat, axis=-1) if len(flat) > 1 else flat[0]


def activate(node: Node, y: jax.Array) -> jax.Array:
    if node.activation == "relu":
        return jax.nn.relu(y)
    if node.activation == "tanh":
        return jnp.tanh(y)
    return y


def apply_layer(node: Node, module: nn.Module, params, x: jax.Array, carry=None, with_activation: bool = True):
    """One layer's own computation. Returns (output, new_carry); carry only for LSTM cells."""
    if node.op == "lstm":
        carry, h = module.apply({"params": params}, carry, x)
        return h, carry
    y = module.apply({"params": params}, x)
    if y.dtype == jnp.bfloat16:  # bf16 compute: outputs (and so stored activations) back to float32
        y = y.astype(jnp.float32)
    return (activate(node, y) if with_activation else y), None
