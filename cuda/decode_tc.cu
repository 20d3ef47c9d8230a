// Tensor-core split-KV decode (include/rq/cuda/decode.hpp, DecodeParams::exact == 0).
//
// One warp = one split. Per chunk of 64 tokens:
//   K: S^T[token][query] = C[idx_K] (16 tokens x 16 coords, fp16, from a shared-memory table of
//      code pairs) x q_rot (16 coords x 8 queries) with mma.m16n8k16, the query split into fp16
//      hi + lo parts and the centroids too (three MMAs: hi hi, hi lo, lo hi), so scores are
//      near fp32 (an fp16-only K table, even scaled as V's below, gave 3e-4 .. 1.1e-3 errors);
//   online softmax per query in the accumulator layout;
//   V: O^T[coord][query] += a_V C[idx_V]^T (16 coords x 16 tokens) x (p * nu_v) (16 tokens x 8
//      queries), weights split hi + lo; code pairs are transposed to token pairs with PRMT; a_V
//      (DeviceCodec::mma_scale) makes a_V C[k] fp16 values to ~2^-15 relative (plain fp16: 2^-12),
//      and the partial is divided by a_V.
// Launched dependent on the query rotation: staging and tables overlap it (dependent_launch.cuh).
// Coordinates are permuted freely inside the MMAs (the dot products do not care); each lane reads
// a contiguous slice of every code row. Rotor's 129th coordinate is a 9th, mostly empty, step.
#include <cuda_fp16.h>

#include "kernel_common.cuh"
#include "dependent_launch.cuh"
#include "rq/core/half.hpp"
#include "rq/cuda/decode.hpp"

