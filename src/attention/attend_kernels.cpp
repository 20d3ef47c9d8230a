// Per-target SIMD kernels of the fast decode attention (Highway, compiled once per target and
// dispatched at run time). One work item = a token range of one KV head with all its GQA queries:
//   for each chunk of <= 128 tokens (inside one K page and one V page):
//     score   s[q][r] = scale * <Pi q, decode(k_r)>       straight from the codes
//     softmax online: running max m[q], denominator l[q], rescale acc when m grows
//     acc[q] += sum_r exp(s[q][r] - m[q]) * decode(v_r)    in V's rotated domain
// decode() of a group of 8 coordinates: Packed codes -> one 32-bit load, variable shift, mask,
// register table lookup (vpermps on AVX2); f16 -> F16C; int8 -> widen + convert.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "fast_kernels.hpp"
#include "rq/core/half.hpp"
#include "rq/pack/bitpack.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "attend_kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>

#include "kernel_steps-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rq::attn_detail {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::CappedTag<float, 8>;  // 8 lanes on AVX2/AVX3, 4 on SSE4/EMU128, 1 on SCALAR
using DI = hn::RebindToSigned<DF>;
using DU = hn::RebindToUnsigned<DF>;
using VF = hn::Vec<DF>;
// f32 / f16 / int8 rows: 16 lanes on AVX3 (one zmm per 16 coordinates), else as DF. Packed codes
// keep DF: their decoder reads 8 codes (kBits bytes) per vector.
using DW = hn::CappedTag<float, 16>;

constexpr size_t kChunk = 128;  // tokens per online-softmax step (scores stay in L1)
constexpr size_t kMaxQ = 4;     // queries scored per pass over the codes

inline float load_half(const uint8_t* p) { return half_to_float(static_cast<uint16_t>(p[0] | (p[1] << 8))); }

// ------------------------------------------------------------------------------------------------
// Decoders: value of coordinates [j0, j0 + N) of one row (without the row scale), and the scalar
// value of one coordinate. `blk` points at the row's block scales (Int4) and is unused otherwise.

struct DecodeF32 {
  using D = DW;
  explicit DecodeF32(const KernelFormat&) {}
  HWY_INLINE hn::Vec<D> Vec(const uint8_t* row, size_t j0, const float*) const {
    return hn::LoadU(D(), reinterpret_cast<const float*>(row) + j0);
  }
  HWY_INLINE float Scalar(const uint8_t* row, size_t j, const float*) const {
    float v;
    std::memcpy(&v, row + 4 * j, 4);
    return v;
  }
};

struct DecodeF16 {
  using D = DW;
  explicit DecodeF16(const KernelFormat&) {}
  HWY_INLINE hn::Vec<D> Vec(const uint8_t* row, size_t j0, const float*) const {
    const hn::Rebind<hwy::float16_t, D> dh;
    return hn::PromoteTo(D(), hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(row) + j0));
  }
  HWY_INLINE float Scalar(const uint8_t* row, size_t j, const float*) const { return load_half(row + 2 * j); }
};

struct DecodeInt8 {
  using D = DW;
  explicit DecodeInt8(const KernelFormat&) {}
  HWY_INLINE hn::Vec<D> Vec(const uint8_t* row, size_t j0, const float*) const {
    const hn::Rebind<int8_t, D> d8;
    return hn::ConvertTo(D(), hn::PromoteTo(hn::RebindToSigned<D>(), hn::LoadU(d8, reinterpret_cast<const int8_t*>(row) + j0)));
  }
  HWY_INLINE float Scalar(const uint8_t* row, size_t j, const float*) const {
    return static_cast<float>(static_cast<int8_t>(row[j]));
  }
};

// On AVX2/AVX3 with 8 float lanes, TableLookupLanes is vpermps, which reads only the low 3 bits of
// each index: the unpacked codes need no mask (tables of 2 or 4 levels are replicated to 8), and a
// 16-level table is two lookups blended on bit 3 (moved into the sign bit).
#if HWY_ARCH_X86 && (HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL)
constexpr bool kPermutexIgnoresHighBits = true;
#else
constexpr bool kPermutexIgnoresHighBits = false;
#endif

