// Integer path of the fast decode attention (Lloyd-Max formats with 2..4-bit codes, int4 and int8; the tables and
// their exactness are described in int_tables.hpp). Per chunk of <= 128 tokens of one KV head:
//   score   isum[h][r] = sum_j s_m(j) q8[h][j] * t[code_rj]    (int32, exact)
//   softmax online, in float, on s = (isum - 128 q_sum) * factor * norm
//   values  vsum[h][j] = sum_r w16[h][r] * t[code_rj]          (int32, exact)
//           acc[h][j] += (vsum - 128 sum_r w16) * alpha_V * wmax / 32767
// int4 (an fp16 scale per 32 coordinates, table k - 8): the same integer sums per 32-coordinate
// block, each block's score sum times the row's block scale in float (the blocks' biases 128 q_sum,
// times the same scales, subtracted afterwards), and one set of 15-bit weights per block (w * scale),
// so vsum and its bias are per block too. int8 (q8): the code bytes, top bit flipped, are the table
// values (ByteCodes instead of the Unpacker); otherwise as the Lloyd-Max formats.
// On AVX2 (and AVX-512 targets) 32 codes at a time are unpacked to bytes with one shuffle, one
// 16-bit multiply and one shift per 16 codes, looked up with vpshufb, and multiplied with
// vpmaddubsw + vpmaddwd (scores) or vpmaddwd (values); every other target runs the plain loops
// below, which compute the same
// integers (they are the scalar reference of this path).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "fast_kernels.hpp"
#include "rq/core/half.hpp"
#include "rq/pack/bitpack.hpp"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "attend_int_kernels.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep

#include <hwy/highway.h>

#include "kernel_steps-inl.h"

HWY_BEFORE_NAMESPACE();
namespace rq::attn_detail {
namespace HWY_NAMESPACE {

constexpr size_t kIntChunk = 128;  // tokens per online-softmax step (even: rows go in pairs)
constexpr size_t kHeadsPerPass = 4;

#undef RQ_INT_ATTENTION_AVX2  // this file is compiled once per target
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define RQ_INT_ATTENTION_AVX2 1
#else
#define RQ_INT_ATTENTION_AVX2 0
#endif
#undef RQ_INT_ATTENTION_512
#if HWY_ARCH_X86 && HWY_TARGET == HWY_AVX3_DL
#define RQ_INT_ATTENTION_512 1  // int_kernels_avx512-inl.h
#else
#define RQ_INT_ATTENTION_512 0
#endif


/// A tail of at most this many coordinates after the 32-coordinate blocks runs the portable loops
/// (e.g. 97 = 3 x 32 + 1); a longer tail of <= 16 (e.g. 130 = 4 x 32 + 2) is half a SIMD block.
/// Measured with valgrind instruction counts on format-v1 rotor (129 coordinates at head_dim 128,
/// GQA 4: portable 1-coordinate tail ~492 per token and head, half block ~524, whole block ~592;
/// 66 at head_dim 64, GQA 3: half block and portable 2-coordinate tail equal within the noise).
/// Since format v2 rotor stores d coordinates, so head_dim 64 and 128 have no tail at all.
constexpr size_t kPortableTail = 1;

/// SIMD blocks of 32 coordinates for n coordinates (the last may be partial).
inline size_t SimdBlocks(size_t n) {
  return n % kIntBlock <= kPortableTail ? n / kIntBlock : (n + kIntBlock - 1) / kIntBlock;
}

/// Whether the last SIMD block holds at most 16 coordinates: only its first 16 codes are used.
inline bool HalfLastBlock(size_t n) { return n % kIntBlock > kPortableTail && n % kIntBlock <= kIntBlock / 2; }

/// Bytes the block loads read past the start of the row's last full block.
inline size_t BlockReadEnd(const IntCodebook& cb, size_t full_blocks) {
  if (cb.bits == 8) return 32 * full_blocks;  // int8 codes: whole 32-byte loads (ByteCodes)
  return full_blocks == 0 ? 0 : 4 * static_cast<size_t>(cb.bits) * (full_blocks - 1) + 16;
}

#if RQ_INT_ATTENTION_AVX2

// Unpacks 32 b-bit codes (4b bytes, LSB-first) and looks them up in the 8-bit table t (built once
// per work item). Block():
// byte i of the result holds code Pos(i): lane L = i / 16, k = i % 16: k < 8 ? 8L + k : 16 + 8L + k - 8.
struct Unpacker {
  __m256i ctl_a, ctl_b, mul_a, mul_b, table;
  __m128i shift;  // 16 - bits
  explicit Unpacker(const IntCodebook& cb) {
    const int b = cb.bits;
    alignas(32) uint8_t ca[32], cbb[32], tb[32];
    alignas(32) uint16_t ma[16], mb[16];
    for (int lane = 0; lane < 2; ++lane) {
      for (int w = 0; w < 8; ++w) {
        for (int half = 0; half < 2; ++half) {
          const int code = half ? 16 + 8 * lane + w : 8 * lane + w;
          const int p = b * code, byte = p / 8, s = p % 8;
          uint8_t* c = half ? cbb : ca;
          uint16_t* m = half ? mb : ma;
          c[16 * lane + 2 * w] = static_cast<uint8_t>(byte);
          c[16 * lane + 2 * w + 1] = s + b > 8 ? static_cast<uint8_t>(byte + 1) : 0x80;  // 0x80: zero byte
          m[8 * lane + w] = static_cast<uint16_t>(1u << (16 - b - s));
        }
      }
    }
    for (int i = 0; i < 32; ++i) tb[i] = cb.t[i % 16];
    ctl_a = _mm256_load_si256(reinterpret_cast<const __m256i*>(ca));
    ctl_b = _mm256_load_si256(reinterpret_cast<const __m256i*>(cbb));
    mul_a = _mm256_load_si256(reinterpret_cast<const __m256i*>(ma));
    mul_b = _mm256_load_si256(reinterpret_cast<const __m256i*>(mb));
    table = _mm256_load_si256(reinterpret_cast<const __m256i*>(tb));
    shift = _mm_cvtsi32_si128(16 - b);
  }
  // The block's codes as int16 words: a = codes 0-15, b = codes 16-31 (coordinate order).
  // p: the block's first byte; reads 16 bytes.
  HWY_INLINE void Codes(const uint8_t* p, __m256i& a, __m256i& b) const {
    const __m256i x = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    a = _mm256_srl_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(x, ctl_a), mul_a), shift);
    b = _mm256_srl_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(x, ctl_b), mul_b), shift);
  }
  // The block's 32 table values as bytes, in the order of the class comment.
  HWY_INLINE __m256i Block(const uint8_t* p) const {
    __m256i a, b;
    Codes(p, a, b);
    return _mm256_shuffle_epi8(table, _mm256_packus_epi16(a, b));
  }
};

