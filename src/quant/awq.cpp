#include "quant/awq.h"

#include <algorithm>
#include <cmath>

#include "backend/cpu/gemm.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace moeq {
namespace {

void scale_columns(FloatLinear& l, const std::vector<float>& s) {
  MOEQ_CHECK(int64_t(s.size()) == l.cols, "AWQ: {} scales for {} columns", s.size(), l.cols);
  for (int64_t r = 0; r < l.rows; ++r)
    for (int64_t j = 0; j < l.cols; ++j) l.w[size_t(r * l.cols + j)] *= s[size_t(j)];
}

// Per input channel, the mean over rows of |W[r][j]| relative to its row's largest magnitude
// (so that rows of different size count alike).
std::vector<double> weight_magnitude(const std::vector<AwqLinear>& group) {
  const int64_t C = group.front().w->cols;
  std::vector<double> m(size_t(C), 0.0);
  int64_t rows = 0;
  for (const auto& g : group) {
    const FloatLinear& w = *g.w;
    for (int64_t r = 0; r < w.rows; ++r) {
      const float* row = w.w.data() + r * C;
      float mx = 0;
      for (int64_t j = 0; j < C; ++j) mx = std::max(mx, std::fabs(row[j]));
      if (mx == 0) continue;
      for (int64_t j = 0; j < C; ++j) m[size_t(j)] += std::fabs(row[j]) / mx;
    }
    rows += w.rows;
  }
  for (auto& v : m) v /= double(std::max<int64_t>(rows, 1));
  return m;
}

}  // namespace

double awq_error(const AwqLinear& l, const std::vector<float>& s, const std::vector<float>& mean_sq_x) {
  const FloatLinear& W = *l.w;
  const int64_t R = W.rows, C = W.cols, n = l.x->n();
  if (n == 0) return 0;
  std::vector<float> scaled = W.w, imp(static_cast<size_t>(C));
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < C; ++j) scaled[size_t(r * C + j)] *= s[size_t(j)];
  // The input the scaled weight sees is x / s: its mean square is mean_sq / s^2.
  for (int64_t j = 0; j < C; ++j) imp[size_t(j)] = mean_sq_x[size_t(j)] / (s[size_t(j)] * s[size_t(j)]);
  const QuantizedWeight q = l.format->quantize({scaled.data(), R, C, imp.data()});
  std::vector<float> dq(static_cast<size_t>(R * C));
  l.format->dequantize_rows(q, 0, R, dq.data());
  // Effective weight on the original input: dq diag(1/s); its difference from W.
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < C; ++j) dq[size_t(r * C + j)] = dq[size_t(r * C + j)] / s[size_t(j)] - W.w[size_t(r * C + j)];
  std::vector<float> y(static_cast<size_t>(n * R));
  cpu::linear(l.x->rows.data(), n, format_ops("f32").quantize({dq.data(), R, C, nullptr}), y.data());
  double err = 0;
  for (float v : y) err += double(v) * v;
  return err;
}

AwqResult awq_search(const std::vector<AwqLinear>& group, const std::vector<float>& mean_abs_x,
                     const std::vector<float>& mean_sq_x, int grid) {
  MOEQ_CHECK(!group.empty() && grid > 0, "AWQ search needs linears and a grid");
  const int64_t C = group.front().w->cols;
  for (const auto& g : group) MOEQ_CHECK(g.w->cols == C, "AWQ: linears of one group must share their input width");
  MOEQ_CHECK(int64_t(mean_abs_x.size()) == C && int64_t(mean_sq_x.size()) == C, "AWQ: statistics width mismatch");
  const std::vector<double> wmag = weight_magnitude(group);

  auto total_error = [&](const std::vector<float>& s) {
    std::vector<double> errs(group.size());
    parallel_for(int64_t(group.size()), 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) errs[size_t(i)] = awq_error(group[size_t(i)], s, mean_sq_x);
    });
    double sum = 0;
    for (double v : errs) sum += v;  // fixed order: deterministic
    return sum;
  };

  AwqResult best;
  best.scales.assign(size_t(C), 1.0f);
  best.error = best.error_unscaled = total_error(best.scales);
  for (int i = 0; i < grid; ++i) {
    const double a = double(i) / grid;
    std::vector<float> s(static_cast<size_t>(C));
    double mx = 0, mn = INFINITY;
    for (int64_t j = 0; j < C; ++j) {
      const double xa = std::pow(std::max<double>(mean_abs_x[size_t(j)], 1e-8), a);
      const double wa = std::pow(std::max<double>(wmag[size_t(j)], 1e-8), 1.0 - a);
      const double v = std::max(xa / wa, 1e-4);
      s[size_t(j)] = float(v);
      mx = std::max(mx, v);
      mn = std::min(mn, v);
    }
    const float norm = float(1.0 / std::sqrt(mx * mn));  // centre the scales around 1
    for (auto& v : s) v *= norm;
    const double err = total_error(s);
    if (err < best.error) {
      best.error = err;
      best.alpha = a;
      best.scales = std::move(s);
    }
  }
  return best;
}

void fold_qkv(FloatLayer& L, const std::vector<float>& s) {
  for (size_t j = 0; j < s.size(); ++j) L.input_norm[j] /= s[j];
  scale_columns(L.q, s);
  scale_columns(L.k, s);
  scale_columns(L.v, s);
}

void fold_w13(FloatLayer& L, const std::vector<float>& s) {
  for (size_t j = 0; j < s.size(); ++j) L.post_norm[j] /= s[j];
  scale_columns(L.gate, s);  // the router reads the same normalised input
  for (size_t e = 0; e < L.w1.size(); ++e) {
    scale_columns(L.w1[e], s);
    scale_columns(L.w3[e], s);
  }
}

void fold_w2(FloatLayer& L, int e, const std::vector<float>& s) {
  FloatLinear& w3 = L.w3[size_t(e)];
  MOEQ_CHECK(int64_t(s.size()) == w3.rows, "AWQ: {} scales for {} rows of w3", s.size(), w3.rows);
  for (int64_t r = 0; r < w3.rows; ++r)
    for (int64_t j = 0; j < w3.cols; ++j) w3.w[size_t(r * w3.cols + j)] /= s[size_t(r)];
  scale_columns(L.w2[size_t(e)], s);
}

}  // namespace moeq
