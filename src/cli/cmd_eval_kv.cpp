// `rotorquant eval-kv FILE [--json] [--formats a,b]`: quality of every cache format on the real
// vectors of a KV dump (see rq/kvcache/kv_eval.hpp for the metrics).
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "command_registry.hpp"
#include "rq/kvcache/kv_eval.hpp"

namespace rq::cli {
namespace {

struct EvalKvOptions {
  std::string file, formats;
  bool json = false;
  size_t max_queries = 128;
};

void run(const EvalKvOptions& o) {
  const KvDump dump = read_kv_dump(o.file);
  KvEvalOptions opt;
  opt.max_queries = o.max_queries;
  std::stringstream ss(o.formats);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) opt.formats.push_back(item);
  }
  const auto rows = evaluate_kv_dump(dump, opt);
  std::string layers;
  for (const auto& l : dump.layers) layers += (layers.empty() ? "" : ",") + std::to_string(l.layer);
  if (o.json) {
    nlohmann::json out = {{"file", o.file},
                          {"tokens", dump.n_tokens},
                          {"layers", layers},
                          {"head_dim", dump.head_dim},
                          {"n_heads", dump.n_heads},
                          {"n_kv_heads", dump.n_kv_heads},
                          {"formats", nlohmann::json::array()}};
    for (const auto& r : rows) {
      out["formats"].push_back({{"format", r.format},
                                {"bytes_per_vector", r.bytes_per_vector},
                                {"k_dmse", r.k_dmse},
                                {"v_dmse", r.v_dmse},
                                {"ip_rmse", r.ip_rmse},
                                {"ip_bias", r.ip_bias},
                                {"ip_rel_rmse", r.ip_rel_rmse},
                                {"attn_rel_err_k", r.attn_rel_k},
                                {"attn_rel_err_v", r.attn_rel_v},
                                {"attn_rel_err_kv", r.attn_rel_kv},
                                {"pairs", r.n_pairs},
                                {"queries", r.n_queries}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf("Real KV from %s: %u tokens, layers %s, head_dim %u, %u query heads / %u kv heads\n\n", o.file.c_str(),
              dump.n_tokens, layers.c_str(), dump.head_dim, dump.n_heads, dump.n_kv_heads);
  std::printf("| format | bytes/vector | K d*MSE | V d*MSE | q.k RMSE | q.k bias | q.k rel RMSE | attn err (K) | attn err (V) | attn err (K+V) |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : rows) {
    std::printf("| %s | %zu | %.5f | %.5f | %.4f | %+.4f | %.4f | %.4f | %.4f | %.4f |\n", r.format.c_str(),
                r.bytes_per_vector, r.k_dmse, r.v_dmse, r.ip_rmse, r.ip_bias, r.ip_rel_rmse, r.attn_rel_k, r.attn_rel_v,
                r.attn_rel_kv);
  }
}

const CommandRegistration registration("eval-kv", [](CLI::App& app) {
  auto opts = std::make_shared<EvalKvOptions>();
  CLI::App* cmd = app.add_subcommand("eval-kv", "MSE, inner-product and attention-output error of every format on a KV dump");
  cmd->add_option("file", opts->file, "dump written by `rotorquant kv-dump`")->required()->check(CLI::ExistingFile);
  cmd->add_flag("--json", opts->json, "print JSON");
  cmd->add_option("--formats", opts->formats, "only these formats (default: the whole table)");
  cmd->add_option("--max-queries", opts->max_queries, "query tokens per (layer, head)")->check(CLI::Range(1, 1 << 20));
  cmd->callback([opts] { run(*opts); });
});

}  // namespace
}  // namespace rq::cli
