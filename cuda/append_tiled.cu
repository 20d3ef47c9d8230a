// Fused quantize-and-append, tiled kernel (include/rq/cuda/append.hpp): one thread encodes one
// vector, the whole pipeline of rq::Codec::encode_one for Lloyd-Max formats in the same operation
// order (explicit round-to-nearest intrinsics: nvcc cannot contract a multiply and an add into an
// FMA, the CPU reference does not either; norms summed in double), so codes and stored norms are
// bit-identical to the CPU codec.
//
// Block = 64 consecutive tokens of one KV head and one role (K or V). Their input rows are staged
// into shared memory with coalesced 16-byte cp.async copies (each row is 256 contiguous bytes in
// fp16) while the head's rotation parameters are read; then each thread reads its own row with
// conflict-free 16-byte shared loads, twice: once for the norm, once to normalize.
#include <cuda_fp16.h>

#include "append_quantize.cuh"
#include "kernel_common.cuh"
#include "rq/core/half.hpp"
#include "rq/cuda/append.hpp"

namespace rq::cuda::detail {
namespace {

constexpr int kTileVectors = 64;        // threads per block = vectors per block
constexpr int kRowPad = 16;             // bytes after each staged row (conflict-free row reads)
constexpr int kRotationSmemFloats = 528;  // rotor: 43 blocks x 12 (9 used); turbo: 128 + 128 + 64

// Coordinates after rotation: D for turbo (64 and 128 are powers of two), else D padded to blocks.
template <int D, int FAM>
constexpr int kRotatedDim = FAM == 0 ? D : FAM * ((D + FAM - 1) / FAM);

// Floats per staged block matrix: FAM x FAM rounded up to whole 16-byte loads.
template <int FAM>
constexpr int kMatrixStride = (FAM * FAM + 3) / 4 * 4;

__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src));
}

