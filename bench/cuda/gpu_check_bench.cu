// rotorquant GPU check + benchmark: one program that (1) checks the CUDA kernels against the CPU
// reference codec (rq::Codec, rq::attend_reference) on random and edge-case inputs and prints
// PASS/FAIL lines, then (2) times the fused append and the split-KV decode and writes JSON (each row
// one launch after an L2 flush, and per call inside a CUDA graph of calls on cold inputs: graph_us;
// an append row's one launch is the median over kAppendAllocations allocations of its buffers).
// Built by scripts/gpu_bench.sh with plain nvcc (no third-party libraries needed).
//
// Usage: gpu_check_bench [--json FILE] [--check-only] [--bench-only] [--decode-only] [--append-only] [--profile]
//        [--trace [--skip-loop]] (--decode-only: decode checks and the tensor-core decode timings only;
//         --trace: the decode's per-launch %globaltimer timeline at three shapes, nothing else;
//         --skip-loop: every tensor-core split empty, a diagnostic (bit 128 of RQ_DECODE_VARIANT, output not finite);
//         --append-only: append checks and timings only; --profile: a few launches for ncu;
//         --with-exact: also time the exact fp32 decode kernel; --code-warm: each default append row
//         also timed with the kernel's code brought into L2 by a one-token launch first, a diagnostic;
//         --append-lanes L: of the append rows that name a kernel, only those with L lanes, for A/B runs)
// Environment (diagnostics; nothing else runs): RQ_APPEND_PROBE=N: the 16K default append's one launch
// on N allocations, in orders, flushes and interleavings that tell placement from order
// (append_order_probe, sessions 25-26); RQ_LAUNCH_STATS=1: every timed launch of a few kernels, per
// call and pooled, with parameter blocks of 64-1024 bytes (launch_stats_probe, session 26).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rq/cuda/harness.hpp"
#include "rq/attention/attention.hpp"
#include "rq/core/half.hpp"
#include "rq/cuda/append.hpp"
#include "rq/cuda/decode.hpp"
#include "rq/pack/bitpack.hpp"

using namespace rq;
using namespace rq::cuda;
using namespace rq::cuda::harness;

namespace {

int g_failures = 0;
bool g_profile = false;  // --profile: one launch per configuration (for ncu), no statistics
bool g_code_warm = false;  // --code-warm: append rows also timed with the kernel's code in L2 (diagnostic)
int g_only_lanes = 0;      // --append-lanes L: of the non-default append rows, only those with L lanes (A/B runs)
// RQ_FLUSH=clean: after the memset that evicts the L2, a read of the same 256 MB, so that every
// timed launch starts with an L2 of clean lines (no write-back of the memset's dirty lines inside the
// timed region); default "dirty" (the memset alone, as every run before session 11).
bool g_clean_flush = false;
// Diagnostic (session 26, RQ_APPEND_PROBE): the flush memset's byte; -1 (default) = i & 0xff, the
// timed launch's index within its call.
int g_flush_byte = -1;

void report(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", what.c_str());
  if (!ok) ++g_failures;
}

// ---------------------------------------------------------------------------------------------
// (3) Benchmarks.
__global__ void fill_random_kernel(uint32_t* p, size_t n_words, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n_words; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 0x9e3779b9u ^ seed;
    x ^= x >> 16, x *= 0x7feb352du, x ^= x >> 15, x *= 0x846ca68bu, x ^= x >> 16;
    p[i] = x;
  }
}

__global__ void fill_norms_kernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 0x85ebca6bu ^ seed;
    x ^= x >> 13, x *= 0xc2b2ae35u, x ^= x >> 16;
    p[i] = float_to_half(0.5f + 1.5f * static_cast<float>(x & 0xffffu) / 65536.0f);
  }
}

void fill_random(void* p, size_t bytes, uint32_t seed) {
  fill_random_kernel<<<1024, 256>>>(static_cast<uint32_t*>(p), bytes / 4, seed);
  check(cudaGetLastError(), "fill");
}

// Reads n 16-byte words (the clean flush's sweep); writes only if the XOR of all is a value it never is.
__global__ void read_sweep_kernel(const uint4* p, size_t n, uint32_t never, uint32_t* sink) {
  uint32_t x = 0;
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const uint4 w = p[i];
    x ^= w.x ^ w.y ^ w.z ^ w.w;
  }
  if (x == never && sink) *sink = x;
}

struct Timer {
  DeviceBuffer<uint8_t> flush{256u << 20};  // bigger than the 60 MB L2: every timed launch starts cold
  // Evicts the L2: a memset of the flush buffer (leaves its last ~50 MB dirty in the L2); with
  // RQ_FLUSH=clean also a read of the buffer (writes those back, leaves clean lines).
  void flush_l2(int i) {
    check(cudaMemsetAsync(flush.get(), g_flush_byte < 0 ? (i & 0xff) : g_flush_byte, flush.size()), "flush");
    if (g_clean_flush) {
      read_sweep_kernel<<<1024, 512>>>(reinterpret_cast<const uint4*>(flush.get()), flush.size() / 16, 1u, nullptr);
      check(cudaGetLastError(), "clean flush");
    }
  }
  cudaEvent_t a{}, b{}, c{};
  int warmups = 1;  // untimed launches before a call's timed ones (RQ_APPEND_PROBE varies it)
  Timer() {
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
    check(cudaEventCreate(&c), "event");
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaEventDestroy(c);
  }
  template <typename F>
  double median_us(F&& launch, int iters) {
    return median_us_after(launch, [] {}, iters);
  }
  // As median_us, with pre() enqueued after the L2 flush and before the first event (not timed).
  template <typename F, typename P>
  double median_us_after(F&& launch, P&& pre, int iters) {
    std::vector<double> t = samples_us(launch, pre, iters);
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
  // Every timed launch's time, in order (median_us_after's samples); flush_us, if given, gets each
  // flush's own time (one more event before the memset; the timed sequence is otherwise the same).
  template <typename F, typename P>
  std::vector<double> samples_us(F&& launch, P&& pre, int iters, std::vector<double>* flush_us = nullptr) {
    if (g_profile) iters = 1;
    for (int w = 0; w < warmups; ++w) launch();  // warm-up
    check(cudaDeviceSynchronize(), "warm-up");
    auto us_since = [](cudaEvent_t from, cudaEvent_t to) {  // waits for `to`
      check(cudaEventSynchronize(to), "sync");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, from, to), "elapsed");
      return 1000.0 * ms;
    };
    std::vector<double> t;
    for (int i = 0; i < iters; ++i) {
      if (flush_us) check(cudaEventRecord(c), "record");
      flush_l2(i);
      pre();
      check(cudaEventRecord(a), "record");
      launch();
      check(cudaEventRecord(b), "record");
      t.push_back(us_since(a, b));
      if (flush_us) flush_us->push_back(us_since(c, a));  // includes pre()'s work, if any
    }
    return t;
  }
};

struct Row {
  std::string bench, format, kernel = "fused";
  long long n = 0, batch = 0, context = 0;
  double us = 0, bytes = 0, gbps = 0, bw_fraction = 0;
  double us_stream = 0;  // append: per launch of a stream of back-to-back launches (append_in_stream_times)
  double us_graph = 0;   // per call of a CUDA graph of back-to-back calls on cold inputs (graph_us)
  double us_alloc_min = 0, us_alloc_max = 0;  // append: the one-launch time's range over its allocations
  int block_warps = 0;  // decode: the tensor-core kernel's splits per block (plan.block_warps)
  int page_size = 0;    // decode: tokens per cache page
};

__global__ void empty_kernel() {}

void launch_empty_kernel() {
  empty_kernel<<<1, 32>>>();
  check(cudaGetLastError(), "empty kernel");
}

// The floor of every timed row: one empty kernel launch between two events (after the L2 flush).
double empty_launch_us(Timer& timer) { return timer.median_us(launch_empty_kernel, 30); }

