// Rotating a few vectors held in shared memory with all threads of a block (private to cuda/):
// the decode's queries (forward, K's rotation) and merged outputs (inverse, V's rotation).
#pragma once

#include <cuda_runtime.h>

#include "rq/cuda/device_codec.hpp"

namespace rq::cuda::detail {

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
    const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(n)));
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

}  // namespace rq::cuda::detail
