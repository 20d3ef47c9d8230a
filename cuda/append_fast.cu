// append_fast_kernel.cuh: the fast one-lane append kernel for every supported format.
#include "append_fast_kernel.cuh"

namespace rq::cuda::detail {
cudaError_t launch_append_fast(const AppendParams& p, cudaStream_t stream) {
  return dispatch_append_format<FastLaunch>(p, stream);
}
}  // namespace rq::cuda::detail
