// Balanced splits of the tensor-core decode (docs/gpu.md, "Session 20"). The grid's W warps (one
// split each) are spread over the (sequence, KV head, query pass) pairs in proportion to their 64-token
// chunks, every pair at least one, so that all warps have about the same number of chunks and every
// SM the same work; a block (kWarps consecutive splits) may then hold the splits of several pairs.
// With one pair per block the splits are whole blocks: (16, 64K) got 24 splits a pair = 256 blocks on
// 264 slots, and the 8 SMs with one block idled for the last ~45 % of the loop.
//
// Pair p = b * pairs_per_seq + hp (hp = KV head x passes + pass) has C_b = ceil(len_b / 64) chunks;
// P(p) = the chunks of the pairs before p, T = all chunks, E = W - pairs (the splits beyond one a pair).
// Pair p's splits are [F(p), F(p + 1)) with F(p) = p + floor(E P(p) / T) (F(pairs) = W; T = 0: P(p) =
// p, T = pairs), and split k of its S = F(p + 1) - F(p) takes its chunks [k C / S, (k + 1) C / S): some
// may be empty (S > C). A split has at most ceil(T / E) chunks.
// Used by the kernel (cuda/decode_tc.cu) and tested on the host (tests/cuda/test_cuda_host.cpp).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define RQ_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define RQ_HOST_DEVICE inline
#endif

namespace rq::cuda {

// floor(a / b) for a >= 0, b > 0: a 32-bit division where both fit (on the GPU a 64-bit division is
// a ~70-instruction subroutine, and every warp of the balanced decode does a few in its prologue).
RQ_HOST_DEVICE int64_t floor_div(int64_t a, int64_t b) {
  if (((a | b) >> 32) == 0) return static_cast<uint32_t>(a) / static_cast<uint32_t>(b);
  return a / b;
}

struct SplitBalance {
  const int64_t* chunk_prefix = nullptr;  // [batch + 1]: chunks of the sequences before b (0 at b = 0)
  int32_t batch = 0;
  int32_t pairs_per_seq = 0;  // KV heads x query passes
  int32_t warps = 0;          // W >= pairs() (pairs() < 2^31)

  RQ_HOST_DEVICE int64_t pairs() const { return static_cast<int64_t>(batch) * pairs_per_seq; }
  RQ_HOST_DEVICE int64_t total_chunks() const { return chunk_prefix[batch] * pairs_per_seq; }
  RQ_HOST_DEVICE int64_t chunks_of(int64_t p) const {
    const int32_t b = static_cast<int32_t>(p) / pairs_per_seq;
    return chunk_prefix[b + 1] - chunk_prefix[b];
  }
  RQ_HOST_DEVICE int64_t chunks_before(int64_t p) const {
    const int32_t b = static_cast<int32_t>(p) / pairs_per_seq, hp = static_cast<int32_t>(p) - b * pairs_per_seq;
    return chunk_prefix[b] * pairs_per_seq + hp * (chunk_prefix[b + 1] - chunk_prefix[b]);
  }
  // The weights the splits follow: the chunks, or one a pair where there are none (every pair is
  // empty: its splits are empty too, and still cover the grid).
  RQ_HOST_DEVICE int64_t weight_total() const {
    const int64_t t = total_chunks();
    return t > 0 ? t : pairs();
  }
  RQ_HOST_DEVICE int64_t weight_before(int64_t p, int64_t t) const { return t > 0 ? chunks_before(p) : p; }
  // F(p), p in [0, pairs()]: the pair's first split.
  RQ_HOST_DEVICE int64_t first_split(int64_t p) const {
    const int64_t t = total_chunks();
    return p + floor_div((warps - pairs()) * weight_before(p, t), weight_total());
  }
  // The pair that split s (in [0, warps)) belongs to: the last p with F(p) <= s, found without
  // divisions (F(p) <= s  <=>  p <= s and E P(p) < (s - p + 1) T).
  RQ_HOST_DEVICE int64_t pair_of(int64_t s) const {
    const int64_t t = total_chunks(), w = weight_total(), extra = warps - pairs();
    int64_t lo = 0, hi = pairs() - 1;  // F(0) = 0 <= s
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      const bool starts_by_s = mid <= s && extra * weight_before(mid, t) < (s - mid + 1) * w;
      if (starts_by_s) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
};

// Split s's place: its pair, its chunk range in that pair, and the block-level bookkeeping of the
// fused merge for a grid of blocks of `block_warps` consecutive splits: the pair's partials are one
// per block that holds any of its splits, at slots slot0 .. slot0 + parts - 1 of a table with
// gridDim + pairs slots (slot of (block k, pair p) = k + p: distinct, and consecutive for a pair).
struct SplitPlace {
  int64_t pair = 0;
  int64_t chunk_begin = 0, chunk_end = 0;  // chunks of the pair (may be equal: an empty split)
  int64_t slot0 = 0;                       // first slot of the pair's partials
  int32_t parts = 0;                       // blocks holding the pair's splits
};

RQ_HOST_DEVICE SplitPlace place_split(const SplitBalance& sb, int64_t s, int block_warps) {
  SplitPlace r;
  r.pair = sb.pair_of(s);
  const int64_t f0 = sb.first_split(r.pair), f1 = sb.first_split(r.pair + 1);
  const int64_t n = f1 - f0, k = s - f0, c = sb.chunks_of(r.pair);
  r.chunk_begin = floor_div(k * c, n);
  r.chunk_end = floor_div((k + 1) * c, n);
  const int64_t first_block = f0 / block_warps, last_block = (f1 - 1) / block_warps;
  r.slot0 = first_block + r.pair;
  r.parts = static_cast<int32_t>(last_block - first_block + 1);
  return r;
}

}  // namespace rq::cuda