// Issues the cp.async copies of rows t0 .. t0 + kTileVectors - 1 (CHUNKS 16-byte chunks each) of
// src (row t at src + t * row_pitch bytes) into tile (row r at tile + r * stride); one commit.
template <int CHUNKS>
__device__ __forceinline__ void stage_rows(uint8_t* tile, int stride, const uint8_t* src, int64_t row_pitch, int t0,
                                           int n_tokens) {
#pragma unroll
  for (int k = 0; k < CHUNKS; ++k) {
    const int i = k * kTileVectors + static_cast<int>(threadIdx.x);
    const int r = i / CHUNKS, c = i % CHUNKS;
    if (t0 + r < n_tokens) cp_async16(tile + r * stride + 16 * c, src + (t0 + r) * row_pitch + 16 * c);
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

// p, with a register dependence on `after`: loads through the result cannot be scheduled before
// `after` is computed (keeps the compiler from hoisting 128 values' worth of loads early).
template <typename T>
__device__ __forceinline__ T* after_value(T* p, float after) {
  uint32_t zero;
  asm volatile("{\n\t.reg .pred q;\n\tsetp.eq.f32 q, %1, 0f7fc00001;\n\tselp.u32 %0, 1, 0, q;\n\t}" : "=r"(zero) : "f"(after));
  return p + zero;  // zero == 0 (a NaN never compares equal)
}

__device__ __forceinline__ double half_bits_to_double(uint32_t h) {
  double d;
  const unsigned short s = static_cast<unsigned short>(h);
  asm("{ .reg .f16 t; mov.b16 t, %1; cvt.f64.f16 %0, t; }" : "=d"(d) : "h"(s));
  return d;
}

// 16-bit element e (0..7) of a 16-byte chunk as float: fp16 or bf16 (exact conversions).
template <bool BF16>
__device__ __forceinline__ float element16(const uint4& w, int e) {
  const uint32_t word = e < 2 ? w.x : e < 4 ? w.y : e < 6 ? w.z : w.w;
  if constexpr (BF16) return __uint_as_float((e & 1) ? (word & 0xffff0000u) : (word << 16));
  __half2 h;
  *reinterpret_cast<uint32_t*>(&h) = word;
  return (e & 1) ? __high2float(h) : __low2float(h);
}

// Sum of squares of the row in double with the reference's four accumulators (coordinate j into
// a[j % 4], increasing j); products of floats are exact in double, so an FMA is the same sum.
template <int D>
__device__ __forceinline__ double row_sum_of_squares(const uint8_t* row, InputType type) {
  double a[4] = {0.0, 0.0, 0.0, 0.0};
  if (type == InputType::F32) {
#pragma unroll
    for (int q = 0; q < D / 4; ++q) {
      const float4 f = reinterpret_cast<const float4*>(row)[q];
      const float v[4] = {f.x, f.y, f.z, f.w};
#pragma unroll
      for (int e = 0; e < 4; ++e) a[e] = fma(static_cast<double>(v[e]), static_cast<double>(v[e]), a[e]);
    }
  } else if (type == InputType::BF16) {
#pragma unroll
    for (int q = 0; q < D / 8; ++q) {
      const uint4 w = reinterpret_cast<const uint4*>(row)[q];
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const double x = element16<true>(w, e);
        a[e & 3] = fma(x, x, a[e & 3]);
      }
    }
  } else {
#pragma unroll
    for (int q = 0; q < D / 8; ++q) {
      const uint4 w = reinterpret_cast<const uint4*>(row)[q];
      const uint32_t word[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        const double x = half_bits_to_double((e & 1) ? (word[e >> 1] >> 16) : word[e >> 1]);
        a[e & 3] = fma(x, x, a[e & 3]);
      }
    }
  }
  return (a[0] + a[1]) + (a[2] + a[3]);
}

// u[j] = x[j] * inv for a row of 16-bit elements (signs flipped by sign_pairs first, if given).
template <int D, bool BF16, int N>
__device__ __forceinline__ void load_normalized16(const uint8_t* row, float inv, const uint32_t* sign_pairs, float (&u)[N]) {
#pragma unroll
  for (int q = 0; q < D / 8; ++q) {
    uint4 w = reinterpret_cast<const uint4*>(row)[q];
    if (sign_pairs) {
      const uint4 s = reinterpret_cast<const uint4*>(sign_pairs)[q];
      w.x ^= s.x, w.y ^= s.y, w.z ^= s.z, w.w ^= s.w;
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) u[8 * q + e] = __fmul_rn(element16<BF16>(w, e), inv);
  }
}

// u[j] = x[j] * inv (x[j] with its sign flipped where sign_pairs / sign_words say: turbo's D(s1),
// exact either side of the rounding). sign_pairs: [D/2] words, bit 15 and bit 31 per 16-bit pair;
// sign_words: [D] words, bit 31. Both null for the block rotations.
template <int D, int N>
__device__ __forceinline__ void load_normalized(const uint8_t* row, InputType type, float inv, const uint32_t* sign_pairs,
                                                const uint32_t* sign_words, float (&u)[N]) {
#pragma unroll
  for (int j = D; j < N; ++j) u[j] = 0.0f;
  if (type == InputType::F32) {
#pragma unroll
    for (int q = 0; q < D / 4; ++q) {
      float4 f = reinterpret_cast<const float4*>(row)[q];
      if (sign_words) {
        const uint4 s = reinterpret_cast<const uint4*>(sign_words)[q];
        f = make_float4(__uint_as_float(__float_as_uint(f.x) ^ s.x), __uint_as_float(__float_as_uint(f.y) ^ s.y),
                        __uint_as_float(__float_as_uint(f.z) ^ s.z), __uint_as_float(__float_as_uint(f.w) ^ s.w));
      }
      u[4 * q] = __fmul_rn(f.x, inv);
      u[4 * q + 1] = __fmul_rn(f.y, inv);
      u[4 * q + 2] = __fmul_rn(f.z, inv);
      u[4 * q + 3] = __fmul_rn(f.w, inv);
    }
    return;
  }
  if (type == InputType::BF16) {
    load_normalized16<D, true>(row, inv, sign_pairs, u);
  } else {
    load_normalized16<D, false>(row, inv, sign_pairs, u);
  }
}

// Row index of a slot (page * page_size + offset) in the paged planes.
__device__ __forceinline__ size_t slot_row(const PagedGeometry& g, int64_t slot, int head) {
  if (slot <= 0x7fffffff) {
    const uint32_t s = static_cast<uint32_t>(slot), ps = static_cast<uint32_t>(g.page_size);
    return g.row(static_cast<int>(s / ps), head, static_cast<int>(s % ps));
  }
  return g.row(static_cast<int>(slot / g.page_size), head, static_cast<int>(slot % g.page_size));
}

template <int D, int BITS, int FAM>
__global__ void __launch_bounds__(kTileVectors, 6) append_tiled_kernel(AppendParams p) {
  constexpr int N = kRotatedDim<D, FAM>;
  constexpr int PAYLOAD = (N * BITS + 7) / 8;
  constexpr int WORDS = (PAYLOAD + 3) / 4;
  constexpr int MAIN = PAYLOAD / 16 * 16;
  constexpr int TAIL = PAYLOAD - MAIN;
  constexpr int HALF = 1 << (BITS - 1);
  constexpr int MS = kMatrixStride<FAM>;
  static_assert(FAM != 0 || 2 * D + D / 2 <= kRotationSmemFloats, "turbo tables");
  static_assert(FAM == 0 || (N / (FAM > 0 ? FAM : 1)) * MS <= kRotationSmemFloats, "block matrices");

  extern __shared__ __align__(16) uint8_t tile[];  // [kTileVectors][row_bytes + kRowPad]
  __shared__ __align__(16) float s_rot[kRotationSmemFloats];
  __shared__ double s_c2[HALF];

  const AppendJob& job = p.jobs[blockIdx.z];
  const int head = blockIdx.y, tid = threadIdx.x;
  const int t0 = blockIdx.x * kTileVectors;
  const InputType type = job.type;
  const int row_bytes = D * (type == InputType::F32 ? 4 : 2);
  const int stride = row_bytes + kRowPad;

  // 1. Stage the block's input rows (16-byte chunks; 16 or 32 threads per row).
  if (type == InputType::F32) {
    stage_rows<D * 4 / 16>(tile, stride, static_cast<const uint8_t*>(job.x) + static_cast<size_t>(head) * D * 4,
                           job.token_stride * 4, t0, p.n_tokens);
  } else {
    stage_rows<D * 2 / 16>(tile, stride, static_cast<const uint8_t*>(job.x) + static_cast<size_t>(head) * D * 2,
                           job.token_stride * 2, t0, p.n_tokens);
  }
  // 2. Rotation parameters, thresholds and C^2 while the copies are in flight.
  const float* rot = job.codec.rotation + static_cast<size_t>(head) * job.codec.rotation_stride;
  if constexpr (FAM == 0) {
    // s_rot: [0, N) s2 * scale; [N, 2N) sign words of s1; [2N, 2N + N/2) sign pairs of s1.
    const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(N)));
    for (int j = tid; j < N; j += kTileVectors) {
      s_rot[j] = __fmul_rn(rot[N + j], scale);
      reinterpret_cast<uint32_t*>(s_rot)[N + j] = __float_as_uint(rot[j]) & 0x80000000u;
    }
    for (int k = tid; k < N / 2; k += kTileVectors) {
      reinterpret_cast<uint32_t*>(s_rot)[2 * N + k] =
          ((__float_as_uint(rot[2 * k]) >> 16) & 0x8000u) | (__float_as_uint(rot[2 * k + 1]) & 0x80000000u);
    }
  } else {
    for (int i = tid; i < (N / FAM) * FAM * FAM; i += kTileVectors) s_rot[(i / (FAM * FAM)) * MS + i % (FAM * FAM)] = rot[i];
  }
  if (tid < HALF) {
    const double c = job.codec.centroids[HALF + tid];
    s_c2[tid] = c * c;
  }
  SymmetricQuantizer<BITS> quant;
