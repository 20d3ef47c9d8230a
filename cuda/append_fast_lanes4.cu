// append_fast_lanes_kernel.cuh with 4 lanes per vector.
#include "append_fast_lanes_kernel.cuh"

namespace rq::cuda::detail {
cudaError_t launch_append_fast_lanes4(const AppendParams& p, cudaStream_t stream) {
  return dispatch_append_format<FastLanesLaunch<4>::template At>(p, stream);
}
}  // namespace rq::cuda::detail
