// Fast fused quantize-and-append kernel (AppendParams::exact = 0, the default; include/rq/cuda/
// append.hpp), private to cuda/. Same job as append_kernel.cuh (whose staging and loading helpers it
// reuses), computed for speed instead of bit-identity (docs/decisions.md):
//  - fp32 throughout, FMA contraction allowed, sums of squares in fp32 (four accumulators and a tree);
//  - the rotation is applied to x itself, and the decision thresholds are scaled by the vector's
//    norm (and sqrt(n) for the Hadamard) instead of dividing every coordinate by the norm;
//  - quantization (2 and 3 bits, PolyQuantizer below) as code = floor(half + g(y / scale)) with an
//    odd polynomial g through the positive thresholds (g(t[half + i]) = i + 1), one saturating and
//    one rounding-down FMA, the code's float bits added into the packed words; (4 bits,
//    FastQuantizer) by the symmetric codebook (as append_quantize.cuh): code = half + c for y >= 0
//    and half - 1 - c for y < 0, with c = #{i : |y| >= t[half + i] * scale} counted as the sum of
//    comparison masks (one FSET each) - the strict '>' of the negative side is not kept, it only
//    matters for |y| exactly on a threshold;
//  - ||C[idx]||^2 from counts: N C[half]^2 + sum_i (C[half+i+1]^2 - C[half+i]^2) #{|y| >= t_i}
//    (popcounts of the packed codes, or sums of the comparison masks).
// So a code can differ from rq::Codec::encode's only where the reference's rotated, normalized
// coordinate lies within float rounding of a threshold, and a stored norm only by fp16 rounding of
// a float that differs in its last bits (include/rq/cuda/harness.hpp checks both).
//
// One thread per vector; a block encodes one or more tiles of 64 consecutive tokens of one KV head
// and role (tables built once), rows staged into shared memory with cp.async, the next tile's copy
// in flight while the current one is encoded (two buffers; by default the launch is one wave of
// resident blocks, 6 per SM, so memory transfer and encoding overlap). Turbo's D(s1) flips the input's sign bits before
// conversion; D(s2) is folded into the codes: the code of -y is the mirror of y's (levels - 1 - code),
// which one XOR per packed word applies at the end; with the threshold quantizer the sign test of
// such a coordinate is y > 0, i.e. not (y < smallest denormal), so exact zeros keep the reference's
// code (-0 >= 0); the polynomial one gives such an exact zero half - 1 (one level off, at the
// threshold 0, which the check allows).
// Inputs whose sum of squares is below 2^-40 (zero vectors, tiny vectors) take a rare path: x
// (turbo: y, the FWHT of tiny values being an exact fixed-point sum) is multiplied by 2^32 up to
// five times, exactly, so that the thresholds and the polynomial's coefficients stay normal floats;
// codes are 0 where 1/norm overflows (the reference then quantizes NaNs), and a norm that is 0 in
// float is a zero vector.
#pragma once

#include <cuda_fp16.h>

#include <atomic>

#include "append_kernel.cuh"

namespace rq::cuda::detail {

/// Whether 1 / norm rounds to infinity in fp32 (norm >= 0 or NaN): 1 / x overflows exactly for
/// x <= 2^-128 (the next float, 2^-128 + 2^-149, has 1 / x = 2^128 (1 - 2^-21) < FLT_MAX + ulp / 2).
/// One comparison instead of a correctly rounded division; the same answer for every norm.
__device__ __forceinline__ bool reciprocal_overflows(float norm) { return norm <= 0x1p-128f; }

/// 0 / 0xffffffff mask of |v| >= t (one FSET with an absolute-value operand).
__device__ __forceinline__ uint32_t mask_abs_ge(float v, float t) {
  uint32_t m;
  asm("{\n\t.reg .f32 a;\n\tabs.f32 a, %1;\n\tset.ge.u32.f32 %0, a, %2;\n\t}" : "=r"(m) : "f"(v), "f"(t));
  return m;
}

/// 0 / 0xffffffff mask of v < b.
__device__ __forceinline__ uint32_t mask_lt(float v, float b) {
  uint32_t m;
  asm("set.lt.u32.f32 %0, %1, %2;" : "=r"(m) : "f"(v), "f"(b));
  return m;
}

/// E input elements as floats from 16-byte words at src (fp32, fp16 or bf16 per `type`); with XOR,
/// word q is XORed with masks[q] first (turbo's D(s1) on the sign bits; the masks are in the
/// input's format, see TurboSignTables in append_tables.cuh). Only the first `words` words are read,
/// the rest are zeros (the two-lane rotor kernel's padding slots past the row).
template <int E, bool XOR>
__device__ __forceinline__ void load_masked_row(const uint4* src, const uint4* masks, InputType type, float* x,
                                                int words = E) {
  if (type == InputType::F32) {
#pragma unroll
    for (int q = 0; q < E / 4; ++q) {
      uint4 w = q < words ? src[q] : make_uint4(0u, 0u, 0u, 0u);
      if constexpr (XOR) xor_words(w, masks[q]);
      x[4 * q] = __uint_as_float(w.x), x[4 * q + 1] = __uint_as_float(w.y);
      x[4 * q + 2] = __uint_as_float(w.z), x[4 * q + 3] = __uint_as_float(w.w);
    }
    return;
  }
  auto load16 = [&](auto bf16) {
#pragma unroll
    for (int q = 0; q < E / 8; ++q) {
      uint4 w = q < words ? src[q] : make_uint4(0u, 0u, 0u, 0u);
      if constexpr (XOR) xor_words(w, masks[q]);
#pragma unroll
      for (int e = 0; e < 8; ++e) x[8 * q + e] = element16<decltype(bf16)::value>(w, e);
    }
  };
  if (type == InputType::BF16) {
    load16(std::true_type{});
  } else {
    load16(std::false_type{});
  }
}

/// The fast quantizer for 4 bits: the positive thresholds scaled to the unnormalized rotated
/// vector, and per threshold minus the number of coordinates at or above it (sums of 0 / -1 masks).
/// Codes are packed as (c ^ sign mask) & (2^BITS - 1) and need the final XOR with field_base.
template <int BITS>
struct FastQuantizer {
  static constexpr int kHalf = 1 << (BITS - 1);
  static constexpr int kPositive = kHalf - 1;
  static constexpr bool kFinalCodes = false;  // packed fields still need SymmetricQuantizer::field_base
  static constexpr float kPlainBias = 0.0f;      // emit's bias: sign test y < 0
  static constexpr float kMirrorBias = 0x1p-149f;  // of a coordinate mirrored afterwards: y < smallest denormal
  float t[kPositive];
  uint32_t at_or_above[kPositive];  // minus the count, mod 2^32

