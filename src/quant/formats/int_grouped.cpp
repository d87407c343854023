// Uniform symmetric b-bit formats with an f16 scale per group of G inputs:
//   int4_g32 (4.5 bpw), int4_g128 (4.125), int3_g32 (3.5), int2_g32 (2.5).
//   qweight U8  [rows, cols * b / 8]  codes c = q + 2^(b-1), packed as in packed_codes.h
//   scales  F16 [rows, cols / G]
//   W[r][j] = (c - 2^(b-1)) * scales[r][j / G],  q in [-2^(b-1), 2^(b-1) - 1]
// The kernels are the code-stream ones (packed_kernels.h) with the level table -2^(b-1)...
#include <algorithm>
#include <vector>

#include "core/thread_pool.h"
#include "quant/formats/format.h"
#include "quant/formats/group_common.h"
#include "quant/formats/packed_codes.h"
#include "quant/formats/packed_kernels.h"
#include "quant/formats/uniform_quant.h"

namespace moeq {
namespace {

struct IntSpec {
  std::string_view name;
  int bits;
  int64_t group;
};

constexpr IntSpec kInt4G32{"int4_g32", 4, 32};
constexpr IntSpec kInt4G128{"int4_g128", 4, 128};
constexpr IntSpec kInt3G32{"int3_g32", 3, 32};
constexpr IntSpec kInt2G32{"int2_g32", 2, 32};

// Level of each code: the integer q = code - 2^(b-1), no table needed.
constexpr fmtq::Levels kIntLevels{true, nullptr, false};

template <const IntSpec& S>
void int_validate(const QuantizedWeight& w, const std::string& where) {
  fmtq::check_header(w, S.name, S.group, where);
  fmtq::check_part(w, "qweight", DType::U8, {w.rows, fmtq::packed_row_bytes(w.cols, S.bits)}, where);
  fmtq::check_part(w, "scales", DType::F16, {w.rows, w.cols / S.group}, where);
  fmtq::check_only_parts(w, {"qweight", "scales"}, where);
}

template <const IntSpec& S>
void int_rows_ref(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  fmtq::code_dequant_rows_ref(w, {S.bits, S.group}, kIntLevels, r0, n, out);
}

template <const IntSpec& S>
void int_rows(const QuantizedWeight& w, int64_t r0, int64_t n, float* out) {
  fmtq::code_dequant_rows(w, {S.bits, S.group}, kIntLevels, r0, n, out);
}

template <const IntSpec& S>
void int_matvec(const QuantizedWeight& w, const float* x, int64_t r0, int64_t n, float* y) {
  fmtq::code_matvec(w, {S.bits, S.group}, kIntLevels, x, r0, n, y);
}

template <const IntSpec& S>
QuantizedWeight int_quantize(const QuantizeInput& in) {
  fmtq::check_input(S.name, in, S.group);
  QuantizedWeight out = fmtq::new_group_weight(S.name, in.rows, in.cols, S.group);
  const int64_t row_bytes = fmtq::packed_row_bytes(in.cols, S.bits), ng = in.cols / S.group;
  HostArray q = HostArray::owned(DType::U8, {in.rows, row_bytes});
  HostArray s = HostArray::owned(DType::F16, {in.rows, ng});
  auto* qd = reinterpret_cast<uint8_t*>(q.mutable_data());
  auto* sd = reinterpret_cast<uint16_t*>(s.mutable_data());
  const fmtq::UniformGrid grid{-(1 << (S.bits - 1)), (1 << (S.bits - 1)) - 1};
  // Rows are independent, so any split over threads gives the same bytes.
  parallel_for(in.rows, std::max<int64_t>(1, 16384 / in.cols), [&](int64_t r0, int64_t r1) {
    std::vector<int8_t> qv(static_cast<size_t>(in.cols));
    std::vector<uint8_t> codes(static_cast<size_t>(in.cols));
    for (int64_t r = r0; r < r1; ++r) {
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t j0 = g * S.group;
        sd[r * ng + g] = fmtq::quantize_group_uniform(S.name, in.w + r * in.cols + j0,
                                                      in.importance ? in.importance + j0 : nullptr, S.group, grid,
                                                      qv.data() + j0);
      }
      for (int64_t j = 0; j < in.cols; ++j) codes[size_t(j)] = uint8_t(qv[size_t(j)] - grid.qmin);
      fmtq::pack_codes(codes.data(), in.cols, S.bits, qd + r * row_bytes);
    }
  });
  out.parts["qweight"] = std::move(q);
  out.parts["scales"] = std::move(s);
  return out;
}

template <const IntSpec& S>
constexpr FormatOps int_ops() {
  return {S.name, int_validate<S>, int_rows_ref<S>, int_rows<S>, int_matvec<S>, int_quantize<S>};
}

}  // namespace

extern const FormatOps kFormatInt4G32 = int_ops<kInt4G32>();
extern const FormatOps kFormatInt4G128 = int_ops<kInt4G128>();
extern const FormatOps kFormatInt3G32 = int_ops<kInt3G32>();
extern const FormatOps kFormatInt2G32 = int_ops<kInt2G32>();

}  // namespace moeq
