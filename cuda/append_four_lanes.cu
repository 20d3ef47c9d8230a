// append_kernel.cuh with four lanes per vector (small steps).
#include "append_kernel.cuh"

namespace rq::cuda::detail {
template cudaError_t launch_append_lanes<4>(const AppendParams& p, cudaStream_t stream);
}  // namespace rq::cuda::detail
