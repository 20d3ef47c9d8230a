// Split-KV decode attention over the compressed paged cache (include/rq/cuda/decode.hpp).
#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <cstdlib>

#include <cuda_fp16.h>

#include "kernel_common.cuh"
#include "decode_common.cuh"
#include "dependent_launch.cuh"
#include "rotate_shared.cuh"
#include "rq/core/half.hpp"
#include "rq/cuda/decode.hpp"

namespace rq::cuda {
namespace detail {
bool tc_decode_supported(const DecodeParams& p);
bool tc_fused_merge(const DecodeParams& p);  // whether the tensor-core kernel merges in its last blocks
bool tc_own_queries(const DecodeParams& p);  // whether its blocks rotate their queries (no query launch)
bool tc_single_block(const DecodeParams& p);  // whether one block a pair does it all (no query or merge launch)
// flags: kTcFusedMerge, kTcOwnQueries, kTcSkipLoop (decode_common.cuh).
cudaError_t launch_split_tc(const DecodeParams& p, int flags, cudaStream_t stream);
cudaError_t launch_merge_tc(const DecodeParams& p, cudaStream_t stream);  // merge launch (128 or 512 threads)
int tc_warps_per_sm();                               // warps per SM of the tensor-core kernel
int tc_block_warps(long long heads, long long sms);  // its splits per block for batch x KV heads (12 or 24)
int tc_chunk_tokens();     // tokens per warp iteration of its chunk loop
// RQ_DECODE_VARIANT's diagnostic bits (decode_common.cuh), read once per process; the skip-the-loop
// bit (kDecodeSkipLoop) is set by gpu_check_bench --trace --skip-loop.
int decode_variant() {
  static const int v = [] {
    const char* e = std::getenv("RQ_DECODE_VARIANT");
    return e && *e ? std::atoi(e) : 0;
  }();
  return v;
}
bool decode_skip_loop() { return (decode_variant() & kDecodeSkipLoop) != 0; }
}  // namespace detail

namespace {

using detail::static_for;

constexpr int kThreads = 128;  // 4 warps; one token per thread per tile
constexpr int kTile = kThreads;
using detail::kHeadDim;
using detail::kLog2e;

// Workspace carve-up: q_rot [B][Hq][N], partial_o [B][Hq][splits][N], partial_ml [B][Hq][splits][2]
// (floats), counters [B][Hq] (int; the tensor-core kernel's finished blocks per (sequence, query
// pass), at the pass's first query head; cuda/decode_tc.cu carves the same way).
struct Workspace {
  float* q_rot;
  float* partial_o;
  float* partial_ml;
  int* counters;
};

__host__ __device__ inline Workspace carve(void* base, int batch, int n_q_heads, int n, int max_splits) {
  float* f = static_cast<float*>(base);
  const size_t bh = static_cast<size_t>(batch) * n_q_heads;
  Workspace w;
  w.q_rot = f;
  w.partial_o = f + bh * n;
  w.partial_ml = w.partial_o + bh * max_splits * n;
  w.counters = reinterpret_cast<int*>(w.partial_ml + bh * max_splits * 2);
  return w;
}

// 1. q_rot[b][hq][:] = (scale * log2 e) * Pi_K(kv head) pad(q[b][hq]); counters[b][hq] = 0.
// The head's rotation parameters are read into shared memory with the query (one cold round trip
// instead of one or two more inside rotate_shared).
// packed (the tensor-core kernel; decode thirteenth pass): instead of head hq's 128 floats, its 256
// fp16 halves [hi | lo][j], x_j = q_rot[j] / a_K, hi = fp16(x_j), lo = fp16(x_j - hi): the split
// kernel's B fragments (column 2 q + h: part h of query q), so that its lane (gid, tig) reads its 16
// words as 64 contiguous bytes at half (gid & 1 ? 128 : 0) + 32 tig (before: 32 scalar loads of the fp32 row,
// each warp load over 16 lines, and the split there; 2-3 us per block after the wait).
__global__ void __launch_bounds__(kThreads) prepare_queries_kernel(DecodeParams p, bool packed) {
  __shared__ float buf[kHeadDim], tmp[kHeadDim], s_rot[detail::kMaxRotationFloats];
  detail::trace_point(p.trace, kTraceQueryStart);
  detail::allow_dependents();  // the split kernel may start its prologue now
  const int hq = blockIdx.x, b = blockIdx.y;
  const int d = p.k_codec.dim;
  const int group = p.n_q_heads / p.n_kv_heads;
  const float* q = p.queries + (static_cast<size_t>(b) * p.n_q_heads + hq) * d;
  static_assert(kThreads == kHeadDim, "one coordinate per thread");
  const int n = kHeadDim;  // = rotated_dim (launch_decode_attention)
  const float qv = static_cast<int>(threadIdx.x) < d ? q[threadIdx.x] : 0.0f;  // issued before the parameters' loads
  const detail::StagedRotation rot = detail::stage_rotation(p.k_codec, hq / group, s_rot);
  buf[threadIdx.x] = qv;
  __syncthreads();
  detail::rotate_shared(rot.codec, rot.head, false, buf, tmp, 1, kHeadDim);
  const Workspace ws = carve(p.workspace, p.batch, p.n_q_heads, n, p.plan.max_splits);
  if (threadIdx.x == 0) ws.counters[static_cast<size_t>(b) * p.n_q_heads + hq] = 0;
  float* out = ws.q_rot + (static_cast<size_t>(b) * p.n_q_heads + hq) * n;
  const float s = p.scale * kLog2e;
  if (packed) {
    const int j = threadIdx.x;  // (kThreads == n)
    detail::store_query_halves((buf[j] * s) * (1.0f / p.k_codec.mma_scale), reinterpret_cast<__half*>(out) + j, n);
  } else {
    for (int j = threadIdx.x; j < n; j += blockDim.x) out[j] = buf[j] * s;
  }
  detail::trace_point(p.trace, kTraceQueryEnd);
}

template <int G>
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Loads the codes row `row` (MAIN bytes: the whole row, no tail) into register words.
template <int MAIN>
__device__ __forceinline__ void load_row(const PagedPlanes& pl, size_t row, uint32_t (&w)[MAIN / 4]) {
  const uint4* src = reinterpret_cast<const uint4*>(pl.codes + row * MAIN);
#pragma unroll
  for (int i = 0; i < MAIN / 16; ++i) {
    const uint4 v = __ldg(src + i);
    w[4 * i] = v.x, w[4 * i + 1] = v.y, w[4 * i + 2] = v.z, w[4 * i + 3] = v.w;
  }
}

// 2. One block = (split, kv head, sequence): tokens [split*tps, min(len, (split+1)*tps)).
template <int N, int BITS, int G>
__global__ void __launch_bounds__(kThreads) decode_split_kernel(DecodeParams p) {
  constexpr int LEVELS = 1 << BITS;
  constexpr int MAIN = N * BITS / 8;   // codes row: main bytes only (no tail)
  constexpr int WORDS = MAIN / 4;
  constexpr int CPL = N / 32;          // V coordinates per lane, contiguous: [lane*CPL, lane*CPL+CPL)
  constexpr int VSTRIDE = WORDS + 1;   // one zero word after each row: two-word reads never overrun
  static_assert(N % 32 == 0 && MAIN % 16 == 0, "whole lanes' coordinates, 16-byte rows");

  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int len = p.seq_lens[b];
  const int start = split * p.plan.tokens_per_split;
  if (start >= len) return;
  const int end = min(len, start + p.plan.tokens_per_split);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;

  __shared__ __align__(16) float s_q[N][G];        // rotated, pre-scaled queries of the group
  __shared__ float s_ck[LEVELS], s_cv[LEVELS];
  __shared__ uint32_t s_v[kTile][VSTRIDE];         // V codes rows of the tile
  __shared__ __align__(16) float s_w[kTile][G];    // softmax weight * V norm per token
  __shared__ float s_red[kThreads / 32][G];
  __shared__ float s_acc[kThreads / 32][G][N];

  const Workspace ws = carve(p.workspace, p.batch, p.n_q_heads, N, p.plan.max_splits);
  const float* q_rot = ws.q_rot + (static_cast<size_t>(b) * p.n_q_heads + kvh * G) * N;
  detail::wait_for_prerequisite();  // prepare_queries_kernel's output
  for (int i = tid; i < N * G; i += kThreads) s_q[i % N][i / N] = q_rot[(i / N) * N + i % N];
  if (tid < LEVELS) {
    s_ck[tid] = p.k_codec.centroids[tid];
    s_cv[tid] = p.v_codec.centroids[tid];
  }
  __syncthreads();
  detail::allow_dependents();  // the merge may launch (it waits)

  float m_run[G], l_run[G], acc[G][CPL];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m_run[g] = -INFINITY;
    l_run[g] = 0.0f;
#pragma unroll
    for (int c = 0; c < CPL; ++c) acc[g][c] = 0.0f;
  }
  const int page_size = p.k_geometry.page_size;
  const int32_t* pages = p.page_table + static_cast<size_t>(b) * p.max_pages_per_seq;

