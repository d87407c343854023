// Perplexity over the windows protocol (eval/windows.h).
#pragma once
#include <functional>
#include <span>
#include <vector>

#include "eval/windows.h"

namespace moeq {

struct PplResult {
  double ppl = 0;
  double mean_nll = 0;
  int64_t tokens = 0;   // predicted positions
  int64_t windows = 0;
  double seconds = 0;
  std::vector<double> window_nll;  // mean NLL of each window
};

// `progress(done, total)` is called after each window.
PplResult perplexity(Model& model, std::span<const int32_t> tokens, const WindowOptions& opt,
                     const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace moeq
