// Fast CPU decode attention over the compressed cache: the same contract (and the same result, to
// float rounding) as rq::attend_reference, with SIMD kernels (Highway, runtime dispatch) that score
// keys straight from their codes and accumulate values in the rotated domain, and threads over
// heads and token splits (rq::ThreadPool).
//
// Kernels per format (docs/formats.md row layout, read in place):
//   - Lloyd-Max formats with 1..4-bit codes (turbo*, turbodense*, rotor*, planar*, iso*, none*,
//     *_nocorr) and q4/q4h: 8 codes are b bytes; they are unpacked with one variable shift and
//     looked up in a centroid table held in a register (vpermps on AVX2), then FMA'd with the
//     rotated query (score) or with the softmax weight (accumulate);
//   - q8: int8 -> int32 -> float; f16: F16C conversion; f32: plain loads.
//   All query heads of a GQA group share one pass over the codes (decoded once, up to 4 queries
//   per pass). Softmax is online (max-subtracted, per chunk of 128 tokens) and split-KV partials
//   are merged exactly. QJL formats fall back to attend_reference.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rq/attention/attention.hpp"

namespace rq {

/// Arithmetic of the fast kernels when K and V are both Lloyd-Max formats with 2..4-bit codes
/// (turbo*, rotor*, planar*, iso*, ...), int4 (q4, q4h) or int8 (q8), in any combination; other formats
/// (f16, f32, QJL) always take the float path.
enum class FastArithmetic {
  /// Default. For heads with >= 256 cached tokens (shorter ones take the float kernels, whose
  /// set-up is cheaper): integer tables, queries to 8 bits with a 16-bit scale per coordinate
  /// pair, the codebook to 8 bits, softmax weights to 15 bits (one scale per 128-token chunk: its
  /// largest V norm; q4: one weight set per 32-coordinate block, scaled by that block's largest
  /// scale; q8: the code bytes are the table values); every sum is exact in int32 and all SIMD targets
  /// give the same integers (AVX2: vpshufb table lookups, vpmaddubsw + vpmaddwd; q4 scores add the
  /// blocks' sums times their scales in float). Deviation from attend_reference: docs/decisions.md.
  Integer,
  /// The integer tables for heads of any length (tests, benchmarks).
  IntegerAlways,
  /// fp32 FMAs on the decoded centroids: attend_reference's result to float rounding.
  Float,
};

/// One KV head's decode attention; same contract and checks as attend_reference (throws
/// rq::InvalidArgument on inconsistent problems). Long contexts are split over the OpenMP threads.
void attend_fast(const AttentionProblem& problem);
/// attend_fast with FastArithmetic::Float.
void attend_fast_float(const AttentionProblem& problem);

/// Many independent problems at once (e.g. all KV heads of one layer for one token): the work is
/// split over heads and token ranges and spread over n_threads threads of rq::ThreadPool::global()
/// (0: all of them; more than the pool has are not started: see rq::ThreadPool::set_global_threads).
/// problems: count entries; their outputs must not overlap.
void attend_fast_batch(const AttentionProblem* problems, size_t count, int n_threads = 0,
                       FastArithmetic arithmetic = FastArithmetic::Integer);

/// Whether attend_fast runs SIMD kernels for this (K, V) format pair (false: reference fallback).
bool attend_fast_supported(const Codec& k_codec, const Codec& v_codec);

/// One vector to encode: x (dim floats) -> code (code_bytes) and side (side_bytes) of `codec`.
struct AppendItem {
  const Codec* codec = nullptr;
  const float* x = nullptr;
  uint8_t* code = nullptr;
  uint8_t* side = nullptr;
};

/// Encode one token's K and V vectors for all heads (n_items entries, any codecs): the same bytes
/// as Codec::encode. All inputs are validated first: on rq::InvalidInput nothing is written.
void append_fast(const AppendItem* items, size_t n_items);

/// SIMD targets compiled into the kernels that this CPU supports, best first ("AVX2", "SSE4", ...).
std::vector<std::string> attention_simd_targets();
/// Restrict the kernels to one target by name (tests); "" restores the best. Not thread-safe.
/// Throws rq::InvalidArgument for a target that is not in attention_simd_targets().
void force_attention_simd_target(const std::string& name);
/// The target the kernels dispatch to now.
std::string attention_simd_target();

}  // namespace rq
