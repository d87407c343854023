#include "model/weights.h"

#include <fmt/format.h>

#include "core/error.h"

namespace moeq {

std::string layer_prefix(int layer) { return fmt::format("model.layers.{}.", layer); }
std::string attn_module(int layer, const char* proj) { return layer_prefix(layer) + "self_attn." + proj; }
std::string router_module(int layer) { return layer_prefix(layer) + "block_sparse_moe.gate"; }
std::string expert_module(int layer, int expert, const char* w) {
  return fmt::format("{}block_sparse_moe.experts.{}.{}", layer_prefix(layer), expert, w);
}

std::vector<LinearSpec> linear_modules(const ModelConfig& c) {
  std::vector<LinearSpec> out;
  out.push_back({kEmbedModule, c.vocab_size, c.hidden_size});
  for (int l = 0; l < c.num_layers; ++l) {
    out.push_back({attn_module(l, "q_proj"), c.q_dim(), c.hidden_size});
    out.push_back({attn_module(l, "k_proj"), c.kv_dim(), c.hidden_size});
    out.push_back({attn_module(l, "v_proj"), c.kv_dim(), c.hidden_size});
    out.push_back({attn_module(l, "o_proj"), c.hidden_size, c.q_dim()});
    out.push_back({router_module(l), c.num_experts, c.hidden_size});
    for (int e = 0; e < c.num_experts; ++e) {
      out.push_back({expert_module(l, e, "w1"), c.intermediate_size, c.hidden_size});
      out.push_back({expert_module(l, e, "w2"), c.hidden_size, c.intermediate_size});
      out.push_back({expert_module(l, e, "w3"), c.intermediate_size, c.hidden_size});
    }
  }
  if (!c.tie_word_embeddings) out.push_back({kLmHeadModule, c.vocab_size, c.hidden_size});
  return out;
}

namespace {

std::pair<int64_t, int64_t> fp8_block(const ModelConfig& c) {
  const auto& q = c.quantization;
  if (q.is_object() && q.contains("weight_block_size")) {
    const auto& b = q["weight_block_size"];
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer() ||
        b[0].get<int64_t>() <= 0 || b[1].get<int64_t>() <= 0)
      fail("config.json: 'quantization_config.weight_block_size' must be two positive integers");
    return {b[0].get<int64_t>(), b[1].get<int64_t>()};
  }
  return {128, 128};
}

}  // namespace

namespace {

bool is_moeq(const ModelConfig& c) {
  return c.quantization.is_object() && c.quantization.value("quant_method", "") == "moeq";
}

// moeq's layout: config.json quantization_config.modules[<module>] = {"format", "block"}; the
// parts are stored as "<module>.qweight", "<module>.scales", "<module>.codebook".
QuantizedWeight load_moeq_linear(const io::Checkpoint& ck, const ModelConfig& c, const std::string& module,
                                 int64_t rows, int64_t cols) {
  const std::string where = (ck.dir() / "config.json").string();
  const auto& mods = c.quantization.contains("modules") ? c.quantization["modules"] : nlohmann::json();
  if (!mods.is_object() || !mods.contains(module))
    fail("{}: quantization_config.modules has no record for '{}'", where, module);
  const auto& rec = mods[module];
  if (!rec.is_object() || !rec.contains("format") || !rec["format"].is_string())
    fail("{}: quantization_config.modules['{}'] has no format", where, module);
  QuantizedWeight q;
  q.format = rec["format"].get<std::string>();
  format_ops(q.format);  // an unknown format fails here, naming it
  q.rows = rows;
  q.cols = cols;
  if (rec.contains("block")) {
    const auto& b = rec["block"];
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer())
      fail("{}: quantization_config.modules['{}'].block must be two integers", where, module);
    q.block_rows = b[0].get<int64_t>();
    q.block_cols = b[1].get<int64_t>();
  }
  for (const char* part : {"qweight", "scales", "codebook"})
    if (ck.has(module + "." + part)) q.parts[part] = ck.get(module + "." + part);
  if (!q.parts.count("qweight")) fail("{}: missing tensor '{}.qweight'", ck.dir().string(), module);
  format_ops(q.format).validate(q, ck.file_of(module + ".qweight").string() + ": module '" + module + "'");
  return q;
}

}  // namespace

