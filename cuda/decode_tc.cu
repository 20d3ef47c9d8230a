// Tensor-core split-KV decode (include/rq/cuda/decode.hpp, DecodeParams::exact == 0).
//
// One warp = one split; it handles (up to) 4 query heads of one KV head (a GQA group of 8 is two
// passes, blockIdx.x). Per chunk of 64 tokens:
//   K: 4 blocks of 16 tokens, mma.m16n8k16 with A rows = the 16 tokens' centroids as single fp16
//      values a_K C (DeviceCodec::mma_scale: within ~2^-15.5 of a_K C), one 4-byte table entry per
//      code pair, and B columns 2 q, 2 q + 1 = the fp16 hi and lo parts of query q / a_K: a lane's
//      accumulators hold both parts of one query, so the score of (token, query) is the sum of two
//      of its own registers (session 25: no shuffles; before, hi and lo sat in lanes tig and
//      tig ^ 2). Lane (gid, tig) owns query tig and the tokens 16 tb + 2 gid + {0, 1} (MMA rows gid
//      and gid + 8, in an order that keeps the code-word loads conflict-free; their norms are one
//      word): every score, exponential and weight is computed once.
//   online softmax per query over the warp's 64 tokens (3 shuffles: the 8 lanes of a query);
//   V: O[pair][query, slot] += A x B with A rows = 16 coordinate pairs, K = 8 tokens x 2 slots (the
//      pair's two coordinates), A registers = a_V C of a code pair of one token (a per-lane table,
//      no transposition), B = the fp16 weight of the K position's token in the column of its slot
//      and zero in the other (column 2 q + slot): the owner lane packs its two tokens' weights as
//      a half2, one shuffle brings it to the B lane and one PRMT places the token's half in the
//      column's slot. A lane's output columns are one query's two slots: its rows are 4
//      consecutive coordinates.
//      Partials are divided by a_V.
// Every GPU format stores exactly 128 coordinates (rotor's partial last group keeps its pad at zero,
// docs/formats.md), so a codes row is 16 BITS bytes: main part only, no tail plane to read.
// Precision: K centroids ~2^-15.5 and the weights fp16 (2^-11) relative (docs/decisions.md,
// "GPU decode: fp16 centroids and weights"); the exact kernel (exact = 1) is the faithful one.
// Splits: a sequence of len tokens has S = ceil(len / tokens_per_split) splits, and split s takes
// the 64-token chunks [s C / S, (s + 1) C / S) of its C = ceil(len / 64) chunks, so the splits of a
// sequence differ by at most one chunk (tokens_per_split >= 64: none is empty) and plan_decode can
// fill every block slot of the GPU (tokens_per_split need not be a multiple of 64).
// Grid (pass, split block, sequence) (decode fifteenth pass): the blocks dispatched first (the first
// slot of every SM) come from every (sequence, pass) pair, not from the first pairs only. At batch 1
// that is -1.8 .. -3.5 us at 32K and 128K tokens (a pair's blocks no longer all start late); neutral
// within +-1 us at the batched shapes (docs/gpu.md).
// The block's W splits are merged in shared memory into one partial (o, m, l) per query; the
// last block of a (sequence, query pass) to finish (a counter per pass, zeroed by the query
// rotation) merges the ceil(S / W) partials, un-rotates them and writes the output rows: no
// merge launch (with fewer than kFusedMergeMinPasses pairs: merge_tc_kernel, 128 or 512 threads).
// Where every pair's splits fit one block (kFlagSingleBlock, session 21), that block normalizes its
// merged rows, un-rotates them and writes the output itself, and rotates its own queries: the
// decode's only launch, with no partials or counters.
// Staging: per warp, a chunk's 64 K rows (codes, norms) and 64 V rows are copied into shared memory
// by TMA bulk copies that lane 0 issues (L2 policy evict_first, bulk_copy.cuh: (1, 128K) -2.5 us,
// session 19), each plane completing on its own mbarrier; the next chunk's K is in flight during this
// chunk's V step, its V during the next K step. The last chunk of a sequence skips its 16-token
// blocks past the end.
// With the fused merge: launched dependent on the query rotation launch, staging and tables overlap
// it (dependent_launch.cuh). Without it (the merge is a launch): the decode's first launch, and each
// block rotates its 4 queries itself while its first K chunk is copied in (kFlagOwnQueries; session
// 15: (1, 128K) 57 -> 53 us, (1, 32K) -1 .. -2 us, (1, 4K) within -0.7 .. +0.7 us).
// Coordinates are permuted freely inside the MMAs (the dot products do not care): a lane reads a
// contiguous slice of each code row (K: 32 coordinates of slice tig; V: 16 coordinates 16 gid..).
#include <cuda_fp16.h>

#include <atomic>
#include <type_traits>

#include "bulk_copy.cuh"
#include "kernel_common.cuh"
#include "decode_common.cuh"
#include "dependent_launch.cuh"
#include "rotate_shared.cuh"
#include "rq/core/half.hpp"
#include "rq/cuda/decode.hpp"