// int8 codes (q8: one byte per coordinate, signed): Block() as Unpacker's, with the table value
// code + 128 (the byte with its top bit flipped, in 1..255) in the same byte order.
struct ByteCodes {
  HWY_INLINE __m256i Block(const uint8_t* p) const {
    const __m256i x = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), _mm256_set1_epi8(-128));
    return _mm256_permute4x64_epi64(x, 0xD8);  // 8-byte groups (0, 2, 1, 3)
  }
};

// A 32- (64-) byte aligned buffer of `bytes` bytes inside `storage`.
inline uint8_t* AlignedTo(std::vector<uint8_t>& storage, size_t bytes, size_t align) {
  storage.resize(bytes + align);
  const uintptr_t p = reinterpret_cast<uintptr_t>(storage.data());
  return storage.data() + ((align - (p & (align - 1))) & (align - 1));
}
inline uint8_t* Aligned32(std::vector<uint8_t>& storage, size_t bytes) { return AlignedTo(storage, bytes, 32); }
inline uint8_t* Aligned64(std::vector<uint8_t>& storage, size_t bytes) { return AlignedTo(storage, bytes, 64); }



// The query of one pass of <= 4 heads: per block k and head slot h, 64 bytes at (k * 4 + h) * 64: the
// block's 32 q8 values in Block()'s byte order (0 past n), then the scales s_m of its 16 coordinate
// pairs as words, in the order of vpmaddubsw's pair sums.
constexpr size_t kQuerySlot = 64;
constexpr size_t kQueryBlock = kHeadsPerPass * kQuerySlot;

// a_h (+)= vpmaddwd(vpmaddubsw(t, q8_h), s_h) for the four heads of one block (qs: the block's 256
// bytes); kFirst: a_h = (no zeroing, no add). Written out: from intrinsics GCC 12 spills partial sums
// of the unrolled row (see AccumulatePairs).
#define RQ_SCORE_HEAD(q, s, a, first) \
  "vpmaddubsw " q "(%[qs]), %[t], " first "\n\t" "vpmaddwd " s "(%[qs]), " first ", " first "\n\t"
template <bool kFirst>
HWY_INLINE void ScoreFourHeads(__m256i t, const uint8_t* qs, __m256i& a0, __m256i& a1, __m256i& a2, __m256i& a3) {
  if constexpr (kFirst) {
    asm(RQ_SCORE_HEAD("0", "32", a0, "%[a0]") RQ_SCORE_HEAD("64", "96", a1, "%[a1]")
        RQ_SCORE_HEAD("128", "160", a2, "%[a2]") RQ_SCORE_HEAD("192", "224", a3, "%[a3]")
        : [a0] "=&x"(a0), [a1] "=&x"(a1), [a2] "=&x"(a2), [a3] "=&x"(a3)
        : [t] "x"(t), [qs] "r"(qs), "m"(*reinterpret_cast<const uint8_t(*)[kQueryBlock]>(qs)));
  } else {
    __m256i x;
    asm(RQ_SCORE_HEAD("0", "32", a0, "%[x]") "vpaddd %[x], %[a0], %[a0]\n\t"
        RQ_SCORE_HEAD("64", "96", a1, "%[x]") "vpaddd %[x], %[a1], %[a1]\n\t"
        RQ_SCORE_HEAD("128", "160", a2, "%[x]") "vpaddd %[x], %[a2], %[a2]\n\t"
        RQ_SCORE_HEAD("192", "224", a3, "%[x]") "vpaddd %[x], %[a3], %[a3]"
        : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3), [x] "=&x"(x)
        : [t] "x"(t), [qs] "r"(qs), "m"(*reinterpret_cast<const uint8_t(*)[kQueryBlock]>(qs)));
  }
}
#undef RQ_SCORE_HEAD

// isum[h * is_stride + r] = the block sums of row r (G <= 4 heads), r < rows; qs: the pass's query
// (kQueryBlock bytes per block). vpmaddubsw(table bytes 1..255, q8 in [-64, 64]) sums two products to
// at most 32640 (no saturation), vpmaddwd by the pairs' scales widens to int32. kFull > 0: the block count as a
// constant, else `full_runtime`.
template <size_t G, size_t kFull, class U>
void ScoreBlocks(const U& u, size_t bb, const uint8_t* codes, size_t rows, size_t code_bytes,
                 size_t full_runtime, const uint8_t* qs, int32_t* isum, size_t is_stride, const uint8_t* ahead,
                 size_t ahead_rows) {
  static_assert(G >= 1 && G <= kHeadsPerPass);
  const size_t full = kFull ? kFull : full_runtime;
  alignas(32) int32_t buf[8][G][8];  // buf[rr][h]: 8 partial sums of row r0 + rr (rows past the end: 0)
  for (size_t r0 = 0; r0 < rows; r0 += 8) {
    const size_t n = rows - r0 < 8 ? rows - r0 : 8;
    for (size_t rr = 0; rr < n; ++rr) {
      prefetch_row(ahead, ahead_rows, r0 + rr, code_bytes);
      const uint8_t* row = codes + (r0 + rr) * code_bytes;
      const __m256i zero = _mm256_setzero_si256();
      __m256i acc[4] = {zero, zero, zero, zero};
      if constexpr (G == 4) {
        __m256i a0, a1, a2, a3;
        ScoreFourHeads<true>(u.Block(row), qs, a0, a1, a2, a3);  // full >= 1 on this path
        for (size_t k = 1; k < full; ++k) ScoreFourHeads<false>(u.Block(row + k * bb), qs + k * kQueryBlock, a0, a1, a2, a3);
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
      } else {
        for (size_t k = 0; k < full; ++k) {
          const __m256i t = u.Block(row + k * bb);
          for (size_t h = 0; h < G; ++h) {
            const uint8_t* slot = qs + k * kQueryBlock + h * kQuerySlot;
            const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(slot));
            const __m256i sc = _mm256_load_si256(reinterpret_cast<const __m256i*>(slot + 32));
            acc[h] = _mm256_add_epi32(acc[h], _mm256_madd_epi16(_mm256_maddubs_epi16(t, q), sc));
          }
        }
      }
      for (size_t h = 0; h < G; ++h) _mm256_store_si256(reinterpret_cast<__m256i*>(buf[rr][h]), acc[h]);
    }
    for (size_t rr = n; rr < 8; ++rr) {
      for (size_t h = 0; h < G; ++h) _mm256_store_si256(reinterpret_cast<__m256i*>(buf[rr][h]), _mm256_setzero_si256());
    }
    for (size_t h = 0; h < G; ++h) {
      __m256i v[8];
      for (size_t rr = 0; rr < 8; ++rr) v[rr] = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf[rr][h]));
      // Eight horizontal sums at once: lane rr of t = sum of v[rr].
      const __m256i a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
      const __m256i c = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
      const __m256i t = _mm256_add_epi32(_mm256_permute2x128_si256(a, c, 0x20), _mm256_permute2x128_si256(a, c, 0x31));
      int32_t* dst = isum + h * is_stride + r0;
      if (n == 8) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), t);
      } else {
        alignas(32) int32_t sums[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(sums), t);
        for (size_t rr = 0; rr < n; ++rr) dst[rr] = sums[rr];
      }
    }
  }
}

