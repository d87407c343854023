#include "quant/formats/codebook_fit.h"

#include <immintrin.h>

#include <algorithm>

#include "core/dtype.h"
#include "quant/formats/lloyd_fit.h"

namespace moeq::fmtq {
namespace {

constexpr int kScaleCandidates = 24;

float group_error_scalar(const Book& bk, const float* w, const float* imp, int64_t n, float s) {
  const int k = int(bk.level.size());
  float e = 0;
  for (int64_t j = 0; j < n; ++j) {
    const float d = w[j] - bk.level[size_t(nearest_level(w[j] / s, bk.mid.data(), k))] * s;
    e += imp[j] * d * d;
  }
  return e;
}

#ifdef __AVX2__
// Eight weights at a time: the code is the count of midpoints below w/s, the level comes from
// one or two in-register table lookups. Accumulates in float (a group is at most 256 wide).
float group_error_avx2(const Book& bk, const float* w, const float* imp, int64_t n, float s) {
  const int k = int(bk.level.size());
  float lv[16] = {};
  std::copy(bk.level.begin(), bk.level.end(), lv);
  const __m256 lo = _mm256_loadu_ps(lv), hi = _mm256_loadu_ps(lv + 8), vs = _mm256_set1_ps(s);
  __m256 mids[15];
  for (int i = 0; i + 1 < k; ++i) mids[i] = _mm256_set1_ps(bk.mid[size_t(i)]);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t j = 0; j < n; j += 8) {
    const __m256 wv = _mm256_loadu_ps(w + j);
    const __m256 u = _mm256_div_ps(wv, vs);  // the same correctly rounded w/s as the scalar code
    __m256i idx = _mm256_setzero_si256();
    for (int i = 0; i + 1 < k; ++i)
      idx = _mm256_sub_epi32(idx, _mm256_castps_si256(_mm256_cmp_ps(u, mids[i], _CMP_GT_OQ)));
    __m256 level = _mm256_permutevar8x32_ps(lo, idx);
    if (k > 8)
      level = _mm256_blendv_ps(level, _mm256_permutevar8x32_ps(hi, idx), _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
    const __m256 d = _mm256_sub_ps(wv, _mm256_mul_ps(level, vs));
    acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(imp + j), d), d, acc);
  }
  alignas(32) float parts[8];
  _mm256_store_ps(parts, acc);
  float e = 0;
  for (float p : parts) e += p;  // fixed order: deterministic
  return e;
}
#endif

}  // namespace

Book make_book(const std::vector<float>& levels) {
  Book b;
  for (float v : levels) b.f16.push_back(f32_to_f16(v));
  // f16 rounding keeps the order but may tie neighbours; sort by value to be sure (-0 == +0).
  std::stable_sort(b.f16.begin(), b.f16.end(), [](uint16_t x, uint16_t y) { return f16_to_f32(x) < f16_to_f32(y); });
  for (uint16_t h : b.f16) b.level.push_back(f16_to_f32(h));
  for (size_t i = 0; i + 1 < b.level.size(); ++i) b.mid.push_back(0.5f * (b.level[i] + b.level[i + 1]));
  return b;
}

void assign_codes(const Book& bk, const float* w, int64_t n, float s, uint8_t* codes) {
  const int k = int(bk.level.size());
  int64_t j = 0;
#ifdef __AVX2__
  // The same count of midpoints below w/s as nearest_level, eight at a time.
  __m256 mids[15];
  for (int i = 0; i + 1 < k; ++i) mids[i] = _mm256_set1_ps(bk.mid[size_t(i)]);
  const __m256 vs = _mm256_set1_ps(s);
  for (; j + 8 <= n; j += 8) {
    const __m256 u = _mm256_div_ps(_mm256_loadu_ps(w + j), vs);
    __m256i idx = _mm256_setzero_si256();
    for (int i = 0; i + 1 < k; ++i)
      idx = _mm256_sub_epi32(idx, _mm256_castps_si256(_mm256_cmp_ps(u, mids[i], _CMP_GT_OQ)));
    alignas(32) int32_t c[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(c), idx);
    for (int l = 0; l < 8; ++l) codes[j + l] = uint8_t(c[l]);
  }
#endif
  for (; j < n; ++j) codes[j] = uint8_t(nearest_level(w[j] / s, bk.mid.data(), k));
}

float group_error(const Book& bk, const float* w, const float* imp, int64_t n, float s) {
#ifdef __AVX2__
  if (n % 8 == 0) return group_error_avx2(bk, w, imp, n, s);
#endif
  return group_error_scalar(bk, w, imp, n, s);
}

GroupFit fit_group(const Book& bk, const float* w, const float* imp, int64_t n, uint16_t s0, bool refine,
                   uint8_t* codes) {
  if (s0 == 0) {  // all zero: any level times scale 0 is 0; take the one nearest 0
    std::fill(codes, codes + n, uint8_t(nearest_level(0.0f, bk.mid.data(), int(bk.level.size()))));
    return {0, 0.0f};
  }
  uint16_t best_s = s0, assigned = 0;  // assigned: the scale `codes` currently holds codes for (0: none)
  float best = group_error(bk, w, imp, n, f16_to_f32(s0));
  if (refine) {
    auto consider = [&](float s) {
      const uint16_t h = f32_to_f16(s);
      if (!(s > 0) || h == 0 || (h & 0x7c00) == 0x7c00) return;  // outside f16: not a candidate
      const float e = group_error(bk, w, imp, n, f16_to_f32(h));
      if (e < best) {
        best = e;
        best_s = h;
      }
    };
    const float a = f16_to_f32(s0);
    for (int c = 0; c < kScaleCandidates; ++c) consider(a * (0.7f + 0.7f * float(c) / float(kScaleCandidates - 1)));
    for (int round = 0; round < 2; ++round) {
      if (round > 0 && assigned == best_s) break;  // the last refit changed nothing: it would repeat
      assign_codes(bk, w, n, f16_to_f32(best_s), codes);
      assigned = best_s;
      double num = 0, den = 0;
      for (int64_t j = 0; j < n; ++j) {
        const double c = bk.level[codes[j]];
        num += double(imp[j]) * double(w[j]) * c;
        den += double(imp[j]) * c * c;
      }
      if (den > 0) consider(float(num / den));
    }
  }
  if (assigned != best_s) assign_codes(bk, w, n, f16_to_f32(best_s), codes);
  return {best_s, best};
}

}  // namespace moeq::fmtq
