// Dense prefill linear: y[T][rows] = x[T][cols] W^T on tensor cores (see gemm_core.cuh).
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/gemm_core.cuh"

namespace moeq::cuda {
namespace {

template <int F>
__global__ void __launch_bounds__(kGemmThreads) gemm_kernel(DevWeight w, const float* x, int64_t T, float* y) {
  __shared__ __align__(16) __nv_bfloat16 As[kBM][kBK + kPad];
  __shared__ __align__(16) __nv_bfloat16 Bs[kBN][kBK + kPad];
  const int64_t n0 = int64_t(blockIdx.x) * kBN, m0 = int64_t(blockIdx.y) * kBM;
  const int rows = int(min(int64_t(kBM), T - m0));
  float acc[2][4][4] = {};
  for (int64_t k0 = 0; k0 < w.cols; k0 += kBK) {
    stage_a(As, x, w.cols, rows, k0, [&](int i) { return m0 + i; });
    stage_w<F>(Bs, w, n0, k0);
    __syncthreads();
    mma_tile(acc, As, Bs);
    __syncthreads();
  }
  for_each_acc(acc, n0, rows, w.rows, [&](int i, int64_t n, float v) { y[(m0 + i) * w.rows + n] = v; });
}

}  // namespace

void gemm(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s) {
  if (T == 0) return;
  const dim3 grid(unsigned((w.rows + kBN - 1) / kBN), unsigned((T + kBM - 1) / kBM));
  dispatch_format(w, [&](auto f) { gemm_kernel<decltype(f)::value><<<grid, kGemmThreads, 0, s>>>(w, x, T, y); });
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
