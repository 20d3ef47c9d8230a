// Fused quantize-and-append kernel (include/rq/cuda/append.hpp).
//
// One thread encodes one vector: the whole pipeline of rq::Codec::encode_one for Lloyd-Max
// formats, in the same operation order, with explicit round-to-nearest intrinsics so that nvcc
// cannot contract a multiply and an add into an FMA (the CPU reference does not either). Norms are
// summed in double like the reference, so codes and stored norms are bit-identical.
// Block (64 tokens, one head, one role): the head's rotation parameters are staged in shared
// memory and read by all threads at the same address (broadcast).
#include <cuda_fp16.h>

#include "kernel_common.cuh"
#include "rq/core/half.hpp"
#include "rq/cuda/append.hpp"

namespace rq::cuda {
namespace detail {
cudaError_t launch_append_tiled(const AppendParams& p, cudaStream_t stream);
}  // namespace detail
namespace {

using detail::static_for;

constexpr int kMaxRotationFloats = 512;  // d = 128: iso 32 x 16, rotor 43 x 9, planar 64 x 4, turbo 2 x 128

// Coordinates after rotation: D for turbo (64 and 128 are powers of two), else D padded to blocks.
template <int D, int FAM>
constexpr int kRotatedDim = FAM == 0 ? D : FAM * ((D + FAM - 1) / FAM);

// Loads the D input components of one vector as floats (exact conversions).
template <int D>
__device__ __forceinline__ void load_vector(const void* base, int64_t offset, InputType type, float (&x)[D]) {
  if (type == InputType::F32) {
    const float4* p = reinterpret_cast<const float4*>(static_cast<const float*>(base) + offset);
#pragma unroll
    for (int i = 0; i < D / 4; ++i) {
      const float4 v = __ldg(p + i);
      x[4 * i] = v.x, x[4 * i + 1] = v.y, x[4 * i + 2] = v.z, x[4 * i + 3] = v.w;
    }
    return;
  }
  const uint4* p = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(base) + offset);
  const bool bf16 = type == InputType::BF16;
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
    const uint4 v = __ldg(p + i);
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint32_t lo = w[k] & 0xffffu, hi = w[k] >> 16;
      if (bf16) {
        x[8 * i + 2 * k] = __uint_as_float(lo << 16);
        x[8 * i + 2 * k + 1] = __uint_as_float(hi << 16);
      } else {
        x[8 * i + 2 * k] = __half2float(__ushort_as_half(static_cast<unsigned short>(lo)));
        x[8 * i + 2 * k + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(hi)));
      }
    }
  }
}

// Count of thresholds <= v: the reference's branchless binary search over the sorted thresholds
// (shared memory: the 2^b - 1 floats sit in distinct banks, so lanes never conflict). Measured on
// the H200: faster at 1M vectors than picking each step's threshold from registers with selects.
template <int BITS>
__device__ __forceinline__ uint32_t quantize(float v, const float* thr) {
  uint32_t k = 0;
#pragma unroll
  for (uint32_t step = 1u << (BITS - 1); step > 0; step >>= 1) k += (v >= thr[k + step - 1]) ? step : 0u;
  return k;
}

// Four lanes per vector (a quad): the same arithmetic in the same order as quantize_append_kernel,
// spread so that each lane's serial chain is a quarter as long (small steps are latency-bound).
// The reference's four-accumulator sums map exactly onto the quad: lane l sums the coordinates
// j = l (mod 4) in increasing j, and (a0 + a1) + (a2 + a3) is formed with two xor-shuffles.
// Block: 32 vectors (tokens) of one head and role; per vector a shared row of u and of codes.
constexpr int kQuadVectors = 32;