  /// The shared parameters: the positive thresholds t[half + i] (thread i < kPositive reads t[half + i]).
  struct Params {
    float t;
  };
  __device__ __forceinline__ static Params load_params(const AppendJobArgs& job, int tid) {
    return {tid < kPositive ? cold_load(job.quantizer + kHalf + tid) : 0.0f};  // thresholds
  }
  __device__ __forceinline__ static void fill_params(const Params& in, float* out, int tid) {
    if (tid < kPositive) out[tid] = in.t;
  }
  __device__ __forceinline__ void prepare(const float* params, float scale) {
#pragma unroll
    for (int i = 0; i < kPositive; ++i) t[i] = params[i] * scale, at_or_above[i] = 0u;
  }
  /// As prepare; the one- and two-lane kernels pass 1 / scale too (the polynomial quantizer's).
  __device__ __forceinline__ void prepare(const float* params, float scale, float /*inv_scale*/) { prepare(params, scale); }
  __host__ __device__ static constexpr uint32_t word_start(int /*word*/, int /*n_codes*/) { return 0u; }

  /// Quantizes y as code J of the row and adds its pre-field ((c ^ sign mask) & (2^BITS - 1)) at bit
  /// J * BITS of words; `bias` is 0, or the smallest denormal for a coordinate whose code is mirrored
  /// afterwards (see the file comment).
  template <int J, int WORDS>
  __device__ __forceinline__ void emit(float y, float bias, uint32_t (&words)[WORDS]) {
    constexpr int kBit = J * BITS, kWord = kBit >> 5, kShift = kBit & 31;
    uint32_t sum = 0;
#pragma unroll
    for (int i = 0; i < kPositive; ++i) {
      const uint32_t m = mask_abs_ge(y, t[i]);
      at_or_above[i] += m;
      sum += m;
    }
    const uint32_t field = ((0u - sum) ^ mask_lt(y, bias)) & ((1u << BITS) - 1u);
    words[kWord] += field << kShift;
    if constexpr (kShift + BITS > 32) words[kWord + 1] += field >> (32 - kShift);
  }

  /// n[i] = #{codes with |level| index >= i + 1} over the emitted codes (the words are not needed).
  template <int NCODES, int WORDS>
  __device__ __forceinline__ void counts(const uint32_t (&)[WORDS], uint32_t (&n)[kPositive]) const {
#pragma unroll
    for (int i = 0; i < kPositive; ++i) n[i] = 0u - at_or_above[i];
  }
};

/// The fast quantizer for 2 and 3 bits: code = floor(half + g(u)) clamped to [0, levels - 1], where
/// u = y / scale is the normalized coordinate and g(u) = sum_i a_i u^(2i+1) the odd polynomial with
/// g(t[half + i]) = i + 1 (odd, so g(t[half - 2 - i]) = -(i + 1) too). g is increasing on [0, 1]
/// (codec_tables.cpp refuses codebooks where it is not), so the code is the codebook's except within
/// float rounding of a threshold. Per code: y^2, half - 2 FFMA, one saturating FFMA
/// s = (half + g) / levels (+ 2^-22) in [0, 1], one FFMA rounding down, 2^23 + floor(s levels'),
/// whose bits 0x4b000000 + code are added at the field (one LEA): the exponent bits fall off bit 31
/// or land on compile-time known bits, which the words start without (word_start). Codes are final
/// (no field_base XOR); counts per level come from popcounts of the packed words.
template <int BITS>
struct PolyQuantizer {
  static_assert(BITS == 2 || BITS == 3, "polynomial quantizer: 2 or 3 bits");
  static constexpr int kHalf = 1 << (BITS - 1);
  static constexpr int kPositive = kHalf - 1;
  static constexpr int kLevels = 1 << BITS;
  static constexpr bool kFinalCodes = true;
  static constexpr uint32_t kExponent = 0x4b000000u;  // bits of 2^23
  // emit's bias, the addend of s: 1/2 + 2^-22 puts u = 0 at half; for a coordinate mirrored afterwards
  // 1/2 - 2^-22 puts it at half - 1, mirrored to half (the reference's code of -0).
  static constexpr float kPlainBias = 0.5f + 0x1p-22f;
  static constexpr float kMirrorBias = 0.5f - 0x1p-22f;
  float k[kPositive];  // coefficient of y^(2i+1) in (half + g(y / scale)) / levels - 1/2