double copy_bandwidth_gbps(Timer& timer) {
  const size_t bytes = size_t(1) << 30;
  DeviceBuffer<uint8_t> src(bytes), dst(bytes);
  fill_random(src.get(), bytes, 1);
  const double us = timer.median_us([&] { check(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice), "copy"); }, 10);
  return 2.0 * static_cast<double>(bytes) / (us * 1e3);  // read + write, GB/s
}

// The memory floor of an append of n vectors at d = 128, 3 bits: one warp per vector reads its 256
// input bytes (8 per lane) and writes 48 code bytes and a 2-byte norm, with no arithmetic but an XOR
// of what it read (so the loads are not dropped). One launch after the L2 flush, like the append rows:
// what any fused append of n vectors costs before it quantizes anything.
// (k: XORed into what is written; 0 here, a parameter word in append_floor_params_kernel.)
__device__ __forceinline__ void append_floor(const uint2* in, uint32_t* codes, uint16_t* norms, int n, uint32_t k) {
  const int lane = threadIdx.x & 31;
  for (int v = (blockIdx.x * blockDim.x + threadIdx.x) >> 5; v < n; v += (gridDim.x * blockDim.x) >> 5) {
    const uint2 x = in[static_cast<size_t>(v) * 32 + lane];
    const uint32_t w = x.x ^ x.y ^ k;
    if (lane < 12) codes[static_cast<size_t>(v) * 12 + lane] = w;
    if (lane == 12) norms[v] = static_cast<uint16_t>(w);
  }
}
__global__ void append_floor_kernel(const uint2* in, uint32_t* codes, uint16_t* norms, int n) {
  append_floor(in, codes, norms, n, 0u);
}

// Diagnostic (RQ_LAUNCH_STATS): the floor kernel with a BYTES-byte parameter block whose first and
// last words it reads (zeros on the host): does a large parameter block make a launch bimodal?
template <int BYTES>
struct ParamBlock {
  uint32_t w[BYTES / 4];
};
template <int BYTES>
__global__ void append_floor_params_kernel(const uint2* in, uint32_t* codes, uint16_t* norms, int n, ParamBlock<BYTES> pb) {
  append_floor(in, codes, norms, n, pb.w[0] ^ pb.w[BYTES / 4 - 1] ^ pb.w[(BYTES / 4) / 2]);
}

constexpr double kFloorBytesPerVector = 256.0 + 50.0;  // read + written by append_floor_kernel

// The floor kernel's buffers for n vectors (random input) and its launch: append_floor_us and the
// diagnostics.
struct FloorBench {
  int n, blocks;
  DeviceBuffer<uint2> in;
  DeviceBuffer<uint32_t> codes;
  DeviceBuffer<uint16_t> norms;
  FloorBench(long long n_vectors, int sm_count)
      : n(static_cast<int>(n_vectors)),
        blocks(static_cast<int>(std::min<long long>((n_vectors + 7) / 8, 8LL * sm_count))),  // 8 warps a block
        in(static_cast<size_t>(n_vectors) * 32),
        codes(static_cast<size_t>(n_vectors) * 12),
        norms(static_cast<size_t>(n_vectors)) {
    fill_random(in.get(), static_cast<size_t>(n_vectors) * 256, 7);
  }
  void launch() const {
    append_floor_kernel<<<blocks, 256>>>(in.get(), codes.get(), norms.get(), n);
    check(cudaGetLastError(), "append floor");
  }
  template <int BYTES>
  void launch(const ParamBlock<BYTES>& pb) const {
    append_floor_params_kernel<BYTES><<<blocks, 256>>>(in.get(), codes.get(), norms.get(), n, pb);
    check(cudaGetLastError(), "append floor (params)");
  }
};

double append_floor_us(Timer& timer, long long n, int sm_count) {
  const FloorBench fb(n, sm_count);
  return timer.median_us([&] { fb.launch(); }, 20);
}

// Random fp16 in a sane range, as bench_append's host inputs: exponent in [2^-2, 2^1], random sign.
__global__ void fill_half_kernel(uint16_t* p, size_t n, uint32_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 0x9e3779b9u ^ seed;
    x ^= x >> 16, x *= 0x7feb352du, x ^= x >> 15, x *= 0x846ca68bu, x ^= x >> 16;
    p[i] = static_cast<uint16_t>((x & 0x83ffu) | (0x34u << 8) | (((x >> 16) & 3u) << 10));
  }
}

// Bytes of inputs that the in-stream and in-graph timings rotate through: 3x the 60 MB L2, so every
// call reads cold data.
constexpr double kColdBytes = 192e6;

// Median over `repeats` runs of body() between two events on `stream`, in us divided by `per`.
template <typename Body>
double median_between_events_us(cudaStream_t stream, int repeats, int per, Body&& body) {
  cudaEvent_t a{}, b{};
  check(cudaEventCreate(&a), "event");
  check(cudaEventCreate(&b), "event");
  std::vector<double> t;
  for (int r = 0; r < repeats; ++r) {
    check(cudaEventRecord(a, stream), "record");
    body();
    check(cudaEventRecord(b, stream), "record");
    check(cudaEventSynchronize(b), "sync");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, a, b), "elapsed");
    t.push_back(1000.0 * ms / per);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Per-call time inside a CUDA graph, the way an engine runs a decode step (the tool library's
// METHOD.md: "for many small launches, capture a graph and time its replays"): enqueue(i, stream)
// enqueues call i; `calls` calls are captured once into one graph, which is replayed kReplays times
// between two events (median, divided by `calls`). The callers rotate their inputs over at least
// 192 MB (3x the 60 MB L2), so every call reads cold data; no flush is needed or done. What this
// leaves out, next to the single-launch timing after the L2 flush, is the launch latency that a
// graph hides behind the previous node.
template <typename Enqueue>
double graph_us(Enqueue&& enqueue, int calls) {
  constexpr int kReplays = 7;
  cudaStream_t s{};
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "graph stream");
  for (int i = 0; i < calls; ++i) enqueue(i, s);  // warm-up outside the capture (first-use attributes)
  check(cudaStreamSynchronize(s), "graph warm-up");
  cudaGraph_t g{};
  cudaGraphExec_t ge{};
  check(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "begin capture");
  for (int i = 0; i < calls; ++i) enqueue(i, s);
  check(cudaStreamEndCapture(s, &g), "end capture");
  check(cudaGraphInstantiate(&ge, g, 0), "graph instantiate");
  check(cudaGraphLaunch(ge, s), "graph warm-up replay");
  check(cudaStreamSynchronize(s), "graph warm-up replay");
  const double us = median_between_events_us(s, g_profile ? 1 : kReplays, calls, [&] { check(cudaGraphLaunch(ge, s), "graph replay"); });
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  return us;
}

// Per-append times inside a stream of work: `stream`, kLaunches launches back-to-back in one stream
// between two events, divided by kLaunches (median of 5 such batches); `graph`, the same calls
// captured in a CUDA graph (graph_us).
// Launch i reads input slice i mod R and writes its own cache region (slots of slice i mod R), with
// R slices of at least 192 MB together (3x the 60 MB L2), so every launch finds its inputs cold;
// launch overhead is pipelined, unlike the single-launch timing after an L2 flush.
struct InStreamTimes {
  double stream = 0, graph = 0;
};

