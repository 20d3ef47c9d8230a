// Tensor-core split-KV decode (include/rq/cuda/decode.hpp, DecodeParams::exact == 0).
//
// One warp = one split. Per chunk of 64 tokens:
//   K: S^T[token][query] = C[idx_K] (16 tokens x 16 coords, fp16, from a shared-memory table of
//      code pairs) x q_rot (16 coords x 8 queries) with mma.m16n8k16, the query split into fp16
//      hi + lo parts (two MMAs) so only the centroids are rounded to fp16;
//   online softmax per query in the accumulator layout;
//   V: O^T[coord][query] += C[idx_V]^T (16 coords x 16 tokens) x (p * nu_v) (16 tokens x 8
//      queries), weights split hi + lo; code pairs are transposed to token pairs with PRMT.
// Coordinates are permuted freely inside the MMAs (the dot products do not care); each lane reads
// a contiguous slice of every code row. Rotor's 129th coordinate is a 9th, mostly empty, step.
#include <cuda_fp16.h>

#include "kernel_common.cuh"
#include "rq/core/half.hpp"
#include "rq/cuda/decode.hpp"

namespace rq::cuda {
namespace detail {

namespace {

using detail::static_for;

constexpr int kWarps = 4;
constexpr int kChunk = 64;     // tokens per warp iteration
constexpr int kWStride = 12;   // floats per token row of the weight tile (bank-conflict free)

__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// hi + lo fp16 parts of two floats: hi = fp16(x), lo = fp16(x - hi).
__device__ __forceinline__ void split_half2(float x0, float x1, uint32_t& hi, uint32_t& lo) {
  const float h0 = __half2float(__float2half_rn(x0)), h1 = __half2float(__float2half_rn(x1));
  hi = pack_half2(h0, h1);
  lo = pack_half2(x0 - h0, x1 - h1);
}

// Bits [bit, bit + W) of a little-endian word array, W <= 32, compile-time position.
template <int BIT, int W, int WORDS>
__device__ __forceinline__ uint32_t field(const uint32_t (&w)[WORDS]) {
  constexpr int kWord = BIT >> 5, kShift = BIT & 31;
  uint32_t v = w[kWord] >> kShift;
  if constexpr (kShift + W > 32) v |= w[kWord + 1] << (32 - kShift);
  return W == 32 ? v : (v & ((1u << W) - 1u));
}

template <int N, int BITS>
__global__ void __launch_bounds__(kWarps * 32) decode_split_tc_kernel(DecodeParams p) {
  constexpr int PAYLOAD = (N * BITS + 7) / 8;
  constexpr int MAIN = PAYLOAD / 16 * 16;
  constexpr int TAIL = PAYLOAD - MAIN;
  constexpr int PAIRS = 1 << (2 * BITS);  // table entries: two codes
  constexpr int KSTEPS = 8 + (N > 128 ? 1 : 0);
  constexpr int KW = BITS;                // words of a lane's K slice: 32 coords x BITS bits
  static_assert(N == 128 || N == 129, "tensor-core decode: 128 coordinates (+ rotor's pad)");
  static_assert(MAIN == 16 * BITS, "main row = 128 coordinates");

  __shared__ uint32_t s_lut_k[PAIRS][32], s_lut_v[PAIRS][32];  // per-lane copies: no bank conflicts
  __shared__ float s_cv[1 << BITS];
  __shared__ float s_w[kWarps][kChunk][kWStride];                 // p * nu_v per token, query

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  for (int i = threadIdx.x; i < PAIRS * 32; i += blockDim.x) {
    const int f = i / 32;
    const int i0 = f & ((1 << BITS) - 1), i1 = f >> BITS;
    s_lut_k[f][i % 32] = pack_half2(p.k_codec.centroids[i0], p.k_codec.centroids[i1]);
    s_lut_v[f][i % 32] = pack_half2(p.v_codec.centroids[i0], p.v_codec.centroids[i1]);
  }
  if (threadIdx.x < (1 << BITS)) s_cv[threadIdx.x] = p.v_codec.centroids[threadIdx.x];
  __syncthreads();

  const int split = blockIdx.x * kWarps + warp, kvh = blockIdx.y, b = blockIdx.z;
  const int len = p.seq_lens[b];
  const int start = split * p.plan.tokens_per_split;
  if (start >= len) return;
  const int end = min(len, start + p.plan.tokens_per_split);
  const int group = p.n_q_heads / p.n_kv_heads;

  // Query B fragments for all k-steps: lane holds query `gid`, coordinates of slice `tig`.
  uint32_t qhi[KSTEPS][2], qlo[KSTEPS][2];
  {
    const float* ws = static_cast<const float*>(p.workspace);
    const float* q = ws + (static_cast<size_t>(b) * p.n_q_heads + kvh * group + gid) * N;
    const bool real = gid < group;
#pragma unroll
    for (int s = 0; s < 8; ++s) {
      const int c = 32 * tig + 4 * s;
      float v[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) v[k] = real ? q[c + k] : 0.0f;
      split_half2(v[0], v[1], qhi[s][0], qlo[s][0]);
      split_half2(v[2], v[3], qhi[s][1], qlo[s][1]);
    }
    if constexpr (KSTEPS > 8) {
      const float v = (real && tig == 0) ? q[128] : 0.0f;
      split_half2(v, 0.0f, qhi[8][0], qlo[8][0]);
      qhi[8][1] = qlo[8][1] = 0u;
    }
  }

  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
  float acc[KSTEPS][4];
#pragma unroll
  for (int m = 0; m < KSTEPS; ++m) acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = 0.0f;

  const int page_shift = __ffs(p.k_geometry.page_size) - 1;  // page_size is a power of two
  const int page_mask = p.k_geometry.page_size - 1;
  const int32_t* pages = p.page_table + static_cast<size_t>(b) * p.max_pages_per_seq;
  auto row_of = [&](const PagedGeometry& g, int t) { return g.row(__ldg(pages + (t >> page_shift)), kvh, t & page_mask); };
  float (*sw)[kWStride] = s_w[warp];

  for (int t0 = start; t0 < end; t0 += kChunk) {
    // ---- K: scores of 4 blocks of 16 tokens; lane: tokens gid, gid + 8; queries 2 tig, 2 tig + 1.
    float s[4][4];
    float nu_v[4][2];
#pragma unroll
    for (int mb = 0; mb < 4; ++mb) {
      uint32_t kw[2][KW];
      uint32_t tail[2] = {0u, 0u};
      float nu_k[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int t = t0 + 16 * mb + gid + 8 * h;
        if (t < end) {
          const size_t kr = row_of(p.k_geometry, t);
          const uint32_t* src = reinterpret_cast<const uint32_t*>(p.k_planes.codes + kr * MAIN) + KW * tig;
#pragma unroll
          for (int i = 0; i < KW; ++i) kw[h][i] = __ldg(src + i);
          if constexpr (TAIL > 0) tail[h] = __ldg(p.k_planes.tail + kr * TAIL);
          nu_k[h] = half_to_float(p.k_planes.norms[kr]);
          nu_v[mb][h] = half_to_float(p.v_planes.norms[row_of(p.v_geometry, t)]);
        } else {
#pragma unroll
          for (int i = 0; i < KW; ++i) kw[h][i] = 0u;
          nu_k[h] = -INFINITY;  // marks the token invalid
          nu_v[mb][h] = 0.0f;
        }
      }
      float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      static_for<0, 8>([&](auto sc) {
        constexpr int S = decltype(sc)::value;
        uint32_t a[4];
        a[0] = s_lut_k[field<(4 * S) * BITS, 2 * BITS>(kw[0])][lane];
        a[1] = s_lut_k[field<(4 * S) * BITS, 2 * BITS>(kw[1])][lane];
        a[2] = s_lut_k[field<(4 * S + 2) * BITS, 2 * BITS>(kw[0])][lane];
        a[3] = s_lut_k[field<(4 * S + 2) * BITS, 2 * BITS>(kw[1])][lane];
        mma16816(d, a, qhi[S][0], qhi[S][1]);
        mma16816(d, a, qlo[S][0], qlo[S][1]);
      });
      if constexpr (KSTEPS > 8) {
        uint32_t a[4];
        a[0] = s_lut_k[tail[0] & ((1u << BITS) - 1u)][lane];
        a[1] = s_lut_k[tail[1] & ((1u << BITS) - 1u)][lane];
        a[2] = a[3] = 0u;
        mma16816(d, a, qhi[8][0], qhi[8][1]);
        mma16816(d, a, qlo[8][0], qlo[8][1]);
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const bool ok = nu_k[h] != -INFINITY;
        s[mb][2 * h] = ok ? d[2 * h] * nu_k[h] : -INFINITY;
        s[mb][2 * h + 1] = ok ? d[2 * h + 1] * nu_k[h] : -INFINITY;
      }
    }
    // ---- online softmax per query (lane's queries 2 tig + c); max over the warp's 64 tokens.
    float alpha[2];
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      float mx = -INFINITY;
#pragma unroll
      for (int mb = 0; mb < 4; ++mb) mx = fmaxf(mx, fmaxf(s[mb][c], s[mb][2 + c]));
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_new = fmaxf(m_run[c], mx);  // finite: token t0 is valid
      alpha[c] = exp2f(m_run[c] - m_new);
      m_run[c] = m_new;
      float lsum = 0.0f;
#pragma unroll
      for (int mb = 0; mb < 4; ++mb) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float pw = exp2f(s[mb][2 * h + c] - m_new);
          lsum += pw;
          s[mb][2 * h + c] = pw * nu_v[mb][h];
        }
      }
      l_run[c] = l_run[c] * alpha[c] + lsum;
    }
#pragma unroll
    for (int mb = 0; mb < 4; ++mb) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        *reinterpret_cast<float2*>(&sw[16 * mb + gid + 8 * h][2 * tig]) = make_float2(s[mb][2 * h], s[mb][2 * h + 1]);
      }
    }
