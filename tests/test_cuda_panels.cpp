// The column-panel layout of the experts' W2 on the GPU (backend/cuda/panels.h): the host-side
// reordering, checked element by element against the addressing the device accessors use
// (formats.cuh: group g of row r at (g * rows + r) * group_bytes, its scale at s * rows + r).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "backend/cuda/panels.h"

namespace {

TEST(CudaPanels, CodesGoToTheirPanelRowAfterRow) {
  std::mt19937 rng(11);
  for (int64_t group_bytes : {8, 12, 16}) {  // 2-, 3- and 4-bit codes
    const int64_t rows = 37, groups = 5;
    std::vector<uint8_t> in(size_t(rows * groups * group_bytes)), out(in.size(), 0xee);
    for (auto& b : in) b = uint8_t(rng());
    moeq::cuda::codes_to_panels(in.data(), rows, groups, group_bytes, out.data());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t i = 0; i < group_bytes; ++i)
          ASSERT_EQ(out[size_t((g * rows + r) * group_bytes + i)], in[size_t((r * groups + g) * group_bytes + i)])
              << "row " << r << " group " << g << " byte " << i;
  }
}

TEST(CudaPanels, ScalesAreTransposed) {
  std::mt19937 rng(12);
  const int64_t rows = 29, n = 7;
  std::vector<uint16_t> in(size_t(rows * n)), out(in.size(), 0xeeee);
  for (auto& v : in) v = uint16_t(rng());
  moeq::cuda::scales_to_panels(in.data(), rows, n, out.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t s = 0; s < n; ++s) ASSERT_EQ(out[size_t(s * rows + r)], in[size_t(r * n + s)]);
}

}  // namespace
