// moeq bench --synthetic minimax-m2 [--layers N] [--full-depth] --preset P --prompt 2048 --gen 128
// [--batch B]: random packed weights with the real dimensions, made on the device; prefill and decode
// throughput, bytes read per decoded token, achieved bandwidth and its fraction of the copy
// bandwidth measured in the same run; optionally a per-op breakdown of one decode step.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <iostream>
#include <numeric>
#include <random>

#include "backend/backend.h"
#include "cli/commands.h"
#include "core/error.h"
#include "model/known_configs.h"
#include "model/minimax_m2.h"
#include "quant/formats/synthetic.h"
#include "quant/recipe.h"

namespace moeq::cli {
namespace {

using clk = std::chrono::steady_clock;

struct BenchArgs {
  std::string synthetic = "minimax-m2", preset = "mq4", recipe;
  int layers = 0, prompt = 2048, gen = 128, batch = 1;
  bool no_graphs = false, profile = false, json = false, full_depth = false, sync_steps = false;
  RuntimeOptions rt;
};

double since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

int64_t weight_bytes(const std::string& format, int64_t rows, int64_t cols) {
  int64_t b = 0;
  for (const SyntheticPart& p : synthetic_layout(format, rows, cols).parts) {
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    b += n * int64_t(dtype_size(p.dtype));
  }
  return b;
}

// Bytes of weights per layer (all experts) and read per decoded token (active experts), by format.
struct Footprint {
  int64_t layer_weights = 0, layer_read = 0, head = 0, embed_row = 0;
};
Footprint footprint(const ModelConfig& c, const std::function<std::string(const std::string&)>& fmt) {
  Footprint f;
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  const int64_t attn = weight_bytes(fmt(attn_module(0, "q_proj")), c.q_dim(), H) +
                       weight_bytes(fmt(attn_module(0, "k_proj")), c.kv_dim(), H) +
                       weight_bytes(fmt(attn_module(0, "v_proj")), c.kv_dim(), H) +
                       weight_bytes(fmt(attn_module(0, "o_proj")), H, c.q_dim()) +
                       weight_bytes(fmt(router_module(0)), c.num_experts, H);
  const int64_t expert = weight_bytes(fmt(expert_module(0, 0, "w1")), I, H) +
                         weight_bytes(fmt(expert_module(0, 0, "w2")), H, I) +
                         weight_bytes(fmt(expert_module(0, 0, "w3")), I, H);
  f.layer_weights = attn + expert * c.num_experts;
  f.layer_read = attn + expert * c.experts_per_tok;
  f.head = weight_bytes(fmt(kLmHeadModule), c.vocab_size, H);
  f.embed_row = weight_bytes(fmt(kEmbedModule), c.vocab_size, H) / c.vocab_size;
  return f;
}

int run_bench(const BenchArgs& a) {
  a.rt.apply();
  if (a.prompt < 1 || a.gen < 1 || a.batch < 1) fail("--prompt, --gen and --batch must be positive");
  const Recipe recipe = a.recipe.empty() ? Recipe::preset(a.preset) : Recipe::load(a.recipe);
  auto backend = make_backend(a.rt.device);
  Backend& be = *backend;
  ModelConfig cfg = known_config(a.synthetic, a.layers);
  // The full model's formats are those of layer 0 for every layer (presets assign by pattern).
  const auto full = known_config(a.synthetic);
  std::vector<LinearSpec> mods = linear_modules(known_config(a.synthetic, 1));
  const auto assign = recipe.resolve(mods);
  const auto format_of = [&](const std::string& module) {
    std::string m = module;
    // Map any layer / expert index onto those resolved for layer 0 / expert 0.
    const auto layer = m.find("model.layers.");
    if (layer != std::string::npos) {
      const auto dot = m.find('.', layer + 13);
      m = m.substr(0, layer + 13) + "0" + m.substr(dot);
    }
    const auto ex = m.find("experts.");
    if (ex != std::string::npos) {
      const auto dot = m.find('.', ex + 8);
      m = m.substr(0, ex + 8) + "0" + m.substr(dot);
    }
    return assign.at(m).format;
  };
  const Footprint fp = footprint(cfg, format_of);
  const int64_t ctx = a.prompt + a.gen + 2;
  const int64_t kv_per_layer = int64_t(a.batch) * ctx * cfg.kv_dim() * 4 * 2;
  // Layers whose weights are made: --layers, else as many as fit (with --full-depth, next to the
  // cache of every layer), at most the model's own.
  int sets = std::min(a.layers, full.num_layers);
  if (a.layers <= 0) {
    int64_t avail = int64_t(double(be.memory_available()) * 0.9) - 2 * fp.head - (int64_t(3) << 30);
    if (a.full_depth) avail -= kv_per_layer * full.num_layers;
    const int64_t fit = avail / (fp.layer_weights + (a.full_depth ? 0 : kv_per_layer));
    if (fit < 1) fail("not even one layer fits in the backend's memory");
    sets = int(std::min<int64_t>(fit, full.num_layers));
  }
  // Layers run: those made, or with --full-depth all of the model's, layer l on weight set l % sets.
  cfg = known_config(a.synthetic, a.full_depth ? full.num_layers : sets);
  const int L = cfg.num_layers;
  fmt::print("moeq bench: {} synthetic, {} of {} layers{}, recipe '{}', device {}\n", a.synthetic, L, full.num_layers,
             sets < L ? fmt::format(" ({} weight set{}: layer l runs on set l mod {})", sets, sets > 1 ? "s" : "", sets) : "", recipe.name,
             be.name());
  fmt::print("formats: experts w1/w3 {} w2 {}, attention {}, router {}, lm_head {}\n",
             format_of(expert_module(0, 0, "w1")), format_of(expert_module(0, 0, "w2")),
             format_of(attn_module(0, "q_proj")), format_of(router_module(0)), format_of(kLmHeadModule));
  const double bw = be.copy_bandwidth();
  fmt::print("copy bandwidth (measured here, bytes read + written): {:.0f} GB/s\n", bw / 1e9);

  auto t0 = clk::now();
  auto model = Model::synthetic(cfg, be, format_of, 1, sets);
  model->set_graphs(!a.no_graphs);
  be.synchronize();
  fmt::print("weights: {:.2f} GB on the device, made in {:.1f} s\n",
             double(fp.layer_weights * sets + 2 * fp.head) / 1e9, since(t0));
  KVCache kv = model->make_cache(a.batch, int(ctx));

  std::vector<int32_t> ids(static_cast<size_t>(a.prompt)), pos(static_cast<size_t>(a.prompt));
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(1000, cfg.vocab_size - 1);
  for (auto& t : ids) t = tok(rng);
  std::iota(pos.begin(), pos.end(), 0);
  const int32_t last = a.prompt - 1;
  // Warm-up, not timed: a prefill of the full prompt, so that kernels are loaded and every scratch
  // buffer (activations, a library's workspace and handles) is sized before the timed one.
  {
    std::vector<int32_t> s0(static_cast<size_t>(a.prompt), 0);
    model->forward(ids, pos, s0, std::span<const int32_t>(&last, 1), kv);
    model->argmax_last();
  }
  // Prefill each sequence of the batch (the first one's time is the batch-1 prefill figure).
  std::vector<double> prefill_s;
  std::vector<int32_t> next(static_cast<size_t>(a.batch));
  for (int b = 0; b < a.batch; ++b) {
    std::vector<int32_t> slots(static_cast<size_t>(a.prompt), b);
    t0 = clk::now();
    model->forward(ids, pos, slots, std::span<const int32_t>(&last, 1), kv);
    next[size_t(b)] = model->argmax_last()[0];
    prefill_s.push_back(since(t0));
  }
  // Decode: all sequences one token per step, greedy on the device, tokens back to the host.
  std::vector<int32_t> dpos(static_cast<size_t>(a.batch)), dslots(static_cast<size_t>(a.batch)),
      rows(static_cast<size_t>(a.batch));
  std::iota(dslots.begin(), dslots.end(), 0);
  std::iota(rows.begin(), rows.end(), 0);
  auto step = [&](int p) {
    std::fill(dpos.begin(), dpos.end(), p);
    model->forward(next, dpos, dslots, rows, kv);
    next = model->argmax_last();
  };
  step(a.prompt);  // eager
  step(a.prompt + 1);  // captured (graphs)
  t0 = clk::now();
  if (a.sync_steps) {
    for (int i = 0; i < a.gen; ++i) step(a.prompt + 2 + i);
  } else {
    // Pipelined, as a server decodes: step i + 1 runs on step i's tokens where the device left
    // them, queued before the host reads them (Model::argmax_feed), so the device never waits for
    // the host between steps.
    std::fill(dpos.begin(), dpos.end(), a.prompt + 2);
    model->forward(next, dpos, dslots, rows, kv);
    Model::PendingTokens pending = model->argmax_feed();
    for (int i = 0; i < a.gen; ++i) {
      Model::PendingTokens after;
      if (i + 1 < a.gen) {
        std::fill(dpos.begin(), dpos.end(), a.prompt + 3 + i);
        model->forward_fed(dpos, dslots, kv);
        after = model->argmax_feed();
      }
      next = model->tokens(pending);
      pending = after;
    }
  }
  const double decode_s = since(t0);

  const double step_s = decode_s / a.gen;
  const double pre_tps = a.prompt / prefill_s[0];
  const double agg_tps = double(a.batch) * a.gen / decode_s;
  // Bytes per decode step: weights of the layers (active experts of one token; a batch reads
  // the experts its tokens chose, at most all of them) + lm_head + the KV cache read.
  const double avg_pos = a.prompt + 2 + a.gen / 2.0;
  const int64_t kv_read = int64_t(avg_pos * cfg.kv_dim() * 4 * 2) * L * a.batch;
  const int64_t weights_read = (fp.layer_read * L + fp.head + fp.embed_row);
  const double bytes_step = double(weights_read + kv_read);
  const double achieved = bytes_step / step_s;
  fmt::print("prefill: {} tokens in {:.3f} s = {:.0f} tok/s ({} layers){}\n", a.prompt, prefill_s[0], pre_tps, L,
             a.batch > 1 ? fmt::format(" (mean over {} sequences {:.0f} tok/s)", a.batch,
                                       a.prompt * a.batch / std::accumulate(prefill_s.begin(), prefill_s.end(), 0.0))
                         : "");
  fmt::print("decode: batch {}, {} steps, {:.3f} ms/step = {:.1f} tok/s per sequence, {:.1f} tok/s aggregate{}\n",
             a.batch, a.gen, step_s * 1e3, 1.0 / step_s, agg_tps, a.no_graphs || !be.supports_graphs() ? "" : " (CUDA graphs)");
  if (a.batch == 1) {
    fmt::print("bytes per token: {:.3f} GB (weights {:.3f} GB + KV cache {:.3f} GB)\n", bytes_step / 1e9,
               double(weights_read) / 1e9, double(kv_read) / 1e9);
    fmt::print("achieved {:.0f} GB/s = {:.1f}% of the measured copy bandwidth\n", achieved / 1e9, 100 * achieved / bw);
    const double bytes_full = double(fp.layer_read * full.num_layers + fp.head) +
                              avg_pos * full.kv_dim() * 4 * 2 * full.num_layers;
    if (L < full.num_layers)
      fmt::print("full {}-layer model at the same efficiency: {:.1f} tok/s (ceiling at 100%: {:.1f} tok/s)\n",
                 full.num_layers, achieved / bytes_full, bw / bytes_full);
    else
      fmt::print("ceiling at 100% of the copy bandwidth: {:.1f} tok/s\n", bw / bytes_full);
  }
  // Per-op times of one decode step (graphs off, so each op is timed apart) and of one prefill.
  auto report = [&](const char* what, const std::function<void()>& run) {
    model->set_graphs(false);
    be.set_profiling(true);
    run();
    auto prof = be.profile();
    be.set_profiling(false);
    model->set_graphs(!a.no_graphs);
    if (prof.empty()) fmt::print("per-op timing is not available on the {} backend\n", be.name());
    std::sort(prof.begin(), prof.end(), [](auto& x, auto& y) { return x.second > y.second; });
    double total = 0;
    for (auto& [n, s] : prof) total += s;
    if (!prof.empty()) fmt::print("per-op time of {} (events around each op): {:.3f} ms\n", what, total * 1e3);
    for (auto& [n, s] : prof) fmt::print("  {:<48} {:8.3f} ms {:5.1f}%\n", n, s * 1e3, 100 * s / total);
  };
  if (a.profile) {
    report("one decode step", [&] { step(a.prompt + a.gen + 1); });
    report("one prefill", [&] {
      std::vector<int32_t> slots(static_cast<size_t>(a.prompt), 0);
      model->forward(ids, pos, slots, std::span<const int32_t>(&last, 1), kv);
      model->argmax_last();
    });
  }
  if (a.json) {
    nlohmann::json j = {{"synthetic", a.synthetic}, {"layers", L},        {"weight_sets", sets},
                        {"recipe", recipe.name},
                        {"device", be.name()},      {"batch", a.batch},   {"prompt", a.prompt},
                        {"gen", a.gen},             {"copy_gbs", bw / 1e9}, {"prefill_tok_s", pre_tps},
                        {"decode_ms_per_step", step_s * 1e3}, {"decode_tok_s_aggregate", agg_tps},
                        {"bytes_per_step", bytes_step}, {"achieved_gbs", achieved / 1e9},
                        {"fraction_of_copy", achieved / bw}};
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

}  // namespace

void add_bench(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("bench", "Throughput on synthetic weights with a real model's dimensions");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("--synthetic", a->synthetic, "minimax-m2 (real dimensions) or tiny-m2");
  cmd->add_option("--layers", a->layers, "layers to build (default: as many as fit, at most the model's)")
      ->check(CLI::Range(0, 1000));
  cmd->add_flag("--full-depth", a->full_depth,
                "run all of the model's layers, layer l on the weights of built layer l mod --layers (a MiniMax-M2 "
                "layer's bytes far exceed the L2 cache, so each layer still reads its weights from memory)");
  cmd->add_option("--preset", a->preset, "formats: a convert preset (default mq4)");
  cmd->add_option("--recipe", a->recipe, "formats: a recipe file");
  cmd->add_option("--prompt", a->prompt, "prompt tokens per sequence")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--gen", a->gen, "decode steps")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--batch", a->batch, "sequences decoded together")->check(CLI::Range(1, 4096));
  cmd->add_flag("--no-graphs", a->no_graphs, "launch kernels one by one instead of replaying CUDA graphs");
  cmd->add_flag("--sync-steps", a->sync_steps,
                "read each decode step's tokens before queueing the next (default: the next step is queued "
                "first, on the tokens left on the device)");
  cmd->add_flag("--profile", a->profile, "per-op time of one decode step");
  cmd->add_flag("--json", a->json, "end with one JSON line of the figures");
  a->rt.add_to(*cmd);
  cmd->callback([&action, a] { action = [a] { return run_bench(*a); }; });
}

}  // namespace moeq::cli
