"""torch (and Triton) variants of the inference benchmark. Needs the ``bench`` extra (torch).

Never imported by ``pipelag`` or ``pipelag.networks``; :mod:`pipelag.runtime.cli` imports it only
when torch variants are asked for. Every variant computes the function of
:mod:`pipelag.runtime.inference_bench` (N−1 ReLU layers and a linear head, weights ``W[i]`` as
(in, out)) and is checked there against the core's reference before it is timed.

Variants (``-eager``: launched op by op from Python; ``-graph``: ``graph_ticks`` ticks captured
in one CUDA graph and replayed):

* ``torch-seq``: the sequential forward, one ``addmm`` (+ ReLU) per layer;
* ``torch-bd-dense``: the paper's first parallel method: all inputs concatenated into one vector,
  one dense block-diagonal (N·H)×(N·H) matmul per tick;
* ``torch-bd-sparse``: the paper's second: the same block-diagonal matrix as a torch sparse (CSR)
  tensor, one sparse matmul per tick;
* ``torch-bmm``: our fused tick: one ``baddbmm`` over the layers (+ one ReLU over the hidden ones);
* ``triton``: one Triton kernel per tick (gather of each layer's input, GEMV, bias, activation).
"""

from __future__ import annotations

import statistics
import warnings

import numpy as np
import torch

from pipelag.runtime.inference_bench import Problem, Variant

DENSE_CAP_BYTES = {"cuda": 4 << 30, "cpu": 256 << 20}


def _t(a: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device)


class _Weights:
    def __init__(self, prob: Problem, device: str):
        self.device = device
        self.n, self.h, self.batch = prob.depth, prob.hidden, prob.batch
        self.W = _t(prob.W, device)  # [N, H, H]
        self.b = _t(prob.b, device)  # [N, H]
        self.obs = _t(prob.obs, device)  # [B, H]
        self.h0 = _t(prob.h0, device)  # [N, B, H]