#pragma unroll
    for (int m = 0; m < KSTEPS; ++m) {
      acc[m][0] *= alpha[0];
      acc[m][1] *= alpha[1];
      acc[m][2] *= alpha[0];
      acc[m][3] *= alpha[1];
    }
    __syncwarp();

    // ---- V: 4 k-steps of 16 tokens; lane: tokens 2 tig, 2 tig + 1, 2 tig + 8, 2 tig + 9;
    //      coordinates 16 gid + 2 m (row gid) and 16 gid + 2 m + 1 (row gid + 8) of M-tile m.
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      uint32_t vbits[4][2];
      uint32_t vtail[4] = {0u, 0u, 0u, 0u};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int tl = 16 * ks + 2 * tig + (k & 1) + 8 * (k >> 1);
        const int t = t0 + tl;
        if (t < end) {
          const size_t vr = row_of(p.v_geometry, t);
          const uint32_t* src = reinterpret_cast<const uint32_t*>(p.v_planes.codes + vr * MAIN);
          const int bit0 = 16 * BITS * gid;
          vbits[k][0] = __ldg(src + (bit0 >> 5));
          vbits[k][1] = (bit0 >> 5) + 1 < MAIN / 4 ? __ldg(src + (bit0 >> 5) + 1) : 0u;
          vbits[k][0] = __funnelshift_r(vbits[k][0], vbits[k][1], bit0 & 31);
          vbits[k][1] = vbits[k][1] >> (bit0 & 31);
          if constexpr (TAIL > 0) vtail[k] = __ldg(p.v_planes.tail + vr * TAIL);
        } else {
          vbits[k][0] = vbits[k][1] = 0u;
        }
      }
      // weights: B fragment (tokens 2 tig, 2 tig + 1 | 2 tig + 8, 2 tig + 9) x query gid
      const float w0 = sw[16 * ks + 2 * tig][gid], w1 = sw[16 * ks + 2 * tig + 1][gid];
      const float w2 = sw[16 * ks + 2 * tig + 8][gid], w3 = sw[16 * ks + 2 * tig + 9][gid];
      uint32_t bhi[2], blo[2];
      split_half2(w0, w1, bhi[0], blo[0]);
      split_half2(w2, w3, bhi[1], blo[1]);
      static_for<0, 8>([&](auto mc) {
        constexpr int M = decltype(mc)::value;
        constexpr int BIT = 2 * BITS * M;  // pair M of the lane's 16 coordinates
        uint32_t l[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const uint32_t v64lo = vbits[k][0], v64hi = vbits[k][1];
          uint32_t f;
          if constexpr (BIT + 2 * BITS <= 32) f = (v64lo >> BIT) & ((1u << (2 * BITS)) - 1u);
          else if constexpr (BIT >= 32) f = (v64hi >> (BIT - 32)) & ((1u << (2 * BITS)) - 1u);
          else f = __funnelshift_r(v64lo, v64hi, BIT) & ((1u << (2 * BITS)) - 1u);
          l[k] = s_lut_v[f][lane];
        }
        uint32_t a[4];
        a[0] = __byte_perm(l[0], l[1], 0x5410);  // coord c0, tokens 2 tig, 2 tig + 1
        a[1] = __byte_perm(l[0], l[1], 0x7632);  // coord c1
        a[2] = __byte_perm(l[2], l[3], 0x5410);  // coord c0, tokens 2 tig + 8, 2 tig + 9
        a[3] = __byte_perm(l[2], l[3], 0x7632);
        mma16816(acc[M], a, bhi[0], bhi[1]);
        mma16816(acc[M], a, blo[0], blo[1]);
      });
      if constexpr (KSTEPS > 8) {  // coordinate 128 as row 0 of a 9th M-tile
        uint32_t l[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) l[k] = s_lut_v[vtail[k] & ((1u << BITS) - 1u)][lane];
        uint32_t a[4];
        a[0] = __byte_perm(l[0], l[1], 0x5410);
        a[1] = 0u;
        a[2] = __byte_perm(l[2], l[3], 0x5410);
        a[3] = 0u;
        mma16816(acc[8], a, bhi[0], bhi[1]);
        mma16816(acc[8], a, blo[0], blo[1]);
      }
    }
    __syncwarp();  // s_w is rewritten by the next chunk
  }

  // ---- partial result of this split: o[query][coord] (queries < group), m, l.
  float* ws = static_cast<float*>(p.workspace);
  const size_t bh_count = static_cast<size_t>(p.batch) * p.n_q_heads;
  float* partial_o = ws + bh_count * N;
  float* partial_ml = partial_o + bh_count * p.plan.max_splits * N;
