// moeq eval ppl | kld | compare: perplexity of a model on a text file (the golden.json protocol),
// KL divergence of a quantized model from its reference, and a size/quality comparison of several
// models with a JSON report and an SVG chart.
#include <fmt/format.h>

#include <filesystem>
#include <iostream>
#include <map>

#include "backend/backend.h"
#include "cli/commands.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/kld.h"
#include "eval/model_size.h"
#include "eval/perplexity.h"
#include "eval/svg_chart.h"
#include "io/json_file.h"
#include "io/safetensors.h"
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

// ---- shared by kld and compare --------------------------------------------------------------

// A config we can read, checked before any weights are loaded, so mistakes fail in a moment.
ModelConfig load_config(const std::string& dir) {
  if (!std::filesystem::is_directory(dir)) fail("model directory '{}' does not exist", dir);
  return ModelConfig::load(dir);
}

void check_same_vocab(const ModelConfig& ref, const std::string& ref_dir, const ModelConfig& m, const std::string& dir) {
  if (m.vocab_size != ref.vocab_size)
    fail("{} has a vocabulary of {} tokens but the reference {} has {}: KL divergence needs the same tokenizer", dir,
         m.vocab_size, ref_dir, ref.vocab_size);
}

void check_ctx(const ModelConfig& c, const std::string& dir, const WindowOptions& win) {
  if (win.ctx > c.max_position_embeddings)
    fail("--ctx {} exceeds the context limit of {} ({})", win.ctx, c.max_position_embeddings, dir);
}

// The text tokenized with the reference's tokenizer, and the number of windows (fails if too short).
std::vector<int32_t> tokenize_for_eval(const std::string& file, const std::string& ref_dir, const WindowOptions& win,
                                       int64_t* windows) {
  const std::string text = io::read_text_file(file);
  const std::vector<int32_t> tokens = text::Tokenizer::from_model_dir(ref_dir).encode(text);
  *windows = count_windows(int64_t(tokens.size()), win);
  return tokens;
}

// The label of a model on charts: its directory's name ("out/mq4/" -> "mq4").
std::string model_label(const std::string& dir) {
  std::filesystem::path p(dir);
  while (!p.has_filename() && p.has_parent_path() && p.parent_path() != p) p = p.parent_path();  // "dir/"
  const std::string name = p.filename().string();
  if (!name.empty() && name != "." && name != "..") return name;
  std::error_code ec;
  const auto abs = std::filesystem::weakly_canonical(dir, ec);
  return ec || abs.filename().empty() ? dir : abs.filename().string();
}

// ---- eval kld ------------------------------------------------------------------------------------

struct KldArgs {
  std::string model, ref, file;
  WindowOptions win;
  bool json = false;
  RuntimeOptions rt;
};

