// moeq: quantize, evaluate, run and serve MiniMax-M2-family MoE models. One binary; one
// subcommand per src/cli/cmd_*.cpp. Errors print one line to stderr and exit with status 1
// (2 for a bad command line).
#include <cstdio>
#include <exception>
#include <new>

#include "cli/commands.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace moeq::cli {

void RuntimeOptions::add_to(CLI::App& app) {
  app.add_option("--device", device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app.add_option("-t,--threads", threads, "CPU threads (default: MOEQ_THREADS or all cores)")
      ->check(CLI::Range(0, 1024));
}

void RuntimeOptions::apply() const {
  if (threads > 0) set_num_threads(threads);
}

}  // namespace moeq::cli

int main(int argc, char** argv) {
  CLI::App app{"moeq " MOEQ_VERSION ": quantize, evaluate, run and serve Mixture-of-Experts models (MiniMax-M2)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", MOEQ_VERSION);
  moeq::cli::Action action;
  moeq::cli::add_inspect(app, action);
  moeq::cli::add_run(app, action);
  moeq::cli::add_eval(app, action);
  moeq::cli::add_convert(app, action);
  moeq::cli::add_bench(app, action);
  moeq::cli::add_serve(app, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    return action ? action() : 0;
  } catch (const moeq::Error& e) {
    std::fprintf(stderr, "moeq: error: %s\n", e.what());
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "moeq: error: out of memory\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moeq: internal error: %s\n", e.what());
  }
  return 1;
}
