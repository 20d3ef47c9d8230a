// Quality of every cache format on real K/V/Q vectors from a KV dump (`rotorquant eval-kv`):
// per format, bytes per vector, d*MSE of the normalized K and V vectors, the inner-product error
// q.k_hat - q.k with the REAL queries of the same layer/head group (causal pairs), and the relative
// error of the attention output softmax(q K^T / sqrt(d)) V with K only, V only, and both quantized.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "rq/kvcache/kv_dump.hpp"
#include "rq/rotation/rotation.hpp"

namespace rq {

struct KvEvalRow {
  std::string format;
  size_t bytes_per_vector = 0;  // code + side bytes of one head vector
  double k_dmse = 0, v_dmse = 0;         // mean ||u - u_hat||^2 over unit-normalized vectors
  double ip_rmse = 0, ip_bias = 0;       // q.k_hat - q.k over causal (query, key) pairs
  double ip_rel_rmse = 0;                // ip_rmse / rms(q.k)
  double attn_rel_k = 0, attn_rel_v = 0, attn_rel_kv = 0;  // mean ||o_hat - o|| / ||o||
  size_t n_vectors = 0, n_pairs = 0, n_queries = 0;
};

struct KvEvalOptions {
  std::vector<std::string> formats;  // empty: every format of the table
  size_t max_queries = 128;          // query tokens per (layer, head), evenly spaced, last included
  uint64_t seed = RotationSeed{}.seed;
};

/// Throws rq::UnknownFormat / rq::InvalidArgument.
std::vector<KvEvalRow> evaluate_kv_dump(const KvDump& dump, const KvEvalOptions& options);

}  // namespace rq
