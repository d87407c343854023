// Does a bulk L2 prefetch (cp.async.bulk.prefetch.L2) put bytes in L2, and how fast does a
// memory-bound read take them from there? The eleventh session's prefetches of the next kernel's
// bytes in the decode (the cache rows from the q/k/v product, the o weight from the attention;
// docs/PERF.md) saved far less than a read from L2 should: this separates "the bytes were not in
// L2" from "the reader is not bound by where its bytes come from".
//
// For each size: the read kernel's time (events around it alone, best of 10) when its bytes are
//   cold      - L2 flushed before;
//   hot       - read once just before with the default policy (an L2 hit, the floor);
//   bulk      - flushed, then asked for by one bulk prefetch share per block (132 blocks), then
//               a 50 us pause;
//   line      - the same by a per-128-byte `prefetch.global.L2` from every thread;
//   bulk+pass - bulk, then 28 MB of other bytes read evict-first (as the q/k/v weights pass).
// The read kernel loads float4s evict-first, 4 in flight per thread, like the decode's kernels.
#include <cstdio>
#include <vector>

#include "backend/cuda/kernels/cache_policy.cuh"
#include "probe_common.cuh"

namespace {

// Block b of `blocks` asks for its share of [p, p + bytes) (16-byte units), 64 KB an instruction.
__global__ void bulk_kernel(const char* p, int64_t bytes) {
  if (threadIdx.x != 0) return;
  const int64_t units = bytes / 16, per = (units + gridDim.x - 1) / gridDim.x;
  const int64_t u0 = blockIdx.x * per, u1 = min(units, u0 + per);
  for (int64_t u = u0; u < u1; u += 4096) {
    const uint32_t size = uint32_t(min(u1 - u, int64_t(4096)) * 16);
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + u * 16), "r"(size) : "memory");
  }
}

__global__ void read_kernel(const float4* p, int64_t n4, float* sink) {
  const uint64_t pol = moeq::cuda::l2_stream_policy();
  float acc = 0;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += 4 * stride) {
    float4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = i + u * stride < n4 ? moeq::cuda::ld_hint(p + i + u * stride, pol) : float4{};
#pragma unroll
    for (int u = 0; u < 4; ++u) acc += v[u].x + v[u].y + v[u].z + v[u].w;
  }
  if (acc == 12345.f) *sink = acc;  // keeps the loads
}

__global__ void warm_kernel(const float4* p, int64_t n4, float* sink) {
  float acc = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4; i += int64_t(gridDim.x) * blockDim.x) {
    const float4 v = __ldcg(p + i);
    acc += v.x + v.y + v.z + v.w;
  }
  if (acc == 12345.f) *sink = acc;
}

__global__ void line_kernel(const char* p, int64_t bytes) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x * 128;
  for (int64_t off = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * 128; off < bytes; off += stride)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p + off));
}

__global__ void pause_kernel(uint64_t ns) {
  uint64_t t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); while (t - t0 < ns);
}

}  // namespace

int main() {
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  const int sms = prop.multiProcessorCount;
  std::printf("%s, %d SMs, L2 %d MB\n", prop.name, sms, prop.l2CacheSize >> 20);
  const int64_t max_bytes = int64_t(40) << 20, pass_bytes = int64_t(28) << 20;
  uint8_t *data = nullptr, *other = nullptr;
  uint32_t* scratch = nullptr;
  float* sink = nullptr;
  CHECK(cudaMalloc(&data, max_bytes));
  CHECK(cudaMalloc(&other, pass_bytes));
  CHECK(cudaMalloc(&scratch, 128 << 20));
  CHECK(cudaMalloc(&sink, 4));
  CHECK(cudaMemset(data, 0, max_bytes));
  CHECK(cudaMemset(other, 0, pass_bytes));
  const dim3 rgrid(sms * 8), rblock(256);
  std::printf("%-8s %10s %10s %10s %10s %10s   (us, best of 10; GB/s of the cold read in brackets)\n", "MB", "cold",
              "hot", "bulk", "line", "bulk+pass");
  for (const int64_t mb : {8, 17, 20, 28, 40}) {
    const int64_t bytes = mb << 20, n4 = bytes / 16;
    const auto* p4 = reinterpret_cast<const float4*>(data);
    auto timed_read = [&](auto&& before) {
      return 1e3f * probe::best_ms_after(10, 0, before, [&] { read_kernel<<<rgrid, rblock>>>(p4, n4, sink); });
    };
    const float cold = timed_read([&] { probe::flush_l2(scratch, sms); });
    const float hot = timed_read([&] { warm_kernel<<<rgrid, rblock>>>(p4, n4, sink); });
    const float bulk = timed_read([&] {
      probe::flush_l2(scratch, sms);
      bulk_kernel<<<sms, 32>>>(reinterpret_cast<const char*>(data), bytes);
      pause_kernel<<<1, 1>>>(50000);
    });
    const float line = timed_read([&] {
      probe::flush_l2(scratch, sms);
      line_kernel<<<sms * 4, 256>>>(reinterpret_cast<const char*>(data), bytes);
      pause_kernel<<<1, 1>>>(50000);
    });
    const float pass = timed_read([&] {
      probe::flush_l2(scratch, sms);
      bulk_kernel<<<sms, 32>>>(reinterpret_cast<const char*>(data), bytes);
      pause_kernel<<<1, 1>>>(50000);
      read_kernel<<<rgrid, rblock>>>(reinterpret_cast<const float4*>(other), pass_bytes / 16, sink);
    });
    CHECK(cudaGetLastError());
    std::printf("%-8lld %10.2f %10.2f %10.2f %10.2f %10.2f   (%.0f GB/s)\n", (long long)mb, cold, hot, bulk, line, pass,
                double(bytes) / 1e3 / cold);
  }
  CHECK(cudaDeviceSynchronize());
  return 0;
}
