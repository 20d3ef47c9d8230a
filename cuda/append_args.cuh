// The append kernels' parameter block, private to cuda/: what they read of AppendParams, in 160
// bytes. AppendParams itself is 336 bytes (two AppendJobs with whole DeviceCodecs, geometries and
// planes). On the H200 (CUDA 13.0, session 26) a launch whose parameters are over ~190 bytes is
// 0.35-0.8 us slower when it falls on one residue of the GPU's launch count mod 4 (in the
// benchmark's flush-and-launch loop: every second launch of every second call); with up to 188
// bytes it never was (docs/gpu.md, "Session 26"; docs/decisions.md). So the launchers pass this
// block, built on the host by append_args().
#pragma once

#include <cstdint>

#include "rq/cuda/append.hpp"

namespace rq::cuda::detail {

/// Whether the fast kernels quantize BITS-bit codes with DeviceCodec::code_polynomial (2-3 bits) or
/// with the thresholds (4 bits): FastQuantizerFor, the launch's check and append_args() ask this.
constexpr bool fast_quantizer_uses_polynomial(int bits) { return bits <= 3; }

/// One role's input, output planes and codec tables (64 bytes).
struct AppendJobArgs {
  const void* x = nullptr;             // [n_tokens][token_stride] elements; head h at x + t*token_stride + h*dim
  uint8_t* codes = nullptr;            // the codes plane (rows of row_main_bytes; no tail: head_dim 128)
  uint16_t* norms = nullptr;           // the norms plane
  const float* rotation = nullptr;     // [n_kv_heads][rotation_stride]
  const float* centroids = nullptr;    // [2^bits]
  const float* quantizer = nullptr;    // the fast kernels at 2-3 bits: DeviceCodec::code_polynomial;
                                       //   the others: DeviceCodec::thresholds
  int32_t token_stride = 0;            // elements (the launch checks that it fits)
  int32_t rotation_stride = 0;         // floats per head
  int32_t page_size = 0;               // tokens per page
  uint8_t type_id = 0;                 // InputType
  uint8_t norm_correction = 0;         // store nu / ||C[idx]||
  uint8_t unused[2] = {};

  __host__ __device__ InputType type() const { return static_cast<InputType>(type_id); }
};

/// The whole launch (160 bytes).
struct AppendArgs {
  const int64_t* slot_mapping = nullptr;  // [n_tokens]: page * page_size + offset; < 0 skips the token
  int32_t* error_flag = nullptr;          // optional [1]
  int32_t n_tokens = 0;
  int32_t n_kv_heads = 0;
  int32_t n_jobs = 0;
  int32_t per_block = 0;  // tile kernels: tiles per block; several-lane kernels: rounds per block
  AppendJobArgs jobs[2];
};

static_assert(sizeof(AppendJobArgs) == 64 && sizeof(AppendArgs) == 160, "the launch's parameters stay at 160 bytes");

/// The kernels' block for checked params (launch_quantize_append's checks): `fast` picks the
/// quantizer table of the fast kernels (the polynomial at 2-3 bits); per_block as given.
inline AppendArgs append_args(const AppendParams& p, bool fast, int per_block) {
  AppendArgs a;
  a.slot_mapping = p.slot_mapping;
  a.error_flag = p.error_flag;
  a.n_tokens = p.n_tokens;
  a.n_kv_heads = p.n_kv_heads;
  a.n_jobs = p.n_jobs;
  a.per_block = per_block;
  for (int j = 0; j < p.n_jobs; ++j) {
    const AppendJob& job = p.jobs[j];
    AppendJobArgs& o = a.jobs[j];
    o.x = job.x;
    o.codes = job.planes.codes;
    o.norms = job.planes.norms;
    o.rotation = job.codec.rotation;
    o.centroids = job.codec.centroids;
    o.quantizer = fast && fast_quantizer_uses_polynomial(job.codec.bits) ? job.codec.code_polynomial : job.codec.thresholds;
    o.token_stride = static_cast<int32_t>(job.token_stride);
    o.rotation_stride = job.codec.rotation_stride;
    o.page_size = job.geometry.page_size;
    o.type_id = static_cast<uint8_t>(job.type);
    o.norm_correction = job.codec.norm_correction ? 1 : 0;
  }
  return a;
}

}  // namespace rq::cuda::detail