// Block-scale (int4) K: fsum[h * is_stride + r] = sum_k sc[r][k] * float(block k's integer sum),
// r < rows, G <= 4 heads; sc: the rows' block scales, nb a row. The blocks' biases 128 q_sum are
// subtracted afterwards (RunIntWorkItem, for 8 rows at a time).
template <size_t G, size_t kFull>
void ScoreBlocksScaled(const Unpacker& u, size_t bb, const uint8_t* codes, size_t rows, size_t code_bytes,
                       size_t full_runtime, const uint8_t* qs, const float* sc, size_t nb, float* fsum, size_t is_stride,
                       const uint8_t* ahead, size_t ahead_rows) {
  static_assert(G >= 1 && G <= kHeadsPerPass);
  const size_t full = kFull ? kFull : full_runtime;
  alignas(32) float buf[8][G][8];  // buf[rr][h]: 8 partial sums of row r0 + rr (rows past the end: 0)
  for (size_t r0 = 0; r0 < rows; r0 += 8) {
    const size_t n = rows - r0 < 8 ? rows - r0 : 8;
    for (size_t rr = 0; rr < n; ++rr) {
      prefetch_row(ahead, ahead_rows, r0 + rr, code_bytes);
      const uint8_t* row = codes + (r0 + rr) * code_bytes;
      const float* srow = sc + (r0 + rr) * nb;
      __m256 acc[G];
      for (size_t h = 0; h < G; ++h) acc[h] = _mm256_setzero_ps();
      for (size_t k = 0; k < full; ++k) {
        const __m256i t = u.Block(row + k * bb);
        const __m256 scale = _mm256_broadcast_ss(srow + k);
        for (size_t h = 0; h < G; ++h) {
          const uint8_t* slot = qs + k * kQueryBlock + h * kQuerySlot;
          const __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(slot));
          const __m256i qsc = _mm256_load_si256(reinterpret_cast<const __m256i*>(slot + 32));
          const __m256i x = _mm256_madd_epi16(_mm256_maddubs_epi16(t, q), qsc);
          acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(x), scale, acc[h]);
        }
      }
      for (size_t h = 0; h < G; ++h) _mm256_store_ps(buf[rr][h], acc[h]);
    }
    for (size_t rr = n; rr < 8; ++rr) {
      for (size_t h = 0; h < G; ++h) _mm256_store_ps(buf[rr][h], _mm256_setzero_ps());
    }
    for (size_t h = 0; h < G; ++h) {
      __m256 v[8];
      for (size_t rr = 0; rr < 8; ++rr) v[rr] = _mm256_load_ps(buf[rr][h]);
      const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
      const __m256 c = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
      const __m256 t = _mm256_add_ps(_mm256_permute2f128_ps(a, c, 0x20), _mm256_permute2f128_ps(a, c, 0x31));
      float* dst = fsum + h * is_stride + r0;
      if (n == 8) {
        _mm256_storeu_ps(dst, t);
      } else {
        alignas(32) float sums[8];
        _mm256_store_ps(sums, t);
        for (size_t rr = 0; rr < n; ++rr) dst[rr] = sums[rr];
      }
    }
  }
}

// Value pass 1: rows (2p, 2p+1) of the chunk -> per block 64 bytes (t[code_2p], t[code_2p+1]) byte
// pairs in coordinate order: bytes 16g .. 16g + 15 are coordinates 8g .. 8g + 7. An odd last row is
// paired with itself (its partner gets weight 0). A half last block gets only its first 32 bytes.
template <size_t kFull, class U>
void DecodeValuePairs(const U& u, size_t bb, const uint8_t* codes, size_t rows, size_t code_bytes,
                      size_t full_runtime, bool half, uint8_t* pairs, const uint8_t* ahead, size_t ahead_rows) {
  const size_t full = kFull ? kFull : full_runtime;
  const U lu = u;  // a local copy: the stores to `pairs` (bytes) would make the compiler reload u's tables
  for (size_t p = 0; 2 * p < rows; ++p) {
    prefetch_row(ahead, ahead_rows, 2 * p, code_bytes);
    prefetch_row(ahead, ahead_rows, 2 * p + 1, code_bytes);
    const uint8_t* r0 = codes + 2 * p * code_bytes;
    const uint8_t* r1 = 2 * p + 1 < rows ? r0 + code_bytes : r0;
    for (size_t k = 0; k < full; ++k) {
      // Block()'s lane 0 holds coordinates 0-7 | 16-23, lane 1 8-15 | 24-31: the unpacks restore the order.
      const __m256i t0 = lu.Block(r0 + k * bb), t1 = lu.Block(r1 + k * bb);
      __m256i* out = reinterpret_cast<__m256i*>(pairs + (p * full + k) * 64);
      _mm256_store_si256(out, _mm256_unpacklo_epi8(t0, t1));
      if (half && k + 1 == full) continue;  // coordinates 16-31 of a half block are never read
      _mm256_store_si256(out + 1, _mm256_unpackhi_epi8(t0, t1));
    }
  }
}

// Broadcast weight pairs per head: kIntChunk weights, so kIntChunk / 2 pairs (ValueFullBlocks).
constexpr size_t kWeightPairStride = kIntChunk / 2;

