// What the probes share: best-of-N event timing, and for the read-bandwidth probes the L2 flush
// between runs and the ceiling they report against (a device-to-device copy, as `moeq bench`
// measures it).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "probe_check.h"

namespace probe {

__global__ void flush_kernel(uint32_t* p, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = uint32_t(i);
}

// Evicts the earlier run's lines from L2 by writing 128 MB of `scratch` (128 MB long).
inline void flush_l2(uint32_t* scratch, int sms) { flush_kernel<<<sms * 4, 256>>>(scratch, (128 << 20) / 4); }

// The best of `reps` times (ms, by CUDA events on stream s) of the work `body` enqueues on s,
// each time after the untimed work `setup` enqueues (an L2 flush, a prefetch).
template <typename Setup, typename Body>
float best_ms_after(int reps, cudaStream_t s, Setup&& setup, Body&& body) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  float best = 1e30f;
  for (int rep = 0; rep < reps; ++rep) {
    setup();
    CHECK(cudaEventRecord(a, s));
    body();
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    best = std::min(best, ms);
  }
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return best;
}

template <typename Body>
float best_ms(int reps, cudaStream_t s, Body&& body) {
  return best_ms_after(reps, s, [] {}, body);
}

// GB/s of a device-to-device copy of `bytes` from buf to buf + bytes (bytes read + written), the
// best of 5.
inline double copy_gbs(uint8_t* buf, int64_t bytes) {
  const float ms = best_ms(5, 0, [&] { CHECK(cudaMemcpyAsync(buf + bytes, buf, size_t(bytes), cudaMemcpyDeviceToDevice)); });
  return 2.0 * double(bytes) / 1e9 / (ms / 1e3);
}

}  // namespace probe
