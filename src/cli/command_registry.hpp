// Subcommands of the `rotorquant` CLI register themselves here: each src/cli/cmd_*.cpp defines a
// static CommandRegistration. The CLI is the only place that turns rq::Error into an exit code.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace rq::cli {

/// Adds one subcommand (and its callback) to the application.
using CommandInstaller = std::function<void(CLI::App& app)>;

struct CommandEntry {
  std::string name;
  CommandInstaller install;
};

std::vector<CommandEntry>& command_registry();

struct CommandRegistration {
  CommandRegistration(std::string name, CommandInstaller install) {
    command_registry().push_back({std::move(name), std::move(install)});
  }
};

}  // namespace rq::cli
