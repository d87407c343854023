// The subcommands: each file src/cli/cmd_*.cpp registers one with CLI11 and runs it.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace moeq::cli {

// Options every command that runs a model shares.
struct RuntimeOptions {
  std::string device = "auto";
  int threads = 0;
  void add_to(CLI::App& app);
  void apply() const;  // sets the thread count
};

// Each returns the action to run if its subcommand was chosen.
using Action = std::function<int()>;
void add_inspect(CLI::App& app, Action& action);
void add_run(CLI::App& app, Action& action);
void add_eval(CLI::App& app, Action& action);
void add_convert(CLI::App& app, Action& action);
void add_bench(CLI::App& app, Action& action);
void add_serve(CLI::App& app, Action& action);

}  // namespace moeq::cli
