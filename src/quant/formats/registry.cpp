#include <array>

#include "core/error.h"
#include "quant/formats/format.h"

namespace moeq {

// Each format file defines its table entry.
extern const FormatOps kFormatF32;
extern const FormatOps kFormatBf16;
extern const FormatOps kFormatFp8B128;
extern const FormatOps kFormatQ8G32;
extern const FormatOps kFormatInt4G32, kFormatInt4G128, kFormatInt3G32, kFormatInt2G32;
extern const FormatOps kFormatLloyd2G32, kFormatLloyd3G32, kFormatLloyd4G32;
extern const FormatOps kFormatLloyd2G128, kFormatLloyd3G128, kFormatLloyd4G128;

namespace {
const std::array<const FormatOps*, 14>& all_formats() {
  static const std::array<const FormatOps*, 14> all = {
      &kFormatF32,       &kFormatBf16,       &kFormatFp8B128,    &kFormatQ8G32,      &kFormatInt4G32,
      &kFormatInt4G128,  &kFormatInt3G32,    &kFormatInt2G32,    &kFormatLloyd2G32,  &kFormatLloyd3G32,
      &kFormatLloyd4G32, &kFormatLloyd2G128, &kFormatLloyd3G128, &kFormatLloyd4G128};
  return all;
}
}  // namespace

const FormatOps& format_ops(std::string_view name) {
  for (const FormatOps* f : all_formats())
    if (f->name == name) return *f;
  fail("unknown weight format '{}'", name);
}

std::vector<std::string_view> format_names() {
  std::vector<std::string_view> out;
  for (const FormatOps* f : all_formats()) out.push_back(f->name);
  return out;
}

const HostArray& QuantizedWeight::part(const std::string& name) const {
  auto it = parts.find(name);
  if (it == parts.end()) fail("weight of format '{}' has no part '{}'", format, name);
  return it->second;
}

size_t QuantizedWeight::storage_bytes() const {
  size_t n = 0;
  for (const auto& [_, p] : parts) n += p.nbytes;
  return n;
}

QuantizedWeight make_dense_weight(HostArray w) {
  if (w.shape.size() != 2) fail("dense weight must be 2-D, got {}", shape_str(w.shape));
  if (w.dtype != DType::BF16 && w.dtype != DType::F32)
    fail("dense weight must be BF16 or F32, got {}", dtype_name(w.dtype));
  QuantizedWeight q;
  q.format = w.dtype == DType::BF16 ? "bf16" : "f32";
  q.rows = w.shape[0];
  q.cols = w.shape[1];
  q.parts["qweight"] = std::move(w);
  return q;
}

QuantizedWeight make_fp8_block_weight(HostArray w, HostArray scale_inv, int64_t block_rows, int64_t block_cols) {
  QuantizedWeight q;
  q.format = "fp8_b128";
  if (w.shape.size() != 2) fail("fp8 weight must be 2-D, got {}", shape_str(w.shape));
  q.rows = w.shape[0];
  q.cols = w.shape[1];
  q.block_rows = block_rows;
  q.block_cols = block_cols;
  q.parts["qweight"] = std::move(w);
  q.parts["scales"] = std::move(scale_inv);
  return q;
}

}  // namespace moeq
