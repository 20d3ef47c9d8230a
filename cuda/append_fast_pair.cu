// append_fast_pair_kernel.cuh: the fast two-lane append kernel (turbo's Hadamard formats).
#include "append_fast_pair_kernel.cuh"

namespace rq::cuda::detail {
cudaError_t launch_append_fast_pair(const AppendParams& p, cudaStream_t stream) {
  return dispatch_append_format<FastPairLaunch>(p, stream);
}
}  // namespace rq::cuda::detail
