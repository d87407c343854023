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
  // 4 W rows x MT tokens: at most 8 accumulators + 4 W + 1 x in the 16 AVX2 registers.
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
  for (; t + 2 <= T; t += 2) row_block<2>(x + t * K, K, w, N, out + t * ldo, ldo);
  switch (T - t) {
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

namespace {

constexpr int64_t kStrip = 16;  // rows of W per packed strip (two AVX2 vectors)
constexpr int kMr = 6;          // tokens per micro-tile: 6 x 2 accumulators + 2 W + 1 broadcast = 15 ymm

// Packs rows [0, n) of a row-major panel w[n][K] into strips of 16 rows stored k-major:
// pk[s][k][0..15] = w[s*16 + i][k] (zero for rows past n), so the micro-kernel loads two vectors per k.
void pack_strips(const float* w, int64_t n, int64_t K, float* pk) {
  for (int64_t s = 0; s * kStrip < n; ++s) {
    float* dst = pk + s * K * kStrip;
    const int64_t rows = std::min(kStrip, n - s * kStrip);
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t i = 0; i < rows; ++i) dst[k * kStrip + i] = w[(s * kStrip + i) * K + k];
      for (int64_t i = rows; i < kStrip; ++i) dst[k * kStrip + i] = 0.0f;
    }
  }
}

#ifdef __AVX2__
inline void store_strip_row(float* out, __m256 a, __m256 b, int64_t cols) {
  if (cols == kStrip) {
    _mm256_storeu_ps(out, a);
    _mm256_storeu_ps(out + 8, b);
    return;
  }
  alignas(32) float tmp[kStrip];
  _mm256_store_ps(tmp, a);
  _mm256_store_ps(tmp + 8, b);
  for (int64_t c = 0; c < cols; ++c) out[c] = tmp[c];
}
#endif

// out[t][0..cols) for MR tokens against one packed strip; cols < 16 only at the panel's edge.
// The accumulators are named variables, not an array: g++ otherwise spills them every iteration.
template <int MR>
void strip_kernel(const float* x, int64_t K, const float* pk, float* out, int64_t ldo, int64_t cols) {
#ifdef __AVX2__
  __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0, a4 = a0,
         b4 = a0, a5 = a0, b5 = a0;
  for (int64_t k = 0; k < K; ++k) {
    const __m256 w0 = _mm256_loadu_ps(pk + k * kStrip), w1 = _mm256_loadu_ps(pk + k * kStrip + 8);
    __m256 xb = _mm256_broadcast_ss(x + k);
    a0 = _mm256_fmadd_ps(xb, w0, a0);
    b0 = _mm256_fmadd_ps(xb, w1, b0);
    if constexpr (MR > 1) {
      xb = _mm256_broadcast_ss(x + K + k);
      a1 = _mm256_fmadd_ps(xb, w0, a1);
      b1 = _mm256_fmadd_ps(xb, w1, b1);
    }
    if constexpr (MR > 2) {
      xb = _mm256_broadcast_ss(x + 2 * K + k);
      a2 = _mm256_fmadd_ps(xb, w0, a2);
      b2 = _mm256_fmadd_ps(xb, w1, b2);
    }
    if constexpr (MR > 3) {
      xb = _mm256_broadcast_ss(x + 3 * K + k);
      a3 = _mm256_fmadd_ps(xb, w0, a3);
      b3 = _mm256_fmadd_ps(xb, w1, b3);
    }
    if constexpr (MR > 4) {
      xb = _mm256_broadcast_ss(x + 4 * K + k);
      a4 = _mm256_fmadd_ps(xb, w0, a4);
      b4 = _mm256_fmadd_ps(xb, w1, b4);
    }
    if constexpr (MR > 5) {
      xb = _mm256_broadcast_ss(x + 5 * K + k);
      a5 = _mm256_fmadd_ps(xb, w0, a5);
      b5 = _mm256_fmadd_ps(xb, w1, b5);
    }
  }
  store_strip_row(out, a0, b0, cols);
  if constexpr (MR > 1) store_strip_row(out + ldo, a1, b1, cols);
  if constexpr (MR > 2) store_strip_row(out + 2 * ldo, a2, b2, cols);
  if constexpr (MR > 3) store_strip_row(out + 3 * ldo, a3, b3, cols);
  if constexpr (MR > 4) store_strip_row(out + 4 * ldo, a4, b4, cols);
  if constexpr (MR > 5) store_strip_row(out + 5 * ldo, a5, b5, cols);
#else
  for (int i = 0; i < MR; ++i)
    for (int64_t c = 0; c < cols; ++c) {
      float a = 0;
      for (int64_t k = 0; k < K; ++k) a += x[i * K + k] * pk[k * kStrip + c];
      out[i * ldo + c] = a;
    }
#endif
}

