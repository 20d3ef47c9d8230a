// IEEE-754 binary16 conversion, bit-exact and identical on host and device.
// float -> half rounds to nearest even; values beyond the half range become +-Inf (callers that
// must not store Inf check the range first).
#pragma once

#include <cstdint>
#include <cstring>

#include "rq/core/hd.hpp"

namespace rq {

RQ_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

RQ_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

/// Largest finite binary16 value.
constexpr float kHalfMax = 65504.0f;

RQ_HD uint16_t float_to_half(float f) {
  uint32_t x = float_bits(f);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477ff000u) {  // rounds to >= 65520: overflow to Inf
    return static_cast<uint16_t>(sign | 0x7c00u);
  }
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);  // < 2^-25 rounds to 0
    uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    // value = mant * 2^(E-150); the half subnormal unit is 2^-24, so q = mant * 2^(E-126):
    // drop the low 126-E bits (14..24) with round-to-nearest-even.
    uint32_t drop = 126u - (abs >> 23);
    uint32_t q = mant >> drop;
    uint32_t rem = mant & ((1u << drop) - 1u);
    uint32_t halfway = 1u << (drop - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t e = (abs >> 23) - 112u;  // rebias 127 -> 15
  uint32_t mant = abs & 0x7fffffu;
  uint32_t h = (e << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into exponent: correct
  return static_cast<uint16_t>(sign | h);
}

RQ_HD float half_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t e = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (e == 0) {
    if (mant == 0) return bits_float(sign);
    // subnormal: mant * 2^-24
    float v = static_cast<float>(mant) * 5.9604644775390625e-8f;
    return sign ? -v : v;
  }
  if (e == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((e + 112u) << 23) | (mant << 13));
}

/// Round a float through binary16 and back.
RQ_HD float round_to_half(float f) { return half_to_float(float_to_half(f)); }

}  // namespace rq
