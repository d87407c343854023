#include "quant/formats/group_common.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace moeq::fmtq {

void check_group_shape(std::string_view format, int64_t rows, int64_t cols, int64_t group, const std::string& where) {
  if (rows <= 0 || cols <= 0) fail("{}: {} needs a non-empty matrix, got [{}, {}]", where, format, rows, cols);
  if (cols % group != 0)
    fail("{}: {} needs the number of columns to be a multiple of its group size {}, got a [{}, {}] matrix", where,
         format, group, rows, cols);
}

void check_part(const QuantizedWeight& w, const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                const std::string& where) {
  auto it = w.parts.find(name);
  if (it == w.parts.end()) fail("{}: {} weight has no part '{}'", where, w.format, name);
  const HostArray& a = it->second;
  if (a.dtype != dtype)
    fail("{}: {} part '{}' stored as {}, expected {}", where, w.format, name, dtype_name(a.dtype), dtype_name(dtype));
  if (a.shape != shape)
    fail("{}: {} part '{}' has shape {}, expected {} for a [{}, {}] weight", where, w.format, name, shape_str(a.shape),
         shape_str(shape), w.rows, w.cols);
  if (a.nbytes != size_t(a.numel()) * dtype_size(dtype) || (a.nbytes > 0 && !a.data))
    fail("{}: {} part '{}' holds {} bytes, expected {}", where, w.format, name, a.nbytes,
         size_t(a.numel()) * dtype_size(dtype));
}

void check_only_parts(const QuantizedWeight& w, const std::vector<std::string>& allowed, const std::string& where) {
  for (const auto& [name, _] : w.parts)
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
      fail("{}: {} weight has an unexpected part '{}'", where, w.format, name);
}

void check_header(const QuantizedWeight& w, std::string_view format, int64_t group, const std::string& where) {
  if (w.format != format) fail("{}: weight of format '{}' checked as {}", where, w.format, format);
  const bool unset = w.block_rows == 0 && w.block_cols == 0;
  if (!unset && (w.block_rows != 1 || w.block_cols != group))
    fail("{}: {} weight records a {}x{} block, expected 1x{}", where, format, w.block_rows, w.block_cols, group);
  check_group_shape(format, w.rows, w.cols, group, where);
}

void check_input(std::string_view format, const QuantizeInput& in, int64_t group) {
  const std::string where = fmt::format("quantize {}", format);
  if (!in.w) fail("{}: no weight data", where);
  check_group_shape(format, in.rows, in.cols, group, where);
  for (int64_t i = 0; i < in.rows * in.cols; ++i)
    if (!std::isfinite(in.w[i])) fail("{}: weight [{}, {}] is {}", where, i / in.cols, i % in.cols, in.w[i]);
  if (in.importance)
    for (int64_t j = 0; j < in.cols; ++j)
      if (!(in.importance[j] >= 0) || !std::isfinite(in.importance[j]))
        fail("{}: importance of input {} is {} (must be finite and >= 0)", where, j, in.importance[j]);
}

QuantizedWeight new_group_weight(std::string_view format, int64_t rows, int64_t cols, int64_t group) {
  QuantizedWeight q;
  q.format = std::string(format);
  q.rows = rows;
  q.cols = cols;
  q.block_rows = 1;
  q.block_cols = group;
  return q;
}

uint16_t scale_to_f16(std::string_view format, float s) {
  const uint16_t h = f32_to_f16(s);
  if ((h & 0x7c00) == 0x7c00) fail("quantize {}: group scale {} does not fit in f16 (weights too large)", format, s);
  return h;
}

}  // namespace moeq::fmtq
