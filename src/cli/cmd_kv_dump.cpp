// `rotorquant kv-dump -f TEXT [--layers 0,15,29] [--tokens N] -o FILE`: run the model over the
// first N tokens of TEXT (f32 KV cache, so the dumped vectors are the model's own) and write the
// real post-RoPE Q, K and V of the chosen layers (format: include/rq/kvcache/kv_dump.hpp).
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "attention_choice.hpp"
#include "command_registry.hpp"
#include "rq/attention/attention_fast.hpp"
#include "rq/core/errors.hpp"
#include "rq/kvcache/kv_attention.hpp"
#include "rq/kvcache/kv_dump.hpp"
#include "rq/model/llama_session.hpp"

namespace rq::cli {
namespace {

struct KvDumpOptions {
  std::string model, file, out, layers;
  size_t tokens = 512;
  int threads = 0;
};

class DumpObserver : public model::QkvObserver {
 public:
  DumpObserver(KvDump& dump, const std::vector<int>& slot_of_layer) : dump_(dump), slot_(slot_of_layer) {}
  void observe(size_t layer, size_t, const float* q, const float* k, const float* v) override {
    const int slot = slot_[layer];
    if (slot < 0) return;
    KvDumpLayer& L = dump_.layers[static_cast<size_t>(slot)];
    const size_t nq = size_t{dump_.n_heads} * dump_.head_dim, nk = size_t{dump_.n_kv_heads} * dump_.head_dim;
    L.q.insert(L.q.end(), q, q + nq);
    L.k.insert(L.k.end(), k, k + nk);
    L.v.insert(L.v.end(), v, v + nk);
  }

 private:
  KvDump& dump_;
  std::vector<int> slot_;
};

void run(const KvDumpOptions& o) {
  use_attention("fast");
  model::set_model_threads(o.threads);
  auto session = model::LlamaSession::open(o.model);
  const auto& hp = session.model->hparams();
  std::vector<uint32_t> layers;
  if (o.layers.empty()) {
    layers = {0, static_cast<uint32_t>(hp.n_layers / 2), static_cast<uint32_t>(hp.n_layers - 1)};
  } else {
    std::stringstream ss(o.layers);
    std::string item;
    while (std::getline(ss, item, ',')) {
      size_t pos = 0;
      long v = -1;
      try {
        v = std::stol(item, &pos);
      } catch (const std::exception&) {
        pos = 0;
      }
      if (pos != item.size() || v < 0 || static_cast<size_t>(v) >= hp.n_layers) {
        throw InvalidArgument("kv-dump: bad layer '" + item + "' (the model has layers 0.." + std::to_string(hp.n_layers - 1) + ")");
      }
      layers.push_back(static_cast<uint32_t>(v));
    }
  }
  std::vector<int> slot(hp.n_layers, -1);
  KvDump dump;
  for (uint32_t l : layers) {
    if (slot[l] >= 0) throw InvalidArgument("kv-dump: layer " + std::to_string(l) + " given twice");
    slot[l] = static_cast<int>(dump.layers.size());
    dump.layers.push_back(KvDumpLayer{l, {}, {}, {}});
  }
  std::vector<int32_t> ids = session.tokenizer->encode(model::read_text_file(o.file), false, false);
  if (ids.size() < o.tokens) {
    throw InvalidArgument("kv-dump: the text has " + std::to_string(ids.size()) + " tokens, fewer than --tokens " +
                          std::to_string(o.tokens));
  }
  ids.resize(o.tokens);
  dump.n_tokens = static_cast<uint32_t>(o.tokens);
  dump.n_heads = static_cast<uint32_t>(hp.n_heads);
  dump.n_kv_heads = static_cast<uint32_t>(hp.n_kv_heads);
  dump.head_dim = static_cast<uint32_t>(hp.head_dim);
  KvCacheConfig cfg = session.model->cache_config("f32", "f32");
  cfg.max_tokens_per_seq = o.tokens;
  PagedKvCache cache(cfg);
  model::LlamaRunner runner(*session.model, cache);
  DumpObserver obs(dump, slot);
  runner.set_observer(&obs);
  runner.forward(cache.add_sequence(), ids.data(), ids.size(), ids.size(), nullptr);
  write_kv_dump(o.out, dump);
  std::fprintf(stderr, "kv-dump: %zu tokens, %zu layers, %u heads / %u kv heads, head_dim %u -> %s\n", o.tokens,
               dump.layers.size(), dump.n_heads, dump.n_kv_heads, dump.head_dim, o.out.c_str());
}

const CommandRegistration registration("kv-dump", [](CLI::App& app) {
  auto opts = std::make_shared<KvDumpOptions>();
  CLI::App* cmd = app.add_subcommand("kv-dump", "Write real post-RoPE Q, K, V of chosen layers to a file");
  cmd->add_option("-m,--model", opts->model, "GGUF model (default: the fetched SmolLM2-135M-Instruct)");
  cmd->add_option("-f,--file", opts->file, "text file")->required()->check(CLI::ExistingFile);
  cmd->add_option("--layers", opts->layers, "comma-separated layer indices (default: first, middle, last)");
  cmd->add_option("--tokens", opts->tokens, "tokens to run")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-o,--output", opts->out, "output file")->required();
  cmd->add_option("-t,--threads", opts->threads, "threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->callback([opts] { run(*opts); });
});

}  // namespace
}  // namespace rq::cli
