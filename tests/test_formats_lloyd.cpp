// The lloyd*_g* formats: the 1-D Lloyd-Max solver, Lloyd against uniform at equal bits, the
// importance weighting, and the per-tensor / per-row codebook choice.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "quant/formats/format.h"
#include "quant/formats/lloyd_fit.h"
#include "quant/formats/lloyd_quant.h"
#include "support/random.h"

using namespace moeq;

namespace {

std::vector<float> gauss(std::mt19937_64& rng, int64_t n) {
  std::normal_distribution<float> d(0.0f, 0.02f);
  std::vector<float> w(static_cast<size_t>(n));
  for (auto& v : w) v = d(rng);
  return w;
}

std::vector<float> student(std::mt19937_64& rng, int64_t n) {
  std::student_t_distribution<float> t(std::uniform_real_distribution<float>(3.0f, 5.0f)(rng));
  std::vector<float> w(static_cast<size_t>(n));
  for (auto& v : w) v = 0.02f * t(rng);
  return w;
}

std::vector<float> skewed_importance(std::mt19937_64& rng, int64_t cols) {
  std::lognormal_distribution<float> ln(0.0f, 1.5f);
  std::vector<float> imp(static_cast<size_t>(cols));
  for (auto& v : imp) v = ln(rng);
  return imp;
}

// sum_ij imp_j (W - Q)^2 for a format quantized with the given importance (null: plain).
double error_of(const std::string& fmt, const std::vector<float>& w, int64_t rows, int64_t cols, const float* quant_imp,
                const float* measure_imp) {
  const QuantizedWeight q = format_ops(fmt).quantize({w.data(), rows, cols, quant_imp});
  return fmtq::weighted_sq_error(q, w.data(), measure_imp);
}

}  // namespace