template <int D, int BITS, int FAM>
__global__ void __launch_bounds__(4 * kQuadVectors) quantize_append_quad_kernel(AppendParams p) {
  constexpr int N = kRotatedDim<D, FAM>;
  constexpr int LEVELS = 1 << BITS;
  constexpr int PAYLOAD = (N * BITS + 7) / 8;
  constexpr int MAIN = PAYLOAD / 16 * 16;
  constexpr int TAIL = PAYLOAD - MAIN;
  constexpr int QC = D / 4;            // coordinates per lane: [QC q, QC q + QC)
  constexpr int XS = (N + 4 + 3) / 4 * 4;  // shared row stride (floats), 16-byte multiple
  static_assert(D == 128 && MAIN == 4 * QC * BITS / 8 && TAIL <= 1, "quad append: head_dim 128");

  const AppendJob& job = p.jobs[blockIdx.z];
  const int head = blockIdx.y;
  __shared__ __align__(16) float s_rot[kMaxRotationFloats];
  __shared__ float s_thr[LEVELS - 1];
  __shared__ double s_c2[LEVELS];
  __shared__ __align__(16) float s_x[kQuadVectors][XS];
  __shared__ uint8_t s_code[kQuadVectors][N + 3];
  const float* rot = job.codec.rotation + static_cast<size_t>(head) * job.codec.rotation_stride;
  for (int i = threadIdx.x; i < job.codec.rotation_stride && i < kMaxRotationFloats; i += blockDim.x) s_rot[i] = rot[i];
  if (threadIdx.x < LEVELS) {
    const double c = job.codec.centroids[threadIdx.x];
    s_c2[threadIdx.x] = c * c;
  }
  if (threadIdx.x < LEVELS - 1) s_thr[threadIdx.x] = job.codec.thresholds[threadIdx.x];
  __syncthreads();

  const int vec = threadIdx.x >> 2, q = threadIdx.x & 3;
  const int token = blockIdx.x * kQuadVectors + vec;
  const int64_t slot = token < p.n_tokens ? p.slot_mapping[token] : -1;
  const bool active = slot >= 0;  // inactive quads run along on zeros (the shuffles need them)
  float* xs = s_x[vec];
  uint8_t* cs = s_code[vec];

  float x[QC];
  if (active) {
    load_vector<QC>(job.x, token * job.token_stride + static_cast<int64_t>(head) * D + QC * q, job.type, x);
  } else {
#pragma unroll
    for (int i = 0; i < QC; ++i) x[i] = 0.0f;
  }
#pragma unroll
  for (int i = 0; i < QC; i += 4) *reinterpret_cast<float4*>(xs + QC * q + i) = make_float4(x[i], x[i + 1], x[i + 2], x[i + 3]);
  if (q == 0) {
#pragma unroll
    for (int j = D; j < XS; ++j) xs[j] = 0.0f;
  }
  __syncwarp();

  // 1. norm: residue class q, then (a0 + a1) + (a2 + a3).
  double a = 0.0;
#pragma unroll
  for (int i = 0; i < D / 4; ++i) {
    const double v = xs[4 * i + q];
    a += v * v;
  }
  a += __shfl_xor_sync(0xffffffffu, a, 1);
  const double sq = a + __shfl_xor_sync(0xffffffffu, a, 2);
  const bool finite = isfinite(sq);
  const float norm = finite ? static_cast<float>(sqrt(sq)) : 0.0f;
  bool zero = norm == 0.0f;
  const float inv = zero ? 0.0f : __fdiv_rn(1.0f, norm);
  const uint32_t zero_code = static_cast<uint32_t>(job.codec.zero_code);

  // 2.-4. u = x * inv, rotate, quantize; codes to shared memory.
  uint32_t words[BITS];  // the lane's slice of the main row: codes QC q .. QC q + QC - 1
#pragma unroll
  for (int w = 0; w < BITS; ++w) words[w] = 0u;
  if constexpr (FAM == 0) {
    float y[QC];
#pragma unroll
    for (int i = 0; i < QC; ++i) y[i] = __fmul_rn(__fmul_rn(x[i], inv), s_rot[QC * q + i]);
    static_for<0, 5>([&](auto sc) {  // half = 1 .. 16 inside the lane
      constexpr int H = 1 << decltype(sc)::value;
#pragma unroll
      for (int blk = 0; blk < QC; blk += 2 * H) {
#pragma unroll
        for (int i = 0; i < H; ++i) {
          const float u0 = y[blk + i], u1 = y[blk + i + H];
          y[blk + i] = __fadd_rn(u0, u1);
          y[blk + i + H] = __fsub_rn(u0, u1);
        }
      }
    });
#pragma unroll
    for (int m = 1; m <= 2; m <<= 1) {  // half = 32, 64: partner lane q ^ m
      const bool upper = q & m;
#pragma unroll
      for (int i = 0; i < QC; ++i) {
        const float other = __shfl_xor_sync(0xffffffffu, y[i], m);
        y[i] = upper ? __fsub_rn(other, y[i]) : __fadd_rn(y[i], other);
      }
    }
    const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(N)));
    static_for<0, QC>([&](auto ic) {
      constexpr int I = decltype(ic)::value;
      uint32_t k = quantize<BITS>(__fmul_rn(y[I], __fmul_rn(s_rot[N + QC * q + I], scale)), s_thr);
      k = zero ? zero_code : k;
      cs[QC * q + I] = static_cast<uint8_t>(k);
      detail::pack_word_code<BITS, I>(words, k);
    });
  } else {
#pragma unroll
    for (int i = 0; i < QC; ++i) xs[QC * q + i] = __fmul_rn(x[i], inv);
    __syncwarp();
    constexpr int G = N / FAM;
    for (int b = q; b < G; b += 4) {
      const float* m = s_rot + b * FAM * FAM;
      float in[FAM];
#pragma unroll
      for (int k = 0; k < FAM; ++k) in[k] = xs[b * FAM + k];
#pragma unroll
      for (int r = 0; r < FAM; ++r) {
        float yv = __fmul_rn(m[r * FAM], in[0]);
#pragma unroll
        for (int k = 1; k < FAM; ++k) yv = __fadd_rn(yv, __fmul_rn(m[r * FAM + k], in[k]));
        const uint32_t k = quantize<BITS>(yv, s_thr);
        cs[b * FAM + r] = static_cast<uint8_t>(zero ? zero_code : k);
      }
    }
    __syncwarp();
    static_for<0, QC>([&](auto ic) {
      constexpr int I = decltype(ic)::value;
      detail::pack_word_code<BITS, I>(words, cs[QC * q + I]);
    });
  }
  __syncwarp();

  // 5. ||C[idx]||^2 with the same accumulator pattern (leftover coordinates into lane 0, last).
  double c = 0.0;
  for (int j = q; j < N / 4 * 4; j += 4) c += s_c2[cs[j]];
  if (q == 0) {
    for (int j = N / 4 * 4; j < N; ++j) c += s_c2[cs[j]];
  }
  c += __shfl_xor_sync(0xffffffffu, c, 1);
  const double cnorm_sq = c + __shfl_xor_sync(0xffffffffu, c, 2);
  float stored = norm;
  if (!zero && job.codec.norm_correction && cnorm_sq > 0.0) {
    stored = static_cast<float>(static_cast<double>(norm) / sqrt(cnorm_sq));
  }
  uint32_t tail_code = N > D ? cs[D] : 0u;
  if (!finite || !(fabsf(stored) <= kHalfMax)) {
    if (p.error_flag && active && q == 0) atomicExch(p.error_flag, 1);
    zero = true;
#pragma unroll
    for (int w = 0; w < BITS; ++w) words[w] = 0u;
    static_for<0, QC>([&](auto ic) { detail::pack_word_code<BITS, decltype(ic)::value>(words, zero_code); });
    tail_code = zero_code;
  }
  if (zero) stored = 0.0f;
  if (!active) return;

  const int page_size = job.geometry.page_size;
  const size_t row = job.geometry.row(static_cast<int>(slot / page_size), head, static_cast<int>(slot % page_size));
  uint32_t* dst = reinterpret_cast<uint32_t*>(job.planes.codes + row * MAIN) + BITS * q;
