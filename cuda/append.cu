// Fused quantize-and-append (include/rq/cuda/append.hpp): argument checks and the choice of kernel:
// the fast ones (exact = 0: cuda/append_fast_kernel.cuh with one lane per vector,
// cuda/append_fast_lanes_kernel.cuh with 4, 8 or 16) or the bit-exact one (exact = 1:
// cuda/append_kernel.cuh with one or four lanes per vector).
#include "rq/cuda/append.hpp"

#include <cstdint>

#include "append_args.cuh"

namespace rq::cuda {
namespace detail {
template <int LANES>
cudaError_t launch_append_lanes(const AppendParams& p, cudaStream_t stream);
extern template cudaError_t launch_append_lanes<1>(const AppendParams& p, cudaStream_t stream);
extern template cudaError_t launch_append_lanes<4>(const AppendParams& p, cudaStream_t stream);
cudaError_t launch_append_fast(const AppendParams& p, cudaStream_t stream);
cudaError_t launch_append_fast_pair(const AppendParams& p, cudaStream_t stream);
cudaError_t launch_append_fast_lanes4(const AppendParams& p, cudaStream_t stream);
cudaError_t launch_append_fast_lanes8(const AppendParams& p, cudaStream_t stream);
cudaError_t launch_append_fast_lanes16(const AppendParams& p, cudaStream_t stream);
}  // namespace detail

namespace {

constexpr int kMaxRotationFloats = 512;  // d = 128: iso 32 x 16, rotor 43 x 9, planar 64 x 4, turbo 2 x 128

}  // namespace

cudaError_t launch_quantize_append(const AppendParams& p, cudaStream_t stream) {
  const int lv = p.lanes_per_vector;
  const bool lanes_ok = lv == 0 || lv == 1 || lv == 4 || (!p.exact && (lv == 2 || lv == 8 || lv == 16));
  if (p.n_jobs < 1 || p.n_jobs > 2 || p.n_kv_heads < 1 || p.n_tokens < 0 || !p.slot_mapping || !lanes_ok ||
      p.rounds_per_block < 0) {
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
      return cudaErrorInvalidValue;  // rows are read as 16-byte chunks
    }
    if (!job.x || !c.rotation || !c.centroids || !c.thresholds || !job.planes.norms ||
        job.geometry.n_kv_heads != p.n_kv_heads || job.geometry.page_size < 1 || job.geometry.num_pages < 0 ||
        job.geometry.rows() > 0xffffffffu || c.rotation_stride > kMaxRotationFloats ||
        (c.family == RotationFamily::Hadamard && c.rotation_stride % 4 != 0) ||  // 16-byte sign loads
        job.geometry.row_main_bytes != c.payload_bytes || job.geometry.row_tail_bytes != 0 || !job.planes.codes ||
        job.token_stride < static_cast<int64_t>(p.n_kv_heads) * c.dim || job.token_stride > INT32_MAX ||  // AppendJobArgs
        (!p.exact && detail::fast_quantizer_uses_polynomial(c.bits) && !c.code_polynomial)) {  // the fast kernels' quantizer
      return cudaErrorInvalidValue;
    }
  }
  // The kernels are instantiated for head_dim 128, where every GPU format stores 128 coordinates in
  // whole 16-byte units: a codes row is its main part (row_tail_bytes = 0, checked above).
  if (c0.dim != 128 || c0.rotated_dim != 128) return cudaErrorInvalidValue;
  const long long vectors = static_cast<long long>(p.n_tokens) * p.n_kv_heads * p.n_jobs;
  AppendKernel k{p.exact != 0, lv, p.rounds_per_block};
  if (!lv) k = default_append_kernel(vectors, p.exact != 0, c0.family, c0.bits);
  if (!k.exact) {
    AppendParams q = p;
    q.rounds_per_block = k.rounds;  // one lane: tiles per block (0: one wave); more lanes: rounds (0: 1)
    if (k.lanes == 1) return detail::launch_append_fast(q, stream);
    if (k.lanes == 2) return detail::launch_append_fast_pair(q, stream);  // turbo; rotor at 2-3 bits
    if (k.lanes == 16) return detail::launch_append_fast_lanes16(q, stream);
    if (k.lanes == 8) return detail::launch_append_fast_lanes8(q, stream);
    return detail::launch_append_fast_lanes4(q, stream);
  }
  return k.lanes == 4 ? detail::launch_append_lanes<4>(p, stream) : detail::launch_append_lanes<1>(p, stream);
}

}  // namespace rq::cuda