TEST(LloydMax1d, UniformDensityGivesTheUniformQuantizer) {
  fmtq::WeightedPoints p;
  for (int i = 0; i < 20000; ++i) {
    p.x.push_back(-1.0f + (2.0f * float(i) + 1.0f) / 20000.0f);
    p.w.push_back(1.0);
  }
  const std::vector<float> c = fmtq::lloyd_max_1d(p, 4);
  ASSERT_EQ(c.size(), 4u);
  const float expect[4] = {-0.75f, -0.25f, 0.25f, 0.75f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(c[size_t(i)], expect[i], 2e-3);
}

TEST(LloydMax1d, GaussianTwoLevelsAndWeights) {
  // Two levels on N(0, 1): +-sqrt(2/pi) = +-0.7979. The density goes in as weights on a grid.
  fmtq::WeightedPoints p;
  for (int i = -6000; i <= 6000; ++i) {
    const double x = i / 1000.0;
    p.x.push_back(float(x));
    p.w.push_back(std::exp(-0.5 * x * x));
  }
  std::vector<float> c = fmtq::lloyd_max_1d(p, 2);
  EXPECT_NEAR(c[0], -0.7979f, 1e-3);
  EXPECT_NEAR(c[1], 0.7979f, 1e-3);
  // Weight the positive side 3x: the levels follow the weight (still the cell means).
  for (size_t i = 0; i < p.x.size(); ++i)
    if (p.x[i] > 0) p.w[i] *= 3;
  c = fmtq::lloyd_max_1d(p, 2);
  EXPECT_GT(c[0], -0.7979f);  // the boundary moves left; the left cell keeps only its tail
  EXPECT_LT(c[0], c[1]);
  // No weight at all: evenly spread, still sorted.
  for (auto& w : p.w) w = 0;
  c = fmtq::lloyd_max_1d(p, 4);
  ASSERT_EQ(c.size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(c[size_t(i)], -1.0f + 2.0f * float(i) / 3.0f, 1e-6f);
}

// The point of a learned codebook: lower error than the uniform grid at the same bits.
TEST(LloydFormats, LowerErrorThanUniformAtEqualBits) {
  std::mt19937_64 rng(test::test_seed());
  const int64_t rows = 96, cols = 1536;
  const std::vector<float> ones(static_cast<size_t>(cols), 1.0f);
  for (int data = 0; data < 2; ++data) {
    const std::vector<float> w = data ? student(rng, rows * cols) : gauss(rng, rows * cols);
    for (auto [lloyd, uniform] : std::vector<std::pair<std::string, std::string>>{{"lloyd2_g32", "int2_g32"},
                                                                                   {"lloyd3_g32", "int3_g32"},
                                                                                   {"lloyd4_g32", "int4_g32"},
                                                                                   {"lloyd4_g128", "int4_g128"}}) {
      const double el = error_of(lloyd, w, rows, cols, nullptr, nullptr);
      const double eu = error_of(uniform, w, rows, cols, nullptr, nullptr);
      EXPECT_LE(el, eu) << lloyd << " vs " << uniform << (data ? " student-t" : " gauss");
      // Also against the uniform grid with its scale search switched on (unit importance).
      const double es = error_of(uniform, w, rows, cols, ones.data(), nullptr);
      EXPECT_LE(el, es) << lloyd << " vs searched " << uniform << (data ? " student-t" : " gauss");
    }
  }
}

// With a skewed importance, the importance-aware codebook and scales give a lower weighted error
// than the importance-free ones, and than the importance-aware uniform grid at equal bits.
TEST(LloydFormats, ImportanceWeightingLowersWeightedError) {
  std::mt19937_64 rng(test::test_seed());
  const int64_t rows = 64, cols = 1536;
  const std::vector<float> imp = skewed_importance(rng, cols);
  for (int data = 0; data < 2; ++data) {
    const std::vector<float> w = data ? student(rng, rows * cols) : gauss(rng, rows * cols);
    for (const char* f : {"lloyd2_g32", "lloyd3_g32", "lloyd4_g32", "lloyd2_g128", "lloyd3_g128", "lloyd4_g128"}) {
      const double aware = error_of(f, w, rows, cols, imp.data(), imp.data());
      const double plain = error_of(f, w, rows, cols, nullptr, imp.data());
      EXPECT_LE(aware, plain) << f << (data ? " student-t" : " gauss");
    }
    for (auto [lloyd, uniform] : std::vector<std::pair<std::string, std::string>>{
             {"lloyd2_g32", "int2_g32"}, {"lloyd3_g32", "int3_g32"}, {"lloyd4_g32", "int4_g32"}}) {
      EXPECT_LE(error_of(lloyd, w, rows, cols, imp.data(), imp.data()),
                error_of(uniform, w, rows, cols, imp.data(), imp.data()))
          << lloyd << (data ? " student-t" : " gauss");
    }
  }
}

// Auto keeps one codebook for rows that share a distribution, and goes per row when rows differ
// enough to pay for the extra bits.
TEST(LloydFormats, AutoCodebookFollowsTheRows) {
  std::mt19937_64 rng(test::test_seed());
  const fmtq::LloydSpec spec{"lloyd2_g32", 2, 32};
  const fmtq::LloydOptions autom{fmtq::CodebookMode::Auto};
  const int64_t rows = 32, cols = 1536;
  const std::vector<float> iid = gauss(rng, rows * cols);
  EXPECT_EQ(fmtq::lloyd_quantize(spec, {iid.data(), rows, cols, nullptr}, autom).part("codebook").shape[0], 1);
  // Rows on two different 4-value grids, {+-a, +-a/2} and {+-a, +-a/5} (each group holding an a):
  // a row's own 4 levels fit it exactly, while one codebook for both must miss 2 of 6 values.
  std::vector<float> grid(static_cast<size_t>(rows * cols));
  std::uniform_int_distribution<int> pick(0, 3);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const float inner = r % 2 ? 0.5f : 0.2f, v[4] = {-1.0f, -inner, inner, 1.0f};
      grid[size_t(r * cols + j)] = 0.02f * (j % 32 == 0 ? 1.0f : v[pick(rng)]);
    }
  const QuantizedWeight q = fmtq::lloyd_quantize(spec, {grid.data(), rows, cols, nullptr}, autom);
  EXPECT_EQ(q.part("codebook").shape[0], rows);
  EXPECT_NO_THROW(format_ops("lloyd2_g32").validate(q, "test"));
  EXPECT_LT(fmtq::weighted_sq_error(q, grid.data(), nullptr), 1e-6 * 0.0004 * double(rows * cols));
}

// Degenerate inputs stay finite: all-zero matrices, zero importance everywhere, a single row.
TEST(LloydFormats, DegenerateInputs) {
  for (const char* f : {"lloyd2_g32", "lloyd4_g128"}) {
    const std::vector<float> zeros(4 * 256, 0.0f), no_imp(256, 0.0f);
    for (const float* imp : {static_cast<const float*>(nullptr), no_imp.data()}) {
      const QuantizedWeight q = format_ops(f).quantize({zeros.data(), 4, 256, imp});
      std::vector<float> out(4 * 256, 1.0f);
      format_ops(f).dequantize_rows(q, 0, 4, out.data());
      for (float v : out) ASSERT_EQ(v, 0.0f) << f;
    }
    std::mt19937_64 rng(7);
    const std::vector<float> one = gauss(rng, 256);
    const QuantizedWeight q = format_ops(f).quantize({one.data(), 1, 256, no_imp.data()});
    std::vector<float> out(256);
    format_ops(f).dequantize_rows(q, 0, 1, out.data());
    for (float v : out) ASSERT_TRUE(std::isfinite(v));
  }
}
