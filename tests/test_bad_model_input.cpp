// Damaged model directories: each must give a clear error naming the file and the tensor or key,
// a non-zero exit status, and no crash (these also run under ASan+UBSan in the asan preset).
#include <gtest/gtest.h>

#include <fstream>

#include "support/model_copy.h"
#include "support/test_support.h"

using namespace moeq;
using test::CliResult;

namespace {

const char* kShard = "model-00002-of-00004.safetensors";

struct BadModel : ::testing::Test {
  test::TempDir tmp;
  std::filesystem::path dir = tmp / "model";
  void SetUp() override { test::link_model(test::tiny_model_dir(), dir); }

  CliResult run_model() { return test::run_cli({"run", "-m", dir.string(), "-p", "Hello", "-n", "1", "-q"}); }

  static void expect_clean_error(const CliResult& r, const std::vector<std::string>& needles) {
    EXPECT_EQ(r.signal, 0) << "crashed:\n" << r.output;
    EXPECT_EQ(r.exit_code, 1) << r.output;
    for (const auto& n : needles) EXPECT_NE(r.output.find(n), std::string::npos) << "missing '" << n << "' in:\n" << r.output;
  }
  // Some tensor stored in the shard (by sorted name), to damage.
  std::string first_tensor(const std::filesystem::path& shard, const std::string& suffix) {
    std::string found;
    test::edit_safetensors_header(shard, [&](nlohmann::json& h) {
      for (auto it = h.begin(); it != h.end(); ++it)
        if (it.key().ends_with(suffix)) {
          found = it.key();
          break;
        }
    });
    return found;
  }
};

}  // namespace