// Value pass 2: vsum[h * vs_stride + k * 32 + i] (+)= sum_p w[h][p] . pair (coordinate order), G <= 4
// (first: =, the chunk's first piece of rows);
// wb: the weight pairs w16[2p] | w16[2p+1] << 16 in all eight lanes, kWeightPairStride per head.
// w_set_stride: registers between the weight sets of consecutive blocks (int4: one set per block;
// 0: the same weights for every block).
template <size_t G, size_t kFull>
void AccumulatePairs(const uint8_t* pairs, size_t n_pairs, size_t full_runtime, bool half, const __m256i* wb,
                     size_t w_set_stride, bool first, int32_t* vsum, size_t vs_stride) {
  static_assert(G >= 1 && G <= 4);
  const size_t full = kFull ? kFull : full_runtime;
  constexpr size_t kStride = kWeightPairStride;  // a constant, so the heads' weights are displacements
  for (size_t k = 0; k < full; ++k) {
    const size_t groups = half && k + 1 == full ? 2 : 4;  // a half last block: coordinates 0-15 only
    for (size_t g = 0; g < groups; g += 2) {
      const __m256i zero = _mm256_setzero_si256();
      __m256i a00 = zero, a01 = zero, a10 = zero, a11 = zero, a20 = zero, a21 = zero, a30 = zero, a31 = zero;
      const uint8_t* src = pairs + k * 64 + g * 16;
      const __m256i* wp = wb + k * w_set_stride;
      // a0 += x0 . w, a1 += x1 . w, w read from memory by both multiplies. Written out: from
      // intrinsics GCC 12 loads all four heads' weights first, runs out of registers and copies (or
      // spills) accumulators on every pair.
      const auto step = [](__m256i& a0, __m256i& a1, __m256i x0, __m256i x1, const __m256i& w) HWY_ATTR __attribute__((always_inline)) {
        __m256i t, u;
        asm("vpmaddwd %[w], %[x0], %[u]\n\t"
            "vpmaddwd %[w], %[x1], %[t]\n\t"
            "vpaddd %[u], %[a0], %[a0]\n\t"
            "vpaddd %[t], %[a1], %[a1]"
            : [a0] "+x"(a0), [a1] "+x"(a1), [t] "=&x"(t), [u] "=&x"(u)
            : [x0] "x"(x0), [x1] "x"(x1), [w] "m"(w));
      };
      const auto pair = [&](const uint8_t* at, const __m256i* w) HWY_ATTR __attribute__((always_inline)) {
        const __m256i x0 = _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(at)));
        const __m256i x1 = _mm256_cvtepu8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(at + 16)));
        step(a00, a01, x0, x1, w[0]);
        if constexpr (G > 1) step(a10, a11, x0, x1, w[kStride]);
        if constexpr (G > 2) step(a20, a21, x0, x1, w[2 * kStride]);
        if constexpr (G > 3) step(a30, a31, x0, x1, w[3 * kStride]);
      };
      const size_t row_step = full * 64;
      size_t p = 0;
      for (; p + 4 <= n_pairs; p += 4, src += 4 * row_step, wp += 4) {  // four pairs per turn: less loop overhead
        pair(src, wp);
        pair(src + row_step, wp + 1);
        pair(src + 2 * row_step, wp + 2);
        pair(src + 3 * row_step, wp + 3);
      }
      for (; p < n_pairs; ++p, src += row_step, ++wp) pair(src, wp);
      const __m256i a[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
      for (size_t h = 0; h < G; ++h) {
        __m256i* dst = reinterpret_cast<__m256i*>(vsum + h * vs_stride + k * 32 + g * 8);
        _mm256_storeu_si256(dst, first ? a[h][0] : _mm256_add_epi32(_mm256_loadu_si256(dst), a[h][0]));
        _mm256_storeu_si256(dst + 1, first ? a[h][1] : _mm256_add_epi32(_mm256_loadu_si256(dst + 1), a[h][1]));
      }
    }
  }
}

// Calls fn(std::integral_constant<size_t, F>) with F = full for 1..5 blocks (unrolled loops: head_dim
// 128 is 4 blocks; 5 is e.g. iso's 132 at head_dim 130), else 0 (runtime block count).
template <class Fn>
HWY_INLINE void WithBlockCount(size_t full, Fn&& fn) {
  switch (full) {
    case 1: fn(std::integral_constant<size_t, 1>()); break;
    case 2: fn(std::integral_constant<size_t, 2>()); break;
    case 3: fn(std::integral_constant<size_t, 3>()); break;
    case 4: fn(std::integral_constant<size_t, 4>()); break;
    case 5: fn(std::integral_constant<size_t, 5>()); break;
    default: fn(std::integral_constant<size_t, 0>()); break;
  }
}

// Calls fn(std::integral_constant<size_t, g>, h0) for each pass of g <= kHeadsPerPass of the G heads,
// h0 its first head (head slots as template arguments: the kernels' unrolled head loops).
template <class Fn>
HWY_INLINE void ForHeadPasses(size_t G, Fn&& fn) {
  for (size_t h0 = 0; h0 < G; h0 += kHeadsPerPass) {
    switch (G - h0 < kHeadsPerPass ? G - h0 : kHeadsPerPass) {
      case 1: fn(std::integral_constant<size_t, 1>(), h0); break;
      case 2: fn(std::integral_constant<size_t, 2>(), h0); break;
      case 3: fn(std::integral_constant<size_t, 3>(), h0); break;
      default: fn(std::integral_constant<size_t, kHeadsPerPass>(), h0); break;
    }
  }
}

// Scores of rows [0, rows) for all G heads (groups of <= 4 heads per pass over the codes).
// ahead: the next chunk's rows (ahead_rows of them), prefetched during the first pass of heads.
template <class U>
void ScoreFullBlocks(const U& u, size_t bb, const uint8_t* codes, size_t rows, size_t code_bytes, size_t full,
                     const uint8_t* qs, size_t G, int32_t* isum, size_t is_stride, const uint8_t* ahead,
                     size_t ahead_rows) {
  WithBlockCount(full, [&](auto kf) {
    constexpr size_t F = decltype(kf)::value;
    ForHeadPasses(G, [&](auto kg, size_t h0) {
      ScoreBlocks<decltype(kg)::value, F, U>(u, bb, codes, rows, code_bytes, full,
                                             qs + (h0 / kHeadsPerPass) * full * kQueryBlock, isum + h0 * is_stride, is_stride,
                                             ahead, h0 ? 0 : ahead_rows);
    });
  });
}

// Block-scale scores of rows [0, rows) for all G heads (float sums, ScoreBlocksScaled).
void ScoreFullBlocksScaled(const Unpacker& u, size_t bb, const uint8_t* codes, size_t rows, size_t code_bytes,
                           size_t full, const uint8_t* qs, const float* sc, size_t nb, size_t G, float* fsum,
                           size_t is_stride, const uint8_t* ahead, size_t ahead_rows) {
  WithBlockCount(full, [&](auto kf) {
    constexpr size_t F = decltype(kf)::value;
    ForHeadPasses(G, [&](auto kg, size_t h0) {
      ScoreBlocksScaled<decltype(kg)::value, F>(u, bb, codes, rows, code_bytes, full,
                                                qs + (h0 / kHeadsPerPass) * full * kQueryBlock, sc, nb,
                                                fsum + h0 * is_stride, is_stride, ahead, h0 ? 0 : ahead_rows);
    });
  });
}

