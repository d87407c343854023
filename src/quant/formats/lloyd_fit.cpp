#include "quant/formats/lloyd_fit.h"

#include <algorithm>
#include <cmath>

namespace moeq::fmtq {

std::vector<float> lloyd_max_1d(const WeightedPoints& p, int k, int max_iter, const std::vector<float>* init) {
  const size_t n = p.x.size();
  // Prefix sums of weight and weight * x: a cell's mean is two subtractions away.
  std::vector<double> W(n + 1, 0.0), S(n + 1, 0.0);
  for (size_t i = 0; i < n; ++i) {
    W[i + 1] = W[i] + p.w[i];
    S[i + 1] = S[i] + p.w[i] * double(p.x[i]);
  }
  std::vector<float> c(static_cast<size_t>(k));
  if (!(W[n] > 0)) {
    for (int i = 0; i < k; ++i) c[size_t(i)] = k == 1 ? 0.0f : -1.0f + 2.0f * float(i) / float(k - 1);
    return c;
  }
  if (init && init->size() == size_t(k)) {
    c = *init;
  } else {
    for (int i = 0; i < k; ++i) {
      const double target = (i + 0.5) / k * W[n];
      // First point whose cumulative weight reaches the target.
      const size_t at = size_t(std::lower_bound(W.begin() + 1, W.end(), target) - (W.begin() + 1));
      c[size_t(i)] = p.x[std::min(at, n - 1)];
    }
  }
  std::sort(c.begin(), c.end());

  std::vector<size_t> edge(static_cast<size_t>(k) + 1);
  for (int it = 0; it < max_iter; ++it) {
    // Cell i holds the points with mid(i-1) < x <= mid(i) (nearest-level assignment, ties low).
    edge[0] = 0;
    edge[size_t(k)] = n;
    for (int i = 1; i < k; ++i) {
      const float mid = 0.5f * (c[size_t(i - 1)] + c[size_t(i)]);
      edge[size_t(i)] = size_t(std::upper_bound(p.x.begin(), p.x.end(), mid) - p.x.begin());
    }
    double moved = 0;
    for (int i = 0; i < k; ++i) {
      const size_t a = edge[size_t(i)], b = std::max(a, edge[size_t(i) + 1]);
      const double wsum = W[b] - W[a];
      if (!(wsum > 0)) continue;  // an empty cell keeps its level
      const float next = float((S[b] - S[a]) / wsum);
      moved = std::max(moved, double(std::fabs(next - c[size_t(i)])));
      c[size_t(i)] = next;
    }
    std::sort(c.begin(), c.end());  // Lloyd keeps the order in 1-D; this only guards rounding
    if (moved < 1e-7) break;
  }
  return c;
}

UnitHistogram::UnitHistogram(int bins, float range)
    : bins_(bins), range_(range), inv_width_(float(bins) / (2.0f * range)), sw_(size_t(bins), 0.0), swx_(size_t(bins), 0.0) {}

void UnitHistogram::merge(const UnitHistogram& o) {
  for (size_t i = 0; i < sw_.size(); ++i) {
    sw_[i] += o.sw_[i];
    swx_[i] += o.swx_[i];
  }
}

WeightedPoints UnitHistogram::points() const {
  WeightedPoints p;
  for (size_t i = 0; i < sw_.size(); ++i)
    if (sw_[i] > 0) {
      p.x.push_back(float(swx_[i] / sw_[i]));
      p.w.push_back(sw_[i]);
    }
  return p;
}

}  // namespace moeq::fmtq
