// Decode attention over a PagedKvCache: the one place where the model runner meets the attention
// kernel. By default every KV head is one rq::AttentionProblem handed to rq::attend_reference; a
// faster kernel with the same contract can be swapped in with set_attention_kernel().
#pragma once

#include <cstddef>

#include "rq/attention/attention.hpp"
#include "rq/kvcache/kv_cache.hpp"

namespace rq {

/// A kernel with the contract of rq::attend_reference.
using AttentionKernel = void (*)(const AttentionProblem& problem);

/// Replace the kernel used by attend_cache (nullptr restores attend_reference). Not thread-safe
/// with respect to running attention.
void set_attention_kernel(AttentionKernel kernel);
AttentionKernel attention_kernel();

/// A kernel for many independent problems at once that spreads them over its own threads (e.g.
/// rq::attend_fast_batch). attend_cache_causal hands it every (token, kv head) problem of a layer.
using AttentionBatchKernel = void (*)(const AttentionProblem* problems, size_t count);
/// nullptr (the default): attend_cache_causal runs the single-problem kernel on the thread pool.
void set_attention_batch_kernel(AttentionBatchKernel kernel);

/// Causal attention of n consecutive query tokens at positions p0 .. p0 + n - 1 of (seq, layer):
/// token t attends to cache tokens [0, p0 + t]. q, out: n x n_heads x head_dim. One call per layer:
/// all (token, kv head) problems go to the batch kernel together (or to the single kernel on
/// pool threads). Throws rq::InvalidArgument like attend_cache.
void attend_cache_causal(const PagedKvCache& cache, SeqId seq, size_t layer, size_t p0, size_t n, size_t n_heads,
                         const float* q, float scale, float* out);

/// Attention of n_heads query heads over tokens [0, n_tokens) of (seq, layer):
/// q: n_heads x head_dim, out: n_heads x head_dim. Query head h reads kv head h / (n_heads /
/// n_kv_heads) (GQA). scale: softmax scale (usually 1/sqrt(head_dim)).
/// Sink/window fp16 copies (different codecs on different segments) are handled by a segmented
/// reference path built from Codec::score / Codec::accumulate.
void attend_cache(const PagedKvCache& cache, SeqId seq, size_t layer, size_t n_tokens, size_t n_heads,
                  const float* q, float scale, float* out);

/// The same for one kv head only: q, out: gqa_group x head_dim (query heads kv_head*gqa_group ..).
/// Lets callers spread (token, kv head) pairs over threads.
void attend_cache_head(const PagedKvCache& cache, SeqId seq, size_t layer, size_t n_tokens, size_t kv_head,
                       size_t gqa_group, const float* q, float scale, float* out);

}  // namespace rq
