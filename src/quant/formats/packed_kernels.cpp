#include "quant/formats/packed_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "quant/formats/packed_codes.h"

namespace moeq::fmtq {

void Levels::row(int64_t r, int bits, float* out) const {
  const int k = 1 << bits;
  if (uniform) {
    for (int i = 0; i < k; ++i) out[i] = float(i - k / 2);
    return;
  }
  const uint16_t* cb = codebook + (per_row ? r * k : 0);
  for (int i = 0; i < k; ++i) out[i] = f16_to_f32(cb[i]);
}

namespace {

struct RowPtrs {
  const uint8_t* q;
  const uint16_t* s;
};

// The parts are looked up once per call, not per row.
struct Packed {
  const uint8_t* q;
  const uint16_t* s;
  const uint8_t* q_end;  // one past the last packed byte: the vector loads must not cross it
  int64_t q_stride, s_stride;
  Packed(const QuantizedWeight& w, CodeLayout L)
      : q(w.part("qweight").as<uint8_t>()),
        s(w.part("scales").as<uint16_t>()),
        q_end(q + w.part("qweight").nbytes),
        q_stride(packed_row_bytes(w.cols, L.bits)),
        s_stride(w.cols / L.group) {}
  RowPtrs row(int64_t r) const { return {q + r * q_stride, s + r * s_stride}; }
};

void dequant_row_ref(RowPtrs p, const float* lv, int bits, int64_t group, int64_t cols, float* out) {
  for (int64_t j = 0; j < cols; ++j) out[j] = lv[code_at(p.q, j, bits)] * f16_to_f32(p.s[j / group]);
}

[[maybe_unused]] float dot_row_scalar(RowPtrs p, const float* lv, int bits, int64_t group, int64_t cols,
                                      const float* x) {
  float acc = 0;
  for (int64_t g = 0; g < cols / group; ++g) {
    float gacc = 0;
    for (int64_t j = g * group; j < (g + 1) * group; ++j) gacc += lv[code_at(p.q, j, bits)] * x[j];
    acc += gacc * f16_to_f32(p.s[g]);
  }
  return acc;
}

#ifdef __AVX2__
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Decoding works on blocks of 32 codes = 4*B bytes (a group is 1 or 4 blocks). The block's bytes
// are loaded once into both 128-bit halves; chunk c (codes 8c..8c+7, the B bytes at c*B) is
// spread to the eight 32-bit lanes with one byte shuffle, then lane k shifts right by k*B and
// masks. Levels come from vpermps on the level table (two and a blend for 16 levels), or for
// the uniform formats from code - 2^(B-1) converted exactly.
template <int B, bool Uniform>
class Decoder {
 public:
  explicit Decoder(const float* lv)
      : shifts_(_mm256_setr_epi32(0, B, 2 * B, 3 * B, 4 * B, 5 * B, 6 * B, 7 * B)),
        mask_(_mm256_set1_epi32((1 << B) - 1)),
        lo_(_mm256_loadu_ps(lv)),
        hi_(_mm256_loadu_ps(lv + 8)),
        offset_(_mm256_set1_ps(float(1 << (B - 1)))) {
    for (int c = 0; c < 4; ++c) {
      const char b = char(c * B);
      pat_[c] = _mm256_setr_epi8(b, char(b + 1), char(b + 2), char(b + 3), b, char(b + 1), char(b + 2), char(b + 3), b,
                                 char(b + 1), char(b + 2), char(b + 3), b, char(b + 1), char(b + 2), char(b + 3), b,
                                 char(b + 1), char(b + 2), char(b + 3), b, char(b + 1), char(b + 2), char(b + 3), b,
                                 char(b + 1), char(b + 2), char(b + 3), b, char(b + 1), char(b + 2), char(b + 3));
    }
  }

  // The 4*B bytes at p in both halves; 16 bytes are read where that stays inside the buffer.
  static __m256i load_block(const uint8_t* p, const uint8_t* end) {
    __m128i v;
    if (end - p >= 16) {
      v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    } else {
      alignas(16) uint8_t tmp[16] = {};
      std::memcpy(tmp, p, 4 * B);
      v = _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
    }
    return _mm256_broadcastsi128_si256(v);
  }

  __m256 levels(__m256i block, int c) const {
    const __m256i codes = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(block, pat_[c]), shifts_), mask_);
    if constexpr (Uniform) {
      return _mm256_sub_ps(_mm256_cvtepi32_ps(codes), offset_);  // small integers: exact
    } else if constexpr (B <= 3) {
      return _mm256_permutevar8x32_ps(lo_, codes);
    } else {
      const __m256 a = _mm256_permutevar8x32_ps(lo_, codes), b = _mm256_permutevar8x32_ps(hi_, codes);
      return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(codes, 28)));
    }
  }

 private:
  __m256i pat_[4], shifts_, mask_;
  __m256 lo_, hi_, offset_;
};

// Scales are decoded 64 groups at a time with F16C (exact, so equal to f16_to_f32): a scalar
// conversion per group would cost as much as decoding a group of 32 codes.
constexpr int64_t kScaleChunk = 64;

inline void decode_scales(const uint16_t* s, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i))));
  for (; i < n; ++i) out[i] = f16_to_f32(s[i]);
}

