// moeq convert -i SRC -o DST --preset P | --recipe FILE --calib FILE: quantize a checkpoint.
#include <fmt/format.h>

#include <chrono>

#include "cli/commands.h"
#include "core/error.h"
#include "quant/convert.h"

namespace moeq::cli {
namespace {

struct ConvertArgs {
  std::string src, dst, preset, recipe, calib, work_dir;
  int64_t calib_tokens = 16384, sample_rows = 512;
  int calib_ctx = 512;
  bool all_experts = false, resume = false, quiet = false;
  RuntimeOptions rt;
};

int run_convert(const ConvertArgs& a) {
  a.rt.apply();
  if (a.preset.empty() == a.recipe.empty()) fail("give exactly one of --preset and --recipe");
  if (a.calib.empty()) fail("--calib FILE is required (calibration text, e.g. data/calib/calib_mixed.txt)");
  ConvertOptions o;
  o.src = a.src;
  o.dst = a.dst;
  o.recipe = a.preset.empty() ? Recipe::load(a.recipe) : Recipe::preset(a.preset);
  o.calib_file = a.calib;
  o.calib_tokens = a.calib_tokens;
  o.calib_ctx = a.calib_ctx;
  o.calib.all_experts = a.all_experts;
  o.calib.sample_rows = a.sample_rows;
  o.resume = a.resume;
  o.work_dir = a.work_dir;
  o.progress = !a.quiet;
  const auto t0 = std::chrono::steady_clock::now();
  const ConvertSummary s = convert_model(o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("wrote {} ({}): {:.3f} bits per weight over the linear layers, {:.2f} MiB{}\n", a.dst, o.recipe.name,
             s.bits_per_weight, double(s.bytes) / (1 << 20),
             s.layers_done_before ? fmt::format(", resumed after {} layers", s.layers_done_before) : "");
  fmt::print("calibration tokens per expert (routed): min {}, median {}, max {}{}\n", s.coverage.min,
             s.coverage.median, s.coverage.max,
             a.all_experts ? "; statistics taken for every expert on every token (--calib-all-experts)" : "");
  if (s.coverage.experts_without_tokens > 0 && !a.all_experts)
    fmt::print("warning: {} expert(s) received no calibration tokens; their statistics fell back to the layer's "
               "input. Use --calib-all-experts or more --calib-tokens.\n",
               s.coverage.experts_without_tokens);
  fmt::print("done in {:.1f} s\n", secs);
  return 0;
}

}  // namespace

void add_convert(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("convert", "Quantize an original (FP8/BF16) checkpoint, one layer at a time");
  auto a = std::make_shared<ConvertArgs>();
  cmd->add_option("-i,--input", a->src, "original model directory")->required();
  cmd->add_option("-o,--output", a->dst, "output directory (must not exist; appears only when complete)")->required();
  cmd->add_option("--preset", a->preset,
                  "awq-w4g32, rtn-w4g32, mq4, mq3-lloyd, mq3, mq2-lloyd or mq2 (docs/QUALITY.md)");
  cmd->add_option("--recipe", a->recipe, "JSON recipe: ordered {match, format, awq} rules (docs/FORMAT.md)");
  cmd->add_option("--calib", a->calib, "calibration text file");
  cmd->add_option("--calib-tokens", a->calib_tokens, "calibration tokens (whole sequences of --calib-ctx)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 32));
  cmd->add_option("--calib-ctx", a->calib_ctx, "tokens per calibration sequence")->check(CLI::Range(2, 1 << 20));
  cmd->add_flag("--calib-all-experts", a->all_experts,
                "collect statistics for every expert on every calibration token (the routed forward is unchanged)");
  cmd->add_option("--awq-sample-rows", a->sample_rows, "input rows per linear kept for the AWQ search")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_flag("--resume", a->resume, "continue an interrupted conversion from its work directory");
  cmd->add_option("--work-dir", a->work_dir, "work directory (default: OUTPUT.work)");
  cmd->add_flag("-q,--quiet", a->quiet, "no progress bar");
  a->rt.add_to(*cmd);
  cmd->callback([&action, a] { action = [a] { return run_convert(*a); }; });
}

}  // namespace moeq::cli
