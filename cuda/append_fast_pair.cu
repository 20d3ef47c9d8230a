// The fast two-lane append kernels: turbo's Hadamard formats (append_fast_pair_kernel.cuh) and rotor's
// 3 x 3 blocks at 2 and 3 bits (append_fast_pair_rotor_kernel.cuh); other formats are refused.
#include "append_fast_pair_rotor_kernel.cuh"

namespace rq::cuda::detail {
namespace {

template <int BITS, int FAM>
struct FastPairLaunch {
  static cudaError_t run(const AppendParams& p, cudaStream_t stream) {
    if constexpr (FAM == 0) {
      return launch_append_fast_pair_kernel<kHeadDim, BITS>(p, stream);
    } else if constexpr (FAM == 3 && BITS <= 3) {
      return launch_append_fast_pair_rotor_kernel<kHeadDim, BITS>(p, stream);
    } else {
      return cudaErrorInvalidValue;  // two lanes: turbo, and rotor at 2-3 bits
    }
  }
};

}  // namespace

cudaError_t launch_append_fast_pair(const AppendParams& p, cudaStream_t stream) {
  return dispatch_append_format<FastPairLaunch>(p, stream);
}
}  // namespace rq::cuda::detail
