// Does compute-sanitizer racecheck understand the mbarrier handoffs of moe_decode_stream.cu?
// Two minimal, correct producer/consumer exchanges through shared memory with the same helpers
// (tma.cuh): (1) warp 0 writes a slot and arrives, warp 1 waits and reads, four rounds reusing the
// slot with an "empty" barrier back; (2) a TMA bulk copy into shared memory, waited on, then read.
// Both hand-offs have every reading thread arrive on the "empty" barrier; racecheck reports no
// hazard on them (H100, 2026-11-24), which is why moe_decode_stream.cu does the same.
// On the GPU machine: compute-sanitizer --tool racecheck build-dev/bench/racecheck_mbarrier_probe
#include <cstdio>

#include "backend/cuda/kernels/tma.cuh"

using namespace moeq::cuda;

__global__ void ring(float* out) {
  __shared__ float slot[32];
  __shared__ uint64_t full, empty;
  if (threadIdx.x == 0) mbar_init(&full, 32), mbar_init(&empty, 32), mbar_init_fence();
  __syncthreads();
  const int lane = threadIdx.x % 32;
  for (int k = 0; k < 4; ++k) {
    if (threadIdx.x < 32) {
      if (k > 0) mbar_wait(&empty, uint32_t(k - 1) & 1);
      slot[lane] = float(k * 32 + lane);
      mbar_arrive(&full);
    } else {
      mbar_wait(&full, uint32_t(k) & 1);
      out[k * 32 + lane] = slot[31 - lane];
      mbar_arrive(&empty);
    }
  }
}

__global__ void bulk(const float* in, float* out) {
  __shared__ __align__(128) float buf[256];
  __shared__ uint64_t full;
  if (threadIdx.x == 0) mbar_init(&full, 1), mbar_init_fence();
  __syncthreads();
  if (threadIdx.x == 0) {
    mbar_arrive_expect_tx(&full, sizeof buf);
    bulk_copy_g2s(buf, in, sizeof buf, &full);
  }
  mbar_wait(&full, 0);
  out[threadIdx.x] = buf[255 - threadIdx.x];
}

int main() {
  float *in, *out;
  cudaMalloc(&in, 1024);
  cudaMalloc(&out, 1024);
  cudaMemset(in, 0, 1024);
  ring<<<1, 64>>>(out);
  bulk<<<1, 256>>>(in, out);
  const cudaError_t e = cudaDeviceSynchronize();
  std::printf("probe: %s\n", cudaGetErrorString(e));
  return e == cudaSuccess ? 0 : 1;
}
