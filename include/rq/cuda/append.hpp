// Fused quantize-and-append: normalize, rotate, quantize, pack and store one step's K and V vectors
// of every KV head and every sequence into the paged cache (paged_layout.hpp), in one launch.
//
// Two kernels (docs/decisions.md, "GPU append: fast by default, bit-exact on request"):
//  - fast (exact = 0 with one lane per vector, the default above 32K vectors per launch): fp32 in
//    any operation order (FMA, in-register FWHT, tree sums; the rotation is applied to x and the
//    thresholds are scaled by the norm instead of dividing x by it). Codes equal rq::Codec::encode's
//    except where the reference's rotated, normalized coordinate lies within float rounding
//    (checked: 1e-5) of a decision threshold; stored norms are within one fp16 ulp of the
//    reference's formula for the same codes.
//  - exact (exact = 1, or four lanes per vector, the default up to 32K vectors): the reference's
//    operation order (no FMA contraction, fp64 norms and ||C||^2): codes and stored norms
//    bit-identical to rq::Codec::encode.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "rq/cuda/device_codec.hpp"
#include "rq/cuda/paged_layout.hpp"

namespace rq::cuda {

enum class InputType : int32_t { F16 = 0, BF16 = 1, F32 = 2 };

/// One role (K or V): its input rows, format and cache.
struct AppendJob {
  const void* x = nullptr;   // [n_tokens][token_stride] elements; head h at x + t*token_stride + h*dim
  int64_t token_stride = 0;  // elements between consecutive tokens (>= n_kv_heads * dim)
  InputType type = InputType::F16;
  DeviceCodec codec;
  PagedGeometry geometry;
  PagedPlanes planes;
};

struct AppendParams {
  int32_t n_tokens = 0;                  // new tokens over all sequences
  int32_t n_kv_heads = 0;
  const int64_t* slot_mapping = nullptr; // [n_tokens]: page * page_size + offset; < 0 skips the token
  AppendJob jobs[2];                     // K then V (or one role)
  int32_t n_jobs = 2;
  int32_t* error_flag = nullptr;         // optional [1]: set to 1 on NaN/Inf input or fp16 overflow
  int32_t lanes_per_vector = 0;          // 4: four lanes per vector (a quarter of the serial chain:
                                         //    faster for small steps); 1: one thread per vector (fewer
                                         //    instructions: faster for large ones); 0: choose (four
                                         //    lanes up to 32K vectors per launch)
  int32_t exact = 0;                     // 1: the bit-exact kernels only. 0 (default): one lane runs
                                         //    the fast kernel; four lanes run the bit-exact four-lane
                                         //    kernel, which is faster than the fast kernel for small
                                         //    steps (so the default is bit-exact up to 32K vectors)
};

/// Launches the append for all jobs. The jobs must share dim, bits and rotation family (one kernel);
/// otherwise call once per job (n_jobs = 1). Returns the launch status; no synchronization.
/// Vectors the CPU codec would refuse (NaN/Inf, norm over 65504) are stored as zero vectors and
/// raise *error_flag.
cudaError_t launch_quantize_append(const AppendParams& params, cudaStream_t stream);

}  // namespace rq::cuda
