// The MoE block's weighted sum over its K choices, the residual add and the next RMSNorm, in one
// short kernel: h += sum_k w_k y_k, normed = rmsnorm(h) * weight. The streaming MoE kernel can do
// the sum itself (atomic tickets per row block, the last of a token's K pairs adding them), but
// that costs its last blocks a fence, an atomic and a load round trip after their last tile;
// here the same loads ride along with the norm's, which the step needed anyway.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/block_sum.cuh"
#include "backend/cuda/kernels/cache_policy.cuh"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

// Up to 768 threads of at most 80 registers (the K rows' loads in flight need them; more float4
// per thread spilled), 2 float4 per thread: D <= 4 * 2 * 768.
constexpr int kMaxThreads = 768, kPer = 2;
static_assert(kCombineNormMaxD == 4 * kPer * kMaxThreads);

// One block per token. Every load of a float4 column (h and the K rows of y, in chunks of 8
// choices) is issued before any is used; the sum runs in order of k, as in the kernel's own path.
__global__ void __launch_bounds__(kMaxThreads) moe_combine_rmsnorm_kernel(const float* y, const float* wts, int K, int64_t D, float* h,
                                           const float* w, float eps, float* normed) {
  __shared__ float red[32];
  pdl_launch_dependents();
  const int64_t t = blockIdx.x, n4 = D / 4;
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float4 g[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) g[i] = ld_cg_ordered(w4 + min(threadIdx.x + int64_t(i) * blockDim.x, n4 - 1));
  pdl_wait();
  float4* h4 = reinterpret_cast<float4*>(h + t * D);
  const float4* y4 = reinterpret_cast<const float4*>(y + t * K * D);
  float4 v[kPer];
  float ss = 0;
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * blockDim.x;
    v[i] = make_float4(0, 0, 0, 0);
    if (j >= n4) continue;
    float4 sum = make_float4(0, 0, 0, 0);
    const float4 hv = h4[j];
    for (int k0 = 0; k0 < K; k0 += 8) {
      float4 r[8];
      float c[8];
#pragma unroll
      for (int u = 0; u < 8; ++u)
        if (k0 + u < K) r[u] = __ldcg(y4 + (k0 + u) * n4 + j), c[u] = wts[t * K + k0 + u];
#pragma unroll
      for (int u = 0; u < 8; ++u)
        if (k0 + u < K) {
          sum.x += c[u] * r[u].x, sum.y += c[u] * r[u].y;
          sum.z += c[u] * r[u].z, sum.w += c[u] * r[u].w;
        }
    }
    v[i] = make_float4(hv.x + sum.x, hv.y + sum.y, hv.z + sum.z, hv.w + sum.w);
    ss += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
  }
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(D) + eps);
  float4* o4 = reinterpret_cast<float4*>(normed + t * D);
#pragma unroll
  for (int i = 0; i < kPer; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * blockDim.x;
    if (j >= n4) continue;
    h4[j] = v[i];
    o4[j] = make_float4(g[i].x * (v[i].x * inv), g[i].y * (v[i].y * inv), g[i].z * (v[i].z * inv),
                        g[i].w * (v[i].w * inv));
  }
}

}  // namespace

void moe_combine_rmsnorm(const float* y, const float* wts, int64_t T, int K, int64_t D, float* h, const float* w,
                         float eps, float* normed, cudaStream_t s) {
  if (T == 0) return;
  if (D % 4 != 0 || D > kCombineNormMaxD || K < 1)
    fail_cuda(cudaErrorInvalidValue, "moe_combine_rmsnorm: row size not a multiple of 4 or too large", __FILE__,
              __LINE__);
  // One float4 per thread where the row allows (a single round of loads), 32 threads at least.
  const int64_t n4 = D / 4;
  const int threads = int(std::min<int64_t>(kMaxThreads, std::max<int64_t>(32, (n4 + 31) / 32 * 32)));
  launch(moe_combine_rmsnorm_kernel, dim3(unsigned(T)), dim3(unsigned(threads)), 0, s, y, wts, K, D, h, w, eps, normed);
}

}  // namespace moeq::cuda
