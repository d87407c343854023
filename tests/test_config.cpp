#include <gtest/gtest.h>

#include "core/error.h"
#include "io/json_file.h"
#include "model/config.h"
#include "support/test_support.h"

using namespace moeq;

namespace {
nlohmann::json tiny() { return io::read_json_file(test::tiny_model_dir() / "config.json"); }
std::string error_of(const nlohmann::json& j) {
  try {
    ModelConfig::from_json(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Config, TinyModel) {
  const ModelConfig c = ModelConfig::load(test::tiny_model_dir());
  EXPECT_EQ(c.num_layers, 6);
  EXPECT_EQ(c.hidden_size, 384);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.rotary_dim, 32);
  EXPECT_EQ(c.rope_theta, 5e6);
  EXPECT_EQ(c.num_experts, 32);
  EXPECT_EQ(c.experts_per_tok, 4);
  EXPECT_EQ(c.q_dim(), 768);
  EXPECT_EQ(c.kv_dim(), 128);
  EXPECT_EQ(c.eos_token_ids, std::vector<int>{2});
}

TEST(Config, OriginalKeysAlone) {
  nlohmann::json j = tiny();
  j.erase("rope_parameters");
  j.erase("partial_rotary_factor");
  const ModelConfig c = ModelConfig::from_json(j, "cfg.json");
  EXPECT_EQ(c.rotary_dim, 32);
  EXPECT_EQ(c.rope_theta, 5e6);
}

TEST(Config, RopeParametersAlone) {
  nlohmann::json j = tiny();
  j.erase("rotary_dim");
  j.erase("rope_theta");
  j.erase("partial_rotary_factor");
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}, {"partial_rotary_factor", 0.25}};
  const ModelConfig c = ModelConfig::from_json(j, "cfg.json");
  EXPECT_EQ(c.rotary_dim, 16);
  EXPECT_EQ(c.rope_theta, 1e6);
}

TEST(Config, RejectsUnsupportedValuesNamingTheKey) {
  auto with = [](const char* key, nlohmann::json v) {
    nlohmann::json j = tiny();
    j[key] = v;
    return error_of(j);
  };
  for (auto [key, val] : std::vector<std::pair<const char*, nlohmann::json>>{
           {"qk_norm_type", "per_head"},
           {"scoring_func", "softmax"},
           {"hidden_act", "gelu"},
           {"model_type", "llama"},
           {"num_attention_heads", 5},
           {"num_experts_per_tok", 64},
           {"vocab_size", "big"},
           {"rms_norm_eps", -1},
           {"rotary_dim", 31},
           {"shared_intermediate_size", 128},
           {"rope_scaling", {{"type", "yarn"}}}}) {
    const std::string e = with(key, val);
    EXPECT_NE(e.find(key), std::string::npos) << key << ": " << e;
    EXPECT_NE(e.find("cfg.json"), std::string::npos) << e;
  }
  nlohmann::json j = tiny();
  j["rope_parameters"]["rope_type"] = "yarn";
  EXPECT_NE(error_of(j).find("rope_type"), std::string::npos);
  j = tiny();
  j["rotary_dim"] = 16;  // disagrees with partial_rotary_factor 0.5 x 64
  EXPECT_NE(error_of(j).find("rotary_dim"), std::string::npos);
  j = tiny();
  j.erase("hidden_size");
  EXPECT_NE(error_of(j).find("missing 'hidden_size'"), std::string::npos);
}