InStreamTimes append_in_stream_times(const AppendParams& base, long long n_vectors, int payload_bytes) {
  constexpr int kLaunches = 40, kBatches = 5;
  const int H = base.n_kv_heads, d = 128, page = 64, T = base.n_tokens;
  const double launch_bytes = static_cast<double>(n_vectors) * (2.0 * d + payload_bytes + 2.0) + 8.0 * T;
  const int R = std::max(2, static_cast<int>(std::ceil(kColdBytes / launch_bytes)));
  const int pages = (T + page - 1) / page;
  const size_t slice = static_cast<size_t>(T) * H * d;
  DeviceBuffer<uint16_t> xk(slice * R), xv(slice * R);
  fill_half_kernel<<<1024, 256>>>(xk.get(), xk.size(), 0x1234u);
  fill_half_kernel<<<1024, 256>>>(xv.get(), xv.size(), 0x5678u);
  check(cudaGetLastError(), "fill");
  DeviceCache kcache(H, page, pages * R, base.jobs[0].codec.payload_bytes), vcache(H, page, pages * R, base.jobs[1].codec.payload_bytes);
  std::vector<int64_t> slots(static_cast<size_t>(T) * R);
  for (int s = 0; s < R; ++s)
    for (int t = 0; t < T; ++t) slots[static_cast<size_t>(s) * T + t] = static_cast<int64_t>(s) * pages * page + t;
  DeviceBuffer<int64_t> dslots;
  dslots.upload(slots);
  AppendParams p = base;
  p.jobs[0].geometry = kcache.geometry, p.jobs[0].planes = kcache.planes();
  p.jobs[1].geometry = vcache.geometry, p.jobs[1].planes = vcache.planes();
  long long next = 0;
  auto enqueue = [&](long long i, cudaStream_t stream) {
    const int s = static_cast<int>(i % R);
    p.slot_mapping = dslots.get() + static_cast<size_t>(s) * T;
    p.jobs[0].x = xk.get() + s * slice;
    p.jobs[1].x = xv.get() + s * slice;
    check(launch_quantize_append(p, stream), "append (stream)");
  };
  auto launches = [&](int count) {
    for (int i = 0; i < count; ++i, ++next) enqueue(next, nullptr);
  };
  launches(kLaunches);  // warm-up
  check(cudaDeviceSynchronize(), "stream warm-up");
  InStreamTimes r;
  r.stream = median_between_events_us(nullptr, g_profile ? 1 : kBatches, kLaunches, [&] { launches(kLaunches); });
  r.graph = graph_us(enqueue, std::max(kLaunches, R));
  return r;
}

// One allocation of an append row's buffers: codec tables, caches, inputs (K and V of T tokens x H
// heads, random fp16 in a sane range) and contiguous slots (prefill-like; pages in order).
struct AppendBench {
  static constexpr int H = 8, d = 128, page = 64;
  int T;
  RoleCodecs kc, vc;
  DeviceCache kcache, vcache;
  DeviceBuffer<uint16_t> xk, xv;
  DeviceBuffer<int64_t> dslots;
  AppendParams p;
  AppendBench(const std::string& format, long long n_vectors, bool exact, int lanes, int rounds, uint32_t seed)
      : T(static_cast<int>(n_vectors / (2 * H))),
        kc(format, H, d, KvRole::K),
        vc(format, H, d, KvRole::V),
        kcache(H, page, (T + page - 1) / page, kc.device.payload_bytes),
        vcache(H, page, (T + page - 1) / page, vc.device.payload_bytes),
        xk(static_cast<size_t>(T) * H * d),
        xv(static_cast<size_t>(T) * H * d) {
    fill_half_kernel<<<1024, 256>>>(xk.get(), xk.size(), 0x1234u + seed);
    fill_half_kernel<<<1024, 256>>>(xv.get(), xv.size(), 0x5678u + seed);
    check(cudaGetLastError(), "fill");
    std::vector<int64_t> slots(static_cast<size_t>(T));
    std::iota(slots.begin(), slots.end(), 0);
    dslots.upload(slots);
    p.n_tokens = T;
    p.n_kv_heads = H;
    p.slot_mapping = dslots.get();
    p.jobs[0] = AppendJob{xk.get(), static_cast<int64_t>(H) * d, InputType::F16, kc.device, kcache.geometry, kcache.planes()};
    p.jobs[1] = AppendJob{xv.get(), static_cast<int64_t>(H) * d, InputType::F16, vc.device, vcache.geometry, vcache.planes()};
    p.lanes_per_vector = lanes;
    p.exact = exact ? 1 : 0;
    p.rounds_per_block = rounds;
  }
};

// One launch after the L2 flush depends on where the row's buffers land, by up to ~0.7 us at 16K
// (session 18: the same kernel's default and explicit rows, 8.4-8.6 against 7.7-8.1 us in six runs),
// so a row is timed on kAppendAllocations allocations held at once (distinct addresses) and reports
// the median of their medians, with the range (us_alloc_min, us_alloc_max).
constexpr int kAppendAllocations = 3;

// lanes = 0: the default (default_append_kernel in append.hpp); otherwise the fast (exact = false: 1, 4,
// 8 or 16 lanes, `rounds` rounds per block) or bit-exact (exact = true: 1 or 4 lanes) kernel.
void bench_append(const std::string& format, long long n_vectors, bool exact, int lanes, double copy_gbps, Timer& timer,
                  std::vector<Row>& rows, int rounds = 0) {
  if (g_only_lanes && lanes && lanes != g_only_lanes) return;
  constexpr int H = AppendBench::H, d = AppendBench::d, page = AppendBench::page;
  const int allocations = g_profile ? 1 : kAppendAllocations;
  std::vector<std::unique_ptr<AppendBench>> benches;
  std::vector<double> per_alloc;
  for (int a = 0; a < allocations; ++a) {
    benches.push_back(std::make_unique<AppendBench>(format, n_vectors, exact, lanes, rounds, static_cast<uint32_t>(a) * 0x9e37u));
    const AppendParams& pa = benches.back()->p;
    per_alloc.push_back(timer.median_us([&] { check(launch_quantize_append(pa, nullptr), "append"); }, 30));
  }
  std::vector<double> sorted = per_alloc;
  std::sort(sorted.begin(), sorted.end());
  const double us = sorted[sorted.size() / 2];
  const AppendBench& b0 = *benches.front();
  const AppendParams& p = b0.p;
  const RoleCodecs& kc = b0.kc;
  const int T = b0.T;
  if (g_code_warm && !lanes) {  // diagnostic: the same kernel's code brought into L2 first (not timed)
    RoleCodecs kc2(format, H, d, KvRole::K), vc2(format, H, d, KvRole::V);  // own copies: cold tables
    DeviceCache kc2c(H, page, 1, kc2.device.payload_bytes), vc2c(H, page, 1, vc2.device.payload_bytes);
    AppendParams w = p;
    const AppendKernel dk = default_append_kernel(n_vectors, exact, kc.device.family, kc.device.bits);
    w.n_tokens = 1;
    w.lanes_per_vector = dk.lanes, w.exact = dk.exact ? 1 : 0, w.rounds_per_block = dk.rounds;
    w.jobs[0].codec = kc2.device, w.jobs[0].geometry = kc2c.geometry, w.jobs[0].planes = kc2c.planes();
    w.jobs[1].codec = vc2.device, w.jobs[1].geometry = vc2c.geometry, w.jobs[1].planes = vc2c.planes();
    const double warm = timer.median_us_after([&] { check(launch_quantize_append(p, nullptr), "append"); },
                                              [&] { check(launch_quantize_append(w, nullptr), "append (code warm-up)"); }, 30);
    std::printf("  append %-7s n=%8lld  cold %9.2f us, kernel code in L2 (one-token launch first) %9.2f us\n", format.c_str(),
                n_vectors, per_alloc.front(), warm);
  }
  const InStreamTimes in_stream = g_profile ? InStreamTimes{} : append_in_stream_times(p, n_vectors, kc.device.payload_bytes);  // ncu: the timed launches only
  Row r;
  r.bench = "append";
  r.format = format;
  AppendKernel k{exact, lanes, rounds};
  if (!lanes) k = default_append_kernel(n_vectors, exact, kc.device.family, kc.device.bits);
  // fast one or two lanes: " x<R> tiles" per block where given (none: one wave of resident blocks)
  const std::string per_block = k.lanes <= 2 ? " tiles" : " rounds";
  r.kernel = std::string(!lanes ? "default: " : "") + (k.exact ? "exact " : "fast ") + std::to_string(k.lanes) +
             (k.lanes == 1 ? " lane" : " lanes") + (!k.exact && k.rounds > (k.lanes <= 2 ? 0 : 1) ? " x" + std::to_string(k.rounds) + per_block : "");
  r.n = n_vectors;
  r.us = us;
  r.us_stream = in_stream.stream;
  r.us_graph = in_stream.graph;
  r.us_alloc_min = sorted.front();
  r.us_alloc_max = sorted.back();
  // bytes moved: fp16 input + codes + norm + slot ids
  r.bytes = static_cast<double>(n_vectors) * (2.0 * d + kc.device.payload_bytes + 2.0) + 8.0 * T;
  r.gbps = r.bytes / (us * 1e3);
  r.bw_fraction = r.gbps / copy_gbps;
  rows.push_back(r);
  std::printf("  append %-7s %-24s n=%8lld  %9.2f us  %7.1f GB/s  %5.1f%% of copy  stream %9.2f us (%5.1f%%)  graph %9.2f us"
              "  (allocations %.2f-%.2f us)\n",
              format.c_str(), r.kernel.c_str(), n_vectors, us, r.gbps, 100 * r.bw_fraction, r.us_stream,
              100 * r.bw_fraction * us / r.us_stream, r.us_graph, r.us_alloc_min, r.us_alloc_max);
}

