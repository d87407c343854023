#include "eval/perplexity.h"

#include <chrono>
#include <cmath>

namespace moeq {

PplResult perplexity(Model& model, std::span<const int32_t> tokens, const WindowOptions& opt,
                     const std::function<void(int64_t, int64_t)>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t V = model.config().vocab_size;
  const int64_t total = count_windows(int64_t(tokens.size()), opt);
  PplResult r;
  double sum = 0;
  for_each_window(model, tokens, opt, [&](int64_t w, std::span<const int32_t> win, const float* logits) {
    double wsum = 0;
    for (size_t i = 0; i + 1 < win.size(); ++i) wsum -= log_prob(logits + int64_t(i) * V, V, win[i + 1]);
    sum += wsum;
    r.tokens += int64_t(win.size()) - 1;
    r.window_nll.push_back(wsum / double(win.size() - 1));
    if (progress) progress(w + 1, total);
  });
  r.windows = total;
  r.mean_nll = sum / double(r.tokens);
  r.ppl = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace moeq
