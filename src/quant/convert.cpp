#include "quant/convert.h"

#include <fmt/format.h>

#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/progress.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/weights.h"
#include "quant/quantize_layer.h"
#include "text/tokenizer.h"

namespace moeq {
namespace fs = std::filesystem;

namespace {

constexpr int kStateVersion = 1;
const char* kStateFile = "state.json";

// FNV-1a over bytes: a stable fingerprint of everything that determines the output, so that a
// resume with other inputs or options is refused instead of mixing two conversions.
uint64_t fnv1a(std::string_view s, uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::string shard_name(int index, int count) { return fmt::format("model-{:05d}-of-{:05d}.safetensors", index, count); }
std::string hidden_name(int layer) { return fmt::format("hidden-{:05d}.f32", layer); }

void write_hidden(const fs::path& p, const std::vector<float>& h) {
  io::AtomicFile f(p);
  f.write(h.data(), h.size() * sizeof(float));
  f.commit();
}

std::vector<float> read_hidden(const fs::path& p, size_t n) {
  std::ifstream in(p, std::ios::binary);
  std::vector<float> h(n);
  in.read(reinterpret_cast<char*>(h.data()), std::streamsize(n * sizeof(float)));
  if (!in || in.peek() != std::char_traits<char>::eof())
    fail("{}: calibration state is damaged (expected {} floats); remove the work directory and start again",
         p.string(), n);
  return h;
}

// Text files that travel with the model (tokenizer, chat template, generation defaults).
const char* kCopied[] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json",
                         "special_tokens_map.json"};

struct Plan {
  ModelConfig cfg;
  std::map<std::string, ModuleAssignment> assign;
  std::vector<int32_t> calib;
  int64_t n_seqs = 0;
  std::string fingerprint;
};

Plan make_plan(const ConvertOptions& o) {
  Plan p;
  p.cfg = ModelConfig::load(o.src);
  if (p.cfg.quantization.is_object() && p.cfg.quantization.value("quant_method", "") == "moeq")
    fail("{}: already quantized by moeq; convert from the original checkpoint", o.src.string());
  p.assign = o.recipe.resolve(linear_modules(p.cfg));
  if (o.calib_ctx < 2) fail("--calib-ctx must be at least 2, got {}", o.calib_ctx);
  if (o.calib_ctx > p.cfg.max_position_embeddings)
    fail("--calib-ctx {} exceeds the model's context of {}", o.calib_ctx, p.cfg.max_position_embeddings);
  if (o.calib_tokens < o.calib_ctx) fail("--calib-tokens ({}) must be at least --calib-ctx ({})", o.calib_tokens, o.calib_ctx);
  const std::string text = io::read_text_file(o.calib_file);
  const text::Tokenizer tok = text::Tokenizer::from_model_dir(o.src);
  p.calib = tok.encode(text);
  p.n_seqs = std::min<int64_t>(o.calib_tokens, int64_t(p.calib.size())) / o.calib_ctx;
  if (p.n_seqs == 0)
    fail("{}: {} tokens, fewer than one calibration sequence of {}", o.calib_file.string(), p.calib.size(), o.calib_ctx);
  p.calib.resize(size_t(p.n_seqs * o.calib_ctx));
  const nlohmann::json fp = {{"src", fs::absolute(o.src).lexically_normal().string()},
                             {"config", p.cfg.raw},
                             {"recipe", o.recipe.to_json()},
                             {"calib_tokens_hash", fnv1a(std::string_view(reinterpret_cast<const char*>(p.calib.data()),
                                                                          p.calib.size() * sizeof(int32_t)))},
                             {"calib_ctx", o.calib_ctx},
                             {"all_experts", o.calib.all_experts},
                             {"sample_rows", o.calib.sample_rows},
                             {"batch_tokens", o.calib.batch_tokens}};
  p.fingerprint = fmt::format("{:016x}", fnv1a(fp.dump()));
  return p;
}

// The final shard: embedding, lm_head, final norm.
void write_head_shard(const Plan& p, const io::Checkpoint& ck, const fs::path& path, const ChannelStats& head_in) {
  const ModelConfig& c = p.cfg;
  io::SafetensorsWriter w;
  nlohmann::json modules = nlohmann::json::object();
  auto put = [&](const char* module, const std::vector<float>& importance) {
    const QuantizedWeight orig = load_linear(ck, c, module, c.vocab_size, c.hidden_size);
    const std::string& fmt = p.assign.at(module).format;
    const QuantizedWeight q =
        fmt == orig.format ? orig : quantize_module(fmt, FloatLinear::from(orig), importance);
    modules[module] = emit_weight(module, q, w);
  };
  put(kEmbedModule, {});  // a lookup table: every input channel is a token, no activation statistics
  if (!c.tie_word_embeddings) put(kLmHeadModule, head_in.count ? head_in.mean_sq() : std::vector<float>{});
  w.add("model.norm.weight", to_host_array(to_vector(ck.get("model.norm.weight"))));
  w.set_metadata("moeq.records", nlohmann::json({{"modules", modules}}).dump());
  w.write(path);
}

}  // namespace

ConvertSummary convert_model(const ConvertOptions& o) {
  // ---- everything checkable before any work ------------------------------------------------
  if (o.dst.empty()) fail("no output directory given");
  if (fs::exists(o.dst)) fail("{}: already exists (choose another output or remove it)", o.dst.string());
  const fs::path work = o.work_dir.empty() ? fs::path(o.dst.string() + ".work") : o.work_dir;
  const Plan plan = make_plan(o);
  const io::Checkpoint ck = io::Checkpoint::open(o.src);
  const ModelConfig& c = plan.cfg;
  const int L = c.num_layers, n_shards = L + 1;
  const fs::path out = work / "out";

  ConvertSummary summary;
  int start = 0;
  nlohmann::json state;
  if (fs::exists(work / kStateFile)) {
    if (!o.resume)
      fail("{}: holds an unfinished conversion; add --resume to continue it, or remove it to start again",
           work.string());
    state = io::read_json_file(work / kStateFile);
    if (state.value("version", 0) != kStateVersion || state.value("fingerprint", "") != plan.fingerprint)
      fail("{}: was started with other inputs or options; remove it to start again", work.string());
    start = state.value("next_layer", 0);
    summary.layers_done_before = start;
  } else {
    if (fs::exists(work) && !fs::is_empty(work))
      fail("{}: exists and is not a moeq work directory; remove it or pass --work-dir", work.string());
    fs::create_directories(out);
    state = {{"version", kStateVersion}, {"fingerprint", plan.fingerprint}, {"next_layer", 0}};
  }
  fs::create_directories(out);

  // ---- calibration state: the residual stream entering layer `start` ------------------------
  const int64_t H = c.hidden_size, T = plan.n_seqs * o.calib_ctx;
  std::vector<float> h;
  if (start == 0) {
    const QuantizedWeight embed = load_linear(ck, c, kEmbedModule, c.vocab_size, H);
    h.resize(size_t(T * H));
    for (int64_t t = 0; t < T; ++t)
      format_ops(embed.format).dequantize_rows(embed, plan.calib[size_t(t)], 1, &h[size_t(t * H)]);
  } else if (start <= L) {
    h = read_hidden(work / hidden_name(start), size_t(T * H));
  }

  Progress bar("convert", n_shards, o.progress);
  bar.update(start, start ? fmt::format("(resumed at layer {})", start) : "");
  const LayerCalibrator calibrator(c, o.calib, plan.n_seqs, o.calib_ctx);
  for (int l = start; l < L; ++l) {
    const HostLayer orig = load_host_layer(ck, c, l);
    const LayerCalibration cal = calibrator.run(l, orig, h);
    io::SafetensorsWriter w;
    const nlohmann::json records = quantize_layer(c, l, orig, cal, plan.assign, o.recipe.awq_grid, w);
    w.set_metadata("moeq.records", records.dump());
    // Order matters for --resume: the shard, then the state it leads to, then the state file.
    w.write(out / shard_name(l + 1, n_shards));
    write_hidden(work / hidden_name(l + 1), h);
    state["next_layer"] = l + 1;
    io::write_file_atomic(work / kStateFile, state.dump(1));
    fs::remove(work / hidden_name(l));
    bar.update(l + 1, fmt::format("layer {}", l));
  }

  // ---- the head shard, config, index, tokenizer files; then the output appears at once ------
  // The lm_head input statistics: the final norm of the last residual stream.
  ChannelStats head_in;
  if (!c.tie_word_embeddings) {
    const std::vector<float> w = to_vector(ck.get("model.norm.weight"));
    std::vector<float> x(static_cast<size_t>(H));
    for (int64_t t = 0; t < T; ++t) {
      const float* r = &h[size_t(t * H)];
      double ms = 0;
      for (int64_t j = 0; j < H; ++j) ms += double(r[j]) * r[j];
      const float inv = float(1.0 / std::sqrt(ms / double(H) + c.rms_norm_eps));
      for (int64_t j = 0; j < H; ++j) x[size_t(j)] = w[size_t(j)] * (r[j] * inv);
      head_in.add(x.data(), 1, H);
    }
  }
  write_head_shard(plan, ck, out / shard_name(n_shards, n_shards), head_in);

  nlohmann::json modules = nlohmann::json::object(), awq = nlohmann::json::array(), weight_map = nlohmann::json::object();
  std::vector<std::vector<int64_t>> routed;
  int64_t stats_min = INT64_MAX;
  uint64_t total_bytes = 0, linear_bytes = 0;
  for (int s = 1; s <= n_shards; ++s) {
    const io::SafetensorsFile f = io::SafetensorsFile::open(out / shard_name(s, n_shards));
    const nlohmann::json rec = nlohmann::json::parse(f.metadata().at("moeq.records"));
    for (const auto& [name, r] : rec["modules"].items()) modules[name] = r;
    if (rec.contains("awq")) awq.push_back(rec["awq"]);
    if (rec.contains("routed")) routed.push_back(rec["routed"].get<std::vector<int64_t>>());
    if (rec.contains("stats_tokens_min")) stats_min = std::min(stats_min, rec["stats_tokens_min"].get<int64_t>());
    for (const auto& [name, info] : f.tensors()) {
      weight_map[name] = shard_name(s, n_shards);
      total_bytes += info.nbytes;
      // Linear weights are stored as <module>.<part>; norms and biases as <name>.weight / bias.
      for (const char* part : {".qweight", ".scales", ".codebook"})
        if (name.ends_with(part)) linear_bytes += info.nbytes;
    }
  }
  int64_t params = 0;
  for (const LinearSpec& m : linear_modules(c)) params += m.rows * m.cols;
  summary.bytes = total_bytes;
  summary.bits_per_weight = 8.0 * double(linear_bytes) / double(params);
  summary.coverage = expert_coverage(routed);

  nlohmann::json cfg = c.raw;
  cfg["quantization_config"] = {
      {"quant_method", "moeq"},
      {"version", 1},
      {"recipe", o.recipe.to_json()},
      {"bits_per_weight", summary.bits_per_weight},
      {"calibration",
       {{"file", o.calib_file.filename().string()},
        {"tokens", T},
        {"ctx", o.calib_ctx},
        {"all_experts", o.calib.all_experts},
        {"expert_tokens",
         {{"min", summary.coverage.min},
          {"median", summary.coverage.median},
          {"max", summary.coverage.max},
          {"experts_without_tokens", summary.coverage.experts_without_tokens}}},
        // The fewest tokens behind any expert's statistics: T with --calib-all-experts.
        {"expert_statistics_tokens_min", stats_min}}},
      {"awq", awq},
      {"modules", modules}};
  io::write_file_atomic(out / "config.json", cfg.dump(1) + "\n");
  io::write_file_atomic(out / "model.safetensors.index.json",
                        nlohmann::json({{"metadata", {{"total_size", total_bytes}}}, {"weight_map", weight_map}}).dump(1) + "\n");
  for (const char* name : kCopied)
    if (fs::exists(o.src / name)) fs::copy_file(o.src / name, out / name, fs::copy_options::overwrite_existing);
  bar.finish("done");

  // The result must load (every tensor present, every format valid) before it appears.
  {
    const ModelConfig qc = ModelConfig::load(out);
    load_host_weights(io::Checkpoint::open(out), qc);
  }
  std::error_code ec;
  fs::rename(out, o.dst, ec);
  if (ec) {  // the work directory is on another file system: copy next to the target, then rename
    const fs::path partial = o.dst.string() + ".partial";
    fs::remove_all(partial);
    fs::copy(out, partial, fs::copy_options::recursive);
    fs::rename(partial, o.dst);
  }
  fs::remove_all(work);
  return summary;
}

}  // namespace moeq
