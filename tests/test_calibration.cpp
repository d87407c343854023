// Layer-streaming calibration: the layer-by-layer forward equals the model's, the statistics
// count what they should, and --calib-all-experts gives every expert every token.
#include <gtest/gtest.h>

#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "io/checkpoint.h"
#include "model/minimax_m2.h"
#include "quant/calibration.h"
#include "support/numeric.h"
#include "support/random.h"
#include "support/test_support.h"

using namespace moeq;

namespace {

struct Tiny {
  ModelConfig cfg = ModelConfig::load(test::tiny_model_dir());
  io::Checkpoint ck = io::Checkpoint::open(test::tiny_model_dir());
  HostWeights w = load_host_weights(ck, cfg);
};
Tiny& tiny() {
  static Tiny t;
  return t;
}

// Embeds S random sequences of L tokens; returns the ids and the hidden states [S*L, H].
std::vector<float> embed(const Tiny& t, const std::vector<int32_t>& ids) {
  const int64_t H = t.cfg.hidden_size;
  std::vector<float> h(ids.size() * size_t(H));
  for (size_t i = 0; i < ids.size(); ++i) format_ops(t.w.embed.format).dequantize_rows(t.w.embed, ids[i], 1, &h[i * size_t(H)]);
  return h;
}

}  // namespace

TEST(Calibration, LayerByLayerForwardEqualsTheModel) {
  Tiny& t = tiny();
  const int64_t S = 3, L = 40, H = t.cfg.hidden_size;
  std::mt19937_64 rng(test::test_seed());
  std::uniform_int_distribution<int32_t> tok(20, t.cfg.vocab_size - 1);
  std::vector<int32_t> ids(static_cast<size_t>(S * L));
  for (auto& i : ids) i = tok(rng);

  // Reference: the model's residual stream after each layer, sequence by sequence.
  CpuBackend be;
  Model model(t.cfg, t.w, be);
  std::vector<std::vector<float>> ref(size_t(t.cfg.num_layers + 1), std::vector<float>(size_t(S * L * H)));
  for (int64_t s = 0; s < S; ++s) {
    model.on_hidden = [&](int i, const Tensor& h) {
      std::copy(h.as<float>(), h.as<float>() + L * H, ref[size_t(i)].begin() + s * L * H);
    };
    KVCache kv = model.make_cache(1, int(L));
    std::vector<int32_t> pos(static_cast<size_t>(L)), slots(static_cast<size_t>(L), 0);
    std::iota(pos.begin(), pos.end(), 0);
    const int32_t last = int32_t(L - 1);
    model.forward(std::span<const int32_t>(ids.data() + s * L, size_t(L)), pos, slots, std::span<const int32_t>(&last, 1), kv);
  }

  for (bool all : {false, true}) {
    CalibOptions opt;
    opt.all_experts = all;
    opt.batch_tokens = 2 * L;  // two batches: sequences must not see each other
    opt.sample_rows = 50;
    const LayerCalibrator cal(t.cfg, opt, S, L);
    std::vector<float> h = embed(t, ids);
    EXPECT_LT(test::rel_err(h.data(), ref[0].data(), h.size()), 1e-7);
    for (int l = 0; l < t.cfg.num_layers; ++l) {
      const LayerCalibration c = cal.run(l, t.w.layers[size_t(l)], h);
      EXPECT_LT(test::rel_err(h.data(), ref[size_t(l + 1)].data(), h.size()), 1e-5) << "layer " << l << " all=" << all;
      EXPECT_EQ(c.qkv_in.count, S * L);
      EXPECT_EQ(c.o_in.count, S * L);
      EXPECT_EQ(c.moe_in.count, S * L);
      EXPECT_EQ(c.qkv_sample.n(), 50);
      EXPECT_EQ(std::accumulate(c.routed.begin(), c.routed.end(), int64_t(0)), S * L * t.cfg.experts_per_tok);
      for (int e = 0; e < t.cfg.num_experts; ++e) {
        if (all) {
          EXPECT_EQ(c.w13_in[size_t(e)].count, S * L) << "expert " << e;
          EXPECT_EQ(c.w2_in[size_t(e)].count, S * L) << "expert " << e;
        } else {
          EXPECT_EQ(c.w13_in[size_t(e)].count, c.routed[size_t(e)]);
          EXPECT_EQ(c.w2_in[size_t(e)].count, c.routed[size_t(e)]);
        }
      }
      // Mean squares are means of squares of the sampled input: positive where the input is.
      const auto ms = c.moe_in.mean_sq();
      EXPECT_GT(*std::max_element(ms.begin(), ms.end()), 0.0f);
    }
  }
}

TEST(Calibration, ChannelStatsAndReservoir) {
  ChannelStats st;
  const float x[] = {1, -2, 3, -4};
  st.add(x, 2, 2);
  EXPECT_EQ(st.count, 2);
  EXPECT_FLOAT_EQ(st.mean_sq()[0], 5.0f);   // (1 + 9) / 2
  EXPECT_FLOAT_EQ(st.mean_abs()[1], 3.0f);  // (2 + 4) / 2
  RowSample a(1, 10, 42), b(1, 10, 42);
  std::vector<float> rows(1000);
  std::iota(rows.begin(), rows.end(), 0.0f);
  a.add(rows.data(), 1000);
  for (int i = 0; i < 1000; i += 7) b.add(rows.data() + i, std::min(7, 1000 - i));
  EXPECT_EQ(a.n(), 10);
  EXPECT_EQ(a.rows, b.rows) << "the sample does not depend on how rows arrive";
  EXPECT_GT(*std::max_element(a.rows.begin(), a.rows.end()), 100.0f) << "late rows get in";
}

TEST(Calibration, ExpertCoverage) {
  const ExpertCoverage c = expert_coverage({{5, 0, 9}, {3, 7, 1}});
  EXPECT_EQ(c.min, 0);
  EXPECT_EQ(c.max, 9);
  EXPECT_EQ(c.median, 5);
  EXPECT_EQ(c.experts_without_tokens, 1);
}
