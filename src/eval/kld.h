// KL divergence of a (quantized) model from its reference over the windows protocol of
// eval/windows.h (DESIGN §7): the same predicted positions as perplexity (0..ctx-2 of each
// window), so the PPL figures here equal `moeq eval ppl` on the same file and options.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "eval/windows.h"

namespace moeq {

// What one predicted position contributes. All in double, log-softmax computed stably.
struct PositionStats {
  double kld = 0;      // sum_v p_ref(v) (log p_ref(v) - log p_q(v))
  double nll_ref = 0;  // -log p_ref(target)
  double nll_q = 0;    // -log p_q(target)
  bool top1 = false;   // argmax ref == argmax q (first index on ties)
};

// One position: `ref` and `q` are rows of `vocab` logits; `target` the next token.
PositionStats compare_position(const float* ref, const float* q, int64_t vocab, int32_t target);

// KL(ref || q) of the softmax distributions of two logit rows (the kld of compare_position).
double kl_divergence(const float* ref, const float* q, int64_t vocab);

// The p-th percentile (p in [0, 1]) with linear interpolation between closest ranks (numpy's
// default): sorted x, h = p (n - 1), x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]).
// Throws on empty input or p outside [0, 1].
double percentile(std::vector<double> values, double p);

struct KldResult {
  double kld_mean = 0, kld_median = 0, kld_p90 = 0, kld_p99 = 0, kld_max = 0;
  double top1 = 0;  // fraction of positions whose argmax agrees
  double nll_ref = 0, nll_quant = 0, ppl_ref = 0, ppl_quant = 0;
  int64_t positions = 0, windows = 0;
  double seconds = 0;
};

// Runs both models window by window (reference window w, then the same window through `quant`,
// compared at once: only two windows of logits are ever held). Both models must share the
// vocabulary; the tokens are the reference tokenizer's. `progress(done, total)` after each window.
KldResult kld_eval(Model& ref, Model& quant, std::span<const int32_t> tokens, const WindowOptions& opt,
                   const std::function<void(int64_t, int64_t)>& progress = {});

// Folds per-position statistics (in position order) into the summary figures; NLL is summed in
// groups of `group` positions (one window; 0 = all) like perplexity(), for identical rounding.
KldResult summarize_positions(const std::vector<PositionStats>& positions, int64_t group = 0);

}  // namespace moeq
