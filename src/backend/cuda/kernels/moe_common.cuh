// Pieces shared by the MoE decode kernels (moe.cu, moe_decode_mma.cu, moe_decode_stream.cu).
//
// moe_combine_rows, the fused weighted sum at the end of the w2 kernels: each block has written its rows
// of y[pair]; the last of a token's K blocks for a row range (an atomic ticket per token and row
// range) adds the K rows in order of k, so the result does not depend on which block finished
// last, and no separate reduction launch is needed. Every thread of the block must call it.
#pragma once
#include <cstdint>

namespace moeq::cuda {

// Rows of w2 per block in both decode w2 kernels: the tickets are per token and row block.
constexpr int kMoeW2BlockRows = 32;

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// sum_k wts[t K + k] * y[(t K + k) * hidden + r] in order of k, with eight choices' loads in flight
// at once (a loop over a runtime K would wait for each load in turn).
__device__ __forceinline__ float moe_weighted_row(const float* wts, const float* y, int64_t t, int K, int64_t hidden,
                                                  int64_t r) {
  float s = 0;
  for (int k0 = 0; k0 < K; k0 += 8) {
    float v[8], w[8];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (k0 + i < K) v[i] = __ldcg(y + (t * K + k0 + i) * hidden + r), w[i] = wts[t * K + k0 + i];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      if (k0 + i < K) s += w[i] * v[i];
  }
  return s;
}

__device__ __forceinline__ void moe_combine_rows(int64_t pair, int K, int64_t rows0, int64_t rows_per_block,
                                                 int64_t hidden, const float* wts, const float* y, int32_t* tickets,
                                                 float* out, bool accumulate) {
  __shared__ int s_last;
  __threadfence();
  __syncthreads();
  const int64_t t = pair / K;
  int32_t* ticket = tickets + t * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0) {
    const int32_t n = atomicAdd(ticket, 1);
    s_last = n == K - 1;
    if (s_last) *ticket = 0;  // ready for the next launch (graph replays too)
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  for (int64_t r = rows0 + threadIdx.x; r < min(rows0 + rows_per_block, hidden); r += blockDim.x) {
    const float s = moe_weighted_row(wts, y, t, K, hidden, r);
    float* o = out + t * hidden + r;
    *o = accumulate ? *o + s : s;
  }
}

}  // namespace moeq::cuda