// The decode benchmark's inputs for one (format, batch, context): random codes and norms, page
// tables drawn from a shuffled pool, normal queries (seed: its own codecs and buffers).
struct DecodeBench {
  int page;  // tokens per page (64 unless RQ_DECODE_PAGE says otherwise)
  RoleCodecs kc, vc;
  std::vector<int32_t> lens;
  Rng rng;
  PageTables pt;
  DeviceCache kcache, vcache;
  std::vector<float> q;
  DeviceBuffer<float> dq, dout;
  DeviceBuffer<int32_t> dlens, dtable;
  DeviceBuffer<uint8_t> ws;
  DecodeParams p;
  static constexpr int H = 8, Hq = 32, d = 128;
  DecodeBench(const std::string& format, int B, int ctx, int sms, bool exact, uint64_t seed = 0x5eedull, int page_size = 64)
      : page(page_size), kc(format, H, d, KvRole::K, seed), vc(format, H, d, KvRole::V, seed), lens(static_cast<size_t>(B), ctx),
        rng(7 + B + ctx), pt(lens, page, rng), kcache(H, page, pt.total_pages, kc.device.payload_bytes),
        vcache(H, page, pt.total_pages, vc.device.payload_bytes), q(static_cast<size_t>(B) * Hq * d) {
    for (DeviceCache* c : {&kcache, &vcache}) {
      fill_random(c->codes.get(), c->codes.size(), 11);  // rows of 128 coordinates: no tail plane
      fill_norms_kernel<<<1024, 256>>>(c->norms.get(), c->norms.size(), 17);
    }
    for (auto& v : q) v = static_cast<float>(rng.normal());
    dq.upload(q);
    dout.resize(q.size());
    dlens.upload(lens);
    dtable.upload(pt.table);
    p = decode_params(B, Hq, H, d, dq.get(), dout.get(), dlens.get(), dtable.get(), pt.max_pages, kc, vc, kcache, vcache);
    p.plan = plan_decode(B, ctx, H, sms, exact);
    p.exact = exact ? 1 : 0;
    ws.resize(decode_workspace_bytes(B, Hq, kc.device.rotated_dim, p.plan));
    p.workspace = ws.get();
  }
  bool finite() const {
    bool ok = true;
    for (float v : dout.download()) ok = ok && std::isfinite(v);
    return ok;
  }
};

// Per-call decode time in a graph (graph_us): calls rotate over R copies of db's caches (random codes
// and norms each), >= 192 MB together, with the same queries, page tables, output and workspace.
double decode_graph_us(const DecodeBench& db) {
  const int H = DecodeBench::H;
  const double cache_bytes = static_cast<double>(db.kcache.codes.size() + db.vcache.codes.size()) +
                             2.0 * static_cast<double>(db.kcache.norms.size() + db.vcache.norms.size());
  const int R = std::max(2, static_cast<int>(std::ceil(kColdBytes / cache_bytes)));
  std::vector<std::unique_ptr<DeviceCache>> copies;
  std::vector<DecodeParams> ps(static_cast<size_t>(R), db.p);
  for (int c = 1; c < R; ++c) {
    for (int role = 0; role < 2; ++role) {
      const DeviceCache& src = role == 0 ? db.kcache : db.vcache;
      copies.push_back(std::make_unique<DeviceCache>(H, db.page, src.geometry.num_pages,
                                                     (role == 0 ? db.kc : db.vc).device.payload_bytes));
      DeviceCache& dst = *copies.back();
      fill_random(dst.codes.get(), dst.codes.size(), 11 + 2 * c + role);
      fill_norms_kernel<<<1024, 256>>>(dst.norms.get(), dst.norms.size(), 17 + 2 * c + role);
      check(cudaGetLastError(), "fill norms");
      (role == 0 ? ps[c].k_planes : ps[c].v_planes) = dst.planes();
    }
  }
  return graph_us([&](int i, cudaStream_t s) {
    check(launch_decode_attention(ps[static_cast<size_t>(i % R)], s), "decode (graph)");
  }, std::max(R, 10));
}

void bench_decode(const std::string& format, int B, int ctx, int sms, bool exact, double copy_gbps, Timer& timer,
                  std::vector<Row>& rows, int page = 64) {
  DecodeBench db(format, B, ctx, sms, exact, 0x5eedull, page);
  const DecodeParams& p = db.p;
  const RoleCodecs& kc = db.kc;
  const std::vector<float>& q = db.q;
  const int H = DecodeBench::H;
  const double us = timer.median_us([&] { check(launch_decode_attention(p, nullptr), "decode"); }, 20);
  if (!db.finite()) report(false, "decode benchmark output is not finite (" + format + ")");
  const double us_graph = g_profile ? 0.0 : decode_graph_us(db);
  Row r;
  r.bench = "decode";
  r.format = format;
  r.kernel = tensor_core_decode(p) ? "tensor-core" : "exact-fp32";
  r.batch = B;
  r.context = ctx;
  r.us = us;
  r.us_graph = us_graph;
  r.block_warps = p.plan.block_warps;
  r.page_size = page;
  const double per_token = 2.0 * (kc.device.payload_bytes + 2.0);  // K and V: codes + fp16 norm
  r.bytes = static_cast<double>(B) * ctx * H * per_token + 2.0 * q.size() * sizeof(float);
  r.gbps = r.bytes / (us * 1e3);
  r.bw_fraction = r.gbps / copy_gbps;
  rows.push_back(r);
  char grid[48];
  std::snprintf(grid, sizeof grid, "splits=%4d x %6d w%2d", p.plan.max_splits, p.plan.tokens_per_split, p.plan.block_warps);
  std::printf("  decode %-7s %-11s B=%3d ctx=%7d page=%3d  %s  %9.2f us  %7.1f GB/s  %5.1f%% of copy  graph %9.2f us\n",
              format.c_str(), r.kernel.c_str(), B, ctx, page, grid, us, r.gbps, 100 * r.bw_fraction, us_graph);
}

// --trace (decode eleventh pass): where the time between the timing's two events goes. Each decode
// runs as in Timer::median_us (L2 flush, event, decode, event) with DecodeParams::trace set (thread 0
// of every block stamps %globaltimer at the points of rq::cuda::DecodeTracePoint); a one-thread
// kernel stamps kTraceMarkBefore between the flush and the first event and kTraceMarkAfter after the
// second. Printed: medians over the runs of each point's first and last stamp, in us after the mark.
// pre(): runs after the flush, before the mark (warm_code below).
__device__ __forceinline__ unsigned long long global_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)::"memory");
  return t;
}

