// moeq inspect -m DIR: configuration, tensors (grouped by name pattern), dtypes and sizes.
#include <fmt/format.h>

#include <iostream>
#include <map>
#include <cctype>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "model/weights.h"

namespace moeq::cli {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) b /= 1024, ++u;
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.2f} {}", b, units[u]);
}

// "model.layers.12.block_sparse_moe.experts.7.w1.weight" -> "model.layers.*.block_sparse_moe.experts.*.w1.weight"
std::string pattern_of(const std::string& name) {
  std::string out;
  size_t i = 0;
  while (i < name.size()) {
    size_t j = i;
    while (j < name.size() && std::isdigit(static_cast<unsigned char>(name[j]))) ++j;
    const bool field = j > i && (i == 0 || name[i - 1] == '.') && (j == name.size() || name[j] == '.');
    if (field) {
      out += '*';
      i = j;
    } else {
      out += name[i++];
    }
  }
  return out;
}

struct Group {
  DType dtype;
  std::vector<int64_t> shape;
  int64_t count = 0;
  size_t bytes = 0;
  int64_t elements = 0;
};

// Quantized models: each linear module's format, grouped by name pattern, with bits per weight.
struct FormatGroup {
  std::string format;
  int64_t count = 0, params = 0;
  size_t bytes = 0;
};

void print_formats(const ModelConfig& c, const io::Checkpoint& ck, bool all, nlohmann::json* json) {
  const auto& mods = c.quantization["modules"];
  std::map<std::string, FormatGroup> groups;
  int64_t params = 0;
  size_t bytes = 0;
  for (const LinearSpec& m : linear_modules(c)) {
    const std::string fmt = mods.contains(m.name) ? mods[m.name].value("format", "?") : "?";
    size_t b = 0;
    for (const char* part : {".qweight", ".scales", ".codebook"})
      if (ck.has(m.name + part)) b += ck.info(m.name + part).nbytes;
    FormatGroup& g = groups[(all ? m.name : pattern_of(m.name)) + "|" + fmt];
    g.format = fmt;
    g.count += 1;
    g.params += m.rows * m.cols;
    g.bytes += b;
    params += m.rows * m.cols;
    bytes += b;
  }
  if (json) {
    for (const auto& [key, g] : groups)
      (*json)["formats"][key.substr(0, key.find('|'))][g.format] = {
          {"count", g.count}, {"params", g.params}, {"bytes", g.bytes}, {"bpw", 8.0 * double(g.bytes) / double(g.params)}};
    (*json)["linear_bits_per_weight"] = 8.0 * double(bytes) / double(params);
    return;
  }
  fmt::print("\n{:<64} {:>12} {:>7} {:>8} {:>12}\n", all ? "module" : "module (pattern)", "format", "count", "bpw", "size");
  for (const auto& [key, g] : groups)
    fmt::print("{:<64} {:>12} {:>7} {:>8.3f} {:>12}\n", key.substr(0, key.find('|')), g.format, g.count,
               8.0 * double(g.bytes) / double(g.params), human_bytes(double(g.bytes)));
  fmt::print("{:<64} {:>12} {:>7} {:>8.3f} {:>12}\n", "all linear modules", "", linear_modules(c).size(),
             8.0 * double(bytes) / double(params), human_bytes(double(bytes)));
}

