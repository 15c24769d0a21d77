"""torch backend of :class:`pipelag.runtime.PipelinedPolicy` for chains of dense layers (the vanilla ``mlp``).

Why: at batch 1 a JAX call costs the host a dispatch (measured ~0.1–0.4 ms on the H100 machine of
docs/inference.md), far more than the tick itself. Here one tick is one CUDA-graph replay, and the
closed loop per action is: observation into a pinned buffer, copy to the device, read the head
(a_t = what the head holds at the start of the tick), replay, wait.

Layout: one flat buffer per tick parity holding slot 0 = the observation and slot i+1 = layer i's
output. Consecutive layers with the same square shape (H→H) form a segment whose inputs (slots
a..b) and outputs (slots a+1..b+1) are contiguous views, so the segment is one ``baddbmm`` (or,
on CUDA at batch 1, one Triton kernel that also applies the activations); other layers are one
``addmm`` each. Every layer reads the *old* buffer and writes the new one (the tick rule).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import torch

from pipelag.runtime.policy import torch_unsupported_reason


class TorchChainTick:
    """Two state buffers and the tick between them, eager or captured as CUDA graphs."""

    def __init__(self, net, params, device: str | None = None, use_triton: bool | None = None,
                 graphs: bool | None = None):
        why = torch_unsupported_reason(net)
        if why is not None:
            raise ValueError(f"the torch backend does not run {why}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cuda = self.device == "cuda"
        self.graphs = cuda if graphs is None else graphs
        if use_triton is None:
            use_triton = cuda and importlib.util.find_spec("triton") is not None
        nodes = net.graph.nodes
        self.names = [n.name for n in nodes]
        sizes = [net.obs_shape[0]] + [n.features for n in nodes]
        self.offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int).tolist()
        self.sizes = sizes
        self.bufs = [torch.zeros(self.offs[-1], device=self.device) for _ in range(2)]
        W = [torch.tensor(np.array(params[n]["kernel"], np.float32), device=self.device) for n in self.names]
        b = [torch.tensor(np.array(params[n]["bias"], np.float32), device=self.device) for n in self.names]
        relu = [n.activation == "relu" for n in nodes]
        self.segments = []
        i = 0
        while i < len(nodes):
            j = i
            if sizes[i] == sizes[i + 1]:
                while j + 1 < len(nodes) and sizes[j + 1] == sizes[i] and sizes[j + 2] == sizes[i]:
                    j += 1
            k, d_in, d_out = j - i + 1, sizes[i], sizes[i + 1]
            acts = relu[i:j + 1]
            num_relu = sum(acts)
            prefix = acts == [True] * num_relu + [False] * (k - num_relu)
            triton_ok = (use_triton and k > 1 and prefix and d_in == d_out and d_in % 128 == 0)
            self.segments.append(dict(first=i, k=k, d_in=d_in, d_out=d_out, W=torch.stack(W[i:j + 1]).contiguous(),
                                      b=torch.stack(b[i:j + 1]).contiguous(), relu=acts, num_relu=num_relu,
                                      triton=triton_ok))
            i = j + 1
        self.uses_triton = any(s["triton"] for s in self.segments)
        self.static_obs = torch.zeros(sizes[0], device=self.device)
        pin = cuda
        self.obs_host = torch.zeros(sizes[0], pin_memory=pin)
        self.head_host = torch.zeros(sizes[-1], pin_memory=pin)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.cur = 0

    # ------------------------------------------------------------------ the tick
    def _slot(self, buf, slot, count=1):
        return buf[self.offs[slot]:self.offs[slot + count]]

    def tick(self, src, dst):
        self._slot(src, 0).copy_(self.static_obs)  # o_t: read fresh by the first layer
        for s in self.segments:
            a, k, d_in, d_out = s["first"], s["k"], s["d_in"], s["d_out"]
            x = self._slot(src, a, k).view(k, 1, d_in)
            y = self._slot(dst, a + 1, k).view(k, 1, d_out)
            if s["triton"]:
                from pipelag.runtime.triton_tick import tick_gemv

                tick_gemv(x[0, 0], self._slot(src, a + 1, k).view(k, d_out), s["W"], s["b"], y,
                          num_relu=s["num_relu"], block_n=16, block_k=128, num_warps=2)
                continue
            if k == 1:
                torch.addmm(s["b"][0:1], x[0], s["W"][0], out=y[0])
            else:
                torch.baddbmm(s["b"][:, None, :], x, s["W"], out=y)
            lo = 0
            while lo < k:  # ReLU over runs of ReLU layers
                if not s["relu"][lo]:
                    lo += 1
                    continue
                hi = lo
                while hi + 1 < k and s["relu"][hi + 1]:
                    hi += 1
                y[lo:hi + 1].relu_()
                lo = hi + 1

    def _capture(self, k: int):
        src, dst = self.bufs[k], self.bufs[1 - k]
        keep = [b.clone() for b in self.bufs]
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                self.tick(src, dst)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            self.tick(src, dst)
        for b, kept in zip(self.bufs, keep, strict=True):  # warm-up ticks must not change the state
            b.copy_(kept)
        return g

    def step(self, obs: np.ndarray) -> np.ndarray:
        """Return the head's value at the start of the tick, then run the tick on ``obs``."""
        src = self.bufs[self.cur]
        self.obs_host.numpy()[:] = obs
        self.static_obs.copy_(self.obs_host, non_blocking=True)
        self.head_host.copy_(self._slot(src, len(self.names)), non_blocking=True)
        if self.graphs:
            if self.cur not in self._graphs:
                self._graphs[self.cur] = self._capture(self.cur)
            self._graphs[self.cur].replay()
        else:
            self.tick(src, self.bufs[1 - self.cur])
        if self.device == "cuda":
            torch.cuda.current_stream().synchronize()
        self.cur = 1 - self.cur
        return self.head_host.numpy().copy()

    # ------------------------------------------------------------------ state
    def load(self, act: dict) -> None:
        """Set the layer outputs (name -> array of the layer's width); the other parity is poisoned."""
        src = self.bufs[self.cur]
        for i, n in enumerate(self.names):
            self._slot(src, i + 1).copy_(torch.tensor(np.array(act[n], np.float32).reshape(-1)))
        self.bufs[1 - self.cur].fill_(float("nan"))

    def read(self) -> dict:
        src = self.bufs[self.cur].cpu().numpy()
        return {n: src[self.offs[i + 1]:self.offs[i + 2]].copy() for i, n in enumerate(self.names)}