// Values of rows [0, rows): vsum (+)= the weighted table values, all G heads (first: =). w16: the rows' 15-bit
// weights, `sets` weight sets of kIntChunk per head (int4: one per block, else 1), kIntChunk apart
// (w16 points at the caller's first row of head 0's first set); wb: room for passes x sets x kHeadsPerPass x
// kWeightPairStride registers, which get the weight pairs w16[2p] | w16[2p + 1] << 16 in all eight
// lanes (an odd last row pairs with 0), per pass of <= 4 heads set after set.
template <class U>
void ValueFullBlocks(const U& u, size_t bb, const uint8_t* codes, size_t rows, size_t code_bytes, size_t full,
                     bool half, const uint16_t* w16, size_t sets, size_t G, uint8_t* pairs, __m256i* wb, bool first,
                     int32_t* vsum, size_t vs_stride, const uint8_t* ahead, size_t ahead_rows) {
  const size_t np = (rows + 1) / 2, whole = rows / 2;
  for (size_t hs = 0; hs < G * sets; ++hs) {
    const size_t h = hs / sets, set = hs % sets;
    const uint16_t* wh = w16 + hs * kIntChunk;
    __m256i* dst = wb + (((h / kHeadsPerPass) * sets + set) * kHeadsPerPass + h % kHeadsPerPass) * kWeightPairStride;
#pragma GCC unroll 8
    for (size_t p = 0; p < whole; ++p) {
      uint32_t pair;
      std::memcpy(&pair, wh + 2 * p, sizeof(pair));  // w16[2p] | w16[2p + 1] << 16 (little-endian)
      dst[p] = _mm256_set1_epi32(static_cast<int>(pair));
    }
    if (whole < np) dst[whole] = _mm256_set1_epi32(wh[2 * whole]);
  }
  WithBlockCount(full, [&](auto kf) {
    constexpr size_t F = decltype(kf)::value;
    DecodeValuePairs<F, U>(u, bb, codes, rows, code_bytes, full, half, pairs, ahead, ahead_rows);
    const size_t set_stride = sets > 1 ? kHeadsPerPass * kWeightPairStride : 0;
    ForHeadPasses(G, [&](auto kg, size_t h0) {
      AccumulatePairs<decltype(kg)::value, F>(pairs, np, full, half, wb + h0 * sets * kWeightPairStride, set_stride, first,
                                              vsum + h0 * vs_stride, vs_stride);
    });
  });
}

#endif  // RQ_INT_ATTENTION_AVX2

#if RQ_INT_ATTENTION_512
#include "int_kernels_avx512-inl.h"
#endif

// The portable loops (every target without the AVX2 kernels; the scalar reference of this path).
// Coordinates [j0, j1) only: on AVX2 targets these loops also take a short tail after the blocks.
// One coordinate at a time: its table values for all rows (rows <= kIntChunk), then plain loops
// over rows that the compiler vectorizes.
inline void CoordinateTable(const IntCodebook& cb, const uint8_t* codes, size_t rows, size_t code_bytes, size_t j,
                            int32_t* t) {
  if (cb.bits == 8) {  // int8 codes: the byte with its top bit flipped (code + 128)
    for (size_t r = 0; r < rows; ++r) t[r] = codes[r * code_bytes + j] ^ 0x80;
    return;
  }
  for (size_t r = 0; r < rows; ++r) t[r] = cb.t[unpack_code(codes + r * code_bytes, j, cb.bits)];
}

void ScorePortable(const IntCodebook& cb, const uint8_t* codes, size_t rows, size_t code_bytes, const IntQueries& iq,
                   size_t G, int32_t* isum, size_t is_stride, size_t j0, size_t j1) {
  alignas(32) int32_t t[kIntChunk];
  for (size_t j = j0; j < j1; ++j) {
    CoordinateTable(cb, codes, rows, code_bytes, j, t);
    for (size_t h = 0; h < G; ++h) {
      const int32_t q = iq.value(h, j);
      int32_t* dst = isum + h * is_stride;
      for (size_t r = 0; r < rows; ++r) dst[r] += t[r] * q;
    }
  }
}

// Block-scale (int4) scores of coordinates [j0, j1): per 32-coordinate block, the exact integer sum of
// each (row, head) minus the block's bias 128 q_sum, times the row's block scale, added to fsum.
void ScorePortableScaled(const IntCodebook& cb, const uint8_t* codes, size_t rows, size_t code_bytes,
                         const IntQueries& iq, size_t G, const float* sc, size_t nb, float* fsum, size_t is_stride,
                         size_t j0, size_t j1) {
  alignas(32) int32_t t[kIntChunk];
  thread_local std::vector<int32_t> part;
  part.resize(G * kIntChunk);
  for (size_t b0 = j0; b0 < j1;) {
    const size_t b = b0 / kIntBlock, b1 = (b + 1) * kIntBlock < j1 ? (b + 1) * kIntBlock : j1;
    std::fill(part.begin(), part.end(), 0);
    for (size_t j = b0; j < b1; ++j) {
      CoordinateTable(cb, codes, rows, code_bytes, j, t);
      for (size_t h = 0; h < G; ++h) {
        const int32_t q = iq.value(h, j);
        int32_t* dst = part.data() + h * kIntChunk;
        for (size_t r = 0; r < rows; ++r) dst[r] += t[r] * q;
      }
    }
    for (size_t h = 0; h < G; ++h) {
      int32_t bias = 0;
      for (size_t j = b0; j < b1; ++j) bias += iq.value(h, j);
      bias *= kTableZero;
      const int32_t* src = part.data() + h * kIntChunk;
      float* dst = fsum + h * is_stride;
      for (size_t r = 0; r < rows; ++r) dst[r] += sc[r * nb + b] * static_cast<float>(src[r] - bias);
    }
    b0 = b1;
  }
}

// w16 + h * w_head_stride + (j / 32) * w_block_stride: the weights of coordinate j (w_block_stride 0:
// one set for all coordinates; int4: one set per 32-coordinate block).
void ValuePortable(const IntCodebook& cb, const uint8_t* codes, size_t rows, size_t code_bytes, size_t j0, size_t j1,
                   const uint16_t* w16, size_t w_head_stride, size_t w_block_stride, size_t G, int32_t* vsum,
                   size_t vs_stride) {
  alignas(32) int32_t t[kIntChunk];
  for (size_t j = j0; j < j1; ++j) {
    CoordinateTable(cb, codes, rows, code_bytes, j, t);
    for (size_t h = 0; h < G; ++h) {
      const uint16_t* w = w16 + h * w_head_stride + (j / kIntBlock) * w_block_stride;
      int32_t sum = 0;
      for (size_t r = 0; r < rows; ++r) sum += t[r] * static_cast<int32_t>(w[r]);
      vsum[h * vs_stride + j] += sum;
    }
  }
}

// The rows of a chunk in pieces whose block loads stay inside readable memory: rows whose loads
// would run past the readable bytes after the chunk (`tail`: the span's rows after the chunk plus
// its readable_after) are copied into `pad`.
template <class Fn>
void ForReadableRows(const uint8_t* codes, size_t rows, size_t tail, size_t code_bytes, size_t read_end,
                     std::vector<uint8_t>& pad, Fn&& fn) {
  size_t unsafe = 0;
  if (read_end > code_bytes) {
    unsafe = rows_past_readable(read_end - code_bytes, tail, code_bytes);
    // The in-place piece keeps a multiple of 8 rows: whole groups of the score reduction and whole
    // row pairs of the values (a page-end chunk of 128 rows with one unsafe row is 120 + 8 rather
    // than 127 + 1).
    if (unsafe > 0 && unsafe < rows) unsafe += (rows - unsafe) % 8;
    if (unsafe > rows) unsafe = rows;
  }
  if (rows > unsafe) fn(codes, rows - unsafe, size_t{0});
  if (unsafe) {
    pad.assign(unsafe * code_bytes + read_end, 0);
    std::memcpy(pad.data(), codes + (rows - unsafe) * code_bytes, unsafe * code_bytes);
    fn(pad.data(), unsafe, rows - unsafe);
  }
}

