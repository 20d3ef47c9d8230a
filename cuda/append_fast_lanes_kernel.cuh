// Fast fused quantize-and-append with L = 4, 8 or 16 lanes per vector (AppendParams::exact = 0 with
// lanes_per_vector 4 / 8 / 16, or the default for <= 4K vectors per launch; include/rq/cuda/append.hpp),
// private to cuda/. The same arithmetic as append_fast_kernel.cuh (fp32, FMA, the rotation applied to
// x, the same quantizers (FastQuantizerFor: the odd polynomial for 2-3 bits), ||C[idx]||^2 from
// per-level counts, turbo's D(s2) folded into the codes), so the same checks apply (harness::check_append), spread over L lanes to shorten
// each thread's serial chain (C = 128 / L coordinates per lane instead of 128).
//
// Lane r of a vector owns coordinates j = r C .. r C + C - 1 (input and output):
//  - input: 16-byte global loads per lane (no shared-memory staging);
//  - turbo: D(s1) on the input's sign bits, the FWHT's stages of half < C in registers, the others
//    across lanes (__shfl_xor_sync); block rotations: output j = coefficients x inputs from a
//    per-block shared table (rows padded so that the lanes' 16-byte loads do not conflict); rotor's
//    3 x 3 blocks straddle lane boundaries, so each output uses a window x[j - 2 .. j + 2] (two
//    inputs from each neighbouring lane by shuffles) with zero coefficients outside its block and
//    outside the vector (rotor's partial last block: inputs 126, 127 and its zero pad);
//  - sum of squares and per-level counts by butterfly reductions (every lane gets the same bits,
//    so all lanes use the same quantizer parameters); counts are packed as bytes (<= 128);
//  - codes: each lane packs its C codes into C * BITS bits (whole bytes) and stores them itself
//    (128 coordinates: the row is main bytes only, no tail).
// A block (256 threads) encodes `rounds` rounds of 256 / L vectors of one KV head and role; the
// tables and per-lane constants are built once per block.
//
// H200 (docs/gpu.md, "Append, fifth pass"): fastest at 1K-4K vectors (16 lanes), but at 16K slower
// than the bit-exact four-lane kernel: the per-vector work (norm, counts, stored norm, row address,
// stores) is repeated by every lane and the cross-lane FWHT stages cost a shuffle per coordinate, so
// a vector costs L x the kernel's SASS (3 bits, static: 1,008-1,136 for 16 lanes, 1,208-1,496 for 8,
// 1,640-1,992 for 4) against 4,600-5,900 for the one-lane kernel.
#pragma once

#include <cfloat>

#include "append_fast_kernel.cuh"