  /// The shared parameters a_i / levels: DeviceCodec::code_polynomial (make_codec_tables solves
  /// them once on the host; thread i < kPositive reads a_i / levels).
  struct Params {
    float a;
  };
  __device__ __forceinline__ static Params load_params(const AppendJobArgs& job, int tid) {
    return {tid < kPositive ? cold_load(job.quantizer + tid) : 0.0f};  // code_polynomial
  }
  __device__ __forceinline__ static void fill_params(const Params& in, float* out, int tid) {
    if (tid < kPositive) out[tid] = in.a;
  }
  __device__ __forceinline__ void prepare(const float* params, float scale) { prepare(params, scale, 1.0f / scale); }
  /// With 1 / scale given: the one- and two-lane kernels pass rsqrt(sum of squares) (MUFU.RSQ, within
  /// 2 ulp), which moves the thresholds by ~1e-7 of u, as float rounding does (harness::check_append
  /// explains a differing code within 1e-5 of a threshold), for ~10 instructions fewer than a division.
  __device__ __forceinline__ void prepare(const float* params, float /*scale*/, float inv) {
    const float inv2 = inv * inv;
    float f = inv;
#pragma unroll
    for (int i = 0; i < kPositive; ++i) k[i] = params[i] * f, f *= inv2;
  }

  /// What word `word` of a row of n_codes codes starts with: minus the exponent bits that the emits
  /// add to it (0x4b000000 << shift for shifts < 8; the top of a field that straddles into it).
  __host__ __device__ static constexpr uint32_t word_start(int word, int n_codes) {
    uint32_t garbage = 0;
    for (int j = 0; j < n_codes; ++j) {
      const int bit = j * BITS, w = bit >> 5, shift = bit & 31;
      if (w == word) garbage += kExponent << shift;
      if (w + 1 == word && shift + BITS > 32) garbage += kExponent >> (32 - shift);
    }
    return 0u - garbage;
  }

  template <int J, int WORDS>
  __device__ __forceinline__ void emit(float y, float bias, uint32_t (&words)[WORDS]) const {
    constexpr int kBit = J * BITS, kWord = kBit >> 5, kShift = kBit & 31;
    // s = (half + g) / levels +- 2^-22 in [0, 1] (bias), floor(s levels (1 - 2^-22)): s = 1 gives
    // levels - 1, u = 0 half (or half - 1, see kMirrorBias); the thresholds move by ~1e-7 of u.
    constexpr float kTop = static_cast<float>(kLevels) * (1.0f - 0x1p-22f);
    float p = k[kPositive - 1];
    if constexpr (kPositive > 1) {
      const float v = y * y;
#pragma unroll
      for (int i = kPositive - 2; i >= 0; --i) p = fmaf(p, v, k[i]);
    }
    float s;
    asm("fma.rn.sat.f32 %0, %1, %2, %3;" : "=f"(s) : "f"(p), "f"(y), "f"(bias));
    const uint32_t b = __float_as_uint(__fmaf_rd(s, kTop, 0x1p23f));         // 0x4b000000 + code
    words[kWord] += b << kShift;
    if constexpr (kShift + BITS > 32) words[kWord + 1] += b >> (32 - kShift);
  }

  /// n[i] = #{codes with |level| index >= i + 1} among the NCODES packed codes (fields from bit 0):
  /// the magnitude bits of a field are c_k = b_k XNOR b_top, aligned on the field's first bit by
  /// funnel shifts, then counted under the mask of first bits.
  template <int NCODES, int WORDS>
  __device__ __forceinline__ void counts(const uint32_t (&w)[WORDS], uint32_t (&n)[kPositive]) const {
#pragma unroll
    for (int i = 0; i < kPositive; ++i) n[i] = 0u;
#pragma unroll
    for (int i = 0; i < WORDS; ++i) {
      const uint32_t first = first_bits(i, NCODES);
      if (first == 0u) continue;
      const uint32_t next = i + 1 < WORDS ? w[i + 1 < WORDS ? i + 1 : i] : 0u;
      if constexpr (BITS == 2) {
        n[0] += __popc(~(w[i] ^ (w[i] >> 1)) & first);
      } else {
        const uint32_t x1 = __funnelshift_r(w[i], next, 1), x2 = __funnelshift_r(w[i], next, 2);
        const uint32_t c1 = ~(x1 ^ x2), c0 = ~(w[i] ^ x2);
        n[0] += __popc((c0 | c1) & first);
        n[1] += __popc(c1 & first);
        n[2] += __popc(c0 & c1 & first);
      }
    }
  }

