// Internal: ggml block layouts (byte offsets, all little endian) and the scalar block decoders
// of the reference dequantizer (the SIMD dot products in dot_simd.cpp follow the same layouts).
//
//   Q4_0 (32 elems, 18 B): f16 d | u8 qs[16]             x[j] = d * (nib_j - 8)
//   Q4_1 (32 elems, 20 B): f16 d | f16 m | u8 qs[16]     x[j] = d * nib_j + m
//        nib_j = qs[j] & 15 for j < 16, qs[j - 16] >> 4 for j >= 16
//   Q8_0 (32 elems, 34 B): f16 d | i8 qs[32]             x[j] = d * qs[j]
//   Q4_K (256 elems, 144 B): f16 d | f16 dmin | u8 scales[12] | u8 qs[128]
//        8 sub-blocks of 32 with 6-bit scale sc_s and min m_s packed in scales[12];
//        chunk c (64 elems) uses qs[32c .. 32c+32): low nibbles -> sub-block 2c, high -> 2c+1;
//        x = d * sc_s * q - dmin * m_s
//   Q5_K (256 elems, 176 B): f16 d | f16 dmin | u8 scales[12] | u8 qh[32] | u8 qs[128]
//        as Q4_K plus a fifth bit: sub-block s takes bit s of qh[l] (l = index within 32)
//   Q6_K (256 elems, 210 B): u8 ql[128] | u8 qh[64] | i8 scales[16] | f16 d
//        16 sub-blocks of 16, x = d * scales[s] * (q - 32), q 6 bits from ql nibble + qh 2 bits
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "rq/core/half.hpp"
#include "rq/model/tensor_types.hpp"

namespace rq::model::blocks {

constexpr size_t kQK = 32;    // elements per block of the legacy types
constexpr size_t kQK_K = 256;  // elements per K-quant super-block

constexpr size_t kQ4_0Bytes = 18;
constexpr size_t kQ4_1Bytes = 20;
constexpr size_t kQ8_0Bytes = 34;
constexpr size_t kQ4_KBytes = 144;
constexpr size_t kQ5_KBytes = 176;
constexpr size_t kQ6_KBytes = 210;

inline float load_half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}

inline float bf16_to_float(uint16_t h) { return bits_float(static_cast<uint32_t>(h) << 16); }

/// 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of Q4_K / Q5_K.
inline void k4_scale_min(const uint8_t* scales, int j, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = scales[j] & 63;
    *m = scales[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// One block -> floats. out: block_size floats.
void decode_q4_0(const uint8_t* b, float* out);
void decode_q4_1(const uint8_t* b, float* out);
void decode_q8_0(const uint8_t* b, float* out);
void decode_q4_k(const uint8_t* b, float* out);
void decode_q5_k(const uint8_t* b, float* out);
void decode_q6_k(const uint8_t* b, float* out);

/// Traits of a type that must support compute, with n a multiple of its block size.
/// Throws rq::FormatError "unsupported tensor type N (name)" / rq::InvalidArgument.
const TypeTraits& check_compute(GgmlType type, size_t n);

}  // namespace rq::model::blocks
