// Perplexity of a Llama model over a token stream with one or more KV-cache configurations,
// evaluated in lockstep (llama.cpp style): the text is cut into non-overlapping windows of `ctx`
// tokens; in each window every token is fed (K and V quantized from the first token) and the
// predictions of the second half are scored. Against a reference cache configuration (f16 K and V)
// run on the same window, each configuration also gets the mean KL divergence
// KL(P_ref || P) and the top-1 agreement. The reference logits are kept for one window only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "rq/model/llama.hpp"

namespace rq::model {

struct CacheChoice {
  std::string k_format = "f16";
  std::string v_format = "f16";
  std::string label() const;  // "rotor3" if K == V, else "K rotor3 / V f16"
};

struct PerplexityConfig {
  size_t ctx = 512;                  // tokens per window
  size_t chunks = 40;                // windows to score (0: all that fit)
  size_t first_chunk = 0;            // index of the first window (to split a run; sums add up)
  size_t batch = 512;                // tokens per forward batch
  std::vector<CacheChoice> caches;   // configurations to evaluate
  CacheChoice reference;             // KL / top-1 reference (f16 / f16)
  size_t sink_tokens = 0;            // fp16 copies for the evaluated caches (not the reference)
  size_t window_tokens = 0;
  int32_t bos = -1;                  // if >= 0, the first token of every window is replaced by it
};

struct PerplexityResult {
  CacheChoice cache;
  size_t tokens = 0;              // scored predictions
  double nll_sum = 0.0;           // sum of -log p(target)
  double kld_sum = 0.0;           // sum of KL(P_ref || P) over scored positions
  size_t top1_agree = 0;          // argmax equal to the reference's argmax
  size_t kv_bytes_allocated = 0;  // cache allocation after a full window
  size_t kv_f16_bytes = 0;        // f16 K+V bytes for the same window
  size_t ctx = 0;

  double ppl() const;
  double kld() const;
  double top1() const;
  double kv_bytes_per_token() const;
};

/// Progress callback: (windows done, windows total, results so far).
using PerplexityProgress = std::function<void(size_t, size_t, const std::vector<PerplexityResult>&)>;

/// Throws rq::InvalidArgument if the text holds fewer than one window (ctx < 4 or too few
/// tokens) or the configuration is empty; format errors come from the cache.
std::vector<PerplexityResult> evaluate_perplexity(const LlamaModel& model, const std::vector<int32_t>& tokens,
                                                  const PerplexityConfig& config,
                                                  const PerplexityProgress& progress = {});

}  // namespace rq::model
