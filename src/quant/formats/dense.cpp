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

}  // namespace

extern const FormatOps kFormatF32 = {"f32", f32_validate, f32_rows, f32_rows};
extern const FormatOps kFormatBf16 = {"bf16", bf16_validate, bf16_rows_ref, bf16_rows};

}  // namespace moeq
