// moeq eval ppl: perplexity of a model on a text file, with the golden.json protocol.
#include <fmt/format.h>

#include <iostream>

#include "backend/backend.h"
#include "cli/commands.h"
#include "core/progress.h"
#include "eval/perplexity.h"
#include "io/json_file.h"
#include "model/minimax_m2.h"
#include "text/tokenizer.h"

namespace moeq::cli {
namespace {

struct PplArgs {
  std::string model, file;
  WindowOptions win;
  bool json = false;
  RuntimeOptions rt;
};

int run_ppl(const PplArgs& a) {
  a.rt.apply();
  const std::string text = io::read_text_file(a.file);
  const text::Tokenizer tok = text::Tokenizer::from_model_dir(a.model);
  const std::vector<int32_t> tokens = tok.encode(text);
  const int64_t windows = count_windows(int64_t(tokens.size()), a.win);  // fail before loading the model
  auto backend = make_backend(a.rt.device);
  auto model = Model::load(a.model, *backend);
  Progress bar("ppl", windows);
  const PplResult r = perplexity(*model, tokens, a.win, [&](int64_t done, int64_t) { bar.update(done); });
  bar.finish();
  fmt::print("file {}: {} tokens, {} windows of {}\n", a.file, tokens.size(), r.windows, a.win.ctx);
  fmt::print("perplexity {:.4f}  (mean NLL {:.5f} over {} predicted tokens, {:.1f} s, {:.0f} tok/s)\n", r.ppl,
             r.mean_nll, r.tokens, r.seconds, double(r.windows * a.win.ctx) / r.seconds);
  if (a.json) {
    nlohmann::json j = {{"file", a.file},     {"model", a.model},     {"ppl", r.ppl},
                        {"nll", r.mean_nll},  {"tokens", r.tokens},   {"windows", r.windows},
                        {"ctx", a.win.ctx},   {"seconds", r.seconds}, {"device", backend->name()}};
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

}  // namespace

void add_eval(CLI::App& app, Action& action) {
  auto* eval = app.add_subcommand("eval", "Measure model quality");
  eval->require_subcommand(1);
  auto* ppl = eval->add_subcommand("ppl", "Perplexity on a text file (non-overlapping windows from the start)");
  auto a = std::make_shared<PplArgs>();
  ppl->add_option("-m,--model", a->model, "model directory")->required();
  ppl->add_option("-f,--file", a->file, "text file")->required();
  ppl->add_option("--ctx", a->win.ctx, "tokens per window")->check(CLI::Range(2, 1 << 20));
  ppl->add_option("--chunks", a->win.chunks, "windows to evaluate (0 = all)")->check(CLI::Range(0, 1 << 30));
  ppl->add_flag("--json", a->json, "end with one JSON line: ppl, tokens, ...");
  a->rt.add_to(*ppl);
  ppl->callback([&action, a] { action = [a] { return run_ppl(*a); }; });
}

}  // namespace moeq::cli
