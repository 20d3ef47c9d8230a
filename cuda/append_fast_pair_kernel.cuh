// Fast fused quantize-and-append with two lanes per vector, for turbo's Hadamard rotation
// (AppendParams::exact = 0, lanes_per_vector = 2), private to cuda/. The one-lane kernel
// (append_fast_kernel.cuh) holds a whole 128-float row in registers: 168 registers, 12 warps per SM.
// Here a lane holds half a row (64 coordinates): 96 registers, 20 warps per SM, at the price of one
// FWHT stage across the pair (a shuffle per coordinate) and the per-vector scalar work done twice.
// On the H200 that is faster than one lane from 4K to 256K vectors (the extra warps hide the latency
// of short launches; at 32K 21 % faster than the bit-exact four-lane kernel, the default there
// before) and 2 % slower at 1M, where the extra instructions cost more than they hide (docs/gpu.md,
// "Session 16").
//
// Same staging (tiles of 64 rows, double-buffered cp.async, one wave of resident blocks), tables and
// arithmetic as the one-lane kernel: D(s1) on the input's sign bits, FWHT stages 1..32 in registers and
// the stage of half 64 across the pair (the reference's order: a + b and a - b of the same floats),
// the sum of squares of y over the pair, the polynomial (2-3 bits) or threshold (4 bits) quantizer,
// D(s2) folded into the codes, ||C[idx]||^2 from counts over the pair. So the same check applies
// (harness::check_append, fast kernel).
//
// Thread mapping: warp w of the block encodes rows 16 w .. 16 w + 15 of the tile; lane l takes row
// 16 w + (l & 15) and half r = l >> 4 (coordinates 64 r .. 64 r + 63): partners are lanes l and l ^ 16,
// and each quarter warp reads 8 different rows at the same half (conflict-free 16-byte reads, rows
// kRowPad apart). Lane r packs its 64 codes (whole words) and stores them at byte 8 r BITS of the row.
#pragma once

#include "append_fast_kernel.cuh"

#ifndef RQ_PAIR_MIN_BLOCKS
#define RQ_PAIR_MIN_BLOCKS 4  // blocks per SM the registers must allow (<= 128 a thread; 5: <= 102)
#endif

namespace rq::cuda::detail {

constexpr int kPairThreads = 2 * kTileVectors;  // threads per block: one tile of 64 rows, two lanes a row

/// A two-lane block's place: warp w encodes rows 16 w .. 16 w + 15 of each tile, lane l row 16 w +
/// (l & 15) and part r = l >> 4 (its partner is lane l ^ 16); the block's tiles first_tile ..
/// end_tile - 1 of head `head` and role blockIdx.z, staged rows `stride` bytes apart.
template <int D>
struct PairBlock {
  const AppendJobArgs& job;
  int head, n_kv_heads, tid, lane, row_in_tile, r;
  unsigned pair_mask;  // the pair's lanes (the rare rescaling loop's shuffles)
  InputType type;
  int esize, stride, tile_bytes, first_tile, end_tile;

  __device__ __forceinline__ PairBlock(const AppendArgs& p)
      : job(p.jobs[blockIdx.z]),
        head(blockIdx.y),
        n_kv_heads(p.n_kv_heads),
        tid(threadIdx.x),
        lane(tid & 31),
        row_in_tile(16 * (tid >> 5) + (lane & 15)),
        r(lane >> 4),
        pair_mask((1u << lane) | (1u << (lane ^ 16))),
        type(job.type()),
        esize(type == InputType::F32 ? 4 : 2),
        stride(D * esize + kRowPad),
        tile_bytes(kTileVectors * stride),
        first_tile(blockIdx.x * p.per_block),
        end_tile(min(first_tile + p.per_block, (p.n_tokens + kTileVectors - 1) / kTileVectors)) {}

  /// The block's tiles (detail::for_each_tile): every lane runs encode(row, slot), since the pair's
  /// shuffles are warp-wide (slot < 0 past the tokens or for skipped ones).
  template <bool WARP, typename Stager, typename Encode>
  __device__ __forceinline__ void for_each_tile(const AppendArgs& p, uint8_t* tile, Stager& stager, Encode&& encode) const {
    detail::for_each_tile<WARP, true>(p, first_tile, end_tile, row_in_tile, tile, tile_bytes, stride, stager, encode);
  }