#pragma unroll
  for (int w = 0; w < BITS; ++w) dst[w] = words[w];
  if (q == 0) {
    if constexpr (TAIL > 0) job.planes.tail[row * TAIL] = static_cast<uint8_t>(tail_code);
    job.planes.norms[row] = float_to_half(stored);
  }
}

template <int D, int BITS, int FAM>
cudaError_t launch_one(const AppendParams& p, cudaStream_t stream) {
  const dim3 grid((p.n_tokens + kQuadVectors - 1) / kQuadVectors, p.n_kv_heads, p.n_jobs);
  quantize_append_quad_kernel<D, BITS, FAM><<<grid, 4 * kQuadVectors, 0, stream>>>(p);
  return cudaGetLastError();
}

template <int D, int BITS>
cudaError_t dispatch_family(const AppendParams& p, cudaStream_t stream) {
  switch (p.jobs[0].codec.family) {
    case RotationFamily::Hadamard: return launch_one<D, BITS, 0>(p, stream);
    case RotationFamily::Block2: return launch_one<D, BITS, 2>(p, stream);
    case RotationFamily::Block3: return launch_one<D, BITS, 3>(p, stream);
    case RotationFamily::Block4: return launch_one<D, BITS, 4>(p, stream);
  }
  return cudaErrorInvalidValue;
}

