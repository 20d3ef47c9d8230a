// Fused quantize-and-append kernel (include/rq/cuda/append.hpp), private to cuda/: the whole
// pipeline of rq::Codec::encode_one for Lloyd-Max formats in the same operation order (explicit
// round-to-nearest intrinsics: nvcc cannot contract a multiply and an add into an FMA, the CPU
// reference does not either; sums of squares in double), so codes and stored norms are
// bit-identical to the CPU codec.
//
// Block = 64 consecutive tokens of one KV head and one role (K or V). Their input rows are staged
// into shared memory with coalesced 16-byte cp.async copies (a row is 256 contiguous bytes in fp16)
// while the head's rotation parameters are read. Then LANES threads encode each vector:
//  - LANES = 1 (large steps: fewest instructions): the thread reads its row with conflict-free
//    16-byte shared loads and keeps all coordinates in registers.
//  - LANES = 4 (small steps: a quarter of the serial chain): lane r owns the coordinates
//    j = 4 m + r, which are exactly the reference's fourth sum-of-squares accumulator r (the
//    norm's and ||C[idx]||^2's), so each lane sums its own in order and the quad adds
//    (a0 + a1) + (a2 + a3) with two xor-shuffles. Turbo's FWHT does its half = 1, 2 stages across
//    the quad (shuffle + one exact FMA) and the rest in registers; block rotations read the
//    normalized vector from shared memory. Each lane packs its codes 4 fields apart, and the quad
//    shifts them into place and ORs them.
#pragma once

#include <cuda_fp16.h>

#include "append_args.cuh"
#include "append_quantize.cuh"
#include "append_tables.cuh"
#include "kernel_common.cuh"
#include "rq/core/half.hpp"
#include "rq/cuda/append.hpp"

namespace rq::cuda::detail {

constexpr int kTileVectors = 64;          // vectors (tokens) per block
constexpr int kRowPad = 16;               // bytes after each staged row (conflict-free row reads)
constexpr int kRotationSmemFloats = 528;  // rotor: 43 blocks x 12 (9 used); turbo: 128 + 128
constexpr int kUStride = 132;             // floats per normalized vector in shared memory (LANES = 4)

// Every GPU format rotates and stores exactly D = 128 coordinates (turbo: a power of two; rotor's
// partial last block keeps its pad at zero, docs/formats.md), so a codes row is D BITS / 8 bytes, a
// multiple of 16: the tail plane is empty and the kernels store main rows only.
template <int D, int BITS>
constexpr int kRowBytes = D * BITS / 8;

// Blocks of a block-diagonal rotation of D coordinates (FAM > 0), and the real coordinates (rows
// and inputs) of block B: FAM, or D - B FAM in rotor's partial last block (D % 3 != 0), whose
// matrix maps the real inputs to the real outputs and keeps the zero pad at zero.
template <int D, int FAM>
constexpr int kBlocks = (D + FAM - 1) / FAM;
template <int D, int FAM, int B>
constexpr int kBlockWidth = D - B * FAM < FAM ? D - B * FAM : FAM;

// Floats per staged block matrix: FAM x FAM rounded up to whole 16-byte loads.
template <int FAM>
constexpr int kMatrixStride = (FAM * FAM + 3) / 4 * 4;

__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src));
}

// Issues the cp.async copies of rows t0 .. t0 + kTileVectors - 1 (CHUNKS 16-byte chunks each) of
// src (row t at src + t * row_pitch bytes) into tile (row r at tile + r * stride); one commit.
template <int CHUNKS, int THREADS>
__device__ __forceinline__ void stage_rows(uint8_t* tile, int stride, const uint8_t* src, int64_t row_pitch, int t0,
                                           int n_tokens) {
#pragma unroll
  for (int k = 0; k < CHUNKS * kTileVectors / THREADS; ++k) {
    const int i = k * THREADS + static_cast<int>(threadIdx.x);
    const int r = i / CHUNKS, c = i % CHUNKS;
    if (t0 + r < n_tokens) cp_async16(tile + r * stride + 16 * c, src + (t0 + r) * row_pitch + 16 * c);
  }
  asm volatile("cp.async.commit_group;\n" ::);
}

