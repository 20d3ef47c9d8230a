// append_kernel.cuh with one thread per vector (large steps).
#include "append_kernel.cuh"

namespace rq::cuda::detail {
template cudaError_t launch_append_lanes<1>(const AppendParams& p, cudaStream_t stream);
}  // namespace rq::cuda::detail
