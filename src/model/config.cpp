#include "model/config.h"

#include <cmath>

#include "core/error.h"
#include "io/json_file.h"

namespace moeq {
namespace {

// Small typed accessors that name the key in every error.
struct Reader {
  const nlohmann::json& j;
  const std::string& origin;

  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }

  int positive_int(const char* key) const {
    if (!has(key)) fail("{}: missing '{}'", origin, key);
    const auto& v = j[key];
    if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > (int64_t(1) << 30))
      fail("{}: '{}' must be a positive integer, got {}", origin, key, v.dump());
    return int(v.get<int64_t>());
  }
  int positive_int_or(const char* key, int dflt) const { return has(key) ? positive_int(key) : dflt; }

  double number(const char* key, double dflt) const { return number_in(j, key, dflt); }
  double number_in(const nlohmann::json& obj, const char* key, double dflt) const {
    if (!obj.contains(key) || obj[key].is_null()) return dflt;
    if (!obj[key].is_number() || !std::isfinite(obj[key].get<double>()))
      fail("{}: '{}' must be a number, got {}", origin, key, obj[key].dump());
    return obj[key].get<double>();
  }
  bool boolean(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    if (!j[key].is_boolean()) fail("{}: '{}' must be true or false, got {}", origin, key, j[key].dump());
    return j[key].get<bool>();
  }
  std::string string(const char* key, const std::string& dflt) const {
    if (!has(key)) return dflt;
    if (!j[key].is_string()) fail("{}: '{}' must be a string, got {}", origin, key, j[key].dump());
    return j[key].get<std::string>();
  }
};

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) fail("{}: not a JSON object", origin);
  const Reader r{j, origin};
  ModelConfig c;
  c.raw = j;
  c.model_type = r.string("model_type", "");
  if (c.model_type != "minimax_m2" && c.model_type != "minimax")
    fail("{}: unsupported 'model_type' \"{}\" (moeq runs minimax_m2)", origin, c.model_type);

  c.vocab_size = r.positive_int("vocab_size");
  c.hidden_size = r.positive_int("hidden_size");
  c.intermediate_size = r.positive_int("intermediate_size");
  c.num_layers = r.positive_int("num_hidden_layers");
  c.num_heads = r.positive_int("num_attention_heads");
  c.num_kv_heads = r.positive_int_or("num_key_value_heads", c.num_heads);
  if (c.num_heads % c.num_kv_heads != 0)
    fail("{}: 'num_attention_heads' ({}) is not a multiple of 'num_key_value_heads' ({})", origin, c.num_heads,
         c.num_kv_heads);
  c.head_dim = r.positive_int_or("head_dim", c.hidden_size / c.num_heads);
  c.num_experts = r.positive_int("num_local_experts");
  c.experts_per_tok = r.positive_int("num_experts_per_tok");
  if (c.experts_per_tok > c.num_experts)
    fail("{}: 'num_experts_per_tok' ({}) exceeds 'num_local_experts' ({})", origin, c.experts_per_tok, c.num_experts);
  c.max_position_embeddings = r.positive_int_or("max_position_embeddings", 4096);

  const double eps = r.number("rms_norm_eps", 1e-6);
  if (!(eps > 0 && eps < 1)) fail("{}: 'rms_norm_eps' must be in (0, 1), got {}", origin, eps);
  c.rms_norm_eps = float(eps);

  if (const std::string act = r.string("hidden_act", "silu"); act != "silu")
    fail("{}: unsupported 'hidden_act' \"{}\" (only silu)", origin, act);
  if (const std::string sf = r.string("scoring_func", "sigmoid"); sf != "sigmoid")
    fail("{}: unsupported 'scoring_func' \"{}\" (only sigmoid)", origin, sf);
  c.use_qk_norm = r.boolean("use_qk_norm", true);
  if (const std::string qn = r.string("qk_norm_type", "per_layer"); qn != "per_layer")
    fail("{}: unsupported 'qk_norm_type' \"{}\" (only per_layer: RMSNorm over the whole projection)", origin, qn);
  c.use_routing_bias = r.boolean("use_routing_bias", true);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  if (r.has("shared_intermediate_size") && r.j["shared_intermediate_size"] != 0)
    fail("{}: 'shared_intermediate_size' must be 0 (shared experts are not supported)", origin);

  // RoPE: rope_parameters (newer transformers) wins over the original top-level keys; where both
  // are given they must agree.
  double theta = r.number("rope_theta", 10000.0);
  double factor = r.number("partial_rotary_factor", 0.0);
  if (r.has("rope_parameters")) {
    const auto& rp = j["rope_parameters"];
    if (!rp.is_object()) fail("{}: 'rope_parameters' must be an object", origin);
    if (rp.contains("rope_type") && rp["rope_type"] != "default")
      fail("{}: unsupported 'rope_parameters.rope_type' {} (only default)", origin, rp["rope_type"].dump());
    theta = r.number_in(rp, "rope_theta", theta);
    factor = r.number_in(rp, "partial_rotary_factor", factor);
  }
  if (r.has("rope_scaling")) fail("{}: unsupported 'rope_scaling' (only default RoPE)", origin);
  if (!(theta > 1)) fail("{}: 'rope_theta' must be > 1, got {}", origin, theta);
  c.rope_theta = theta;
  if (factor != 0.0) {
    if (!(factor > 0 && factor <= 1)) fail("{}: 'partial_rotary_factor' must be in (0, 1], got {}", origin, factor);
    c.rotary_dim = int(std::lround(c.head_dim * factor));
    if (r.has("rotary_dim") && r.positive_int("rotary_dim") != c.rotary_dim)
      fail("{}: 'rotary_dim' ({}) disagrees with 'partial_rotary_factor' x head_dim ({})", origin,
           r.positive_int("rotary_dim"), c.rotary_dim);
  } else {
    c.rotary_dim = r.positive_int_or("rotary_dim", c.head_dim);
  }
  if (c.rotary_dim % 2 != 0 || c.rotary_dim > c.head_dim)
    fail("{}: 'rotary_dim' ({}) must be even and at most head_dim ({})", origin, c.rotary_dim, c.head_dim);

  if (r.has("bos_token_id")) c.bos_token_id = int(j["bos_token_id"].get<int64_t>());
  if (r.has("eos_token_id")) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int>());
    else if (e.is_array())
      for (const auto& x : e) {
        if (!x.is_number_integer()) fail("{}: 'eos_token_id' must be integers", origin);
        c.eos_token_ids.push_back(x.get<int>());
      }
    else fail("{}: 'eos_token_id' must be an integer or a list", origin);
  }
  if (r.has("quantization_config")) {
    c.quantization = j["quantization_config"];
    if (!c.quantization.is_object()) fail("{}: 'quantization_config' must be an object", origin);
  }
  return c;
}

ModelConfig ModelConfig::load(const std::filesystem::path& model_dir) {
  const auto path = model_dir / "config.json";
  return from_json(io::read_json_file(path), path.string());
}

}  // namespace moeq
