// Bulk (TMA) copies into shared memory completed on mbarriers, and the L2 policy of streamed reads
// (sm_90; private to cuda/): the decode's staged cache chunks (decode_tc.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace rq::cuda::detail {

/// L2 policy for data a kernel reads once per call (the decode's cache rows): evict_first, so that
/// these lines are the first the L2 gives up when later reads need room, rather than lines a previous
/// kernel left dirty (which must be written back first). Measured (docs/gpu.md, "Session 19"): the
/// decode at (1, 128K) 53.2-54.1 -> 50.5-51.7 us, (16, 64K) -1.5 us. Not used by the append: the
/// hinted 16-byte cp.async stops with cudaErrorIllegalInstruction on the H200 (CUDA 13.0), and the
/// append's rows staged by hinted bulk copies were slower and no better for the hint (branch
/// append-bulk-rows-rejected). RQ_STREAM_EVICT_FIRST=0 builds without the hint (A/B).
#ifndef RQ_STREAM_EVICT_FIRST
#define RQ_STREAM_EVICT_FIRST 1
#endif
__device__ __forceinline__ uint64_t stream_l2_policy() {
  uint64_t policy = 0;
#if RQ_STREAM_EVICT_FIRST
  asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
#endif
  return policy;
}

__device__ __forceinline__ void mbar_init(uint32_t bar) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar) : "memory");
}
// Orders this thread's generic-proxy shared accesses (and barrier inits) before later bulk copies.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
// One bulk copy of `bytes` (a multiple of 16, 16-byte aligned ends), with the L2 policy `policy`.
__device__ __forceinline__ void bulk_copy(uint32_t dst, const void* src, uint32_t bytes, uint32_t bar, uint64_t policy) {
#if RQ_STREAM_EVICT_FIRST
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar), "l"(policy)
               : "memory");
#else
  (void)policy;
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
#endif
}
// Waits until the phase of parity `phase` of barrier bar has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t phase) {
  asm volatile(
      "{\n.reg .pred P1;\nLAB_WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
      "@P1 bra DONE;\nbra LAB_WAIT;\nDONE:\n}\n" ::"r"(bar),
      "r"(phase)
      : "memory");
}

}  // namespace rq::cuda::detail