  const int page_shift = __ffs(page_size) - 1;  // page_size is a power of two
  // Rows of this thread's token in the current tile; the next tile's rows are loaded one tile
  // ahead (software pipelining) so that their memory latency overlaps this tile's arithmetic.
  uint32_t kw[WORDS], vw[WORDS];
  float nu_k = 0.0f, nu_v = 0.0f;
  auto load_tile = [&](int t0, uint32_t (&kd)[WORDS], uint32_t (&vd)[WORDS], float& nk, float& nv) {
    const int t = t0 + tid;
    if (t < end) {
      const int page = __ldg(pages + (t >> page_shift));
      const int off = t & (page_size - 1);
      const size_t krow = p.k_geometry.row(page, kvh, off);
      const size_t vrow = p.v_geometry.row(page, kvh, off);
      load_row<MAIN>(p.k_planes, krow, kd);
      load_row<MAIN>(p.v_planes, vrow, vd);
      nk = half_to_float(__ldg(p.k_planes.norms + krow));
      nv = half_to_float(__ldg(p.v_planes.norms + vrow));
    } else {
#pragma unroll
      for (int i = 0; i < WORDS; ++i) kd[i] = vd[i] = 0;
      nk = nv = 0.0f;
    }
  };
  load_tile(start, kw, vw, nu_k, nu_v);