// out[T][n] (leading dimension ldo) = x[T][K] times the packed panel of n rows.
void gemm_packed(const float* x, int64_t T, int64_t K, const float* pk, int64_t n, float* out, int64_t ldo) {
  for (int64_t s = 0; s * kStrip < n; ++s) {
    const float* strip = pk + s * K * kStrip;
    const int64_t cols = std::min(kStrip, n - s * kStrip);
    float* o = out + s * kStrip;
    int64_t t = 0;
    for (; t + kMr <= T; t += kMr) strip_kernel<kMr>(x + t * K, K, strip, o + t * ldo, ldo, cols);
    switch (T - t) {
      case 5: strip_kernel<5>(x + t * K, K, strip, o + t * ldo, ldo, cols); break;
      case 4: strip_kernel<4>(x + t * K, K, strip, o + t * ldo, ldo, cols); break;
      case 3: strip_kernel<3>(x + t * K, K, strip, o + t * ldo, ldo, cols); break;
      case 2: strip_kernel<2>(x + t * K, K, strip, o + t * ldo, ldo, cols); break;
      case 1: strip_kernel<1>(x + t * K, K, strip, o + t * ldo, ldo, cols); break;
      default: break;
    }
  }
}

}  // namespace

void linear(const float* x, int64_t T, const QuantizedWeight& w, float* out) {
  const FormatOps& ops = format_ops(w.format);
  const int64_t N = w.rows, K = w.cols;
  if (T == 1 && ops.matvec) {  // decode: the format's fused matvec reads each packed byte once
    parallel_for(N, 64, [&](int64_t r0, int64_t r1) { ops.matvec(w, x, r0, r1 - r0, out + r0); });
    return;
  }
  // Panels of rows small enough to stay in L2 with a block of x, and enough of them to share among
  // the threads.
  int64_t panel = std::clamp<int64_t>((256 * 1024 / 4) / std::max<int64_t>(K, 1), kStrip, 64);
  panel = std::min(panel, std::max<int64_t>(kStrip, (N + 2 * num_threads() - 1) / (2 * num_threads())));
  panel = (panel + kStrip - 1) / kStrip * kStrip;
  const int64_t npanels = (N + panel - 1) / panel;
  // Few tokens: dot products on the row-major panel. Many: pack the panel k-major once and reuse
  // it for every block of tokens.
  const bool packed = T >= 4;
  constexpr int64_t kTokBlock = 96;
  parallel_for(npanels, 1, [&](int64_t p0, int64_t p1) {
    thread_local std::vector<float> buf, pk;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = p * panel, n = std::min(panel, N - r0);
      buf.resize(size_t(n * K));
      ops.dequantize_rows(w, r0, n, buf.data());
      if (!packed) {
        gemm_nt(x, T, K, buf.data(), n, out + r0, N);
        continue;
      }
      pk.resize(size_t((n + kStrip - 1) / kStrip * kStrip * K));
      pack_strips(buf.data(), n, K, pk.data());
      for (int64_t t = 0; t < T; t += kTokBlock)
        gemm_packed(x + t * K, std::min(kTokBlock, T - t), K, pk.data(), n, out + t * N + r0, N);
    }
  });
}

}  // namespace moeq::cpu
