// Pipelined greedy decoding (Model::argmax_feed / forward_fed / tokens) against step-by-step
// decoding with the tokens read back each step: the same tokens, for a batch of sequences.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "model/minimax_m2.h"
#include "support/test_support.h"

using namespace moeq;

namespace {

constexpr int kSeqs = 2, kPrompt = 9, kSteps = 10;

struct Session {
  CpuBackend be;
  std::unique_ptr<Model> model = Model::load(test::tiny_model_dir(), be);
  KVCache kv = model->make_cache(kSeqs, kPrompt + kSteps + 1);
  std::vector<int32_t> slots = std::vector<int32_t>(kSeqs), rows = std::vector<int32_t>(kSeqs);
  Session() {
    std::iota(slots.begin(), slots.end(), 0);
    std::iota(rows.begin(), rows.end(), 0);
  }
  // Prefills sequence s with its prompt; returns its first token.
  int32_t prefill(int s) {
    std::vector<int32_t> ids(kPrompt), pos(kPrompt), sl(kPrompt, s);
    for (int t = 0; t < kPrompt; ++t) ids[size_t(t)] = 200 + 131 * t + 977 * s;
    std::iota(pos.begin(), pos.end(), 0);
    const int32_t last = kPrompt - 1;
    model->forward(ids, pos, sl, std::span<const int32_t>(&last, 1), kv);
    return model->argmax_last()[0];
  }
  std::vector<int32_t> positions(int step) const { return std::vector<int32_t>(kSeqs, kPrompt + step); }
};

}  // namespace

TEST(ModelPipelined, SameTokensAsStepByStep) {
  Session a, b;
  std::vector<int32_t> next_a(kSeqs), next_b(kSeqs);
  for (int s = 0; s < kSeqs; ++s) {
    next_a[size_t(s)] = a.prefill(s);
    next_b[size_t(s)] = b.prefill(s);
  }
  ASSERT_EQ(next_a, next_b);
  std::vector<std::vector<int32_t>> step_by_step, pipelined;
  for (int i = 0; i < kSteps; ++i) {
    a.model->forward(next_a, a.positions(i), a.slots, a.rows, a.kv);
    next_a = a.model->argmax_last();
    step_by_step.push_back(next_a);
  }
  b.model->forward(next_b, b.positions(0), b.slots, b.rows, b.kv);
  Model::PendingTokens pending = b.model->argmax_feed();
  for (int i = 0; i < kSteps; ++i) {
    Model::PendingTokens after;
    if (i + 1 < kSteps) {
      b.model->forward_fed(b.positions(i + 1), b.slots, b.kv);
      after = b.model->argmax_feed();
    }
    pipelined.push_back(b.model->tokens(pending));
    pending = after;
  }
  EXPECT_EQ(pipelined, step_by_step);
  // Not a constant sequence: the check above compares real continuations.
  EXPECT_NE(step_by_step.front(), step_by_step.back());
}

TEST(ModelPipelined, MisuseIsRefused) {
  Session r;
  r.prefill(0);  // logits for one row of nine: nothing to feed
  EXPECT_ANY_THROW(r.model->argmax_feed());
  EXPECT_ANY_THROW(r.model->forward_fed(r.positions(0), r.slots, r.kv));
  std::vector<int32_t> next(kSeqs, 5);
  r.model->forward(next, r.positions(0), r.slots, r.rows, r.kv);
  const Model::PendingTokens p = r.model->argmax_feed();
  EXPECT_ANY_THROW(r.model->forward_fed(std::vector<int32_t>{kPrompt + 1}, std::vector<int32_t>{0}, r.kv))
      << "one position for two fed tokens";
  EXPECT_EQ(r.model->tokens(p).size(), size_t(kSeqs));
  EXPECT_ANY_THROW(r.model->tokens(p)) << "a ticket is finished once";
}
