// "f32" and "bf16": unquantized weights, qweight [rows][cols].
#include <immintrin.h>

#include <cstring>

#include "core/error.h"
#include "quant/formats/format.h"

namespace moeq {
namespace {

void validate_dense(const QuantizedWeight& w, DType dt, const std::string& where) {
  const HostArray& q = w.part("qweight");
  if (q.dtype != dt) fail("{}: {} weight stored as {}", where, w.format, dtype_name(q.dtype));
  if (q.shape != std::vector<int64_t>{w.rows, w.cols})
    fail("{}: weight shape {}, expected [{}, {}]", where, shape_str(q.shape), w.rows, w.cols);
}

void f32_validate(const QuantizedWeight& w, const std::string& where) { validate_dense(w, DType::F32, where); }
void bf16_validate(const QuantizedWeight& w, const std::string& where) { validate_dense(w, DType::BF16, where); }

void f32_rows(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  std::memcpy(out, w.part("qweight").as<float>() + r0 * w.cols, size_t(n * w.cols) * sizeof(float));
}

void bf16_rows_ref(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  const uint16_t* src = w.part("qweight").as<uint16_t>() + r0 * w.cols;
  for (int64_t i = 0; i < n * w.cols; ++i) out[i] = bf16_to_f32(src[i]);
}

void bf16_rows(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  const uint16_t* src = w.part("qweight").as<uint16_t>() + r0 * w.cols;
  const int64_t total = n * w.cols;
  int64_t i = 0;
#ifdef __AVX2__
  for (; i + 8 <= total; i += 8) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
  }
#endif
  for (; i < total; ++i) out[i] = bf16_to_f32(src[i]);
}

float hsum8(const float* p) {
  float s = 0;
  for (int i = 0; i < 8; ++i) s += p[i];
  return s;
}

void bf16_matvec(const QuantizedWeight& w, const float* x, int64_t r0, int64_t n, float* y) {
  const uint16_t* q = w.part("qweight").as<uint16_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t* row = q + (r0 + i) * w.cols;
    int64_t j = 0;
    float total = 0;
#ifdef __AVX2__
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; j + 16 <= w.cols; j += 16) {
      const __m256i a = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j)));
      const __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + j + 8)));
      acc0 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(a, 16)), _mm256_loadu_ps(x + j), acc0);
      acc1 = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(b, 16)), _mm256_loadu_ps(x + j + 8), acc1);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
    total = hsum8(lanes);
#endif
    for (; j < w.cols; ++j) total += bf16_to_f32(row[j]) * x[j];
    y[i] = total;
  }
}

void f32_matvec(const QuantizedWeight& w, const float* x, int64_t r0, int64_t n, float* y) {
  const float* q = w.part("qweight").as<float>();
  for (int64_t i = 0; i < n; ++i) {
    const float* row = q + (r0 + i) * w.cols;
    float total = 0;
    for (int64_t j = 0; j < w.cols; ++j) total += row[j] * x[j];
    y[i] = total;
  }
}

QuantizedWeight f32_quantize(const QuantizeInput& in) {
  HostArray a = HostArray::owned(DType::F32, {in.rows, in.cols});
  std::memcpy(a.mutable_data(), in.w, a.nbytes);
  return make_dense_weight(std::move(a));
}

QuantizedWeight bf16_quantize(const QuantizeInput& in) {
  HostArray a = HostArray::owned(DType::BF16, {in.rows, in.cols});
  auto* dst = reinterpret_cast<uint16_t*>(a.mutable_data());
  for (int64_t i = 0; i < in.rows * in.cols; ++i) dst[i] = f32_to_bf16(in.w[i]);
  return make_dense_weight(std::move(a));
}

}  // namespace

extern const FormatOps kFormatF32 = {"f32", f32_validate, f32_rows, f32_rows, f32_matvec, f32_quantize};
extern const FormatOps kFormatBf16 = {"bf16", bf16_validate, bf16_rows_ref, bf16_rows, bf16_matvec, bf16_quantize};

}  // namespace moeq
