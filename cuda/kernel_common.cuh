// Device helpers shared by the rotorquant CUDA kernels (private to cuda/).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace rq::cuda::detail {

/// Bit layout of include/rq/pack/bitpack.hpp (code j at bits [j*BITS, j*BITS+BITS), LSB first),
/// in register words: word w holds row bytes [4w, 4w+4) little-endian. J is compile-time, so the
/// words stay in registers. Tests check the result byte for byte against rq::pack_codes.
template <int BITS, int J, int WORDS>
__device__ __forceinline__ void pack_word_code(uint32_t (&words)[WORDS], uint32_t code) {
  constexpr int kBit = J * BITS, kWord = kBit >> 5, kShift = kBit & 31;
  words[kWord] |= code << kShift;
  if constexpr (kShift + BITS > 32) words[kWord + 1] |= code >> (32 - kShift);
}

template <int BITS, int J, int WORDS>
__device__ __forceinline__ uint32_t unpack_word_code(const uint32_t (&words)[WORDS]) {
  constexpr int kBit = J * BITS, kWord = kBit >> 5, kShift = kBit & 31;
  uint32_t v = words[kWord] >> kShift;
  if constexpr (kShift + BITS > 32) v |= words[kWord + 1] << (32 - kShift);
  return v & ((1u << BITS) - 1u);
}

/// Compile-time loop: f(std::integral_constant<int, I>) for I in [0, N).
template <int I, int N, typename F>
__device__ __forceinline__ void static_for(F&& f) {
  if constexpr (I < N) {
    f(std::integral_constant<int, I>{});
    static_for<I + 1, N>(f);
  }
}

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace rq::cuda::detail
