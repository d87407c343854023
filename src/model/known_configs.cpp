#include "model/known_configs.h"

#include "core/error.h"

namespace moeq {

ModelConfig known_config(const std::string& name, int layers) {
  nlohmann::json j;
  if (name == "minimax-m2") {
    j = {{"model_type", "minimax_m2"}, {"vocab_size", 200064},      {"hidden_size", 3072},
         {"intermediate_size", 1536},  {"num_hidden_layers", 62},   {"num_attention_heads", 48},
         {"num_key_value_heads", 8},   {"head_dim", 128},           {"rotary_dim", 64},
         {"rope_theta", 5000000.0},    {"num_local_experts", 256},  {"num_experts_per_tok", 8},
         {"max_position_embeddings", 196608}, {"rms_norm_eps", 1e-6}, {"eos_token_id", 200020}};
  } else if (name == "tiny-m2") {
    j = {{"model_type", "minimax_m2"}, {"vocab_size", 8192},       {"hidden_size", 384},
         {"intermediate_size", 128},   {"num_hidden_layers", 6},   {"num_attention_heads", 12},
         {"num_key_value_heads", 2},   {"head_dim", 64},           {"rotary_dim", 32},
         {"rope_theta", 5000000.0},    {"num_local_experts", 32},  {"num_experts_per_tok", 4},
         {"max_position_embeddings", 8192}, {"rms_norm_eps", 1e-6}, {"eos_token_id", 2}};
  } else {
    fail("unknown synthetic model '{}' (minimax-m2 or tiny-m2)", name);
  }
  if (layers > 0) j["num_hidden_layers"] = layers;
  return ModelConfig::from_json(j, "synthetic " + name);
}

}  // namespace moeq
