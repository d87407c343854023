// Greedy choice on device: the first index of the largest logit of each row.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

__device__ __forceinline__ void better(float& best, int32_t& bi, float v, int32_t i) {
  if (v > best || (v == best && i < bi)) best = v, bi = i;
}

// grid (kArgmaxBlocks, T): each block finds the first maximum of its slice of a row; the last
// block of a row to finish (atomic ticket) reduces the slices' results in slice order.
__global__ void argmax_kernel(const float* logits, int64_t V, float* part_v, int32_t* part_i, int32_t* tickets,
                              int32_t* ids) {
  __shared__ float sb[32];
  __shared__ int32_t si[32];
  __shared__ int s_last;
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.y;
  const float* l = logits + t * V;
  const int64_t slice = (V + gridDim.x - 1) / gridDim.x;
  const int64_t begin = blockIdx.x * slice, end = min(V, begin + slice);
  float best = -INFINITY;
  int32_t bi = int32_t(V);
#pragma unroll 4
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) better(best, bi, __ldg(l + i), int32_t(i));
  auto block_best = [&] {
    for (int o = 16; o > 0; o >>= 1) {
      const float ob = __shfl_xor_sync(0xffffffffu, best, o);
      const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
      better(best, bi, ob, oi);
    }
    if (threadIdx.x % 32 == 0) sb[threadIdx.x / 32] = best, si[threadIdx.x / 32] = bi;
    __syncthreads();
    if (threadIdx.x == 0)
      for (int w = 1; w < int(blockDim.x / 32); ++w) better(best, bi, sb[w], si[w]);
  };
  block_best();
  if (threadIdx.x == 0) {
    part_v[t * gridDim.x + blockIdx.x] = best;
    part_i[t * gridDim.x + blockIdx.x] = bi;
    __threadfence();
    const int32_t n = atomicAdd(&tickets[t], 1);
    s_last = n == int(gridDim.x) - 1;
    if (s_last) tickets[t] = 0;  // ready for the next launch (graph replays too)
  }
  __syncthreads();
  if (!s_last) return;
  __threadfence();
  best = -INFINITY, bi = int32_t(V);
  for (int b = threadIdx.x; b < int(gridDim.x); b += blockDim.x)
    better(best, bi, __ldcg(part_v + t * gridDim.x + b), __ldcg(part_i + t * gridDim.x + b));
  __syncthreads();  // sb/si are reused
  block_best();
  if (threadIdx.x == 0) ids[t] = bi;
}

}  // namespace

void argmax(const float* logits, int64_t T, int64_t V, const ArgmaxScratch& sc, int32_t* ids, cudaStream_t s) {
  if (T == 0) return;
  launch(argmax_kernel, dim3(unsigned(kArgmaxBlocks), unsigned(T)), dim3(256), 0, s, logits, V, sc.part_v, sc.part_i,
         sc.tickets, ids);
}

}  // namespace moeq::cuda