#pragma unroll
  for (int c = 0; c < 2; ++c) {
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) l_run[c] += __shfl_xor_sync(0xffffffffu, l_run[c], o);
  }
  const size_t bh0 = static_cast<size_t>(b) * p.n_q_heads + kvh * group;
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    const int qi = 2 * tig + c;
    if (qi >= group) continue;
    float* o = partial_o + ((bh0 + qi) * p.plan.max_splits + split) * N;
#pragma unroll
    for (int m = 0; m < 8; ++m) {
      o[16 * gid + 2 * m] = acc[m][c];
      o[16 * gid + 2 * m + 1] = acc[m][2 + c];
    }
    if constexpr (KSTEPS > 8) {
      if (gid == 0) o[128] = acc[8][c];
    }
    if (gid == 0) {
      float* ml = partial_ml + ((bh0 + qi) * p.plan.max_splits + split) * 2;
      ml[0] = m_run[c];
      ml[1] = l_run[c];
    }
  }
}

template <int N>
cudaError_t launch_tc_bits(const DecodeParams& p, cudaStream_t stream) {
  const dim3 grid((p.plan.max_splits + kWarps - 1) / kWarps, p.n_kv_heads, p.batch);
  switch (p.k_codec.bits) {
    case 2: decode_split_tc_kernel<N, 2><<<grid, kWarps * 32, 0, stream>>>(p); break;
    case 3: decode_split_tc_kernel<N, 3><<<grid, kWarps * 32, 0, stream>>>(p); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

bool tc_decode_supported(const DecodeParams& p) {
  const int group = p.n_kv_heads > 0 ? p.n_q_heads / p.n_kv_heads : 0;
  return (p.k_codec.bits == 2 || p.k_codec.bits == 3) && (p.k_codec.rotated_dim == 128 || p.k_codec.rotated_dim == 129) &&
         group >= 1 && group <= 8;
}

cudaError_t launch_split_tc(const DecodeParams& p, cudaStream_t stream) {
  switch (p.k_codec.rotated_dim) {
    case 128: return launch_tc_bits<128>(p, stream);
    case 129: return launch_tc_bits<129>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace detail
}  // namespace rq::cuda
