// The sum of one float per thread over a whole block (blockDim.x a multiple of 32, at most 1024),
// returned to every thread. `red` is 32 floats of shared memory, reusable once this returns
// (the final barrier). Used by the row norms (elementwise.cu) and the norm fused into the decode
// products (gemv.cu).
#pragma once

namespace moeq::cuda {

__device__ __forceinline__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  return v;
}

}  // namespace moeq::cuda
