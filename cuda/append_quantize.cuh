// Lloyd-Max quantization of one rotated coordinate for the append kernel (private to cuda/): the
// code (number of thresholds <= v, as rq::Codec::encode counts them), packed into the row's
// register words, and C[code]^2 added to the norm-correction accumulator in double.
//
// The codebooks are symmetric (lloyd_max.cpp symmetrizes them; make_codec_tables checks it):
// t[half - 1] = 0, t[half + i] = -t[half - 2 - i], C[k] = -C[levels - 1 - k], half = levels / 2.
// So the code follows from |v| and the sign with half - 1 comparisons instead of levels - 1:
//   v >= 0 (also -0): code = half + #{i : |v| >= t[half + i]}
//   v <  0:           code = half - 1 - #{i : |v| >  t[half + i]}
// The strict comparison of the negative side is the same >= on the predecessor of |v|, whose bits
// are those of v minus one (v < 0, so |v| > 0). C[code]^2 = C[half + c]^2 on both sides.
// NaN (an input whose norm gives 1/norm = Inf) counts as below every threshold, as on the CPU:
// unordered comparisons make c = half - 1 and the sign mask all ones, so code = 0.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace rq::cuda::detail {

/// The positive thresholds t[half .. levels - 2] in registers, and the shared table C[half + c]^2.
template <int BITS>
struct SymmetricQuantizer {
  static constexpr int kHalf = 1 << (BITS - 1);
  static constexpr int kPositive = kHalf - 1;
  float t[kPositive > 0 ? kPositive : 1];
  const double* c2;     // shared memory, [kHalf]: C[half + c]^2 in double
  uint32_t c2_rebased;  // shared-window address of c2 minus 8 * 0x4b000000 (mod 2^32)

  /// XOR applied to word `word` after packing N codes: turns each field's c into half + c (the
  /// field's top bit); bits past the last code stay zero.
  __host__ __device__ static constexpr uint32_t field_base(int word, int n_codes) {
    uint32_t pattern = 0;
    for (int bit = 0; bit < 32; ++bit) {
      const int global = 32 * word + bit;
      if (global < n_codes * BITS && global % BITS == BITS - 1) pattern |= 1u << bit;
    }
    return pattern;
  }

  /// Quantizes v as the J-th code of this thread: packs it at bit J * STRIDE of words (pre-XOR form,
  /// see field_base; STRIDE = BITS: codes in order; BITS * lanes: a lane's share of a row, shifted
  /// into place later) and adds C[code]^2 to cn.
  template <int J, int STRIDE, int WORDS>
  __device__ __forceinline__ void emit(float v, uint32_t (&words)[WORDS], double& cn) const {
    constexpr int kBit = J * STRIDE, kWord = kBit >> 5, kShift = kBit & 31;
    constexpr uint32_t kField = (1u << BITS) - 1u;
    if constexpr (kShift + BITS <= 32 && kPositive == 3) {
      // One PTX block per code (the compiler keeps it together rather than holding 128 counts
      // for a late chain of double adds):
      //   neg  = v < 0 or NaN (0/-1 mask); key = |v|, or for v < 0 its predecessor (> becomes >=)
      //   cbits = bits of 2^23 + sum(key >= t[i] ? 1.0 : 0.0)  (FSET.BF, exact FADDs): 0x4b000000 + c
      //   cn += C[half + c]^2 (shared, c2_rebased + 8 cbits); field (cbits ^ neg) & kField added at kShift
      asm volatile(
          "{\n\t.reg .pred pn;\n\t.reg .b32 ng, kb, f, a;\n\t.reg .f32 k, o, cnt;\n\t.reg .f64 cc;\n\t"
          "setp.ltu.f32 pn, %2, 0f00000000;\n\t"
          "selp.u32 ng, -1, 0, pn;\n\t"
          "mov.b32 kb, %2;\n\t"
          "add.u32 kb, kb, ng;\n\t"
          "mov.b32 k, kb;\n\t"
          "abs.f32 k, k;\n\t"
          "set.geu.f32.f32 o, k, %3;\n\t"
          "add.rn.f32 cnt, o, 0f4B000000;\n\t"
          "set.geu.f32.f32 o, k, %4;\n\t"
          "add.rn.f32 cnt, cnt, o;\n\t"
          "set.geu.f32.f32 o, k, %5;\n\t"
          "add.rn.f32 cnt, cnt, o;\n\t"
          "mov.b32 f, cnt;\n\t"
          "shl.b32 a, f, 3;\n\t"
          "add.u32 a, a, %6;\n\t"
          "ld.shared.f64 cc, [a];\n\t"
          "add.rn.f64 %1, %1, cc;\n\t"
          "lop3.b32 f, f, ng, %7, 0x28;\n\t"
          "shl.b32 f, f, %8;\n\t"
          "add.u32 %0, %0, f;\n\t}"
          : "+r"(words[kWord]), "+d"(cn)
          : "f"(v), "f"(t[0]), "f"(t[1]), "f"(t[2]), "r"(c2_rebased), "n"(kField), "n"(kShift));
    } else {
      const bool neg = !(v >= 0.0f);  // v < 0, or NaN
      uint32_t bits = __float_as_uint(v);
      bits = neg ? bits - 1u : bits;  // |v|, or its predecessor: > becomes >=
      const float key = fabsf(__uint_as_float(bits));
      uint32_t c = 0;                 // #{i : key >= t[i]} (NaN: all)
#pragma unroll
      for (int i = 0; i < kPositive; ++i) c += !(key < t[i]) ? 1u : 0u;
      cn += c2[c];
      // field = c ^ (neg ? levels - 1 : 0), before the final XOR with `half`
      words[kWord] += c << kShift;
      if (neg) words[kWord] ^= kField << kShift;
      if constexpr (kShift + BITS > 32) {
        words[kWord + 1] += c >> (32 - kShift);
        if (neg) words[kWord + 1] ^= kField >> (32 - kShift);
      }
    }
  }

  /// After the N emits: the final XOR.
  template <int N, int WORDS>
  __device__ __forceinline__ static void finish(uint32_t (&words)[WORDS]) {
#pragma unroll
    for (int w = 0; w < WORDS; ++w) words[w] ^= field_base(w, N);
  }
};

}  // namespace rq::cuda::detail
