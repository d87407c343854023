// Host side of the column-panel layout of a packed weight (DevWeight::panels): which weights are
// stored so, and the reordering of one expert's codes and scales from the row layout of
// docs/FORMAT.md. Plain C++ (no CUDA), so that the reordering is tested on any machine.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace moeq::cuda {

// Row-major codes [rows][groups * group_bytes] -> panels [groups][rows][group_bytes], where a group
// is 32 inputs (group_bytes = 4 * bits).
inline void codes_to_panels(const uint8_t* rows_in, int64_t rows, int64_t groups, int64_t group_bytes,
                            uint8_t* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < groups; ++g)
      std::memcpy(out + (g * rows + r) * group_bytes, rows_in + (r * groups + g) * group_bytes,
                  size_t(group_bytes));
}

// Row-major scales [rows][n_scales] -> [n_scales][rows] (a transpose).
inline void scales_to_panels(const uint16_t* rows_in, int64_t rows, int64_t n_scales, uint16_t* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t s = 0; s < n_scales; ++s) out[s * rows + r] = rows_in[r * n_scales + s];
}

}  // namespace moeq::cuda