# ----------------------------------------------------------------------------------- graph helpers
def _capture(fn, warmup: int = 2):
    """A CUDA graph of ``fn`` (side stream warm-up first, as torch requires)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    torch.cuda.synchronize()
    return g


class _TickState:
    """Two state buffers (ping-pong); ``tick(src, dst)`` is one tick; ``reset`` loads h0, poisons dst."""

    def __init__(self, w: _Weights, make_buf, load, read):
        self.w = w
        self.bufs = [make_buf(), make_buf()]
        self.load, self.read = load, read
        self.cur = 0

    def reset(self):
        self.load(self.bufs[0], self.w.h0)
        self.bufs[1].fill_(float("nan"))
        self.cur = 0


def _tick_variants(name: str, w: _Weights, make_buf, load, read, tick, graph_ticks: int, graphs: bool,
                   note: str) -> list[Variant]:
    st = _TickState(w, make_buf, load, read)
    on_cuda = w.device == "cuda"
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)

    def check_eager():
        st.reset()
        tick(st.bufs[0], st.bufs[1])
        sync()
        return read(st.bufs[1]).cpu().numpy()

    def run_eager():
        tick(st.bufs[st.cur], st.bufs[1 - st.cur])
        st.cur = 1 - st.cur

    out = [Variant(f"{name}-eager", "tick", check_eager, run_eager, timer="cuda" if on_cuda else "host",
                   note=note)]
    if on_cuda and graphs:
        one = {}
        many = {}

        def check_graph():
            st.reset()
            if "g" not in one:  # capture after reset: replay reads bufs[0], writes bufs[1]
                one["g"] = _capture(lambda: tick(st.bufs[0], st.bufs[1]))
                st.reset()
            one["g"].replay()
            sync()
            return read(st.bufs[1]).cpu().numpy()

        def k_ticks():
            for k in range(graph_ticks):  # even count: ends where it started
                tick(st.bufs[k % 2], st.bufs[1 - k % 2])

        def run_graph():
            if "g" not in many:
                st.reset()
                many["g"] = _capture(k_ticks)
            many["g"].replay()

        out.append(Variant(f"{name}-graph", "tick", check_graph, run_graph, units_per_call=graph_ticks,
                           timer="cuda", note=f"{note}; {graph_ticks} ticks per CUDA graph replay"))
    return out


# ----------------------------------------------------------------------------------- sequential
def sequential_variants(prob: Problem, device: str, graph_ticks: int = 8, graphs: bool = True) -> list[Variant]:
    w = _Weights(prob, device)
    n = w.n
    on_cuda = device == "cuda"

    def forward(x):
        for i in range(n):
            x = torch.addmm(w.b[i], x, w.W[i])
            if i < n - 1:
                x = x.relu_()
        return x

    x_in = w.obs.clone()

    def check():
        y = forward(w.obs)
        return y.cpu().numpy()

    out = [Variant("torch-seq-eager", "forward", check, lambda: forward(x_in),
                   timer="cuda" if on_cuda else "host", note=f"{n} addmm (+ReLU) launched from Python")]
    if on_cuda and graphs:
        state = {"x": w.obs.clone(), "y": torch.empty_like(w.obs)}
        holder = {}

        def check_graph():
            if "one" not in holder:
                holder["one"] = _capture(lambda: state["y"].copy_(forward(state["x"])))
            state["x"].copy_(w.obs)
            state["y"].fill_(float("nan"))
            holder["one"].replay()
            torch.cuda.synchronize()
            return state["y"].cpu().numpy()

        chain = {"x": w.obs.clone()}

        def k_forwards():  # each forward's input is o + the previous output, so none can be skipped
            x = chain["x"]
            for _ in range(graph_ticks):
                x = forward(x).add_(w.obs)
            chain["x"].copy_(x)

        def run_graph():
            if "many" not in holder:
                holder["many"] = _capture(k_forwards)
            holder["many"].replay()

        out.append(Variant("torch-seq-graph", "forward", check_graph, run_graph, units_per_call=graph_ticks,
                           timer="cuda", note=f"{graph_ticks} chained forwards per CUDA graph replay"))
    return out


# ----------------------------------------------------------------------------------- the fused tick
def bmm_variants(prob: Problem, device: str, graph_ticks: int = 8, graphs: bool = True) -> list[Variant]:
    """Layout [N+1, B, H]: buf[0] = o, buf[1+i] = layer i's output; X = buf[:N] is a view (no gather)."""
    w = _Weights(prob, device)
    n = w.n
    b3 = w.b[:, None, :]

    def make_buf():
        return torch.empty(n + 1, w.batch, w.h, device=device)

    def load(buf, h0):
        buf[0].copy_(w.obs)
        buf[1:].copy_(h0)

    def tick(src, dst):
        torch.baddbmm(b3, src[:n], w.W, out=dst[1:])
        if n > 1:
            dst[1:n].relu_()
        dst[0].copy_(w.obs)  # the next observation (a static input buffer in deployment)

    vs = _tick_variants("torch-bmm", w, make_buf, load, lambda buf: buf[1:], tick, graph_ticks, graphs,
                        "one baddbmm over the layers + one ReLU")
    if device == "cuda" and graphs and w.batch == 1:
        vs.append(_closed_loop(w, make_buf, load, b3))
    return vs


