// Device-side fill of synthetic weights (benchmarks): counter-based hashing, so any element can
// be made by any thread and a 100 GB model fills at memory speed.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace moeq::cuda {
namespace {

__device__ __forceinline__ uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

__device__ __forceinline__ float uniform(uint64_t h) { return float(h >> 40) * (1.0f / 16777216.0f); }

__global__ void fill_kernel(void* p, int64_t n, int kind, int dtype, float scale, uint64_t seed, int64_t cb_n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const uint64_t h = mix(seed * 0x9e3779b97f4a7c15ull + uint64_t(i));
  float v = 0;
  switch (kind) {
    case kFillRandomBytes: static_cast<uint8_t*>(p)[i] = uint8_t(h); return;
    case kFillFp8: {
      uint8_t b = uint8_t(h);
      if ((b & 0x7f) == 0x7f) b ^= 1;
      static_cast<uint8_t*>(p)[i] = b;
      return;
    }
    case kFillNormal: {  // Box-Muller
      const float u1 = fmaxf(uniform(h), 1e-7f), u2 = uniform(mix(h));
      v = scale * sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
      break;
    }
    case kFillScale: v = scale * (0.5f + uniform(h)); break;
    case kFillCodebook: v = -1.0f + 2.0f * float(i % cb_n) / float(cb_n - 1); break;
  }
  if (dtype == kFillF32) static_cast<float*>(p)[i] = v;
  else if (dtype == kFillF16) static_cast<__half*>(p)[i] = __float2half_rn(v);
  else static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
}

}  // namespace

void fill_synthetic(void* p, int64_t n, int kind, int dtype, float scale, uint64_t seed, int64_t codebook_n,
                    cudaStream_t s) {
  if (n == 0) return;
  fill_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(p, n, kind, dtype, scale, seed, codebook_n);
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
