// MiniMax router on device: sigmoid scores, top-k of (score + correction bias) chosen by repeated
// warp arg-max (ties to the lower expert, as the CPU backend), weights = chosen scores renormalised.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"

namespace moeq::cuda {
namespace {

constexpr int kMaxExperts = 1024;

__global__ void router_kernel(const float* logits, const float* bias, int E, int K, int32_t* ids, float* weights) {
  __shared__ float score[kMaxExperts], choice[kMaxExperts];
  __shared__ int chosen[64];
  const int64_t t = blockIdx.x;
  for (int e = threadIdx.x; e < E; e += blockDim.x) {
    const float s = 1.0f / (1.0f + expf(-logits[t * E + e]));
    score[e] = s;
    choice[e] = s + bias[e];
  }
  __syncthreads();
  // One warp selects: K rounds of arg-max over the remaining experts.
  if (threadIdx.x < 32) {
    const int lane = threadIdx.x;
    for (int k = 0; k < K; ++k) {
      float best = -INFINITY;
      int bi = E;
      for (int e = lane; e < E; e += 32)
        if (choice[e] > best || (choice[e] == best && e < bi)) best = choice[e], bi = e;
      for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ob > best || (ob == best && oi < bi)) best = ob, bi = oi;
      }
      if (lane == 0) {
        chosen[k] = bi;
        choice[bi] = -INFINITY;
      }
      __syncwarp();
    }
    if (lane == 0) {
      float sum = 0;
      for (int k = 0; k < K; ++k) sum += score[chosen[k]];
      for (int k = 0; k < K; ++k) {
        ids[t * K + k] = chosen[k];
        weights[t * K + k] = score[chosen[k]] / sum;
      }
    }
  }
}

}  // namespace

void router_topk(const float* logits, const float* bias, int64_t T, int E, int K, int32_t* ids, float* weights,
                 cudaStream_t s) {
  if (T == 0) return;
  if (E > kMaxExperts || K > 64) fail_cuda(cudaErrorInvalidValue, "router: too many experts", __FILE__, __LINE__);
  router_kernel<<<unsigned(T), 128, 0, s>>>(logits, bias, E, K, ids, weights);
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
