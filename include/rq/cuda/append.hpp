// Fused quantize-and-append: normalize, rotate, quantize, pack and store one step's K and V vectors
// of every KV head and every sequence into the paged cache (paged_layout.hpp), in one launch.
//
// Two kinds of kernel (docs/decisions.md, "GPU append: fast by default, bit-exact on request"):
//  - fast (exact = 0, the default): fp32 in any operation order (FMA, FWHT in registers and across
//    lanes, tree sums; the rotation is applied to x and the thresholds are scaled by the norm instead
//    of dividing x by it), with 8 or 16 lanes per vector (small steps) or one (large steps). Codes
//    equal rq::Codec::encode's except where the reference's rotated, normalized coordinate lies
//    within float rounding (checked: 1e-5) of a decision threshold; stored norms are within one fp16
//    ulp of the reference's formula for the same codes.
//  - exact (exact = 1): the reference's operation order (no FMA contraction, fp64 norms and
//    ||C||^2), with one or four lanes per vector: codes and stored norms bit-identical to
//    rq::Codec::encode.
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
  int64_t token_stride = 0;  // elements between consecutive tokens (>= n_kv_heads * dim, < 2^31)
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
  int32_t lanes_per_vector = 0;          // lanes per vector: fast kernel 1, 2 (turbo's Hadamard formats,
                                         //   rotor at 2-3 bits), 4, 8 or 16; exact kernel 1 or
                                         //   4 (more lanes: a shorter serial chain, faster for small
                                         //   steps; fewer: fewer instructions, faster for large ones);
                                         //   0: default_append_kernel() (which may pick the bit-exact
                                         //   kernel where it is the faster one)
  int32_t exact = 0;                     // 1: the bit-exact kernels only; 0 (default): the fast kernels
  int32_t rounds_per_block = 0;          // fast kernel with 4-16 lanes: a block encodes this many rounds
                                         //   of 256 / lanes vectors (tables built once per block); 0: 1.
                                         //   Fast kernel with one or two lanes: tiles of 64 tokens per block (the
                                         //   next tile is copied in while one is encoded); 0: the fewest
                                         //   that make the launch one wave of resident blocks
};

/// A kernel: bit-exact or fast, lanes per vector, rounds per block (fast kernel with several lanes;
/// with one lane: tiles per block, 0 for one wave of resident blocks; see AppendParams).
struct AppendKernel {
  bool exact = false;
  int lanes = 1;
  int rounds = 1;
};

/// The kernel launch_quantize_append runs for `vectors` (n_tokens x n_kv_heads x n_jobs) vectors of a
/// format of rotation `family` and `bits` bits per launch when lanes_per_vector = 0: the fastest measured on the H200
/// per size among the checked kernels (docs/gpu.md, "Append, fifth pass"). With exact = 0 the
/// bit-exact four-lane kernel is chosen for planar and iso at 4K < vectors <= 32K (for turbo it was
/// faster than every fast variant of its time: 1, 4, 8, 16 lanes, 1-4 rounds); rotor's 3 x 3 blocks take the
/// fast four-lane kernel up to 16K (since its set-up reads are one round trip, 0.2-0.3 us faster at
/// 16K than one lane, 0.5 us in a graph; docs/gpu.md, "Session 15") and the fast one-lane kernel
/// to 32K (0.5-0.6 us faster at 16K than the four-lane bit-exact one in the full runs of sessions
/// 10-12, docs/gpu.md, "Session 12"). Several lanes with rounds per block were slower
/// than one lane from 64K on once the fast kernels had the polynomial quantizer (docs/gpu.md,
/// "Append, sixth pass"). Above 32K the one-lane kernel runs one wave of resident blocks, each
/// encoding several tiles with the next one's copy in flight (docs/gpu.md, "Append, seventh pass");
/// turbo's Hadamard formats take the two-lane kernel (same staging, half a row per lane, 16 warps
/// per SM against 12) above 4K vectors: at 16K as fast as the bit-exact four-lane kernel for one
/// launch and 10 % faster in a graph, 3-7 % faster than one lane at 64K-512K (docs/gpu.md, "Session
/// 16"), and since its rows are staged per warp (session 17) 1-2 % faster at 1M too. Rotor at 2-3
/// bits takes its two-lane kernel from 4K to 16K vectors (session 17: 16K 8.4-8.5 us against 9.2 for
/// one lane and 9.8-10.0 for four; one lane stays ahead from 32K on).
constexpr AppendKernel default_append_kernel(long long vectors, bool exact, RotationFamily family, int bits) {
  if (exact) return {true, vectors <= 32768 ? 4 : 1, 1};
  if (vectors <= 4096) return {false, 16, 1};
  if (family == RotationFamily::Hadamard) return {false, 2, 0};
  if (vectors <= 16384 && family == RotationFamily::Block3) return {false, bits <= 3 ? 2 : 4, bits <= 3 ? 0 : 1};
  if (vectors <= 32768 && family != RotationFamily::Block3) return {true, 4, 1};
  return {false, 1, 0};
}

/// Launches the append for all jobs. The jobs must share dim, bits and rotation family (one kernel);
/// otherwise call once per job (n_jobs = 1). Returns the launch status; no synchronization.
/// Vectors the CPU codec would refuse (NaN/Inf, norm over 65504) are stored as zero vectors and
/// raise *error_flag.
cudaError_t launch_quantize_append(const AppendParams& params, cudaStream_t stream);

}  // namespace rq::cuda
