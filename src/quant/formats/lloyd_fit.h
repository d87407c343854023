// Importance-weighted Lloyd-Max in one dimension (weighted k-means on the real line): the
// codebook learner behind the lloyd*_g* formats, and the histogram that makes it cheap on a
// whole tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace moeq::fmtq {

// Points on the line, sorted ascending by x, each with a weight >= 0.
struct WeightedPoints {
  std::vector<float> x;
  std::vector<double> w;
};

// k levels (sorted ascending) minimising sum_i w_i (x_i - nearest level)^2, found by Lloyd's
// iteration from the weighted quantiles (k+0.5)/k. Stops when no level moves by more than 1e-7
// or after max_iter rounds. With no weight at all it returns k levels evenly over [-1, 1].
// `init` (if k long) replaces the quantile start (a warm start from an earlier codebook).
std::vector<float> lloyd_max_1d(const WeightedPoints& p, int k, int max_iter = 300, const std::vector<float>* init = nullptr);

// The weighted mean of the points in each of `bins` equal bins over [-range, range] (values
// beyond clamp to the end bins): a whole tensor becomes a few thousand points. Accumulates in
// double in the order add() is called, so a fixed order gives fixed bits.
class UnitHistogram {
 public:
  UnitHistogram(int bins, float range);
  void add(float x, double w) {
    int b = int((x + range_) * inv_width_);
    b = b < 0 ? 0 : (b >= bins_ ? bins_ - 1 : b);
    sw_[size_t(b)] += w;
    swx_[size_t(b)] += w * double(x);
  }
  void merge(const UnitHistogram& o);  // elementwise sum
  WeightedPoints points() const;       // non-empty bins, each at its weighted mean

 private:
  int bins_;
  float range_, inv_width_;
  std::vector<double> sw_, swx_;
};

// Index of the level nearest to u among sorted levels (ties go to the lower level), given the
// k-1 midpoints between neighbouring levels.
inline int nearest_level(float u, const float* mid, int k) {
  int idx = 0;
  for (int i = 0; i + 1 < k; ++i) idx += u > mid[i];
  return idx;
}

}  // namespace moeq::fmtq
