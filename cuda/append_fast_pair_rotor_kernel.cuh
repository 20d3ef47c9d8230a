// Fast fused quantize-and-append with two lanes per vector for rotor's 3 x 3 blocks at 2 and 3 bits
// (AppendParams::exact = 0, lanes_per_vector = 2), private to cuda/. The two-lane turbo kernel
// (append_fast_pair_kernel.cuh) splits a row at coordinate 64; rotor's blocks (3b, 3b + 1, 3b + 2)
// straddle that point, so here lane r takes the 24 blocks 24 r .. 24 r + 23, i.e. coordinates
// 72 r .. 72 r + 71 (72 = 3 x 24 is also a whole number of 16-byte input words): lane 0 has 72 real
// coordinates, lane 1 56 and 16 padding slots, so both run the same code on 72 slots:
//  - the padding inputs are zeros (lane 1's loads past the row are predicated off), the padding
//    blocks 43-47 have zero matrices, and block 42 (coordinates 126, 127: the row's partial block,
//    kBlockWidth) has its third row and column zeroed, so its 2 x 2 part acts as in the one-lane
//    kernel and every padding output is an exact 0.0;
//  - a 0.0 quantizes to level 0 (code half), which adds nothing to the per-level counts, so
//    ||C[idx]||^2 over the row's 128 codes comes out of the pair's summed counts as before;
//  - each lane packs its 72 codes from bit 0 (compile-time shifts), then lane 1's words are moved to
//    its bit offset in the row (72 BITS: 216 for 3 bits, 144 for 2) by funnel shifts, and the word
//    both lanes share takes lane 0's low bits by one shuffle. Each lane stores 72 BITS / 32 whole
//    words (lane 1's padding bits fall past the row end and are not stored).
// Arithmetic as the one-lane kernel's block-rotation path: the sum of squares of x (the rotation is
// orthogonal) over the pair, rotation y = M x per block by FMAs in the same order, the polynomial
// quantizer, the same row end (finish_row) and refusal policy, so the same check applies
// (harness::check_append, fast kernel). Staging: the block stages whole tiles (TileStager without
// WARP, a barrier a tile), as rotor's one-lane kernel.
#pragma once

#include "append_fast_pair_kernel.cuh"

#ifndef RQ_PAIR_ROTOR_MIN_BLOCKS
#define RQ_PAIR_ROTOR_MIN_BLOCKS 3  // blocks per SM the registers must allow (3: <= 168 a thread; 4, 128
                                    // registers, spilled and was 2-15 % slower, session 17)
#endif