template <int kBits, bool kBlock>
struct DecodePacked {
  using D = DF;
  static constexpr size_t N = hn::MaxLanes(DF());
  static constexpr uint32_t kLevels = 1u << kBits;
  static constexpr bool kFast8 = kPermutexIgnoresHighBits && N == 8;
  const float* table;
  hn::Vec<DU> shifts, mask;
  VF t0, t1;
  explicit DecodePacked(const KernelFormat& f) : table(f.table) {
    const DU du;
    shifts = hn::Mul(hn::Iota(du, 0), hn::Set(du, static_cast<uint32_t>(kBits)));
    mask = hn::Set(du, kLevels - 1);
    if constexpr (kFast8) {
      float rep[16];
      for (size_t k = 0; k < 16; ++k) rep[k] = f.table[k % kLevels];  // replicate small tables
      t0 = hn::LoadU(DF(), rep);
      t1 = hn::LoadU(DF(), rep + 8);
    } else {
      t0 = hn::LoadU(DF(), f.table);
      t1 = hn::LoadU(DF(), f.table + (N < 16 ? N : 0));
    }
  }
  HWY_INLINE VF Lookup(hn::Vec<DU> idx) const {
    const DF df;
    const DI di;
    if constexpr (kFast8) {
      const auto lo = hn::TableLookupLanes(t0, hn::IndicesFromVec(df, hn::BitCast(di, idx)));
      if constexpr (kLevels <= 8) return lo;
      const auto hi = hn::TableLookupLanes(t1, hn::IndicesFromVec(df, hn::BitCast(di, idx)));
      return hn::IfNegativeThenElse(hn::BitCast(df, hn::ShiftLeft<28>(idx)), hi, lo);
    } else if constexpr (kLevels <= N) {
      return hn::TableLookupLanes(t0, hn::IndicesFromVec(df, hn::BitCast(di, hn::And(idx, mask))));
    } else if constexpr (kLevels <= 2 * N) {
      const auto low = hn::BitCast(di, hn::And(idx, hn::Set(DU(), static_cast<uint32_t>(N - 1))));
      const auto lo = hn::TableLookupLanes(t0, hn::IndicesFromVec(df, low));
      const auto hi = hn::TableLookupLanes(t1, hn::IndicesFromVec(df, low));
      const auto upper = hn::RebindMask(df, hn::Ne(hn::And(idx, hn::Set(DU(), static_cast<uint32_t>(N))), hn::Zero(DU())));
      return hn::IfThenElse(upper, hi, lo);
    } else {
      return hn::GatherIndex(df, table, hn::BitCast(di, hn::And(idx, mask)));
    }
  }
  HWY_INLINE VF Vec(const uint8_t* row, size_t j0, const float* blk) const {
    uint32_t word;
    if constexpr (N % 8 == 0) {
      std::memcpy(&word, row + j0 / 8 * kBits, 4);  // 8 codes are exactly kBits bytes
    } else {
      const size_t bit = j0 * kBits;
      std::memcpy(&word, row + (bit >> 3), 4);
      word >>= (bit & 7u);
    }
    VF v = Lookup(hn::Shr(hn::Set(DU(), word), shifts));
    if constexpr (kBlock) v = hn::Mul(v, hn::Set(DF(), blk[j0 / 32]));
    return v;
  }
  HWY_INLINE float Scalar(const uint8_t* row, size_t j, const float* blk) const {
    const float v = table[unpack_code(row, j, kBits)];
    if constexpr (kBlock) return v * blk[j / 32];
    return v;
  }
};

