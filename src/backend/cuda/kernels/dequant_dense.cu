// Weights decoded to a dense f16 or f32 matrix, and activations rounded to f16: the operands of
// the prefill products that cuBLAS computes (cublas_linear.cu). The f16 values are those the fused
// tensor-core pipeline stores in shared memory (decode_group_f16), so both paths multiply the
// same f16 numbers; the f32 ones those of dequant32, as the router's f32 product (gemm_f32.cu).
#include <cuda_fp16.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/gemm_pipe.cuh"

namespace moeq::cuda {
namespace {

// One thread per (row, 32-input group).
template <int F>
__global__ void dequant_f16_kernel(DevWeight w, __half* out) {
  __shared__ float cbs[16];
  stage_codebook(cbs, w);
  __syncthreads();
  const int64_t groups = w.cols / 32, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= w.rows * groups) return;
  const int64_t r = i / groups, g = i % groups;
  const RawGroup raw = load_group<F>(w, r, g, l2_policy(true));
  decode_group_f16<F>(w, r, g, raw, cbs, out + r * w.cols + g * 32);
}

// One thread per (row, 32-input group).
template <int F>
__global__ void dequant_f32_kernel(DevWeight w, float4* out) {
  const int64_t groups = w.cols / 32, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= w.rows * groups) return;
  const int64_t r = i / groups, g = i % groups;
  float v[32];
  dequant32<F>(w, r, g, v);
  float4* o = out + (r * w.cols + g * 32) / 4;
#pragma unroll
  for (int k = 0; k < 8; ++k) o[k] = make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
}

__global__ void to_f16_kernel(const float4* x, int64_t n4, uint2* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n4) return;
  const float4 v = x[i];
  out[i] = make_uint2(pack_f16(v.x, v.y), pack_f16(v.z, v.w));
}

// launch(format tag, grid) for a kernel of 256 threads per block, a thread per (row, 32-input group).
template <typename Launch>
void launch_per_group(const DevWeight& w, Launch&& launch) {
  const int64_t n = w.rows * (w.cols / 32);
  if (n == 0) return;
  dispatch_format(w, [&](auto f) { launch(f, dim3(unsigned((n + 255) / 256))); });
  CUDA_LAUNCH_CHECK();
}

}  // namespace

void dequant_f16(const DevWeight& w, void* out, cudaStream_t s) {
  launch_per_group(w, [&](auto f, dim3 grid) {
    dequant_f16_kernel<decltype(f)::value><<<grid, 256, 0, s>>>(w, static_cast<__half*>(out));
  });
}

void dequant_f32(const DevWeight& w, float* out, cudaStream_t s) {
  launch_per_group(w, [&](auto f, dim3 grid) {
    dequant_f32_kernel<decltype(f)::value><<<grid, 256, 0, s>>>(w, reinterpret_cast<float4*>(out));
  });
}

void to_f16(const float* x, int64_t n, void* out, cudaStream_t s) {
  if (n % 4 != 0) fail_cuda(cudaErrorInvalidValue, "to_f16: length not a multiple of 4", __FILE__, __LINE__);
  const int64_t n4 = n / 4;
  if (n4 == 0) return;
  to_f16_kernel<<<unsigned((n4 + 255) / 256), 256, 0, s>>>(reinterpret_cast<const float4*>(x), n4,
                                                           static_cast<uint2*>(out));
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
