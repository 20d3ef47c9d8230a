// Per-block tables of the append kernels, built from cold parameters (private to cuda/).
#pragma once

#include <cstdint>

#include "rq/cuda/append.hpp"

namespace rq::cuda::detail {

// The per-block tables below read cold parameters (after the benchmark's L2 flush, ~1 us a DRAM
// round trip). Each is built in two steps, load() (the thread's reads into registers) and store()
// (the table), and a kernel calls every load() before the first store(), so that a block's set-up
// costs one round trip (session 15: the rotor matrices' loop, the turbo tables and fill_params'
// thresholds were up to five dependent round trips). The tile kernels (one and two lanes) issue these
// reads before their first tile's row copies, so that they are not queued behind the rows
// (session 18).

/// A cold parameter read of the set-up (ld.global.cg: ptxas moved read-only ld.global.nc loads
/// below the warp barrier of reads_before_stores and the stores that wait for the first reads).
__device__ __forceinline__ float cold_load(const float* p) { return __ldcg(p); }

/// Keeps the compilers from moving a table's store (which waits for its read) above the other reads:
/// a warp barrier, which ptxas does not move memory accesses across (all threads of the warp call it).
__device__ __forceinline__ void reads_before_stores() { __syncwarp(); }

// Turbo's sign tables for the fast kernels, filled by THREADS threads (this one: tid):
// s2_mark[j] = the quantizer's mirror_bias where s2_j < 0 (else plain_bias; emit's bias), and
// s1_masks[j] = the sign bits of D(s1) in the input's format (fp32: word j; 16-bit: word j < N / 2
// covers elements 2j, 2j + 1).
template <int N, int THREADS>
struct TurboSignTables {
  static constexpr int PER = (N + THREADS - 1) / THREADS;
  float s2[PER], s1a[PER], s1b[PER];

  __device__ __forceinline__ void load(const float* rot, InputType type, int tid) {
    const bool f32 = type == InputType::F32;
#pragma unroll
    for (int k = 0; k < PER; ++k) {
      const int j = tid + k * THREADS;
      s2[k] = j < N ? cold_load(rot + N + j) : 0.0f;
      s1a[k] = j < N && (f32 || j < N / 2) ? cold_load(rot + (f32 ? j : 2 * j)) : 0.0f;
      s1b[k] = j < N / 2 && !f32 ? cold_load(rot + 2 * j + 1) : 0.0f;
    }
  }
  __device__ __forceinline__ void store(InputType type, float plain_bias, float mirror_bias, float* s2_mark,
                                        uint32_t* s1_masks, int tid) const {
#pragma unroll
    for (int k = 0; k < PER; ++k) {
      const int j = tid + k * THREADS;
      if (j >= N) continue;
      s2_mark[j] = s2[k] < 0.0f ? mirror_bias : plain_bias;
      uint32_t m = 0;
      if (type == InputType::F32) {
        m = __float_as_uint(s1a[k]) & 0x80000000u;
      } else if (j < N / 2) {
        m = ((__float_as_uint(s1a[k]) >> 16) & 0x8000u) | (__float_as_uint(s1b[k]) & 0x80000000u);
      }
      s1_masks[j] = m;
    }
  }
};

// Block rotations' matrices: the COUNT floats at rot (matrices of SQ floats) into s_rot, matrix b at
// b * STRIDE, with THREADS threads.
template <int COUNT, int SQ, int STRIDE, int THREADS>
struct BlockMatrices {
  static constexpr int PER = (COUNT + THREADS - 1) / THREADS;
  float v[PER];

  __device__ __forceinline__ void load(const float* rot, int tid) {
#pragma unroll
    for (int k = 0; k < PER; ++k) v[k] = cold_load(rot + min(tid + k * THREADS, COUNT - 1));  // (unpredicated)
  }
  __device__ __forceinline__ void store(float* s_rot, int tid) const {
#pragma unroll
    for (int k = 0; k < PER; ++k) {
      const int i = tid + k * THREADS;
      if (i < COUNT) s_rot[(i / SQ) * STRIDE + i % SQ] = v[k];
    }
  }
};

// Turbo's final XOR words of L lanes of C codes each (the one-lane kernel: L = 1, C = N), s_xor[q FW +
// w] = lane q's word w: bit b of word w is field bit 32 w + b of the lane's code m = (32 w + b) /
// BITS, set where coordinate q C + m has s2 < 0 (the mirrored codes), XOR fast_code_xor's top bits.
// One bit per thread, in parallel, words by warp ballots (THREADS: a multiple of 32).
template <int BITS, int L, int C, int N, typename Quantizer, int THREADS>
struct LaneXorWords {
  static constexpr int FW = (C * BITS + 31) / 32, kBits = L * FW * 32;
  static constexpr int ROUNDS = (kBits + THREADS - 1) / THREADS;
  static_assert(THREADS % 32 == 0, "whole warps");
  float s2[ROUNDS];

  __device__ __forceinline__ void load(const float* rot, int tid) {
#pragma unroll
    for (int k = 0; k < ROUNDS; ++k) {
      const int t = k * THREADS + tid, word = t >> 5, bit = t & 31, q = word / FW, w = word % FW;
      const int m = (32 * w + bit) / BITS;
      s2[k] = t < kBits && m < C ? cold_load(rot + N + q * C + m) : 0.0f;
    }
  }
  __device__ __forceinline__ void store(uint32_t* s_xor, int tid) const {
#pragma unroll
    for (int k = 0; k < ROUNDS; ++k) {  // the same trip count on every thread (ballots)
      const int t = k * THREADS + tid, word = t >> 5, bit = t & 31, w = word % FW;
      const int local = 32 * w + bit, m = local / BITS;
      const bool used = t < kBits && m < C;
      const bool top = !Quantizer::kFinalCodes && local % BITS == BITS - 1;
      const bool flip = used && s2[k] < 0.0f;
      const uint32_t ballot = __ballot_sync(0xffffffffu, used && top != flip);
      if (t < kBits && bit == 0) s_xor[word] = ballot;
    }
  }
};

/// Turbo's tables of a fast kernel, read in one round trip: the sign tables (TurboSignTables:
/// s2_mark, s1_masks) and the final XOR words of L lanes of C codes (LaneXorWords: s_xor).
template <int BITS, int L, int C, int N, typename Quantizer, int THREADS>
struct TurboTables {
  TurboSignTables<N, THREADS> signs;
  LaneXorWords<BITS, L, C, N, Quantizer, THREADS> xor_words;

  __device__ __forceinline__ void load(const float* rot, InputType type, int tid) {
    signs.load(rot, type, tid);
    xor_words.load(rot, tid);
  }
  __device__ __forceinline__ void store(InputType type, float* s2_mark, uint32_t* s1_masks, uint32_t* s_xor, int tid) const {
    signs.store(type, Quantizer::kPlainBias, Quantizer::kMirrorBias, s2_mark, s1_masks, tid);
    xor_words.store(s_xor, tid);
  }
};

}  // namespace rq::cuda::detail
