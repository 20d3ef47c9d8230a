// Fused quantize-and-append (include/rq/cuda/append.hpp): argument checks and the choice of kernel:
// the fast one (cuda/append_fast_kernel.cuh, default) or the bit-exact one (cuda/append_kernel.cuh,
// AppendParams::exact = 1) with one or four lanes per vector.
#include "rq/cuda/append.hpp"

namespace rq::cuda {
namespace detail {
template <int LANES>
cudaError_t launch_append_lanes(const AppendParams& p, cudaStream_t stream);
extern template cudaError_t launch_append_lanes<1>(const AppendParams& p, cudaStream_t stream);
extern template cudaError_t launch_append_lanes<4>(const AppendParams& p, cudaStream_t stream);
cudaError_t launch_append_fast(const AppendParams& p, cudaStream_t stream);
}  // namespace detail

namespace {

constexpr int kMaxRotationFloats = 512;        // d = 128: iso 32 x 16, rotor 43 x 9, planar 64 x 4, turbo 2 x 128
constexpr long long kQuadMaxVectors = 32768;   // lanes_per_vector = 0: four lanes up to this many vectors

}  // namespace

cudaError_t launch_quantize_append(const AppendParams& p, cudaStream_t stream) {
  if (p.n_jobs < 1 || p.n_jobs > 2 || p.n_kv_heads < 1 || p.n_tokens < 0 || !p.slot_mapping ||
      (p.lanes_per_vector != 0 && p.lanes_per_vector != 1 && p.lanes_per_vector != 4)) {
    return cudaErrorInvalidValue;
  }
  if (p.n_tokens == 0) return cudaSuccess;
  const DeviceCodec& c0 = p.jobs[0].codec;
  for (int j = 0; j < p.n_jobs; ++j) {
    const AppendJob& job = p.jobs[j];
    const DeviceCodec& c = job.codec;
    if (c.dim != c0.dim || c.bits != c0.bits || c.family != c0.family || c.rotated_dim != c0.rotated_dim) {
      return cudaErrorInvalidValue;
    }
    const int64_t esize = job.type == InputType::F32 ? 4 : 2;
    if (reinterpret_cast<uintptr_t>(job.x) % 16 != 0 || (job.token_stride * esize) % 16 != 0) {
      return cudaErrorInvalidValue;  // rows are staged as 16-byte chunks
    }
    if (!job.x || !c.rotation || !c.centroids || !c.thresholds || !job.planes.norms ||
        job.geometry.n_kv_heads != p.n_kv_heads || c.rotation_stride > kMaxRotationFloats ||
        job.geometry.row_main_bytes + job.geometry.row_tail_bytes != c.payload_bytes ||
        (job.geometry.row_main_bytes && !job.planes.codes) || (job.geometry.row_tail_bytes && !job.planes.tail) ||
        job.token_stride < static_cast<int64_t>(p.n_kv_heads) * c.dim) {
      return cudaErrorInvalidValue;
    }
  }
  if (c0.dim != 128) return cudaErrorInvalidValue;  // the kernels are instantiated for head_dim 128
  const long long vectors = static_cast<long long>(p.n_tokens) * p.n_kv_heads * p.n_jobs;
  const int lanes = p.lanes_per_vector ? p.lanes_per_vector : (vectors <= kQuadMaxVectors ? 4 : 1);
  // exact = 0: one lane is the fast kernel; four lanes is the bit-exact four-lane kernel, which is
  // the faster one for small steps (H200: 16K vectors 10.1 us vs 11.6-12.1 us for the fast kernel's
  // one thread per vector, whose serial chain is too long for ~1 warp per scheduler).
  if (!p.exact && lanes == 1) return detail::launch_append_fast(p, stream);
  return lanes == 4 ? detail::launch_append_lanes<4>(p, stream) : detail::launch_append_lanes<1>(p, stream);
}

}  // namespace rq::cuda
