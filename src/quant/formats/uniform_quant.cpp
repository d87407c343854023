#include "quant/formats/uniform_quant.h"

#include <algorithm>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/formats/group_common.h"

namespace moeq::fmtq {
namespace {

// Candidate divisors d (scale = absmax / d) tried by the importance search, spread over
// [0.7 qmax, 1.25 |qmin|]: below qmax the largest weights clip but the rest get a finer step;
// up to |qmin| the negative end of the grid can be used when it carries the absmax.
constexpr int kCandidates = 24;

inline int8_t round_clamp(float w, float s, UniformGrid g) {
  const float r = std::nearbyint(w / s);
  return int8_t(std::clamp(r, float(g.qmin), float(g.qmax)));
}

// Weighted squared error of quantizing with the (f16-exact) scale s; fills q.
double weighted_error(const float* w, const float* imp, int64_t n, float s, UniformGrid g, int8_t* q) {
  double e = 0;
  for (int64_t j = 0; j < n; ++j) {
    q[j] = round_clamp(w[j], s, g);
    const double d = double(w[j]) - double(q[j]) * double(s);
    e += double(imp[j]) * d * d;
  }
  return e;
}

}  // namespace

uint16_t quantize_group_uniform(std::string_view format, const float* w, const float* importance, int64_t n,
                                UniformGrid grid, int8_t* q) {
  if (n > 256) fail("quantize {}: group of {} is wider than the supported 256", format, n);
  float absmax = 0;
  for (int64_t j = 0; j < n; ++j) absmax = std::max(absmax, std::fabs(w[j]));
  if (absmax == 0) {
    std::fill(q, q + n, int8_t(0));
    return 0;
  }
  // Round to nearest. f16 rounding may leave the scale a hair small; step it up until the largest
  // element is within half a step of qmax (also lifts a scale that underflowed to zero).
  uint16_t s16 = scale_to_f16(format, absmax / float(grid.qmax));
  while (double(absmax) > (double(grid.qmax) + 0.5) * double(f16_to_f32(s16))) ++s16;
  if (!importance) {
    const float s = f16_to_f32(s16);
    for (int64_t j = 0; j < n; ++j) q[j] = round_clamp(w[j], s, grid);
    return s16;
  }

  int8_t trial[256];  // n <= 256, checked above
  double best = weighted_error(w, importance, n, f16_to_f32(s16), grid, q);
  auto consider = [&](float scale) {
    if (!(scale > 0)) return;
    const uint16_t h = f32_to_f16(scale);
    if ((h & 0x7c00) == 0x7c00 || h == 0) return;  // out of f16 range: not a candidate
    const double e = weighted_error(w, importance, n, f16_to_f32(h), grid, trial);
    if (e < best) {  // strictly better only: ties keep the earlier (round-to-nearest first)
      best = e;
      s16 = h;
      std::copy(trial, trial + n, q);
    }
  };
  const double lo = 0.7 * grid.qmax, hi = 1.25 * -grid.qmin;
  for (int k = 0; k < kCandidates; ++k) consider(float(absmax / (lo + (hi - lo) * k / (kCandidates - 1))));
  consider(absmax / float(-grid.qmin));
  // Least-squares scale for the chosen codes: s = sum imp w q / sum imp q^2; re-rounding may
  // change codes, so it is only kept if it measures better. Two rounds settle it.
  for (int round = 0; round < 2; ++round) {
    double num = 0, den = 0;
    for (int64_t j = 0; j < n; ++j) {
      num += double(importance[j]) * double(w[j]) * q[j];
      den += double(importance[j]) * double(q[j]) * q[j];
    }
    if (den > 0) consider(float(num / den));
  }
  return s16;
}

}  // namespace moeq::fmtq