  for (int t0 = start; t0 < end; t0 += kTile) {
    const int t = t0 + tid;
    const bool valid = t < end;
#pragma unroll
    for (int i = 0; i < WORDS; ++i) s_v[tid][i] = vw[i];
    s_v[tid][WORDS] = 0;
    uint32_t kw_next[WORDS], vw_next[WORDS];
    float nu_k_next = 0.0f, nu_v_next = 0.0f;
    load_tile(t0 + kTile, kw_next, vw_next, nu_k_next, nu_v_next);

    // Scores: s_g = nu_k * <q_rot_g, C[idx]> (already in log2 units).
    float s[G];
#pragma unroll
    for (int g = 0; g < G; ++g) s[g] = 0.0f;
    static_for<0, N>([&](auto jc) {
      constexpr int J = decltype(jc)::value;
      const float c = s_ck[detail::unpack_word_code<BITS, J>(kw)];
      if constexpr (G == 4) {
        const float4 q = *reinterpret_cast<const float4*>(&s_q[J][0]);
        s[0] = fmaf(q.x, c, s[0]);
        s[1] = fmaf(q.y, c, s[1]);
        s[2] = fmaf(q.z, c, s[2]);
        s[3] = fmaf(q.w, c, s[3]);
      } else {
#pragma unroll
        for (int g = 0; g < G; ++g) s[g] = fmaf(s_q[J][g], c, s[g]);
      }
    });
    float m_new[G];
#pragma unroll
    for (int g = 0; g < G; ++g) {
      s[g] = valid ? s[g] * nu_k : -INFINITY;
      const float wm = warp_max<G>(s[g]);
      if (lane == 0) s_red[warp][g] = wm;
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < G; ++g) {
      float mt = s_red[0][g];
#pragma unroll
      for (int w = 1; w < kThreads / 32; ++w) mt = fmaxf(mt, s_red[w][g]);
      m_new[g] = fmaxf(m_run[g], mt);  // finite: thread 0 of every tile is a valid token
      const float alpha = exp2f(m_run[g] - m_new[g]);
      const float pw = valid ? exp2f(s[g] - m_new[g]) : 0.0f;
      l_run[g] = l_run[g] * alpha + pw;
      s_w[tid][g] = pw * nu_v;
#pragma unroll
      for (int c = 0; c < CPL; ++c) acc[g][c] *= alpha;
      m_run[g] = m_new[g];
    }
    __syncthreads();

    // Values: warp w takes the tile's tokens [32w, 32w+32); lane owns CPL coordinates.
    const int n_tile = min(kTile, end - t0);
    const int i_end = min(32 * warp + 32, n_tile);
    const int bit0 = lane * CPL * BITS;
    const int wi = bit0 >> 5, sh = bit0 & 31;
    for (int i = 32 * warp; i < i_end; ++i) {
      float w[G];
      if constexpr (G == 4) {
        const float4 v = *reinterpret_cast<const float4*>(&s_w[i][0]);
        w[0] = v.x, w[1] = v.y, w[2] = v.z, w[3] = v.w;
      } else {
#pragma unroll
        for (int g = 0; g < G; ++g) w[g] = s_w[i][g];
      }
      const uint32_t bits = __funnelshift_r(s_v[i][wi], s_v[i][wi + 1], sh);
#pragma unroll
      for (int c = 0; c < CPL; ++c) {
        const float cv = s_cv[(bits >> (c * BITS)) & (LEVELS - 1)];
#pragma unroll
        for (int g = 0; g < G; ++g) acc[g][c] = fmaf(w[g], cv, acc[g][c]);
      }
    }
    __syncthreads();  // s_v, s_w, s_red are rewritten by the next tile
#pragma unroll
    for (int i = 0; i < WORDS; ++i) kw[i] = kw_next[i], vw[i] = vw_next[i];
    nu_k = nu_k_next;
    nu_v = nu_v_next;
  }

