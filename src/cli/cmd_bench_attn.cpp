// `rotorquant bench-attn [--json] [--formats a,b] [--contexts 1024,...] [--dims 64,128] [--gqa 1,4]`:
// decode attention for one query token over a compressed cache (8 KV heads, all heads per call
// through rq::attend_fast_batch, all cores), per format: us per call (median), cache bytes read,
// GB/s and speedup over f16 measured in the same run; plus the machine's memory read bandwidth
// (multi-threaded sum over a 1 GiB buffer) measured in the same run.
//
// The cache holds random vectors (2048 distinct tokens per head, tiled to the context length; the
// kernels' speed does not depend on the values) in pages of 256 tokens. Caches are replicated over
// several "layers" (at least twice the last-level cache and 256 MiB in all: this project's Xeon VM
// reports a 480 MiB L3) and the calls cycle through them, so every call reads its cache from DRAM
// as in a real decode step, not from the CPU caches.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include <unistd.h>

#include "command_registry.hpp"
#include "rq/attention/attention_fast.hpp"
#include "rq/codec/codec.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/rng.hpp"
#include "rq/threads/thread_pool.hpp"

namespace rq::cli {
namespace {

constexpr size_t kKvHeads = 8;
constexpr size_t kPageTokens = 256;
constexpr size_t kDistinctTokens = 2048;
constexpr size_t kMinColdBytes = size_t{256} << 20;
constexpr size_t kMaxLayers = 8192;

// Bytes of cache copies the calls cycle through: 2 x the L3 (as the OS reports it), >= 256 MiB.
size_t cold_bytes() {
  long l3 = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
  l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
  return std::max(kMinColdBytes, l3 > 0 ? 2 * static_cast<size_t>(l3) : size_t{0});
}

struct BenchOptions {
  bool json = false;
  std::vector<std::string> formats = {"f16", "q8", "q4", "turbo2", "turbo3", "turbo4", "rotor2", "rotor3", "rotor4"};
  std::vector<size_t> contexts = {1024, 4096, 16384, 65536};
  std::vector<size_t> dims = {64, 128};
  std::vector<size_t> gqa = {1, 4};
  int threads = 0;
  double min_seconds = 0.3;
  uint64_t seed = 1;
  std::vector<std::string> arithmetic = {"integer"};  // FastArithmetic for Lloyd-Max and int4 formats
  FastArithmetic current = FastArithmetic::Integer;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// GB/s of a multi-threaded read of a 1 GiB buffer (best of 5 passes; the attention's thread pool,
// one contiguous slice per thread).
double memory_read_gbps(int threads) {
  const size_t words = (size_t{1} << 30) / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[words]);
  const size_t slice = (words / 4 + threads - 1) / threads * 4;  // words per thread, a multiple of 4
  parallel_for(words, slice, [&](size_t b, size_t e) {
    for (size_t i = b; i < e; ++i) buf[i] = i * 0x9e3779b97f4a7c15ull;
  }, threads);
  double best = 0;
  uint64_t sink = 0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    std::atomic<uint64_t> total{0};
    parallel_for(words, slice, [&](size_t b, size_t e) {
      uint64_t part = 0;
      for (size_t i = b; i < e; i += 4) part += (buf[i] ^ buf[i + 1]) + (buf[i + 2] ^ buf[i + 3]);
      total += part;
    }, threads);
    best = std::max(best, static_cast<double>(words * sizeof(uint64_t)) / seconds_since(t0) / 1e9);
    sink += total.load();
  }
  if (sink == 42) fmt::print(" ");  // keep the sum alive
  return best;
}

// One format's cache for all KV heads, K and V, replicated over `layers` copies.
struct BenchCache {
  std::vector<std::unique_ptr<Codec>> k_codecs, v_codecs;  // per head
  std::vector<uint8_t> codes, side;                         // layers x heads x {K,V} x context rows
  size_t layers = 1, bytes_per_layer = 0;
  std::vector<std::vector<AttentionProblem>> problems;      // per layer: kKvHeads problems
};

BenchCache build_cache(const FormatSpec& f, size_t d, size_t context, size_t gqa, const std::vector<float>& queries,
                       float* out, uint64_t seed) {
  BenchCache c;
  Rng rng(seed);
  const size_t distinct = std::min(context, kDistinctTokens);
  std::vector<float> x(distinct * d);
  for (size_t h = 0; h < kKvHeads; ++h) {
    c.k_codecs.push_back(std::make_unique<Codec>(f, d, RotationSeed{seed, 0, static_cast<uint32_t>(h), KvRole::K}));
    c.v_codecs.push_back(std::make_unique<Codec>(f, d, RotationSeed{seed, 0, static_cast<uint32_t>(h), KvRole::V}));
  }
  const FormatLayout& l = c.k_codecs[0]->layout();
  const size_t plane = context * l.code_bytes, side_plane = context * l.side_bytes;  // one head, K or V
  c.bytes_per_layer = 2 * kKvHeads * (plane + side_plane);
  c.layers = std::clamp<size_t>((cold_bytes() + c.bytes_per_layer - 1) / c.bytes_per_layer, 1, kMaxLayers);
  c.codes.resize(c.layers * 2 * kKvHeads * plane);
  c.side.resize(c.layers * 2 * kKvHeads * side_plane + 1);
  // Encode `distinct` tokens per (head, K/V) with its codec, tile them to the context, replicate.
  std::vector<uint8_t> tmp_codes(distinct * l.code_bytes), tmp_side(distinct * l.side_bytes + 1);
  for (size_t hv = 0; hv < 2 * kKvHeads; ++hv) {
    for (auto& e : x) e = static_cast<float>(rng.normal());
    const Codec& codec = hv % 2 ? *c.v_codecs[hv / 2] : *c.k_codecs[hv / 2];
    codec.encode(distinct, x.data(), tmp_codes.data(), tmp_side.data());
    for (size_t layer = 0; layer < c.layers; ++layer) {
      uint8_t* dst = c.codes.data() + (layer * 2 * kKvHeads + hv) * plane;
      uint8_t* dst_side = c.side.data() + (layer * 2 * kKvHeads + hv) * side_plane;
      for (size_t t = 0; t < context; t += distinct) {
        const size_t len = std::min(distinct, context - t);
        std::memcpy(dst + t * l.code_bytes, tmp_codes.data(), len * l.code_bytes);
        if (l.side_bytes) std::memcpy(dst_side + t * l.side_bytes, tmp_side.data(), len * l.side_bytes);
      }
    }
  }
  c.problems.resize(c.layers);
  for (size_t layer = 0; layer < c.layers; ++layer) {
    for (size_t h = 0; h < kKvHeads; ++h) {
      AttentionProblem p;
      p.k_codec = c.k_codecs[h].get();
      p.v_codec = c.v_codecs[h].get();
      p.gqa_group = gqa;
      p.queries = queries.data() + h * gqa * d;
      p.scale = 1.0f / std::sqrt(static_cast<float>(d));
      p.out = out + h * gqa * d;
      for (int role = 0; role < 2; ++role) {
        const size_t hv = layer * 2 * kKvHeads + 2 * h + role;
        auto& pages = role ? p.v_pages : p.k_pages;
        for (size_t t = 0; t < context; t += kPageTokens) {
          const size_t m = std::min(kPageTokens, context - t);
          const size_t end = hv * plane + (t + m) * l.code_bytes;  // the page's end in the codes buffer
          pages.push_back({c.codes.data() + hv * plane + t * l.code_bytes,
                           l.side_bytes ? c.side.data() + hv * side_plane + t * l.side_bytes : nullptr, m,
                           c.codes.size() - end});
        }
      }
      c.problems[layer].push_back(std::move(p));
    }
  }
  return c;
}

struct BenchRow {
  std::string format;
  size_t dim, gqa, context;
  double us, bytes, gbps, speedup;
  std::string arithmetic;  // "integer" or "float" (FastArithmetic)
};

// Median microseconds per call (all KV heads) over repeats lasting >= min_seconds.
double time_calls(BenchCache& c, const BenchOptions& o) {
  attend_fast_batch(c.problems[0].data(), kKvHeads, o.threads, o.current);  // warm-up (page faults, thread pool)
  std::vector<double> times;
  double total = 0;
  for (size_t rep = 0; (total < o.min_seconds || times.size() < 5) && times.size() < 2000; ++rep) {
    auto& probs = c.problems[(rep + 1) % c.layers];
    const auto t0 = std::chrono::steady_clock::now();
    attend_fast_batch(probs.data(), kKvHeads, o.threads, o.current);
    const double s = seconds_since(t0);
    times.push_back(s * 1e6);
    total += s;
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return times[times.size() / 2];
}

void run_bench(BenchOptions o) {
  std::vector<const FormatSpec*> formats = {&find_format("f16")};
  for (const auto& name : o.formats) {
    const FormatSpec& f = find_format(name);
    if (f.name != "f16") formats.push_back(&f);
  }
  for (size_t d : o.dims) {
    if (d < 2 || d > 1024) throw InvalidArgument("bench-attn: --dims must be in 2..1024");
  }
  for (size_t g : o.gqa) {
    if (g < 1 || g > 64) throw InvalidArgument("bench-attn: --gqa must be in 1..64");
  }
  for (size_t ctx : o.contexts) {
    if (ctx < 1 || ctx > (size_t{1} << 20)) throw InvalidArgument("bench-attn: --contexts must be in 1..1048576");
  }
  if (o.threads > 0) ThreadPool::set_global_threads(o.threads);
  const int threads = ThreadPool::global().threads();
  o.threads = threads;
  const double mem_gbps = memory_read_gbps(threads);
  if (!o.json) {
    fmt::print("bench-attn: decode attention, 1 query token, {} KV heads per call, {} threads, SIMD target {}\n",
               kKvHeads, threads, attention_simd_target());
    fmt::print("memory read bandwidth (sum over 1 GiB, {} threads): {:.1f} GB/s; each call reads a cache copy not read in the last {} MiB\n\n",
               threads, mem_gbps, cold_bytes() >> 20);
    fmt::print("{:<10} {:>4} {:>4} {:>6} {:>10} {:>9} {:>7} {:>7} {:>8}\n", "format", "d", "gqa", "ctx", "us/call",
               "MB read", "GB/s", "% mem", "vs f16");
  }
  std::vector<BenchRow> rows;
  for (size_t d : o.dims) {
    for (size_t g : o.gqa) {
      Rng qrng(mix_seed(o.seed, d, g));
      std::vector<float> queries(kKvHeads * g * d), out(kKvHeads * g * d);
      for (auto& e : queries) e = static_cast<float>(qrng.normal());
      for (size_t ctx : o.contexts) {
        double f16_us = 0;
        for (const auto* f : formats) {
          // the formats FastArithmetic chooses for (Lloyd-Max and int4); the others always run float
          const bool integer_capable = (f->scheme == Scheme::LloydMax && !f->qjl) || f->scheme == Scheme::Int4;
          for (const auto& arith : o.arithmetic) {
            if (!integer_capable && arith != o.arithmetic.front()) continue;  // the choice does not matter
            o.current = arith == "float" ? FastArithmetic::Float : FastArithmetic::Integer;
            BenchCache cache = build_cache(*f, d, ctx, g, queries, out.data(), o.seed);
            const double us = time_calls(cache, o);
            if (f->name == "f16") f16_us = us;
            const double bytes = static_cast<double>(cache.bytes_per_layer);
            const std::string label =
                std::string(f->name) + (integer_capable && o.arithmetic.size() > 1 ? "/" + arith.substr(0, 3) : "");
            rows.push_back(
                {label, d, g, ctx, us, bytes, bytes / (us * 1e-6) / 1e9, f16_us / us, integer_capable ? arith : "float"});
            const auto& r = rows.back();
            if (!o.json) {
              fmt::print("{:<10} {:>4} {:>4} {:>6} {:>10.1f} {:>9.2f} {:>7.1f} {:>6.0f}% {:>7.2f}x\n", r.format, d, g, ctx,
                         r.us, r.bytes / 1e6, r.gbps, 100.0 * r.gbps / mem_gbps, r.speedup);
              std::fflush(stdout);
            }
          }
        }
      }
    }
  }
  if (o.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& r : rows) {
      arr.push_back({{"format", r.format},
                     {"head_dim", r.dim},
                     {"gqa", r.gqa},
                     {"context", r.context},
                     {"kv_heads", kKvHeads},
                     {"threads", threads},
                     {"us", r.us},
                     {"bytes_read", r.bytes},
                     {"gbps", r.gbps},
                     {"speedup_vs_f16", r.speedup},
                     {"arithmetic", r.arithmetic},
                     {"mem_read_gbps", mem_gbps},
                     {"simd_target", attention_simd_target()}});
    }
    fmt::print("{}\n", arr.dump(2));
  }
}

const CommandRegistration registration{"bench-attn", [](CLI::App& app) {
  auto opts = std::make_shared<BenchOptions>();
  auto* cmd = app.add_subcommand("bench-attn", "Speed of fast CPU decode attention per cache format vs f16");
  cmd->add_option("--formats", opts->formats, "comma-separated formats (f16 is always measured)")->delimiter(',');
  cmd->add_option("--contexts", opts->contexts, "comma-separated context lengths")->delimiter(',');
  cmd->add_option("--dims", opts->dims, "comma-separated head dims")->delimiter(',');
  cmd->add_option("--gqa", opts->gqa, "comma-separated GQA group sizes")->delimiter(',');
  cmd->add_option("--threads", opts->threads, "threads (0: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--min-seconds", opts->min_seconds, "minimum timed seconds per row")->check(CLI::Range(0.0, 60.0));
  cmd->add_option("--seed", opts->seed, "random seed");
  cmd->add_flag("--json", opts->json, "print one JSON array");
  cmd->add_option("--arithmetic", opts->arithmetic,
                  "Lloyd-Max and int4 formats: integer (default), float, or integer,float (both; rows /int, /flo)")
      ->delimiter(',')
      ->check(CLI::IsMember({"integer", "float"}));
  cmd->callback([opts] { run_bench(*opts); });
}};

}  // namespace
}  // namespace rq::cli
