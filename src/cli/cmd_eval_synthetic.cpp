// `rotorquant eval-synthetic --dim D [--n N] [--seed S] [--json] [--formats a,b]`: for every format,
// on random unit vectors: bytes, ratio vs fp16, d*MSE, inner-product RMSE and bias against random unit
// queries, encode and decode throughput of the reference codec (one thread).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "command_registry.hpp"
#include "rq/codec/codec.hpp"
#include "rq/core/errors.hpp"
#include "rq/core/random_vectors.hpp"
#include "rq/core/rng.hpp"

namespace rq::cli {
namespace {

struct EvalOptions {
  size_t dim = 128;
  size_t n = 4096;
  uint64_t seed = 1;
  bool json = false;
  std::vector<std::string> formats;
};

struct EvalRow {
  const FormatSpec* format;
  FormatLayout layout;
  double d_mse, ip_rmse, ip_bias, ip_bias_se, encode_vps, decode_vps;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

EvalRow evaluate(const FormatSpec& f, const EvalOptions& o, const std::vector<float>& x, const std::vector<float>& q) {
  const size_t d = o.dim, n = o.n;
  const Codec codec(f, d, RotationSeed{o.seed, 0, 0, KvRole::K});
  const FormatLayout& l = codec.layout();
  std::vector<uint8_t> codes(n * l.code_bytes), side(n * l.side_bytes);
  std::vector<float> y(n * d);
  // Throughput: repeat until at least 0.2 s has passed, report the best pass.
  auto best_rate = [&](auto&& body) {
    double best = 0, total = 0;
    for (int rep = 0; rep < 50 && total < 0.2; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      body();
      const double s = seconds_since(t0);
      total += s;
      best = std::max(best, static_cast<double>(n) / s);
    }
    return best;
  };
  const double enc = best_rate([&] { codec.encode(n, x.data(), codes.data(), side.data()); });
  const double dec = best_rate([&] { codec.decode(n, codes.data(), side.data(), y.data()); });
  double err = 0, sum = 0, sum_sq = 0;
  for (size_t i = 0; i < n * d; ++i) err += (double(x[i]) - y[i]) * (double(x[i]) - y[i]);
  for (size_t i = 0; i < n; ++i) {
    const PreparedQuery pq = codec.prepare_query(&q[i * d]);
    float s = 0;
    codec.score(pq, 1, codes.data() + i * l.code_bytes, side.data() + i * l.side_bytes, &s);
    double exact = 0;
    for (size_t j = 0; j < d; ++j) exact += double(q[i * d + j]) * x[i * d + j];
    const double e = s - exact;
    sum += e;
    sum_sq += e * e;
  }
  const double bias = sum / n;
  return EvalRow{&f, l, err / n, std::sqrt(sum_sq / n), bias, std::sqrt(std::max(0.0, sum_sq / n - bias * bias) / n), enc, dec};
}

void run_eval(const EvalOptions& o) {
  if (o.n == 0) throw InvalidArgument("--n must be >= 1");
  std::vector<const FormatSpec*> selected;
  if (o.formats.empty()) {
    for (const auto& f : format_table()) selected.push_back(&f);
  } else {
    for (const auto& name : o.formats) selected.push_back(&find_format(name));
  }
  for (const auto* f : selected) format_layout(*f, o.dim);  // validate the shape before any work
  const std::vector<float> x = random_unit_vectors(o.n, o.dim, mix_seed(o.seed, 1));
  const std::vector<float> q = random_unit_vectors(o.n, o.dim, mix_seed(o.seed, 2));
  std::vector<EvalRow> rows;
  if (!o.json) {
    fmt::print("eval-synthetic: d={} n={} seed={} (random unit vectors, random unit queries; reference codec, 1 thread)\n\n",
               o.dim, o.n, o.seed);
    fmt::print("{:<14} {:>4} {:>6} {:>7} {:>9} {:>9} {:>10} {:>12} {:>12}\n", "format", "bits", "bytes", "vs f16",
               "d*MSE", "ip RMSE", "ip bias", "encode v/s", "decode v/s");
  }
  for (const auto* f : selected) {
    rows.push_back(evaluate(*f, o, x, q));
    const auto& r = rows.back();
    if (!o.json) {
      fmt::print("{:<14} {:>4} {:>6} {:>6.2f}x {:>9.5f} {:>9.5f} {:>+10.2e} {:>12.3e} {:>12.3e}\n", f->name, f->bits,
                 r.layout.bytes_per_vector(), r.layout.ratio_vs_f16(), r.d_mse, r.ip_rmse, r.ip_bias, r.encode_vps,
                 r.decode_vps);
      std::fflush(stdout);
    }
  }
  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows) {
      out.push_back({{"format", r.format->name},
                     {"bits", r.format->bits},
                     {"dim", o.dim},
                     {"n", o.n},
                     {"seed", o.seed},
                     {"bytes_per_vector", r.layout.bytes_per_vector()},
                     {"ratio_vs_f16", r.layout.ratio_vs_f16()},
                     {"d_mse", r.d_mse},
                     {"ip_rmse", r.ip_rmse},
                     {"ip_bias", r.ip_bias},
                     {"ip_bias_stderr", r.ip_bias_se},
                     {"encode_vps", r.encode_vps},
                     {"decode_vps", r.decode_vps}});
    }
    fmt::print("{}\n", out.dump(2));
  }
}

const CommandRegistration registration{"eval-synthetic", [](CLI::App& app) {
  auto opts = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand("eval-synthetic", "Quality and speed of every format on random unit vectors");
  cmd->add_option("--dim,-d", opts->dim, "head dimension")->required()->check(CLI::Range(size_t{1}, size_t{1} << 16));
  cmd->add_option("--n", opts->n, "number of vectors")->check(CLI::Range(size_t{1}, size_t{1} << 24));
  cmd->add_option("--seed", opts->seed, "random seed (data and rotations)");
  cmd->add_option("--formats", opts->formats, "comma-separated formats (default: all)")->delimiter(',');
  cmd->add_flag("--json", opts->json, "print one JSON array");
  cmd->callback([opts] { run_eval(*opts); });
}};

}  // namespace
}  // namespace rq::cli