  // Reduce the four warps' accumulators and the thread-partial softmax sums; write the partial.
#pragma unroll
  for (int g = 0; g < G; ++g) {
#pragma unroll
    for (int c = 0; c < CPL; ++c) s_acc[warp][g][lane * CPL + c] = acc[g][c];
    const float ls = warp_sum(l_run[g]);
    if (lane == 0) s_red[warp][g] = ls;
  }
  __syncthreads();
  const size_t bh0 = static_cast<size_t>(b) * p.n_q_heads + kvh * G;
  for (int i = tid; i < G * N; i += kThreads) {
    const int g = i / N, j = i % N;
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) o += s_acc[w][g][j];
    ws.partial_o[((bh0 + g) * p.plan.max_splits + split) * N + j] = o;
  }
  if (tid < G) {
    float l = 0.0f;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) l += s_red[w][tid];
    float* ml = ws.partial_ml + ((bh0 + tid) * p.plan.max_splits + split) * 2;
    ml[0] = m_run[tid];
    ml[1] = l;
  }
}

// One (query head, sequence) block of a merge kernel: where its partials are and where its output
// row goes. An empty sequence gets a zero output row here (splits = 0).
struct MergeHead {
  int n = 0, splits = 0;
  const float* ml = nullptr;  // splits x (m, l)
  const float* po = nullptr;  // splits x n partial outputs
  float* out = nullptr;       // head_dim floats
};

// The exact kernel's merges: one partial per split (the tensor-core kernel merges in its last blocks
// or launches merge_tc_kernel, cuda/decode_tc.cu).
__device__ MergeHead merge_head(const DecodeParams& p) {
  detail::wait_for_prerequisite();  // the split kernel's partials
  MergeHead h;
  const int hq = blockIdx.x, b = blockIdx.y;
  const int d = p.v_codec.dim;
  h.n = p.v_codec.rotated_dim;
  h.out = p.out + (static_cast<size_t>(b) * p.n_q_heads + hq) * d;
  const int len = p.seq_lens[b];
  if (len <= 0) {
    for (int j = threadIdx.x; j < d; j += blockDim.x) h.out[j] = 0.0f;
    return h;
  }
  h.splits = (len + p.plan.tokens_per_split - 1) / p.plan.tokens_per_split;  // partials
  const Workspace ws = carve(p.workspace, p.batch, p.n_q_heads, h.n, p.plan.max_splits);
  const size_t bh = static_cast<size_t>(b) * p.n_q_heads + hq;
  h.ml = ws.partial_ml + bh * p.plan.max_splits * 2;
  h.po = ws.partial_o + bh * p.plan.max_splits * h.n;
  return h;
}

