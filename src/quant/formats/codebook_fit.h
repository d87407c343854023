// Fitting one group of weights to a learned codebook: nearest-level codes and the group's f16
// scale, chosen by importance-weighted squared error (used by the lloyd quantizer).
#pragma once
#include <cstdint>
#include <vector>

namespace moeq::fmtq {

// A codebook ready for assignment: its f16 codes (ascending), their float values, and the
// midpoints between neighbouring levels.
struct Book {
  std::vector<uint16_t> f16;
  std::vector<float> level, mid;
};
Book make_book(const std::vector<float>& levels);

// Code of each of n weights at scale s > 0: the nearest level to w/s (ties to the lower).
void assign_codes(const Book& bk, const float* w, int64_t n, float s, uint8_t* codes);

// sum_j imp[j] (w_j - level(code_j) * s)^2 with nearest-level codes at scale s (n a multiple of 8).
float group_error(const Book& bk, const float* w, const float* imp, int64_t n, float s);

struct GroupFit {
  uint16_t scale;  // f16
  float error;     // sum_j imp[j] (w_j - level(code_j) * scale)^2
};

// Scale (f16) and codes of one group. s0 is the absmax scale (0 for an all-zero group, which gets
// scale 0). With refine, a grid of scales from 0.7 to 1.4 times s0 and two least-squares refits
// (s = sum imp w c / sum imp c^2 for the current codes) are tried; the least error wins, ties
// keeping the earlier candidate (s0 first).
GroupFit fit_group(const Book& bk, const float* w, const float* imp, int64_t n, uint16_t s0, bool refine,
                   uint8_t* codes);

}  // namespace moeq::fmtq