template <int D>
cudaError_t dispatch_bits(const AppendParams& p, cudaStream_t stream) {
  switch (p.jobs[0].codec.bits) {
    case 2: return dispatch_family<D, 2>(p, stream);
    case 3: return dispatch_family<D, 3>(p, stream);
    case 4: return dispatch_family<D, 4>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t launch_quantize_append(const AppendParams& p, cudaStream_t stream) {
  if (p.n_jobs < 1 || p.n_jobs > 2 || p.n_kv_heads < 1 || p.n_tokens < 0 || !p.slot_mapping ||
      (p.lanes_per_vector != 0 && p.lanes_per_vector != 1 && p.lanes_per_vector != 4)) {
    return cudaErrorInvalidValue;
  }
  if (p.n_tokens == 0) return cudaSuccess;
  const DeviceCodec& c0 = p.jobs[0].codec;
  for (int j = 0; j < p.n_jobs; ++j) {
    const AppendJob& job = p.jobs[j];
    const DeviceCodec& c = job.codec;
    if (c.dim != c0.dim || c.bits != c0.bits || c.family != c0.family || c.rotated_dim != c0.rotated_dim) {
      return cudaErrorInvalidValue;
    }
    const int64_t esize = job.type == InputType::F32 ? 4 : 2;
    if (reinterpret_cast<uintptr_t>(job.x) % 16 != 0 || (job.token_stride * esize) % 16 != 0) {
      return cudaErrorInvalidValue;  // rows are read as 16-byte chunks
    }
    if (!job.x || !c.rotation || !c.centroids || !c.thresholds || !job.planes.norms ||
        job.geometry.n_kv_heads != p.n_kv_heads || c.rotation_stride > kMaxRotationFloats ||
        job.geometry.row_main_bytes + job.geometry.row_tail_bytes != c.payload_bytes ||
        (job.geometry.row_main_bytes && !job.planes.codes) || (job.geometry.row_tail_bytes && !job.planes.tail) ||
        job.token_stride < static_cast<int64_t>(p.n_kv_heads) * c.dim) {
      return cudaErrorInvalidValue;
    }
  }
  if (c0.dim != 128) return cudaErrorInvalidValue;  // the kernels are instantiated for head_dim 128
  if (p.lanes_per_vector == 4) return dispatch_bits<128>(p, stream);
  return detail::launch_append_tiled(p, stream);
}

}  // namespace rq::cuda