namespace rq::cuda {
namespace detail {

namespace {

using detail::static_for;

constexpr int kWarps = 8;    // splits per block: two blocks of 8 warps per SM (128 registers, ~101 KB shared each)
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

// Exact fp16 -> fp32 (hardware conversion; stored norms are finite).
__device__ __forceinline__ float h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// 2^x without the denormal range fix-up of exp2f (MUFU.EX2, flush to zero; 2^-inf = 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Byte offset of entry (field, lane) in a per-lane-replicated table [fields][32] of 32-bit words:
// field = bits [BIT, BIT + W) of the word array, lane4 = 4 * lane. One shift and one LOP3.
template <int BIT, int W, int WORDS>
__device__ __forceinline__ uint32_t lut_offset(const uint32_t (&w)[WORDS], uint32_t lane4) {
  constexpr int kWord = BIT >> 5, kShift = BIT & 31;
  constexpr uint32_t kMask = ((1u << W) - 1u) << 7;  // row stride 128 bytes
  uint32_t v;
  if constexpr (kShift < 7) v = w[kWord] << (7 - kShift);
  else if constexpr (kShift + W > 32) v = __funnelshift_r(w[kWord], w[kWord + 1], kShift - 7);
  else v = w[kWord] >> (kShift - 7);
  return (v & kMask) | lane4;
}

__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_1() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Shared-memory layout of one block (dynamic, bytes): see tc_smem_bytes().
template <int N, int BITS>
struct TcLayout {
  static constexpr int PAIRS = 1 << (2 * BITS);
  static constexpr int PAYLOAD = (N * BITS + 7) / 8;
  static constexpr int MAIN = PAYLOAD / 16 * 16;
  static constexpr int TAIL = PAYLOAD - MAIN;
  static constexpr int ROWW = MAIN / 4;                 // words per staged row
  static constexpr int CODEW = kChunk * ROWW + 4;       // words per staged chunk (+ overrun pad)
  // Tables, in a static shared array (its address is an immediate in the LDS instructions):
  static constexpr size_t lut_k = 0;                                        // uint32 [PAIRS][32]
  static constexpr size_t lut_klo = lut_k + sizeof(uint32_t) * PAIRS * 32;  // uint32 [PAIRS][32]
  static constexpr size_t lut_v = lut_klo + sizeof(uint32_t) * PAIRS * 32;  // uint32 [PAIRS][32]
  static constexpr size_t lut_bytes = lut_v + sizeof(uint32_t) * PAIRS * 32;
  // Dynamic shared memory:
  static constexpr size_t w = 0;                                           // float [warps][64][12]
  static constexpr size_t codes = w + sizeof(float) * kWarps * kChunk * kWStride;  // uint32 [warps][K,V][CODEW]
  static constexpr size_t norms = codes + sizeof(uint32_t) * kWarps * 2 * CODEW;  // uint16 [warps][K,V][64]
  static constexpr size_t tails = norms + sizeof(uint16_t) * kWarps * 2 * kChunk; // uint8 [warps][K,V][64]
  static constexpr size_t bytes = tails + kWarps * 2 * kChunk;
};

template <int N, int BITS>
__global__ void __launch_bounds__(kWarps * 32, 2) decode_split_tc_kernel(DecodeParams p) {
  using L = TcLayout<N, BITS>;
  constexpr int PAIRS = L::PAIRS, MAIN = L::MAIN, TAIL = L::TAIL, ROWW = L::ROWW, CODEW = L::CODEW;
  constexpr int KSTEPS = 8 + (N > 128 ? 1 : 0);
  constexpr int KW = BITS;  // words of a lane's K slice: 32 coords x BITS bits
  static_assert(N == 128 || N == 129, "tensor-core decode: 128 coordinates (+ rotor's pad)");
  static_assert(MAIN == 16 * BITS && TAIL <= 1, "main row = 128 coordinates");

  extern __shared__ __align__(16) uint8_t smem[];
  __shared__ __align__(128) uint8_t s_lut[L::lut_bytes];
  uint32_t(*lut_k)[32] = reinterpret_cast<uint32_t(*)[32]>(s_lut + L::lut_k);      // per-lane copies of fp16
  uint32_t(*lut_klo)[32] = reinterpret_cast<uint32_t(*)[32]>(s_lut + L::lut_klo);  // pairs: K hi, K lo,
  uint32_t(*lut_v)[32] = reinterpret_cast<uint32_t(*)[32]>(s_lut + L::lut_v);      // a_V C (V)

  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const uint32_t lane4 = 4u * static_cast<uint32_t>(lane);
  const int split = blockIdx.x * kWarps + warp, kvh = blockIdx.y, b = blockIdx.z;
  const int len = p.seq_lens[b];
  const int start = split * p.plan.tokens_per_split;
  const int end = min(len, start + p.plan.tokens_per_split);
  const int group = p.n_q_heads / p.n_kv_heads;
  float(*sw)[kWStride] = reinterpret_cast<float(*)[kWStride]>(smem + L::w) + warp * kChunk;
  uint32_t* s_kc = reinterpret_cast<uint32_t*>(smem + L::codes) + (warp * 2 + 0) * CODEW;
  uint32_t* s_vc = reinterpret_cast<uint32_t*>(smem + L::codes) + (warp * 2 + 1) * CODEW;
  uint16_t* s_kn = reinterpret_cast<uint16_t*>(smem + L::norms) + (warp * 2 + 0) * kChunk;
  uint16_t* s_vn = reinterpret_cast<uint16_t*>(smem + L::norms) + (warp * 2 + 1) * kChunk;
  uint8_t* s_kt = smem + L::tails + (warp * 2 + 0) * kChunk;
  uint8_t* s_vt = smem + L::tails + (warp * 2 + 1) * kChunk;
  if (lane < 4) s_kc[kChunk * ROWW + lane] = s_vc[kChunk * ROWW + lane] = 0u;

  // The first chunk's copies fly while the block builds its tables and the queries are rotated.
  const int page_size = p.k_geometry.page_size;  // power of two, >= 64: a chunk is inside one page
  const int page_shift = __ffs(page_size) - 1;
  const int32_t* pages = p.page_table + static_cast<size_t>(b) * p.max_pages_per_seq;
  // Stage the 64 rows of chunk t0 (contiguous in its page) into shared memory, asynchronously.
  auto stage = [&](int t0, const PagedGeometry& g, const PagedPlanes& pl, uint32_t* dst, uint16_t* dn, uint8_t* dt) {
    if (t0 < end) {  // (t0 < len: splits past the end stage nothing)
      const size_t row0 = g.row(__ldg(pages + (t0 >> page_shift)), kvh, t0 & (page_size - 1));
      const uint8_t* src = pl.codes + row0 * MAIN;
#pragma unroll
      for (int i = lane; i < kChunk * MAIN / 16; i += 32) cp_async16(dst + 4 * i, src + 16 * i);
      if (lane < kChunk * 2 / 16) cp_async16(dn + 8 * lane, pl.norms + row0 + 8 * lane);
      if constexpr (TAIL > 0) {
        if (lane < kChunk / 16) cp_async16(dt + 16 * lane, pl.tail + row0 + 16 * lane);
      }
    }
    cp_async_commit();
  };
  stage(start, p.k_geometry, p.k_planes, s_kc, s_kn, s_kt);
  stage(start, p.v_geometry, p.v_planes, s_vc, s_vn, s_vt);
  allow_dependents();  // the merge may launch (it waits for this grid)

  // Tables: thread i < 3 PAIRS computes one fp16 pair (K hi, K lo or V) and writes its 32 copies.
  if (threadIdx.x < 3 * PAIRS) {
    const int table = threadIdx.x / PAIRS, f = threadIdx.x % PAIRS;
    const int i0 = f & ((1 << BITS) - 1), i1 = f >> BITS;
    uint32_t v, hi, lo;
    if (table == 2) {
      v = pack_half2(p.v_codec.mma_scale * p.v_codec.centroids[i0], p.v_codec.mma_scale * p.v_codec.centroids[i1]);
    } else {
      split_half2(p.k_codec.centroids[i0], p.k_codec.centroids[i1], hi, lo);
      v = table == 0 ? hi : lo;
    }
    uint4* dst = reinterpret_cast<uint4*>(table == 0 ? lut_k[f] : table == 1 ? lut_klo[f] : lut_v[f]);
#pragma unroll
    for (int i = 0; i < 8; ++i) dst[i] = make_uint4(v, v, v, v);
  }
  __syncthreads();
  if (start >= len) return;

  // Query B fragments for all k-steps: lane holds query `gid`, coordinates of slice `tig`.
  uint32_t qhi[KSTEPS][2], qlo[KSTEPS][2];
  {
    wait_for_prerequisite();  // prepare_queries_kernel's rotated, pre-scaled queries
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

  for (int t0 = start; t0 < end; t0 += kChunk) {
    cp_async_wait_1();  // this chunk's K (its V may still be in flight)
    __syncwarp();
    // ---- K: scores of 4 blocks of 16 tokens; lane: tokens gid, gid + 8; queries 2 tig, 2 tig + 1.
    float s[4][4];
#pragma unroll
    for (int mb = 0; mb < 4; ++mb) {
      uint32_t kw[2][KW];
      uint32_t tail[2] = {0u, 0u};
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int tl = 16 * mb + gid + 8 * h;
#pragma unroll
        for (int i = 0; i < KW; ++i) kw[h][i] = s_kc[tl * ROWW + KW * tig + i];
        if constexpr (TAIL > 0) tail[h] = s_kt[tl];
      }
      float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      static_for<0, 8>([&](auto sc) {
        constexpr int S = decltype(sc)::value;
        const uint32_t o0 = lut_offset<(4 * S) * BITS, 2 * BITS>(kw[0], lane4);
        const uint32_t o1 = lut_offset<(4 * S) * BITS, 2 * BITS>(kw[1], lane4);
        const uint32_t o2 = lut_offset<(4 * S + 2) * BITS, 2 * BITS>(kw[0], lane4);
        const uint32_t o3 = lut_offset<(4 * S + 2) * BITS, 2 * BITS>(kw[1], lane4);
        const uint8_t* khi = s_lut + L::lut_k;
        const uint8_t* klo = s_lut + L::lut_klo;
        const uint32_t ah[4] = {*reinterpret_cast<const uint32_t*>(khi + o0), *reinterpret_cast<const uint32_t*>(khi + o1),
                                *reinterpret_cast<const uint32_t*>(khi + o2), *reinterpret_cast<const uint32_t*>(khi + o3)};
        const uint32_t al[4] = {*reinterpret_cast<const uint32_t*>(klo + o0), *reinterpret_cast<const uint32_t*>(klo + o1),
                                *reinterpret_cast<const uint32_t*>(klo + o2), *reinterpret_cast<const uint32_t*>(klo + o3)};
        mma16816(d, ah, qhi[S][0], qhi[S][1]);
        mma16816(d, ah, qlo[S][0], qlo[S][1]);
        mma16816(d, al, qhi[S][0], qhi[S][1]);
      });
      if constexpr (KSTEPS > 8) {
        const uint32_t f0 = tail[0] & ((1u << BITS) - 1u), f1 = tail[1] & ((1u << BITS) - 1u);
        const uint32_t ah[4] = {lut_k[f0][lane], lut_k[f1][lane], 0u, 0u};
        const uint32_t al[4] = {lut_klo[f0][lane], lut_klo[f1][lane], 0u, 0u};
        mma16816(d, ah, qhi[8][0], qhi[8][1]);
        mma16816(d, ah, qlo[8][0], qlo[8][1]);
        mma16816(d, al, qhi[8][0], qhi[8][1]);
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int tl = 16 * mb + gid + 8 * h;
        const bool ok = t0 + tl < end;
        const float nu = h2f(s_kn[tl]);
        s[mb][2 * h] = ok ? d[2 * h] * nu : -INFINITY;
        s[mb][2 * h + 1] = ok ? d[2 * h + 1] * nu : -INFINITY;
      }
    }
    __syncwarp();
    stage(t0 + kChunk, p.k_geometry, p.k_planes, s_kc, s_kn, s_kt);  // next chunk's K, in flight during V
    cp_async_wait_1();  // this chunk's V
    __syncwarp();
    // ---- online softmax per query (lane's queries 2 tig + c); max over the warp's 64 tokens.
    float nv[4][2];  // V norms of the lane's tokens, 0 past the end
#pragma unroll
    for (int mb = 0; mb < 4; ++mb) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int tl = 16 * mb + gid + 8 * h;
        nv[mb][h] = t0 + tl < end ? h2f(s_vn[tl]) : 0.0f;
      }
    }
    float alpha[2];
#pragma unroll
    for (int c = 0; c < 2; ++c) {
      float mx = -INFINITY;
#pragma unroll
      for (int mb = 0; mb < 4; ++mb) mx = fmaxf(mx, fmaxf(s[mb][c], s[mb][2 + c]));
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_new = fmaxf(m_run[c], mx);  // finite: token t0 is valid
      alpha[c] = fast_exp2(m_run[c] - m_new);
      m_run[c] = m_new;
      float lsum = 0.0f;
#pragma unroll
      for (int mb = 0; mb < 4; ++mb) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const float pw = fast_exp2(s[mb][2 * h + c] - m_new);  // 0 for invalid tokens
          lsum += pw;
          s[mb][2 * h + c] = pw * nv[mb][h];
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
    const int vbit0 = 16 * BITS * gid;
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      uint32_t vbits[4][2];
      uint32_t vtail[4] = {0u, 0u, 0u, 0u};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const int tl = 16 * ks + 2 * tig + (k & 1) + 8 * (k >> 1);
        const uint32_t w0 = s_vc[tl * ROWW + (vbit0 >> 5)], w1 = s_vc[tl * ROWW + (vbit0 >> 5) + 1];
        vbits[k][0] = __funnelshift_r(w0, w1, vbit0 & 31);
        vbits[k][1] = w1 >> (vbit0 & 31);
        if constexpr (TAIL > 0) vtail[k] = s_vt[tl];
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
          l[k] = *reinterpret_cast<const uint32_t*>(s_lut + L::lut_v + lut_offset<BIT, 2 * BITS>(vbits[k], lane4));
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
        for (int k = 0; k < 4; ++k) l[k] = lut_v[vtail[k] & ((1u << BITS) - 1u)][lane];
        uint32_t a[4];
        a[0] = __byte_perm(l[0], l[1], 0x5410);
        a[1] = 0u;
        a[2] = __byte_perm(l[2], l[3], 0x5410);
        a[3] = 0u;
        mma16816(acc[8], a, bhi[0], bhi[1]);
        mma16816(acc[8], a, blo[0], blo[1]);
      }
    }
    __syncwarp();  // s_w and the V stage are rewritten next
    stage(t0 + kChunk, p.v_geometry, p.v_planes, s_vc, s_vn, s_vt);
  }
  asm volatile("cp.async.wait_all;\n" ::);

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
  const float inv_av = 1.0f / p.v_codec.mma_scale;  // the V table holds a_V C[k]
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    const int qi = 2 * tig + c;
    if (qi >= group) continue;
    float* o = partial_o + ((bh0 + qi) * p.plan.max_splits + split) * N;
#pragma unroll
    for (int m = 0; m < 8; ++m) {
      o[16 * gid + 2 * m] = acc[m][c] * inv_av;
      o[16 * gid + 2 * m + 1] = acc[m][2 + c] * inv_av;
    }
    if constexpr (KSTEPS > 8) {
      if (gid == 0) o[128] = acc[8][c] * inv_av;
    }
    if (gid == 0) {
      float* ml = partial_ml + ((bh0 + qi) * p.plan.max_splits + split) * 2;
      ml[0] = m_run[c];
      ml[1] = l_run[c];
    }
  }
}

