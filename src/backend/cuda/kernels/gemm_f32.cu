// f32 matrix product on the CUDA cores for many tokens against a small weight (the router: a
// rounding difference in its logits could change which experts are chosen, so no bf16 here).
// Tile 64 tokens x 64 rows x 32 inputs, 256 threads each computing 4 x 4.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels.h"

namespace moeq::cuda {
namespace {

constexpr int kT = 64, kR = 64, kK = 32;

template <int F>
__global__ void __launch_bounds__(256) gemm_f32_kernel(DevWeight w, const float* x, int64_t T, float* y) {
  __shared__ float As[kK][kT + 4], Bs[kK][kR + 4];  // k-major: conflict-free row reads below
  const int64_t m0 = int64_t(blockIdx.y) * kT, n0 = int64_t(blockIdx.x) * kR;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < w.cols; k0 += kK) {
    for (int i = threadIdx.x; i < kT * kK; i += 256) {
      const int m = i / kK, k = i % kK;
      As[k][m] = m0 + m < T ? x[(m0 + m) * w.cols + k0 + k] : 0.0f;
    }
    if (threadIdx.x < kR) {
      float v[32];
      const int64_t r = n0 + threadIdx.x;
      if (r < w.rows) dequant32<F>(w, r, k0 / 32, v);
#pragma unroll
      for (int k = 0; k < 32; ++k) Bs[k][threadIdx.x] = r < w.rows ? v[k] : 0.0f;
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < kK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[k][ty * 4 + i], b[i] = Bs[k][tx * 4 + i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t m = m0 + ty * 4 + i, n = n0 + tx * 4 + j;
      if (m < T && n < w.rows) y[m * w.rows + n] = acc[i][j];
    }
}

}  // namespace

void gemm_f32(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s) {
  if (T == 0) return;
  const dim3 grid(unsigned((w.rows + kR - 1) / kR), unsigned((T + kT - 1) / kT));
  dispatch_format(w, [&](auto f) { gemm_f32_kernel<decltype(f)::value><<<grid, 256, 0, s>>>(w, x, T, y); });
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