// Keeps a loaded vector in a register: without this the compiler folds the load into both FMAs
// that use it, doubling the loads of the two-row loops (they are load-port bound on Zen 3).
template <class V>
HWY_INLINE V InRegister(V v) {
#if HWY_ARCH_X86 && (HWY_TARGET == HWY_AVX2 || HWY_TARGET == HWY_AVX3 || HWY_TARGET == HWY_AVX3_DL) && (defined(__GNUC__) || defined(__clang__))
  if constexpr (sizeof(v.raw) == 32) __asm__("" : "+x"(v.raw));
#endif
  return v;
}

// Coordinates handled by whole vectors: Packed rows are decoded up to `stride` (the garbage lanes
// of the last group are finite table values and meet zero-padded queries / ignored accumulator
// lanes); the other kinds stop at the last full vector and finish with scalar code.
// N: the decoder's lanes.
HWY_INLINE size_t VecCoords(const KernelFormat& f, size_t N) {
  return f.kind == CodeKind::Packed ? f.stride : f.n / N * N;
}

// ------------------------------------------------------------------------------------------------
// Score: s[q * s_stride + r] = row_scale[r] * <q_q, decode(row r)> for QB queries.
// q: QB x n (stride q_stride); codes: rows x code_bytes; blk: rows x n_blocks (Int4) or unused.
// `vec_rows` rows use the SIMD path; the rest (at most the last row of a page) the scalar path.

// Independent FMA chains: FMA latency 4 x 2 pipes needs >= 8 accumulators in flight, so small
// query batches unroll over coordinate groups instead.
template <size_t QB>
constexpr size_t kScoreUnroll = QB >= 3 ? 1 : (QB == 2 ? 2 : 4);  // x 2 rows x QB queries
template <size_t QB>
constexpr size_t kAccUnroll = QB >= 3 ? 2 : (QB == 2 ? 4 : 8);    // x QB queries