 private:
  __host__ __device__ static constexpr uint32_t first_bits(int word, int n_codes) {
    uint32_t m = 0;
    for (int j = 0; j < n_codes; ++j) {
      if ((j * BITS) >> 5 == word) m |= 1u << ((j * BITS) & 31);
    }
    return m;
  }
};

/// The fast kernels' quantizer: the polynomial one for 2 and 3 bits, the threshold masks for 4.
template <int BITS>
using FastQuantizerFor = std::conditional_t<fast_quantizer_uses_polynomial(BITS), PolyQuantizer<BITS>, FastQuantizer<BITS>>;

/// The start of a one- or two-lane kernel's row (or lane's share of it, NCODES codes in W words):
/// the quantizer prepared for the norm's scale (1 / scale as rsqrt(sum of squares)) and the words
/// at their word_start.
template <int NCODES, typename Quantizer, int W>
__device__ __forceinline__ void start_row(Quantizer& quant, const float* params, float scale, float ss, uint32_t (&words)[W]) {
  quant.prepare(params, scale, rsqrtf(ss));
#pragma unroll
  for (int w = 0; w < W; ++w) words[w] = Quantizer::word_start(w, NCODES);
}

/// What the fast kernels XOR into packed word `word` of n_codes codes at the end (besides turbo's
/// mirrored fields): field_base for the threshold quantizer, nothing for the polynomial one.
template <int BITS>
__host__ __device__ constexpr uint32_t fast_code_xor(int word, int n_codes) {
  return FastQuantizerFor<BITS>::kFinalCodes ? 0u : SymmetricQuantizer<BITS>::field_base(word, n_codes);
}

// Inputs whose sum of squares is below this are multiplied by 2^32 (up to kMaxRescales times): the
// scale then lies in [2^-20, 2^12], where the polynomial's coefficients (up to scale^-5) and the
// scaled thresholds stay normal floats.
constexpr float kRescaleBelow = 0x1p-40f;
constexpr int kMaxRescales = 5;

constexpr double const_sqrt(double v) {  // Newton's iteration, for compile-time constants
  double r = v > 1.0 ? v : 1.0;
  for (int i = 0; i < 64; ++i) r = 0.5 * (r + v / r);
  return r;
}
template <int N>
constexpr float kSqrtN = static_cast<float>(const_sqrt(static_cast<double>(N)));

/// The quantizer's parameters and C[half + k]^2 of a fast tile kernel's block: load() issues the cold
/// reads (before the rotation tables', one DRAM round trip), store() writes s_qparams and s_c2.
template <typename Quantizer, int HALF>
struct RowEndTables {
  typename Quantizer::Params q;
  float c_half;
  __device__ __forceinline__ void load(const AppendJobArgs& job, int tid) {
    q = Quantizer::load_params(job, tid);
    c_half = tid < HALF ? cold_load(job.centroids + HALF + tid) : 0.0f;
  }
  __device__ __forceinline__ void store(float* s_qparams, float* s_c2, int tid) const {
    Quantizer::fill_params(q, s_qparams, tid);
    if (tid < HALF) s_c2[tid] = c_half * c_half;
  }
};

/// Sum of x[j]^2 in fp32 with four accumulators and a tree (the fast kernels' order).
template <int C>
__device__ __forceinline__ float sum_of_squares4(const float (&x)[C]) {
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int j = 0; j < C; ++j) acc[j % 4] = fmaf(x[j], x[j], acc[j % 4]);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

/// The norm of a row of the one- and two-lane kernels, whose coordinates x holds (PAIR: the lane
/// pair l, l ^ 16 holds C each, and both lanes get the same): the sum of squares (over the pair; x
/// multiplied by 2^32 up to kMaxRescales times while it is below kRescaleBelow, exactly: tiny inputs,
/// see the file comment), scale = its square root (the norm of the vector the thresholds are compared
/// with; turbo: ||y|| = sqrt(n) ||x||), norm = scale * norm_factor (turbo: 1 / sqrt(n)) in one
/// rounding (norms below 2^-126 are denormal), and the row end's flags: finite (false for Inf and
/// NaN input, or a huge norm), zero, nan_codes (the reference quantizes x * Inf: NaNs).
struct RowNorm {
  float ss, scale, norm;
  bool finite, zero, nan_codes;
};
template <bool PAIR, int C>
__device__ __forceinline__ RowNorm row_norm(float (&x)[C], unsigned pair_mask, float norm_factor) {
  RowNorm n;
  n.ss = sum_of_squares4(x);
  if constexpr (PAIR) n.ss += __shfl_xor_sync(0xffffffffu, n.ss, 16);  // the same float on both lanes (a + b = b + a)
  n.finite = n.ss <= 3.402823466e38f;
  int rescaled = 0;
#pragma unroll 1
  while (n.finite && !(n.ss >= kRescaleBelow) && rescaled < kMaxRescales) {  // both lanes alike
#pragma unroll
    for (int j = 0; j < C; ++j) x[j] *= 0x1p32f;
    n.ss = sum_of_squares4(x);
    if constexpr (PAIR) n.ss += __shfl_xor_sync(pair_mask, n.ss, 16);
    ++rescaled;
  }
  n.scale = sqrtf(n.ss);
  n.norm = n.scale * norm_factor;
  if (rescaled) n.norm = scalbnf(n.norm, -32 * rescaled);
  n.zero = n.norm == 0.0f;
  n.nan_codes = !n.zero && reciprocal_overflows(n.norm);
  return n;
}

/// The end of a fast kernel's row (or of a lane's share of it, W words), after its codes are
/// packed: ||C[idx]||^2 = N C[half]^2 + sum_i (C[half + i + 1]^2 - C[half + i]^2) count(i) over the
/// row's N codes (c2[k] = C[half + k]^2, count(i) = #{codes with |level| index >= i + 1}); NaN codes
/// (1 / norm overflows: the reference quantizes NaNs) make every code 0 (the words zeroed, C[0]^2 =
/// C[levels - 1]^2), other words are XORed with xor_word(w) (their final code bits). Returns the
/// stored norm: norm / ||C[idx]|| with the job's norm correction, else norm. (The job, not its flag,
/// is passed: read at its use, as when this was inline.)
template <int N, int HALF, int W, typename Count, typename XorWord>
__device__ __forceinline__ float finish_row(float norm, bool zero, bool nan_codes, const AppendJobArgs& job, const float* c2,
                                           Count count, XorWord xor_word, uint32_t (&words)[W]) {
  float cnorm_sq = static_cast<float>(N) * c2[0];
#pragma unroll
  for (int i = 0; i < HALF - 1; ++i) cnorm_sq = fmaf(c2[i + 1] - c2[i], static_cast<float>(count(i)), cnorm_sq);
  if (nan_codes) {
    cnorm_sq = static_cast<float>(N) * c2[HALF - 1];
#pragma unroll
    for (int w = 0; w < W; ++w) words[w] = 0u;
  } else {
#pragma unroll
    for (int w = 0; w < W; ++w) words[w] ^= xor_word(w);
  }
  float stored = norm;
  // norm / ||C[idx]|| as norm x rsqrt (MUFU.RSQ, within 2 ulp): the fp16 store keeps it within one
  // fp16 ulp of the correctly rounded quotient (harness::check_append's rule for stored norms).
  if (!zero && job.norm_correction && cnorm_sq > 0.0f) stored = norm * rsqrtf(cnorm_sq);
  return stored;
}

/// Per-level counts (KP of them, each <= 128) summed over a vector's lanes, packed four to a word:
/// XOR butterflies over lane bits FIRST, 2 FIRST, ... below END (several-lane kernels: FIRST = 1,
/// END = L; the two-lane kernel: 16, 32); the call operator reads count i back.
template <int KP, int FIRST, int END>
struct LaneCounts {
  static constexpr int KW = (KP + 3) / 4;
  uint32_t packed[KW > 0 ? KW : 1] = {};
  __device__ __forceinline__ explicit LaneCounts(const uint32_t (&level)[KP > 0 ? KP : 1]) {
#pragma unroll
    for (int i = 0; i < KP; ++i) packed[i / 4] |= level[i] << (8 * (i % 4));
#pragma unroll
    for (int bit = FIRST; bit < END; bit <<= 1) {
#pragma unroll
      for (int w = 0; w < KW; ++w) packed[w] += __shfl_xor_sync(0xffffffffu, packed[w], bit);
    }
  }
  __device__ __forceinline__ uint32_t operator()(int i) const { return (packed[i / 4] >> (8 * (i % 4))) & 0xffu; }
};

// Issues the cp.async copies of rows t0 .. t0 + ROWS - 1 of head `head` of job's input into buffer
// (row r at buffer + r * (row bytes + kRowPad)), one commit; THREADS threads (thread index tid),
// thread tid copies chunk tid % CHUNKS of rows tid / CHUNKS + k * THREADS / CHUNKS. As stage_block,
// but with compile-time offsets from one converted shared-memory address and a source pointer
// advanced by an opaque add, so that a loop over tiles does not keep 16-32 per-copy offsets live in
// registers across the encoding. (The block-staged tile kernels: TileStager without WARP.)
template <int D, int THREADS, int ROWS>
__device__ __forceinline__ void stage_rows(uint8_t* buffer, const AppendJobArgs& job, int head, int t0, int n_tokens, int tid) {
  auto stage = [&](auto esize_c) {
    constexpr int kEsize = decltype(esize_c)::value;
    constexpr int kChunks = D * kEsize / 16, kRowsPerPass = THREADS / kChunks, kStride = D * kEsize + kRowPad;
    static_assert(THREADS % kChunks == 0 && ROWS % kRowsPerPass == 0, "staging shape");
    const int r0 = tid / kChunks, c = tid % kChunks;
    const int64_t pitch = static_cast<int64_t>(job.token_stride) * kEsize;
    const uint8_t* src = static_cast<const uint8_t*>(job.x) + static_cast<int64_t>(head) * D * kEsize +
                         (t0 + r0) * pitch + 16 * c;
    const int64_t step = kRowsPerPass * pitch;
    // shared-window address, converted once (per copy the conversion costs ~5 instructions)
    const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(buffer + r0 * kStride + 16 * c));
    const int rows_left = n_tokens - t0 - r0;
#pragma unroll
    for (int k = 0; k < ROWS / kRowsPerPass; ++k) {
      if (k * kRowsPerPass < rows_left) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst + k * kRowsPerPass * kStride), "l"(src));
      }
      asm("add.s64 %0, %0, %1;" : "+l"(src) : "l"(step));
    }
  };
  if (job.type() == InputType::F32) {
    stage(std::integral_constant<int, 4>{});
  } else {
    stage(std::integral_constant<int, 2>{});
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

/// Stages a tile kernel's rows into its two tile buffers, tile after tile (tiles first_tile,
/// first_tile + 1, ... of kTileVectors rows; issue(b) copies the next one into buffer b, one commit).
/// WARP: each warp copies the ROWS_PER_WARP rows it encodes (warp w: rows w ROWS_PER_WARP ..) and
/// waits for them alone (wait_staged_rows); a quarter warp copies one row's 128-byte line per copy (a
/// copy instruction reads 4 whole lines; 16 rows of one 32-byte sector each were 8 % slower for turbo3
/// at 1M), the lane's source and shared addresses are computed once and advanced per tile, and each
/// 4-row group costs one 64-bit add and one bound test, its copies compile-time offsets. Else the
/// block's THREADS threads copy the whole tile (stage_rows). Per-warp staging (session 17) makes
/// turbo's Hadamard kernels 6-9 % faster at 1M vectors; rotor3's one-lane kernel was 3 % slower with
/// it (docs/gpu.md, "Session 17"), so the kernels choose it per rotation family.
template <int D, int THREADS, int ROWS_PER_WARP, bool WARP>
class TileStager {
 public:
  __device__ __forceinline__ TileStager(uint8_t* tile, const AppendJobArgs& job, int head, int first_tile, int n_tokens,
                                        int tile_bytes)
      : job_(job), tile_(tile), head_(head), t0_(first_tile * kTileVectors), n_tokens_(n_tokens), tile_bytes_(tile_bytes) {
    static_assert(THREADS / 32 * ROWS_PER_WARP == kTileVectors && ROWS_PER_WARP % 4 == 0, "warps x rows = tile");
    if constexpr (WARP) {
      const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, row0 = (tid >> 5) * ROWS_PER_WARP + (lane >> 3);
      const int esize = job.type() == InputType::F32 ? 4 : 2, stride = D * esize + kRowPad;
      const int64_t pitch = static_cast<int64_t>(job.token_stride) * esize;
      src_ = static_cast<const uint8_t*>(job.x) + static_cast<int64_t>(head) * D * esize + (t0_ + row0) * pitch + 16 * (lane & 7);
      group_step_ = 4 * pitch;
      tile_step_ = kTileVectors * pitch - ROWS_PER_WARP / 4 * group_step_;  // after the groups' adds
      dst_ = static_cast<unsigned>(__cvta_generic_to_shared(tile + row0 * stride + 16 * (lane & 7)));
      rows_left_ = n_tokens - t0_ - row0;
    }
  }

  /// Copies the next tile into buffer `b` (0 or 1) and commits.
  __device__ __forceinline__ void issue(int b) {
    if constexpr (WARP) {
      if (job_.type() == InputType::F32) {
        copies<4>(dst_ + b * tile_bytes_);
      } else {
        copies<2>(dst_ + b * tile_bytes_);
      }
      asm("add.s64 %0, %0, %1;" : "+l"(src_) : "l"(tile_step_));
      rows_left_ -= kTileVectors;
      asm volatile("cp.async.commit_group;\n" ::);
    } else {
      stage_rows<D, THREADS, kTileVectors>(tile_ + b * tile_bytes_, job_, head_, t0_, n_tokens_, static_cast<int>(threadIdx.x));
    }
    t0_ += kTileVectors;
  }

 private:
  template <int kEsize>
  __device__ __forceinline__ void copies(unsigned dst) {
    constexpr int kStride = D * kEsize + kRowPad, kLines = D * kEsize / 128;
    static_assert(D * kEsize % 128 == 0, "whole lines");
    static_for<0, ROWS_PER_WARP / 4>([&](auto gc) {
      constexpr int G = decltype(gc)::value;
      if (4 * G < rows_left_) {
        static_for<0, kLines>([&](auto lc) {
          constexpr int L = decltype(lc)::value;
          asm volatile("cp.async.cg.shared.global [%0+%2], [%1+%3], 16;\n" ::"r"(dst), "l"(src_), "n"(4 * G * kStride + 128 * L),
                       "n"(128 * L));
        });
      }
      asm("add.s64 %0, %0, %1;" : "+l"(src_) : "l"(group_step_));
    });
  }

  const AppendJobArgs& job_;
  uint8_t* tile_;
  int head_, t0_, n_tokens_, tile_bytes_;
  const uint8_t* src_ = nullptr;  // WARP: the lane's first copy of the next tile
  int64_t group_step_ = 0, tile_step_ = 0;
  unsigned dst_ = 0;              // WARP: the lane's first copy in buffer 0
  int rows_left_ = 0;             // WARP: rows of the next tile from the lane's first row on
};

/// Before a tile kernel reads its staged rows: its own copies have landed, and its warp's (WARP) or
/// its block's; the barrier also orders the reads of the other buffer before the next copies into it.
/// (With WARP the tables need one block barrier of their own before the tile loop.)
template <bool WARP>
__device__ __forceinline__ void wait_staged_rows() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
  if constexpr (WARP) {
    __syncwarp();
  } else {
    __syncthreads();
  }
}