TEST_F(BadModel, IntactCopyRuns) {
  const CliResult r = run_model();
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(BadModel, TruncatedShard) {
  const auto p = test::materialise(dir, kShard);
  test::truncate_file(p, std::filesystem::file_size(p) / 2);
  expect_clean_error(run_model(), {kShard, "outside the data area", "tensor '"});
}

TEST_F(BadModel, HeaderLengthPastTheEnd) {
  const auto p = test::materialise(dir, kShard);
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  const uint64_t huge = uint64_t(1) << 40;
  f.write(reinterpret_cast<const char*>(&huge), 8);
  f.close();
  expect_clean_error(run_model(), {kShard, "header length"});
}

TEST_F(BadModel, ShardShorterThanItsHeader) {
  const auto p = test::materialise(dir, kShard);
  test::truncate_file(p, 5);
  expect_clean_error(run_model(), {kShard, "too short"});
}

TEST_F(BadModel, MalformedHeaderJson) {
  const auto p = test::materialise(dir, kShard);
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(8);
  f.write("{\"x\": [", 7);
  f.close();
  expect_clean_error(run_model(), {kShard, "JSON"});
}

TEST_F(BadModel, OverlappingOffsets) {
  const auto p = test::materialise(dir, kShard);
  std::string a, b;
  test::edit_safetensors_header(p, [&](nlohmann::json& h) {
    // Point the second tensor (by offset) one byte into the first.
    std::vector<std::pair<uint64_t, std::string>> by_off;
    for (auto it = h.begin(); it != h.end(); ++it)
      if (it.key() != "__metadata__") by_off.emplace_back(it.value()["data_offsets"][0].get<uint64_t>(), it.key());
    std::sort(by_off.begin(), by_off.end());
    a = by_off[0].second;
    b = by_off[1].second;
    auto& off = h[b]["data_offsets"];
    const uint64_t len = off[1].get<uint64_t>() - off[0].get<uint64_t>();
    const uint64_t start = h[a]["data_offsets"][1].get<uint64_t>() - 1;
    off = {start, start + len};
  });
  expect_clean_error(run_model(), {kShard, "overlap", a, b});
}

TEST_F(BadModel, ByteSizeDoesNotMatchShape) {
  const auto p = test::materialise(dir, kShard);
  const std::string t = first_tensor(p, "w2.weight");
  test::edit_safetensors_header(p, [&](nlohmann::json& h) { h[t]["shape"][0] = h[t]["shape"][0].get<int>() + 1; });
  expect_clean_error(run_model(), {kShard, t, "bytes for shape"});
}

TEST_F(BadModel, MissingTensor) {
  const auto p = test::materialise(dir, kShard);
  const std::string t = first_tensor(p, "w3.weight");
  test::edit_safetensors_header(p, [&](nlohmann::json& h) { h.erase(t); });
  // The index still lists it: the error names the shard and the tensor.
  expect_clean_error(run_model(), {kShard, t, "missing"});
}

TEST_F(BadModel, MissingTensorEverywhere) {
  const auto p = test::materialise(dir, kShard);
  const auto idx = test::materialise(dir, "model.safetensors.index.json");
  const std::string t = first_tensor(p, "w1.weight");
  test::edit_safetensors_header(p, [&](nlohmann::json& h) { h.erase(t); });
  nlohmann::json index = nlohmann::json::parse(std::ifstream(idx));
  index["weight_map"].erase(t);
  std::ofstream(idx) << index.dump();
  expect_clean_error(run_model(), {"missing tensor", t});
}

TEST_F(BadModel, WrongShape) {
  const auto p = test::materialise(dir, kShard);
  const std::string t = first_tensor(p, "input_layernorm.weight");
  ASSERT_FALSE(t.empty());
  // Same bytes, other shape: [384] -> [2, 192].
  test::edit_safetensors_header(p, [&](nlohmann::json& h) { h[t]["shape"] = {2, 192}; });
  expect_clean_error(run_model(), {kShard, t, "shape [2, 192], expected [384]"});
}

TEST_F(BadModel, WrongScaleShape) {
  const auto p = test::materialise(dir, kShard);
  const std::string t = first_tensor(p, "w1.weight_scale_inv");
  ASSERT_FALSE(t.empty());
  test::edit_safetensors_header(p, [&](nlohmann::json& h) {
    auto& s = h[t]["shape"];
    s = {s[1], s[0]};  // [1, 3] -> [3, 1]: same bytes, wrong blocks
  });
  expect_clean_error(run_model(), {kShard, t, "weight_scale_inv shape"});
}

TEST_F(BadModel, BadConfigValue) {
  const auto cfg = test::materialise(dir, "config.json");
  nlohmann::json j = nlohmann::json::parse(std::ifstream(cfg));
  j["scoring_func"] = "softmax";
  std::ofstream(cfg) << j.dump();
  expect_clean_error(run_model(), {"config.json", "scoring_func", "softmax"});
}

TEST_F(BadModel, BadQkNormType) {
  const auto cfg = test::materialise(dir, "config.json");
  nlohmann::json j = nlohmann::json::parse(std::ifstream(cfg));
  j["qk_norm_type"] = "per_head";
  std::ofstream(cfg) << j.dump();
  expect_clean_error(run_model(), {"config.json", "qk_norm_type"});
}

TEST_F(BadModel, NegativeConfigValue) {
  const auto cfg = test::materialise(dir, "config.json");
  nlohmann::json j = nlohmann::json::parse(std::ifstream(cfg));
  j["num_hidden_layers"] = -3;
  std::ofstream(cfg) << j.dump();
  expect_clean_error(run_model(), {"config.json", "num_hidden_layers"});
}

TEST_F(BadModel, MalformedTokenizerJson) {
  const auto tj = test::materialise(dir, "tokenizer.json");
  test::truncate_file(tj, 1000);
  expect_clean_error(run_model(), {"tokenizer.json"});
}

TEST_F(BadModel, TokenizerWithoutModel) {
  const auto tj = test::materialise(dir, "tokenizer.json");
  nlohmann::json j = nlohmann::json::parse(std::ifstream(tj));
  j.erase("model");
  std::ofstream(tj) << j.dump();
  expect_clean_error(run_model(), {"tokenizer.json", "model"});
}

TEST_F(BadModel, NotADirectory) {
  const CliResult r = test::run_cli({"run", "-m", (tmp / "nope").string(), "-p", "x", "-n", "1"});
  expect_clean_error(r, {"nope"});
}