  /// Lane r's W words of a row of MAIN code bytes, stored at byte r MAIN / 2 of row `slot`, and the
  /// stored norm (lane 0).
  template <int MAIN, int W>
  __device__ __forceinline__ void store_row(int64_t slot, const uint32_t (&words)[W], float stored) const {
    const size_t rw = slot_row(job.page_size, n_kv_heads, slot, head);
    uint2* dst = reinterpret_cast<uint2*>(job.codes + rw * MAIN + r * (MAIN / 2));
#pragma unroll
    for (int i = 0; i < W / 2; ++i) dst[i] = make_uint2(words[2 * i], words[2 * i + 1]);
    if (r == 0) job.norms[rw] = __half_as_ushort(__float2half_rn(stored));
  }
};

template <int D, int BITS>
__global__ void __launch_bounds__(kPairThreads, RQ_PAIR_MIN_BLOCKS) append_fast_pair_kernel(AppendArgs p) {
  constexpr int N = D;
  constexpr int C = N / 2;              // coordinates per lane
  constexpr int MAIN = kRowBytes<D, BITS>;
  constexpr int FW = C * BITS / 32;     // words of a lane's codes
  constexpr int HALF = 1 << (BITS - 1);
  constexpr int KP = HALF - 1;
  using Quantizer = FastQuantizerFor<BITS>;
  static_assert(C * BITS % 64 == 0 && MAIN % 16 == 0 && D % 16 == 0, "whole 8-byte stores per lane");
  static_assert(2 * N <= kRotationSmemFloats, "turbo tables");

  extern __shared__ __align__(16) uint8_t tile[];
  // [0, N) sign-test bias per coordinate (D(s2)), [N, 2N) as words: D(s1) sign masks in the input's format.
  __shared__ __align__(16) float s_rot[kRotationSmemFloats];
  __shared__ __align__(16) uint32_t s_flip[2 * FW];  // lane r's final XOR words at r FW
  __shared__ float s_qparams[KP > 0 ? KP : 1];
  __shared__ float s_c2[HALF];

  const PairBlock<D> b(p);
  const AppendJobArgs& job = b.job;
  const int head = b.head, tid = b.tid, r = b.r, esize = b.esize;
  const InputType type = b.type;
  constexpr unsigned kFull = 0xffffffffu;

  // The set-up's cold reads, then the first tile's row copies, then the tables (append_tables.cuh).
  const float* rot = job.rotation + static_cast<size_t>(head) * job.rotation_stride;
  RowEndTables<Quantizer, HALF> row_end;
  row_end.load(job, tid);
  TurboTables<BITS, 2, C, N, Quantizer, kPairThreads> turbo;
  turbo.load(rot, type, tid);
  TileStager<D, kPairThreads, 16, true> stager(tile, job, head, b.first_tile, p.n_tokens, b.tile_bytes);
  stager.issue(0);
  reads_before_stores();
  turbo.store(type, s_rot, reinterpret_cast<uint32_t*>(s_rot) + N, s_flip, tid);
  row_end.store(s_qparams, s_c2, tid);

  const float pair_sign = r ? -1.0f : 1.0f;  // the cross stage: lane 0 a + b, lane 1 a - b (b its own)
  // Every lane of the block runs encode (the shuffles are warp-wide, so no lane may branch around
  // them); a row that is not stored (slot < 0, or past the tokens: whatever the buffer holds) stores
  // nothing and raises no flag.
  auto encode = [&](const uint8_t* row, int64_t slot) {
    const bool active = slot >= 0;
    // 1. This lane's half of x (D(s1) on the sign bits), FWHT stages 1..32, then the stage of half 64.
    float x[C];
    const uint4* masks = reinterpret_cast<const uint4*>(s_rot + N) + r * (C * esize / 16);
    load_masked_row<C, true>(reinterpret_cast<const uint4*>(row + r * C * esize), masks, type, x);
    fwht_in_registers<1>(x);
#pragma unroll
    for (int j = 0; j < C; ++j) {
      const float other = __shfl_xor_sync(kFull, x[j], 16);
      x[j] = __fmaf_rn(x[j], pair_sign, other);  // exact product: one rounding of other +- x[j]
    }
    const RowNorm n = row_norm<true>(x, b.pair_mask, 1.0f / kSqrtN<N>);
    const bool finite = n.finite, nan_codes = n.nan_codes;
    const float norm = n.norm;
    bool zero = n.zero;

    // 2. Quantize and pack this lane's 64 codes.
    Quantizer quant;
    uint32_t words[FW];
    start_row<C>(quant, s_qparams, n.scale, n.ss, words);
    const float4* bias = reinterpret_cast<const float4*>(s_rot) + r * (C / 4);
    static_for<0, C / 4>([&](auto qc) {
      constexpr int Q = decltype(qc)::value;
      const float4 b = bias[Q];
      quant.template emit<4 * Q + 0>(x[4 * Q + 0], b.x, words);
      quant.template emit<4 * Q + 1>(x[4 * Q + 1], b.y, words);
      quant.template emit<4 * Q + 2>(x[4 * Q + 2], b.z, words);
      quant.template emit<4 * Q + 3>(x[4 * Q + 3], b.w, words);
    });

    // 3. Counts over the pair, ||C[idx]||^2, final codes, stored norm.
    uint32_t level_counts[KP > 0 ? KP : 1];
    quant.template counts<C>(words, level_counts);
    const LaneCounts<KP, 16, 32> counts(level_counts);
    float stored = finish_row<N, HALF>(norm, zero, nan_codes, job, s_c2, counts,
                                       [&](int w) { return s_flip[r * FW + w]; }, words);
    refuse_or_zero<BITS, C>(finite, active && r == 0, p.error_flag, zero, stored, words);

    if (!active) return;
    b.template store_row<MAIN>(slot, words, stored);
  };

  __syncthreads();  // the tables (the rows: per warp, wait_staged_rows)
  b.template for_each_tile<true>(p, tile, stager, encode);
}

template <int D, int BITS>
cudaError_t launch_append_fast_pair_kernel(const AppendParams& p, cudaStream_t stream) {
  static std::atomic<int> resident[kLaunchCacheDevices][2] = {};
  return launch_tile_kernel<D>(append_fast_pair_kernel<D, BITS>, kPairThreads, append_smem_bytes<D, 0, 1>(p), resident, p, stream);
}

}  // namespace rq::cuda::detail