/// The tile loop of the one- and two-lane kernels: tile t of first_tile .. end_tile - 1 is in buffer
/// (t - first_tile) & 1 of `tile` (tile_bytes each); once its rows are in (wait_staged_rows<WARP>), the
/// next tile's copies are issued and encode(row, slot) runs for the thread's row `row` (rows `stride`
/// bytes apart; slot < 0 past the tokens or for skipped ones). ALL_ROWS: every thread runs encode (the
/// two-lane kernels' shuffles are warp-wide); else only threads whose slot is >= 0.
template <bool WARP, bool ALL_ROWS, typename Stager, typename Encode>
__device__ __forceinline__ void for_each_tile(const AppendArgs& p, int first_tile, int end_tile, int row, uint8_t* tile,
                                              int tile_bytes, int stride, Stager& stager, Encode&& encode) {
#pragma unroll 1
  for (int t = first_tile; t < end_tile; ++t) {
    const int token = t * kTileVectors + row;
    const int64_t slot = token < p.n_tokens ? p.slot_mapping[token] : -1;
    uint8_t* const buffer = tile + ((t - first_tile) & 1) * tile_bytes;
    wait_staged_rows<WARP>();
    if (t + 1 < end_tile) stager.issue((t + 1 - first_tile) & 1);
    if (ALL_ROWS || slot >= 0) encode(buffer + row * stride, slot);
  }
}

