// append_fast_kernel.cuh: the fast (default) append kernel for every supported format.
#include "append_fast_kernel.cuh"

namespace rq::cuda::detail {
cudaError_t launch_append_fast(const AppendParams& p, cudaStream_t stream) { return launch_append_fast_bits(p, stream); }
}  // namespace rq::cuda::detail
