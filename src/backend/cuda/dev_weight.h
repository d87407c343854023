// A packed linear weight (or a stack of experts' weights of one format) in device memory, as the
// kernels see it: a plain struct passed by value. Layouts are those of docs/FORMAT.md.
#pragma once
#include <cstdint>

namespace moeq::cuda {

enum class Fmt : int32_t { F32, BF16, FP8_B128, Q8, INT, LLOYD };

struct DevWeight {
  Fmt fmt = Fmt::F32;
  int32_t bits = 0;     // INT / LLOYD code width (2, 3, 4)
  int32_t group = 32;   // scale group (INT/LLOYD/Q8: 32 or 128; FP8: block columns)
  int32_t block_rows = 0;  // FP8: block rows
  int64_t rows = 0, cols = 0;
  int64_t row_bytes = 0;   // bytes of qweight per row
  const uint8_t* q = nullptr;       // qweight
  const void* scales = nullptr;     // f16 [rows][cols/group]; FP8: f32 [ceil(rows/br)][ceil(cols/bc)]
  const uint16_t* codebook = nullptr;  // LLOYD: f16 [cb_rows][2^bits]
  int32_t cb_rows = 1;
  // Experts: expert e's data starts at q + e*q_stride (bytes), scales + e*s_stride (elements),
  // codebook + e*cb_stride (elements).
  int32_t experts = 1;
  int64_t q_stride = 0, s_stride = 0, cb_stride = 0;
  // Packed (INT / LLOYD) only: stored by column panels instead of by rows. Panel g holds group g
  // (32 inputs) of every row, row after row: group g of row r at q + (g * rows + r) * 4 * bits, and
  // its scale at scales[(g * 32 / group) * rows + r]. The experts' W2 is stored so (panels.h), so
  // that the streaming MoE decode reads the W2 columns matching the a values a block computes as
  // one contiguous run (moe_decode_stream.cu); formats.cuh's accessors address both layouts.
  bool panels = false;
};

}  // namespace moeq::cuda
