// The synthetic benchmark model: fewer weight sets than layers (bench --full-depth) runs every
// layer, each on the weights of set l mod sets, and the bench command reports what it ran.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <numeric>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/known_configs.h"
#include "model/minimax_m2.h"
#include "support/test_support.h"

using namespace moeq;

namespace {

std::string format_of(const std::string& module) {
  return module.find("experts.") != std::string::npos ? "int4_g32" : "q8_g32";
}

// The residual stream after the embedding and after each layer, for one 12-token prompt.
std::vector<std::vector<float>> hidden_states(Model& m) {
  const int64_t T = 12, H = m.config().hidden_size;
  std::vector<std::vector<float>> out;
  m.on_hidden = [&](int i, const Tensor& h) {
    EXPECT_EQ(size_t(i), out.size()) << "layers observed out of order";
    out.emplace_back(h.as<float>(), h.as<float>() + T * H);
  };
  std::vector<int32_t> ids(static_cast<size_t>(T)), pos(static_cast<size_t>(T)), slots(static_cast<size_t>(T), 0);
  for (int64_t t = 0; t < T; ++t) ids[size_t(t)] = int32_t(100 + 37 * t);
  std::iota(pos.begin(), pos.end(), 0);
  const int32_t last = int32_t(T - 1);
  KVCache kv = m.make_cache(1, int(T));
  m.forward(ids, pos, slots, std::span<const int32_t>(&last, 1), kv);
  return out;
}

nlohmann::json bench_json(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"bench", "--synthetic", "tiny-m2", "--device", "cpu", "--prompt", "8", "--gen", "2",
                                   "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  const test::CliResult r = test::run_cli(args);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto brace = r.output.rfind("\n{");
  if (brace == std::string::npos) {
    ADD_FAILURE() << "no JSON line in:\n" << r.output;
    return {};
  }
  return nlohmann::json::parse(r.output.substr(brace + 1));
}

}  // namespace

TEST(BenchSynthetic, FewerWeightSetsRunEveryLayerOnTheFirstLayersWeights) {
  CpuBackend be;
  auto reused = Model::synthetic(known_config("tiny-m2", 4), be, format_of, 1, 2);
  auto two = Model::synthetic(known_config("tiny-m2", 2), be, format_of, 1);
  EXPECT_EQ(reused->weight_sets(), 2);
  EXPECT_EQ(two->weight_sets(), 2);
  const auto a = hidden_states(*reused), b = hidden_states(*two);
  ASSERT_EQ(a.size(), 5u) << "embedding + 4 layers";
  ASSERT_EQ(b.size(), 3u);
  // The first two layers are those of the two-layer model, bit for bit (same weights, same inputs).
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(a[i], b[i]) << "hidden state " << i;
  // Layers 3 and 4 ran (on sets 0 and 1 again): the residual stream kept changing.
  EXPECT_NE(a[3], a[2]);
  EXPECT_NE(a[4], a[3]);
}

TEST(BenchSynthetic, WeightSetsAreClampedAndChecked) {
  CpuBackend be;
  EXPECT_EQ(Model::synthetic(known_config("tiny-m2", 3), be, format_of, 1, 9)->weight_sets(), 3);
  EXPECT_EQ(Model::synthetic(known_config("tiny-m2", 3), be, format_of, 1, 0)->weight_sets(), 3);
  EXPECT_ANY_THROW(Model::synthetic(known_config("tiny-m2", 3), be, format_of, 1, -1));
}

TEST(BenchSynthetic, FullDepthRunsTheModelsLayersOnTheBuiltSets) {
  const int depth = known_config("tiny-m2").num_layers;
  ASSERT_GT(depth, 2);
  const auto full = bench_json({"--layers", "2", "--full-depth"});
  EXPECT_EQ(full.value("layers", -1), depth);
  EXPECT_EQ(full.value("weight_sets", -1), 2);
  EXPECT_GT(full.value("prefill_tok_s", 0.0), 0.0);
  const auto part = bench_json({"--layers", "2"});
  EXPECT_EQ(part.value("layers", -1), 2);
  EXPECT_EQ(part.value("weight_sets", -1), 2);
  // Without --layers every layer fits in host memory: no reuse.
  const auto fit = bench_json({"--full-depth"});
  EXPECT_EQ(fit.value("layers", -1), depth);
  EXPECT_EQ(fit.value("weight_sets", -1), depth);
}