def _closed_loop(w: _Weights, make_buf, load, b3) -> Variant:
    """What a control loop pays per action: obs host->device, one graphed tick, head device->host, sync."""
    n = w.n
    obs_host = w.obs.cpu().pin_memory()
    act_host = torch.empty(w.batch, w.h).pin_memory()
    static_obs = torch.empty_like(w.obs)
    bufs = [make_buf(), make_buf()]
    graphs = {}

    def tick(src, dst):
        src[0].copy_(static_obs)  # o_t into the observation slot, then every layer at once
        torch.baddbmm(b3, src[:n], w.W, out=dst[1:])
        if n > 1:
            dst[1:n].relu_()

    def step(k):
        # a_t = head stored at the start of the tick, then the tick on o_t
        act_host.copy_(bufs[k][n], non_blocking=True)
        static_obs.copy_(obs_host, non_blocking=True)
        graphs[k].replay()
        torch.cuda.current_stream().synchronize()
        return act_host

    def check():
        for k in (0, 1):
            load(bufs[k], w.h0)
            if k not in graphs:
                graphs[k] = _capture(lambda k=k: tick(bufs[k], bufs[1 - k]))
        load(bufs[0], w.h0)
        bufs[0][0].fill_(float("nan"))  # the tick must take o_t from the static input, not a stale slot
        bufs[1].fill_(float("nan"))
        step(0)
        return bufs[1][1:].cpu().numpy()

    state = {"k": 0}

    def run():
        step(state["k"])
        state["k"] = 1 - state["k"]

    return Variant("torch-bmm-loop", "tick", check, run, timer="host",
                   note="closed loop per action: pinned obs H2D, 1-tick graph replay, action D2H, sync")


# ----------------------------------------------------------------------------------- the paper's two
def _bd_layout(w: _Weights, transposed: bool):
    n, h, device = w.n, w.h, w.device
    if transposed:  # [(N+1)·H, B]
        def make_buf():
            return torch.empty((n + 1) * h, w.batch, device=device)

        def load(buf, h0):
            buf[:h].copy_(w.obs.T)
            buf[h:].copy_(h0.permute(0, 2, 1).reshape(n * h, w.batch))

        def read(buf):
            return buf[h:].reshape(n, h, w.batch).permute(0, 2, 1)
    else:  # [B, (N+1)·H]
        def make_buf():
            return torch.empty(w.batch, (n + 1) * h, device=device)

        def load(buf, h0):
            buf[:, :h].copy_(w.obs)
            buf[:, h:].copy_(h0.permute(1, 0, 2).reshape(w.batch, n * h))

        def read(buf):
            return buf[:, h:].reshape(w.batch, n, h).permute(1, 0, 2)
    return make_buf, load, read


def dense_variants(prob: Problem, device: str, graph_ticks: int = 8, graphs: bool = True) -> list[Variant]:
    """y = x_cat @ block_diag(W_0..W_{N-1}) + b_cat: the paper's "GPU" method (dense weights)."""
    n, h = prob.depth, prob.hidden
    nbytes = (n * h) ** 2 * 4
    cap = DENSE_CAP_BYTES["cuda" if device == "cuda" else "cpu"]
    if nbytes > cap:
        raise MemoryError(f"block-diagonal matrix of {nbytes / 2**30:.1f} GiB exceeds the {cap / 2**30:g} GiB cap")
    w = _Weights(prob, device)
    Wbd = torch.block_diag(*w.W)  # [(N·H), (N·H)], (in, out) blocks
    bcat = w.b.reshape(1, n * h)
    make_buf, load, read = _bd_layout(w, transposed=False)

    def tick(src, dst):
        y = torch.addmm(bcat, src[:, : n * h], Wbd)
        if n > 1:
            y[:, : (n - 1) * h].relu_()
        dst[:, h:].copy_(y)
        dst[:, :h].copy_(w.obs)

    return _tick_variants("torch-bd-dense", w, make_buf, load, read, tick, graph_ticks, graphs,
                          f"one dense ({n * h})x({n * h}) matmul per tick ({nbytes / 2**20:.0f} MiB)")