int run_kld(const KldArgs& a) {
  a.rt.apply();
  const ModelConfig rc = load_config(a.ref), qc = load_config(a.model);
  check_same_vocab(rc, a.ref, qc, a.model);
  check_ctx(rc, a.ref, a.win);
  check_ctx(qc, a.model, a.win);
  int64_t windows = 0;
  const std::vector<int32_t> tokens = tokenize_for_eval(a.file, a.ref, a.win, &windows);
  auto backend = make_backend(a.rt.device);
  auto ref = Model::load(a.ref, *backend);
  auto quant = Model::load(a.model, *backend);
  Progress bar("kld", windows);
  const KldResult r = kld_eval(*ref, *quant, tokens, a.win, [&](int64_t done, int64_t) { bar.update(done); });
  bar.finish();
  fmt::print("file {}: {} tokens, {} windows of {}, {} predicted positions\n", a.file, tokens.size(), r.windows,
             a.win.ctx, r.positions);
  fmt::print("reference {}: perplexity {:.4f}\n", a.ref, r.ppl_ref);
  fmt::print("model     {}: perplexity {:.4f}\n", a.model, r.ppl_quant);
  fmt::print("KL divergence: mean {:.6f}  median {:.6f}  p90 {:.6f}  p99 {:.6f}  max {:.6f}\n", r.kld_mean,
             r.kld_median, r.kld_p90, r.kld_p99, r.kld_max);
  fmt::print("top-1 agreement {:.4f}%  ({:.1f} s)\n", 100.0 * r.top1, r.seconds);
  if (a.json) {
    nlohmann::json j = {{"file", a.file},          {"model", a.model},         {"ref", a.ref},
                        {"kld_mean", r.kld_mean},  {"kld_median", r.kld_median}, {"kld_p90", r.kld_p90},
                        {"kld_p99", r.kld_p99},    {"kld_max", r.kld_max},     {"top1", r.top1},
                        {"ppl_ref", r.ppl_ref},    {"ppl_quant", r.ppl_quant}, {"nll_ref", r.nll_ref},
                        {"nll_quant", r.nll_quant}, {"positions", r.positions}, {"windows", r.windows},
                        {"ctx", a.win.ctx},        {"seconds", r.seconds},     {"device", backend->name()}};
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

// ---- eval compare --------------------------------------------------------------------------------

struct CompareArgs {
  std::string ref, file, svg, json;
  std::vector<std::string> models;
  WindowOptions win;
  RuntimeOptions rt;
};

void check_output_path(const std::string& path) {
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty() && !std::filesystem::is_directory(parent))
    fail("cannot write '{}': directory '{}' does not exist", path, parent.string());
}

int run_compare(const CompareArgs& a) {
  a.rt.apply();
  check_output_path(a.svg);
  if (!a.json.empty()) check_output_path(a.json);
  // Everything that can be checked without running a model is checked first.
  const ModelConfig rc = load_config(a.ref);
  const ModelSize ref_size = model_size(a.ref);
  std::vector<ModelSize> sizes;
  check_ctx(rc, a.ref, a.win);
  for (const auto& m : a.models) {
    const ModelConfig mc = load_config(m);
    check_same_vocab(rc, a.ref, mc, m);
    check_ctx(mc, m, a.win);
    sizes.push_back(model_size(m));
  }
  std::vector<std::string> labels;
  std::map<std::string, int> seen;
  for (const auto& m : a.models) {  // two directories of the same name stay distinguishable
    const std::string l = model_label(m);
    const int n = ++seen[l];
    labels.push_back(n == 1 ? l : fmt::format("{} ({})", l, n));
  }
  int64_t windows = 0;
  const std::vector<int32_t> tokens = tokenize_for_eval(a.file, a.ref, a.win, &windows);

  auto backend = make_backend(a.rt.device);
  auto ref = Model::load(a.ref, *backend);
  std::vector<KldResult> results;
  for (size_t i = 0; i < a.models.size(); ++i) {
    auto model = Model::load(a.models[i], *backend);  // one model besides the reference at a time
    Progress bar(fmt::format("kld {}/{} {}", i + 1, a.models.size(), labels[i]), windows);
    results.push_back(kld_eval(*ref, *model, tokens, a.win, [&](int64_t done, int64_t) { bar.update(done); }));
    bar.finish();
  }
  const double ref_ppl = results.front().ppl_ref;  // the same in every run (deterministic forward)

  fmt::print("file {}: {} tokens, {} windows of {}, {} predicted positions\n", a.file, tokens.size(), windows,
             a.win.ctx, results.front().positions);
  fmt::print("{:<24} {:>8} {:>12} {:>10} {:>10} {:>8} {:>10}\n", "model", "bpw", "size", "KLD mean", "KLD p99",
             "top-1", "PPL");
  fmt::print("{:<24} {:>8.4f} {:>12} {:>10} {:>10} {:>8} {:>10.4f}  (reference)\n", model_label(a.ref), ref_size.bpw,
             ref_size.total_bytes, "0", "0", "1", ref_ppl);
  for (size_t i = 0; i < a.models.size(); ++i) {
    const KldResult& r = results[i];
    fmt::print("{:<24} {:>8.4f} {:>12} {:>10.6f} {:>10.6f} {:>8.4f} {:>10.4f}\n", labels[i], sizes[i].bpw,
               sizes[i].total_bytes, r.kld_mean, r.kld_p99, r.top1, r.ppl_quant);
  }

  CompareChart chart;
  chart.ref_label = model_label(a.ref);
  chart.ref_bpw = ref_size.bpw;
  chart.ref_ppl = ref_ppl;
  chart.file = a.file;
  chart.windows = windows;
  chart.ctx = a.win.ctx;
  for (size_t i = 0; i < a.models.size(); ++i)
    chart.models.push_back({labels[i], sizes[i].bpw, results[i].kld_mean, results[i].ppl_quant});
  io::write_file_atomic(a.svg, render_compare_svg(chart));
  fmt::print("chart: {}\n", a.svg);

  if (!a.json.empty()) {
    nlohmann::json j = {{"file", a.file},
                        {"ctx", a.win.ctx},
                        {"windows", windows},
                        {"positions", results.front().positions},
                        {"device", backend->name()},
                        {"ref_ppl", ref_ppl},
                        {"reference",
                         {{"model", a.ref},
                          {"label", model_label(a.ref)},
                          {"bpw", ref_size.bpw},
                          {"size_bytes", ref_size.total_bytes},
                          {"linear_bytes", ref_size.linear_bytes},
                          {"linear_params", ref_size.linear_params},
                          {"ppl", ref_ppl}}},
                        {"models", nlohmann::json::array()}};
    for (size_t i = 0; i < a.models.size(); ++i) {
      const KldResult& r = results[i];
      j["models"].push_back({{"model", a.models[i]},
                             {"label", labels[i]},
                             {"bpw", sizes[i].bpw},
                             {"size_bytes", sizes[i].total_bytes},
                             {"linear_bytes", sizes[i].linear_bytes},
                             {"linear_params", sizes[i].linear_params},
                             {"kld_mean", r.kld_mean},
                             {"kld_median", r.kld_median},
                             {"kld_p90", r.kld_p90},
                             {"kld_p99", r.kld_p99},
                             {"kld_max", r.kld_max},
                             {"top1", r.top1},
                             {"ppl", r.ppl_quant},
                             {"seconds", r.seconds}});
    }
    io::write_file_atomic(a.json, j.dump(2) + "\n");
    fmt::print("report: {}\n", a.json);
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

  auto* kld = eval->add_subcommand(
      "kld",
      "KL divergence of a model from its reference, top-1 agreement and both perplexities, over the positions "
      "`eval ppl` predicts (both models loaded, run window by window; the reference's tokenizer is used)");
  auto k = std::make_shared<KldArgs>();
  kld->add_option("-m,--model", k->model, "model directory to measure (e.g. a quantized one)")->required();
  kld->add_option("--ref", k->ref, "reference model directory (the original)")->required();
  kld->add_option("-f,--file", k->file, "text file")->required();
  kld->add_option("--ctx", k->win.ctx, "tokens per window")->check(CLI::Range(2, 1 << 20))->capture_default_str();
  kld->add_option("--chunks", k->win.chunks, "windows to evaluate (0 = all)")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  kld->add_flag("--json", k->json, "end with one JSON line: kld_mean, kld_p99, top1, ppl_ref, ppl_quant, ...");
  k->rt.add_to(*kld);
  kld->callback([&action, k] { action = [k] { return run_kld(*k); }; });

  auto* cmp = eval->add_subcommand(
      "compare",
      "Bits per weight, size, KLD, top-1 and PPL of several models against one reference; writes an SVG chart "
      "(KLD on a log axis and PPL, against bpw) and optionally a JSON report. The reference is loaded once and "
      "each model in turn; the reference's forward is re-run alongside each model (memory: reference + one model)");
  auto c = std::make_shared<CompareArgs>();
  cmp->add_option("--ref", c->ref, "reference model directory (the original)")->required();
  cmp->add_option("-m,--model", c->models, "a model directory to compare (repeat -m for each)")->required();
  cmp->add_option("-f,--file", c->file, "text file")->required();
  cmp->add_option("--ctx", c->win.ctx, "tokens per window")->check(CLI::Range(2, 1 << 20))->capture_default_str();
  cmp->add_option("--chunks", c->win.chunks, "windows to evaluate (0 = all)")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  cmp->add_option("--svg", c->svg, "chart to write (SVG)")->required();
  cmp->add_option("--json", c->json, "report to write (JSON): each model's bpw, size_bytes, kld_mean, ...");
  c->rt.add_to(*cmp);
  cmp->callback([&action, c] { action = [c] { return run_compare(*c); }; });
}

}  // namespace moeq::cli