__global__ void mark_kernel(uint64_t* trace, int point) { trace[2 * point] = trace[2 * point + 1] = global_ns(); }

__global__ void traced_empty_kernel(uint64_t* trace) {  // the empty launch's timeline (query points)
  trace[2 * kTraceQueryStart] = trace[2 * kTraceQueryStart + 1] = global_ns();
  trace[2 * kTraceQueryEnd] = trace[2 * kTraceQueryEnd + 1] = global_ns();
}

// The per-block stamps (DecodeParams::trace after the points; session 21) of one run: the split
// blocks' SMs and when each block and each SM (its last block) ended its loop, in us after t0.
struct BlockStats {
  int blocks = 0, sms = 0, max_per_sm = 0, min_per_sm = 0;
  std::vector<double> loop_done, sm_done, loop_us;  // per block, per SM (its last block), loop done - first K
};

BlockStats block_stats(const std::vector<uint64_t>& v, uint64_t t0) {
  BlockStats r;
  std::vector<double> sm_done(1024, -1.0);
  std::vector<int> per_sm(1024, 0);
  const auto us = [&](uint64_t t) { return (static_cast<double>(t) - static_cast<double>(t0)) / 1e3; };
  for (int b = 0; b < kTraceMaxBlocks; ++b) {
    const uint64_t* w = v.data() + 2 * kDecodeTracePoints + kTraceBlockWords * b;
    if (w[3] == 0 || w[0] >= 1024) continue;  // no loop-done stamp: not a split block that ran its loop
    ++r.blocks;
    ++per_sm[w[0]];
    r.loop_done.push_back(us(w[3]));
    if (w[2] != 0) r.loop_us.push_back((static_cast<double>(w[3]) - static_cast<double>(w[2])) / 1e3);
    sm_done[w[0]] = std::max(sm_done[w[0]], us(w[3]));
  }
  r.min_per_sm = 1 << 30;
  for (int s = 0; s < 1024; ++s) {
    if (per_sm[s] == 0) continue;
    ++r.sms;
    r.max_per_sm = std::max(r.max_per_sm, per_sm[s]);
    r.min_per_sm = std::min(r.min_per_sm, per_sm[s]);
    r.sm_done.push_back(sm_done[s]);
  }
  return r;
}

// "min p10 p50 p90 max" of x.
std::string percentiles(std::vector<double> x) {
  if (x.empty()) return "-";
  std::sort(x.begin(), x.end());
  char buf[96];
  const auto at = [&](double q) { return x[static_cast<size_t>(q * (x.size() - 1) + 0.5)]; };
  std::snprintf(buf, sizeof buf, "%.1f %.1f %.1f %.1f %.1f", x.front(), at(0.1), at(0.5), at(0.9), x.back());
  return buf;
}

template <typename Pre, typename Launch>
void trace_run(const std::string& label, Timer& timer, Pre&& pre, Launch&& launch, int iters = 20) {
  constexpr int P = kDecodeTracePoints;
  DeviceBuffer<uint64_t> tr(kDecodeTraceWords);
  std::vector<uint64_t> init(kDecodeTraceWords, 0);
  for (int i = 0; i < P; ++i) init[2 * i] = ~0ull, init[2 * i + 1] = 0;
  std::vector<std::vector<double>> lo(P), hi(P);
  std::vector<double> ev;
  BlockStats last;
  tr.upload(init);
  launch(tr.get());  // warm-up
  check(cudaDeviceSynchronize(), "trace warm-up");
  for (int it = 0; it < iters; ++it) {
    tr.upload(init);
    timer.flush_l2(it);
    pre();
    mark_kernel<<<1, 1>>>(tr.get(), kTraceMarkBefore);
    check(cudaEventRecord(timer.a), "record");
    launch(tr.get());
    check(cudaEventRecord(timer.b), "record");
    mark_kernel<<<1, 1>>>(tr.get(), kTraceMarkAfter);
    check(cudaDeviceSynchronize(), "trace");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, timer.a, timer.b), "elapsed");
    ev.push_back(1000.0 * ms);
    const std::vector<uint64_t> v = tr.download();
    const uint64_t t0 = v[2 * kTraceMarkBefore];
    if (it == iters / 2) last = block_stats(v, t0);
    for (int i = 0; i < P; ++i) {
      if (v[2 * i] == ~0ull) continue;
      lo[i].push_back((static_cast<double>(v[2 * i]) - static_cast<double>(t0)) / 1e3);
      hi[i].push_back((static_cast<double>(v[2 * i + 1]) - static_cast<double>(t0)) / 1e3);
    }
  }
  auto median = [](std::vector<double> x) {
    std::sort(x.begin(), x.end());
    return x.empty() ? NAN : x[x.size() / 2];
  };
  static const char* names[P] = {"query start", "query end",   "split start",  "split ready", "split waited",
                                 "split firstK", "split loopdone", "split end", "merge start", "merge waited",
                                 "merge end",    "mark before", "mark after"};
  std::printf("  trace %s: events %.2f us (median of %d); us after the mark before the first event, first / last block:\n",
              label.c_str(), median(ev), iters);
  for (int i = 0; i < P; ++i) {
    if (lo[i].size() * 2 < ev.size() || i == kTraceMarkBefore) continue;
    std::printf("    %-15s %8.2f %8.2f\n", names[i], median(lo[i]), median(hi[i]));
  }
  if (last.blocks > 0) {  // one run's (the middle one's) per-block stamps: min p10 p50 p90 max
    std::printf("    blocks %d on %d SMs (%d-%d a SM); loop done %s; SM done %s; block loop us %s\n", last.blocks,
                last.sms, last.min_per_sm, last.max_per_sm, percentiles(last.loop_done).c_str(),
                percentiles(last.sm_done).c_str(), percentiles(last.loop_us).c_str());
  }
}

void trace_decodes(int sms) {
  Timer timer;
  trace_run("empty kernel", timer, [] {}, [](uint64_t* tr) {
    traced_empty_kernel<<<1, 32>>>(tr);
    check(cudaGetLastError(), "empty kernel");
  });
  // The code-warm diagnostic's small decode: its own codecs, cache and workspace (1 sequence of 144
  // tokens: a full and a partial chunk), so only the kernels' code (and the SMs' setup) is warm.
  std::unique_ptr<DecodeBench> small;
  const int shapes[][2] = {{1, 4096}, {1, 131072}, {8, 32768}, {16, 65536}};
  for (const char* f : {"rotor3", "turbo3"}) {
    small = std::make_unique<DecodeBench>(f, 1, 144, sms, false, 0x77ull);
    for (const auto& sh : shapes) {
      DecodeBench db(f, sh[0], sh[1], sms, false);
      auto launch = [&](uint64_t* tr) {
        db.p.trace = tr;
        check(launch_decode_attention(db.p, nullptr), "decode");
      };
      const std::string label = std::string(f) + " B=" + std::to_string(sh[0]) + " ctx=" + std::to_string(sh[1]);
      trace_run(label, timer, [] {}, launch);
      trace_run(label + " code-warm", timer, [&] { check(launch_decode_attention(small->p, nullptr), "warm"); }, launch);
      db.p.trace = nullptr;
      const double us = timer.median_us([&] { check(launch_decode_attention(db.p, nullptr), "decode"); }, 20);
      std::printf("  untraced %s: %.2f us\n", label.c_str(), us);
    }
  }
}

}  // namespace

// f(std::integral_constant<int, B>{}) for each B, in order.
template <int... B, typename F>
void for_each_int(std::integer_sequence<int, B...>, F&& f) {
  (f(std::integral_constant<int, B>{}), ...);
}

