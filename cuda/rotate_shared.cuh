// Rotating a few vectors held in shared memory with all threads of a block (private to cuda/):
// the decode's queries (forward, K's rotation) and merged outputs (inverse, V's rotation).
#pragma once

#include <cuda_runtime.h>

#include "rq/cuda/device_codec.hpp"

namespace rq::cuda::detail {

/// Turbo's 128-point Hadamard of count vectors buf[count][stride] with one warp per vector,
/// coordinate lane + 32 t in register t: the butterflies of distance 1..16 pair lanes (one shuffle
/// per register), 32 and 64 pair registers. The same sums in the same order as the block path of
/// rotate_shared, without its 8 barriers (session 9: the merge's tail). s_in / s_out: the sign
/// vectors applied before / after (scale folded into the last).
__device__ inline void hadamard128_by_warps(const float* s_in, const float* s_out, float scale, float* buf, int count,
                                            int stride) {
  const int lane = threadIdx.x & 31;
  for (int g = threadIdx.x >> 5; g < count; g += blockDim.x >> 5) {
    float* row = buf + g * stride;
    float v[4];
#pragma unroll
    for (int t = 0; t < 4; ++t) v[t] = row[lane + 32 * t] * s_in[lane + 32 * t];
#pragma unroll
    for (int h = 1; h < 32; h <<= 1) {
      const bool upper = lane & h;  // this lane holds v[j + h] of the pair (j, j + h)
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        const float o = __shfl_xor_sync(0xffffffffu, v[t], h);
        v[t] = upper ? o - v[t] : v[t] + o;
      }
    }
#pragma unroll
    for (int h = 1; h < 4; h <<= 1) {
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        if (t & h) continue;
        const float a = v[t], b = v[t + h];
        v[t] = a + b;
        v[t + h] = a - b;
      }
    }
#pragma unroll
    for (int t = 0; t < 4; ++t) row[lane + 32 * t] = v[t] * (s_out[lane + 32 * t] * scale);
  }
}

/// In-place rotation of count vectors buf[count][stride] (first c.rotated_dim = c.dim entries of each) by
/// head `head`'s parameters: forward y = Pi x, inverse x = Pi^T y. tmp: shared scratch of the same
/// shape. All threads of the block must call it (it synchronizes the block).
__device__ inline void rotate_shared(const DeviceCodec& c, int head, bool inverse, float* buf, float* tmp, int count,
                                     int stride) {
  const int n = c.rotated_dim;
  const float* prm = c.rotation + static_cast<size_t>(head) * c.rotation_stride;
  if (c.family == RotationFamily::Hadamard) {
    const float* s_in = inverse ? prm + n : prm;  // forward: D(s1) first; inverse: D(s2) first
    const float* s_out = inverse ? prm : prm + n;
    const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
    if (n == 4 * 32) {
      hadamard128_by_warps(s_in, s_out, scale, buf, count, stride);
      __syncthreads();
      return;
    }
    for (int i = threadIdx.x; i < count * n; i += blockDim.x) buf[(i / n) * stride + i % n] *= s_in[i % n];
    __syncthreads();
    const int pairs = n / 2;
    for (int h = 1; h < n; h <<= 1) {
      for (int k = threadIdx.x; k < count * pairs; k += blockDim.x) {
        const int g = k / pairs, kk = k % pairs;
        float* v = buf + g * stride + (kk / h) * 2 * h + (kk % h);
        const float a = v[0], b = v[h];
        v[0] = a + b;
        v[h] = a - b;
      }
      __syncthreads();
    }
    for (int i = threadIdx.x; i < count * n; i += blockDim.x) buf[(i / n) * stride + i % n] *= s_out[i % n] * scale;
    __syncthreads();
    return;
  }
  // Block-diagonal: blocks of bs coordinates; rotor's partial last block (n % 3 != 0) has only
  // n - b bs real coordinates, and its matrix keeps the pads at zero (docs/formats.md), so only the
  // real inputs are read (the entry after a vector is the next vector's, or unwritten).
  const int bs = static_cast<int>(c.family);
  for (int i = threadIdx.x; i < count * n; i += blockDim.x) {
    const int g = i / n, j = i % n;
    const int b = j / bs, r = j % bs;
    const int width = min(bs, n - b * bs);
    const float* m = prm + b * bs * bs;
    const float* x = buf + g * stride + b * bs;
    float acc = 0.0f;
    for (int k = 0; k < width; ++k) acc += (inverse ? m[k * bs + r] : m[r * bs + k]) * x[k];
    tmp[g * stride + j] = acc;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < count * n; i += blockDim.x) buf[(i / n) * stride + i % n] = tmp[(i / n) * stride + i % n];
  __syncthreads();
}