namespace rq::cuda::detail {

constexpr int kPairRotorSlots = 72;                     // coordinates a lane holds (24 blocks of 3)
constexpr int kPairRotorBlocks = 2 * kPairRotorSlots / 3;  // 48 matrices in shared memory, 43 real

template <int D, int BITS>
__global__ void __launch_bounds__(kPairThreads, RQ_PAIR_ROTOR_MIN_BLOCKS)
    append_fast_pair_rotor_kernel(AppendArgs p) {
  constexpr int S = kPairRotorSlots, NB = kBlocks<D, 3>, MS = kMatrixStride<3>;
  constexpr int MAIN = kRowBytes<D, BITS>;
  constexpr int LW = (S * BITS + 31) / 32;     // a lane's packed words (the last partial)
  constexpr int W1 = S * BITS / 32;            // whole words a lane stores; lane 1 starts at word W1
  constexpr int SHIFT1 = S * BITS % 32;        // and at this bit of it
  constexpr int HALF = 1 << (BITS - 1);
  constexpr int KP = HALF - 1;
  using Quantizer = FastQuantizerFor<BITS>;
  static_assert(BITS == 2 || BITS == 3, "the polynomial quantizer's codes (2 and 3 bits)");
  static_assert(D == 128 && NB == 43 && 2 * W1 * 4 == MAIN && W1 < LW && W1 % 2 == 0, "rotor at head_dim 128");

  extern __shared__ __align__(16) uint8_t tile[];
  __shared__ __align__(16) float s_rot[kPairRotorBlocks * MS];  // matrix b at b MS (9 of 12 floats used)
  __shared__ float s_qparams[KP > 0 ? KP : 1];
  __shared__ float s_c2[HALF];

  const PairBlock<D> b(p);
  const AppendJobArgs& job = b.job;
  const int head = b.head, tid = b.tid, r = b.r, esize = b.esize;
  const InputType type = b.type;
  constexpr unsigned kFull = 0xffffffffu;

  TileStager<D, kPairThreads, 16, false> stager(tile, job, head, b.first_tile, p.n_tokens, b.tile_bytes);
  stager.issue(0);
  // Tables: every cold read first (one round trip beside the tile's), then the stores. (Here the
  // reads come after the copies. Before them, they made the 16K append 0.2-0.3 us slower with this
  // index arithmetic, and no faster when read in the codec's order and rearranged after the copies;
  // session 18.) Matrix entry
  // (row i, column k) of block b at b MS + 3 i + k: the codec's, zero for the padding blocks, for
  // block 42's third row and column, and for the 3 floats of stride padding.
  const float* rot = job.rotation + static_cast<size_t>(head) * job.rotation_stride;
  RowEndTables<Quantizer, HALF> row_end;
  row_end.load(job, tid);
  constexpr int PER = (kPairRotorBlocks * MS + kPairThreads - 1) / kPairThreads;
  float m_in[PER];
#pragma unroll
  for (int k = 0; k < PER; ++k) {
    const int i = tid + k * kPairThreads, b = i / MS, e = i % MS;
    const bool used = i < kPairRotorBlocks * MS && b < NB && e < 9 && !(b == NB - 1 && (e / 3 == 2 || e % 3 == 2));
    m_in[k] = used ? cold_load(rot + 9 * b + e) : 0.0f;
  }
  reads_before_stores();
#pragma unroll
  for (int k = 0; k < PER; ++k) {
    if (tid + k * kPairThreads < kPairRotorBlocks * MS) s_rot[tid + k * kPairThreads] = m_in[k];
  }
  row_end.store(s_qparams, s_c2, tid);

  auto encode = [&](const uint8_t* row, int64_t slot) {
    const bool active = slot >= 0;
    // 1. This lane's 72 slots: coordinates 72 r .. (16-byte words; lane 1's past the row are zeros).
    float x[S];
    load_masked_row<S, false>(reinterpret_cast<const uint4*>(row + r * S * esize), nullptr, type, x,
                              (r ? D - S : S) * esize / 16);
    const RowNorm n = row_norm<true>(x, b.pair_mask, 1.0f);
    const bool finite = n.finite, nan_codes = n.nan_codes;
    const float norm = n.norm;
    bool zero = n.zero;

    // 2. Rotate each block and quantize its outputs into this lane's words (from bit 0).
    Quantizer quant;
    uint32_t words[LW];
    start_row<S>(quant, s_qparams, n.scale, n.ss, words);
    const float* mats = s_rot + r * (S / 3) * MS;
    static_for<0, S / 3>([&](auto bc) {
      constexpr int B = S / 3 - 1 - decltype(bc)::value;  // from the last block down, as the one-lane kernel
      float m[MS];
      load_block_matrix(mats + B * MS, m);
      static_for<0, 3>([&](auto rc) {
        constexpr int R = decltype(rc)::value;
        float y = m[R * 3] * x[B * 3];
        y = fmaf(m[R * 3 + 1], x[B * 3 + 1], y);
        y = fmaf(m[R * 3 + 2], x[B * 3 + 2], y);
        quant.template emit<B * 3 + R>(y, Quantizer::kPlainBias, words);
      });
    });

    // 3. Counts over the pair (the padding codes are level 0), ||C[idx]||^2, stored norm.
    uint32_t level_counts[KP > 0 ? KP : 1];
    quant.template counts<S>(words, level_counts);
    const LaneCounts<KP, 16, 32> counts(level_counts);
    float stored = finish_row<D, HALF>(norm, zero, nan_codes, job, s_c2, counts, [](int) { return 0u; }, words);
    refuse_or_zero<BITS, S>(finite, active && r == 0, p.error_flag, zero, stored, words);

    // 4. Lane 1's words to bit 72 BITS of the row (lane 0: shift 0), the shared word completed with
    // lane 0's low bits, W1 whole words stored by each lane.
    const int shift = r ? SHIFT1 : 0;
    uint32_t out[W1];
#pragma unroll
    for (int i = 0; i < W1; ++i) out[i] = __funnelshift_l(i > 0 ? words[i > 0 ? i - 1 : 0] : 0u, words[i], shift);
    const uint32_t shared_low = __shfl_xor_sync(kFull, words[W1], 16);  // lane 0's bits of word W1
    if (r) out[0] |= shared_low;
    if (!active) return;
    b.template store_row<MAIN>(slot, out, stored);
  };

  b.template for_each_tile<false>(p, tile, stager, encode);
}

template <int D, int BITS>
cudaError_t launch_append_fast_pair_rotor_kernel(const AppendParams& p, cudaStream_t stream) {
  static std::atomic<int> resident[kLaunchCacheDevices][2] = {};
  return launch_tile_kernel<D>(append_fast_pair_rotor_kernel<D, BITS>, kPairThreads, append_smem_bytes<D, 3, 1>(p), resident, p,
                               stream);
}

}  // namespace rq::cuda::detail