namespace rq::cuda {
namespace detail {

namespace {

using detail::static_for;

// Splits (warps) per block W: 12 (two blocks an SM) or 24 (one block an SM; DecodePlan::block_warps,
// docs/gpu.md "Session 21": the two 12-warp blocks of an SM progress ~1.9 : 1, so the SM runs its
// last ~26 % with 12 warps; one 24-warp block's warps end within ~2 %). 24 warps an SM either way
// (~86 KB shared memory a 12-warp block, <= 85 registers a thread).
constexpr int kWarpsPerSm = 24;
constexpr int kChunk = 64;       // tokens per warp iteration
constexpr int kLutAlign = 8192;  // >= 64 pairs x 32 lanes x 4 bytes; the tables start at a multiple
constexpr int kMaxPartials = (1024 + 11) / 12;  // plan: at most 1024 splits, blocks of at least 12
// The last blocks merge the partials (no merge launch) when there are at least this many (sequence,
// query pass) pairs; with fewer (batch 1: 8) the merge of a pair is one block's serial tail, and the
// merge kernel (launched early, 32 blocks or more) finishes sooner (measured: 0-2 us at batch 1).
constexpr int kFusedMergeMinPasses = 64;
constexpr int kFlagFusedMerge = kTcFusedMerge;  // decode_common.cuh
constexpr int kFlagOwnQueries = kTcOwnQueries;
constexpr int kFlagSingleBlock = kTcSingleBlock;

__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// The fp16 norms of staged tokens 2 i and 2 i + 1 (one 32-bit shared load), exact in fp32.
__device__ __forceinline__ float2 norm_pair(const uint16_t* norms, int i) {
  const uint32_t w = reinterpret_cast<const uint32_t*>(norms)[i];
  return __half22float2(*reinterpret_cast<const __half2*>(&w));
}

// 2^x without the denormal range fix-up of exp2f (MUFU.EX2, flush to zero; 2^-inf = 0).
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Byte offset of entry (field, lane) in a per-lane-replicated table [fields][32] of 2^SHIFT / 32-byte
// entries: field = bits [BIT, BIT + W) of the word array, lane_bits = lane * entry bytes. One shift
// and one LOP3.
template <int BIT, int W, int SHIFT, int WORDS>
__device__ __forceinline__ uint32_t lut_offset(const uint32_t (&w)[WORDS], uint32_t lane_bits) {
  constexpr int kWord = BIT >> 5, kShift = BIT & 31;
  constexpr uint32_t kMask = ((1u << W) - 1u) << SHIFT;
  uint32_t v;
  if constexpr (kShift < SHIFT) v = w[kWord] << (SHIFT - kShift);
  else if constexpr (kShift + W > 32) v = __funnelshift_r(w[kWord], w[kWord + 1], kShift - SHIFT);
  else v = w[kWord] >> (kShift - SHIFT);
  return (v & kMask) | lane_bits;
}

// 32-bit load from shared-memory address addr + OFF (an immediate of the LDS).
template <int OFF>
__device__ __forceinline__ uint32_t lds32(uint32_t addr) {
  uint32_t v;
  asm("ld.shared.u32 %0, [%1+%2];" : "=r"(v) : "r"(addr), "n"(OFF));
  return v;
}

// Shared-memory layout of one block (bytes).
template <int N, int BITS, int W>
struct TcLayout {
  static constexpr int PAIRS = 1 << (2 * BITS);
  static constexpr int MAIN = N * BITS / 8;        // codes row: main bytes only (no tail)
  static constexpr int ROWW = MAIN / 4;            // words per staged row
  static constexpr int CODEW = kChunk * ROWW + 4;  // words per staged chunk (+ overrun pad)
  // Dynamic shared memory, per warp:
  static constexpr size_t codes = 0;                                              // uint32 [warps][K,V][CODEW]
  static constexpr size_t norms = codes + sizeof(uint32_t) * W * 2 * CODEW;  // uint16 [warps][K,V][64]
  static constexpr size_t staging = norms + sizeof(uint16_t) * W * 2 * kChunk;
  // then, at the first shared address >= staging that is a multiple of kLutAlign (T), the tables, so
  // that an entry's address is (T | lane * 4 | pair * 128) + the table's offset: one LOP3 and an
  // immediate of the LDS.
  static constexpr int table = 4 * PAIRS * 32;  // bytes of one table
  static constexpr int lut_k = 0;               // uint32 [PAIRS][32]: a_K C
  static constexpr int lut_v = table;           // uint32 [PAIRS][32]: a_V C
  // After the loop, the single-block path's output rows, scratch and V rotation in the tables' place.
  static constexpr int finish = static_cast<int>(sizeof(float)) * (8 * N + kMaxRotationFloats + 8);
  static constexpr size_t bytes = staging + kLutAlign + (2 * table > finish ? 2 * table : finish);
  static_assert(table <= kLutAlign, "an entry address is an OR with the aligned table address");
  static_assert(sizeof(float) * W * 4 * (N + 2) <= norms, "the block's merge fits in the code buffers");
  static_assert(sizeof(float) * (8 * N + 4 * kMaxPartials + 4 + kMaxRotationFloats) <= norms, "the last block's merge fits too");
};

// The last block's merge of a (sequence, query pass): n_parts partials (o [N], then m, l) of nq
// query heads (rows max_splits apart; other blocks' writes, read through L2) -> softmax-weighted sum,
// V's inverse rotation, output rows out[nq][dim]. s: shared scratch of (8 N + 4 kMaxPartials + 4)
// floats + kMaxRotationFloats. V's rotation parameters are read into shared memory with m and l (one
// round trip, not one or two cold reads at the end). Not inlined: inlined, its
// registers cost the chunk loop ~2% more instructions (spills).
template <int N>
__device__ __noinline__ void merge_partials(const float* partial_o, const float* partial_ml, int max_splits, int n_parts,
                                            int nq, DeviceCodec vc, int kvh, float* out, float* s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float* s_buf = s;                      // [4][N] merged rows (V's rotated domain)
  float* s_tmp = s_buf + 4 * N;          // [4][N] rotation scratch
  float* s_f = s_tmp + 4 * N;            // [4][kMaxPartials] 2^(m_k - M)
  float* s_inv = s_f + 4 * kMaxPartials;  // [4] 1 / sum_k 2^(m_k - M) l_k
  float* s_rot = s_inv + 4;              // [kMaxRotationFloats] V's rotation of head kvh
  // m and l of up to 3 partials per lane (warps < nq; n_parts <= kMaxPartials <= 96), loaded once
  static_assert(kMaxPartials <= 96, "three partials per lane");
  const float* ml = partial_ml + static_cast<size_t>(warp) * max_splits * 2;
  float m[3], lp[3];
#pragma unroll
  for (int r = 0; r < 3; ++r) {
    const int k = lane + 32 * r;
    m[r] = warp < nq && k < n_parts ? __ldcg(ml + 2 * k) : -INFINITY;
    lp[r] = warp < nq && k < n_parts ? __ldcg(ml + 2 * k + 1) : 0.0f;
  }
  const StagedRotation rot = stage_rotation(vc, kvh, s_rot);
  if (warp < nq) {
    float mx = -INFINITY;
#pragma unroll
    for (int r = 0; r < 3; ++r) mx = fmaxf(mx, m[r]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float l = 0.0f;  // (mx finite: warp 0 of every block is not empty)
#pragma unroll
    for (int r = 0; r < 3; ++r) {
      const int k = lane + 32 * r;
      const float f = fast_exp2(m[r] - mx);  // 0 past n_parts
      if (k < n_parts) s_f[warp * kMaxPartials + k] = f;
      l = fmaf(f, lp[r], l);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
    if (lane == 0) s_inv[warp] = 1.0f / l;
  }
  __syncthreads();
  // Weighted sum of the partial rows: item (query, coordinate), the partials split over
  // groups = blockDim / items threads (each sums every groups-th partial), then the groups added.
  const int items = nq * N, groups = max(1, min(static_cast<int>(blockDim.x), 4 * N) / items);
  float* s_part = s_tmp;  // [groups][items]: groups > 1 only where groups * items <= min(blockDim, 4 N)
  for (int i = threadIdx.x; i < items * groups; i += blockDim.x) {
    const int item = i % items, g = i / items, qi = item / N, j = item % N;
    const float* po = partial_o + static_cast<size_t>(qi) * max_splits * N + j;
    const float* f = s_f + qi * kMaxPartials;
    float o = 0.0f;
#pragma unroll 16
    for (int k = g; k < n_parts; k += groups) o = fmaf(f[k], __ldcg(po + static_cast<size_t>(k) * N), o);
    if (groups == 1) s_buf[qi * N + j] = o * s_inv[qi];
    else s_part[i] = o;
  }
  if (groups > 1) {
    __syncthreads();
    for (int item = threadIdx.x; item < items; item += blockDim.x) {
      float o = 0.0f;
      for (int g = 0; g < groups; ++g) o += s_part[g * items + item];
      s_buf[item] = o * s_inv[item / N];
    }
  }
  __syncthreads();
  rotate_shared(rot.codec, rot.head, true, s_buf, s_tmp, nq, N);  // (synchronizes the block)
  for (int i = threadIdx.x; i < nq * vc.dim; i += blockDim.x) out[i] = s_buf[(i / vc.dim) * N + i % vc.dim];
}

template <int N, int BITS, int W, bool SMALL_PAGES>
__global__ void __launch_bounds__(W * 32, kWarpsPerSm / W) decode_split_tc_kernel(DecodeParams p, int flags) {
  const bool fused_merge = flags & kFlagFusedMerge;
  const bool own_queries = flags & kFlagOwnQueries;  // no query launch: the block rotates its queries
  uint64_t* const trace = p.trace;
  trace_point(trace, kTraceSplitStart);
  trace_block(trace, 0);
  using L = TcLayout<N, BITS, W>;
  constexpr int PAIRS = L::PAIRS, MAIN = L::MAIN, ROWW = L::ROWW, CODEW = L::CODEW;
  constexpr int W2 = 2 * BITS;  // bits of a code pair
  constexpr int KW = BITS;      // words of a lane's K slice: 32 coordinates x BITS bits
  constexpr int VBIT = 16 * BITS;  // bits of a lane's V slice: 16 coordinates
  static_assert(N == kHeadDim && MAIN == 16 * BITS, "tensor-core decode: rows of 128 coordinates, no tail");

  extern __shared__ __align__(16) uint8_t smem[];

  const int group = p.n_q_heads / p.n_kv_heads;
  const int passes = (group + 3) / 4;  // 4 query heads per pass
  const int split_block = blockIdx.y;
  const int kvh = blockIdx.x / passes, b = blockIdx.z;
  const int q0 = (blockIdx.x % passes) * 4;  // first query head (of the group) of this pass
  // Own queries: the cold reads of the pass's queries and of K's rotation are issued first, beside
  // seq_lens (lane 0's page-table read in stage() below holds its warp until it returns).
  const int nq_pass = min(4, group - q0);
  float q_in[2] = {0.0f, 0.0f};
  RotationRegs k_rot_regs{};
  if (own_queries) {
    k_rot_regs = load_rotation(p.k_codec, kvh);
    const float* q_src = p.queries + (static_cast<size_t>(b) * p.n_q_heads + kvh * group + q0) * N;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int i = threadIdx.x + k * W * 32;
      if (i < nq_pass * N) q_in[k] = __ldg(q_src + i);
    }
  }
  // The tables' centroids too (threads < 2 PAIRS), before stage() below: issued after it, they queued
  // behind the grid's first bulk copies ((16, 64K) -1 .. -2 us, session 21).
  float lut_c[2] = {0.0f, 0.0f};
  if (threadIdx.x < 2 * PAIRS) {
    const int f = threadIdx.x % PAIRS;
    const float* cent = (threadIdx.x < PAIRS ? p.k_codec : p.v_codec).centroids;
    lut_c[0] = __ldg(cent + (f & ((1 << BITS) - 1)));
    lut_c[1] = __ldg(cent + (f >> BITS));
  }
  const int len = p.seq_lens[blockIdx.z];
  const int n_splits = len > 0 ? static_cast<int>((static_cast<long long>(len) + p.plan.tokens_per_split - 1) /
                                                  p.plan.tokens_per_split)
                               : 0;
  const int n_blocks = (n_splits + W - 1) / W;  // blocks (partials) of this sequence
  // Blocks past the sequence's last split write nothing; block 0 of an empty sequence writes its
  // zero output rows. Inside a block, warps past the last split take part with an empty split
  // (m = -inf, l = 0); warp 0 of a block is never empty.
  if (split_block >= n_blocks) {
    if (split_block == 0) {
      const size_t row0 = static_cast<size_t>(b) * p.n_q_heads + kvh * group + q0;
      for (int i = threadIdx.x; i < min(4, group - q0) * p.v_codec.dim; i += blockDim.x) p.out[row0 * p.v_codec.dim + i] = 0.0f;
    }
    return;
  }
  __shared__ int s_blocks;  // n_blocks, for the merge after the loop (not held in a register)
  if (threadIdx.x == 0) s_blocks = n_blocks;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int gid = lane >> 2, tig = lane & 3;
  const int split = split_block * W + warp;
  int start = len, end = len;  // empty split
  if (split < n_splits) {  // chunk s C / S = s q + s r / S (C = q S + r; s, r < S <= 1024: 32-bit)
    const int chunks = (len + kChunk - 1) / kChunk, q = chunks / n_splits, r = chunks % n_splits;
    start = (split * q + split * r / n_splits) * kChunk;
    end = min(len, ((split + 1) * q + (split + 1) * r / n_splits) * kChunk);
  }
  if (flags & kTcSkipLoop) start = end = len;  // diagnostic: no staging, no chunk
  uint32_t* s_kc = reinterpret_cast<uint32_t*>(smem + L::codes) + (warp * 2 + 0) * CODEW;
  uint32_t* s_vc = reinterpret_cast<uint32_t*>(smem + L::codes) + (warp * 2 + 1) * CODEW;
  uint16_t* s_kn = reinterpret_cast<uint16_t*>(smem + L::norms) + (warp * 2 + 0) * kChunk;
  uint16_t* s_vn = reinterpret_cast<uint16_t*>(smem + L::norms) + (warp * 2 + 1) * kChunk;
  if (lane < 4) s_kc[kChunk * ROWW + lane] = s_vc[kChunk * ROWW + lane] = 0u;
  __shared__ __align__(8) uint64_t s_bar[W][2];  // per warp: K and V staging barriers
  const uint32_t bar_k = static_cast<uint32_t>(__cvta_generic_to_shared(&s_bar[warp][0])), bar_v = bar_k + 8;
  if (lane == 0) {
    mbar_init(bar_k);
    mbar_init(bar_v);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncwarp();

  // The first chunk's K copies fly while the block builds its tables and the queries are rotated.
  const int page_size = p.k_geometry.page_size;  // power of two: >= 64, or 8-32 with SMALL_PAGES
  const int page_shift = __ffs(page_size) - 1;
  const int32_t* pages = p.page_table + static_cast<size_t>(b) * p.max_pages_per_seq;
  // Stage the 64 rows of chunk t0 into shared memory, asynchronously: TMA bulk copies (codes, norms)
  // completed on the mbarrier `bar` (decode eighth pass: 3% faster at (16, 64K) than 13 cp.async per
  // lane and stage, which every lane issued and which went through the L1 / shared-memory pipe the
  // table lookups keep busy). Pages of >= 64 tokens hold the whole chunk: lane 0 issues two copies.
  // Smaller pages (8-32 tokens, SMALL_PAGES: its own instantiation, so that this path costs the other
  // kernels' chunk loop nothing; in one kernel it spilled there) hold 64 / P pieces of it: lane j
  // reads page j's id and issues its two copies, so that the page-table reads and the copies' issue
  // overlap (session 24, (16, 64K) at 16-token pages: one lane reading the ids in turn 334-341 us,
  // one lane issuing every copy 333-342 us, this 298-314 us, a copy per lane (norms by lanes 8-15)
  // the same; 64-token pages 268-274 us); the pages past the split's end are not read (their rows are
  // masked; the page table need not hold them).
  // Pages of >= 64 tokens: the K stage of a chunk reads its page id and keeps it for the same chunk's
  // V stage (lane 0; the two planes share the page table and the row index): one dependent page-table
  // read a chunk instead of two, 10 instructions fewer in the chunk loop (session 25).
  uint32_t staged_page = 0;
  auto stage = [&](int t0, const PagedGeometry& g, const PagedPlanes& pl, uint32_t* dst, uint16_t* dn, uint32_t bar) {
    const bool k_stage = &pl == &p.k_planes;  // (each call site's constant)
    // g.row(page, kvh, off) = page (H P) + (kvh P + off) as one 32 x 32 -> 64-bit multiply-add
    // (launch_decode_attention refuses H P >= 2^31): a shorter chain after the page-table read than
    // g.row's 64-bit products, (16, 64K) -0.8 % (session 23).
    if constexpr (!SMALL_PAGES) {
      if (t0 < end && lane == 0) {  // (t0 < len: splits past the end stage nothing)
        const uint32_t page_rows = static_cast<uint32_t>(g.n_kv_heads * page_size);
        const uint32_t d_codes = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
        const uint32_t d_norms = static_cast<uint32_t>(__cvta_generic_to_shared(dn));
        const uint64_t policy = stream_l2_policy();
        if (k_stage) staged_page = static_cast<uint32_t>(__ldg(pages + (t0 >> page_shift)));
        const uint32_t page = staged_page;
        const uint32_t in_page = static_cast<uint32_t>(kvh * page_size + (t0 & (page_size - 1)));
        const uint64_t row0 = static_cast<uint64_t>(page) * page_rows + in_page;
        fence_proxy_async();  // after the warp's reads of the buffers (__syncwarp before the call)
        mbar_expect_tx(bar, kChunk * (MAIN + 2));
        bulk_copy(d_codes, pl.codes + row0 * MAIN, kChunk * MAIN, bar, policy);
        bulk_copy(d_norms, pl.norms + row0, kChunk * 2, bar, policy);
      }
    } else {
      if (t0 >= end) return;  // warp-uniform
      const int n = (min(kChunk, end - t0) + page_size - 1) >> page_shift;  // pages with rows before end (<= 8)
      const bool mine = lane < n;
      uint32_t page = 0;
      if (mine) page = static_cast<uint32_t>(__ldg(pages + ((t0 >> page_shift) + lane)));
      if (lane == 0) mbar_expect_tx(bar, static_cast<uint32_t>(n * page_size * (MAIN + 2)));
      __syncwarp();  // the expected bytes are set before any copy can complete
      if (mine) {
        const uint32_t page_rows = static_cast<uint32_t>(g.n_kv_heads * page_size);
        const uint64_t policy = stream_l2_policy();
        const uint64_t row0 = static_cast<uint64_t>(page) * page_rows + static_cast<uint32_t>(kvh * page_size);
        fence_proxy_async();  // each issuing lane: after the warp's reads of the buffers
        bulk_copy(static_cast<uint32_t>(__cvta_generic_to_shared(dst)) + lane * page_size * MAIN, pl.codes + row0 * MAIN,
                  page_size * MAIN, bar, policy);
        bulk_copy(static_cast<uint32_t>(__cvta_generic_to_shared(dn)) + lane * page_size * 2, pl.norms + row0, page_size * 2,
                  bar, policy);
      }
    }
  };
  // Waits for the copies of the current chunk's K (v = false) or V stage (parity of its next phase).
  uint32_t phase_k = 0, phase_v = 0;
  auto wait_stage = [&](bool v) {
    mbar_wait(v ? bar_v : bar_k, v ? phase_v : phase_k);
    (v ? phase_v : phase_k) ^= 1u;
  };
  // The first chunk's V is asked for only once its K is here (before the loop): at batch 1 every warp
  // of the grid stages its first chunk at the same moment (~20 MB at (1, 128K), ~5 us of DRAM time),
  // and the K half alone lets the K step start about twice as early while V arrives during it.
  stage(start, p.k_geometry, p.k_planes, s_kc, s_kn, bar_k);

  // Tables, at T = lut_base (a shared address, multiple of kLutAlign): thread f < PAIRS writes the 32
  // copies of K entry f (fp16 a_K C of the pair's two centroids), thread PAIRS + f those of V entry f
  // (a_V C).
  const uint32_t smem_base = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const uint32_t lut_base = (smem_base + static_cast<uint32_t>(L::staging) + kLutAlign - 1) & ~(kLutAlign - 1u);
  {
    uint8_t* s_lut = smem + (lut_base - smem_base);
    const int t = threadIdx.x, f = t % PAIRS;
    if (t < 2 * PAIRS) {
      const DeviceCodec& c = t < PAIRS ? p.k_codec : p.v_codec;
      const uint32_t v = pack_half2(c.mma_scale * lut_c[0], c.mma_scale * lut_c[1]);
      uint4* dst = reinterpret_cast<uint4*>(s_lut + (t < PAIRS ? L::lut_k : L::lut_v) + f * 32 * sizeof(uint32_t));
#pragma unroll
      for (int i = 0; i < 8; ++i) dst[i] = make_uint4(v, v, v, v);
    }
  }
  __syncthreads();
  trace_point(trace, kTraceSplitReady);

  // Query B fragments: lane holds column gid (query q0 + (gid >> 1) divided by a_K; hi part for
  // even gid, lo part for odd gid) at coordinates 32 tig + 4 s + {0, 1} (b0) and + {2, 3} (b1) of k-step s:
  // 16 words that prepare_queries_kernel wrote in this order (decode thirteenth pass: 4 coalesced
  // 16-byte loads instead of 32 scalar loads over 16 lines each, and no conversions here).
  uint32_t bq[8][2];
  if (own_queries) {
    // As prepare_queries_kernel (decode.cu), in the V staging buffers of warps 0-2 (not staged yet):
    // rotate the pass's queries by K's rotation and make the B fragments' fp16 hi and lo halves of
    // (q_rot scale log2 e) / a_K, the same bytes that kernel writes.
    float* const s_qbuf = reinterpret_cast<float*>(smem + L::codes) + 1 * CODEW;  // warp 0's V buffer
    float* const s_qtmp = reinterpret_cast<float*>(smem + L::codes) + 3 * CODEW;  // warp 1's
    float* const s_qrot = reinterpret_cast<float*>(smem + L::codes) + 5 * CODEW;  // warp 2's
    static_assert(CODEW >= 4 * N && CODEW >= kMaxRotationFloats, "a V staging buffer holds 4 queries");
    const StagedRotation rot = store_rotation(p.k_codec, kvh, k_rot_regs, s_qrot);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int i = threadIdx.x + k * W * 32;
      if (i < nq_pass * N) s_qbuf[i] = q_in[k];
    }
    __syncthreads();
    trace_point(trace, kTraceQueryStart);  // (no query launch: its points time the block's own rotation)
    rotate_shared(rot.codec, rot.head, false, s_qbuf, s_qtmp, nq_pass, N);  // (synchronizes the block)
    trace_point(trace, kTraceQueryEnd);
    // Thread i makes the fp16 hi and lo halves of coordinate i % N of query i / N in the query
    // launch's layout ([query][hi | lo][N]), then each lane loads its 16 words with 4 shared loads
    // (a lane converting its own 32 coordinates read the rows 16-way bank-conflicted: 3.3 us a block).
    const float s = p.scale * kLog2e, inv_a = 1.0f / p.k_codec.mma_scale;
    __half* const s_qh = reinterpret_cast<__half*>(s_qtmp);  // (rotate_shared's scratch is free)
    for (int i = threadIdx.x; i < 4 * N; i += blockDim.x) {
      const int qi = i / N, j = i % N;
      store_query_halves(qi < nq_pass ? (s_qbuf[i] * s) * inv_a : 0.0f, s_qh + qi * 2 * N + j, N);
    }
    __syncthreads();
    const uint4* src = reinterpret_cast<const uint4*>(s_qh + (gid >> 1) * 2 * N) + ((gid & 1) ? 16 : 0) + 4 * tig;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 w = src[i];
      bq[2 * i][0] = w.x, bq[2 * i][1] = w.y, bq[2 * i + 1][0] = w.z, bq[2 * i + 1][1] = w.w;
    }
    __syncthreads();  // the buffers are read before warps 0-2 stage V into them (stage: proxy fence)
    trace_point(trace, kTraceSplitWaited);
    allow_dependents();  // the merge kernel may launch; it waits for the partials
  } else {
    wait_for_prerequisite();  // prepare_queries_kernel's query fragments
    trace_point(trace, kTraceSplitWaited);
    allow_dependents();       // the merge kernel (fused_merge == 0) may launch; it waits for the partials
    const int qi = gid >> 1;
    const bool real = q0 + qi < group;
    // head q0 + qi's 256 halves: [hi | lo][coordinate]; the lane's 32 at (gid & 1 ? 128 : 0) + 32 tig
    const uint4* src = reinterpret_cast<const uint4*>(static_cast<const float*>(p.workspace) +
                                                      (static_cast<size_t>(b) * p.n_q_heads + kvh * group + q0 + qi) * N) +
                       ((gid & 1) ? 16 : 0) + 4 * tig;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 w = real ? __ldcg(src + i) : make_uint4(0u, 0u, 0u, 0u);
      bq[2 * i][0] = w.x, bq[2 * i][1] = w.y, bq[2 * i + 1][0] = w.z, bq[2 * i + 1][1] = w.w;
    }
  }