// Stores score(r) for the rows [0, rows) 8 at a time (score stores its lanes itself) and returns the
// largest of them (lanes past `rows` are stale and excluded).
template <class Score>
HWY_INLINE float StoreScoresMax(size_t rows, Score&& score) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const size_t N = hn::Lanes(df);
  auto vm = hn::Set(df, -std::numeric_limits<float>::infinity());
  size_t r = 0;
  for (; r + N <= rows; r += N) vm = hn::Max(vm, score(r));
  if (r < rows) vm = hn::Max(vm, hn::IfThenElse(hn::FirstN(df, rows - r), score(r), vm));
  return hn::GetLane(hn::MaxOfLanes(df, vm));
}

// int4 K: s[h][r] = (the block-scaled sums in s minus sum_k sct[k][r] beta[h][k]) * factor[h] for the
// nbeta SIMD blocks (the portable tail subtracted its own), and each head's largest s.
HWY_NOINLINE void ScaledScores(float* s, size_t rows, size_t G, const IntQueries& iq, const float* beta, size_t nbeta,
                               const float* sct, float* chunk_max) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  for (size_t h = 0; h < G; ++h) {
    const auto factor = hn::Set(df, iq.factor[h]);
    float* sh = s + h * kIntChunk;
    const float* bh = beta + h * nbeta;
    chunk_max[h] = StoreScoresMax(rows, [&](size_t r) HWY_ATTR {
      auto x = hn::LoadU(df, sh + r);
      for (size_t k = 0; k < nbeta; ++k) x = hn::NegMulAdd(hn::LoadU(df, sct + k * kIntChunk + r), hn::Set(df, bh[k]), x);
      x = hn::Mul(x, factor);
      hn::StoreU(x, df, sh + r);
      return x;
    });
  }
}

// int4 block scales of a chunk, row-major (nb a row) -> block-major (kIntChunk a block), rows <= kIntChunk.
void BlockMajor(const float* row_major, size_t rows, size_t nb, float* block_major) {
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const size_t N = hn::Lanes(df);
  size_t r = 0;
  if (nb == 4) {  // head_dim 97..128: de-interleave 4 at a time
    for (; r + N <= rows; r += N) {
      hn::Vec<decltype(df)> b0, b1, b2, b3;
      hn::LoadInterleaved4(df, row_major + r * 4, b0, b1, b2, b3);
      hn::StoreU(b0, df, block_major + r);
      hn::StoreU(b1, df, block_major + kIntChunk + r);
      hn::StoreU(b2, df, block_major + 2 * kIntChunk + r);
      hn::StoreU(b3, df, block_major + 3 * kIntChunk + r);
    }
  }
  for (; r < rows; ++r) {
    for (size_t b = 0; b < nb; ++b) block_major[b * kIntChunk + r] = row_major[r * nb + b];
  }
}

void RunIntWorkItem(const WorkItem& item) {
  const IntQueries& iq = *item.int_queries;
  const IntCodebook& kcb = *item.k_int;
  const IntCodebook& vcb = *item.v_int;
  const KernelFormat& kf = *item.k_format;
  const KernelFormat& vf = *item.v_format;
  const size_t G = item.gqa_group, vn = vf.n;
  // int4 K / V: a scale per 32-coordinate block (nbk / nbv of them a row) instead of a row norm.
  const bool kblk = kf.block_scale, vblk = vf.block_scale;
  const size_t nbk = kblk ? kf.n_blocks : 1, nbv = vblk ? vf.n_blocks : 1;
  // Blocks of 32 coordinates; on AVX2 the last one may be partial: its extra query lanes are 0 and
  // its extra value sums are never read, so garbage codes past the row end do no harm (a last block
  // of <= 16 coordinates is only half computed). Without AVX2 the portable loops do everything.
#if RQ_INT_ATTENTION_AVX2
  const size_t kfull = SimdBlocks(iq.n), vfull = SimdBlocks(vn);
  const bool vhalf = HalfLastBlock(vn);
#else
  const size_t kfull = 0, vfull = 0;
#endif
  const size_t ktail = kfull * kIntBlock < iq.n ? kfull * kIntBlock : iq.n;  // first portable coordinate
  const size_t vtail = vfull * kIntBlock < vn ? vfull * kIntBlock : vn;

  thread_local std::vector<float> fscratch;
  thread_local std::vector<int32_t> iscratch;
  thread_local std::vector<uint16_t> wscratch;
  thread_local std::vector<uint8_t> pad;
  fscratch.resize(G * kIntChunk + 3 * kIntChunk + kIntChunk * (2 * nbk + 2 * nbv));
  float* s = fscratch.data();        // G x chunk scores (int4 K: first the block-scaled sums)
  float* kn = s + G * kIntChunk;     // chunk K norms
  float* vnorm = kn + kIntChunk;     // chunk V norms
  float* ksc = vnorm + kIntChunk;    // int4 K: the chunk's block scales, row-major (nbk a row)
  float* vsc = ksc + kIntChunk * nbk;  // int4 V: row-major, then vsct: block-major (kIntChunk a block)
  float* vsct = vsc + kIntChunk * nbv;
  float* ksct = vsct + kIntChunk * nbv;  // int4 K: block-major copy (kIntChunk a block)
  float* pexp = ksct + kIntChunk * nbk;  // int4 V: one head's exp(s - max) of the chunk
  const size_t vs_stride = vfull * kIntBlock > vn ? vfull * kIntBlock : vn;  // value sums per head
  iscratch.resize(G * kIntChunk + G * vs_stride);
  int32_t* isum = iscratch.data();              // G x chunk
  int32_t* vsum = isum + G * kIntChunk;         // G x vs_stride
  wscratch.resize(G * nbv * kIntChunk);
  uint16_t* w16 = wscratch.data();              // G x nbv x chunk (one weight set per V block for int4)
  thread_local std::vector<float> vmax;  // per weight set: the chunk's largest V norm / block scale
  vmax.resize(nbv);
  thread_local std::vector<float> chunk_max;
  thread_local std::vector<int32_t> wsum;
  chunk_max.resize(G);
  wsum.resize(G * nbv);
  namespace hn = hwy::HWY_NAMESPACE;
  const hn::CappedTag<float, 8> df;
  const hn::RebindToSigned<decltype(df)> di;
  const size_t N = hn::Lanes(df);

#if RQ_INT_ATTENTION_AVX2
  // The queries in ScoreBlocks' layout: per pass of <= 4 heads, per block, per head slot 64 bytes.
  thread_local std::vector<uint8_t> q_bytes;
  const size_t passes = (G + kHeadsPerPass - 1) / kHeadsPerPass;
  uint8_t* qs = Aligned32(q_bytes, passes * kfull * kQueryBlock);
  if (G % kHeadsPerPass != 0) std::memset(qs, 0, passes * kfull * kQueryBlock);  // empty head slots read as 0
  // Block() order is natural order with the 8-byte groups (0, 2, 1, 3): one vpermq per 32 values,
  // and the same for the 16 pair scales (groups of 4 words).
  for (size_t h = 0; h < G; ++h) {
    for (size_t k = 0; k < kfull; ++k) {
      uint8_t* slot = qs + ((h / kHeadsPerPass) * kfull + k) * kQueryBlock + (h % kHeadsPerPass) * kQuerySlot;
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(iq.q8.data() + h * iq.stride + k * kIntBlock));
      const __m256i sc = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(iq.pair_scale.data() + h * (iq.stride / 2) + k * (kIntBlock / 2)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(slot), _mm256_permute4x64_epi64(q, 0xD8));
      _mm256_store_si256(reinterpret_cast<__m256i*>(slot + 32), _mm256_permute4x64_epi64(sc, 0xD8));
    }
  }
  std::optional<Unpacker> ku, vu;  // 2..4-bit tables (int8 codes: ByteCodes)
  if (kfull && kcb.bits != 8) ku.emplace(kcb);
  if (vfull && vcb.bits != 8) vu.emplace(vcb);
  // fn(the code source of K or V): the Unpacker, or ByteCodes for int8 codes
  const auto with_codes = [](const std::optional<Unpacker>& u, auto&& fn) HWY_ATTR {
    if (u) {
      fn(*u);
    } else {
      fn(ByteCodes{});
    }
  };
  thread_local std::vector<uint8_t> pair_bytes, wb_bytes;
  uint8_t* pairs = Aligned32(pair_bytes, (kIntChunk / 2) * vfull * 64);
  __m256i* wb = reinterpret_cast<__m256i*>(Aligned32(wb_bytes, passes * kHeadsPerPass * nbv * kWeightPairStride * 32));
