// Helpers shared by the decode kernels (cuda/decode.cu, cuda/decode_tc.cu; private to cuda/).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "rq/cuda/decode.hpp"
#include "rq/cuda/device_codec.hpp"

namespace rq::cuda::detail {

// Diagnostic (decode eleventh pass; tensor cores): every split is empty (no staging, no chunk; the
// output is not finite). Set by RQ_DECODE_VARIANT with bit 128 (read once per process; the tenth
// pass's A/B bits are gone: their default is the only path). Bits 32 (cold prologue inputs asked for
// before seq_lens) and 64 (the merge launch polls the split blocks' counters) measured neutral /
// slower: branch decode-eleventh-rejected; bits 4 and 8: branch decode-tenth-rejected.
constexpr int kDecodeSkipLoop = 128;
bool decode_skip_loop();
// Session 15's A/B bits: a query launch instead of the tensor-core blocks' own query rotation (256),
// the fused merge at every batch (512).
constexpr int kDecodeQueryLaunch = 256;
constexpr int kDecodeFusedAlways = 512;
// Session 21's A/B bit: the single-block path off (a query launch, partials and the last block's merge
// even where every (sequence, query pass) pair has one block).
constexpr int kDecodeNoSingleBlock = 1024;
/// RQ_DECODE_VARIANT (0 when unset), read once per process.
int decode_variant();

// Flags of the tensor-core split kernel (detail::launch_split_tc).
constexpr int kTcFusedMerge = 1;  // the last blocks merge (else a merge launch)
constexpr int kTcOwnQueries = 2;  // each block rotates its queries itself (no query launch; tc_own_queries)
constexpr int kTcSingleBlock = 4;  // one block a pair: it rotates its queries and writes its output rows (tc_single_block)
constexpr int kTcSkipLoop = 32;   // kDecodeSkipLoop

/// DecodePlan::block_warps as launched: 24, else 12 (0: 12; launch_decode_attention rejects others).
__host__ __device__ __forceinline__ int plan_block_warps(const DecodePlan& p) { return p.block_warps == 24 ? 24 : 12; }
/// The tensor-core kernel's blocks (partials) for `splits` splits of a sequence.
__host__ __device__ __forceinline__ int plan_split_blocks(const DecodePlan& p, int splits) {
  return (splits + plan_block_warps(p) - 1) / plan_block_warps(p);
}

/// %globaltimer (ns), for the trace stamps below.
__device__ __forceinline__ unsigned long long global_timer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)::"memory");
  return t;
}

/// DecodeParams::trace: thread 0 of the block records %globaltimer at `point` (min and max words).
__device__ __forceinline__ void trace_point(uint64_t* trace, int point) {
  if (trace == nullptr || threadIdx.x != 0) return;
  const unsigned long long t = global_timer_ns();
  atomicMin(reinterpret_cast<unsigned long long*>(trace) + 2 * point, t);
  atomicMax(reinterpret_cast<unsigned long long*>(trace) + 2 * point + 1, t);
}

/// The split block's own stamp (DecodeParams::trace's per-block words): word 1 + k (k = 0: start, also
/// writing the SM id in word 0; 1: first K; 2: loop done).
__device__ __forceinline__ void trace_block(uint64_t* trace, int k) {
  if (trace == nullptr || threadIdx.x != 0) return;
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  if (block >= static_cast<unsigned>(kTraceMaxBlocks)) return;
  uint64_t* const w = trace + 2 * kDecodeTracePoints + kTraceBlockWords * block;
  const unsigned long long t = global_timer_ns();
  if (k == 0) {
    unsigned sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    w[0] = sm;
  }
  w[1 + k] = t;
}

/// log2(e): scores are kept in log2 units (exp2 instead of exp).
constexpr float kLog2e = 1.4426950408889634f;

/// The tensor-core kernel's query B-fragment halves of x = (q_rot scale log2 e) / a_K: fp16 hi and lo
/// parts, written at h[0] and h[n] (rows [hi | lo][n]). The query launch and the split blocks' own
/// rotation both write them, so the fragments do not depend on the path.
__device__ __forceinline__ void store_query_halves(float x, __half* h, int n) {
  const __half hi = __float2half_rn(x);
  h[0] = hi;
  h[n] = __float2half_rn(x - __half2float(hi));
}

/// Largest rotation_stride (floats per head) copied into shared memory: iso's 32 4x4 matrices.
constexpr int kMaxRotationFloats = 512;

/// A codec whose rotation parameters for one head may live in shared memory.
struct StagedRotation {
  DeviceCodec codec;
  int head;
};

/// Loads head `head`'s rotation parameters into registers (all threads of the block, blockDim >= 128;
/// parameters that do not fit: nothing), so that their cold reads can be issued
/// next to other loads; store_rotation() then writes them to `s` (kMaxRotationFloats floats of shared
/// memory) and returns the codec that rotate_shared should use (rotation = s, head 0; the caller
/// synchronizes the block first). Turbo's Hadamard path otherwise reads its two sign vectors in two
/// dependent cold steps, rotor its matrices in one, after everything else.
struct RotationRegs {
  float v[kMaxRotationFloats / 128];
  bool staged;
};

__device__ __forceinline__ RotationRegs load_rotation(const DeviceCodec& c, int head) {
  RotationRegs r;
  r.staged = c.rotation_stride <= kMaxRotationFloats;
  const float* src = c.rotation + static_cast<size_t>(head) * c.rotation_stride;
#pragma unroll
  for (int k = 0; k < kMaxRotationFloats / 128; ++k) {
    const int i = threadIdx.x + k * static_cast<int>(blockDim.x);
    r.v[k] = r.staged && i < c.rotation_stride ? __ldg(src + i) : 0.0f;
  }
  return r;
}

__device__ __forceinline__ StagedRotation store_rotation(const DeviceCodec& c, int head, const RotationRegs& r, float* s) {
  if (!r.staged) return {c, head};
#pragma unroll
  for (int k = 0; k < kMaxRotationFloats / 128; ++k) {
    const int i = threadIdx.x + k * static_cast<int>(blockDim.x);
    if (i < c.rotation_stride) s[i] = r.v[k];
  }
  DeviceCodec staged = c;
  staged.rotation = s;
  return {staged, 0};
}

__device__ __forceinline__ StagedRotation stage_rotation(const DeviceCodec& c, int head, float* s) {
  return store_rotation(c, head, load_rotation(c, head), s);
}

/// Calls set() (a cudaFuncSetAttribute) once per device for the caller's `done` mask (one static
/// mask per kernel).
template <typename F>
cudaError_t attribute_once(std::atomic<uint64_t>& done, F&& set) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev >= 64) return set();
  const uint64_t bit = uint64_t(1) << dev;
  if (done.load(std::memory_order_acquire) & bit) return cudaSuccess;
  const cudaError_t st = set();  // (two threads may both set it: the same value)
  if (st == cudaSuccess) done.fetch_or(bit, std::memory_order_acq_rel);
  return st;
}

}  // namespace rq::cuda::detail
