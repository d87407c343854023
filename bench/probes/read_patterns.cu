// Read bandwidth of the access patterns of one decode step's MoE, against a plain sequential read
// of the same bytes: the open question of docs/PERF.md (third session). The streaming MoE kernel's
// w1/w3 phase moves its 42.5 MB at about 1.6 TB/s whether the bytes come by registers or by TMA,
// with 2 or 3 stages in flight, and even with the arithmetic skipped; the lm_head GEMV reads
// 653 MB at 2.7 TB/s. Is it the size (ramp-up and drain of a ~15 us transfer), or the 16
// scattered 2.4 MB regions, or the per-block chunking?
//
//   build-dev/bench/read_patterns_probe [GiB of buffer, default 4]
//
// Each line: the pattern, the bytes it reads, the median time of 15 cold runs (L2 flushed by
// writing 128 MB between runs), GB/s, and its fraction of the device-to-device copy bandwidth
// measured here (bytes read + written), the same ceiling `moeq bench` states.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "backend/cuda/kernels/tma.cuh"
#include "probe_common.cuh"

using namespace moeq::cuda;

namespace {

constexpr int kThreads = 256;

// A read job: `n` chunks of `chunk` bytes; chunk i starts at base + offset[i]. Block b reads
// chunks [b n / G, (b + 1) n / G) (contiguous ranges, as the MoE kernel's blocks do), its threads
// each keeping 8 16-byte loads in flight.
struct Job {
  const uint8_t* base;
  const int64_t* offset;
  int64_t n, chunk;
};

__global__ void __launch_bounds__(kThreads) read_chunks(Job job, uint32_t* sink) {
  const int64_t c0 = blockIdx.x * job.n / gridDim.x, c1 = (blockIdx.x + 1) * job.n / gridDim.x;
  uint32_t acc = 0;
  for (int64_t c = c0; c < c1; ++c) {
    const uint4* p = reinterpret_cast<const uint4*>(job.base + job.offset[c]);
    const int64_t v = job.chunk / 16;
    for (int64_t i = threadIdx.x; i < v; i += 8 * kThreads) {
      uint4 r[8];
#pragma unroll
      for (int u = 0; u < 8; ++u) r[u] = i + u * kThreads < v ? __ldcs(p + i + u * kThreads) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int u = 0; u < 8; ++u) acc ^= r[u].x ^ r[u].y ^ r[u].z ^ r[u].w;
    }
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;  // keeps the loads; practically never stores
}

// The same chunks by TMA bulk copies into a ring of 3 shared-memory stages (one thread issues,
// the block waits on the stage's mbarrier and moves on): the streaming MoE kernel's load path
// without its arithmetic. chunk <= kStage.
constexpr int kStages = 3, kStage = 48 * 1024;
__global__ void __launch_bounds__(kThreads) read_chunks_tma(Job job, uint32_t* sink) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ uint64_t full[kStages];
  const int64_t c0 = blockIdx.x * job.n / gridDim.x, c1 = (blockIdx.x + 1) * job.n / gridDim.x;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) mbar_init(&full[s], 1);
    mbar_init_fence();
  }
  __syncthreads();
  auto issue = [&](int64_t c) {
    const int s = int((c - c0) % kStages);
    mbar_arrive_expect_tx(&full[s], uint32_t(job.chunk));
    bulk_copy_g2s(smem + s * kStage, job.base + job.offset[c], uint32_t(job.chunk), &full[s]);
  };
  if (threadIdx.x == 0)
    for (int64_t c = c0; c < min(c1, c0 + kStages); ++c) issue(c);
  uint32_t acc = 0;
  for (int64_t c = c0; c < c1; ++c) {
    const int s = int((c - c0) % kStages);
    mbar_wait(&full[s], uint32_t((c - c0) / kStages) & 1);
    acc ^= reinterpret_cast<const uint32_t*>(smem + s * kStage)[threadIdx.x];
    __syncthreads();  // everyone has read the stage before it is refilled
    if (threadIdx.x == 0 && c + kStages < c1) issue(c + kStages);
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;
}

struct Probe {
  uint8_t* buf = nullptr;
  int64_t bytes = 0;
  uint32_t *sink = nullptr, *scratch = nullptr;
  int sms = 0;
  cudaEvent_t a{}, b{};
};

