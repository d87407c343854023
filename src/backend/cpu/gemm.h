// f32 kernels of the CPU backend.
#pragma once
#include <cstdint>

#include "quant/formats/format.h"

namespace moeq::cpu {

// out[t * ldo + r] = sum_k x[t * K + k] * w[r * K + k], for t < T, r < N. (x W^T on row-major data.)
void gemm_nt(const float* x, int64_t T, int64_t K, const float* w, int64_t N, float* out, int64_t ldo);
// Reference for the tests: plain loops, double accumulation.
void gemm_nt_ref(const float* x, int64_t T, int64_t K, const float* w, int64_t N, float* out, int64_t ldo);

// out[T, w.rows] = x[T, w.cols] W^T for a weight in any format: the weight is dequantized a panel
// of rows at a time into a per-thread buffer (never the whole matrix) and multiplied by gemm_nt.
// Parallel over panels unless called from inside a parallel region.
void linear(const float* x, int64_t T, const QuantizedWeight& w, float* out);

float dot(const float* a, const float* b, int64_t n);

}  // namespace moeq::cpu
