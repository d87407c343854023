// Dense prefill linear: y[T][rows] (+)= x[T][cols] W^T on tensor cores (gemm_pipe.cuh).
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/gemm_pipe.cuh"

namespace moeq::cuda {
namespace {

using Single = PipeShape<false>;

template <int F>
__global__ void __launch_bounds__(kPThreads) gemm_kernel(DevWeight w, const float* x, int64_t T, float* y,
                                                         bool accumulate) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float cbs[16];
  stage_codebook(cbs, w);
  __syncthreads();
  const int64_t n0 = int64_t(blockIdx.x) * Single::kN, m0 = int64_t(blockIdx.y) * kPM;
  const int rows = int(min(int64_t(kPM), T - m0));
  float acc[2][Single::kNT][4] = {}, unused[2][Single::kNT][4];
  gemm_pipeline<F, false>(x, w.cols, rows, [&](int i) { return m0 + i; }, w, w, n0, w.cols, acc, unused,
                          reinterpret_cast<__half*>(smem_raw), cbs, cbs);
  pipe_epilogue<false>(acc, unused, n0, rows, w.rows, [&](int i, int64_t n, float v, float) {
    float* dst = y + (m0 + i) * w.rows + n;
    *dst = accumulate ? *dst + v : v;
  });
}

}  // namespace

void gemm(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s, bool accumulate) {
  if (T == 0) return;
  const dim3 grid(unsigned((w.rows + Single::kN - 1) / Single::kN), unsigned((T + kPM - 1) / kPM));
  const size_t smem = Single::smem_bytes();
  dispatch_format(w, [&](auto f) {
    auto* k = gemm_kernel<decltype(f)::value>;
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    k<<<grid, kPThreads, smem, s>>>(w, x, T, y, accumulate);
  });
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
