// append_fast_lanes_kernel.cuh with 16 lanes per vector.
#include "append_fast_lanes_kernel.cuh"

namespace rq::cuda::detail {
cudaError_t launch_append_fast_lanes16(const AppendParams& p, cudaStream_t stream) {
  return dispatch_append_format<FastLanesLaunch<16>::template At>(p, stream);
}
}  // namespace rq::cuda::detail
