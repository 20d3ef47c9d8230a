// Decode attention for one KV head straight from compressed pages: the query heads that share the
// KV head (GQA group) are scored together over one pass of the codes, softmax is computed exactly
// (max-subtracted), and values are accumulated in V's rotated domain and un-rotated once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "rq/codec/codec.hpp"

namespace rq {

/// A run of consecutive tokens of one (layer, kv head, K or V) stored as codes and side planes:
/// codes: n_tokens x code_bytes, side: n_tokens x side_bytes (a page, or a part of one).
struct PageSpan {
  const uint8_t* codes = nullptr;
  const uint8_t* side = nullptr;
  size_t n_tokens = 0;
  /// Bytes of readable memory right after the last code row (e.g. the rest of a cache page). The
  /// fast kernels' SIMD loads may read up to 16 bytes past a row; rows whose loads would run past
  /// codes + n_tokens * code_bytes + readable_after are first copied into scratch. 0: unknown.
  size_t readable_after = 0;
};

/// One decode-attention call for one KV head.
struct AttentionProblem {
  const Codec* k_codec = nullptr;     // format and rotation of this head's keys
  const Codec* v_codec = nullptr;     // format and rotation of this head's values
  size_t gqa_group = 1;               // query heads sharing this KV head
  const float* queries = nullptr;     // gqa_group x head_dim
  float scale = 1.0f;                 // softmax scale, usually 1/sqrt(head_dim)
  std::vector<PageSpan> k_pages;      // keys in token order
  std::vector<PageSpan> v_pages;      // values, same total token count (page sizes may differ)
  float* out = nullptr;               // gqa_group x head_dim
};

/// Validates a problem (null pointers, gqa_group, K/V head_dim, null page planes, K/V token counts,
/// empty cache) and returns its token count. Throws rq::InvalidArgument. Shared by every kernel.
size_t check_attention_problem(const AttentionProblem& problem);

/// scores[0:n] <- softmax(scale * scores): max-subtracted, sum in double. The exact softmax of the
/// reference kernels (fast kernels use an online variant and are tested against it).
void softmax_scaled_inplace(float* scores, size_t n, float scale);

/// The scalar reference: Codec::score, exact softmax, Codec::accumulate. Throws
/// rq::InvalidArgument on inconsistent problems (null pointers, mismatched token counts, dims).
void attend_reference(const AttentionProblem& problem);

}  // namespace rq
