// The typed model configuration read from a Hugging Face config.json (MiniMax-M2 family).
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace moeq {

struct ModelConfig {
  std::string model_type;
  int vocab_size = 0;
  int hidden_size = 0;
  int intermediate_size = 0;  // per expert
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int rotary_dim = 0;  // leading dims of each head that RoPE rotates (partial rotary)
  double rope_theta = 10000.0;
  float rms_norm_eps = 1e-6f;
  int num_experts = 0;
  int experts_per_tok = 0;
  bool use_qk_norm = true;  // RMSNorm over the whole q and k projections ("per_layer")
  bool use_routing_bias = true;
  bool tie_word_embeddings = false;
  int max_position_embeddings = 0;
  int bos_token_id = -1;
  std::vector<int> eos_token_ids;
  // The checkpoint's own quantization_config (fp8 block size, or moeq's per-module formats).
  nlohmann::json quantization;
  nlohmann::json raw;  // the whole config.json, kept for writing converted models

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }

  // Throws moeq::Error naming `origin` and the offending key.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& origin);
  static ModelConfig load(const std::filesystem::path& model_dir);  // DIR/config.json
};

}  // namespace moeq