// Diagnostic (session 26, RQ_LAUNCH_STATS): every timed launch of 6 consecutive calls of 30 for a
// few kernels, summarized per call as (median, launches more than 0.35 us above the call's fastest)
// and pooled (p10 / p50 / p90 / mean): which one-launch rows are bimodal, and how often.
void launch_stats_probe(int sm_count) {
  Timer timer;
  auto stats = [&](const std::string& name, const std::function<void()>& launch) {
    std::vector<double> all;
    std::printf("stats %-28s calls:", name.c_str());
    for (int c = 0; c < 6; ++c) {
      std::vector<double> t = timer.samples_us(launch, [] {}, 30);
      const double lo = *std::min_element(t.begin(), t.end());
      const long slow = std::count_if(t.begin(), t.end(), [&](double v) { return v > lo + 0.35; });
      all.insert(all.end(), t.begin(), t.end());
      std::sort(t.begin(), t.end());
      std::printf(" %.2f(%ld)", t[t.size() / 2], slow);
    }
    std::sort(all.begin(), all.end());
    double mean = 0;
    for (double v : all) mean += v / all.size();
    auto q = [&](double f) { return all[static_cast<size_t>(f * (all.size() - 1) + 0.5)]; };
    std::printf("  pooled p10 %.2f p50 %.2f p90 %.2f mean %.2f\n", q(0.1), q(0.5), q(0.9), mean);
  };
  stats("empty", launch_empty_kernel);
  {
    const FloorBench fb(16384, sm_count);
    stats("append floor 16K", [&] { fb.launch(); });
    auto with_params = [&](auto bytes_c) {
      constexpr int B = decltype(bytes_c)::value;
      const ParamBlock<B> pb{};
      stats("append floor 16K, " + std::to_string(B) + " B params", [&] { fb.launch(pb); });
    };
    for_each_int(std::integer_sequence<int, 64, 96, 128, 160, 192, 224, 256, 288, 320, 384, 1024>{}, with_params);
  }
  struct Case { const char* format; long long n; int lanes; bool exact; };
  for (const Case& c : {Case{"turbo3", 16384, 0, false}, Case{"rotor3", 16384, 0, false}, Case{"turbo3", 16384, 1, false},
                        Case{"rotor3", 16384, 1, false}, Case{"turbo3", 16384, 4, true}, Case{"turbo3", 4096, 0, false},
                        Case{"turbo3", 65536, 0, false}, Case{"rotor3", 65536, 0, false}}) {
    AppendBench b(c.format, c.n, c.exact, c.lanes, 0, 0);
    const std::string name = std::string("append ") + c.format + " " + std::to_string(c.n / 1024) + "K " +
                             (c.lanes ? std::to_string(c.lanes) + (c.exact ? " exact" : " fast") : "default");
    stats(name, [&] { check(launch_quantize_append(b.p, nullptr), "append"); });
  }
  {  // every launch of 3 calls with an empty kernel between the flush and the first event (untimed)
    AppendBench b("turbo3", 16384, false, 0, 0, 0);
    for (int c = 0; c < 3; ++c) {
      const std::vector<double> t = timer.samples_us([&] { check(launch_quantize_append(b.p, nullptr), "append"); },
                                                     launch_empty_kernel, 30);
      std::printf("stats turbo3 16K, empty kernel after each flush, call %d:", c);
      for (double v : t) std::printf(" %.2f", v);
      std::printf("\n");
    }
  }
}

// Diagnostic (sessions 25-26, RQ_APPEND_PROBE=N): the 16K default append of turbo3 and rotor3 on N
// allocations held at once, each allocation's one-launch median timed twice (in allocation order, then
// in reverse), every launch's and flush's time of 4 consecutive calls, series of 8 calls under other
// flushes, warm-up counts, host gaps and interleavings, and the buffers' addresses: placement against
// order (docs/gpu.md, "Session 26").
void append_order_probe(int n_alloc, int sm_count) {
  Timer timer;
  for (const char* f : {"turbo3", "rotor3"}) {
    std::vector<std::unique_ptr<AppendBench>> benches;
    for (int a = 0; a < n_alloc; ++a)
      benches.push_back(std::make_unique<AppendBench>(f, 16384, false, 0, 0, static_cast<uint32_t>(a) * 0x9e37u));
    auto launch = [&](int a) {
      return [&, a] { check(launch_quantize_append(benches[a]->p, nullptr), "append"); };
    };
    std::vector<double> fwd(n_alloc), bwd(n_alloc);
    for (int a = 0; a < n_alloc; ++a) fwd[a] = timer.median_us(launch(a), 30);
    for (int a = n_alloc - 1; a >= 0; --a) bwd[a] = timer.median_us(launch(a), 30);
    // Then every launch of a few calls: the per-launch times (0.1 us) in order, and each flush's own time.
    for (int a = 0; a < 4; ++a) {  // 4 consecutive calls of allocation 0
      std::vector<double> flush_us;
      const std::vector<double> t = timer.samples_us(launch(0), [] {}, 30, &flush_us);
      std::printf("probe %s call %d launches:", f, a);
      for (double v : t) std::printf(" %.2f", v);
      std::printf("\nprobe %s call %d flushes: ", f, a);
      for (double v : flush_us) std::printf(" %.0f", v);
      std::printf("\n");
    }
    // Then 8 consecutive calls of one allocation, of the append floor kernel and of the empty
    // kernel, under three flushes: the memset of byte i & 0xff (as published), of a constant
    // byte, and the memset followed by a read (RQ_FLUSH=clean): which alternate, and with what.
    {
      const FloorBench fb(16384, sm_count);
      auto floor_launch = [&] { fb.launch(); };
      const bool clean0 = g_clean_flush;
      const struct { const char* name; int byte; bool clean; } modes[] = {{"byte=i", -1, false}, {"byte=0x5a", 0x5a, false}, {"clean", -1, true}};
      for (const auto& m : modes) {
        g_flush_byte = m.byte, g_clean_flush = m.clean;
        std::printf("probe %s series flush %-9s append:", f, m.name);
        for (int c = 0; c < 8; ++c) std::printf(" %.2f", timer.median_us(launch(0), 30));
        std::printf("  floor:");
        for (int c = 0; c < 8; ++c) std::printf(" %.2f", timer.median_us(floor_launch, 30));
        std::printf("  empty:");
        for (int c = 0; c < 8; ++c) std::printf(" %.2f", timer.median_us(launch_empty_kernel, 30));
        std::printf("  append+floor:");
        for (int c = 0; c < 4; ++c) std::printf(" %.2f/%.2f", timer.median_us(launch(0), 30), timer.median_us(floor_launch, 30));
        std::printf("\n");
      }
      g_flush_byte = -1, g_clean_flush = clean0;
      // What sets a call's mode: the launches per call (odd counts), the warm-ups, host time
      // between calls, or a different kernel's calls in between.
      auto series = [&](const char* name, int iters, int warmups, int sleep_us, bool with_empty) {
        timer.warmups = warmups;
        std::printf("probe %s series %-22s:", f, name);
        for (int c = 0; c < 8; ++c) {
          if (sleep_us) {
            check(cudaDeviceSynchronize(), "sync");
            const auto t0 = std::chrono::steady_clock::now();
            while (std::chrono::steady_clock::now() - t0 < std::chrono::microseconds(sleep_us)) {}
          }
          std::printf(" %.2f", timer.median_us(launch(0), iters));
          if (with_empty) std::printf("/%.2f", timer.median_us(launch_empty_kernel, iters));
        }
        std::printf("\n");
        timer.warmups = 1;
      };
      series("base", 30, 1, 0, false);
      series("29 timed launches", 29, 1, 0, false);
      series("31 timed launches", 31, 1, 0, false);
      series("no warm-up", 30, 0, 0, false);
      series("two warm-ups", 30, 2, 0, false);
      series("1 ms host gap", 30, 1, 1000, false);
      series("3 ms host gap", 30, 1, 3000, false);
      series("append/empty", 30, 1, 0, true);
      series("base again", 30, 1, 0, false);
    }
    for (int a = 0; a < n_alloc; ++a) {
      const AppendBench& b = *benches[a];
      auto ad = [](const void* q) { return static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(q)); };
      std::printf("probe %s alloc %2d: %6.2f / %6.2f us  xk %llx xv %llx kcodes %llx knorms %llx vcodes %llx vnorms %llx "
                  "slots %llx krot %llx kcent %llx vrot %llx\n",
                  f, a, fwd[a], bwd[a], ad(b.xk.get()), ad(b.xv.get()), ad(b.kcache.codes.get()), ad(b.kcache.norms.get()),
                  ad(b.vcache.codes.get()), ad(b.vcache.norms.get()), ad(b.dslots.get()), ad(b.kc.rotation.get()),
                  ad(b.kc.centroids.get()), ad(b.vc.rotation.get()));
    }
  }
}

