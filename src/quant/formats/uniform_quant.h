// Symmetric uniform quantization of one group of weights to integers q in [qmin, qmax] with an f16
// scale, W ~ q * scale: shared by q8_g32 and the int*_g* formats.
#pragma once
#include <cstdint>
#include <string_view>

namespace moeq::fmtq {

struct UniformGrid {
  int qmin, qmax;  // e.g. -8, 7 for int4
};

// Quantizes the n weights of one group, writing q[0..n) and returning the f16 scale.
// importance == null: round to nearest with scale = absmax / qmax (nudged up an f16 step if its
//   rounding would make the largest element clip), so |w - q*scale| <= scale/2 for every element.
// importance given: the scale minimising sum_j importance[j] * (w_j - q_j*scale)^2 among a grid of
//   candidates around absmax/qmax (the round-to-nearest one included, so never worse than it),
//   followed by a least-squares refit of the scale for the chosen codes.
// An all-zero group gets scale 0 and q = 0 (dequantizes to exactly 0).
uint16_t quantize_group_uniform(std::string_view format, const float* w, const float* importance, int64_t n,
                                UniformGrid grid, int8_t* q);

}  // namespace moeq::fmtq
