// MiniMax router on device: sigmoid scores, top-k of (score + correction bias) chosen by repeated
// warp arg-max (ties to the lower expert, as the CPU backend), weights = chosen scores renormalised.
// One warp per token, everything in registers.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/cache_policy.cuh"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

constexpr int kMaxExperts = 1024, kMaxTopK = 32;

// A warp per token, V = experts / 32 (rounded up) values per lane in registers: K rounds of warp
// arg-max (ties to the lower expert, as the CPU backend), the winner's lane retiring its value.
// Lane k keeps the k-th choice; the weights are renormalised over the choices in order.
template <int V>
__global__ void router_kernel(const float* logits, const float* bias, int64_t T, int E, int K, int32_t* ids,
                              float* weights) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (t >= T) return;
  const int lane = threadIdx.x % 32;
  // All 2V loads first, unconditionally (indices clamped), as volatile loads so that the compiler
  // keeps them ahead of the sigmoids: left to itself it sank each pair of loads to its use, behind
  // the previous division's slow-path branch, and the kernel waited for 8 L2 round trips in a row
  // (4.5 us per launch in a graph; bench/probes/chain_latency.cu).
  float lg[V], bs[V];
  const uint64_t pol = l2_policy(false);
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int e = min(v * 32 + lane, E - 1);
    lg[v] = ld_hint(logits + t * E + e, pol);
    bs[v] = ld_hint(bias + e, pol);
  }
  float score[V], choice[V];
#pragma unroll
  for (int v = 0; v < V; ++v) {
    const int e = v * 32 + lane;
    const float sg = 1.0f / (1.0f + expf(-lg[v]));  // computed for every lane, then masked: no branch
    score[v] = e < E ? sg : 0.0f;
    choice[v] = e < E ? sg + bs[v] : -INFINITY;
  }
  int32_t my_id = 0;
  float my_score = 0, sum = 0;
  for (int k = 0; k < K; ++k) {
    // This lane's best (ascending expert order, strict >: the lower expert on a tie), then the
    // warp's: the largest order-preserving key of the values, and among the lanes holding it the
    // lowest expert. Two warp reductions per round instead of a shuffle tree. (The key orders
    // -0 below +0, where `>` calls them equal; a choice is a sigmoid in (0, 1) plus a bias, so it
    // is never -0: x + (-x) rounds to +0.)
    float best = -INFINITY, best_s = 0;
    int bi = 1 << 30;
#pragma unroll
    for (int v = 0; v < V; ++v)
      if (choice[v] > best) best = choice[v], best_s = score[v], bi = v * 32 + lane;
    const uint32_t bits = __float_as_uint(best);
    const uint32_t key = bits & 0x80000000u ? ~bits : bits | 0x80000000u;
    const uint32_t top = __reduce_max_sync(0xffffffffu, key);
    const int win = int(__reduce_min_sync(0xffffffffu, key == top ? uint32_t(bi) : 0xffffffffu));
#pragma unroll
    for (int v = 0; v < V; ++v)
      if (v * 32 + lane == win) choice[v] = -INFINITY;
    const float win_s = __shfl_sync(0xffffffffu, best_s, win % 32);
    if (lane == k) my_id = win, my_score = win_s;
    sum += win_s;
  }
  if (lane < K) {
    ids[t * K + lane] = my_id;
    weights[t * K + lane] = my_score / sum;
  }
}

}  // namespace

void router_topk(const float* logits, const float* bias, int64_t T, int E, int K, int32_t* ids, float* weights,
                 cudaStream_t s) {
  if (T == 0) return;
  if (E > kMaxExperts || K > kMaxTopK || K > E)
    fail_cuda(cudaErrorInvalidValue, "router: too many experts or choices", __FILE__, __LINE__);
  const dim3 grid(unsigned((T + 3) / 4)), block(128);
  const int V = (E + 31) / 32;
  if (V <= 1) launch(router_kernel<1>, grid, block, 0, s, logits, bias, T, E, K, ids, weights);
  else if (V <= 2) launch(router_kernel<2>, grid, block, 0, s, logits, bias, T, E, K, ids, weights);
  else if (V <= 4) launch(router_kernel<4>, grid, block, 0, s, logits, bias, T, E, K, ids, weights);
  else if (V <= 8) launch(router_kernel<8>, grid, block, 0, s, logits, bias, T, E, K, ids, weights);
  else if (V <= 16) launch(router_kernel<16>, grid, block, 0, s, logits, bias, T, E, K, ids, weights);
  else launch(router_kernel<32>, grid, block, 0, s, logits, bias, T, E, K, ids, weights);
}

}  // namespace moeq::cuda