// Tiles of kTileVectors tokens that one block of append_fast_kernel encodes when rounds_per_block
// is 0: the fewest that let every block of the launch be resident at once (one wave), so that each
// block's next tile is in flight while it encodes the current one. resident_blocks: blocks of the
// kernel that fit on the whole device.
inline int fast_tiles_per_block(int tiles_per_head, int head_jobs, int resident_blocks) {
  const int blocks_per_head = resident_blocks / head_jobs > 1 ? resident_blocks / head_jobs : 1;
  return (tiles_per_head + blocks_per_head - 1) / blocks_per_head;
}

template <int D, int BITS, int FAM>
__global__ void __launch_bounds__(kTileVectors, 6) append_fast_kernel(AppendArgs p) {
  constexpr int THREADS = kTileVectors;
  constexpr int N = D;  // rotated (and stored) coordinates
  constexpr int MAIN = kRowBytes<D, BITS>;
  constexpr int WORDS = MAIN / 4;
  constexpr int HALF = 1 << (BITS - 1);
  constexpr int KP = HALF - 1;
  constexpr int F = FAM > 0 ? FAM : 1;  // block size (divisor-safe)
  constexpr int NB = kBlocks<D, F>;     // blocks of a block rotation
  constexpr int MS = kMatrixStride<FAM>;
  using Quantizer = FastQuantizerFor<BITS>;
  constexpr bool kWarpStaging = FAM == 0;  // TileStager
  static_assert(FAM != 0 || 2 * N <= kRotationSmemFloats, "turbo tables");
  static_assert(FAM == 0 || NB * MS <= kRotationSmemFloats, "block matrices");
  static_assert(MAIN % 16 == 0 && MAIN / 16 <= 4 && D % 8 == 0, "head_dim 128, no tail bytes");

  // [2][kTileVectors][row_bytes + kRowPad] staged rows: the tile being encoded and the next one
  // (one buffer when the block encodes one tile)
  extern __shared__ __align__(16) uint8_t tile[];
  // Block rotations: the matrices (stride MS). Turbo: [0, N) sign-test bias per coordinate (D(s2)),
  // [N, 2N) as words: D(s1) sign masks in the input's format (16-bit: word k covers elements 2k, 2k+1).
  __shared__ __align__(16) float s_rot[kRotationSmemFloats];
  __shared__ __align__(16) uint32_t s_flip[(WORDS + 3) / 4 * 4];  // turbo: final XOR of each word
  __shared__ float s_qparams[KP > 0 ? KP : 1];  // the quantizer's parameters (fill_params)
  __shared__ float s_c2[HALF];               // C[half + k]^2

  const AppendJobArgs& job = p.jobs[blockIdx.z];
  const int head = blockIdx.y, tid = threadIdx.x;
  const InputType type = job.type();
  const int row_bytes = D * (type == InputType::F32 ? 4 : 2);
  const int stride = row_bytes + kRowPad;
  const int tile_bytes = kTileVectors * stride;
  // The block's tiles: first_tile .. end_tile - 1 of this head and role.
  const int first_tile = blockIdx.x * p.per_block;
  const int end_tile = min(first_tile + p.per_block, (p.n_tokens + kTileVectors - 1) / kTileVectors);

  // 1. Stage the block's first tile.
  TileStager<D, THREADS, 32, kWarpStaging> stager(tile, job, head, first_tile, p.n_tokens, tile_bytes);
  stager.issue(0);
  // 2. Rotation tables, thresholds and C^2 while the copies are in flight. (Every cold read first,
  // then the tables: one DRAM round trip beside the tile's. Here the reads come after the copies:
  // before them, turbo3's 64K append took 1.1 us longer, session 18.)
  const float* rot = job.rotation + static_cast<size_t>(head) * job.rotation_stride;
  RowEndTables<Quantizer, HALF> row_end;
  row_end.load(job, tid);
  using Tables = std::conditional_t<FAM == 0, TurboTables<BITS, 1, N, N, Quantizer, THREADS>,
                                    BlockMatrices<NB * FAM * FAM, FAM * FAM, MS, THREADS>>;
  Tables tables;
  if constexpr (FAM == 0) {
    tables.load(rot, type, tid);
  } else {
    tables.load(rot, tid);
  }
  reads_before_stores();
  if constexpr (FAM == 0) {
    tables.store(type, s_rot, reinterpret_cast<uint32_t*>(s_rot) + N, s_flip, tid);
  } else {
    tables.store(s_rot, tid);
  }
  row_end.store(s_qparams, s_c2, tid);

  // 3-6. Encode the thread's row and store it.
  auto encode = [&](const uint8_t* row, int64_t slot) {
    // 3. x as floats (turbo: D(s1) applied to the sign bits first); sum of squares in fp32.
    float x[N];
    if constexpr (FAM == 0) {
      load_masked_row<D, true>(reinterpret_cast<const uint4*>(row), reinterpret_cast<const uint4*>(s_rot + N), type, x);
    } else {
      load_row<D>(row, type, x);
    }
    // Sum of squares in fp32. Turbo: of y = H D(s1) x after the FWHT (||y||^2 = n ||x||^2), so only y
    // stays live; block rotations: of x, then each block is rotated and quantized at once.
    if constexpr (FAM == 0) fwht_in_registers<1>(x);
    const RowNorm n = row_norm<false>(x, 0u, FAM == 0 ? 1.0f / kSqrtN<N> : 1.0f);
    const bool finite = n.finite, nan_codes = n.nan_codes;
    const float norm = n.norm;
    bool zero = n.zero;

    // 4. (Block rotations: rotate,) quantize and pack.
    Quantizer quant;
    uint32_t words[WORDS];
    start_row<N>(quant, s_qparams, n.scale, n.ss, words);
    if constexpr (FAM == 0) {
      static_for<0, N / 4>([&](auto qc) {
        constexpr int Q = decltype(qc)::value;
        const float4 b = reinterpret_cast<const float4*>(s_rot)[Q];
        quant.template emit<4 * Q + 0>(x[4 * Q + 0], b.x, words);
        quant.template emit<4 * Q + 1>(x[4 * Q + 1], b.y, words);
        quant.template emit<4 * Q + 2>(x[4 * Q + 2], b.z, words);
        quant.template emit<4 * Q + 3>(x[4 * Q + 3], b.w, words);
      });
    } else {
      // Rotor's partial last block: its real rows and inputs only (kBlockWidth, append_kernel.cuh).
      // Rotor's blocks go from the last one down: ptxas then spills nothing for rotor2-4 (ascending:
      // up to 32 B stores / 96 B loads); planar and iso keep the ascending order (iso4 spills more).
      static_for<0, NB>([&](auto bc) {
        constexpr int B = FAM == 3 ? NB - 1 - decltype(bc)::value : decltype(bc)::value, BW = kBlockWidth<D, FAM, B>;
        float m[MS];
        load_block_matrix(s_rot + B * MS, m);
        static_for<0, BW>([&](auto rc) {
          constexpr int R = decltype(rc)::value;
          float y = m[R * FAM] * x[B * FAM];
#pragma unroll
          for (int k = 1; k < BW; ++k) y = fmaf(m[R * FAM + k], x[B * FAM + k], y);
          quant.template emit<B * FAM + R>(y, Quantizer::kPlainBias, words);
        });
      });
    }

    // 5. ||C[idx]||^2 from the counts, final codes, stored norm.
    uint32_t level_counts[KP > 0 ? KP : 1];
    quant.template counts<N>(words, level_counts);
    float stored = finish_row<N, HALF>(
        norm, zero, nan_codes, job, s_c2, [&](int i) { return level_counts[i]; },
        [&](int w) { return FAM == 0 ? s_flip[w] : fast_code_xor<BITS>(w, N); }, words);
    refuse_or_zero<BITS, N>(finite, true, p.error_flag, zero, stored, words);

    const size_t rw = slot_row(job.page_size, p.n_kv_heads, slot, head);
    uint4* dst = reinterpret_cast<uint4*>(job.codes + rw * MAIN);
#pragma unroll
    for (int i = 0; i < MAIN / 16; ++i) dst[i] = make_uint4(words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]);
    job.norms[rw] = __half_as_ushort(__float2half_rn(stored));  // |stored| <= 65504
  };

  // Tile i is in buffer i % 2; tile i + 1 is staged while tile i is encoded. Turbo: each warp stages
  // and waits for its own rows (wait_staged_rows), which also orders its reads of the other buffer
  // before the copies into it, and the one block barrier is the tables'. Block rotations: the block
  // stages the whole tile, a barrier a tile.
  if constexpr (kWarpStaging) __syncthreads();
  for_each_tile<kWarpStaging, false>(p, first_tile, end_tile, tid, tile, tile_bytes, stride, stager, encode);
}