int main(int argc, char** argv) {
  std::string json_path;
  bool do_check = true, do_bench = true, decode_only = false, append_only = false, with_exact = false, trace = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--check-only") do_bench = false;
    else if (a == "--bench-only") do_check = false;
    else if (a == "--decode-only") decode_only = true;
    else if (a == "--append-only") append_only = true;
    else if (a == "--profile") g_profile = true;
    else if (a == "--code-warm") g_code_warm = true;
    else if (a == "--append-lanes" && i + 1 < argc) g_only_lanes = std::atoi(argv[++i]);
    else if (a == "--with-exact") with_exact = true;
    else if (a == "--trace") trace = true;
    else if (a == "--skip-loop") {  // bit 128 added to RQ_DECODE_VARIANT (read by the first decode launch)
      const char* e = std::getenv("RQ_DECODE_VARIANT");
      setenv("RQ_DECODE_VARIANT", std::to_string((e && *e ? std::atoi(e) : 0) | 128).c_str(), 1);
    }
  }
  if (const char* e = std::getenv("RQ_FLUSH")) g_clean_flush = std::string(e) == "clean";
  try {
    if (device_count() == 0) {
      std::printf("SKIP no CUDA device\n");
      return 0;
    }
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, 0), "properties");
    std::printf("device: %s, %d SMs, %.0f MB L2\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6);
    Rng rng(20261129);
    if (std::getenv("RQ_LAUNCH_STATS")) {
      launch_stats_probe(prop.multiProcessorCount);
      return 0;
    }
    if (const char* e = std::getenv("RQ_APPEND_PROBE")) {
      append_order_probe(std::max(2, std::min(64, std::atoi(e))), prop.multiProcessorCount);
      return 0;
    }
    if (trace) {  // the decode's timeline (decode eleventh pass), nothing else
      trace_decodes(prop.multiProcessorCount);
      return 0;
    }
    if (g_profile) {  // a few configurations, one timed launch each, for ncu
      Timer timer;
      std::vector<Row> rows;
      for (const char* f : {"turbo3", "rotor3"}) {
        for (long long n : {16384LL, 1048576LL}) bench_append(f, n, false, 0, 4230.0, timer, rows);
        for (int lanes : {1, 4, 8, 16}) bench_append(f, 16384, false, lanes, 4230.0, timer, rows);  // the 16K candidates
        bench_append(f, 16384, true, 4, 4230.0, timer, rows);
        if (std::string(f) == "turbo3") {
          for (long long n : {16384LL, 1048576LL}) bench_append(f, n, false, 2, 4230.0, timer, rows);  // two lanes
        }
      }
      for (const char* f : {"turbo3"}) {
        bench_decode(f, 16, 65536, prop.multiProcessorCount, false, 4230.0, timer, rows);
        bench_decode(f, 1, 131072, prop.multiProcessorCount, false, 4230.0, timer, rows);
      }
      return 0;
    }
    if (do_check) {
      for (const auto& f : format_table()) {
        if (decode_only) break;
        if (f.scheme != Scheme::LloydMax || f.qjl || !gpu_supports(Codec(f, 128))) continue;
        for (int lanes : {1, 4, 8, 16}) {
          const AppendCheck fast = check_append(std::string(f.name), InputType::F16, rng, lanes, false);
          report(fast.ok(), fast.text);
        }
        for (int lanes : {4, 1}) {
          const AppendCheck c = check_append(std::string(f.name), InputType::F16, rng, lanes, true);
          report(c.ok(), c.text);
        }
      }
      for (const char* f : {"rotor3", "turbo3"}) {
        if (decode_only) break;
        for (int lanes : {1, 4, 8, 16}) {
          const AppendCheck fast = check_append(f, InputType::BF16, rng, lanes, false);
          report(fast.ok(), fast.text);
        }
        for (int lanes : {4, 1}) {
          const AppendCheck c = check_append(f, InputType::BF16, rng, lanes, true);
          report(c.ok(), c.text);
        }
      }
      for (const char* f : {"turbo2", "turbo3", "turbo4", "turbo3_nocorr", "rotor2", "rotor3", "rotor3_nocorr"}) {  // two lanes
        if (decode_only) break;
        for (InputType t : {InputType::F16, InputType::BF16}) {
          const AppendCheck c = check_append(f, t, rng, 2, false);
          report(c.ok(), c.text);
        }
        const AppendCheck c = check_append(f, InputType::F16, rng, 2, false, 3);
        report(c.ok(), c.text);
      }
      for (const char* f : {"rotor3", "turbo3"}) {  // several rounds (one lane: tiles) per block (the last block stops early)
        if (decode_only) break;
        for (int lanes : {1, 4, 8, 16}) {
          const AppendCheck c = check_append(f, InputType::F16, rng, lanes, false, 3);
          report(c.ok(), c.text);
        }
      }
      const std::pair<int, bool> policy_kernels[] = {{1, false}, {2, false}, {4, false}, {8, false}, {16, false}, {4, true}, {1, true}};
      for (const char* f : {"turbo3", "rotor3"}) {
        if (decode_only) break;
        for (const auto& [lanes, exact] : policy_kernels) {
          report(check_append_policy(rng, lanes, exact, f).ok(),
                 std::string("append input policy (") + f + ", " + (exact ? "exact " : "fast ") + std::to_string(lanes) +
                     (lanes == 1 ? " lane" : " lanes") + "): NaN/Inf rows stored as zeros, flag raised, bad dim refused");
        }
      }
      for (bool exact : {true, false}) {
        if (append_only) break;
        for (const char* f : {"rotor3", "turbo3", "planar3", "iso3", "isofull3", "rotor2", "turbo2", "turbo4"}) {
          const DecodeCheck c = check_decode(f, 32, prop.multiProcessorCount, rng, exact);
          report(c.ok(), c.text);
        }
        for (int hq : {8, 16, 64}) {
          const DecodeCheck c = check_decode("rotor3", hq, prop.multiProcessorCount, rng, exact);
          report(c.ok(), c.text);
        }
        for (int page : {16, 256}) {  // a chunk over 4 pages (small-page kernels) / inside a page (24-warp blocks)
          for (const char* f : {"rotor3", "turbo3"}) {
            const DecodeCheck c = check_decode(f, 32, prop.multiProcessorCount, rng, exact,
                                               kMixedBatchLens, 8, page);
            report(c.ok(), c.text);
          }
        }
        for (const char* f : {"rotor3", "turbo3"}) {  // >= 64 splits (tensor cores): the wide merge
          const DecodeCheck c = check_decode(f, 32, prop.multiProcessorCount, rng, exact, {9000, 3});
          report(c.ok(), c.text);
        }
        for (const char* f : {"rotor3", "turbo3"}) {  // one 100K sequence: > 16 partials a head (tensor cores: 512-thread merge)
          const DecodeCheck c = check_decode(f, 32, prop.multiProcessorCount, rng, exact, {100000});
          report(c.ok(), c.text);
        }
        for (const char* f : {"rotor3", "turbo3"}) {  // 16 sequences x 8 KV heads (tensor cores: merged in the last blocks, 24-warp blocks)
          const DecodeCheck c = check_decode(f, 32, prop.multiProcessorCount, rng, exact, kMixedBatchLens);
          report(c.ok(), c.text);
        }
        for (const char* f : {"rotor3", "turbo3"}) {  // one KV head: one long sequence among 63 short or empty ones
          std::vector<int32_t> lens(64, 0);
          lens[5] = 150000;
          for (int i = 10; i < 64; i += 3) lens[i] = i;
          const DecodeCheck c = check_decode(f, 4, prop.multiProcessorCount, rng, exact, lens, 1);
          report(c.ok(), c.text);
        }
      }
      std::printf("correctness: %s (%d failures)\n", g_failures ? "FAIL" : "PASS", g_failures);
    }
    if (do_bench) {
      Timer timer;
      const double copy = copy_bandwidth_gbps(timer);
      std::printf("device copy bandwidth (read + write): %.1f GB/s\n", copy);
      const double floor_us = empty_launch_us(timer);
      std::printf("empty kernel launch between events: %.2f us\n", floor_us);
      std::vector<Row> rows;
      std::vector<std::pair<long long, double>> floors;  // append memory floor (no arithmetic)
      if (!decode_only) {
        for (long long n : {16384LL, 1048576LL}) {
          floors.emplace_back(n, append_floor_us(timer, n, prop.multiProcessorCount));
          std::printf("append memory floor (read 256 B, write 50 B a vector, no arithmetic) n=%8lld  %9.2f us  %7.1f GB/s\n", n,
                      floors.back().second, kFloorBytesPerVector * static_cast<double>(n) / (floors.back().second * 1e3));
        }
      }
      for (const char* f : {"rotor3", "turbo3"}) {
        if (decode_only) break;
        for (long long n : {1024LL, 4096LL, 16384LL, 65536LL, 1048576LL}) bench_append(f, n, false, 0, copy, timer, rows);
        for (long long n : {4096LL, 16384LL, 65536LL})  // every fast lane count where the choice changes
          for (int lanes : {1, 4, 8, 16}) bench_append(f, n, false, lanes, copy, timer, rows);
        for (long long n : {16384LL, 65536LL})
          for (int lanes : {4, 8, 16})
            for (int rounds : {2, 4}) bench_append(f, n, false, lanes, copy, timer, rows, rounds);
        bench_append(f, 1048576, false, 4, copy, timer, rows, 16);  // several lanes at 1M (more warps per SM)
        for (long long n : {65536LL, 1048576LL})  // one lane, one tile per block (before the seventh pass), 4 tiles
          for (int tiles : {1, 4}) bench_append(f, n, false, 1, copy, timer, rows, tiles);
        // two lanes (turbo, and rotor at 2-3 bits since session 17) against one where the choice changes
        for (long long n : {4096LL, 16384LL, 32768LL, 65536LL, 1048576LL}) bench_append(f, n, false, 2, copy, timer, rows);
        if (std::string(f) == "turbo3") bench_append(f, 32768, true, 4, copy, timer, rows);  // the default before session 16
        for (long long n : {131072LL, 262144LL, 524288LL}) {
          bench_append(f, n, false, 1, copy, timer, rows);
          bench_append(f, n, false, 2, copy, timer, rows);
        }
        bench_append(f, 16384, true, 4, copy, timer, rows);    // the exact kernels: the small-step default
        bench_append(f, 1048576, true, 1, copy, timer, rows);  // before this pass, and the large-step one
      }
      const int shapes[][2] = {{1, 4096}, {1, 32768}, {1, 131072}, {8, 32768}, {16, 65536}, {32, 8192}};
      // RQ_DECODE_SHAPES="16x65536,8x32768" (A/B runs): only those decode shapes
      const char* only = std::getenv("RQ_DECODE_SHAPES");
      const auto wanted = [&](const int (&s)[2]) {
        if (!only || !*only) return true;
        const std::string list = std::string(",") + only + ",";
        return list.find("," + std::to_string(s[0]) + "x" + std::to_string(s[1]) + ",") != std::string::npos;
      };
      // RQ_DECODE_PAGE=16 (A/B runs): every decode row on pages of that many tokens (default 64)
      const char* page_env = std::getenv("RQ_DECODE_PAGE");
      const bool page_given = page_env && *page_env;
      const int decode_page = page_given ? std::atoi(page_env) : 64;
      if (decode_page < 1 || decode_page > (1 << 20) || (decode_page & (decode_page - 1)) != 0)
        throw InvalidArgument(std::string("RQ_DECODE_PAGE must be a power of two from 1 to 2^20, not \"") + page_env + "\"");
      for (bool exact : {false, true})
        for (const char* f : {"rotor3", "turbo3"})
          for (const auto& s : shapes)
            if ((!exact || with_exact) && !append_only && wanted(s))
              bench_decode(f, s[0], s[1], prop.multiProcessorCount, exact, copy, timer, rows, decode_page);
      // vLLM's default page of 16 tokens (the small-page kernels) at two shapes, beside the 64-token rows
      for (const char* f : {"rotor3", "turbo3"})
        for (int i : {2, 4})  // (1, 128K), (16, 64K)
          if (!append_only && !page_given && wanted(shapes[i]))
            bench_decode(f, shapes[i][0], shapes[i][1], prop.multiProcessorCount, false, copy, timer, rows, 16);
      if (!json_path.empty()) {
        FILE* fp = std::fopen(json_path.c_str(), "w");
        if (!fp) throw IoError("cannot write " + json_path);
        std::fprintf(fp, "{\"l2_flush\": \"%s\", ", g_clean_flush ? "clean" : "dirty");
        std::fprintf(fp, "\"device\": \"%s\", \"sm_count\": %d, \"copy_gbps\": %.1f, \"empty_launch_us\": %.2f, ",
                     prop.name, prop.multiProcessorCount, copy, floor_us);
        std::fprintf(fp, "\"append_floor_us\": {");
        for (size_t i = 0; i < floors.size(); ++i)
          std::fprintf(fp, "%s\"%lld\": %.3f", i ? ", " : "", floors[i].first, floors[i].second);
        std::fprintf(fp, "}, \"rows\": [\n");
        for (size_t i = 0; i < rows.size(); ++i) {
          const Row& r = rows[i];
          std::fprintf(fp, "  {\"bench\": \"%s\", \"format\": \"%s\", \"kernel\": \"%s\", ", r.bench.c_str(), r.format.c_str(),
                       r.kernel.c_str());
          if (r.bench == "append") {
            std::fprintf(fp, "\"n\": %lld, \"us_stream\": %.3f, \"us_alloc_min\": %.3f, \"us_alloc_max\": %.3f, ", r.n,
                         r.us_stream, r.us_alloc_min, r.us_alloc_max);
          }
          else std::fprintf(fp, "\"batch\": %lld, \"context\": %lld, \"block_warps\": %d, \"page_size\": %d, ", r.batch, r.context,
                            r.block_warps, r.page_size);
          std::fprintf(fp, "\"us_graph\": %.3f, ", r.us_graph);
          std::fprintf(fp, "\"us\": %.3f, \"bytes\": %.0f, \"gbps\": %.1f, \"bw_fraction\": %.4f}%s\n", r.us, r.bytes, r.gbps,
                       r.bw_fraction, i + 1 < rows.size() ? "," : "");
        }
        std::fprintf(fp, "]}\n");
        std::fclose(fp);
      }
    }
  } catch (const std::exception& e) {
    std::printf("FAIL exception: %s\n", e.what());
    return 2;
  }
  return g_failures ? 1 : 0;
}