  // Shared address of the lane's column of the tables: entry f of a table is at (lut | f << 7) + offset.
  const uint32_t lut = lut_base | (4u * static_cast<uint32_t>(lane));
  // K: MMA B column gid = query gid >> 1, hi part (gid even) or lo part (gid odd), so that a lane's
  // accumulators hold both parts of query tig: row gid's score is d0 + d1, row gid + 8's d2 + d3.
  // MMA rows gid and gid + 8 are the two tokens of pair gid of the 16-token block (tokens 2 gid and
  // 2 gid + 1; row gid the odd one for gid >= 4, so that the 8 rows a code-word load reads are
  // distinct mod 8: conflict-free, as rows gid and gid + 8 were); the pair's two fp16 norms are one word.
  // The lane's scores, weights and norms are kept in token order (sc[tb][e]: token 16 tb + 2 gid + e).
  const bool odd_row = gid >= 4;  // row gid holds the pair's odd token (then row gid + 8 the even one)
  const int krow0 = (2 * gid + (odd_row ? 1 : 0)) * ROWW + KW * tig, krow1 = (2 * gid + (odd_row ? 0 : 1)) * ROWW + KW * tig;
  // V B fragment: column gid = (query gid >> 1, slot gid & 1): token T = 8 (ks & 1) + tig + 4 h of
  // block ks >> 1 comes from the lane of pair T >> 1 and query gid >> 1, half T & 1 = tig & 1.
  const uint32_t hsel = (tig & 1) ? 0x32u : 0x10u;
  const uint32_t bsel = (gid & 1) ? (hsel << 8) | 0x44u : 0x4400u | hsel;
  const int wsrc = 4 * (tig >> 1) + (gid >> 1);  // + 16 (ks & 1) + 8 h
  const int vword = (VBIT * gid) >> 5, vshift = (VBIT * gid) & 31;
  float m_run = -INFINITY, l_run = 0.0f;
  float acc[4][4];
#pragma unroll
  for (int m = 0; m < 4; ++m) acc[m][0] = acc[m][1] = acc[m][2] = acc[m][3] = 0.0f;