#endif
#if RQ_INT_ATTENTION_512
  // AVX-512 VBMI + VNNI kernels for the rows that fit them (int_kernels_avx512-inl.h); they read each
  // row with a masked load, so no row is copied for its loads' sake.
  std::optional<Unpacker512> ku512, vu512;
  if (Fits512(kf, kcb) && iq.n == kf.n) ku512.emplace(kcb, kf.n);
  if (Fits512(vf, vcb)) vu512.emplace(vcb, vf.n);
  thread_local std::vector<uint8_t> q512_bytes;
  uint8_t* qs512 = nullptr;
  if (ku512) {
    qs512 = Aligned64(q512_bytes, passes * ku512->blocks * kQueryBlock512);
    QueryBytes512(iq, G, ku512->blocks, qs512);
  }
  const size_t k_read_end = ku512 ? kf.code_bytes : BlockReadEnd(kcb, kfull);
  const size_t v_read_end = vu512 ? vf.code_bytes : BlockReadEnd(vcb, vfull);
#elif RQ_INT_ATTENTION_AVX2
  const size_t k_read_end = BlockReadEnd(kcb, kfull), v_read_end = BlockReadEnd(vcb, vfull);
#else
  const size_t k_read_end = 0, v_read_end = 0;
#endif

  // int4 K: the bias 128 q_sum of each head and SIMD block (subtracted after ScoreFullBlocksScaled,
  // in float: kbeta[h * kfull + k]; the portable tail subtracts its own blocks' exactly).
  thread_local std::vector<float> kbeta;
  kbeta.assign(kblk ? G * kfull : 0, 0.0f);
  for (size_t h = 0; h < G && !kbeta.empty(); ++h) {
    for (size_t k = 0; k < kfull; ++k) {
      int32_t sum = 0;
      for (size_t j = k * kIntBlock; j < (k + 1) * kIntBlock && j < iq.n; ++j) sum += iq.value(h, j);
      kbeta[h * kfull + k] = static_cast<float>(kTableZero * sum);
    }
  }

  for_each_chunk(item, vf.stride, kIntChunk, [&](const PageSpan& kp, size_t k_off, const PageSpan& vp, size_t v_off, size_t rows, const ChunkAhead& ahead) {
    const uint8_t* kcodes = kp.codes + k_off * kf.code_bytes;
    const uint8_t* vcodes = vp.codes + v_off * vf.code_bytes;
    // Software prefetch of the next chunk (`ahead`): for_each_chunk asks for its side values, the
    // kernels for one line per code row as they read this chunk's matching row (prefetch_row). A
    // burst for the whole next chunk at the chunk's start (sessions 2-6) stalled the loads instead
    // (docs/decisions.md).
    // Side planes: one fp16 norm per row, or (int4) nbk / nbv block scales per row.
    HalvesToFloats(kp.side + k_off * kf.side_bytes, rows * nbk, kblk ? ksc : kn);
    HalvesToFloats(vp.side + v_off * vf.side_bytes, rows * nbv, vblk ? vsc : vnorm);
    if (kblk) BlockMajor(ksc, rows, nbk, ksct);  // (the bias correction of the scores)

    // Scores. Norm formats: ScoreFullBlocks writes every row of isum, ScorePortable adds the tail
    // coordinates. int4: float sums into s, block by block.
    if (kblk) {
      std::memset(s, 0, G * kIntChunk * sizeof(float));
    } else if (!kfull) {
      std::memset(isum, 0, G * kIntChunk * sizeof(int32_t));
    }
    ForReadableRows(kcodes, rows, readable_tail(kp, k_off, rows, kf.code_bytes), kf.code_bytes, k_read_end, pad,
                    [&](const uint8_t* codes, size_t nr, size_t r0) {
#if RQ_INT_ATTENTION_512
                      if (ku512 && !kblk) {
                        ScoreAll512(*ku512, codes, nr, kf.code_bytes, qs512, G, isum + r0, kIntChunk, ahead.k_codes,
                                    r0 == 0 ? ahead.rows : 0);
                        return;
                      }
#endif
                      if (kblk) {
#if RQ_INT_ATTENTION_512
                        if (ku512) {
                          ScoreAllScaled512(*ku512, codes, nr, kf.code_bytes, qs512, ksc + r0 * nbk, nbk, G, s + r0,
                                            kIntChunk, ahead.k_codes, r0 == 0 ? ahead.rows : 0);
                          return;
                        }
#endif
#if RQ_INT_ATTENTION_AVX2
                        if (kfull) {
                          ScoreFullBlocksScaled(*ku, 4 * kcb.bits, codes, nr, kf.code_bytes, kfull, qs, ksc + r0 * nbk, nbk,
                                                G, s + r0, kIntChunk, ahead.k_codes, r0 == 0 ? ahead.rows : 0);
                        }
#endif
                        if (ktail < iq.n) {
                          ScorePortableScaled(kcb, codes, nr, kf.code_bytes, iq, G, ksc + r0 * nbk, nbk, s + r0, kIntChunk,
                                              ktail, iq.n);
                        }
                        return;
                      }
#if RQ_INT_ATTENTION_AVX2
                      if (kfull) {
                        with_codes(ku, [&](const auto& u) HWY_ATTR {
                          ScoreFullBlocks(u, 4 * kcb.bits, codes, nr, kf.code_bytes, kfull, qs, G, isum + r0, kIntChunk, ahead.k_codes,
                                          r0 == 0 ? ahead.rows : 0);
                        });
                      }
#endif
                      if (ktail < iq.n) ScorePortable(kcb, codes, nr, kf.code_bytes, iq, G, isum + r0, kIntChunk, ktail, iq.n);
                    });
    // s = (isum - 128 q_sum) * factor * |k| (int4: ScaledScores) and each head's largest s (lanes past
    // `rows` excluded).
    if (kblk) {
      ScaledScores(s, rows, G, iq, kbeta.data(), kbeta.size() / G, ksct, chunk_max.data());
    } else {
      for (size_t h = 0; h < G; ++h) {
        const auto bias = hn::Set(di, kTableZero * iq.q_sum[h]);
        const auto factor = hn::Set(df, iq.factor[h]);
        const int32_t* ih = isum + h * kIntChunk;
        float* sh = s + h * kIntChunk;
        chunk_max[h] = StoreScoresMax(rows, [&](size_t r) HWY_ATTR {
          const auto x = hn::Mul(hn::Mul(hn::ConvertTo(df, hn::Sub(hn::LoadU(di, ih + r), bias)), factor), hn::LoadU(df, kn + r));
          hn::StoreU(x, df, sh + r);
          return x;
        });
      }
    }
    // The chunk's largest V norm: the scale of every head's 15-bit weights p * |v| (p <= 1). int4: per
    // block, the largest scale of that block (a block of tiny values keeps its own 15 bits).
    if (vblk) BlockMajor(vsc, rows, nbv, vsct);  // one weight set per block
    const float* vscale = vblk ? vsct : vnorm;  // weight set b: vscale + b * kIntChunk
    for (size_t b = 0; b < nbv; ++b) {
      const float* src = vscale + b * kIntChunk;
      auto vnm = hn::Zero(df);
      size_t r = 0;
      for (; r + N <= rows; r += N) vnm = hn::Max(vnm, hn::LoadU(df, src + r));
      if (r < rows) vnm = hn::Max(vnm, hn::IfThenElseZero(hn::FirstN(df, rows - r), hn::LoadU(df, src + r)));
      vmax[b] = hn::GetLane(hn::MaxOfLanes(df, vnm));
    }

    // Online softmax and the weights, one pass per head (int4: then one weight set per further block
    // from the same exponentials).
    for (size_t h = 0; h < G; ++h) {
      uint16_t* wh = w16 + h * nbv * kIntChunk;
      if (vblk) {
        SoftmaxToWeights16<true>(s + h * kIntChunk, rows, chunk_max[h], vscale, vmax[0], item.max[h], item.denom[h],
                                 item.acc + h * vf.stride, vn, wh, &wsum[h * nbv], pexp);
      } else {
        SoftmaxToWeights16(s + h * kIntChunk, rows, chunk_max[h], vscale, vmax[0], item.max[h], item.denom[h],
                           item.acc + h * vf.stride, vn, wh, &wsum[h]);
      }
      for (size_t b = 1; b < nbv; ++b) {
        BlockWeights16(pexp, rows, vscale + b * kIntChunk, vmax[b], wh + b * kIntChunk, &wsum[h * nbv + b]);
      }
    }

    // Values (the first piece of rows writes the SIMD blocks' sums; the portable tail adds).
    if (!vfull) {
      std::memset(vsum, 0, G * vs_stride * sizeof(int32_t));
    } else if (vtail < vn) {
      for (size_t h = 0; h < G; ++h) std::memset(vsum + h * vs_stride + vtail, 0, (vn - vtail) * sizeof(int32_t));
    }
    ForReadableRows(vcodes, rows, readable_tail(vp, v_off, rows, vf.code_bytes), vf.code_bytes, v_read_end, pad,
                    [&](const uint8_t* codes, size_t nr, size_t r0) {
#if RQ_INT_ATTENTION_512
                      if (vu512) {
                        ValueAll512(*vu512, codes, nr, vf.code_bytes, w16 + r0, nbv, G, r0 == 0, vsum, vs_stride, ahead.v_codes,
                                    r0 == 0 ? ahead.rows : 0);
                        return;
                      }
#endif
#if RQ_INT_ATTENTION_AVX2
                      if (vfull) {
                        with_codes(vu, [&](const auto& u) HWY_ATTR {
                          ValueFullBlocks(u, 4 * vcb.bits, codes, nr, vf.code_bytes, vfull, vhalf, w16 + r0, nbv, G, pairs,
                                          wb, r0 == 0, vsum, vs_stride, ahead.v_codes, r0 == 0 ? ahead.rows : 0);
                        });
                      }
#endif
                      if (vtail < vn) {
                        ValuePortable(vcb, codes, nr, vf.code_bytes, vtail, vn, w16 + r0, nbv * kIntChunk,
                                      vblk ? kIntChunk : 0, G, vsum, vs_stride);
                      }
                    });
    for (size_t h = 0; h < G; ++h) {
      float* a = item.acc + h * vf.stride;
      const int32_t* vh = vsum + h * vs_stride;
      if (!vblk) {
        const int32_t bias = kTableZero * wsum[h];
        const float vfactor = vcb.alpha * (vmax[0] / static_cast<float>(kWeightLevels));
        for (size_t j = 0; j < vn; ++j) a[j] += static_cast<float>(vh[j] - bias) * vfactor;
        continue;
      }
      for (size_t b = 0; b < nbv; ++b) {  // int4: each block's own weights
        const int32_t bias = kTableZero * wsum[h * nbv + b];
        const float vfactor = vcb.alpha * (vmax[b] / static_cast<float>(kWeightLevels));
        const size_t j1 = (b + 1) * kIntBlock < vn ? (b + 1) * kIntBlock : vn;
        for (size_t j = b * kIntBlock; j < j1; ++j) a[j] += static_cast<float>(vh[j] - bias) * vfactor;
      }
    }

  });
}

}  // namespace HWY_NAMESPACE
}  // namespace rq::attn_detail
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace rq::attn_detail {

HWY_EXPORT(RunIntWorkItem);

void run_int_work_item(const WorkItem& item) { HWY_DYNAMIC_DISPATCH(RunIntWorkItem)(item); }

}  // namespace rq::attn_detail
#endif  // HWY_ONCE