template <int N, int BITS>
cudaError_t launch_tc(const DecodeParams& p, cudaStream_t stream) {
  const dim3 grid((p.plan.max_splits + kWarps - 1) / kWarps, p.n_kv_heads, p.batch);
  constexpr size_t bytes = TcLayout<N, BITS>::bytes;
  const cudaError_t st = cudaFuncSetAttribute(decode_split_tc_kernel<N, BITS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(bytes));
  if (st != cudaSuccess) return st;
  return launch_dependent(decode_split_tc_kernel<N, BITS>, grid, dim3(kWarps * 32), bytes, stream, p);
}

template <int N>
cudaError_t launch_tc_bits(const DecodeParams& p, cudaStream_t stream) {
  switch (p.k_codec.bits) {
    case 2: return launch_tc<N, 2>(p, stream);
    case 3: return launch_tc<N, 3>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

bool tc_decode_supported(const DecodeParams& p) {
  const int group = p.n_kv_heads > 0 ? p.n_q_heads / p.n_kv_heads : 0;
  return (p.k_codec.bits == 2 || p.k_codec.bits == 3) && (p.k_codec.rotated_dim == 128 || p.k_codec.rotated_dim == 129) &&
         group >= 1 && group <= 8 && p.k_geometry.page_size >= kChunk && p.plan.tokens_per_split % kChunk == 0;
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
