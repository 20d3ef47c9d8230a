// `rotorquant perplexity -f TEXT --ctx N --chunks M --ctk X --ctv Y [--json] [--threads T]`
// (or `--formats f16,q8,rotor3,...` / `--configs K:V,...` for several cache configurations in one
// pass): llama.cpp-style perplexity (non-overlapping windows of N tokens, the second half of each
// scored) with the KV cache quantized from the first token, plus mean KL divergence and top-1
// agreement against the f16-cache run on the same windows (run in lockstep, window by window),
// and the KV bytes per token the cache allocated. Progress on stderr.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "attention_choice.hpp"
#include "command_registry.hpp"
#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"
#include "rq/kvcache/kv_attention.hpp"
#include "rq/model/llama_perplexity.hpp"
#include "rq/model/llama_session.hpp"

namespace rq::cli {
namespace {

struct PerplexityOptions {
  std::string model, file;
  size_t ctx = 512, chunks = 40, batch = 512, first_chunk = 0;
  std::string partial;
  std::string ctk = "f16", ctv = "f16";
  std::string formats, configs;
  bool json = false;
  int threads = 0;
  size_t sinks = 0, window = 0;
  std::string attn = "fast";
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::vector<model::CacheChoice> parse_choices(const PerplexityOptions& o) {
  std::vector<model::CacheChoice> out;
  for (const auto& f : split(o.formats, ',')) out.push_back({f, f});
  for (const auto& c : split(o.configs, ',')) {
    auto kv = split(c, ':');
    if (kv.size() != 2) throw InvalidArgument("perplexity: --configs entries are K:V, got '" + c + "'");
    out.push_back({kv[0], kv[1]});
  }
  if (out.empty()) out.push_back({o.ctk, o.ctv});
  for (const auto& c : out) {
    find_format(c.k_format);  // throws rq::UnknownFormat with the list of names
    find_format(c.v_format);
  }
  return out;
}

nlohmann::json result_json(const model::PerplexityResult& r) {
  return {{"ctk", r.cache.k_format},
          {"ctv", r.cache.v_format},
          {"ppl", r.ppl()},
          {"kld", r.kld()},
          {"top1", r.top1()},
          {"kv_bytes_per_token", r.kv_bytes_per_token()},
          {"kv_bytes_allocated", r.kv_bytes_allocated},
          {"kv_f16_bytes", r.kv_f16_bytes},
          {"tokens", r.tokens},
          {"nll_sum", r.nll_sum},
          {"kld_sum", r.kld_sum},
          {"top1_agree", r.top1_agree}};
}

void run(const PerplexityOptions& o) {
  use_attention(o.attn);
  model::set_model_threads(o.threads);
  const auto choices = parse_choices(o);
  auto session = model::LlamaSession::open(o.model);
  const std::string text = model::read_text_file(o.file);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> tokens = session.tokenizer->encode(text, false, false);
  model::PerplexityConfig cfg;
  cfg.ctx = o.ctx;
  cfg.chunks = o.chunks;
  cfg.first_chunk = o.first_chunk;
  cfg.batch = o.batch;
  cfg.caches = choices;
  cfg.sink_tokens = o.sinks;
  cfg.window_tokens = o.window;
  cfg.bos = session.tokenizer->add_bos_default() ? session.tokenizer->bos_id() : -1;
  std::fprintf(stderr, "perplexity: %zu tokens in %s, ctx %zu, %zu chunks, %zu cache configurations, threads %d%s\n",
               tokens.size(), o.file.c_str(), o.ctx, o.chunks, choices.size(), model::model_threads(),
               (o.sinks || o.window) ? fmt::format(", fp16 sinks {} window {}", o.sinks, o.window).c_str() : "");
  auto make_json = [&](const std::vector<model::PerplexityResult>& results, size_t done, double secs) {
    nlohmann::json settings = {{"model", o.model.empty() ? default_model_path() : o.model},
                               {"file", o.file},
                               {"ctx", o.ctx},
                               {"first_chunk", o.first_chunk},
                               {"chunks", done},
                               {"reference", "f16/f16"},
                               {"fp16_sinks", o.sinks},
                               {"fp16_window", o.window},
                               {"threads", model::model_threads()},
                               {"seconds", secs}};
    nlohmann::json out;
    if (results.size() == 1) {
      out = result_json(results[0]);
      out["settings"] = settings;
    } else {
      out = {{"settings", settings}, {"results", nlohmann::json::array()}};
      for (const auto& r : results) out["results"].push_back(result_json(r));
    }
    return out;
  };
  auto progress = [&](size_t done, size_t total, const std::vector<model::PerplexityResult>& rs) {
    if (!o.partial.empty()) {  // state after every window, so a long run can be cut short
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::string tmp = o.partial + ".tmp";
      if (std::FILE* fp = std::fopen(tmp.c_str(), "w")) {
        std::fputs(make_json(rs, done, el).dump(2).c_str(), fp);
        std::fclose(fp);
        std::rename(tmp.c_str(), o.partial.c_str());
      }
    }
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::string line = fmt::format("[{}/{}] {:.0f}s", done, total, el);
    for (const auto& r : rs) line += fmt::format(" | {} {:.3f}", r.cache.label(), r.ppl());
    std::fprintf(stderr, "\r%s", line.c_str());
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
  const auto results = model::evaluate_perplexity(*session.model, tokens, cfg, progress);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (o.json) {
    const size_t per_window = o.ctx - 1 - o.ctx / 2;
    std::printf("%s\n", make_json(results, results.empty() ? 0 : results[0].tokens / per_window, secs).dump(2).c_str());
    return;
  }
  std::printf("| K | V | PPL | mean KLD vs f16 | top-1 vs f16 | KV bytes/token | vs f16 |\n|---|---|---|---|---|---|---|\n");
  for (const auto& r : results) {
    std::printf("| %s | %s | %.4f | %.6f | %.4f | %.1f | %.3fx |\n", r.cache.k_format.c_str(), r.cache.v_format.c_str(),
                r.ppl(), r.kld(), r.top1(), r.kv_bytes_per_token(),
                static_cast<double>(r.kv_bytes_allocated) / static_cast<double>(r.kv_f16_bytes));
  }
  std::printf("%zu scored tokens per configuration, %.1f s\n", results.empty() ? 0 : results[0].tokens, secs);
}

const CommandRegistration registration("perplexity", [](CLI::App& app) {
  auto opts = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity, KL divergence and top-1 vs f16 with compressed KV caches");
  cmd->add_option("-m,--model", opts->model, "GGUF model (default: the fetched SmolLM2-135M-Instruct)");
  cmd->add_option("-f,--file", opts->file, "text file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--ctx", opts->ctx, "tokens per window")->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", opts->chunks, "windows to score (0: all)");
  cmd->add_option("--first-chunk", opts->first_chunk, "index of the first window (split a long run)");
  cmd->add_option("--partial", opts->partial, "rewrite this JSON file with the running totals after every window");
  cmd->add_option("--batch", opts->batch, "tokens per forward batch")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--ctk", opts->ctk, "K cache format");
  cmd->add_option("--ctv", opts->ctv, "V cache format");
  cmd->add_option("--formats", opts->formats, "several formats (K = V) in one pass, e.g. f16,q8,rotor3");
  cmd->add_option("--configs", opts->configs, "several K:V pairs in one pass, e.g. rotor3:f16,f16:rotor3");
  cmd->add_flag("--json", opts->json, "print a JSON object (ppl, kld, top1, kv_bytes_per_token, tokens, settings)");
  cmd->add_option("-t,--threads", opts->threads, "threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--fp16-sinks", opts->sinks, "also keep the first N tokens in fp16 (off by default)");
  cmd->add_option("--fp16-window", opts->window, "also keep the last W tokens in fp16 (off by default)");
  cmd->add_option("--attn", opts->attn, "attention kernels: fast (integer tables), fast-float, reference")
      ->check(CLI::IsMember(attention_choices()));
  cmd->callback([opts] { run(*opts); });
});

}  // namespace
}  // namespace rq::cli