// Stages rows t0 .. t0 + kTileVectors - 1 of head `head` of job's input (row t, head h at
// x + t * token_stride + h * D elements) into tile (row r at tile + r * stride bytes).
template <int D, int THREADS>
__device__ __forceinline__ void stage_block(uint8_t* tile, int stride, const AppendJobArgs& job, int head, int t0, int n_tokens) {
  const int esize = job.type() == InputType::F32 ? 4 : 2;
  const uint8_t* src = static_cast<const uint8_t*>(job.x) + static_cast<size_t>(head) * D * esize;
  if (esize == 4) {
    stage_rows<D * 4 / 16, THREADS>(tile, stride, src, static_cast<int64_t>(job.token_stride) * 4, t0, n_tokens);
  } else {
    stage_rows<D * 2 / 16, THREADS>(tile, stride, src, static_cast<int64_t>(job.token_stride) * 2, t0, n_tokens);
  }
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

// A lane's elements j = 4 m + r of a staged row as floats (LANES = 4).
template <int C>
__device__ __forceinline__ void load_lane(const uint8_t* row, InputType type, int r, float (&x)[C]) {
  if (type == InputType::F32) {
    const float* f = reinterpret_cast<const float*>(row) + r;
#pragma unroll
    for (int m = 0; m < C; ++m) x[m] = f[4 * m];
    return;
  }
  const uint16_t* h = reinterpret_cast<const uint16_t*>(row) + r;
  if (type == InputType::BF16) {
#pragma unroll
    for (int m = 0; m < C; ++m) x[m] = __uint_as_float(static_cast<uint32_t>(h[4 * m]) << 16);
  } else {
#pragma unroll
    for (int m = 0; m < C; ++m) x[m] = __half2float(__ushort_as_half(h[4 * m]));
  }
}

// The whole row as floats (LANES = 1): 16-byte shared loads, conflict-free (rows kRowPad apart).
template <int D>
__device__ __forceinline__ void load_row(const uint8_t* row, InputType type, float (&x)[D]) {
  if (type == InputType::F32) {
#pragma unroll
    for (int q = 0; q < D / 4; ++q) {
      const float4 f = reinterpret_cast<const float4*>(row)[q];
      x[4 * q] = f.x, x[4 * q + 1] = f.y, x[4 * q + 2] = f.z, x[4 * q + 3] = f.w;
    }
    return;
  }
  const bool bf16 = type == InputType::BF16;
#pragma unroll
  for (int q = 0; q < D / 8; ++q) {
    const uint4 w = reinterpret_cast<const uint4*>(row)[q];
#pragma unroll
    for (int e = 0; e < 8; ++e) x[8 * q + e] = bf16 ? element16<true>(w, e) : element16<false>(w, e);
  }
}

// a += x^2 in double: products of floats are exact in double, so the FMA is the reference's sum.
__device__ __forceinline__ void add_square(double& a, float x) { a = fma(static_cast<double>(x), static_cast<double>(x), a); }

// (a0 + a1) + (a2 + a3) where lane r of the quad (lanes 4v .. 4v + 3 of the warp) holds a_r.
// Addition commutes exactly, so every lane gets the reference's sum. All lanes of the warp call it.
__device__ __forceinline__ double quad_sum(double a, unsigned full_mask) {
  a += __shfl_xor_sync(full_mask, a, 1);
  return a + __shfl_xor_sync(full_mask, a, 2);
}

/// The CPU codec's refusal on the GPU (kernels cannot throw): a vector with a non-finite input or a
/// stored norm past the fp16 range is stored as a zero vector and raises *error_flag (when `report`:
/// one lane of the vector); a zero vector (`zero` on entry) gets the same row without the flag.
/// The zero row: norm 0, every code the upper middle level (what encode gives a zero vector).
/// W words of N codes (a lane's share of the row in the multi-lane kernels).
template <int BITS, int N, int W>
__device__ __forceinline__ void refuse_or_zero(bool finite, bool report, int32_t* error_flag, bool& zero, float& stored,
                                               uint32_t (&words)[W]) {
  if (!finite || !(fabsf(stored) <= kHalfMax)) {
    if (error_flag && report) atomicExch(error_flag, 1);
    zero = true;
  }
  if (zero) {
    stored = 0.0f;
#pragma unroll
    for (int w = 0; w < W; ++w) words[w] = SymmetricQuantizer<BITS>::field_base(w, N);  // all codes = half
  }
}

// Row index of a slot (page * page_size + offset) in the paged planes (page_size >= 1 and fewer than
// 2^32 rows, checked by the launch), as PagedGeometry::row.
__device__ __forceinline__ size_t slot_row(int page_size, int n_kv_heads, int64_t slot, int head) {
  const uint32_t ps = static_cast<uint32_t>(page_size);
  if ((ps & (ps - 1)) == 0) {  // a power of two (every engine's page size): a shift, a mask, 32-bit rows
    const uint32_t page = static_cast<uint32_t>(slot >> __popc(ps - 1)), offset = static_cast<uint32_t>(slot) & (ps - 1);
    return (page * static_cast<uint32_t>(n_kv_heads) + static_cast<uint32_t>(head)) * ps + offset;  // rows() < 2^32
  }
  PagedGeometry g;
  g.n_kv_heads = n_kv_heads, g.page_size = page_size;
  if (slot <= 0x7fffffff) {
    const uint32_t s = static_cast<uint32_t>(slot);
    return g.row(static_cast<int>(s / ps), head, static_cast<int>(s % ps));
  }
  return g.row(static_cast<int>(slot / page_size), head, static_cast<int>(slot % page_size));
}

// In-place FWHT butterflies of the halves H0, 2 H0, ..., < n of x[n] (the reference's order).
template <int H0, int NN>
__device__ __forceinline__ void fwht_in_registers(float (&x)[NN]) {
  static_for<0, 31 - __builtin_clz(NN / H0)>([&](auto sc) {
    constexpr int H = H0 << decltype(sc)::value;
#pragma unroll
    for (int blk = 0; blk < NN; blk += 2 * H) {
#pragma unroll
      for (int i = 0; i < H; ++i) {
        const float a = x[blk + i], b = x[blk + i + H];
        x[blk + i] = __fadd_rn(a, b);
        x[blk + i + H] = __fsub_rn(a, b);
      }
    }
  });
}

template <int D, int BITS, int FAM, int LANES>
__global__ void __launch_bounds__(kTileVectors * LANES, LANES == 1 ? 6 : 2) append_kernel(AppendArgs p) {
  constexpr int THREADS = kTileVectors * LANES;
  constexpr int N = D;          // rotated (and stored) coordinates
  constexpr int C = D / LANES;  // a lane's coordinates (LANES = 4: j = 4 m + r, m < C)
  constexpr int MAIN = kRowBytes<D, BITS>;
  constexpr int WORDS = MAIN / 4;
  constexpr int HALF = 1 << (BITS - 1);
  constexpr int F = FAM > 0 ? FAM : 1;  // block size (divisor-safe)
  constexpr int NB = kBlocks<D, F>;     // blocks of a block rotation
  constexpr int MS = kMatrixStride<FAM>;
  static_assert(LANES == 1 || LANES == 4, "one or four lanes per vector");
  constexpr int kLaneStride = C + 4;                      // LANES = 4: floats per lane's table row
  constexpr int kTurboTable = LANES == 1 ? N : 4 * kLaneStride;
  static_assert(FAM != 0 || 2 * kTurboTable <= kRotationSmemFloats, "turbo tables");
  static_assert(FAM == 0 || NB * MS <= kRotationSmemFloats, "block matrices");
  static_assert(NB * F < kUStride && MAIN % 16 == 0 && MAIN / 16 <= 4, "head_dim 128, no tail bytes");

  // dynamic: [kTileVectors][row_bytes + kRowPad] staged rows, then (LANES = 4, block rotations)
  // [kTileVectors][kUStride] normalized vectors
  extern __shared__ __align__(16) uint8_t tile[];
  __shared__ __align__(16) float s_rot[kRotationSmemFloats];
  __shared__ double s_c2[HALF];
  __shared__ uint32_t s_c2_rebased;

  const AppendJobArgs& job = p.jobs[blockIdx.z];
  const int head = blockIdx.y, tid = threadIdx.x;
  const int vec = tid / LANES, r = tid % LANES;  // vector of the block, lane within its vector
  const int t0 = blockIdx.x * kTileVectors;
  const InputType type = job.type();
  const int row_bytes = D * (type == InputType::F32 ? 4 : 2);
  const int stride = row_bytes + kRowPad;

  // 1. Stage the block's input rows.
  stage_block<D, THREADS>(tile, stride, job, head, t0, p.n_tokens);
  // 2. Rotation parameters, thresholds and C^2 while the copies are in flight.
  // (Every cold read first, then the tables: one DRAM round trip beside the rows', append_tables.cuh.)
  const float* rot = job.rotation + static_cast<size_t>(head) * job.rotation_stride;
  SymmetricQuantizer<BITS> quant;
#pragma unroll
  for (int i = 0; i < SymmetricQuantizer<BITS>::kPositive; ++i) quant.t[i] = cold_load(job.quantizer + HALF + i);
  const float c_half = tid < HALF ? cold_load(job.centroids + HALF + tid) : 0.0f;
  if constexpr (FAM == 0) {
    // s_rot: s2 * scale at [0, kTurboTable), sign bits of s1 at [kTurboTable, 2 kTurboTable), for
    // coordinate j at j (LANES = 1) or lane-major at (j % 4) * kLaneStride + j / 4 (LANES = 4: a
    // lane's values contiguous, lanes 4 words apart in the banks).
    constexpr int PER = (N + THREADS - 1) / THREADS;
    float s2[PER], s1[PER];
#pragma unroll
    for (int k = 0; k < PER; ++k) {
      const int j = tid + k * THREADS;
      s2[k] = j < N ? cold_load(rot + N + j) : 0.0f;
      s1[k] = j < N ? cold_load(rot + j) : 0.0f;
    }
    reads_before_stores();
    const float scale = static_cast<float>(1.0 / sqrt(static_cast<double>(N)));
#pragma unroll
    for (int k = 0; k < PER; ++k) {
      const int j = tid + k * THREADS;
      if (j >= N) continue;
      const int at = LANES == 1 ? j : (j % 4) * kLaneStride + j / 4;
      s_rot[at] = __fmul_rn(s2[k], scale);
      reinterpret_cast<uint32_t*>(s_rot)[kTurboTable + at] = __float_as_uint(s1[k]) & 0x80000000u;
    }
  } else {
    BlockMatrices<NB * FAM * FAM, FAM * FAM, MS, THREADS> matrices;
    matrices.load(rot, tid);
    reads_before_stores();
    matrices.store(s_rot, tid);
  }
  if (tid < HALF) s_c2[tid] = static_cast<double>(c_half) * static_cast<double>(c_half);
  if (tid == 0) s_c2_rebased = static_cast<uint32_t>(__cvta_generic_to_shared(s_c2)) - (0x4b000000u << 3);
  quant.c2 = s_c2;
  const int token = t0 + vec;
  const int64_t slot = token < p.n_tokens ? p.slot_mapping[token] : -1;
  asm volatile("cp.async.wait_all;\n" ::);
  __syncthreads();
  // LANES = 4: quads of skipped or missing tokens run along on whatever the tile holds (the
  // shuffles need every lane of the warp) and store nothing.
  const bool active = slot >= 0;
  if (LANES == 1 && !active) return;
  quant.c2_rebased = s_c2_rebased;  // read back: one register, not re-derived at every use
  constexpr unsigned quad = 0xffffffffu;  // shuffles stay inside each quad (xor 1, 2)
  const uint8_t* row = tile + vec * stride;

  // 3. x as floats, norm (double, the reference's four accumulators: coordinate j into a[j % 4]).
  float x[C];
  double sq;
  if constexpr (LANES == 1) {
    load_row<D>(row, type, x);
    double a[4] = {0.0, 0.0, 0.0, 0.0};
#pragma unroll
    for (int j = 0; j < D; ++j) add_square(a[j % 4], x[j]);
    sq = (a[0] + a[1]) + (a[2] + a[3]);
  } else {
    load_lane<C>(row, type, r, x);
    double a = 0.0;
#pragma unroll
    for (int m = 0; m < C; ++m) add_square(a, x[m]);
    sq = quad_sum(a, quad);
  }
  const bool finite = isfinite(sq);
  const float norm = finite ? static_cast<float>(sqrt(sq)) : 0.0f;
  bool zero = norm == 0.0f;
  const float inv = zero ? 0.0f : __fdiv_rn(1.0f, norm);

  // 4. u = x / norm, rotate, quantize and pack; sum of C[idx]^2 in the same accumulators.
  uint32_t words[WORDS];
#pragma unroll
  for (int w = 0; w < WORDS; ++w) words[w] = 0u;
  double cn[LANES == 1 ? 4 : 1] = {};
  const uint32_t* sign_words = reinterpret_cast<const uint32_t*>(s_rot) + kTurboTable;  // turbo's D(s1)
  if constexpr (LANES == 1) {
    if constexpr (FAM == 0) {
      // y = D(s2) H/sqrt(n) D(s1) u: s1 flips signs (exact either side of the rounding), FWHT in
      // the reference's butterfly order, then * (s2 * scale).
#pragma unroll
      for (int q = 0; q < N / 4; ++q) {
        const uint4 s = reinterpret_cast<const uint4*>(sign_words)[q];
        const uint32_t sw[4] = {s.x, s.y, s.z, s.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) x[4 * q + e] = __uint_as_float(__float_as_uint(__fmul_rn(x[4 * q + e], inv)) ^ sw[e]);
      }
      fwht_in_registers<1>(x);
      static_for<0, N / 4>([&](auto qc) {
        constexpr int Q = decltype(qc)::value;
        const float4 w = reinterpret_cast<const float4*>(s_rot)[Q];
        const float s[4] = {w.x, w.y, w.z, w.w};
        static_for<0, 4>([&](auto ec) {
          constexpr int E = decltype(ec)::value;
          quant.template emit<4 * Q + E, BITS>(__fmul_rn(x[4 * Q + E], s[E]), words, cn[E]);
        });
      });
    } else {
#pragma unroll
      for (int j = 0; j < D; ++j) x[j] = __fmul_rn(x[j], inv);
      // Block-diagonal: y_r = sum_k M[r][k] u_k, left to right, per block of FAM coordinates; the
      // partial last block (rotor) sums its real inputs only: the reference's pad term M[r][2] * 0
      // is a zero, which can only change the sign of a zero y, and -0 gets +0's code.
      static_for<0, NB>([&](auto bc) {
        constexpr int B = decltype(bc)::value, BW = kBlockWidth<D, FAM, B>;
        float m[MS];
        load_block_matrix(s_rot + B * MS, m);
        static_for<0, BW>([&](auto rc) {
          constexpr int R = decltype(rc)::value;
          constexpr int J = B * FAM + R;
          float y = __fmul_rn(m[R * FAM], x[B * FAM]);
#pragma unroll
          for (int k = 1; k < BW; ++k) y = __fadd_rn(y, __fmul_rn(m[R * FAM + k], x[B * FAM + k]));
          quant.template emit<J, BITS>(y, words, cn[J % 4]);
        });
      });
    }
  } else {
    if constexpr (FAM == 0) {
      const uint4* lane_signs = reinterpret_cast<const uint4*>(sign_words + kLaneStride * r);
#pragma unroll
      for (int q = 0; q < C / 4; ++q) {
        const uint4 sg = lane_signs[q];
        const uint32_t sw[4] = {sg.x, sg.y, sg.z, sg.w};
#pragma unroll
        for (int e = 0; e < 4; ++e) x[4 * q + e] = __uint_as_float(__float_as_uint(__fmul_rn(x[4 * q + e], inv)) ^ sw[e]);
      }
      // half = 1, 2 across the quad: lower lane a + b, upper lane a - b, as RN(+-own + other)
      // with an exact product; then half = 4 .. 64 over m in registers.
#pragma unroll
      for (int bit = 1; bit <= 2; bit <<= 1) {
        const float sign = (r & bit) ? -1.0f : 1.0f;
#pragma unroll
        for (int m = 0; m < C; ++m) x[m] = __fmaf_rn(x[m], sign, __shfl_xor_sync(quad, x[m], bit));
      }
      fwht_in_registers<1>(x);
      const float4* lane_scales = reinterpret_cast<const float4*>(s_rot + kLaneStride * r);
      static_for<0, C / 4>([&](auto qc) {
        constexpr int Q = decltype(qc)::value;
        const float4 w = lane_scales[Q];
        const float sc[4] = {w.x, w.y, w.z, w.w};
        static_for<0, 4>([&](auto ec) {
          constexpr int M = 4 * Q + decltype(ec)::value;
          quant.template emit<M, 4 * BITS>(__fmul_rn(x[M], sc[M % 4]), words, cn[0]);
        });
      });
    } else {
      float* u = reinterpret_cast<float*>(tile + kTileVectors * stride) + vec * kUStride;
#pragma unroll
      for (int m = 0; m < C; ++m) u[4 * m + r] = __fmul_rn(x[m], inv);
      if (NB * FAM > D && r == 0) u[D] = 0.0f;  // rotor's partial last block: its zero pad, as the reference's
      __syncwarp();
      // Output j = 4 m + r is row j % FAM of block j / FAM. With m = k + FAM t (k < FAM) that is
      // row (4 k + r) % FAM of block b_k + 4 t: per-lane bases for each k, compile-time steps in t.
      const float* mbase[FAM];
      const float* ubase[FAM];
#pragma unroll
      for (int k = 0; k < FAM; ++k) {
        const int row_in_block = (4 * k + r) % FAM, b = (4 * k + r) / FAM;
        mbase[k] = s_rot + b * MS + row_in_block * FAM;
        ubase[k] = u + b * FAM;
      }
      auto rotated = [&](auto mc) {  // y_j = sum_k M[j / FAM][j % FAM][k] u[FAM (j / FAM) + k], left to right
        constexpr int M = decltype(mc)::value, K = M % FAM, T = M / FAM;
        const float* mrow = mbase[K] + 4 * MS * T;
        const float* ub = ubase[K] + 4 * FAM * T;
        float y = __fmul_rn(mrow[0], ub[0]);
#pragma unroll
        for (int k = 1; k < FAM; ++k) y = __fadd_rn(y, __fmul_rn(mrow[k], ub[k]));
        return y;
      };
      static_for<0, C>([&](auto mc) {
        constexpr int M = decltype(mc)::value;
        quant.template emit<M, 4 * BITS>(rotated(mc), words, cn[0]);
      });
    }
    // The lane's fields sit 4 * BITS apart from bit 0: shift them to bit BITS * r, then OR the quad.
    const int shift = BITS * r;
#pragma unroll
    for (int w = WORDS - 1; w > 0; --w) words[w] = __funnelshift_l(words[w - 1], words[w], shift);
    words[0] <<= shift;
#pragma unroll
    for (int bit = 1; bit <= 2; bit <<= 1) {
#pragma unroll
      for (int w = 0; w < WORDS; ++w) words[w] |= __shfl_xor_sync(quad, words[w], bit);
    }
  }
  SymmetricQuantizer<BITS>::template finish<N>(words);

  // 5. Stored norm: nu / ||C[idx]|| (norm correction) or nu, as binary16.
  double cnorm_sq;
  if constexpr (LANES == 1) {
    cnorm_sq = (cn[0] + cn[1]) + (cn[2] + cn[3]);
  } else {
    cnorm_sq = quad_sum(cn[0], quad);
  }
  float stored = norm;
  if (!zero && job.norm_correction && cnorm_sq > 0.0) {
    stored = static_cast<float>(static_cast<double>(norm) / sqrt(cnorm_sq));
  }
  refuse_or_zero<BITS, N>(finite, r == 0 && active, p.error_flag, zero, stored, words);

  if (!active) return;
  const size_t rw = slot_row(job.page_size, p.n_kv_heads, slot, head);
  uint4* dst = reinterpret_cast<uint4*>(job.codes + rw * MAIN);
#pragma unroll
  for (int i = 0; i < MAIN / 16; ++i) {
    if (LANES == 1 || i == r) dst[i] = make_uint4(words[4 * i], words[4 * i + 1], words[4 * i + 2], words[4 * i + 3]);
  }
  if (r == 0) job.norms[rw] = __half_as_ushort(__float2half_rn(stored));  // |stored| <= 65504: as float_to_half
}

// Dynamic shared memory of append_kernel<D, *, FAM, LANES> for these jobs.
template <int D, int FAM, int LANES>
size_t append_smem_bytes(const AppendParams& p) {
  bool f32 = false;
  for (int j = 0; j < p.n_jobs; ++j) f32 = f32 || p.jobs[j].type == InputType::F32;
  size_t bytes = kTileVectors * (static_cast<size_t>(D) * (f32 ? 4 : 2) + kRowPad);
  if (LANES > 1 && FAM != 0) bytes += sizeof(float) * kTileVectors * kUStride;
  return bytes;
}

template <int D, int BITS, int FAM, int LANES>
cudaError_t launch_append(const AppendParams& p, cudaStream_t stream) {
  const dim3 grid((p.n_tokens + kTileVectors - 1) / kTileVectors, p.n_kv_heads, p.n_jobs);
  const size_t smem = append_smem_bytes<D, FAM, LANES>(p);
  if (smem > 48 * 1024) {  // four lanes with a block rotation: rows plus normalized vectors
    const cudaError_t st = cudaFuncSetAttribute(append_kernel<D, BITS, FAM, LANES>,
                                                cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (st != cudaSuccess) return st;
  }
  append_kernel<D, BITS, FAM, LANES><<<grid, kTileVectors * LANES, smem, stream>>>(append_args(p, false, 1));
  return cudaGetLastError();
}

/// Runs Launcher<BITS, FAM>::run(p, stream) for the jobs' bits (2..4) and rotation family (FAM: 0 for
/// the Hadamard, else the block size); head_dim 128. One dispatch for every append kernel.
template <template <int, int> class Launcher>
cudaError_t dispatch_append_format(const AppendParams& p, cudaStream_t stream) {
  auto family = [&](auto bits) -> cudaError_t {
    constexpr int B = decltype(bits)::value;
    switch (p.jobs[0].codec.family) {
      case RotationFamily::Hadamard: return Launcher<B, 0>::run(p, stream);
      case RotationFamily::Block2: return Launcher<B, 2>::run(p, stream);
      case RotationFamily::Block3: return Launcher<B, 3>::run(p, stream);
      case RotationFamily::Block4: return Launcher<B, 4>::run(p, stream);
    }
    return cudaErrorInvalidValue;
  };
  switch (p.jobs[0].codec.bits) {
    case 2: return family(std::integral_constant<int, 2>{});
    case 3: return family(std::integral_constant<int, 3>{});
    case 4: return family(std::integral_constant<int, 4>{});
    default: return cudaErrorInvalidValue;
  }
}

template <int LANES>
struct ExactLaunch {
  template <int BITS, int FAM>
  struct At {
    static cudaError_t run(const AppendParams& p, cudaStream_t stream) {
      return launch_append<kHeadDim, BITS, FAM, LANES>(p, stream);
    }
  };
};

/// Launches the kernel for the jobs' bits and rotation family (head_dim 128), LANES lanes per vector.
template <int LANES>
cudaError_t launch_append_lanes(const AppendParams& p, cudaStream_t stream) {
  return dispatch_append_format<ExactLaunch<LANES>::template At>(p, stream);
}

}  // namespace rq::cuda::detail
