// The KL-divergence arithmetic of eval/kld.h and the bits-per-weight count of eval/model_size.h,
// on hand-computed examples (no model runs).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <random>

#include "core/error.h"
#include "eval/kld.h"
#include "eval/model_size.h"
#include "support/random.h"
#include "support/test_support.h"

using namespace moeq;

TEST(KldMath, IdenticalDistributionsGiveExactlyZero) {
  std::mt19937_64 rng(test::test_seed());
  for (int64_t vocab : {1, 2, 7, 8192}) {
    const std::vector<float> x = test::randn(size_t(vocab), rng, 5.0f);
    const PositionStats s = compare_position(x.data(), x.data(), vocab, int32_t(vocab - 1));
    EXPECT_EQ(s.kld, 0.0) << vocab;
    EXPECT_EQ(s.nll_ref, s.nll_q);
    EXPECT_TRUE(s.top1);
  }
}

TEST(KldMath, ShiftInvariant) {
  // Softmax ignores a constant added to every logit: KL of x vs x + c is 0 up to rounding.
  const std::vector<float> a = {1.0f, -2.0f, 0.5f, 3.0f};
  std::vector<float> b = a;
  for (float& v : b) v += 100.0f;
  EXPECT_NEAR(kl_divergence(a.data(), b.data(), 4), 0.0, 1e-12);
}

TEST(KldMath, HandComputedThreeTokens) {
  // p = softmax(log [0.5, 0.25, 0.25]) = [0.5, 0.25, 0.25]; q = softmax(log [0.25, 0.25, 0.5]).
  // KL(p || q) = 0.5 ln 2 + 0.25 ln 1 + 0.25 ln 0.5 = 0.25 ln 2.
  const std::vector<float> p = {std::log(0.5f), std::log(0.25f), std::log(0.25f)};
  const std::vector<float> q = {std::log(0.25f), std::log(0.25f), std::log(0.5f)};
  const PositionStats s = compare_position(p.data(), q.data(), 3, 2);
  EXPECT_NEAR(s.kld, 0.25 * std::log(2.0), 1e-7);
  EXPECT_NEAR(s.nll_ref, -std::log(0.25), 1e-7);
  EXPECT_NEAR(s.nll_q, -std::log(0.5), 1e-7);
  EXPECT_FALSE(s.top1);  // argmax 0 vs 2
  // Reversed, KL(q || p) = sum q ln(q / p): not symmetric.
  const double rev = 0.25 * std::log(0.25 / 0.5) + 0.25 * std::log(0.25 / 0.25) + 0.5 * std::log(0.5 / 0.25);
  EXPECT_NEAR(kl_divergence(q.data(), p.data(), 3), rev, 1e-7);
  // Un-normalised logits: [0, ln 3] -> p = [1/4, 3/4]; [0, 0] -> q = [1/2, 1/2].
  const std::vector<float> a = {0.0f, std::log(3.0f)}, b = {0.0f, 0.0f};
  EXPECT_NEAR(kl_divergence(a.data(), b.data(), 2), 0.25 * std::log(0.5) + 0.75 * std::log(1.5), 1e-7);
}

TEST(KldMath, StableForHugeLogits) {
  const std::vector<float> a = {1000.0f, 999.0f, -1000.0f}, b = {-1000.0f, 1000.0f, 999.0f};
  const double kl = kl_divergence(a.data(), b.data(), 3);
  EXPECT_TRUE(std::isfinite(kl));
  EXPECT_GT(kl, 100.0);  // p puts e/(1+e) on token 0, which q gives ~e^-2000
}

TEST(KldMath, TiesPickTheFirstIndex) {
  const std::vector<float> a = {2.0f, 2.0f, 1.0f}, b = {2.0f, 1.0f, 2.0f};
  EXPECT_TRUE(compare_position(a.data(), b.data(), 3, 0).top1);  // both argmax 0
}

TEST(KldMath, RejectsBadTarget) {
  const std::vector<float> a = {0.0f, 1.0f};
  EXPECT_THROW(compare_position(a.data(), a.data(), 2, 2), Error);
  EXPECT_THROW(compare_position(a.data(), a.data(), 2, -1), Error);
}

