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
#: how conv layers are computed: "xla" (lax.conv, cuDNN on a GPU) or "gemm" (patches + one matmul)
CONV_IMPLS = ("xla", "gemm")


def module_for(node: Node, compute_dtype: str = "float32", conv_impl: str = "xla") -> nn.Module:
    """The Flax module of a layer. ``compute_dtype="bfloat16"``: dense and conv layers multiply in bf16
    (float32 parameters, cast per call; mixed precision), their outputs are cast back to float32 by
    :func:`apply_layer`. LSTM cells always compute in float32 (their carry is state). ``conv_impl``:
    see :class:`GemmConv` (same parameters and outputs as ``nn.Conv``, another program)."""
    init = nn.initializers.orthogonal(node.init_scale)
    dtype = COMPUTE_DTYPES[compute_dtype]
    if node.op == "dense":
        return nn.Dense(node.features, kernel_init=init, bias_init=nn.initializers.zeros, dtype=dtype)
    if node.op == "conv":
        conv = GemmConv if conv_impl == "gemm" else PaddedChannelsConv if dtype == jnp.bfloat16 else nn.Conv
        return conv(node.features, (node.kernel, node.kernel), strides=(node.stride, node.stride),
                    padding=node.padding, kernel_init=init, bias_init=nn.initializers.zeros, dtype=dtype)
    if node.op == "lstm":
        return nn.OptimizedLSTMCell(node.features, kernel_init=init)
    raise ValueError(node.op)


class _ConvParams(nn.Module):
    """``nn.Conv``'s fields and parameters (same names, shapes and initialisation) for a conv layer
    computed another way (the subclasses)."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    kernel_init: object = nn.initializers.lecun_normal()
    bias_init: object = nn.initializers.zeros
    dtype: object = None

    def _operands(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(x, kernel [kh, kw, C, features], bias), all in the compute dtype (as nn.Conv casts them)."""
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        dtype = self.dtype or jnp.result_type(x, kernel)
        return x.astype(dtype), kernel.astype(dtype), bias.astype(dtype)


class GemmConv(_ConvParams):
    """``nn.Conv`` (same parameter names, shapes and initialisation; "SAME"/"VALID" padding, NHWC)
    computed as one matrix product of image patches with the flattened kernel.

    Why: XLA's CPU convolutions are slow for these layers (3×3 kernels on small images); as one matmul
    the paper-size MinAtar agent trains 18–28× faster on 2 CPU cores. On an H100 cuDNN's convolutions
    stay faster (this is 0.8–0.9× there; docs/ppo.md)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = self._operands(x)
        patches = image_patches(x, self.kernel_size, self.strides, self.padding)
        return patches @ kernel.reshape(-1, self.features) + bias


class PaddedChannelsConv(_ConvParams):
    """``nn.Conv`` (same parameter names, shapes and initialisation; NHWC) with the input channels
    zero-padded to a multiple of 8, kernel likewise: the same sums (the added terms are exact zeros).

    Why: for bf16 inputs with 4 channels (MinAtar's first conv) cuDNN has no tensor-core kernel and runs
    a generic one, ≈ 10 µs per call on an H100 for a 10×10 image batch; with 8 channels it takes its
    implicit-GEMM kernels (docs/ppo.md)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = self._operands(x)
        extra = -x.shape[-1] % 8
        if extra:
            x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, extra)])
            kernel = jnp.pad(kernel, ((0, 0), (0, 0), (0, extra), (0, 0)))
        y = jax.lax.conv_general_dilated(x, kernel, self.strides, self.padding,
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias


def image_patches(x: jax.Array, kernel_size: tuple[int, int], strides: tuple[int, int], padding: str) -> jax.Array:
    """[B, H, W, C] → [B, Ho, Wo, kh·kw·C]: each output position's receptive field, in the order of a
    flattened [kh, kw, C, ·] kernel (padding as lax.conv's "SAME"/"VALID")."""
    (kh, kw), (sh, sw) = kernel_size, strides
    H, W = x.shape[1:3]
    if padding == "SAME":
        ho, wo = -(-H // sh), -(-W // sw)
        ph, pw = max((ho - 1) * sh + kh - H, 0), max((wo - 1) * sw + kw - W, 0)
        x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    elif padding == "VALID":
        ho, wo = (H - kh) // sh + 1, (W - kw) // sw + 1
    else:
        raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")
    cols = [x[:, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw, :] for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, axis=-1)


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