#pragma unroll
  for (int i = 0; i < SymmetricQuantizer<BITS>::kPositive; ++i) quant.t[i] = __ldg(job.codec.thresholds + HALF + i);
  quant.c2 = s_c2;
  quant.c2_rebased = static_cast<uint32_t>(__cvta_generic_to_shared(s_c2)) - (0x4b000000u << 3);
  const int token = t0 + tid;
  const int64_t slot = token < p.n_tokens ? p.slot_mapping[token] : -1;
  asm volatile("cp.async.wait_all;\n" ::);
  __syncthreads();
  if (slot < 0) return;

  // 3. Norm (double, the reference's accumulators), 1 / norm.
  const uint8_t* row = tile + tid * stride;
  const double sq = row_sum_of_squares<D>(row, type);
  const bool finite = isfinite(sq);
  const float norm = finite ? static_cast<float>(sqrt(sq)) : 0.0f;
  bool zero = norm == 0.0f;
  const float inv = zero ? 0.0f : __fdiv_rn(1.0f, norm);

  // 4. u = x / norm, rotate, quantize and pack; sum of C[idx]^2 in the same four accumulators.
  float u[N];
  uint32_t words[WORDS];
#pragma unroll
  for (int w = 0; w < WORDS; ++w) words[w] = 0u;
  double cn[4] = {0.0, 0.0, 0.0, 0.0};
  if constexpr (FAM == 0) {
    const uint32_t* sign_words = reinterpret_cast<const uint32_t*>(s_rot) + N;
    load_normalized<D, N>(after_value(row, inv), type, inv, sign_words + N, sign_words, u);
    // FWHT in the reference's butterfly order (half = 1, 2, ..., N/2), then * (s2 * scale).
    static_for<0, 31 - __builtin_clz(N)>([&](auto sc) {
      constexpr int H = 1 << decltype(sc)::value;
#pragma unroll
      for (int blk = 0; blk < N; blk += 2 * H) {
#pragma unroll
        for (int i = 0; i < H; ++i) {
          const float a = u[blk + i], b = u[blk + i + H];
          u[blk + i] = __fadd_rn(a, b);
          u[blk + i + H] = __fsub_rn(a, b);
        }
      }
    });
    static_for<0, N / 4>([&](auto qc) {
      constexpr int Q = decltype(qc)::value;
      const float4 w = after_value(reinterpret_cast<const float4*>(s_rot), u[4 * Q])[Q];
      const float s[4] = {w.x, w.y, w.z, w.w};
      static_for<0, 4>([&](auto ec) {
        constexpr int E = decltype(ec)::value;
        quant.template emit<4 * Q + E>(__fmul_rn(u[4 * Q + E], s[E]), words, cn[E]);
      });
    });
  } else {
    load_normalized<D, N>(after_value(row, inv), type, inv, nullptr, nullptr, u);
    // Block-diagonal: y_r = sum_k M[r][k] u_k, left to right, per block of FAM coordinates.
    static_for<0, N / FAM>([&](auto bc) {
      constexpr int B = decltype(bc)::value;
      float m[MS];
#pragma unroll
      for (int i = 0; i < MS / 4; ++i) {
        const float4 v = reinterpret_cast<const float4*>(s_rot + B * MS)[i];
        m[4 * i] = v.x, m[4 * i + 1] = v.y, m[4 * i + 2] = v.z, m[4 * i + 3] = v.w;
      }
      static_for<0, FAM>([&](auto rc) {
        constexpr int R = decltype(rc)::value;
        constexpr int J = B * FAM + R;
        float y = __fmul_rn(m[R * FAM], u[B * FAM]);
#pragma unroll
        for (int k = 1; k < FAM; ++k) y = __fadd_rn(y, __fmul_rn(m[R * FAM + k], u[B * FAM + k]));
        quant.template emit<J>(y, words, cn[J < N / 4 * 4 ? J % 4 : 0]);
      });
    });
  }
  quant.template finish<N>(words);

  // 5. Stored norm: nu / ||C[idx]|| (norm correction) or nu, as binary16.
  const double cnorm_sq = (cn[0] + cn[1]) + (cn[2] + cn[3]);
  float stored = norm;
  if (!zero && job.codec.norm_correction && cnorm_sq > 0.0) {
    stored = static_cast<float>(static_cast<double>(norm) / sqrt(cnorm_sq));
  }
  if (!finite || !(fabsf(stored) <= kHalfMax)) {
    // The CPU codec refuses this vector; store a zero vector and report it.
    if (p.error_flag) atomicExch(p.error_flag, 1);
    zero = true;
  }
  if (zero) {
    stored = 0.0f;
#pragma unroll
    for (int w = 0; w < WORDS; ++w) words[w] = SymmetricQuantizer<BITS>::field_base(w, N);  // all codes = half
  }

  const size_t r = slot_row(job.geometry, slot, head);
  if constexpr (MAIN > 0) {
    uint4* dst = reinterpret_cast<uint4*>(job.planes.codes + r * MAIN);
#pragma unroll
    for (int i = 0; i < MAIN / 16; ++i) dst[i] = make_uint4(words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]);
  }
  if constexpr (TAIL > 0) {
    uint8_t* dst = job.planes.tail + r * TAIL;
#pragma unroll
    for (int i = 0; i < TAIL; ++i) dst[i] = static_cast<uint8_t>(words[(MAIN + i) >> 2] >> (8 * ((MAIN + i) & 3)));
  }
  job.planes.norms[r] = float_to_half(stored);
}