  if (start < end) mbar_wait(bar_k, 0);  // the first chunk's K (the loop's first wait passes at once) ...
  trace_point(trace, kTraceSplitFirstK);
  trace_block(trace, 1);
  stage(start, p.v_geometry, p.v_planes, s_vc, s_vn, bar_v);  // ... then ask for its V
  // One chunk: the staged rows [t0, t0 + pend). FULL: pend = 64 (no masks); else (the sequence's last
  // chunk) its 16-token blocks past pend are skipped and the tokens past pend masked.
  auto process_chunk = [&](auto full_c, int t0, int pend) {
    constexpr bool FULL = decltype(full_c)::value;
    const int nb = FULL ? 4 : (pend + 15) >> 4;  // blocks with valid tokens
    const int tn = t0 + kChunk;                  // the next chunk
    wait_stage(false);  // this chunk's K (its V may still be in flight)
    __syncwarp();
    // ---- K: scores of 4 blocks of 16 tokens; lane: token 16 tb + tok, queries qa, qa + 1.
    float sc[4][2];
#pragma unroll
    for (int tb = 0; tb < 4; ++tb) {
      if (!FULL && tb >= nb) {
        sc[tb][0] = sc[tb][1] = -INFINITY;
        continue;
      }
      uint32_t kw0[KW], kw1[KW];  // rows gid and gid + 8 of the block
#pragma unroll
      for (int i = 0; i < KW; ++i) {
        kw0[i] = s_kc[16 * tb * ROWW + krow0 + i];
        kw1[i] = s_kc[16 * tb * ROWW + krow1 + i];
      }
      float d[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      static_for<0, 8>([&](auto sc_) {
        constexpr int S = decltype(sc_)::value;
        constexpr int K0 = L::lut_k;
        const uint32_t a[4] = {lds32<K0>(lut_offset<(4 * S) * BITS, W2, 7>(kw0, lut)),
                               lds32<K0>(lut_offset<(4 * S) * BITS, W2, 7>(kw1, lut)),
                               lds32<K0>(lut_offset<(4 * S + 2) * BITS, W2, 7>(kw0, lut)),
                               lds32<K0>(lut_offset<(4 * S + 2) * BITS, W2, 7>(kw1, lut))};
        mma16816(d, a, bq[S][0], bq[S][1]);
      });
      {
        const float2 nu = norm_pair(s_kn, 8 * tb + gid);
        const float xa = d[0] + d[1], xb = d[2] + d[3];  // rows gid, gid + 8
        const int te = 16 * tb + 2 * gid;
        sc[tb][0] = FULL || te < pend ? (odd_row ? xb : xa) * nu.x : -INFINITY;
        sc[tb][1] = FULL || te + 1 < pend ? (odd_row ? xa : xb) * nu.y : -INFINITY;
      }
    }
    __syncwarp();
    stage(tn, p.k_geometry, p.k_planes, s_kc, s_kn, bar_k);  // next chunk's K, in flight during V
    wait_stage(true);  // this chunk's V
    __syncwarp();

    // ---- online softmax of query tig; max over the warp's 64 tokens (the lanes with the same tig).
    float mx = fmaxf(fmaxf(fmaxf(sc[0][0], sc[0][1]), fmaxf(sc[1][0], sc[1][1])),
                     fmaxf(fmaxf(sc[2][0], sc[2][1]), fmaxf(sc[3][0], sc[3][1])));
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    const float m_new = fmaxf(m_run, mx);  // finite: token t0 is valid
    const float alpha = fast_exp2(m_run - m_new);
    m_run = m_new;
    uint32_t wh[4];  // fp16 weights p * nu_v of query tig for tokens 16 tb + 2 gid + {0, 1}
    float lsum = 0.0f;
#pragma unroll
    for (int tb = 0; tb < 4; ++tb) {
      float2 nv = norm_pair(s_vn, 8 * tb + gid);
      if (!FULL) {
        const int te = 16 * tb + 2 * gid;
        if (te >= pend) nv.x = 0.0f;
        if (te + 1 >= pend) nv.y = 0.0f;
      }
      const float p0 = fast_exp2(sc[tb][0] - m_new), p1 = fast_exp2(sc[tb][1] - m_new);  // 0 past the end
      lsum += p0;
      lsum += p1;
      wh[tb] = pack_half2(p0 * nv.x, p1 * nv.y);
    }
    l_run = l_run * alpha + lsum;
#pragma unroll
    for (int m = 0; m < 4; ++m) {
      acc[m][0] *= alpha;
      acc[m][1] *= alpha;
      acc[m][2] *= alpha;
      acc[m][3] *= alpha;
    }

    // ---- V: 8 k-steps of 8 tokens; lane: tokens 8 ks + tig and 8 ks + tig + 4, coordinate pairs
    //      8 gid + 2 m (row gid) and 8 gid + 2 m + 1 (row gid + 8) of M-tile m.
#pragma unroll
    for (int ks = 0; ks < 8; ++ks) {
      if (!FULL && ks >= 2 * nb) continue;
      uint32_t vb[2][2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t* row = s_vc + (8 * ks + tig + 4 * h) * ROWW + vword;
        if constexpr (BITS == 3) {
          const uint32_t w0 = row[0], w1 = row[1];
          vb[h][0] = __funnelshift_r(w0, w1, vshift);
          vb[h][1] = w1 >> vshift;
        } else {
          vb[h][0] = row[0];
          vb[h][1] = 0u;
        }
      }
      // B: the weight of token 8 ks + tig (+ 4) for query gid >> 1, in the half of column gid's slot.
      uint32_t bw[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        bw[h] = __byte_perm(__shfl_sync(0xffffffffu, wh[ks >> 1], wsrc + 16 * (ks & 1) + 8 * h), 0u, bsel);
      }
      static_for<0, 4>([&](auto mc) {
        constexpr int M = decltype(mc)::value;
        constexpr int V0 = L::lut_v;
        const uint32_t a[4] = {lds32<V0>(lut_offset<(2 * M) * W2, W2, 7>(vb[0], lut)),
                               lds32<V0>(lut_offset<(2 * M + 1) * W2, W2, 7>(vb[0], lut)),
                               lds32<V0>(lut_offset<(2 * M) * W2, W2, 7>(vb[1], lut)),
                               lds32<V0>(lut_offset<(2 * M + 1) * W2, W2, 7>(vb[1], lut))};
        mma16816(acc[M], a, bw[0], bw[1]);
      });
    }
    __syncwarp();  // the V stage is rewritten next
    stage(tn, p.v_geometry, p.v_planes, s_vc, s_vn, bar_v);
  };
  for (int t0 = start; t0 < end; t0 += kChunk) {
    const int pend = min(end - t0, kChunk);
    if (pend == kChunk) process_chunk(std::true_type{}, t0, pend);
    else process_chunk(std::false_type{}, t0, pend);
  }
  // (every bulk copy issued was waited for: the code buffers are free for the merge below)

  // ---- partial result of the block: its W splits merged; o[query][coord] (queries < group), m, l.
  // Each warp writes its unscaled rows and its (m, l) into its own staging buffers (its copies are
  // all waited for), so one barrier separates the writes from the sums (session 9: was three).
#pragma unroll
  for (int o = 4; o < 32; o <<= 1) l_run += __shfl_xor_sync(0xffffffffu, l_run, o);  // lanes of query tig
  constexpr int kOStride = 2 * CODEW;            // floats from warp w's rows to warp w + 1's (its K and V codes)
  constexpr int kMlStride = kChunk;              // floats from warp w's (m, l) to warp w + 1's (its 2 x 64 fp16 norms)
  static_assert(4 * N <= kOStride && 8 <= kMlStride, "a warp's rows and (m, l) fit in its own staging buffers");
  float* const s_o = reinterpret_cast<float*>(smem + L::codes);   // [W] x kOStride: o[4 queries][N]
  float* const s_ml = reinterpret_cast<float*>(smem + L::norms);  // [W] x kMlStride: m[4], l[4]
  if (gid == 0) {
    s_ml[warp * kMlStride + tig] = m_run;
    s_ml[warp * kMlStride + 4 + tig] = l_run;
  }
  {
    // columns 2 tig, 2 tig + 1 = query tig, slots 0 and 1: coordinates 16 gid + 4 m + 0 .. 3
    float4* o = reinterpret_cast<float4*>(s_o + warp * kOStride + tig * N + 16 * gid);
#pragma unroll
    for (int m = 0; m < 4; ++m) o[m] = make_float4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
  }
  __syncthreads();
  trace_point(trace, kTraceSplitLoopDone);
  trace_block(trace, 2);
  const float inv_av = 1.0f / p.v_codec.mma_scale;  // the V table holds a_V C[k]
  const int nq = min(4, group - q0);
  const size_t bh0 = static_cast<size_t>(b) * p.n_q_heads + kvh * group + q0;
  if (flags & kFlagSingleBlock) {
    // ---- the pair's only block (tc_single_block): its W splits merged and normalized in the tables'
    // place (free after the loop), V's inverse rotation, the output rows. V's rotation parameters
    // are read during the sums.
    // Warp q < nq: the max of the warps' m of query q (lanes w < W; max is exact in any order), the
    // factors f_w = 2^(m_w - max), then lane 0's l = sum_w f_w l_w in order w; the rows' sums use
    // the factors, and warp q un-rotates row q (rotate128_warp: rotate_shared's sums, in registers).
    // The same bits as one thread a query and rotate_shared did, with two barriers fewer (session 22:
    // (16, 64K) rotor3 272 -> 269.5 us, docs/gpu.md).
    const RotationRegs v_rot = load_rotation(p.v_codec, kvh);
    float* const s_buf = reinterpret_cast<float*>(smem + (lut_base - smem_base));  // [4][N] merged rows
    float* const s_f = s_buf + 4 * N;                                              // [4][W] 2^(m_w - max)
    float* const s_rot = s_f + 4 * N;                                              // V's rotation of head kvh
    float* const s_inv = s_rot + kMaxRotationFloats;                               // [4] 1 / (a_V sum_w 2^(m_w - max) l_w)
    static_assert(4 * W <= 4 * N, "the factors fit");
    if (warp < nq) {
      const int qi = warp;
      const float m = lane < W ? s_ml[lane * kMlStride + qi] : -INFINITY;
      float mx = m;  // finite: warp 0 is not empty
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      if (lane < W) s_f[qi * W + lane] = fast_exp2(m - mx);
      __syncwarp();
      if (lane == 0) {
        float l = 0.0f;
        for (int w = 0; w < W; ++w) l += s_f[qi * W + w] * s_ml[w * kMlStride + 4 + qi];
        s_inv[qi] = inv_av / l;
      }
    }
    const StagedRotation rot = store_rotation(p.v_codec, kvh, v_rot, s_rot);
    __syncthreads();
    for (int i = threadIdx.x; i < nq * N; i += blockDim.x) {
      const int qi = i / N, j = i % N;
      float o = 0.0f;
#pragma unroll
      for (int w = 0; w < W; ++w) o = fmaf(s_o[w * kOStride + qi * N + j], s_f[qi * W + w], o);
      s_buf[i] = o * s_inv[qi];
    }
    __syncthreads();
    trace_point(trace, kTraceSplitEnd);
    if (warp < nq) {
      float y[4];  // coordinate lane + 32 k of row warp
      rotate128_warp(rot.codec, rot.codec.rotation + static_cast<size_t>(rot.head) * rot.codec.rotation_stride, true,
                     s_buf + warp * N, y);
      float* const out = p.out + (bh0 + warp) * p.v_codec.dim;
#pragma unroll
      for (int k = 0; k < 4; ++k)
        if (lane + 32 * k < p.v_codec.dim) out[lane + 32 * k] = y[k];
    }
    trace_point(trace, kTraceMergeEnd);
    return;
  }
  float* ws = static_cast<float*>(p.workspace);
  const size_t bh_count = static_cast<size_t>(p.batch) * p.n_q_heads;
  float* partial_o = ws + bh_count * N;
  float* partial_ml = partial_o + bh_count * p.plan.max_splits * N;
  int* counters = reinterpret_cast<int*>(partial_ml + bh_count * p.plan.max_splits * 2);  // [batch][n_q_heads]
  for (int i = threadIdx.x; i < nq * N; i += blockDim.x) {
    const int qi = i / N, j = i % N;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < W; ++w) mx = fmaxf(mx, s_ml[w * kMlStride + qi]);  // finite: warp 0 is not empty
    float o = 0.0f;
#pragma unroll
    for (int w = 0; w < W; ++w) o = fmaf(s_o[w * kOStride + qi * N + j], fast_exp2(s_ml[w * kMlStride + qi] - mx), o);
    partial_o[((bh0 + qi) * p.plan.max_splits + split_block) * N + j] = o * inv_av;  // (empty split: 0 x 0)
  }
  if (threadIdx.x < nq) {
    const int qi = threadIdx.x;
    float mx = -INFINITY, l = 0.0f;
    for (int w = 0; w < W; ++w) mx = fmaxf(mx, s_ml[w * kMlStride + qi]);
    for (int w = 0; w < W; ++w) l += fast_exp2(s_ml[w * kMlStride + qi] - mx) * s_ml[w * kMlStride + 4 + qi];
    float* ml = partial_ml + ((bh0 + qi) * p.plan.max_splits + split_block) * 2;
    ml[0] = mx;
    ml[1] = l;
  }