def _block_diag_csr(W: torch.Tensor) -> torch.Tensor:
    """CSR of block_diag(W_0ᵀ, ..., W_{N-1}ᵀ), built on W's device with int32 indices."""
    n, h, _ = W.shape
    dev = W.device
    rows = n * h
    crow = torch.arange(rows + 1, device=dev, dtype=torch.int64) * h
    block_of_row = torch.arange(rows, device=dev, dtype=torch.int64) // h
    col = (block_of_row[:, None] * h + torch.arange(h, device=dev)[None, :]).reshape(-1)
    vals = W.transpose(1, 2).reshape(-1)  # row r = i·h + o holds W_i[:, o]
    idx = torch.int32 if rows * h < 2**31 else torch.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        return torch.sparse_csr_tensor(crow.to(idx), col.to(idx), vals.contiguous(), size=(rows, rows))


def sparse_variants(prob: Problem, device: str, graph_ticks: int = 8, graphs: bool = False) -> list[Variant]:
    """yᵀ = A xᵀ with A = block_diag(Wᵢᵀ) as a sparse CSR tensor: the paper's "GPU (sparse weights)"."""
    n, h = prob.depth, prob.hidden
    w = _Weights(prob, device)
    A = _block_diag_csr(w.W)
    bcol = w.b.reshape(n * h, 1)
    make_buf, load, read = _bd_layout(w, transposed=True)

    def tick(src, dst):
        y = torch.sparse.mm(A, src[: n * h]).add_(bcol)
        if n > 1:
            y[: (n - 1) * h].relu_()
        dst[h:].copy_(y)
        dst[:h].copy_(w.obs.T)

    return _tick_variants("torch-bd-sparse", w, make_buf, load, read, tick, graph_ticks, graphs,
                          f"one sparse CSR ({n * h})x({n * h}) matmul per tick, nnz {n * h * h}")


# ----------------------------------------------------------------------------------- Triton
#: (BLOCK_N, BLOCK_K, num_warps); the sweep keeps the fastest for each problem
TRITON_CONFIGS = ((32, 128, 4), (64, 64, 4), (16, 256, 4), (32, 64, 2), (16, 128, 2), (8, 256, 2))


def triton_variants(prob: Problem, device: str, graph_ticks: int = 8, config: tuple | None = None) -> list[Variant]:
    """One kernel per tick: program (layer l, column block) reads o or h[l-1], W_l, b_l; writes new h[l]."""
    from pipelag.runtime.triton_tick import tick_gemv

    if prob.batch != 1:
        raise NotImplementedError("the Triton kernel is a batch-1 GEMV")
    w = _Weights(prob, device)
    bn, bk, warps = config or TRITON_CONFIGS[0]
    obs = w.obs.reshape(-1)

    def make_buf():
        return torch.empty(w.n, w.batch, w.h, device=device)

    def load(buf, h0):
        buf.copy_(h0)

    def tick(src, dst):
        tick_gemv(obs, src, w.W, w.b, dst, block_n=bn, block_k=bk, num_warps=warps)

    note = f"one Triton kernel per tick (BLOCK_N={bn}, BLOCK_K={bk}, {warps} warps)"
    return _tick_variants("triton", w, make_buf, load, lambda buf: buf, tick, graph_ticks, device == "cuda", note)


# ----------------------------------------------------------------------------------- timing
def time_cuda(fn, repeats: int = 5, min_time: float = 0.02, warmup: int = 3) -> list[float]:
    """Seconds per call by CUDA events around back-to-back calls (median-able samples)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    one = max(start.elapsed_time(end) / 1e3, 1e-7)
    n = int(min(max(1, min_time / one), 20_000))
    samples = []
    for _ in range(repeats):
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) / 1e3 / n)
    return samples


def copy_bandwidth_cuda(nbytes: int = 1 << 30, repeats: int = 10) -> float:
    """Bytes/s of a device-to-device copy, counting bytes read plus written."""
    a = torch.ones(nbytes // 4, device="cuda")
    b = torch.empty_like(a)
    samples = time_cuda(lambda: b.copy_(a), repeats=repeats, min_time=0.05)
    a = b = None
    torch.cuda.empty_cache()
    return 2 * nbytes / statistics.median(samples)


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