template <int D, int BITS, int FAM>
cudaError_t launch_tiled(const AppendParams& p, cudaStream_t stream) {
  const size_t row_bytes = static_cast<size_t>(D) * (p.jobs[0].type == InputType::F32 || (p.n_jobs > 1 && p.jobs[1].type == InputType::F32) ? 4 : 2);
  const size_t smem = kTileVectors * (row_bytes + kRowPad);  // <= 33 KB: no opt-in needed
  auto kernel = append_tiled_kernel<D, BITS, FAM>;
  const dim3 grid((p.n_tokens + kTileVectors - 1) / kTileVectors, p.n_kv_heads, p.n_jobs);
  kernel<<<grid, kTileVectors, smem, stream>>>(p);
  return cudaGetLastError();
}

template <int D, int BITS>
cudaError_t tiled_family(const AppendParams& p, cudaStream_t stream) {
  switch (p.jobs[0].codec.family) {
    case RotationFamily::Hadamard: return launch_tiled<D, BITS, 0>(p, stream);
    case RotationFamily::Block2: return launch_tiled<D, BITS, 2>(p, stream);
    case RotationFamily::Block3: return launch_tiled<D, BITS, 3>(p, stream);
    case RotationFamily::Block4: return launch_tiled<D, BITS, 4>(p, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t launch_append_tiled(const AppendParams& p, cudaStream_t stream) {
  switch (p.jobs[0].codec.bits) {
    case 2: return tiled_family<128, 2>(p, stream);
    case 3: return tiled_family<128, 3>(p, stream);
    case 4: return tiled_family<128, 4>(p, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace rq::cuda::detail