template <size_t QB, class Dec>
void ScoreRows(const Dec& dec, const KernelFormat& f, const float* q, size_t q_stride, const uint8_t* codes,
               size_t rows, size_t vec_rows, const float* row_scale, const float* blk, float* s,
               size_t s_stride, const uint8_t* ahead, size_t ahead_rows) {
  using D = typename Dec::D;
  using V = hn::Vec<D>;
  const D df;
  constexpr size_t N = hn::MaxLanes(D());
  constexpr size_t U = kScoreUnroll<QB>;
  const size_t n = f.n, full = VecCoords(f, N), nb = f.n_blocks;
  size_t r = 0;
  for (; r + 2 <= vec_rows; r += 2) {  // two rows per pass share the query loads
    prefetch_row(ahead, ahead_rows, r, f.code_bytes);
    prefetch_row(ahead, ahead_rows, r + 1, f.code_bytes);
    const uint8_t* row0 = codes + r * f.code_bytes;
    const uint8_t* row1 = row0 + f.code_bytes;
    const float* b0 = blk + r * nb;
    const float* b1 = b0 + nb;
    V a0[QB][U], a1[QB][U];
    for (size_t h = 0; h < QB; ++h) {
      for (size_t u = 0; u < U; ++u) a0[h][u] = a1[h][u] = hn::Zero(df);
    }
    size_t j = 0;
    for (; j + U * N <= full; j += U * N) {
      for (size_t u = 0; u < U; ++u) {
        const V c0 = dec.Vec(row0, j + u * N, b0);
        const V c1 = dec.Vec(row1, j + u * N, b1);
        for (size_t h = 0; h < QB; ++h) {
          const V qv = InRegister(hn::LoadU(df, q + h * q_stride + j + u * N));
          a0[h][u] = hn::MulAdd(c0, qv, a0[h][u]);
          a1[h][u] = hn::MulAdd(c1, qv, a1[h][u]);
        }
      }
    }
    for (; j < full; j += N) {
      const V c0 = dec.Vec(row0, j, b0);
      const V c1 = dec.Vec(row1, j, b1);
      for (size_t h = 0; h < QB; ++h) {
        const V qv = InRegister(hn::LoadU(df, q + h * q_stride + j));
        a0[h][0] = hn::MulAdd(c0, qv, a0[h][0]);
        a1[h][0] = hn::MulAdd(c1, qv, a1[h][0]);
      }
    }
    float sums[2 * QB];  // row 0 queries, then row 1 queries
    for (size_t h = 0; h < QB; ++h) {
      for (size_t u = 1; u < U; ++u) {
        a0[h][0] = hn::Add(a0[h][0], a0[h][u]);
        a1[h][0] = hn::Add(a1[h][0], a1[h][u]);
      }
    }
#if HWY_ARCH_X86 && (HWY_TARGET == HWY_AVX2 || HWY_TARGET <= HWY_AVX3)
    if constexpr (QB == 4 && (N == 8 || N == 16)) {
      // 8 horizontal sums at once: (16 lanes: the 256-bit halves added first) two rounds of hadd,
      // then fold the 128-bit halves.
      __m256 x0[QB], x1[QB];
      for (size_t h = 0; h < QB; ++h) {
        if constexpr (N == 16) {
#if HWY_TARGET <= HWY_AVX3
          x0[h] = _mm256_add_ps(_mm512_castps512_ps256(a0[h][0].raw), _mm512_extractf32x8_ps(a0[h][0].raw, 1));
          x1[h] = _mm256_add_ps(_mm512_castps512_ps256(a1[h][0].raw), _mm512_extractf32x8_ps(a1[h][0].raw, 1));
#endif
        } else {
          x0[h] = a0[h][0].raw;
          x1[h] = a1[h][0].raw;
        }
      }
      const __m256 p0 = _mm256_hadd_ps(x0[0], x0[1]), p1 = _mm256_hadd_ps(x0[2], x0[3]);
      const __m256 p2 = _mm256_hadd_ps(x1[0], x1[1]), p3 = _mm256_hadd_ps(x1[2], x1[3]);
      const __m256 u0 = _mm256_hadd_ps(p0, p1), u1 = _mm256_hadd_ps(p2, p3);
      const __m256 tot = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
      _mm256_storeu_ps(sums, tot);
    } else
#endif
    {
      for (size_t h = 0; h < QB; ++h) {
        sums[h] = hn::GetLane(hn::SumOfLanes(df, a0[h][0]));
        sums[QB + h] = hn::GetLane(hn::SumOfLanes(df, a1[h][0]));
      }
    }
    for (size_t h = 0; h < QB; ++h) {
      float t0 = sums[h], t1 = sums[QB + h];
      for (size_t jj = full; jj < n; ++jj) {
        t0 += q[h * q_stride + jj] * dec.Scalar(row0, jj, b0);
        t1 += q[h * q_stride + jj] * dec.Scalar(row1, jj, b1);
      }
      s[h * s_stride + r] = t0 * row_scale[r];
      s[h * s_stride + r + 1] = t1 * row_scale[r + 1];
    }
  }
  for (; r < vec_rows; ++r) {
    const uint8_t* row = codes + r * f.code_bytes;
    const float* b = blk + r * nb;
    V a[QB];
    for (size_t h = 0; h < QB; ++h) a[h] = hn::Zero(df);
    for (size_t j = 0; j < full; j += N) {
      const V c = dec.Vec(row, j, b);
      for (size_t h = 0; h < QB; ++h) a[h] = hn::MulAdd(c, hn::LoadU(df, q + h * q_stride + j), a[h]);
    }
    for (size_t h = 0; h < QB; ++h) {
      float t = hn::GetLane(hn::SumOfLanes(df, a[h]));
      for (size_t j = full; j < n; ++j) t += q[h * q_stride + j] * dec.Scalar(row, j, b);
      s[h * s_stride + r] = t * row_scale[r];
    }
  }
  for (; r < rows; ++r) {  // scalar rows: the page's last row when a 4-byte load could run past it
    const uint8_t* row = codes + r * f.code_bytes;
    const float* b = blk + r * nb;
    for (size_t h = 0; h < QB; ++h) {
      float t = 0.0f;
      for (size_t j = 0; j < n; ++j) t += q[h * q_stride + j] * dec.Scalar(row, j, b);
      s[h * s_stride + r] = t * row_scale[r];
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Accumulate: acc[q * acc_stride + j] += sum_r w[q * w_stride + r] * decode(row r)_j for QB queries.
// w already holds softmax weight x row scale. Coordinates outer (accumulators in registers),
// rows inner (the chunk's codes stay in L1).

template <size_t QB, class Dec>
void AccumulateRows(const Dec& dec, const KernelFormat& f, const float* w, size_t w_stride, const uint8_t* codes,
                    size_t rows, size_t vec_rows, const float* blk, float* acc, size_t acc_stride,
                    const uint8_t* ahead, size_t ahead_rows) {
  using D = typename Dec::D;
  using V = hn::Vec<D>;
  const D df;
  constexpr size_t N = hn::MaxLanes(D());
  constexpr size_t U = kAccUnroll<QB>;
  const size_t n = f.n, full = VecCoords(f, N), nb = f.n_blocks;
  size_t j = 0;
  for (; j + U * N <= full; j += U * N) {
    V a[QB][U];
    for (size_t h = 0; h < QB; ++h) {
      for (size_t u = 0; u < U; ++u) a[h][u] = hn::LoadU(df, acc + h * acc_stride + j + u * N);
    }
    for (size_t r = 0; r < vec_rows; ++r) {
      if (j == 0) prefetch_row(ahead, ahead_rows, r, f.code_bytes);
      const uint8_t* row = codes + r * f.code_bytes;
      V wv[QB];
      for (size_t h = 0; h < QB; ++h) wv[h] = hn::Set(df, w[h * w_stride + r]);
      for (size_t u = 0; u < U; ++u) {
        const V c = dec.Vec(row, j + u * N, blk + r * nb);
        for (size_t h = 0; h < QB; ++h) a[h][u] = hn::MulAdd(wv[h], c, a[h][u]);
      }
    }
    for (size_t h = 0; h < QB; ++h) {
      for (size_t u = 0; u < U; ++u) hn::StoreU(a[h][u], df, acc + h * acc_stride + j + u * N);
    }
  }
  for (; j < full; j += N) {
    V a[QB];
    for (size_t h = 0; h < QB; ++h) a[h] = hn::LoadU(df, acc + h * acc_stride + j);
    for (size_t r = 0; r < vec_rows; ++r) {
      const V c = dec.Vec(codes + r * f.code_bytes, j, blk + r * nb);
      for (size_t h = 0; h < QB; ++h) a[h] = hn::MulAdd(hn::Set(df, w[h * w_stride + r]), c, a[h]);
    }
    for (size_t h = 0; h < QB; ++h) hn::StoreU(a[h], df, acc + h * acc_stride + j);
  }
  for (size_t r = 0; r < rows; ++r) {  // tail coordinates of every row, whole scalar rows
    const uint8_t* row = codes + r * f.code_bytes;
    const float* b = blk + r * nb;
    const size_t j0 = r < vec_rows ? full : 0;
    for (size_t jj = j0; jj < n; ++jj) {
      const float c = dec.Scalar(row, jj, b);
      for (size_t h = 0; h < QB; ++h) acc[h * acc_stride + jj] += w[h * w_stride + r] * c;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Per-chunk side values: row scales (fp16 norm / int8 scale, or 1) and Int4 block scales.


void LoadSide(const KernelFormat& f, const uint8_t* side, size_t rows, float* row_scale, float* blk) {
  if (!f.row_scale) {
    for (size_t r = 0; r < rows; ++r) row_scale[r] = 1.0f;
  } else if (f.side_bytes == 2) {
    HalvesToFloats(side, rows, row_scale);
  } else {
    for (size_t r = 0; r < rows; ++r) row_scale[r] = load_half(side + r * f.side_bytes);
  }
  // Int4: the side plane is exactly rows x n_blocks fp16 scales.
  if (f.block_scale) HalvesToFloats(side, rows * f.n_blocks, blk);
}

// Rows that may use the 4-byte packed loads: all but those of the chunk's last rows whose final
// load would read past readable memory (tail: readable bytes after the chunk, i.e. the span's rows
// after it plus its readable_after).
size_t VecRows(const KernelFormat& f, size_t rows, size_t tail) {
  constexpr size_t N = hn::MaxLanes(DF());
  if (f.kind != CodeKind::Packed || rows == 0) return rows;
  const size_t full = VecCoords(f, N);
  if (full == 0) return rows;
  const size_t last_load = ((full - N) * static_cast<size_t>(f.bits)) >> 3;  // first byte of the last 4-byte load
  if (last_load + 4 <= f.code_bytes) return rows;
  // The load runs `overrun` bytes past its row: the chunk's last `scalar` rows go the scalar way.
  const size_t overrun = last_load + 4 - f.code_bytes;
  const size_t scalar = rows_past_readable(overrun, tail, f.code_bytes);
  return scalar >= rows ? 0 : rows - scalar;
}

// ahead / ahead_rows: the next chunk's rows, prefetched during the first pass of queries.
template <class Dec>
void ScoreAll(const KernelFormat& f, const float* queries, size_t G, const uint8_t* codes, size_t rows,
              size_t vec_rows, const float* rs, const float* blk, float* s, const uint8_t* ahead, size_t ahead_rows) {
  const Dec dec(f);
  for (size_t h0 = 0; h0 < G; h0 += kMaxQ) {
    const float* q = queries + h0 * f.stride;
    float* so = s + h0 * kChunk;
    const size_t pr = h0 ? 0 : ahead_rows;
    switch (G - h0 >= kMaxQ ? kMaxQ : G - h0) {
      case 1: ScoreRows<1>(dec, f, q, f.stride, codes, rows, vec_rows, rs, blk, so, kChunk, ahead, pr); break;
      case 2: ScoreRows<2>(dec, f, q, f.stride, codes, rows, vec_rows, rs, blk, so, kChunk, ahead, pr); break;
      case 3: ScoreRows<3>(dec, f, q, f.stride, codes, rows, vec_rows, rs, blk, so, kChunk, ahead, pr); break;
      default: ScoreRows<4>(dec, f, q, f.stride, codes, rows, vec_rows, rs, blk, so, kChunk, ahead, pr); break;
    }
  }
}

template <class Dec>
void AccumulateAll(const KernelFormat& f, const float* w, size_t G, const uint8_t* codes, size_t rows,
                   size_t vec_rows, const float* blk, float* acc, const uint8_t* ahead, size_t ahead_rows) {
  const Dec dec(f);
  for (size_t h0 = 0; h0 < G; h0 += kMaxQ) {
    const float* wq = w + h0 * kChunk;
    float* a = acc + h0 * f.stride;
    const size_t pr = h0 ? 0 : ahead_rows;
    switch (G - h0 >= kMaxQ ? kMaxQ : G - h0) {
      case 1: AccumulateRows<1>(dec, f, wq, kChunk, codes, rows, vec_rows, blk, a, f.stride, ahead, pr); break;
      case 2: AccumulateRows<2>(dec, f, wq, kChunk, codes, rows, vec_rows, blk, a, f.stride, ahead, pr); break;
      case 3: AccumulateRows<3>(dec, f, wq, kChunk, codes, rows, vec_rows, blk, a, f.stride, ahead, pr); break;
      default: AccumulateRows<4>(dec, f, wq, kChunk, codes, rows, vec_rows, blk, a, f.stride, ahead, pr); break;
    }
  }
}

// Calls fn.template operator()<Decoder>() for the decoder of format f.
template <class Fn>
void WithDecoder(const KernelFormat& f, Fn&& fn) {
  switch (f.kind) {
    case CodeKind::F32: fn.template operator()<DecodeF32>(); return;
    case CodeKind::F16: fn.template operator()<DecodeF16>(); return;
    case CodeKind::Int8: fn.template operator()<DecodeInt8>(); return;
    case CodeKind::Packed:
      if (f.block_scale) {
        fn.template operator()<DecodePacked<4, true>>();
        return;
      }
      switch (f.bits) {
        case 1: fn.template operator()<DecodePacked<1, false>>(); return;
        case 2: fn.template operator()<DecodePacked<2, false>>(); return;
        case 3: fn.template operator()<DecodePacked<3, false>>(); return;
        default: fn.template operator()<DecodePacked<4, false>>(); return;
      }
  }
}

void RunWorkItem(const WorkItem& item) {
  constexpr size_t N = hn::MaxLanes(DF());
  const KernelFormat& kf = *item.k_format;
  const KernelFormat& vf = *item.v_format;
  const size_t G = item.gqa_group;
  // Scratch: scores / weights G x kChunk, side values per chunk.
  thread_local std::vector<float> scratch;
  const size_t max_blocks = kf.n_blocks > vf.n_blocks ? kf.n_blocks : vf.n_blocks;
  scratch.resize(2 * G * kChunk + 2 * kChunk + kChunk * (max_blocks + 1) + N);
  float* s = scratch.data();            // G x kChunk
  float* w = s + G * kChunk;            // G x kChunk
  float* rs = w + G * kChunk;           // kChunk: K row scales
  float* vs = rs + kChunk;              // kChunk: V row scales
  float* blk = vs + kChunk;             // kChunk x n_blocks

  for_each_chunk(item, vf.stride, kChunk, [&](const PageSpan& kp, size_t k_off, const PageSpan& vp, size_t v_off, size_t rows, const ChunkAhead& ahead) {

    const uint8_t* kcodes = kp.codes + k_off * kf.code_bytes;
    const uint8_t* vcodes = vp.codes + v_off * vf.code_bytes;

    // Scores.
    LoadSide(kf, kp.side ? kp.side + k_off * kf.side_bytes : nullptr, rows, rs, blk);
    const size_t k_vec = VecRows(kf, rows, readable_tail(kp, k_off, rows, kf.code_bytes));
    WithDecoder(kf, [&]<class Dec>() { ScoreAll<Dec>(kf, item.queries, G, kcodes, rows, k_vec, rs, blk, s, ahead.k_codes, ahead.rows); });

    // Online softmax: new max, rescale, weights = exp(s - m) x V row scale.
    LoadSide(vf, vp.side ? vp.side + v_off * vf.side_bytes : nullptr, rows, vs, blk);
    for (size_t h = 0; h < G; ++h) {
      OnlineSoftmaxStep(s + h * kChunk, rows, vs, item.max[h], item.denom[h], item.acc + h * vf.stride, vf.stride,
                        w + h * kChunk);
    }

    // Accumulate values in the rotated domain.
    const size_t v_vec = VecRows(vf, rows, readable_tail(vp, v_off, rows, vf.code_bytes));
    WithDecoder(vf, [&]<class Dec>() { AccumulateAll<Dec>(vf, w, G, vcodes, rows, v_vec, blk, item.acc, ahead.v_codes, ahead.rows); });

  });
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace rq::attn_detail
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "rq/core/errors.hpp"

namespace rq::attn_detail {

HWY_EXPORT(RunWorkItem);
HWY_EXPORT(TargetName);

void run_work_item(const WorkItem& item) { HWY_DYNAMIC_DISPATCH(RunWorkItem)(item); }

std::vector<std::string> simd_targets() {
  std::vector<std::string> names;
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) names.emplace_back(hwy::TargetName(t));
  return names;
}

void force_simd_target(const std::string& name) {
  if (name.empty()) {
    hwy::SetSupportedTargetsForTest(0);
    return;
  }
  hwy::SetSupportedTargetsForTest(0);
  for (int64_t t : hwy::SupportedAndGeneratedTargets()) {
    if (name == hwy::TargetName(t)) {
      hwy::SetSupportedTargetsForTest(t);
      return;
    }
  }
  throw InvalidArgument("attention: SIMD target '" + name + "' is not compiled in or not supported here");
}

std::string current_simd_target() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }

}  // namespace rq::attn_detail
#endif  // HWY_ONCE
