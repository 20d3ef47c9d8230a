// Programmatic dependent launches (sm_90) for the decode's three kernels (private to cuda/): a
// kernel launched this way may start while the previous kernel in the stream still runs; it calls
// wait_for_prerequisite() before it reads that kernel's output. The previous kernel calls
// allow_dependents() once its blocks have started, so the next grid can be scheduled early.
#pragma once

#include <cuda_runtime.h>

namespace rq::cuda::detail {

__device__ __forceinline__ void wait_for_prerequisite() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void allow_dependents() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

/// kernel<<<grid, block, smem, stream>>>(args...) as a programmatic dependent launch.
template <typename... Params, typename... Args>
cudaError_t launch_dependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                             Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, static_cast<Args&&>(args)...);
}

}  // namespace rq::cuda::detail