int run_inspect(const std::string& dir, bool all, bool json) {
  const ModelConfig c = ModelConfig::load(dir);
  const io::Checkpoint ck = io::Checkpoint::open(dir);
  const bool quantized = c.quantization.is_object() && c.quantization.value("quant_method", "") == "moeq";
  std::map<std::string, Group> groups;
  size_t total_bytes = 0;
  int64_t params = 0;
  if (quantized)
    for (const LinearSpec& m : linear_modules(c)) params += m.rows * m.cols;
  for (const auto& name : ck.names()) {
    const io::TensorInfo& i = ck.info(name);
    int64_t n = 1;
    for (int64_t d : i.shape) n *= d;
    total_bytes += i.nbytes;
    // Scales are side data of their weight, not parameters.
    // Scales and codebooks are side data; packed .qweight elements are bytes, not weights (the
    // linear modules' parameters are counted from the config below).
    const bool side = name.ends_with("_scale_inv") || name.ends_with(".scales") || name.ends_with(".codebook") ||
                      name.ends_with(".qweight");
    if (!side) params += n;
    Group& g = groups[all ? name : pattern_of(name)];
    g.dtype = i.dtype;
    g.shape = i.shape;
    g.count += 1;
    g.bytes += i.nbytes;
    g.elements += n;
  }
  if (json) {
    nlohmann::json j;
    j["config"] = c.raw;
    j["parameters"] = params;
    j["bytes"] = total_bytes;
    j["shards"] = ck.shards().size();
    for (const auto& [name, g] : groups)
      j["tensors"][name] = {{"dtype", std::string(dtype_name(g.dtype))}, {"shape", g.shape}, {"count", g.count},
                            {"bytes", g.bytes}};
    if (quantized) print_formats(c, ck, all, &j);
    std::cout << j.dump(1) << "\n";
    return 0;
  }
  fmt::print("model      {} ({})\n", dir, c.model_type);
  fmt::print("layers     {}   hidden {}   vocab {}   context {}\n", c.num_layers, c.hidden_size, c.vocab_size,
             c.max_position_embeddings);
  fmt::print("attention  {} query heads, {} kv heads, head_dim {}, rotary_dim {}, theta {:g}, qk-norm {}\n",
             c.num_heads, c.num_kv_heads, c.head_dim, c.rotary_dim, c.rope_theta, c.use_qk_norm ? "yes" : "no");
  fmt::print("experts    {} routed, top-{}, intermediate {}, sigmoid router{}\n", c.num_experts, c.experts_per_tok,
             c.intermediate_size, c.use_routing_bias ? " with correction bias" : "");
  if (quantized) {
    const auto& q = c.quantization;
    fmt::print("quantized  moeq recipe '{}', {:.3f} bits per weight over the linear layers\n",
               q.contains("recipe") ? q["recipe"].value("name", "?") : "?", q.value("bits_per_weight", 0.0));
    if (q.contains("calibration")) fmt::print("calibration {}\n", q["calibration"].dump());
  } else if (!c.quantization.is_null()) {
    fmt::print("quantized  {}\n", c.quantization.dump());
  }
  fmt::print("weights    {} tensors in {} shard(s), {:.3f} M parameters, {}\n\n", ck.names().size(),
             ck.shards().size(), double(params) / 1e6, human_bytes(double(total_bytes)));
  fmt::print("{:<64} {:>8} {:>16} {:>7} {:>12}\n", all ? "tensor" : "tensor (pattern)", "dtype", "shape", "count",
             "size");
  for (const auto& [name, g] : groups)
    fmt::print("{:<64} {:>8} {:>16} {:>7} {:>12}\n", name, dtype_name(g.dtype), shape_str(g.shape), g.count,
               human_bytes(double(g.bytes)));
  if (quantized) print_formats(c, ck, all, nullptr);
  return 0;
}

}  // namespace

void add_inspect(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("inspect", "Print a model's configuration, tensors, dtypes and sizes");
  auto dir = std::make_shared<std::string>();
  auto all = std::make_shared<bool>(false);
  auto json = std::make_shared<bool>(false);
  cmd->add_option("-m,--model", *dir, "model directory")->required();
  cmd->add_flag("--all", *all, "list every tensor instead of grouping by name pattern");
  cmd->add_flag("--json", *json, "print one JSON object");
  cmd->callback([&action, dir, all, json] { action = [=] { return run_inspect(*dir, *all, *json); }; });
}

}  // namespace moeq::cli
