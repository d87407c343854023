// The evaluation protocol shared by perplexity and KL divergence (models/tiny-m2/golden.json):
// the token stream is cut into non-overlapping windows of `ctx` tokens from the start; each
// window is a fresh sequence; positions 0..ctx-2 of a window predict tokens 1..ctx-1.
#pragma once
#include <cstdint>
#include <functional>
#include <span>

#include "model/minimax_m2.h"

namespace moeq {

struct WindowOptions {
  int ctx = 512;
  int chunks = 32;  // windows to evaluate; 0 = every full window in the text
};

// Number of windows the options select from `n_tokens` tokens (throws if not even one fits).
int64_t count_windows(int64_t n_tokens, const WindowOptions& opt);

// Runs each window through the model and calls fn(window, tokens of the window, logits) with
// logits F32 [ctx, vocab] on the host.
void for_each_window(Model& model, std::span<const int32_t> tokens, const WindowOptions& opt,
                     const std::function<void(int64_t, std::span<const int32_t>, const float*)>& fn);

// log-softmax of one row, in double, at index `target`.
double log_prob(const float* logits, int64_t vocab, int32_t target);

}  // namespace moeq
