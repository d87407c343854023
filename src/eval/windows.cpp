#include "eval/windows.h"

#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"

namespace moeq {

int64_t count_windows(int64_t n_tokens, const WindowOptions& opt) {
  if (opt.ctx < 2) fail("--ctx must be at least 2, got {}", opt.ctx);
  if (opt.chunks < 0) fail("--chunks must be >= 0, got {}", opt.chunks);
  const int64_t full = n_tokens / opt.ctx;
  if (full == 0) fail("the text has {} tokens, fewer than one window of {}", n_tokens, opt.ctx);
  return opt.chunks == 0 ? full : std::min<int64_t>(full, opt.chunks);
}

void for_each_window(Model& model, std::span<const int32_t> tokens, const WindowOptions& opt,
                     const std::function<void(int64_t, std::span<const int32_t>, const float*)>& fn) {
  const int64_t n = count_windows(int64_t(tokens.size()), opt);
  if (opt.ctx > model.config().max_position_embeddings)
    fail("--ctx {} exceeds the model's context limit of {}", opt.ctx, model.config().max_position_embeddings);
  KVCache kv = model.make_cache(1, opt.ctx);
  std::vector<int32_t> pos(size_t(opt.ctx)), slots(size_t(opt.ctx), 0);
  std::iota(pos.begin(), pos.end(), 0);
  std::vector<float> logits;
  for (int64_t w = 0; w < n; ++w) {
    const auto win = tokens.subspan(size_t(w * opt.ctx), size_t(opt.ctx));
    const Tensor& l = model.forward(win, pos, slots, pos, kv);
    logits = model.backend().download_f32(l);
    fn(w, win, logits.data());
  }
}

double log_prob(const float* logits, int64_t vocab, int32_t target) {
  float mx = logits[0];
  for (int64_t i = 1; i < vocab; ++i) mx = std::max(mx, logits[i]);
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) z += std::exp(double(logits[i]) - double(mx));
  return double(logits[target]) - double(mx) - std::log(z);
}

}  // namespace moeq