template <int B, bool U>
void dequant_row_avx2(const Decoder<B, U>& d, RowPtrs p, const uint8_t* end, int64_t group, int64_t cols, float* out) {
  const int64_t ng = cols / group, blocks = group / 32;
  float sc[kScaleChunk];
  for (int64_t g0 = 0; g0 < ng; g0 += kScaleChunk) {
    const int64_t g1 = std::min(ng, g0 + kScaleChunk);
    decode_scales(p.s + g0, g1 - g0, sc);
    for (int64_t g = g0; g < g1; ++g) {
      const __m256 vs = _mm256_broadcast_ss(sc + (g - g0));
      for (int64_t b = 0; b < blocks; ++b) {
        const __m256i blk = Decoder<B, U>::load_block(p.q + (g * blocks + b) * 4 * B, end);
        float* o = out + (g * blocks + b) * 32;
        for (int c = 0; c < 4; ++c) _mm256_storeu_ps(o + 8 * c, _mm256_mul_ps(d.levels(blk, c), vs));
      }
    }
  }
}

template <int B, bool U>
float dot_row_avx2(const Decoder<B, U>& d, RowPtrs p, const uint8_t* end, int64_t group, int64_t cols,
                   const float* x) {
  const int64_t ng = cols / group, blocks = group / 32;
  float sc[kScaleChunk];
  __m256 acc = _mm256_setzero_ps();
  for (int64_t g0 = 0; g0 < ng; g0 += kScaleChunk) {
    const int64_t g1 = std::min(ng, g0 + kScaleChunk);
    decode_scales(p.s + g0, g1 - g0, sc);
    for (int64_t g = g0; g < g1; ++g) {
      __m256 gacc = _mm256_setzero_ps();
      for (int64_t b = 0; b < blocks; ++b) {
        const __m256i blk = Decoder<B, U>::load_block(p.q + (g * blocks + b) * 4 * B, end);
        const float* xb = x + (g * blocks + b) * 32;
        for (int c = 0; c < 4; ++c) gacc = _mm256_fmadd_ps(d.levels(blk, c), _mm256_loadu_ps(xb + 8 * c), gacc);
      }
      acc = _mm256_fmadd_ps(gacc, _mm256_broadcast_ss(sc + (g - g0)), acc);
    }
  }
  return hsum(acc);
}

// Runs fn(decoder) with the decoder for this bit width and level kind.
template <typename Fn>
void with_decoder(int bits, bool uniform, const float* lv, Fn&& fn) {
  switch (bits * 2 + (uniform ? 1 : 0)) {
    case 4: fn(Decoder<2, false>(lv)); break;
    case 5: fn(Decoder<2, true>(lv)); break;
    case 6: fn(Decoder<3, false>(lv)); break;
    case 7: fn(Decoder<3, true>(lv)); break;
    case 8: fn(Decoder<4, false>(lv)); break;
    case 9: fn(Decoder<4, true>(lv)); break;
    default: fail("packed kernels: {} bits is not supported", bits);
  }
}
#endif

void check_layout(CodeLayout L) {
  if (L.group % 32 != 0) fail("packed kernels: group {} is not a multiple of 32", L.group);
}

}  // namespace

void code_dequant_rows_ref(const QuantizedWeight& w, CodeLayout L, const Levels& lv, int64_t r0, int64_t n,
                           float* out) {
  const Packed pk(w, L);
  float table[16] = {};
  for (int64_t i = 0; i < n; ++i) {
    lv.row(r0 + i, L.bits, table);
    dequant_row_ref(pk.row(r0 + i), table, L.bits, L.group, w.cols, out + i * w.cols);
  }
}

void code_dequant_rows(const QuantizedWeight& w, CodeLayout L, const Levels& lv, int64_t r0, int64_t n, float* out) {
#ifdef __AVX2__
  check_layout(L);
  const Packed pk(w, L);
  float table[16] = {};
  for (int64_t i = 0; i < n;) {
    // A run of rows sharing one level table (all of them, unless the codebook is per row).
    const int64_t run = lv.per_row ? 1 : n;
    lv.row(r0 + i, L.bits, table);
    with_decoder(L.bits, lv.uniform, table, [&](const auto& d) {
      for (int64_t k = i; k < i + run; ++k)
        dequant_row_avx2(d, pk.row(r0 + k), pk.q_end, L.group, w.cols, out + k * w.cols);
    });
    i += run;
  }
#else
  code_dequant_rows_ref(w, L, lv, r0, n, out);
#endif
}

void code_matvec(const QuantizedWeight& w, CodeLayout L, const Levels& lv, const float* x, int64_t r0, int64_t n,
                 float* y) {
  const Packed pk(w, L);
  float table[16] = {};
#ifdef __AVX2__
  check_layout(L);
  for (int64_t i = 0; i < n;) {
    const int64_t run = lv.per_row ? 1 : n;
    lv.row(r0 + i, L.bits, table);
    with_decoder(L.bits, lv.uniform, table, [&](const auto& d) {
      for (int64_t k = i; k < i + run; ++k) y[k] = dot_row_avx2(d, pk.row(r0 + k), pk.q_end, L.group, w.cols, x);
    });
    i += run;
  }
#else
  for (int64_t i = 0; i < n; ++i) {
    lv.row(r0 + i, L.bits, table);
    y[i] = dot_row_scalar(pk.row(r0 + i), table, L.bits, L.group, w.cols, x);
  }
#endif
}

}  // namespace moeq::fmtq
