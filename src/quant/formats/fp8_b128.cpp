// "fp8_b128": the original MiniMax-M2 release format. qweight = float8 e4m3fn [rows][cols],
// scales = f32 weight_scale_inv [ceil(rows/br)][ceil(cols/bc)] (br = bc = 128 in the release;
// any block size and partial edge blocks are accepted). W[i][j] = fp8[i][j] * scales[i/br][j/bc].
#include <immintrin.h>

#include <algorithm>
#include <cmath>

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

// y = W x straight from the fp8 codes: each block's partial dot product is scaled once.
void fp8_matvec(const QuantizedWeight& w, const float* x, int64_t r0, int64_t n, float* y) {
  const uint8_t* q = w.part("qweight").as<uint8_t>();
  const float* s = w.part("scales").as<float>();
  const int64_t sc = (w.cols + w.block_cols - 1) / w.block_cols;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = r0 + i;
    const uint8_t* qr = q + r * w.cols;
    const float* sr = s + (r / w.block_rows) * sc;
    float total = 0;
    for (int64_t b = 0; b < sc; ++b) {
      const int64_t j0 = b * w.block_cols, j1 = std::min(w.cols, j0 + w.block_cols);
      int64_t j = j0;
      float part = 0;
#ifdef __AVX2__
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      const __m128i sign = _mm_set1_epi16(0x80), mag = _mm_set1_epi16(0x7f);
      for (; j + 16 <= j1; j += 16) {
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qr + j));
        const __m128i lo = _mm_cvtepu8_epi16(bytes), hi = _mm_cvtepu8_epi16(_mm_srli_si128(bytes, 8));
        const __m128i hlo = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(lo, sign), 8), _mm_slli_epi16(_mm_and_si128(lo, mag), 7));
        const __m128i hhi = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(hi, sign), 8), _mm_slli_epi16(_mm_and_si128(hi, mag), 7));
        acc0 = _mm256_fmadd_ps(_mm256_cvtph_ps(hlo), _mm256_loadu_ps(x + j), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtph_ps(hhi), _mm256_loadu_ps(x + j + 8), acc1);
      }
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(_mm256_add_ps(acc0, acc1)), _mm256_extractf128_ps(_mm256_add_ps(acc0, acc1), 1));
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));
      h = _mm_add_ss(h, _mm_movehdup_ps(h));
      part = _mm_cvtss_f32(h) * 256.0f;  // the f16 view is 2^-8 of the e4m3 value
#endif
      for (; j < j1; ++j) part += fp8e4m3_to_f32(qr[j]) * x[j];
      total += part * sr[b];
    }
    y[i] = total;
  }
}

// From float: one f32 scale per 128x128 block, absmax / 448 (e4m3's largest finite value).
QuantizedWeight fp8_quantize(const QuantizeInput& in) {
  constexpr int64_t B = 128;
  const int64_t br = (in.rows + B - 1) / B, bc = (in.cols + B - 1) / B;
  HostArray q = HostArray::owned(DType::F8_E4M3, {in.rows, in.cols});
  HostArray s = HostArray::owned(DType::F32, {br, bc});
  auto* qd = reinterpret_cast<uint8_t*>(q.mutable_data());
  auto* sd = reinterpret_cast<float*>(s.mutable_data());
  for (int64_t bi = 0; bi < br; ++bi)
    for (int64_t bj = 0; bj < bc; ++bj) {
      float amax = 0;
      for (int64_t i = bi * B; i < std::min(in.rows, (bi + 1) * B); ++i)
        for (int64_t j = bj * B; j < std::min(in.cols, (bj + 1) * B); ++j) amax = std::max(amax, std::fabs(in.w[i * in.cols + j]));
      const float scale = amax > 0 ? amax / 448.0f : 1.0f;
      sd[bi * bc + bj] = scale;
      for (int64_t i = bi * B; i < std::min(in.rows, (bi + 1) * B); ++i)
        for (int64_t j = bj * B; j < std::min(in.cols, (bj + 1) * B); ++j)
          qd[i * in.cols + j] = f32_to_fp8e4m3(in.w[i * in.cols + j] / scale);
    }
  return make_fp8_block_weight(std::move(q), std::move(s), B, B);
}

}  // namespace

extern const FormatOps kFormatFp8B128 = {"fp8_b128", fp8_validate, fp8_rows_ref, fp8_rows, fp8_matvec, fp8_quantize};

}  // namespace moeq