  trace_point(trace, kTraceSplitEnd);

  // ---- the last block of this (sequence, query pass) merges the n_blocks partials (else the merge kernel).
  if (!fused_merge) return;
  __shared__ int s_last;
  const int n_blocks_ = s_blocks;
  __threadfence();  // this block's partial is visible device-wide before the counter says so
  __syncthreads();
  if (threadIdx.x == 0) s_last = atomicAdd(counters + bh0, 1) == n_blocks_ - 1;
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  trace_point(trace, kTraceMergeStart);
  merge_partials<N>(partial_o + bh0 * p.plan.max_splits * N, partial_ml + bh0 * p.plan.max_splits * 2, p.plan.max_splits,
                    n_blocks_, nq, p.v_codec, kvh, p.out + bh0 * p.v_codec.dim, reinterpret_cast<float*>(smem + L::codes));
  trace_point(trace, kTraceMergeEnd);
}

// The merge launch (no fused merge): block (query head, sequence) of 128 threads,
// thread j = coordinate j. Small enough (registers, ptxas -v) to wait resident beside two split blocks
// (2 x 384 threads x 80 registers leave 4,096), with V's rotation parameters already in shared memory
// (read before the wait); after it, one round of loads brings every partial's (m, l) and the first
// kMergeBatch partial values of the thread's coordinate, the rest follow kMergeBatch at a time.
constexpr int kMergeTcThreads = 128;
constexpr int kMergeBatch = 16;

// G = 4 (decode thirteenth pass), where a sequence has more than kMergeBatch partials: 4 groups of
// 128 threads, group g sums partials g, g + 4, ..., kMergeBatch of them a round (one round up to 64
// partials instead of one per 16), the groups' sums added in shared memory. Too large to wait beside
// two split blocks: it becomes resident where split blocks have finished (at (1, 128K) ~10 us before
// the last); its merge is ~1 us shorter there (3 rounds of loads -> 1), measured.
template <int N, int G>
__global__ void __launch_bounds__(kMergeTcThreads * G, G == 1 ? 16 : 1) merge_tc_kernel(DecodeParams p) {
  static_assert(N == kMergeTcThreads && kMaxPartials <= kMergeTcThreads, "a coordinate and a partial per thread");
  constexpr int W = kMergeTcThreads * G / 32;  // warps
  __shared__ float s_buf[N], s_tmp[N], s_f[kMaxPartials], s_red[2][W];
  __shared__ float s_part[G > 1 ? G : 1][G > 1 ? N : 1];  // the groups' sums (G = 1: unused)
  __shared__ float s_rot[kMaxRotationFloats];
  const int hq = blockIdx.x, b = blockIdx.y, t = threadIdx.x, lane = t & 31, warp = t >> 5;
  const int j = G == 1 ? t : t % N, g = G == 1 ? 0 : t / N;  // coordinate, group
  const int group = p.n_q_heads / p.n_kv_heads;
  const int len = p.seq_lens[b];  // (not written by the split kernel)
  trace_point(p.trace, kTraceMergeStart);
  const StagedRotation rot = stage_rotation(p.v_codec, hq / group, s_rot);  // cold, while the split kernel runs
  wait_for_prerequisite();  // the split kernel's partials
  trace_point(p.trace, kTraceMergeWaited);
  if (len <= 0) return;     // (the split kernel's block 0 wrote the zero rows)
  const int n_splits = static_cast<int>((static_cast<long long>(len) + p.plan.tokens_per_split - 1) / p.plan.tokens_per_split);
  const int n = plan_split_blocks(p.plan, n_splits);  // partials (one per split block)
  const float* ws = static_cast<const float*>(p.workspace);
  const size_t bh_count = static_cast<size_t>(p.batch) * p.n_q_heads, bh = static_cast<size_t>(b) * p.n_q_heads + hq;
  const float* po = ws + bh_count * N + bh * p.plan.max_splits * N + j;
  const float2* pml = reinterpret_cast<const float2*>(ws + bh_count * N + bh_count * p.plan.max_splits * N) + bh * p.plan.max_splits;
  const float2 ml = t < n ? __ldcg(pml + t) : make_float2(-INFINITY, 0.0f);
  float v[kMergeBatch];
#pragma unroll
  for (int i = 0; i < kMergeBatch; ++i) v[i] = g + G * i < n ? __ldcg(po + static_cast<size_t>(g + G * i) * N) : 0.0f;
  float mx = ml.x;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  if (lane == 0) s_red[0][warp] = mx;
  __syncthreads();
  mx = s_red[0][0];
#pragma unroll
  for (int w = 1; w < W; ++w) mx = fmaxf(mx, s_red[0][w]);  // finite: partial 0 is not empty
  const float f = fast_exp2(ml.x - mx);  // 0 past n
  if (t < n) s_f[t] = f;
  float l = f * ml.y;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
  if (lane == 0) s_red[1][warp] = l;
  __syncthreads();  // (also orders the s_f writes)
  float lt = 0.0f;
#pragma unroll
  for (int w = 0; w < W; ++w) lt += s_red[1][w];
  float o = 0.0f;
#pragma unroll
  for (int i = 0; i < kMergeBatch; ++i)
    if (g + G * i < n) o = fmaf(s_f[g + G * i], v[i], o);
  for (int k0 = G * kMergeBatch; k0 < n; k0 += G * kMergeBatch) {
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i) {
      const int k = k0 + g + G * i;
      v[i] = k < n ? __ldcg(po + static_cast<size_t>(k) * N) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < kMergeBatch; ++i)
      if (k0 + g + G * i < n) o = fmaf(s_f[k0 + g + G * i], v[i], o);
  }
  if constexpr (G == 1) {
    s_buf[j] = o * (1.0f / lt);
  } else {
    s_part[g][j] = o;
    __syncthreads();
    if (g == 0) {
      float sum = 0.0f;
#pragma unroll
      for (int k = 0; k < G; ++k) sum += s_part[k][j];
      s_buf[j] = sum * (1.0f / lt);
    }
  }
  __syncthreads();
  rotate_shared(rot.codec, rot.head, true, s_buf, s_tmp, 1, N);  // (synchronizes the block)
  float* out = p.out + bh * p.v_codec.dim;
  for (int i = t; i < p.v_codec.dim; i += blockDim.x) out[i] = s_buf[i];
  trace_point(p.trace, kTraceMergeEnd);
}

template <int N, int BITS, int W, bool SMALL_PAGES>
cudaError_t launch_tc(const DecodeParams& p, int flags, cudaStream_t stream) {
  const int group = p.n_q_heads / p.n_kv_heads;
  const dim3 grid(p.n_kv_heads * ((group + 3) / 4), (p.plan.max_splits + W - 1) / W, p.batch);
  constexpr size_t bytes = TcLayout<N, BITS, W>::bytes;
  static std::atomic<uint64_t> done{0};  // per instantiation: devices whose attributes are set
  const cudaError_t st = attribute_once(done, [] {
    return cudaFuncSetAttribute(decode_split_tc_kernel<N, BITS, W, SMALL_PAGES>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(bytes));
  });
  if (st != cudaSuccess) return st;
  if (flags & kFlagOwnQueries) {  // the decode's first launch: after everything before it in the stream
    decode_split_tc_kernel<N, BITS, W, SMALL_PAGES><<<grid, W * 32, bytes, stream>>>(p, flags);
    return cudaGetLastError();
  }
  return launch_dependent(decode_split_tc_kernel<N, BITS, W, SMALL_PAGES>, grid, dim3(W * 32), bytes, stream, p, flags);
}

template <int N, int BITS, int W>
cudaError_t launch_tc_pages(const DecodeParams& p, int flags, cudaStream_t stream) {
  return p.k_geometry.page_size < kChunk ? launch_tc<N, BITS, W, true>(p, flags, stream)
                                         : launch_tc<N, BITS, W, false>(p, flags, stream);
}

template <int N, int BITS>
cudaError_t launch_tc_warps(const DecodeParams& p, int flags, cudaStream_t stream) {
  return plan_block_warps(p.plan) == 24 ? launch_tc_pages<N, BITS, 24>(p, flags, stream)
                                        : launch_tc_pages<N, BITS, 12>(p, flags, stream);
}

template <int N>
cudaError_t launch_tc_bits(const DecodeParams& p, int flags, cudaStream_t stream) {
  switch (p.k_codec.bits) {
    case 2: return launch_tc_warps<N, 2>(p, flags, stream);
    case 3: return launch_tc_warps<N, 3>(p, flags, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

int tc_warps_per_sm() { return kWarpsPerSm; }

// 24-warp blocks where the last blocks merge (>= kFusedMergeMinPasses pairs) and every pair's splits
// can be whole 24-warp blocks in one wave (pairs <= SMs; the plan counts batch x KV heads, not the
// query passes it does not know): (8, 32K) 89.8 -> 85.5 us, (16, 64K) 288 ->
// 277 us (session 21). Else 12: at batch 1 the short contexts' one-chunk splits and (1, 128K) were
// 0.5-5 us slower with 24, and (32, 8K) (256 pairs) would take two waves (90 -> 100 us).
int tc_block_warps(long long heads, long long sms) { return heads >= kFusedMergeMinPasses && heads <= sms ? 24 : 12; }
int tc_chunk_tokens() { return kChunk; }

bool tc_decode_supported(const DecodeParams& p) {
  const int group = p.n_kv_heads > 0 ? p.n_q_heads / p.n_kv_heads : 0;
  return (p.k_codec.bits == 2 || p.k_codec.bits == 3) && p.k_codec.rotated_dim == kHeadDim &&
         group >= 1 && group <= 8 && p.k_geometry.page_size >= 8 && p.plan.tokens_per_split >= kChunk;  // pages: norms copies of >= 16 bytes
}

// The blocks rotate their own queries wherever the merge is a launch of its own (A/B diagnostics,
// docs/gpu.md "Session 15": kDecodeQueryLaunch, kDecodeFusedAlways, slower at batch 1).
bool tc_own_queries(const DecodeParams&) { return (decode_variant() & kDecodeQueryLaunch) == 0; }

// One block a (sequence, query pass) pair: every sequence's splits fit one block ((16, 64K) with 24-warp
// blocks, (32, 8K) with 12). Its block rotates its queries and writes its output rows: no query
// launch, no partials, counters or merge (session 21; kDecodeNoSingleBlock turns it off for A/B runs).
bool tc_single_block(const DecodeParams& p) {
  return (decode_variant() & kDecodeNoSingleBlock) == 0 && p.plan.max_splits <= plan_block_warps(p.plan);
}

bool tc_fused_merge(const DecodeParams& p) {
  const int group = p.n_q_heads / p.n_kv_heads;
  if (decode_variant() & kDecodeFusedAlways) return true;
  return static_cast<long long>(p.batch) * p.n_kv_heads * ((group + 3) / 4) >= kFusedMergeMinPasses;
}

cudaError_t launch_split_tc(const DecodeParams& p, int flags, cudaStream_t stream) {
  if (p.k_codec.rotated_dim != kHeadDim) return cudaErrorInvalidValue;
  return launch_tc_bits<kHeadDim>(p, flags, stream);
}

cudaError_t launch_merge_tc(const DecodeParams& p, cudaStream_t stream) {
  if (plan_split_blocks(p.plan, p.plan.max_splits) > kMergeBatch)  // more than one round of loads
    return launch_dependent(merge_tc_kernel<kHeadDim, 4>, dim3(p.n_q_heads, p.batch), dim3(4 * kMergeTcThreads), 0, stream, p);
  return launch_dependent(merge_tc_kernel<kHeadDim, 1>, dim3(p.n_q_heads, p.batch), dim3(kMergeTcThreads), 0, stream, p);
}

}  // namespace detail
}  // namespace rq::cuda
