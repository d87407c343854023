// AWQ: folding computes the same function; the search never does worse than plain quantization.
#include <gtest/gtest.h>

#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/minimax_m2.h"
#include "quant/awq.h"
#include "support/numeric.h"
#include "support/random.h"
#include "support/test_support.h"

using namespace moeq;

TEST(Awq, FoldedUnquantizedModelComputesTheSameLogits) {
  const ModelConfig cfg = ModelConfig::load(test::tiny_model_dir());
  const io::Checkpoint ck = io::Checkpoint::open(test::tiny_model_dir());
  const HostWeights orig = load_host_weights(ck, cfg);
  std::mt19937_64 rng(test::test_seed());
  std::uniform_real_distribution<float> u(0.5f, 2.0f);
  auto scales = [&](int64_t n) {
    std::vector<float> s(static_cast<size_t>(n));
    for (auto& v : s) v = u(rng);
    return s;
  };
  // Reference: the same weights as f32 without folding (so only the folding differs).
  HostWeights plain = orig, folded = orig;
  for (int l = 0; l < cfg.num_layers; ++l) {
    FloatLayer f = FloatLayer::from(orig.layers[size_t(l)]);
    plain.layers[size_t(l)] = f.to_host_f32();
    fold_qkv(f, scales(cfg.hidden_size));
    fold_w13(f, scales(cfg.hidden_size));
    for (int e = 0; e < cfg.num_experts; ++e) fold_w2(f, e, scales(cfg.intermediate_size));
    folded.layers[size_t(l)] = f.to_host_f32();
  }
  const auto golden = io::SafetensorsFile::open(test::tiny_model_dir() / "golden.safetensors");
  const HostArray ids = golden.get("input_ids");
  const int64_t T = ids.shape[1];
  std::vector<int32_t> pos(static_cast<size_t>(T)), slots(static_cast<size_t>(T), 0);
  std::iota(pos.begin(), pos.end(), 0);
  auto logits = [&](const HostWeights& w) {
    CpuBackend be;
    Model m(cfg, w, be);
    KVCache kv = m.make_cache(1, int(T));
    return be.download_f32(m.forward(std::span<const int32_t>(ids.as<int32_t>(), size_t(T)), pos, slots, pos, kv));
  };
  const auto a = logits(plain), b = logits(folded);
  const double err = test::rel_err(b.data(), a.data(), a.size());
  EXPECT_LT(err, 1e-5);
  std::printf("folded vs unfolded logits: relative error %.3g\n", err);
  // And the folding did change the weights (the test would be vacuous otherwise).
  const FloatLayer f0 = FloatLayer::from(folded.layers[0]), p0 = FloatLayer::from(plain.layers[0]);
  EXPECT_NE(f0.input_norm, p0.input_norm);
  EXPECT_NE(f0.w2[3].w, p0.w2[3].w);
}

TEST(Awq, SearchIsNoWorseThanPlainQuantizationAndHelpsOnOutlierChannels) {
  // A linear whose input has a few channels with large activations: AWQ's setting.
  std::mt19937_64 rng(test::test_seed());
  const int64_t R = 64, C = 128, N = 256;
  FloatLinear w;
  w.rows = R;
  w.cols = C;
  w.w = test::randn(size_t(R * C), rng, 0.05f);
  RowSample x(C, N, 1);
  std::vector<float> rows = test::randn(size_t(N * C), rng);
  for (int64_t r = 0; r < N; ++r)
    for (int64_t j = 0; j < C; j += 16) rows[size_t(r * C + j)] *= 30.0f;  // outlier channels
  x.add(rows.data(), N);
  ChannelStats st;
  st.add(rows.data(), N, C);
  for (const char* fmt : {"int4_g32", "int3_g32", "lloyd3_g32"}) {
    const AwqResult r = awq_search({{&w, &x, &format_ops(fmt)}}, st.mean_abs(), st.mean_sq(), 10);
    EXPECT_LE(r.error, r.error_unscaled) << fmt;
    EXPECT_LT(r.error, 0.9 * r.error_unscaled) << fmt << ": outlier channels should favour scaling";
    EXPECT_GE(r.alpha, 0.0) << fmt;
    // The reported error is the error of the returned scales.
    EXPECT_NEAR(awq_error({&w, &x, &format_ops(fmt)}, r.scales, st.mean_sq()), r.error, 1e-6 * r.error) << fmt;
  }
}
