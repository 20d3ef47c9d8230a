// Split-KV decode attention straight over the compressed paged cache: one query token per
// sequence, sequences of different lengths, GQA. Three launches:
//   1. rotate each query once by its KV head's K rotation (and fold in scale * log2 e);
//   2. split: block (split, kv head, seq) scores its chunk of tokens from the K codes, keeps an
//      online softmax, accumulates p * nu_v * C[idx_v] in V's rotated domain, writes a partial;
//   3. merge: combines the partials of a (seq, query head) and un-rotates the output once.
// The tensor-core split kernel does 3. itself, in the last of a sequence's blocks to finish, when
// there are 64 or more (sequence, 4-query-head pass) pairs (at batch 1 the merge launch is faster);
// with fewer it does 1. itself instead, in every block (two launches either way; docs/gpu.md,
// "Session 15").
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "rq/cuda/device_codec.hpp"
#include "rq/cuda/paged_layout.hpp"

namespace rq::cuda {

struct DecodePlan {
  int32_t tokens_per_split = 0;  // >= 128 (tensor cores; whole 64-token chunks are spread evenly over
                                 //   a sequence's ceil(len / tokens_per_split) splits) or a multiple
                                 //   of 256 (exact)
  int32_t max_splits = 0;        // splits of the longest sequence
  int32_t block_warps = 0;       // tensor cores: splits (warps) per block, 12 (two blocks an SM) or
                                 //   24 (one block an SM, where every pair's splits are whole 24-warp
                                 //   blocks in one wave: docs/gpu.md, "Session 21"); 0 means 12
};

/// Chooses the split so that batch x kv heads x splits fills `sm_count` multiprocessors. A split
/// is one warp of the tensor-core kernel, one 128-thread block of the exact kernel. Pass the same
/// `exact` as DecodeParams::exact (either plan is valid for either kernel, only slower).
DecodePlan plan_decode(int batch, int max_seq_len, int n_kv_heads, int sm_count, bool exact = false);

struct DecodeParams {
  int32_t batch = 0;
  int32_t n_q_heads = 0;
  int32_t n_kv_heads = 0;              // n_q_heads / n_kv_heads = GQA group (1, 2, 4 or 8)
  float scale = 1.0f;                  // softmax scale, usually 1/sqrt(head_dim)
  const float* queries = nullptr;      // [batch][n_q_heads][dim]
  float* out = nullptr;                // [batch][n_q_heads][dim]
  const int32_t* seq_lens = nullptr;   // [batch]; a sequence of length 0 gets zeros
  const int32_t* page_table = nullptr; // [batch][max_pages_per_seq]
  int32_t max_pages_per_seq = 0;
  DeviceCodec k_codec, v_codec;        // same dim, bits and rotated_dim (rotations may differ)
  PagedGeometry k_geometry, v_geometry;  // same page_size and n_kv_heads
  PagedPlanes k_planes, v_planes;
  DecodePlan plan;                     // from plan_decode(..., exact)
  int32_t exact = 0;                   // 0 (default): tensor-core kernel where supported (2-3 bits,
                                       //   d = 128, page_size >= 8, any GQA group <= 8), else the exact
                                       //   one: hi + lo fp16 queries, K and V centroids as fp16(a C)
                                       //   (~2^-15.5), fp16 weights (2^-11), fp32 sums; error vs the CPU
                                       //   reference in docs/gpu.md (decode sixth pass); 1: fp32 CUDA-core
                                       //   kernel (5e-6 .. 4e-5 of max |ref| measured), slower
  void* workspace = nullptr;           // decode_workspace_bytes(...) bytes of device memory
  uint64_t* trace = nullptr;           // diagnostics (decode eleventh pass): null, or kDecodeTraceWords
                                       //   device words where thread 0 of every block of the tensor-core
                                       //   decode's launches records %globaltimer (ns) at each point:
                                       //   word 2 i = min over blocks (init ~0), 2 i + 1 = max (init 0);
                                       //   then per split block (kTraceBlockWords from 2 x points + its
                                       //   words x (x + gridDim.x (y + gridDim.y z)), the first
                                       //   kTraceMaxBlocks): its SM, start, first K, loop done
};

/// Points of DecodeParams::trace (decode eleventh pass). Query launch: block start / end (where the
/// split blocks rotate their own queries: the rotation's start, after its inputs are in shared
/// memory, and end). Split
/// launch: block start, prologue done (tables built, first K stage asked for; before the wait for the
/// query launch), wait returned, first K stage landed (warp 0), chunk loop done (block; its warps'
/// rows already in shared memory), partial written. Merge (merge launch, or the last block's merge):
/// start (merge launch: block start; fused: the last block learns it is last), wait returned (merge
/// launch only), output written. The caller may use the marks before and after for its own stamps.
enum DecodeTracePoint : int {
  kTraceQueryStart, kTraceQueryEnd,
  kTraceSplitStart, kTraceSplitReady, kTraceSplitWaited, kTraceSplitFirstK, kTraceSplitLoopDone, kTraceSplitEnd,
  kTraceMergeStart, kTraceMergeWaited, kTraceMergeEnd,
  kTraceMarkBefore, kTraceMarkAfter,
  kDecodeTracePoints
};
/// DecodeParams::trace's per-block words (session 21): SM id, then the block's own start, first K and
/// loop-done stamps, for the first kTraceMaxBlocks split blocks.
constexpr int kTraceBlockWords = 4, kTraceMaxBlocks = 16384;
constexpr int kDecodeTraceWords = 2 * kDecodeTracePoints + kTraceBlockWords * kTraceMaxBlocks;

/// Workspace for rotated queries and per-split partial results.
size_t decode_workspace_bytes(int batch, int n_q_heads, int rotated_dim, const DecodePlan& plan);

/// Whether the tensor-core split kernel handles these parameters (otherwise the exact one runs).
bool tensor_core_decode(const DecodeParams& params);

/// Launches the three kernels; returns the first failing status. page_size must be a power of two and
/// n_kv_heads x page_size below 2^31 (else cudaErrorInvalidValue, before any launch).
cudaError_t launch_decode_attention(const DecodeParams& params, cudaStream_t stream);

}  // namespace rq::cuda
