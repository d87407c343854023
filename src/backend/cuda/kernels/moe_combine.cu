// The MoE block's weighted sum over its K choices and the residual add, after the streaming MoE
// kernel left the K rows of y: h += sum_k w_k y_k, in order of k (deterministic, as the kernel's
// own path). The streaming kernel can do the sum itself (atomic tickets per row block, the last
// of a token's K pairs adding them), but that costs its last blocks a fence, an atomic and a load
// round trip after their last tile. Here it is a short launch spread over many multiprocessors:
// a thread per float4 of a row, all K loads in flight at once. (The RMSNorm that follows runs in
// the next product's blocks, gemv_multi_rmsnorm; this kernel once did it too, in one block per
// token, which read the 8 rows through one multiprocessor and measured 4.5-6 us per layer.)
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

constexpr int kThreads = 128, kMaxK = kCombineMaxK;

// grid (float4 blocks of a row, T): thread j of block (b, t) takes float4 b * kThreads + j of row t.
__global__ void __launch_bounds__(kThreads) moe_combine_add_kernel(const float* y, const float* wts, int K, int64_t D,
                                                                   float* h) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.y, n4 = D / 4, j = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (j >= n4) return;
  const float4* y4 = reinterpret_cast<const float4*>(y + t * K * D) + j;
  float4 r[kMaxK];
  float c[kMaxK];
#pragma unroll
  for (int k = 0; k < kMaxK; ++k)
    if (k < K) r[k] = __ldcg(y4 + k * n4), c[k] = __ldcg(wts + t * K + k);
  float4* h4 = reinterpret_cast<float4*>(h + t * D) + j;
  float4 sum = make_float4(0, 0, 0, 0);
#pragma unroll
  for (int k = 0; k < kMaxK; ++k)
    if (k < K) {
      sum.x += c[k] * r[k].x, sum.y += c[k] * r[k].y;
      sum.z += c[k] * r[k].z, sum.w += c[k] * r[k].w;
    }
  const float4 hv = *h4;
  *h4 = make_float4(hv.x + sum.x, hv.y + sum.y, hv.z + sum.z, hv.w + sum.w);
}

}  // namespace

void moe_combine_add(const float* y, const float* wts, int64_t T, int K, int64_t D, float* h, cudaStream_t s) {
  if (T == 0) return;
  if (D % 4 != 0 || K < 1 || K > kMaxK)
    fail_cuda(cudaErrorInvalidValue, "moe_combine_add: row size not a multiple of 4, or K out of range", __FILE__,
              __LINE__);
  const int64_t n4 = D / 4;
  launch(moe_combine_add_kernel, dim3(unsigned((n4 + kThreads - 1) / kThreads), unsigned(T)), dim3(kThreads), 0, s, y,
         wts, K, D, h);
}

}  // namespace moeq::cuda
