// Decode-time matrix-vector products: memory-bound, so each warp streams one weight row (a group
// of 32 inputs per lane per step: one 16-byte load for 4-bit codes), dequantizes in registers and
// dots it with each token's activations (read through L1; they are reused by every row).
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels.h"

namespace moeq::cuda {
namespace {

constexpr int kWarps = 8;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float dot32(const float* w, const float* x) {
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float acc = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float4 v = __ldg(x4 + i);
    acc = fmaf(w[4 * i], v.x, acc);
    acc = fmaf(w[4 * i + 1], v.y, acc);
    acc = fmaf(w[4 * i + 2], v.z, acc);
    acc = fmaf(w[4 * i + 3], v.w, acc);
  }
  return acc;
}

template <int F, int T>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(DevWeight w, const float* x, float* y) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (r >= w.rows) return;
  const int64_t groups = w.cols / 32;
  float acc[T];
#pragma unroll
  for (int t = 0; t < T; ++t) acc[t] = 0;
  for (int64_t g = lane; g < groups; g += 32) {
    float v[32];
    dequant32<F>(w, r, g, v);
#pragma unroll
    for (int t = 0; t < T; ++t) acc[t] += dot32(v, x + t * w.cols + g * 32);
  }
#pragma unroll
  for (int t = 0; t < T; ++t) {
    const float s = warp_sum(acc[t]);
    if (lane == 0) y[t * w.rows + r] = s;
  }
}

template <int T>
void launch(const DevWeight& w, const float* x, float* y, cudaStream_t s) {
  dispatch_format(w, [&](auto f) {
    gemv_kernel<decltype(f)::value, T><<<unsigned((w.rows + kWarps - 1) / kWarps), kWarps * 32, 0, s>>>(w, x, y);
  });
  CUDA_LAUNCH_CHECK();
}

}  // namespace

void gemv(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s) {
  // Tokens in passes of 8, 4, 2, 1: each pass reads the weight once.
  int64_t t0 = 0;
  while (t0 < T) {
    const int64_t left = T - t0;
    const int n = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
    const float* xt = x + t0 * w.cols;
    float* yt = y + t0 * w.rows;
    switch (n) {
      case 8: launch<8>(w, xt, yt, s); break;
      case 4: launch<4>(w, xt, yt, s); break;
      case 2: launch<2>(w, xt, yt, s); break;
      default: launch<1>(w, xt, yt, s); break;
    }
    t0 += n;
  }
}

}  // namespace moeq::cuda