// buf: the merged row in V's rotated domain (shared); un-rotates it once and writes the output row.
// rot: V's rotation of the block's KV head (detail::stage_rotation, before the wait).
__device__ void merge_finish(const DecodeParams& p, const MergeHead& h, const detail::StagedRotation& rot, float* buf,
                             float* tmp) {
  detail::rotate_shared(rot.codec, rot.head, true, buf, tmp, 1, kHeadDim);
  for (int j = threadIdx.x; j < p.v_codec.dim; j += blockDim.x) h.out[j] = buf[j];
}

// 3. out[b][hq] = Pi_V^T (sum_s 2^(m_s - M) o_s) / (sum_s 2^(m_s - M) l_s).
__global__ void __launch_bounds__(kThreads) merge_kernel(DecodeParams p) {
  __shared__ float buf[kHeadDim], tmp[kHeadDim], s_scale[1024], s_rot[detail::kMaxRotationFloats];
  __shared__ float s_norm;
  const detail::StagedRotation rot =  // (cold reads, while the split kernel runs)
      detail::stage_rotation(p.v_codec, blockIdx.x / (p.n_q_heads / p.n_kv_heads), s_rot);
  const MergeHead h = merge_head(p);  // waits for the split kernel's partials
  if (h.splits == 0) return;
  const int n = h.n, splits = h.splits;
  const float* ml = h.ml;
  if (threadIdx.x == 0) {
    float mx = -INFINITY;
    for (int s = 0; s < splits; ++s) mx = fmaxf(mx, ml[2 * s]);
    float l = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float f = exp2f(ml[2 * s] - mx);
      if (s < 1024) s_scale[s] = f;
      l += f * ml[2 * s + 1];
    }
    s_norm = 1.0f / l;
  }
  __syncthreads();
  const float* po = h.po;
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float o = 0.0f;
#pragma unroll 4
    for (int s = 0; s < splits; ++s) o += s_scale[s] * po[static_cast<size_t>(s) * n + j];
    buf[j] = o * s_norm;
  }
  __syncthreads();
  merge_finish(p, h, rot, buf, tmp);
}

// 3b. The same merge for many splits (max_splits >= kWideMergeSplits: long sequences at small
// batch): one block of kMergeThreads per (query head, sequence); the splits are spread over all
// threads (max and sum by block reductions; kMergeGroups groups of splits per coordinate), so
// hundreds of splits are not read by one thread's serial loop. With few splits the 1024-thread
// blocks cost more than they save (measured: (32, 8K) 136 -> 162 us), so merge_kernel stays there.
constexpr int kMergeThreads = 1024;
constexpr int kMergeGroups = kMergeThreads / 128;
constexpr int kWideMergeSplits = 64;

__device__ __forceinline__ float block_reduce(float v, bool is_max, float* s_red) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, u) : v + u;
  }
  if (lane == 0) s_red[warp] = v;
  __syncthreads();
  float r = s_red[0];
  for (int w = 1; w < warps; ++w) r = is_max ? fmaxf(r, s_red[w]) : r + s_red[w];
  __syncthreads();  // s_red is reused by the next reduction
  return r;
}

__global__ void __launch_bounds__(kMergeThreads) merge_wide_kernel(DecodeParams p) {
  __shared__ float buf[kHeadDim], tmp[kHeadDim], s_scale[1024], s_rot[detail::kMaxRotationFloats];
  __shared__ float s_part[kMergeGroups][kHeadDim];
  __shared__ float s_red[kMergeThreads / 32];
  const detail::StagedRotation rot =  // (cold reads, while the split kernel runs)
      detail::stage_rotation(p.v_codec, blockIdx.x / (p.n_q_heads / p.n_kv_heads), s_rot);
  const MergeHead h = merge_head(p);  // waits for the split kernel's partials
  if (h.splits == 0) return;
  const int n = h.n, splits = h.splits;
  const float* ml = h.ml;
  float mx = -INFINITY;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) mx = fmaxf(mx, ml[2 * s]);
  mx = block_reduce(mx, true, s_red);
  float l = 0.0f;
  for (int s = threadIdx.x; s < splits; s += blockDim.x) {
    const float f = exp2f(ml[2 * s] - mx);
    s_scale[s] = f;
    l += f * ml[2 * s + 1];
  }
  const float inv_l = 1.0f / block_reduce(l, false, s_red);  // also orders the s_scale writes
  const float* po = h.po;
  const int g = threadIdx.x / 128;
  for (int j = threadIdx.x % 128; j < n; j += 128) {
    float o = 0.0f;
#pragma unroll 4
    for (int s = g; s < splits; s += kMergeGroups) o += s_scale[s] * po[static_cast<size_t>(s) * n + j];
    s_part[g][j] = o;
  }
  __syncthreads();
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float o = 0.0f;
#pragma unroll
    for (int k = 0; k < kMergeGroups; ++k) o += s_part[k][j];
    buf[j] = o * inv_l;
  }
  __syncthreads();
  merge_finish(p, h, rot, buf, tmp);
}

