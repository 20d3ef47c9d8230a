// evaluate_perplexity: windows in lockstep over several KV-cache configurations.
#include "rq/model/llama_perplexity.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "rq/core/errors.hpp"

namespace rq::model {

std::string CacheChoice::label() const {
  return k_format == v_format ? k_format : "K " + k_format + " / V " + v_format;
}

double PerplexityResult::ppl() const { return tokens ? std::exp(nll_sum / static_cast<double>(tokens)) : 0.0; }
double PerplexityResult::kld() const { return tokens ? kld_sum / static_cast<double>(tokens) : 0.0; }
double PerplexityResult::top1() const { return tokens ? static_cast<double>(top1_agree) / static_cast<double>(tokens) : 0.0; }
double PerplexityResult::kv_bytes_per_token() const {
  return ctx ? static_cast<double>(kv_bytes_allocated) / static_cast<double>(ctx) : 0.0;
}

namespace {

// logits[V] -> log-softmax in place (double accumulation), returns argmax.
size_t log_softmax(float* logits, size_t V) {
  size_t best = 0;
  for (size_t i = 1; i < V; ++i)
    if (logits[i] > logits[best]) best = i;
  const double mx = logits[best];
  double sum = 0.0;
  for (size_t i = 0; i < V; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  for (size_t i = 0; i < V; ++i) logits[i] = static_cast<float>(static_cast<double>(logits[i]) - lse);
  return best;
}

struct WindowOut {
  std::vector<float> logprobs;  // n_scored x V, log-softmax
  std::vector<size_t> argmax;   // n_scored
  size_t bytes = 0, f16_bytes = 0;
};

// Feed one window through a fresh cache; log-probs of positions [first, ctx - 1).
void run_window(const LlamaModel& model, const CacheChoice& choice, size_t sinks, size_t window, const int32_t* toks,
                size_t ctx, size_t first, size_t batch, WindowOut& out) {
  KvCacheConfig cfg = model.cache_config(choice.k_format, choice.v_format);
  cfg.max_tokens_per_seq = ctx;
  cfg.sink_tokens = sinks;
  cfg.window_tokens = window;
  cfg.window_slack = window > 0 ? batch : 0;
  PagedKvCache cache(cfg);
  LlamaRunner runner(model, cache);
  runner.set_batch(batch);
  const SeqId seq = cache.add_sequence();
  const size_t V = model.hparams().n_vocab;
  const size_t n_scored = ctx - 1 - first;
  out.logprobs.resize((ctx - first) * V);  // logits of positions first..ctx-1 (the last is unused)
  runner.forward(seq, toks, ctx, first, out.logprobs.data());
  out.logprobs.resize(n_scored * V);
  out.argmax.resize(n_scored);
  for (size_t i = 0; i < n_scored; ++i) out.argmax[i] = log_softmax(&out.logprobs[i * V], V);
  out.bytes = cache.bytes_allocated();
  out.f16_bytes = cache.f16_bytes(ctx);
}

}  // namespace

std::vector<PerplexityResult> evaluate_perplexity(const LlamaModel& model, const std::vector<int32_t>& tokens,
                                                  const PerplexityConfig& config, const PerplexityProgress& progress) {
  if (config.ctx < 4) throw InvalidArgument("perplexity: ctx must be >= 4");
  if (config.caches.empty()) throw InvalidArgument("perplexity: no cache formats to evaluate");
  const size_t available = tokens.size() / config.ctx;
  if (available == 0) {
    throw InvalidArgument("perplexity: the text has " + std::to_string(tokens.size()) + " tokens, fewer than one window of " +
                          std::to_string(config.ctx));
  }
  if (config.first_chunk >= available) {
    throw InvalidArgument("perplexity: --first-chunk " + std::to_string(config.first_chunk) + " is beyond the " +
                          std::to_string(available) + " windows of the text");
  }
  const size_t left = available - config.first_chunk;
  const size_t n_chunks = config.chunks == 0 ? left : std::min(config.chunks, left);
  const size_t ctx = config.ctx, first = ctx / 2, V = model.hparams().n_vocab;
  const size_t batch = std::max<size_t>(1, config.batch);
  // Validate every format name before the long run starts.
  for (const auto& c : config.caches) (void)PagedKvCache(model.cache_config(c.k_format, c.v_format));

  std::vector<PerplexityResult> results(config.caches.size());
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].cache = config.caches[i];
    results[i].ctx = ctx;
  }
  const bool fp16_copies = config.sink_tokens > 0 || config.window_tokens > 0;
  WindowOut ref, cur;
  std::vector<int32_t> window(ctx);
  for (size_t c = 0; c < n_chunks; ++c) {
    const size_t w0 = (config.first_chunk + c) * ctx;
    std::copy(tokens.begin() + static_cast<long>(w0), tokens.begin() + static_cast<long>(w0 + ctx), window.begin());
    if (config.bos >= 0) window[0] = config.bos;
    run_window(model, config.reference, 0, 0, window.data(), ctx, first, batch, ref);
    for (size_t i = 0; i < results.size(); ++i) {
      const CacheChoice& ch = config.caches[i];
      const bool same_as_ref = !fp16_copies && ch.k_format == config.reference.k_format &&
                               ch.v_format == config.reference.v_format;
      WindowOut& w = same_as_ref ? ref : cur;
      if (!same_as_ref) {
        run_window(model, ch, config.sink_tokens, config.window_tokens, window.data(), ctx, first, batch, cur);
      }
      PerplexityResult& r = results[i];
      for (size_t t = 0; t < ref.argmax.size(); ++t) {
        const float* lp = &w.logprobs[t * V];
        const float* lr = &ref.logprobs[t * V];
        const int32_t target = window[first + t + 1];
        r.nll_sum -= lp[target];
        double kl = 0.0;
        if (!same_as_ref) {
          for (size_t v = 0; v < V; ++v) {
            const double pr = std::exp(static_cast<double>(lr[v]));
            kl += pr * (static_cast<double>(lr[v]) - static_cast<double>(lp[v]));
          }
        }
        r.kld_sum += kl;
        r.top1_agree += w.argmax[t] == ref.argmax[t] ? 1 : 0;
        ++r.tokens;
      }
      r.kv_bytes_allocated = w.bytes;
      r.kv_f16_bytes = w.f16_bytes;
    }
    if (progress) progress(c + 1, n_chunks, results);
  }
  return results;
}

}  // namespace rq::model
