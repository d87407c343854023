// "fp8_b128": the original MiniMax-M2 release format. qweight = float8 e4m3fn [rows][cols],
// scales = f32 weight_scale_inv [ceil(rows/br)][ceil(cols/bc)] (br = bc = 128 in the release;
// any block size and partial edge blocks are accepted). W[i][j] = fp8[i][j] * scales[i/br][j/bc].
#include <immintrin.h>

#include "core/error.h"
#include "quant/formats/format.h"

namespace moeq {
namespace {

void fp8_validate(const QuantizedWeight& w, const std::string& where) {
  const HostArray& q = w.part("qweight");
  const HostArray& s = w.part("scales");
  if (q.dtype != DType::F8_E4M3) fail("{}: fp8 weight stored as {}", where, dtype_name(q.dtype));
  if (q.shape != std::vector<int64_t>{w.rows, w.cols})
    fail("{}: weight shape {}, expected [{}, {}]", where, shape_str(q.shape), w.rows, w.cols);
  if (w.block_rows <= 0 || w.block_cols <= 0) fail("{}: fp8 block size must be positive", where);
  const std::vector<int64_t> expect = {(w.rows + w.block_rows - 1) / w.block_rows,
                                       (w.cols + w.block_cols - 1) / w.block_cols};
  if (s.dtype != DType::F32) fail("{}: weight_scale_inv stored as {}, expected F32", where, dtype_name(s.dtype));
  if (s.shape != expect)
    fail("{}: weight_scale_inv shape {}, expected {} for {}x{} blocks", where, shape_str(s.shape), shape_str(expect),
         w.block_rows, w.block_cols);
}

void fp8_rows_ref(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  const uint8_t* q = w.part("qweight").as<uint8_t>();
  const float* s = w.part("scales").as<float>();
  const int64_t sc = (w.cols + w.block_cols - 1) / w.block_cols;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < w.cols; ++j) {
      const int64_t r = r0 + i;
      out[i * w.cols + j] = fp8e4m3_to_f32(q[r * w.cols + j]) * s[(r / w.block_rows) * sc + j / w.block_cols];
    }
}

// e4m3 -> f16 is a bit shift (one less exponent bit, 2^8 apart in scale, subnormals included);
// F16C widens to f32 and the 2^8 goes into the block scale. Exact, so bit-identical to the
// reference for every finite code (NaN codes are not valid weights).
void fp8_rows(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
#ifdef __AVX2__
  const uint8_t* q = w.part("qweight").as<uint8_t>();
  const float* s = w.part("scales").as<float>();
  const int64_t sc = (w.cols + w.block_cols - 1) / w.block_cols;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = r0 + i;
    const uint8_t* qr = q + r * w.cols;
    const float* sr = s + (r / w.block_rows) * sc;
    float* o = out + i * w.cols;
    for (int64_t b = 0; b < sc; ++b) {
      const int64_t j0 = b * w.block_cols, j1 = std::min(w.cols, j0 + w.block_cols);
      const float scale = sr[b];
      const __m256 vs = _mm256_set1_ps(scale * 256.0f);
      int64_t j = j0;
      for (; j + 8 <= j1; j += 8) {
        const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(qr + j));
        const __m128i x = _mm_cvtepu8_epi16(bytes);
        const __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(x, _mm_set1_epi16(0x80)), 8),
                                       _mm_slli_epi16(_mm_and_si128(x, _mm_set1_epi16(0x7f)), 7));
        _mm256_storeu_ps(o + j, _mm256_mul_ps(_mm256_cvtph_ps(h), vs));
      }
      for (; j < j1; ++j) o[j] = fp8e4m3_to_f32(qr[j]) * scale;
    }
  }
#else
  fp8_rows_ref(w, r0, n, out);
#endif
}

}  // namespace

extern const FormatOps kFormatFp8B128 = {"fp8_b128", fp8_validate, fp8_rows_ref, fp8_rows};

}  // namespace moeq