QuantizedWeight load_linear(const io::Checkpoint& ck, const ModelConfig& c, const std::string& module, int64_t rows,
                            int64_t cols) {
  if (is_moeq(c)) return load_moeq_linear(ck, c, module, rows, cols);
  const std::string wname = module + ".weight";
  if (!ck.has(wname)) fail("{}: missing tensor '{}'", ck.dir().string(), wname);
  const std::string where = ck.file_of(wname).string() + ": tensor '" + wname + "'";
  HostArray w = ck.require(wname, {rows, cols});
  QuantizedWeight q;
  if (w.dtype == DType::F8_E4M3) {
    const std::string sname = module + ".weight_scale_inv";
    if (!ck.has(sname)) fail("{}: missing tensor '{}'", ck.dir().string(), sname);
    const auto [br, bc] = fp8_block(c);
    q = make_fp8_block_weight(std::move(w), ck.get(sname), br, bc);
    format_ops(q.format).validate(q, ck.file_of(sname).string() + ": tensor '" + sname + "'");
  } else if (w.dtype == DType::BF16 || w.dtype == DType::F32) {
    q = make_dense_weight(std::move(w));
  } else {
    fail("{}: unsupported dtype {} for a linear weight", where, dtype_name(w.dtype));
  }
  return q;
}

HostArray load_vector_f32(const io::Checkpoint& ck, const std::string& name, int64_t n) {
  HostArray a = ck.require(name, {n});
  if (a.dtype == DType::F32) return a;
  if (a.dtype != DType::BF16 && a.dtype != DType::F16)
    fail("{}: tensor '{}' has dtype {}, expected a float type", ck.file_of(name).string(), name, dtype_name(a.dtype));
  HostArray out = HostArray::owned(DType::F32, {n});
  auto* dst = reinterpret_cast<float*>(out.mutable_data());
  for (int64_t i = 0; i < n; ++i) dst[i] = load_as_f32(a.dtype, a.data.get(), size_t(i));
  return out;
}

HostLayer load_host_layer(const io::Checkpoint& ck, const ModelConfig& c, int l) {
  HostLayer L;
  const std::string p = layer_prefix(l);
  const int64_t H = c.hidden_size;
  L.input_norm = load_vector_f32(ck, p + "input_layernorm.weight", H);
  L.post_norm = load_vector_f32(ck, p + "post_attention_layernorm.weight", H);
  if (c.use_qk_norm) {
    L.q_norm = load_vector_f32(ck, p + "self_attn.q_norm.weight", c.q_dim());
    L.k_norm = load_vector_f32(ck, p + "self_attn.k_norm.weight", c.kv_dim());
  }
  if (c.use_routing_bias) {
    L.router_bias = load_vector_f32(ck, p + "block_sparse_moe.e_score_correction_bias", c.num_experts);
  } else {
    L.router_bias = HostArray::owned(DType::F32, {c.num_experts});
  }
  L.q = load_linear(ck, c, attn_module(l, "q_proj"), c.q_dim(), H);
  L.k = load_linear(ck, c, attn_module(l, "k_proj"), c.kv_dim(), H);
  L.v = load_linear(ck, c, attn_module(l, "v_proj"), c.kv_dim(), H);
  L.o = load_linear(ck, c, attn_module(l, "o_proj"), H, c.q_dim());
  L.gate = load_linear(ck, c, router_module(l), c.num_experts, H);
  for (int e = 0; e < c.num_experts; ++e) {
    L.w1.push_back(load_linear(ck, c, expert_module(l, e, "w1"), c.intermediate_size, H));
    L.w2.push_back(load_linear(ck, c, expert_module(l, e, "w2"), H, c.intermediate_size));
    L.w3.push_back(load_linear(ck, c, expert_module(l, e, "w3"), c.intermediate_size, H));
  }
  return L;
}

HostWeights load_host_weights(const io::Checkpoint& ck, const ModelConfig& c) {
  HostWeights w;
  w.embed = load_linear(ck, c, kEmbedModule, c.vocab_size, c.hidden_size);
  w.lm_head = c.tie_word_embeddings ? w.embed : load_linear(ck, c, kLmHeadModule, c.vocab_size, c.hidden_size);
  w.final_norm = load_vector_f32(ck, "model.norm.weight", c.hidden_size);
  for (int l = 0; l < c.num_layers; ++l) w.layers.push_back(load_host_layer(ck, c, l));
  return w;
}

}  // namespace moeq