double median_ms(Probe& pr, const std::vector<int64_t>& offsets, int64_t chunk, bool tma, int grid) {
  int64_t* d_off = nullptr;
  CHECK(cudaMalloc(&d_off, offsets.size() * sizeof(int64_t)));
  CHECK(cudaMemcpy(d_off, offsets.data(), offsets.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
  const Job job{pr.buf, d_off, int64_t(offsets.size()), chunk};
  std::vector<float> t;
  for (int rep = 0; rep < 16; ++rep) {
    probe::flush_l2(pr.scratch, pr.sms);
    CHECK(cudaEventRecord(pr.a));
    if (tma) read_chunks_tma<<<grid, kThreads, kStages * kStage>>>(job, pr.sink);
    else read_chunks<<<grid, kThreads>>>(job, pr.sink);
    CHECK(cudaEventRecord(pr.b));
    CHECK(cudaEventSynchronize(pr.b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, pr.a, pr.b));
    if (rep > 0) t.push_back(ms);  // the first run warms up the code and the TLB
  }
  CHECK(cudaGetLastError());
  CHECK(cudaFree(d_off));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void report(Probe& pr, const char* name, const std::vector<int64_t>& offsets, int64_t chunk, bool tma, int grid,
            double copy_gbs) {
  const double ms = median_ms(pr, offsets, chunk, tma, grid);
  const double gb = double(offsets.size()) * double(chunk) / 1e9;
  std::printf("%-58s %8.1f MB %8.1f us %7.0f GB/s %5.1f%% of copy\n", name, gb * 1e3, ms * 1e3, gb / (ms / 1e3),
              100.0 * gb / (ms / 1e3) / copy_gbs);
}

// Chunks of `chunk` bytes covering [start, start + bytes).
void add_region(std::vector<int64_t>& off, int64_t start, int64_t bytes, int64_t chunk) {
  for (int64_t o = 0; o + chunk <= bytes; o += chunk) off.push_back(start + o);
}

}  // namespace

int main(int argc, char** argv) {
  Probe pr;
  const double gib = argc > 1 ? std::atof(argv[1]) : 4.0;
  pr.bytes = int64_t(gib * double(1 << 30));
  CHECK(cudaDeviceGetAttribute(&pr.sms, cudaDevAttrMultiProcessorCount, 0));
  CHECK(cudaMalloc(&pr.buf, size_t(pr.bytes)));
  CHECK(cudaMalloc(&pr.scratch, 128 << 20));
  CHECK(cudaMalloc(&pr.sink, 1 << 20));
  CHECK(cudaMemset(pr.buf, 1, size_t(pr.bytes)));
  CHECK(cudaFuncSetAttribute(read_chunks_tma, cudaFuncAttributeMaxDynamicSharedMemorySize, kStages * kStage));
  CHECK(cudaEventCreate(&pr.a));
  CHECK(cudaEventCreate(&pr.b));

  // The ceiling: a device-to-device copy of 1 GiB, bytes read + written.
  const double copy_gbs = probe::copy_gbs(pr.buf, int64_t(1) << 30);
  std::printf("device-to-device copy: %.0f GB/s (bytes read + written)\n", copy_gbs);

  // MiniMax-M2 expert shapes at int4_g32: W1_e and W3_e are 1536 x 3072 codes = 2.36 MB each;
  // a 16-row tile of one is 24.6 KB. A layer's 256 experts of one matrix span 604 MB.
  const int64_t mat = 1536LL * 3072 / 2, tile = 16LL * 3072 / 2, stack = 256 * mat;
  const int grid = pr.sms;
  std::mt19937_64 rng(7);
  std::vector<int> experts(256);
  for (int i = 0; i < 256; ++i) experts[size_t(i)] = i;
  std::shuffle(experts.begin(), experts.end(), rng);
  if (3 * stack > pr.bytes) {
    std::fprintf(stderr, "read_patterns_probe: needs %.1f GiB of buffer\n", 3.0 * double(stack) / double(1 << 30));
    return 1;
  }

  std::vector<int64_t> off;
  // 1. The MoE's w1/w3 phase: 8 random experts, W1 and W3 (two stacks), tiles pair by pair, the
  //    W1 and W3 tiles of a row block next to each other (as one tile of the kernel).
  for (int k = 0; k < 8; ++k)
    for (int64_t rb = 0; rb < mat / tile; ++rb)
      off.push_back(experts[size_t(k)] * mat + rb * tile), off.push_back(stack + experts[size_t(k)] * mat + rb * tile);
  report(pr, "moe w1/w3: 16 scattered 2.4 MB regions, 24.6 KB chunks", off, tile, false, grid, copy_gbs);
  report(pr, "  the same by TMA bulk copies, 3 stages", off, tile, true, grid, copy_gbs);
  // 2. The same bytes as one contiguous region, same chunking.
  off.clear();
  add_region(off, 0, 16 * mat, tile);
  report(pr, "one contiguous region of the same size, 24.6 KB chunks", off, tile, false, grid, copy_gbs);
  report(pr, "  the same by TMA bulk copies, 3 stages", off, tile, true, grid, copy_gbs);
  // 3. 16 regions again, but adjacent experts (0..7): scattered vs. adjacent regions.
  off.clear();
  for (int k = 0; k < 8; ++k)
    for (int64_t rb = 0; rb < mat / tile; ++rb) off.push_back(k * mat + rb * tile), off.push_back(stack + k * mat + rb * tile);
  report(pr, "16 regions of adjacent experts, 24.6 KB chunks", off, tile, false, grid, copy_gbs);
  // 4. Size: the same sequential read at 8x the bytes (the ramp-up and drain amortised).
  off.clear();
  add_region(off, 0, 128 * mat, tile);
  report(pr, "one contiguous region, 8x the bytes (302 MB)", off, tile, false, grid, copy_gbs);
  // 5. Grid: 4 blocks per SM instead of 1 on the moe pattern (more loads in flight per SM).
  off.clear();
  for (int k = 0; k < 8; ++k)
    for (int64_t rb = 0; rb < mat / tile; ++rb)
      off.push_back(experts[size_t(k)] * mat + rb * tile), off.push_back(stack + experts[size_t(k)] * mat + rb * tile);
  report(pr, "moe w1/w3 pattern, 4 blocks per SM", off, tile, false, 4 * grid, copy_gbs);
  return 0;
}
