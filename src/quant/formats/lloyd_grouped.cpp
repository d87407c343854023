// Non-uniform b-bit formats: a 2^b-level codebook learned by importance-weighted Lloyd-Max on
// group-normalised weights, an f16 scale per group of G inputs:
//   lloyd{2,3,4}_g32 (b + 0.5 bpw + codebook), lloyd{2,3,4}_g128 (b + 0.125 bpw + codebook)
//   qweight  U8  [rows, cols * b / 8]  codebook indices, packed as in packed_codes.h
//   scales   F16 [rows, cols / G]
//   codebook F16 [1, 2^b] (one for the tensor) or [rows, 2^b] (one per output row), ascending
//   W[r][j] = codebook[r or 0][code] * scales[r][j / G]
#include <cmath>

#include "core/error.h"
#include "quant/formats/format.h"
#include "quant/formats/group_common.h"
#include "quant/formats/lloyd_quant.h"
#include "quant/formats/packed_codes.h"
#include "quant/formats/packed_kernels.h"

namespace moeq {
namespace {

using fmtq::LloydSpec;

constexpr LloydSpec kL2G32{"lloyd2_g32", 2, 32}, kL3G32{"lloyd3_g32", 3, 32}, kL4G32{"lloyd4_g32", 4, 32};
constexpr LloydSpec kL2G128{"lloyd2_g128", 2, 128}, kL3G128{"lloyd3_g128", 3, 128}, kL4G128{"lloyd4_g128", 4, 128};

fmtq::Levels levels_of(const QuantizedWeight& w) {
  const HostArray& cb = w.part("codebook");
  fmtq::Levels lv;
  lv.codebook = cb.as<uint16_t>();
  lv.per_row = cb.shape[0] > 1;  // [rows, 2^b]; with one row both readings agree
  return lv;
}

template <const LloydSpec& S>
void lloyd_validate(const QuantizedWeight& w, const std::string& where) {
  fmtq::check_header(w, S.name, S.group, where);
  fmtq::check_part(w, "qweight", DType::U8, {w.rows, fmtq::packed_row_bytes(w.cols, S.bits)}, where);
  fmtq::check_part(w, "scales", DType::F16, {w.rows, w.cols / S.group}, where);
  const int64_t k = int64_t(1) << S.bits;
  auto it = w.parts.find("codebook");
  const int64_t cb_rows = it != w.parts.end() && it->second.shape.size() == 2 && it->second.shape[0] == w.rows ? w.rows : 1;
  fmtq::check_part(w, "codebook", DType::F16, {cb_rows, k}, where);
  fmtq::check_only_parts(w, {"qweight", "scales", "codebook"}, where);
  const uint16_t* cb = it->second.as<uint16_t>();
  for (int64_t i = 0; i < cb_rows * k; ++i)
    if (!std::isfinite(f16_to_f32(cb[i])))
      fail("{}: {} part 'codebook' holds a non-finite level at row {}, index {}", where, S.name, i / k, i % k);
}

template <const LloydSpec& S>
void lloyd_rows_ref(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  fmtq::code_dequant_rows_ref(w, {S.bits, S.group}, levels_of(w), r0, n, out);
}

template <const LloydSpec& S>
void lloyd_rows(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  fmtq::code_dequant_rows(w, {S.bits, S.group}, levels_of(w), r0, n, out);
}

template <const LloydSpec& S>
void lloyd_matvec(const QuantizedWeight& w, const float* x, int64_t r0, int64_t n, float* y) {
  fmtq::code_matvec(w, {S.bits, S.group}, levels_of(w), x, r0, n, y);
}

template <const LloydSpec& S>
QuantizedWeight lloyd_quantize_default(const QuantizeInput& in) {
  return fmtq::lloyd_quantize(S, in, fmtq::LloydOptions{});
}

template <const LloydSpec& S>
constexpr FormatOps lloyd_ops() {
  return {S.name, lloyd_validate<S>, lloyd_rows_ref<S>, lloyd_rows<S>, lloyd_matvec<S>, lloyd_quantize_default<S>};
}

}  // namespace

extern const FormatOps kFormatLloyd2G32 = lloyd_ops<kL2G32>();
extern const FormatOps kFormatLloyd3G32 = lloyd_ops<kL3G32>();
extern const FormatOps kFormatLloyd4G32 = lloyd_ops<kL4G32>();
extern const FormatOps kFormatLloyd2G128 = lloyd_ops<kL2G128>();
extern const FormatOps kFormatLloyd3G128 = lloyd_ops<kL3G128>();
extern const FormatOps kFormatLloyd4G128 = lloyd_ops<kL4G128>();

}  // namespace moeq
