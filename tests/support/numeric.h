// Numeric comparison helpers for tests.
#pragma once
#include <cmath>
#include <cstddef>

namespace moeq::test {

// ||a - b|| / ||b|| over n elements (double accumulation); NaN anywhere gives +inf.
inline double rel_err(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(a[i]) || std::isnan(b[i])) return INFINITY;
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den == 0 ? (num == 0 ? 0 : INFINITY) : std::sqrt(num / den);
}

}  // namespace moeq::test
