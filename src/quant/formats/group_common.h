// Checks and helpers shared by the group-scaled formats (q8_g32, int*_g*, lloyd*_g*): part
// validation with messages that name the part, shape checks against the group size, and the
// checks on a quantizer's input. Layouts themselves are described in docs/FORMAT.md.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quant/formats/format.h"

namespace moeq::fmtq {

// Throws unless cols is a positive multiple of `group` (and rows positive), naming the format
// and the shape: used by both quantize and validate.
void check_group_shape(std::string_view format, int64_t rows, int64_t cols, int64_t group, const std::string& where);

// Throws unless part `name` exists with this dtype and shape; the message names `where`, the
// format and the part.
void check_part(const QuantizedWeight& w, const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                const std::string& where);

// Throws if w has a part not in `allowed` (bits per weight counts every part, so strays would lie).
void check_only_parts(const QuantizedWeight& w, const std::vector<std::string>& allowed, const std::string& where);

// Checks the common header fields: the format tag and the group recorded in block_rows/cols
// (0/0 means "not recorded"; otherwise it must be 1 x group).
void check_header(const QuantizedWeight& w, std::string_view format, int64_t group, const std::string& where);

// Quantizer input: non-null, positive shape that fits the group, finite weights, importance
// finite and >= 0. Throws naming the format.
void check_input(std::string_view format, const QuantizeInput& in, int64_t group);

// A weight with the header fields filled in (format, shape, block = 1 x group), no parts yet.
QuantizedWeight new_group_weight(std::string_view format, int64_t rows, int64_t cols, int64_t group);

// f16 value of a float, rounded to nearest; finite inputs whose f16 would overflow are rejected
// (a group scale beyond 65504 means the weights are not weights).
uint16_t scale_to_f16(std::string_view format, float s);

}  // namespace moeq::fmtq
