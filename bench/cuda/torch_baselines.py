#!/usr/bin/env python3
"""PyTorch baselines for scripts/gpu_bench.sh, timed like the CUDA program (CUDA events, cold L2,
median; each also per call inside a CUDA graph of calls over rotating inputs, as the CUDA rows' graph
timing): (a) a TurboQuant-style quantize pipeline (norm, dense matmul rotation, bucketize, gather
for the norm correction) on n fp16 vectors of d = 128; (b) scaled_dot_product_attention decode on
fp16 K/V, Hq = 32, Hkv = 8, d = 128."""
import argparse
import json
import math
import os

import torch
import torch.nn.functional as F

D = 128
# Unit-variance Gaussian Lloyd-Max 3-bit levels (docs: ALGORITHMS.md), scaled to a coordinate of
# a unit vector. Only the timing matters here; the values are those of the real codebook.
LEVELS3 = [-2.15195, -1.34391, -0.75601, -0.24509, 0.24509, 0.75601, 1.34391, 2.15195]

flush = None
# RQ_FLUSH=clean (as gpu_check_bench): the memset that evicts the L2 is followed by a read of the same
# buffer, so every timed call starts with clean lines in the L2 (default "dirty": the memset alone).
CLEAN_FLUSH = os.environ.get("RQ_FLUSH", "dirty") == "clean"


def flush_l2():
    flush.zero_()
    if CLEAN_FLUSH:
        flush.view(torch.int32).max()  # reads all 256 MB


def median_us(fn, iters):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        flush_l2()
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def pipeline_setup(n, dev):
    """The pipeline's generator (seeded by n), dense rotation, centroids and thresholds."""
    g = torch.Generator(device=dev).manual_seed(n)
    q, _ = torch.linalg.qr(torch.randn(D, D, device=dev, generator=g))
    cent = torch.tensor(LEVELS3, device=dev) / math.sqrt(D)
    return g, q.t().contiguous(), cent, (cent[1:] + cent[:-1]) / 2


def quantize_pipeline(x, rot_t, cent, thr):
    """TurboQuant-style quantization of fp16 rows x: norm, dense rotation, bucketize, gather."""
    xf = x.float()
    norm = xf.norm(dim=1, keepdim=True)
    y = (xf / norm.clamp_min(1e-30)) @ rot_t
    idx = torch.bucketize(y, thr, right=True)
    cn = cent[idx].norm(dim=1, keepdim=True)
    return idx.to(torch.uint8), (norm / cn).half()


