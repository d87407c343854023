#include "backend/cpu/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "core/thread_pool.h"

namespace moeq::cpu {
namespace {

#ifdef __AVX2__
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

// An MT x NT block of dot products over K: MT rows of x against NT rows of w.
template <int MT, int NT>
void block(const float* x, int64_t K, const float* w, float* out, int64_t ldo) {
  int64_t k = 0;
  float acc[MT][NT] = {};
#ifdef __AVX2__
  __m256 v[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) v[i][j] = _mm256_setzero_ps();
  for (; k + 8 <= K; k += 8) {
    __m256 wv[NT];
    for (int j = 0; j < NT; ++j) wv[j] = _mm256_loadu_ps(w + j * K + k);
    for (int i = 0; i < MT; ++i) {
      const __m256 xv = _mm256_loadu_ps(x + i * K + k);
      for (int j = 0; j < NT; ++j) v[i][j] = _mm256_fmadd_ps(xv, wv[j], v[i][j]);
    }
  }
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = hsum(v[i][j]);
#endif
  for (; k < K; ++k)
    for (int i = 0; i < MT; ++i)
      for (int j = 0; j < NT; ++j) acc[i][j] += x[i * K + k] * w[j * K + k];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) out[i * ldo + j] = acc[i][j];
}

template <int MT>
void row_block(const float* x, int64_t K, const float* w, int64_t N, float* out, int64_t ldo) {
  int64_t r = 0;
  for (; r + 4 <= N; r += 4) block<MT, 4>(x, K, w + r * K, out + r, ldo);
  switch (N - r) {
    case 3: block<MT, 3>(x, K, w + r * K, out + r, ldo); break;
    case 2: block<MT, 2>(x, K, w + r * K, out + r, ldo); break;
    case 1: block<MT, 1>(x, K, w + r * K, out + r, ldo); break;
    default: break;
  }
}

}  // namespace

void gemm_nt(const float* x, int64_t T, int64_t K, const float* w, int64_t N, float* out, int64_t ldo) {
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) row_block<4>(x + t * K, K, w, N, out + t * ldo, ldo);
  switch (T - t) {
    case 3: row_block<3>(x + t * K, K, w, N, out + t * ldo, ldo); break;
    case 2: row_block<2>(x + t * K, K, w, N, out + t * ldo, ldo); break;
    case 1: row_block<1>(x + t * K, K, w, N, out + t * ldo, ldo); break;
    default: break;
  }
}

void gemm_nt_ref(const float* x, int64_t T, int64_t K, const float* w, int64_t N, float* out, int64_t ldo) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = 0; r < N; ++r) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += double(x[t * K + k]) * double(w[r * K + k]);
      out[t * ldo + r] = float(s);
    }
}

float dot(const float* a, const float* b, int64_t n) {
  float out;
  block<1, 1>(a, n, b, &out, 1);
  return out;
}

void linear(const float* x, int64_t T, const QuantizedWeight& w, float* out) {
  const FormatOps& ops = format_ops(w.format);
  const int64_t N = w.rows, K = w.cols;
  // Panels of rows small enough to stay in L2 next to a block of x, and enough of them to share
  // among the threads.
  int64_t panel = std::clamp<int64_t>((256 * 1024 / 4) / std::max<int64_t>(K, 1), 4, 64);
  panel = std::min(panel, std::max<int64_t>(4, (N + 2 * num_threads() - 1) / (2 * num_threads())));
  panel = (panel + 3) / 4 * 4;
  const int64_t npanels = (N + panel - 1) / panel;
  // Rows of x per pass: with many tokens, walk x in blocks so that the panel is reused from cache.
  constexpr int64_t kTokBlock = 64;
  parallel_for(npanels, 1, [&](int64_t p0, int64_t p1) {
    thread_local std::vector<float> buf;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = p * panel, n = std::min(panel, N - r0);
      buf.resize(size_t(n * K));
      ops.dequantize_rows(w, r0, n, buf.data());
      for (int64_t t = 0; t < T; t += kTokBlock)
        gemm_nt(x + t * K, std::min(kTokBlock, T - t), K, buf.data(), n, out + t * N + r0, N);
    }
  });
}

}  // namespace moeq::cpu
