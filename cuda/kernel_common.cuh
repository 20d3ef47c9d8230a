// Device helpers shared by the rotorquant CUDA kernels (private to cuda/).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace rq::cuda::detail {

/// The head_dim the kernels are built for, and the coordinates every GPU format rotates and stores
/// at it (rotor's partial last group keeps its pad at zero, docs/formats.md): a codes row is
/// 16 BITS bytes, whole 16-byte units, so the paged layout's tail plane is empty for all of them.
constexpr int kHeadDim = 128;

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

/// m[0, MS) = the MS floats at src (shared memory, 16-byte aligned), read as float4s: one block's
/// rotation matrix of a block-diagonal rotation (rotor 3 x 3, planar 2 x 2, iso 4 x 4, padded).
template <int MS>
__device__ __forceinline__ void load_block_matrix(const float* src, float (&m)[MS]) {
  static_assert(MS % 4 == 0, "block matrices are stored as whole float4s");
#pragma unroll
  for (int i = 0; i < MS / 4; ++i) {
    const float4 v = reinterpret_cast<const float4*>(src)[i];
    m[4 * i] = v.x, m[4 * i + 1] = v.y, m[4 * i + 2] = v.z, m[4 * i + 3] = v.w;
  }
}

/// w ^= s, word by word (e.g. sign masks on packed input elements).
__device__ __forceinline__ void xor_words(uint4& w, const uint4& s) { w.x ^= s.x, w.y ^= s.y, w.z ^= s.z, w.w ^= s.w; }

}  // namespace rq::cuda::detail