namespace rq::cuda::detail {

constexpr int kLanesThreads = 256;  // threads per block: rounds of 256 / L vectors of one KV head and role

template <int L>
__device__ __forceinline__ float group_sum(float s) {
#pragma unroll
  for (int bit = 1; bit < L; bit <<= 1) s += __shfl_xor_sync(0xffffffffu, s, bit);
  return s;
}

// 8 lanes: at least 4 blocks per SM (<= 64 registers), so that 16K vectors (512 blocks) are one wave;
// 4 and 16 lanes: no minimum (0), ptxas's own allocation (a minimum raised theirs, docs/gpu.md,
// "Append, eighth pass").
template <int D, int BITS, int FAM, int L>
__global__ void __launch_bounds__(kLanesThreads, L == 8 ? 4 : 0) append_fast_lanes_kernel(AppendArgs p) {
  constexpr int VPB = kLanesThreads / L;  // vectors per round
  constexpr int C = D / L;                // coordinates per lane
  constexpr int N = D;                    // rotated (and stored) coordinates
  constexpr int FB = C * BITS;            // bits of a lane's codes
  constexpr int FW = (FB + 31) / 32;
  constexpr int SB = FB / 8;              // bytes of a lane's codes
  constexpr int MAIN = kRowBytes<D, BITS>;
  constexpr int HALF = 1 << (BITS - 1);
  constexpr int KP = HALF - 1;
  constexpr int F = FAM > 0 ? FAM : 1;    // block size (divisor-safe)
  constexpr bool WINDOW = FAM != 0 && C % F != 0;  // blocks straddle lanes (rotor)
  constexpr int HW = WINDOW ? F - 1 : 0;            // window half-width
  constexpr int W = FAM == 0 ? 1 : WINDOW ? 2 * HW + 1 : F;  // coefficients per output
  constexpr int LSTRIDE = C * W + 4;      // floats per lane's coefficients: an odd number of 16 B
  constexpr int COEF = FAM == 0 ? 4 : L * LSTRIDE;
  constexpr bool CF_REGS = C * W <= 80;   // coefficients preloaded with 16-byte loads (else per output)
  static_assert(D % L == 0 && C % 8 == 0 && FB % 8 == 0 && FW <= 4, "lanes");
  static_assert(MAIN % 16 == 0 && L * SB == MAIN, "layout: the lanes' bytes are the whole row, no tail");
  static_assert((LSTRIDE / 4) % 2 == 1 && (C * W) % 4 == 0, "conflict-free coefficient rows");
  constexpr unsigned kFull = 0xffffffffu;
  constexpr int kTurbo = FAM == 0 ? 1 : 0;
  using Quantizer = FastQuantizerFor<BITS>;

  // Block rotations: coefficients [L][LSTRIDE]. Turbo: D(s1) sign masks in the
  // input's format (16-bit: word k covers elements 2k, 2k + 1), the sign-test bias of each
  // coordinate (D(s2), append_fast_kernel.cuh) and each lane's final XOR words.
  __shared__ __align__(16) float s_coef[COEF];
  __shared__ __align__(16) uint32_t s_s1[kTurbo ? D : 4];
  __shared__ __align__(16) float s_bias[kTurbo ? N : 4];
  __shared__ uint32_t s_xor[kTurbo ? L * FW : 1];
  __shared__ float s_qparams[KP > 0 ? KP : 1];  // the quantizer's parameters (fill_params)

  const AppendJobArgs& job = p.jobs[blockIdx.z];
  const int head = blockIdx.y, tid = threadIdx.x, r = tid % L;
  const int rounds = p.per_block;
  const InputType type = job.type();
  const float* rot = job.rotation + static_cast<size_t>(head) * job.rotation_stride;

  // 0. The first round's slot and input lines are prefetched into L2 before the tables are built, so
  // that their DRAM round trip overlaps the tables' (the loads in the round then hit L2; prefetches
  // hold no registers, unlike loads issued this early). The centroids are loaded here too.
  {
    const int token = blockIdx.x * rounds * VPB + tid / L;
    if (token < p.n_tokens) {
      const int esize = type == InputType::F32 ? 4 : 2;
      const size_t base = static_cast<size_t>(token) * job.token_stride + static_cast<size_t>(head) * D + r * C;
      const uint8_t* src = static_cast<const uint8_t*>(job.x) + base * esize;
      asm volatile("prefetch.global.L2 [%0];" ::"l"(p.slot_mapping + token));
      asm volatile("prefetch.global.L2 [%0];" ::"l"(src));
      asm volatile("prefetch.global.L2 [%0];" ::"l"(src + C * esize - 1));  // the lane's last line
    }
  }
  // Every cold read of the block's set-up is issued before the first use (append_tables.cuh):
  // thresholds, centroids, then the tables' inputs below.
  const typename Quantizer::Params q_in = Quantizer::load_params(job, tid);
  float c2[HALF];  // the centroids C[half + k] here, their squares after the tables
#pragma unroll
  for (int k = 0; k < HALF; ++k) c2[k] = cold_load(job.centroids + HALF + k);

  // 1. Per-block tables. Coefficient (lane q, output m, d) at q LSTRIDE + m W + d: of input
  // j + d - HW (window) or F (j / F) + d (aligned blocks) in output j = q C + m; 0 outside the
  // output's block and past the last input (rotor's zero pad and beyond).
  if constexpr (FAM != 0) {
    constexpr int PER = (COEF + kLanesThreads - 1) / kLanesThreads;
    float cv[PER];
#pragma unroll
    for (int n = 0; n < PER; ++n) {
      const int i = tid + n * kLanesThreads;
      const int q = i / LSTRIDE, o = i % LSTRIDE;
      const int j = q * C + o / W, d = o % W;
      const int b = j / F, row = j % F;
      const int k = WINDOW ? j + d - HW - F * b : d;
      const bool used = i < COEF && o < C * W && k >= 0 && k < F && F * b + k < D;
      cv[n] = used ? cold_load(rot + (b * F + row) * F + k) : 0.0f;
    }
    reads_before_stores();
#pragma unroll
    for (int n = 0; n < PER; ++n) {
      if (tid + n * kLanesThreads < COEF) s_coef[tid + n * kLanesThreads] = cv[n];
    }
  } else {
    TurboTables<BITS, L, C, N, Quantizer, kLanesThreads> turbo;
    turbo.load(rot, type, tid);
    reads_before_stores();
    turbo.store(type, s_bias, s_s1, s_xor, tid);
  }
  Quantizer::fill_params(q_in, s_qparams, tid);
#pragma unroll
  for (int k = 0; k < HALF; ++k) c2[k] *= c2[k];
  __syncthreads();

  // 2. Per-lane constants for all rounds.
  uint32_t xorw[FW];
#pragma unroll
  for (int w = 0; w < FW; ++w) xorw[w] = kTurbo ? s_xor[r * FW + w] : fast_code_xor<BITS>(w, C);
  float bias[C];
#pragma unroll
  for (int m = 0; m < C; ++m) bias[m] = Quantizer::kPlainBias;
  if constexpr (kTurbo) {
#pragma unroll
    for (int q = 0; q < C / 4; ++q) {
      const float4 b = reinterpret_cast<const float4*>(s_bias + r * C)[q];
      bias[4 * q] = b.x, bias[4 * q + 1] = b.y, bias[4 * q + 2] = b.z, bias[4 * q + 3] = b.w;
    }
  }

#pragma unroll 1
  for (int round = 0; round < rounds; ++round) {
    const int first = (blockIdx.x * rounds + round) * VPB;
    if (first >= p.n_tokens) break;  // block-uniform
    const int token = first + tid / L;
    const int64_t slot = token < p.n_tokens ? p.slot_mapping[token] : -1;
    const bool active = slot >= 0;  // inactive lanes still take part in the shuffles

    // 3. The lane's C input elements (16-byte loads) as floats; turbo: D(s1) on the sign bits first.
    float x[C];
#pragma unroll
    for (int m = 0; m < C; ++m) x[m] = 0.0f;
    if (active) {
      const size_t base = static_cast<size_t>(token) * job.token_stride + static_cast<size_t>(head) * D + r * C;
      const int esize = type == InputType::F32 ? 4 : 2;
      const uint4* src = reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(job.x) + base * esize);
      // The lane's masks: word q of its C elements (fp32: s_s1 + r C, 16-bit: s_s1 + r C / 2).
      const uint4* masks = reinterpret_cast<const uint4*>(s_s1 + r * C * esize / 4);
      load_masked_row<C, kTurbo>(src, masks, type, x);
    }

    // 4. Turbo: y = H D(s1) x, the FWHT's stages of half < C in registers, the others across lanes.
    if constexpr (kTurbo) {
      fwht_in_registers<1>(x);
#pragma unroll
      for (int bit = 1; bit < L; bit <<= 1) {
        const float sign = (r & bit) ? -1.0f : 1.0f;  // lower lane a + b, upper lane a - b
#pragma unroll
        for (int m = 0; m < C; ++m) x[m] = fmaf(x[m], sign, __shfl_xor_sync(kFull, x[m], bit));
      }
    }

    // 5. Sum of squares (turbo: of y, = n ||x||^2; blocks: of x), the same on every lane of the vector.
    auto lane_sum = [&]() {
      float a0 = 0.0f, a1 = 0.0f;
#pragma unroll
      for (int m = 0; m < C; m += 2) a0 = fmaf(x[m], x[m], a0), a1 = fmaf(x[m + 1], x[m + 1], a1);
      return a0 + a1;
    };
    float ss = group_sum<L>(lane_sum());
    const bool finite = ss <= FLT_MAX;  // false for Inf and NaN
    int rescaled = 0;                   // tiny inputs, as append_fast_kernel.cuh (warp-uniform loop)
#pragma unroll 1
    while (__any_sync(kFull, finite && !(ss >= kRescaleBelow) && rescaled < kMaxRescales)) {
      const bool need = finite && !(ss >= kRescaleBelow) && rescaled < kMaxRescales;
      if (need) {
#pragma unroll
        for (int m = 0; m < C; ++m) x[m] *= 0x1p32f;
      }
      const float s = group_sum<L>(lane_sum());
      if (need) ss = s, ++rescaled;
    }
    const float scale = sqrtf(ss);
    float norm = kTurbo ? scale * (1.0f / kSqrtN<N>) : scale;
    if (rescaled) norm = scalbnf(norm, -32 * rescaled);
    bool zero = norm == 0.0f;
    const bool nan_codes = !zero && reciprocal_overflows(norm);

    // 6. Block rotations: the lane's outputs.
    if constexpr (FAM != 0) {
      constexpr int XE = C + 2 * HW;
      float xe[XE];  // inputs r C - HW .. r C + C + HW - 1
#pragma unroll
      for (int m = 0; m < C; ++m) xe[HW + m] = x[m];
#pragma unroll
      for (int h = 0; h < HW; ++h) {  // lane 0 / the last lane: its own (finite) values, coefficients 0
        xe[h] = __shfl_up_sync(kFull, x[C - HW + h], 1, L);
        xe[HW + C + h] = __shfl_down_sync(kFull, x[h], 1, L);
      }
      const float* lane_coef = s_coef + r * LSTRIDE;
      float cf[CF_REGS ? C * W : 1];
      if constexpr (CF_REGS) {
#pragma unroll
        for (int i = 0; i < C * W / 4; ++i) {
          const float4 f = reinterpret_cast<const float4*>(lane_coef)[i];
          cf[4 * i] = f.x, cf[4 * i + 1] = f.y, cf[4 * i + 2] = f.z, cf[4 * i + 3] = f.w;
        }
      }
#pragma unroll
      for (int m = 0; m < C; ++m) {
        const int x0 = WINDOW ? m : m - m % F;  // xe index of the row's first input
        auto coef = [&](int d) { return CF_REGS ? cf[CF_REGS ? m * W + d : 0] : lane_coef[m * W + d]; };
        float y = coef(0) * xe[x0];
#pragma unroll
        for (int d = 1; d < W; ++d) y = fmaf(coef(d), xe[x0 + d], y);
        x[m] = y;
      }
    }

    // 7. Quantize and pack the lane's codes; counts per threshold over the vector.
    Quantizer quant;
    quant.prepare(s_qparams, scale);
    uint32_t field[FW];
#pragma unroll
    for (int w = 0; w < FW; ++w) field[w] = Quantizer::word_start(w, C);
    static_for<0, C>([&](auto mc) {
      constexpr int M = decltype(mc)::value;
      quant.template emit<M>(x[M], bias[M], field);
    });
    uint32_t level_counts[KP > 0 ? KP : 1];
    quant.template counts<C>(field, level_counts);
    const LaneCounts<KP, 1, L> counts(level_counts);  // over the vector's L lanes

    // 8. ||C[idx]||^2 from the counts, final codes, stored norm (as append_fast_kernel.cuh).
    float stored = finish_row<N, HALF>(norm, zero, nan_codes, job, c2, counts,
                                       [&](int w) { return xorw[w]; }, field);
    refuse_or_zero<BITS, C>(finite, r == 0 && active, p.error_flag, zero, stored, field);

    // 9. Store: the lane's SB bytes at byte r SB of the row; the norm.
    if (active) {
      // The slot again (an L1 hit) instead of two registers held across the encoding: ptxas -v
      // rotor3 4 lanes 86 -> 69 registers (3 blocks per SM again), turbo3 4 lanes 122 -> 115.
      const size_t rw = slot_row(job.page_size, p.n_kv_heads, __ldg(p.slot_mapping + token), head);
      uint8_t* dst = job.codes + rw * MAIN + r * SB;
      if constexpr (SB == 16) {
        *reinterpret_cast<uint4*>(dst) = make_uint4(field[0], field[1], field[2], field[3]);
      } else if constexpr (SB == 8) {
        *reinterpret_cast<uint2*>(dst) = make_uint2(field[0], field[1]);
      } else if constexpr (SB % 4 == 0) {
#pragma unroll
        for (int w = 0; w < SB / 4; ++w) reinterpret_cast<uint32_t*>(dst)[w] = field[w];
      } else if constexpr (SB == 6) {
        uint16_t* d16 = reinterpret_cast<uint16_t*>(dst);
        d16[0] = static_cast<uint16_t>(field[0]), d16[1] = static_cast<uint16_t>(field[0] >> 16);
        d16[2] = static_cast<uint16_t>(field[1]);
      } else if constexpr (SB == 2) {
        *reinterpret_cast<uint16_t*>(dst) = static_cast<uint16_t>(field[0]);
      } else {
        static_assert(SB == 3, "lane bytes");
        dst[0] = static_cast<uint8_t>(field[0]), dst[1] = static_cast<uint8_t>(field[0] >> 8);
        dst[2] = static_cast<uint8_t>(field[0] >> 16);
      }
      if (r == 0) job.norms[rw] = __half_as_ushort(__float2half_rn(stored));  // |stored| <= 65504
    }
  }
}

template <int D, int BITS, int FAM, int L>
cudaError_t launch_append_fast_lanes_kernel(const AppendParams& p, cudaStream_t stream) {
  constexpr int VPB = kLanesThreads / L;
  const int rounds = p.rounds_per_block > 0 ? p.rounds_per_block : 1;
  const dim3 grid((p.n_tokens + VPB * rounds - 1) / (VPB * rounds), p.n_kv_heads, p.n_jobs);
  append_fast_lanes_kernel<D, BITS, FAM, L><<<grid, kLanesThreads, 0, stream>>>(append_args(p, true, rounds));
  return cudaGetLastError();
}

template <int L>
struct FastLanesLaunch {
  template <int BITS, int FAM>
  struct At {
    static cudaError_t run(const AppendParams& p, cudaStream_t stream) {
      return launch_append_fast_lanes_kernel<kHeadDim, BITS, FAM, L>(p, stream);
    }
  };
};

}  // namespace rq::cuda::detail