def capture_graph(call, calls):
    """call(0) .. call(calls - 1) captured in one CUDA graph, after a warm-up outside the capture
    (allocator, kernels' first use)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(calls):
            call(i)
    torch.cuda.current_stream().wait_stream(side)
    cg = torch.cuda.CUDAGraph()
    with torch.cuda.graph(cg):
        for i in range(calls):
            call(i)
    return cg


def graph_us(call, calls):
    """us per call of `calls` calls captured in one CUDA graph and replayed (the tool library's
    METHOD.md for small launches; as gpu_check_bench's graph_us): call(i) runs call i, the callers
    rotate over inputs of >= 192 MB together, so every call reads cold data without a flush."""
    cg = capture_graph(call, calls)
    cg.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(7):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        cg.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1000.0 / calls)
    times.sort()
    del cg
    return times[len(times) // 2]


def sets_for(bytes_per_set):
    return max(2, math.ceil(192e6 / bytes_per_set))


def bench_pipeline_in_graph(n, dev):
    """The pipeline of bench_pipeline, many calls in one graph over rotating inputs (graph_us)."""
    g, rot_t, cent, thr = pipeline_setup(n, dev)
    R = sets_for(n * D * 2)
    xs = [torch.randn(n, D, device=dev, generator=g).half() for _ in range(R)]
    us = graph_us(lambda i: quantize_pipeline(xs[i % R], rot_t, cent, thr), max(R, 20))
    del xs
    torch.cuda.empty_cache()
    return us


def bench_pipeline(n, dev, graph=False):
    """us of the pipeline after an L2 flush: eager (one launch per op from Python, as such pipelines
    run; host-bound at small n), or graph=True: captured once in a CUDA graph and replayed, so that
    only the GPU's work is timed (the strongest form of the same pipeline)."""
    g, rot_t, cent, thr = pipeline_setup(n, dev)
    x = torch.randn(n, D, device=dev, generator=g).half()

    def run():
        return quantize_pipeline(x, rot_t, cent, thr)

    if not graph:
        return median_us(run, 30)
    return median_us(capture_graph(lambda i: run(), 1).replay, 30)


def bench_sdpa(batch, ctx, dev):
    hq, hkv = 32, 8
    q = torch.randn(batch, hq, 1, D, device=dev, dtype=torch.float16)
    k = torch.randn(batch, hkv, ctx, D, device=dev, dtype=torch.float16)
    v = torch.randn(batch, hkv, ctx, D, device=dev, dtype=torch.float16)
    best = None
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for name, backend in [("default", None), ("flash", SDPBackend.FLASH_ATTENTION),
                          ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        try:
            if backend is None:
                fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                us = median_us(fn, 20)
            else:
                with sdpa_kernel(backend):
                    fn = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                    us = median_us(fn, 20)
        except Exception as e:  # backend not available for this shape
            print(f"  sdpa {name:9s} B={batch} ctx={ctx}: unavailable ({type(e).__name__})")
            continue
        print(f"  sdpa {name:9s} B={batch:3d} ctx={ctx:7d}: {us:9.2f} us")
        if best is None or us < best[0]:
            best = (us, name, backend)
    del q, k, v
    torch.cuda.empty_cache()
    if best is None:
        return None
    # The fastest backend also in a graph of calls over rotating K/V sets (graph_us).
    R = sets_for(batch * ctx * hkv * D * 2 * 2)
    sets = [(torch.randn(batch, hq, 1, D, device=dev, dtype=torch.float16),
             torch.randn(batch, hkv, ctx, D, device=dev, dtype=torch.float16),
             torch.randn(batch, hkv, ctx, D, device=dev, dtype=torch.float16)) for _ in range(R)]

    def call(i):
        qq, kk, vv = sets[i % R]
        return F.scaled_dot_product_attention(qq, kk, vv, enable_gqa=True)

    if best[2] is None:
        us_graph = graph_us(call, max(R, 10))
    else:
        with sdpa_kernel(best[2]):
            us_graph = graph_us(call, max(R, 10))
    print(f"  sdpa {best[1]:9s} B={batch:3d} ctx={ctx:7d}: {us_graph:9.2f} us per call in a CUDA graph")
    del sets
    torch.cuda.empty_cache()
    return best[0], best[1], us_graph


def main():
    global flush
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--decode-only", action="store_true", help="skip the append pipeline")
    ap.add_argument("--append-only", action="store_true", help="skip SDPA")
    args = ap.parse_args()
    dev = torch.device("cuda")
    flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
    rows = []
    for n in ([] if args.decode_only else [1024, 4096, 16384, 65536, 1048576]):
        us = bench_pipeline(n, dev)
        us_graph = bench_pipeline(n, dev, graph=True)
        us_in_graph = bench_pipeline_in_graph(n, dev)
        print(f"  torch pipeline n={n:8d}: {us:9.2f} us eager, {us_graph:9.2f} us as a CUDA graph, "
              f"{us_in_graph:9.2f} us per call in a graph of calls")
        rows.append({"bench": "append", "n": n, "us": us, "us_graph": us_graph, "us_in_graph": us_in_graph,
                     "impl": "torch matmul+bucketize+gather"})
    for batch, ctx in ([] if args.append_only else [(1, 4096), (1, 32768), (1, 131072), (8, 32768), (16, 65536), (32, 8192)]):
        best = bench_sdpa(batch, ctx, dev)
        if best:
            bytes_read = batch * ctx * 8 * D * 2 * 2
            rows.append({"bench": "decode", "batch": batch, "context": ctx, "us": best[0], "us_in_graph": best[2],
                         "impl": f"sdpa fp16 ({best[1]})", "gbps": bytes_read / (best[0] * 1e3)})
    with open(args.json, "w") as f:
        json.dump({"torch": torch.__version__, "l2_flush": "clean" if CLEAN_FLUSH else "dirty", "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