template <int N, int BITS>
cudaError_t launch_split_g(const DecodeParams& p, dim3 grid, cudaStream_t stream) {
  switch (p.n_q_heads / p.n_kv_heads) {
    case 1: return detail::launch_dependent(decode_split_kernel<N, BITS, 1>, grid, dim3(kThreads), 0, stream, p);
    case 2: return detail::launch_dependent(decode_split_kernel<N, BITS, 2>, grid, dim3(kThreads), 0, stream, p);
    case 4: return detail::launch_dependent(decode_split_kernel<N, BITS, 4>, grid, dim3(kThreads), 0, stream, p);
    case 8: return detail::launch_dependent(decode_split_kernel<N, BITS, 8>, grid, dim3(kThreads), 0, stream, p);
    default: return cudaErrorInvalidValue;
  }
}

template <int N>
cudaError_t launch_split_bits(const DecodeParams& p, dim3 grid, cudaStream_t stream) {
  switch (p.k_codec.bits) {
    case 2: return launch_split_g<N, 2>(p, grid, stream);
    case 3: return launch_split_g<N, 3>(p, grid, stream);
    case 4: return launch_split_g<N, 4>(p, grid, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

DecodePlan plan_decode(int batch, int max_seq_len, int n_kv_heads, int sm_count, bool exact) {
  DecodePlan plan;
  const long long heads = static_cast<long long>(batch > 0 ? batch : 1) * (n_kv_heads > 0 ? n_kv_heads : 1);
  const long long sms = sm_count > 0 ? sm_count : 132;
  // exact: 8 blocks of 128 threads per SM. Tensor cores: blocks of W splits (warps), 24 / W blocks
  // per SM: round the splits per head down to a multiple of W so that the grid is at most one
  // full wave (e.g. 128 heads x 24 splits = 128 blocks of 24 warps on 132 SMs; 8 heads x 396
  // splits = 264 blocks of 12 at batch 1). The tensor-core kernel spreads a sequence's 64-token chunks
  // evenly over its splits, so its tokens_per_split is not rounded to whole chunks (rounding 331
  // up to 384 at (1, 128K) left 342 splits = 232 blocks, 6 chunks on every warp).
  const long long w = detail::tc_block_warps(heads, sms);
  long long splits;
  if (exact) {
    splits = (8 * sms + heads - 1) / heads;
  } else {
    const long long target = detail::tc_warps_per_sm() * sms;
    splits = std::max(w, target / (w * heads) * w);
    plan.block_warps = static_cast<int32_t>(w);
  }
  const long long len = max_seq_len > 0 ? max_seq_len : 1;
  const long long unit = exact ? 256 : 1;  // two 128-token tiles / any
  long long tps = (len + splits - 1) / splits;
  // Tensor cores: at least two 64-token chunks per split, or one where one chunk per split
  // fits in the wave: batch 1 x 4K ran 15.3 us instead of 18.5 (docs/gpu.md, "Session 14"); at
  // 1 x 32K, 83 tokens per split (1-2 chunks) were 0.3-1 us slower than 128.
  const long long chunk = detail::tc_chunk_tokens();
  const long long min_tc = (len + chunk - 1) / chunk <= splits ? chunk : 2 * chunk;
  tps = std::max(((tps + unit - 1) / unit) * unit, exact ? 2 * unit : min_tc);
  const long long min_tps = ((len + 1023) / 1024 + unit - 1) / unit * unit;  // at most 1024 splits (merge)
  tps = std::max(tps, min_tps);
  plan.tokens_per_split = static_cast<int32_t>(tps);
  plan.max_splits = static_cast<int32_t>((len + tps - 1) / tps);
  return plan;
}

size_t decode_workspace_bytes(int batch, int n_q_heads, int rotated_dim, const DecodePlan& plan) {
  const size_t bh = static_cast<size_t>(batch) * n_q_heads;
  return sizeof(float) * (bh * rotated_dim + bh * plan.max_splits * (rotated_dim + 2)) + sizeof(int) * bh;
}

bool tensor_core_decode(const DecodeParams& p) { return !p.exact && detail::tc_decode_supported(p); }

cudaError_t launch_decode_attention(const DecodeParams& p, cudaStream_t stream) {
  if (p.batch <= 0) return cudaSuccess;
  const DeviceCodec& k = p.k_codec;
  const DeviceCodec& v = p.v_codec;
  // The kernels are built for head_dim 128, where every GPU format stores 128 coordinates in whole
  // 16-byte units: a codes row is its main part (row_tail_bytes = 0).
  if (p.n_kv_heads <= 0 || p.n_q_heads % p.n_kv_heads != 0 || !p.queries || !p.out || !p.seq_lens ||
      !p.page_table || !p.workspace || p.plan.tokens_per_split <= 0 || p.plan.max_splits <= 0 ||
      p.plan.max_splits > 1024 || (p.plan.block_warps != 0 && p.plan.block_warps != 12 && p.plan.block_warps != 24) ||
      k.dim != v.dim || k.bits != v.bits || k.rotated_dim != v.rotated_dim ||
      k.rotated_dim != kHeadDim || k.dim != kHeadDim || p.k_geometry.page_size != p.v_geometry.page_size ||
      p.k_geometry.page_size <= 0 || (p.k_geometry.page_size & (p.k_geometry.page_size - 1)) != 0 ||
      static_cast<int64_t>(p.n_kv_heads) * p.k_geometry.page_size >= (int64_t{1} << 31) ||  // a page's rows: 32-bit
      p.k_geometry.n_kv_heads != p.n_kv_heads || p.v_geometry.n_kv_heads != p.n_kv_heads ||
      p.k_geometry.row_main_bytes != k.payload_bytes || p.k_geometry.row_tail_bytes != 0 ||
      p.v_geometry.row_main_bytes != v.payload_bytes || p.v_geometry.row_tail_bytes != 0) {
    return cudaErrorInvalidValue;
  }
  // Three launches: query rotation, split, merge; the second and third are programmatic dependent
  // launches: each may start while the previous one runs and waits (griddepcontrol.wait) only where
  // it reads its output. The tensor-core kernel makes it two: with 64 or more (sequence, query pass)
  // pairs (detail::tc_fused_merge) its last blocks merge; with fewer its blocks rotate their own
  // queries (detail::tc_own_queries) and it is the first launch. Where every pair's splits fit one
  // block (detail::tc_single_block: (16, 64K), (32, 8K)) it is the only launch: each block rotates its
  // queries and writes its output rows (session 21).
  const bool tc = tensor_core_decode(p), single = tc && detail::tc_single_block(p);
  const bool fused = tc && !single && detail::tc_fused_merge(p);
  const bool own = tc && !fused && (single || detail::tc_own_queries(p));
  cudaError_t st = cudaSuccess;
  if (!own) {
    prepare_queries_kernel<<<dim3(p.n_q_heads, p.batch), kThreads, 0, stream>>>(p, tc);
    st = cudaGetLastError();
    if (st != cudaSuccess) return st;
  }
  const dim3 grid(p.plan.max_splits, p.n_kv_heads, p.batch);
  const int tc_flags = (fused ? detail::kTcFusedMerge : 0) | (own ? detail::kTcOwnQueries : 0) |
                       (single ? detail::kTcSingleBlock : 0) | (detail::decode_skip_loop() ? detail::kTcSkipLoop : 0);
  st = tc ? detail::launch_split_tc(p, tc_flags, stream) : launch_split_bits<kHeadDim>(p, grid, stream);
  if (st != cudaSuccess || fused || single) return st;  // merged by the split kernel's last blocks / blocks
  if (tc) return detail::launch_merge_tc(p, stream);  // small merge launch (decode tenth / thirteenth pass)
  const dim3 merge_grid(p.n_q_heads, p.batch);
  return p.plan.max_splits >= kWideMergeSplits
             ? detail::launch_dependent(merge_wide_kernel, merge_grid, dim3(kMergeThreads), 0, stream, p)
             : detail::launch_dependent(merge_kernel, merge_grid, dim3(kThreads), 0, stream, p);
}

}  // namespace rq::cuda
