// "q8_g32": int8 symmetric, one f16 scale per 32 consecutive inputs of a row (8.5 bpw).
//   qweight I8  [rows, cols]       q in [-128, 127] (round to nearest uses [-127, 127])
//   scales  F16 [rows, cols / 32]
//   W[r][j] = q[r][j] * scales[r][j / 32]
#include <immintrin.h>

#include <algorithm>

#include "core/thread_pool.h"
#include "quant/formats/format.h"
#include "quant/formats/group_common.h"
#include "quant/formats/uniform_quant.h"

namespace moeq {
namespace {

constexpr std::string_view kName = "q8_g32";
constexpr int64_t G = 32;

void q8_validate(const QuantizedWeight& w, const std::string& where) {
  fmtq::check_header(w, kName, G, where);
  fmtq::check_part(w, "qweight", DType::I8, {w.rows, w.cols}, where);
  fmtq::check_part(w, "scales", DType::F16, {w.rows, w.cols / G}, where);
  fmtq::check_only_parts(w, {"qweight", "scales"}, where);
}

void q8_rows_ref(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  const int8_t* q = w.part("qweight").as<int8_t>();
  const uint16_t* s = w.part("scales").as<uint16_t>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < w.cols; ++j) {
      const int64_t r = r0 + i;
      out[i * w.cols + j] = float(q[r * w.cols + j]) * f16_to_f32(s[r * (w.cols / G) + j / G]);
    }
}

#ifdef __AVX2__
inline __m256 load8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

#ifdef __AVX2__
// Scales are decoded 64 groups at a time with F16C (exact, so equal to f16_to_f32).
constexpr int64_t kScaleChunk = 64;

inline void decode_scales(const uint16_t* s, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) out[i] = f16_to_f32(s[i]);
}
#endif

void q8_rows(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
#ifdef __AVX2__
  const int8_t* q = w.part("qweight").as<int8_t>();
  const uint16_t* s = w.part("scales").as<uint16_t>();
  const int64_t ng = w.cols / G;
  float sc[kScaleChunk];
  for (int64_t i = 0; i < n; ++i) {
    const int8_t* qr = q + (r0 + i) * w.cols;
    float* o = out + i * w.cols;
    for (int64_t g0 = 0; g0 < ng; g0 += kScaleChunk) {
      const int64_t g1 = std::min(ng, g0 + kScaleChunk);
      decode_scales(s + (r0 + i) * ng + g0, g1 - g0, sc);
      for (int64_t g = g0; g < g1; ++g) {
        const __m256 vs = _mm256_broadcast_ss(sc + (g - g0));
        for (int64_t c = 0; c < G; c += 8) _mm256_storeu_ps(o + g * G + c, _mm256_mul_ps(load8(qr + g * G + c), vs));
      }
    }
  }
#else
  q8_rows_ref(w, r0, n, out);
#endif
}

// Per group: sum_j q_j x_j in float, then times the group's scale.
void q8_matvec(const QuantizedWeight& w, const float* x, int64_t r0, int64_t n, float* y) {
  const int8_t* q = w.part("qweight").as<int8_t>();
  const uint16_t* s = w.part("scales").as<uint16_t>();
  const int64_t ng = w.cols / G;
  for (int64_t i = 0; i < n; ++i) {
    const int8_t* qr = q + (r0 + i) * w.cols;
    const uint16_t* sr = s + (r0 + i) * ng;
#ifdef __AVX2__
    float sc[kScaleChunk];
    __m256 acc = _mm256_setzero_ps();
    for (int64_t g0 = 0; g0 < ng; g0 += kScaleChunk) {
      const int64_t g1 = std::min(ng, g0 + kScaleChunk);
      decode_scales(sr + g0, g1 - g0, sc);
      for (int64_t g = g0; g < g1; ++g) {
        const int8_t* qg = qr + g * G;
        const float* xg = x + g * G;
        __m256 a = _mm256_mul_ps(load8(qg), _mm256_loadu_ps(xg));
        a = _mm256_fmadd_ps(load8(qg + 8), _mm256_loadu_ps(xg + 8), a);
        a = _mm256_fmadd_ps(load8(qg + 16), _mm256_loadu_ps(xg + 16), a);
        a = _mm256_fmadd_ps(load8(qg + 24), _mm256_loadu_ps(xg + 24), a);
        acc = _mm256_fmadd_ps(a, _mm256_broadcast_ss(sc + (g - g0)), acc);
      }
    }
    y[i] = hsum(acc);
#else
    float acc = 0;
    for (int64_t g = 0; g < ng; ++g) {
      float a = 0;
      for (int64_t j = g * G; j < (g + 1) * G; ++j) a += float(qr[j]) * x[j];
      acc += a * f16_to_f32(sr[g]);
    }
    y[i] = acc;
#endif
  }
}

QuantizedWeight q8_quantize(const QuantizeInput& in) {
  fmtq::check_input(kName, in, G);
  QuantizedWeight out = fmtq::new_group_weight(kName, in.rows, in.cols, G);
  HostArray q = HostArray::owned(DType::I8, {in.rows, in.cols});
  HostArray s = HostArray::owned(DType::F16, {in.rows, in.cols / G});
  auto* qd = reinterpret_cast<int8_t*>(q.mutable_data());
  auto* sd = reinterpret_cast<uint16_t*>(s.mutable_data());
  const int64_t ng = in.cols / G;
  // Groups are independent, so any split over threads gives the same bytes.
  parallel_for(in.rows, std::max<int64_t>(1, 16384 / in.cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t j0 = g * G;
        sd[r * ng + g] = fmtq::quantize_group_uniform(kName, in.w + r * in.cols + j0,
                                                      in.importance ? in.importance + j0 : nullptr, G, {-128, 127},
                                                      qd + r * in.cols + j0);
      }
  });
  out.parts["qweight"] = std::move(q);
  out.parts["scales"] = std::move(s);
  return out;
}

}  // namespace

extern const FormatOps kFormatQ8G32 = {kName, q8_validate, q8_rows_ref, q8_rows, q8_matvec, q8_quantize};

}  // namespace moeq
