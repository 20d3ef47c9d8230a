// rotorquant: the command-line front end. Subcommands live in cmd_*.cpp and register themselves.
#include <algorithm>
#include <cstdio>
#include <exception>

#include "command_registry.hpp"
#include "rq/core/errors.hpp"

namespace rq::cli {
std::vector<CommandEntry>& command_registry() {
  static std::vector<CommandEntry> entries;
  return entries;
}
}  // namespace rq::cli

int main(int argc, char** argv) {
  CLI::App app{"rotorquant: rotation-based KV-cache quantization, measured"};
  app.require_subcommand(1);
  auto& entries = rq::cli::command_registry();
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (auto& entry : entries) entry.install(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const rq::Error& e) {
    std::fprintf(stderr, "rotorquant: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rotorquant: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