TEST(KldMath, Percentile) {
  const std::vector<double> v = {5, 1, 4, 2, 3};  // sorted 1..5
  EXPECT_DOUBLE_EQ(percentile(v, 0.0), 1);
  EXPECT_DOUBLE_EQ(percentile(v, 0.5), 3);
  EXPECT_DOUBLE_EQ(percentile(v, 1.0), 5);
  EXPECT_DOUBLE_EQ(percentile(v, 0.9), 4.6);  // h = 3.6: 4 + 0.6 * (5 - 4), as numpy.percentile
  EXPECT_DOUBLE_EQ(percentile(v, 0.25), 2);
  std::vector<double> w(101);
  for (size_t i = 0; i < w.size(); ++i) w[i] = double(100 - i);  // 0..100 reversed
  EXPECT_DOUBLE_EQ(percentile(w, 0.99), 99);
  EXPECT_DOUBLE_EQ(percentile(w, 0.5), 50);
  EXPECT_DOUBLE_EQ(percentile({7.0}, 0.99), 7);
  EXPECT_DOUBLE_EQ(percentile({1.0, 2.0}, 0.5), 1.5);
  EXPECT_THROW(percentile({}, 0.5), Error);
  EXPECT_THROW(percentile(v, 1.5), Error);
  EXPECT_THROW(percentile(v, std::nan("")), Error);
}

TEST(KldMath, SummarizePositions) {
  std::vector<PositionStats> ps;
  for (int i = 0; i < 10; ++i) ps.push_back({0.1 * i, 1.0, 2.0, i % 2 == 0});
  const KldResult r = summarize_positions(ps, 5);
  EXPECT_EQ(r.positions, 10);
  EXPECT_NEAR(r.kld_mean, 0.45, 1e-15);
  EXPECT_NEAR(r.kld_median, 0.45, 1e-15);
  EXPECT_NEAR(r.kld_p90, 0.81, 1e-12);
  EXPECT_NEAR(r.kld_p99, 0.891, 1e-12);
  EXPECT_DOUBLE_EQ(r.kld_max, 0.9);
  EXPECT_DOUBLE_EQ(r.top1, 0.5);
  EXPECT_DOUBLE_EQ(r.ppl_ref, std::exp(1.0));
  EXPECT_DOUBLE_EQ(r.ppl_quant, std::exp(2.0));
  EXPECT_THROW(summarize_positions({}), Error);
}

// ---- bits per weight ------------------------------------------------------------------------------

namespace {

nlohmann::json read_header(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  std::string h(static_cast<size_t>(n), '\0');
  in.read(h.data(), std::streamsize(n));
  return nlohmann::json::parse(h);
}

}  // namespace

TEST(ModelSize, TinyM2MatchesHandCountFromHeaders) {
  // By hand, from the raw headers: every ".weight" that is not a norm is a linear weight whose
  // shape gives its parameters; its bytes plus its ".weight_scale_inv" bytes are the linear bytes.
  size_t bytes = 0, all = 0;
  int64_t params = 0;
  for (const auto& e : std::filesystem::directory_iterator(test::tiny_model_dir())) {
    const std::string fname = e.path().filename().string();
    if (!fname.starts_with("model-") || e.path().extension() != ".safetensors") continue;
    const nlohmann::json header = read_header(e.path());  // kept alive: items() only refers to it
    for (const auto& [name, t] : header.items()) {
      if (name == "__metadata__") continue;
      const size_t nb = t["data_offsets"][1].get<size_t>() - t["data_offsets"][0].get<size_t>();
      all += nb;
      const bool norm = name.find("norm.weight") != std::string::npos;
      if (name.ends_with(".weight") && !norm) {
        bytes += nb;
        int64_t n = 1;
        for (const auto& d : t["shape"]) n *= d.get<int64_t>();
        params += n;
      } else if (name.ends_with(".weight_scale_inv")) {
        bytes += nb;
      }
    }
  }
  const ModelSize s = model_size(test::tiny_model_dir());
  EXPECT_EQ(s.linear_params, params);
  EXPECT_EQ(s.linear_bytes, bytes);
  EXPECT_EQ(s.total_bytes, all);
  EXPECT_DOUBLE_EQ(s.bpw, 8.0 * double(bytes) / double(params));
  EXPECT_GT(s.bpw, 8.0);  // fp8 experts + scales, bf16 embed/lm_head/router
  std::printf("tiny-m2: %zu linear bytes / %lld params = %.6f bpw, %zu bytes in all\n", bytes, (long long)params,
              s.bpw, all);
}

TEST(ModelSize, MissingDirectoryFails) { EXPECT_THROW(model_size("/no/such/model"), Error); }