// Launches a tile kernel (the one- and two-lane fast kernels: `threads` threads encode a tile of
// kTileVectors rows staged in `buffer` bytes, two buffers when a block has several tiles) over all
// tiles. rounds_per_block > 0: that many tiles per block; 0: fast_tiles_per_block (one wave). Once per
// device and input width (`resident`, the kernel's own): room for two fp32 tiles (over the default
// 48 KB), the shared-memory carveout at its maximum (so that registers bind rather than shared
// memory), and the blocks of the double-buffered kernel that fit on the device.
constexpr int kLaunchCacheDevices = 16;  // devices whose resident-block counts a launcher caches

template <int D, typename Kernel>
cudaError_t launch_tile_kernel(Kernel kernel, int threads, size_t buffer,
                               std::atomic<int> (&resident)[kLaunchCacheDevices][2], const AppendParams& p,
                               cudaStream_t stream) {
  int device = 0;
  cudaError_t st = cudaGetDevice(&device);
  if (st != cudaSuccess) return st;
  const bool f32 = buffer > kTileVectors * (2 * D + kRowPad);
  std::atomic<int>* cached = device < kLaunchCacheDevices ? &resident[device][f32] : nullptr;
  int blocks = cached ? cached->load(std::memory_order_relaxed) : 0;
  if (blocks == 0) {
    const int most = static_cast<int>(2 * kTileVectors * (4 * D + kRowPad));
    int sms = 0, per_sm = 0;
    st = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, most);
    if (st == cudaSuccess) st = cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared);
    if (st == cudaSuccess) st = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (st == cudaSuccess) st = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 2 * buffer);
    if (st != cudaSuccess) return st;
    blocks = sms * (per_sm > 0 ? per_sm : 1);
    if (cached) cached->store(blocks, std::memory_order_relaxed);
  }
  const int tiles = (p.n_tokens + kTileVectors - 1) / kTileVectors;
  const int per_block = p.rounds_per_block > 0 ? p.rounds_per_block : fast_tiles_per_block(tiles, p.n_kv_heads * p.n_jobs, blocks);
  const dim3 grid((tiles + per_block - 1) / per_block, p.n_kv_heads, p.n_jobs);
  kernel<<<grid, threads, per_block > 1 ? 2 * buffer : buffer, stream>>>(append_args(p, true, per_block));
  return cudaGetLastError();
}

template <int D, int BITS, int FAM>
cudaError_t launch_append_fast_kernel(const AppendParams& p, cudaStream_t stream) {
  static std::atomic<int> resident[kLaunchCacheDevices][2] = {};
  return launch_tile_kernel<D>(append_fast_kernel<D, BITS, FAM>, kTileVectors, append_smem_bytes<D, FAM, 1>(p), resident, p, stream);
}

template <int BITS, int FAM>
struct FastLaunch {
  static cudaError_t run(const AppendParams& p, cudaStream_t stream) {
    return launch_append_fast_kernel<kHeadDim, BITS, FAM>(p, stream);
  }
};

}  // namespace rq::cuda::detail