/// Coordinate j of one vector x rotated by block-diagonal parameters prm (blocks of BS): rotate_shared's
/// sum for j, in its order.
template <int BS>
__device__ __forceinline__ float block_rotated(const float* prm, bool inverse, const float* x, int j, int n) {
  const int b = j / BS, r = j % BS;
  const int width = min(BS, n - b * BS);
  const float* m = prm + b * BS * BS;
  const float* xb = x + b * BS;
  float acc = 0.0f;
#pragma unroll
  for (int k = 0; k < BS; ++k)
    if (k < width) acc += (inverse ? m[k * BS + r] : m[r * BS + k]) * xb[k];
  return acc;
}

/// One warp's rotation of one vector x of 128 coordinates in shared memory by one head's parameters
/// prm (shared memory; the caller staged them): y[t] is coordinate lane + 32 t, in registers. The same
/// sums in the same order as rotate_shared (and hadamard128_by_warps), so the bits are the same.
__device__ inline void rotate128_warp(const DeviceCodec& c, const float* prm, bool inverse, const float* x, float (&y)[4]) {
  const int lane = threadIdx.x & 31, n = c.rotated_dim;  // (128)
  if (c.family == RotationFamily::Hadamard) {
    const float* s_in = inverse ? prm + n : prm;
    const float* s_out = inverse ? prm : prm + n;
    const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
    // hadamard128_by_warps' steps for one vector, written out (that function's own text here changed
    // the decode kernel's chunk-loop schedule, session 22)
    float v0 = x[lane] * s_in[lane], v1 = x[lane + 32] * s_in[lane + 32];
    float v2 = x[lane + 64] * s_in[lane + 64], v3 = x[lane + 96] * s_in[lane + 96];
#pragma unroll
    for (int h = 1; h < 32; h <<= 1) {
      const float o0 = __shfl_xor_sync(0xffffffffu, v0, h);
      v0 = (lane & h) ? o0 - v0 : v0 + o0;
      const float o1 = __shfl_xor_sync(0xffffffffu, v1, h);
      v1 = (lane & h) ? o1 - v1 : v1 + o1;
      const float o2 = __shfl_xor_sync(0xffffffffu, v2, h);
      v2 = (lane & h) ? o2 - v2 : v2 + o2;
      const float o3 = __shfl_xor_sync(0xffffffffu, v3, h);
      v3 = (lane & h) ? o3 - v3 : v3 + o3;
    }
    float a = v0, e = v1;  // registers 32 apart, then 64 apart
    v0 = a + e, v1 = a - e;
    a = v2, e = v3;
    v2 = a + e, v3 = a - e;
    a = v0, e = v2;
    v0 = a + e, v2 = a - e;
    a = v1, e = v3;
    v1 = a + e, v3 = a - e;
    y[0] = v0 * (s_out[lane] * scale);
    y[1] = v1 * (s_out[lane + 32] * scale);
    y[2] = v2 * (s_out[lane + 64] * scale);
    y[3] = v3 * (s_out[lane + 96] * scale);
    return;
  }
  const int bs = static_cast<int>(c.family);
#pragma unroll
  for (int t = 0; t < 4; ++t) {
    const int j = lane + 32 * t;
    y[t] = bs == 3 ? block_rotated<3>(prm, inverse, x, j, n)
                   : bs == 2 ? block_rotated<2>(prm, inverse, x, j, n) : block_rotated<4>(prm, inverse, x, j, n);
  }
}

}  // namespace rq::cuda::detail
