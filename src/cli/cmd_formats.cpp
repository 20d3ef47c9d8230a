// `rotorquant formats --dim D`: every format with its bytes per vector and ratio vs fp16.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "command_registry.hpp"
#include "rq/format/format.hpp"

namespace rq::cli {
namespace {

struct FormatsOptions {
  size_t dim = 128;
  bool json = false;
};

void run_formats(const FormatsOptions& o) {
  if (o.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& f : format_table()) {
      const FormatLayout l = format_layout(f, o.dim);
      out.push_back({{"format", f.name},
                     {"bits", f.bits},
                     {"rotation", rotation_name(f.rotation)},
                     {"norm_correction", f.norm_correction},
                     {"qjl", f.qjl},
                     {"dim", o.dim},
                     {"rotated_dim", l.rotated_dim},
                     {"code_bytes", l.code_bytes},
                     {"side_bytes", l.side_bytes},
                     {"bytes_per_vector", l.bytes_per_vector()},
                     {"ratio_vs_f16", l.ratio_vs_f16()},
                     {"description", f.description}});
    }
    fmt::print("{}\n", out.dump(2));
    return;
  }
  fmt::print("formats at head_dim {} (fp16: {} B per vector)\n\n", o.dim, 2 * o.dim);
  fmt::print("{:<14} {:>4} {:<10} {:>6} {:>6} {:>5} {:>6} {:>7}  {}\n", "format", "bits", "rotation", "coords", "codes",
             "side", "bytes", "vs f16", "description");
  for (const auto& f : format_table()) {
    const FormatLayout l = format_layout(f, o.dim);
    fmt::print("{:<14} {:>4} {:<10} {:>6} {:>6} {:>5} {:>6} {:>6.2f}x  {}\n", f.name, f.bits, rotation_name(f.rotation),
               l.rotated_dim, l.code_bytes, l.side_bytes, l.bytes_per_vector(), l.ratio_vs_f16(), f.description);
  }
}

const CommandRegistration registration{"formats", [](CLI::App& app) {
  auto opts = std::make_shared<FormatsOptions>();
  auto* cmd = app.add_subcommand("formats", "List every KV-cache format with bytes per vector and ratio vs fp16");
  cmd->add_option("--dim,-d", opts->dim, "head dimension")->check(CLI::Range(size_t{1}, size_t{1} << 20));
  cmd->add_flag("--json", opts->json, "print a JSON array");
  cmd->callback([opts] { run_formats(*opts); });
}};

}  // namespace
}  // namespace rq::cli
