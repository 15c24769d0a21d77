"""One pipelined tick of an N-layer H→H MLP at batch 1 as a single Triton kernel.

Program (l, j) computes columns [j·BLOCK_N, (j+1)·BLOCK_N) of layer l: it reads its input (the
observation for l = 0, the stored output h[l-1] otherwise: no concatenation), streams the
(H, BLOCK_N) slice of W_l (row-major (in, out), so each row of the tile is contiguous), adds the
bias and applies ReLU to the first ``num_relu`` layers (by default all but the last: the linear
head). It is a batched GEMV: bound by reading the weights once. Needs triton (CUDA, or
``TRITON_INTERPRET=1`` on the CPU for tests).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tick_gemv_kernel(obs_ptr, h_ptr, w_ptr, b_ptr, out_ptr, num_relu,
                      K: tl.constexpr, N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    layer = tl.program_id(0)
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    w_base = w_ptr + layer.to(tl.int64) * K * N
    if layer == 0:
        x_base = obs_ptr
    else:
        x_base = h_ptr + (layer - 1).to(tl.int64) * K
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_base + offs_k)
        w = tl.load(w_base + offs_k[:, None] * N + offs_n[None, :])
        acc += tl.sum(w * x[:, None], axis=0)
    y = acc + tl.load(b_ptr + layer * N + offs_n)
    if layer < num_relu:
        y = tl.maximum(y, 0.0)
    tl.store(out_ptr + layer * N + offs_n, y)


def tick_gemv(obs, h, W, b, out, *, num_relu: int | None = None, block_n: int = 32, block_k: int = 128,
              num_warps: int = 4):
    """out[l] = act_l(x_l @ W[l] + b[l]), x_0 = obs, x_l = h[l-1]; act_l = ReLU for l < num_relu (default:
    every layer but the last), identity after. obs [K]; h, out [L, 1, N] (or [L, N]); W [L, K, N]; b [L, N]."""
    num_layers, K, N = W.shape
    num_relu = num_layers - 1 if num_relu is None else num_relu
    if K % block_k or N % block_n or K != N:
        raise ValueError(f"hidden {K}x{N} must be square and divisible by the blocks ({block_k}, {block_n})")
    grid = (num_layers, N // block_n)
    _tick_gemv_kernel[grid](obs, h, W, b, out, num_relu, K=K, N=N, BLOCK_N=block_n, BLOCK_K=block_k,
                            num_warps=num_warps)
    return out
