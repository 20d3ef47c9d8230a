// `rotorquant generate -p PROMPT [-n N] [--temp T --top-k K --seed S] [--ctk X --ctv Y] [--chat]`:
// run the model with a compressed KV cache (every token quantized when appended, attention reads
// only the cache), stream the generated text to stdout, and print prompt / generation tokens per
// second and the cache's allocated KV bytes against f16 to stderr.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "attention_choice.hpp"
#include "command_registry.hpp"
#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"
#include "rq/kvcache/kv_attention.hpp"
#include "rq/model/llama_session.hpp"

namespace rq::cli {
namespace {

struct GenerateOptions {
  std::string model, prompt, prompt_file;
  size_t max_prompt = 0;
  size_t n_predict = 64;
  float temp = 0.0f;
  size_t top_k = 40;
  uint64_t seed = 1;
  std::string ctk = "f16", ctv = "f16";
  bool chat = false;
  bool ignore_eos = false;
  size_t sinks = 0, window = 0;
  size_t ctx = 0;
  size_t batch = 256;
  int threads = 0;
  std::string attn = "fast";
};

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int32_t sample(const std::vector<float>& logits, const GenerateOptions& o, Rng& rng) {
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  if (o.temp <= 0.0f) return static_cast<int32_t>(best);
  // top-k, then softmax at temperature, then inverse-CDF with the seeded generator.
  std::vector<size_t> idx(logits.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  const size_t k = std::min(std::max<size_t>(o.top_k, 1), idx.size());
  std::partial_sort(idx.begin(), idx.begin() + static_cast<long>(k), idx.end(),
                    [&](size_t a, size_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
  std::vector<double> p(k);
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += (p[i] = std::exp((logits[idx[i]] - logits[idx[0]]) / o.temp));
  double u = rng.uniform() * sum;
  for (size_t i = 0; i < k; ++i) {
    if ((u -= p[i]) <= 0) return static_cast<int32_t>(idx[i]);
  }
  return static_cast<int32_t>(idx[k - 1]);
}

void run(const GenerateOptions& o) {
  if (o.prompt.empty() == o.prompt_file.empty()) throw InvalidArgument("generate: give exactly one of -p PROMPT or -f FILE");
  if (!(o.temp >= 0.0f) || !std::isfinite(o.temp)) throw InvalidArgument("generate: --temp must be >= 0");
  use_attention(o.attn);
  model::set_model_threads(o.threads);
  auto session = model::LlamaSession::open(o.model);
  const auto& model = *session.model;
  const auto& tok = *session.tokenizer;
  const auto& hp = model.hparams();

  std::string text = o.prompt_file.empty() ? o.prompt : model::read_text_file(o.prompt_file);
  if (o.chat) text = model::format_chatml({{"user", text}}, true);
  std::vector<int32_t> ids = tok.encode(text, true, tok.add_bos_default());
  if (o.max_prompt > 0 && ids.size() > o.max_prompt) ids.resize(o.max_prompt);
  if (ids.empty()) throw InvalidArgument("generate: the prompt encodes to no tokens");
  const size_t ctx = o.ctx > 0 ? o.ctx : std::max<size_t>(hp.n_ctx_train, ids.size() + o.n_predict);
  if (ids.size() + o.n_predict > ctx) {
    throw InvalidArgument(fmt::format("generate: prompt ({} tokens) + -n {} exceeds the context of {}", ids.size(),
                                      o.n_predict, ctx));
  }
  KvCacheConfig cfg = model.cache_config(o.ctk, o.ctv);
  cfg.max_tokens_per_seq = ctx;
  cfg.sink_tokens = o.sinks;
  cfg.window_tokens = o.window;
  // No ring slack: prompt tokens early in a batch may read part of their window from the
  // compressed pages (conservative); generated tokens always see their last W tokens in fp16.
  cfg.window_slack = 0;
  PagedKvCache cache(cfg);
  model::LlamaRunner runner(model, cache);
  runner.set_batch(o.batch);
  const SeqId seq = cache.add_sequence();
  std::fprintf(stderr, "model: %s\ncache: %s, threads %d, attention %s\n", hp.describe().c_str(), cache.describe().c_str(),
               model::model_threads(), o.attn.c_str());
  if (!o.chat && o.prompt_file.empty()) std::fputs(text.c_str(), stdout);
  std::fflush(stdout);

  auto t0 = std::chrono::steady_clock::now();
  std::vector<float> logits = runner.forward_last(seq, ids);
  const double t_prompt = since(t0);
  Rng rng(o.seed);
  size_t generated = 0, decode_steps = 0;
  runner.reset_kv_cache_seconds();
  t0 = std::chrono::steady_clock::now();
  for (; generated < o.n_predict; ++generated) {
    const int32_t next = sample(logits, o, rng);
    if (!o.ignore_eos && tok.is_end_of_generation(next)) break;
    const std::string piece = tok.token_to_piece(next);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    if (generated + 1 == o.n_predict) {
      ++generated;
      break;
    }
    logits = runner.forward_last(seq, {next});
    ++decode_steps;
  }
  const double t_gen = since(t0);
  const double t_kv = runner.kv_cache_seconds();
  std::fputs("\n", stdout);
  std::fflush(stdout);  // the statistics go to stderr: keep them after the generated text
  const size_t len = cache.length(seq, 0);
  // f16 reference bytes: exact (len tokens) and with the same page granularity as this cache.
  const double f16 = static_cast<double>(cache.f16_bytes(len));
  const size_t ps = cache.page_size();
  const double f16_paged = static_cast<double>(cache.f16_bytes((len + ps - 1) / ps * ps));
  const double bytes = static_cast<double>(cache.bytes_allocated());
  std::fprintf(stderr, "prompt: %zu tokens in %.2f s = %.1f tokens/s\n", ids.size(), t_prompt,
               static_cast<double>(ids.size()) / t_prompt);
  std::fprintf(stderr, "generation: %zu tokens in %.2f s = %.1f tokens/s (%zu single-token forward passes)\n",
               generated, t_gen, decode_steps > 0 ? static_cast<double>(decode_steps) / t_gen : 0.0, decode_steps);
  if (decode_steps > 0) {
    std::fprintf(stderr, "generation: KV cache (append + attention, all layers) %.3f ms per step = %.1f %% of the step\n",
                 1e3 * t_kv / static_cast<double>(decode_steps), 100.0 * t_kv / t_gen);
  }
  std::fprintf(stderr,
               "KV cache: %zu tokens, %.0f bytes allocated (%s); f16 would hold %.0f bytes (%.0f in pages of %zu): "
               "%.3fx of f16 paged, %.2fx smaller\n",
               len, bytes, cache.describe().c_str(), f16, f16_paged, ps, bytes / f16_paged, f16_paged / bytes);
}

const CommandRegistration registration("generate", [](CLI::App& app) {
  auto opts = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate text with a compressed KV cache (streams tokens)");
  cmd->add_option("-m,--model", opts->model, "GGUF model (default: the fetched SmolLM2-135M-Instruct)");
  cmd->add_option("-p,--prompt", opts->prompt, "prompt text");
  cmd->add_option("-f,--file", opts->prompt_file, "read the prompt from a file")->check(CLI::ExistingFile);
  cmd->add_option("--max-prompt", opts->max_prompt, "truncate the prompt to N tokens (benchmarks)");
  cmd->add_option("-n,--n-predict", opts->n_predict, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--temp", opts->temp, "temperature (0: greedy)")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", opts->top_k, "sample from the k most likely tokens")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--seed", opts->seed, "sampling seed");
  cmd->add_option("--ctk", opts->ctk, "K cache format (see `rotorquant formats`)");
  cmd->add_option("--ctv", opts->ctv, "V cache format");
  cmd->add_flag("--chat", opts->chat, "wrap the prompt in the model's chat template (ChatML)");
  cmd->add_flag("--ignore-eos", opts->ignore_eos, "do not stop at end-of-generation tokens");
  cmd->add_option("--fp16-sinks", opts->sinks, "also keep the first N tokens in fp16 (off by default)");
  cmd->add_option("--fp16-window", opts->window, "also keep the last W tokens in fp16 (off by default)");
  cmd->add_option("--ctx", opts->ctx, "maximum context (default: the model's training context)");
  cmd->add_option("--batch", opts->batch, "prompt tokens per forward batch")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("-t,--threads", opts->threads, "threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--attn", opts->attn, "attention kernels: fast (integer tables), fast-float, reference")
      ->check(CLI::IsMember(attention_choices()));
  cmd->callback([opts] { run(*opts); });
});

}  // namespace
}  // namespace rq::cli
