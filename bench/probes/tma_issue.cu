// How fast can the streaming MoE kernel's ring move a decode step's bytes, with no arithmetic and
// no dependences? Its producer warp brings each 16-row block of a weight tile as 16 one-row copies
// (rows padded in shared memory against ldmatrix bank conflicts): 34 copies per 50 KB stage. This
// probe streams bytes through the same ring (one block per SM, 3 stages, a producer warp, 8
// consumer warps that only touch the stage) with the rows brought as: one copy per row; one copy
// per 16 rows (dense); one copy per stage; one 2-D tensor copy per 16 rows with a box wider than
// the row (padded rows, the extra columns zero-filled, not read). Sizes: a layer's o and q/k/v
// products, its experts, and 512 MB for the steady rate. Last, the experts' bytes as 24 scattered
// 2.36 MB regions of a 60 GB pool, the same regions every run or new ones (address translations
// cached or not). These are the floors that docs/PERF.md sets the decode kernels against.
//
//   build-dev/bench/tma_issue_probe
//
// Each line: the variant, the MB read, the kernel's own time (earliest block start to latest
// block end, %globaltimer), GB/s and the fraction of the copy bandwidth measured here, then the
// medians over blocks of the first copy's issue and the first full stage after the block's start.
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "backend/cuda/kernels/tma.cuh"
#include "probe_common.cuh"

using namespace moeq::cuda;

namespace {

constexpr int kRowBytes = 1536, kPitch = kRowBytes + 16, kRows = 32;  // a w1/w3 tile: 2 x 16 rows
constexpr int kStage = kRows * kPitch, kStages = 3, kThreads = 288;   // 8 consumer warps + producer
enum Mode { kPerRow, kPer16, kPerStage, kTensor };

__device__ unsigned long long g_t0, g_t1;
__device__ long long g_stamp[1024][3];  // per block: start, first copy issued, first stage full (ns)

// Where tile t's rows start: in `base` (regions == nullptr), or in region t / per_region of a list
// of scattered regions (the experts a decode step chooses: TLB entries the step may not have).
struct Source {
  const uint8_t* base;
  const int64_t* regions;  // byte offsets from base
  int64_t per_region;      // tiles per region
  __device__ const uint8_t* tile(int64_t t) const {
    return regions ? base + regions[t / per_region] + (t % per_region) * kRows * kRowBytes
                   : base + t * kRows * kRowBytes;
  }
};

__global__ void __launch_bounds__(kThreads, 1)
    stream(const __grid_constant__ CUtensorMap map, Source src_of, int64_t tiles, int mode, uint32_t* sink) {
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ uint64_t full[kStages], empty[kStages];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t0 = blockIdx.x * tiles / gridDim.x, t1 = (blockIdx.x + 1) * tiles / gridDim.x;
  if (threadIdx.x == 0) {
    for (int s = 0; s < kStages; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], 256);
    mbar_init_fence();
  }
  __syncthreads();
  unsigned long long now;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(now));
  if (threadIdx.x == 0) atomicMin(&g_t0, now), g_stamp[blockIdx.x][0] = (long long)now;
  if (warp == 8) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t k = t - t0;
      const int s = int(k % kStages);
      if (k >= kStages) mbar_wait(&empty[s], uint32_t(k / kStages - 1) & 1);
      uint8_t* st = smem + s * kStage;
      const uint8_t* src = src_of.tile(t);
      // A tensor copy counts its whole box, the zero-filled columns included.
      if (lane == 0) mbar_arrive_expect_tx(&full[s], mode == kTensor ? kRows * kPitch : kRows * kRowBytes);
      __syncwarp();
      if (mode == kPerRow) {
        bulk_copy_g2s(st + lane * kPitch, src + lane * kRowBytes, kRowBytes, &full[s]);
      } else if (mode == kPer16) {
        if (lane < 2) bulk_copy_g2s(st + lane * 16 * kRowBytes, src + lane * 16 * kRowBytes, 16 * kRowBytes, &full[s]);
      } else if (mode == kPerStage) {
        if (lane == 0) bulk_copy_g2s(st, src, kRows * kRowBytes, &full[s]);
      } else if (lane < 2) {
        const int row = int(t * kRows + lane * 16);
        asm volatile(
            "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
                smem_addr(st + lane * 16 * kPitch)),
            "l"(&map), "r"(0), "r"(row), "r"(smem_addr(&full[s]))
            : "memory");
      }
      if (lane == 0 && k == 0) {
        asm volatile("mov.u64 %0, %globaltimer;" : "=l"(now));
        g_stamp[blockIdx.x][1] = (long long)now;
      }
    }
  } else if (warp < 8) {
    uint32_t acc = 0;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t k = t - t0;
      const int s = int(k % kStages);
      mbar_wait(&full[s], uint32_t(k / kStages) & 1);
      if (threadIdx.x == 0 && k == 0) {
        asm volatile("mov.u64 %0, %globaltimer;" : "=l"(now));
        g_stamp[blockIdx.x][2] = (long long)now;
      }
      acc ^= reinterpret_cast<const uint32_t*>(smem + s * kStage)[threadIdx.x * 16];
      mbar_arrive(&empty[s]);
    }
    if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;
  }
  __syncthreads();
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(now));
  if (threadIdx.x == 0) atomicMax(&g_t1, now);
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int64_t buf_bytes = int64_t(1) << 30;
  uint8_t* buf = nullptr;
  uint32_t *sink = nullptr, *scratch = nullptr;
  CHECK(cudaMalloc(&buf, size_t(2 * buf_bytes)));
  CHECK(cudaMalloc(&sink, 1 << 20));
  CHECK(cudaMalloc(&scratch, 128 << 20));
  CHECK(cudaMemset(buf, 1, size_t(2 * buf_bytes)));
  CHECK(cudaFuncSetAttribute(stream, cudaFuncAttributeMaxDynamicSharedMemorySize, kStages * kStage));
  const double copy_gbs = probe::copy_gbs(buf, buf_bytes);
  std::printf("device-to-device copy: %.0f GB/s (bytes read + written)\n", copy_gbs);

  // The tensor map: the buffer as rows of 192 8-byte elements, a box of 194 x 16 (the 2 columns
  // past the row are out of bounds: zero-filled in shared memory, so rows land kPitch apart).
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q{};
  CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q));
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                              const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                              CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  CUtensorMap map{};
  const cuuint64_t dims[2] = {kRowBytes / 8, cuuint64_t(buf_bytes / kRowBytes)};
  const cuuint64_t strides[1] = {kRowBytes};
  const cuuint32_t box[2] = {kPitch / 8, 16}, estr[2] = {1, 1};
  const CUresult er = fn ? reinterpret_cast<Encode>(fn)(&map, CU_TENSOR_MAP_DATA_TYPE_UINT64, 2, buf, dims, strides,
                                                       box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                                       CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                                       CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
                         : CUDA_ERROR_NOT_FOUND;
  std::printf("tensor map (box %u x %u of 8-byte elements over rows of %d): %s\n", box[0], box[1], kRowBytes / 8,
              er == CUDA_SUCCESS ? "ok" : "refused");

  // One run: the kernel's own time and the medians over blocks of (first copy issued, first
  // stage full) after the block's start, in us.
  struct Run {
    double us, issue, full;
  };
  auto run_once = [&](Source src, int64_t tiles, int mode) {
    probe::flush_l2(scratch, sms);
    const unsigned long long hi = ~0ull, lo = 0;
    CHECK(cudaMemcpyToSymbol(g_t0, &hi, sizeof hi));
    CHECK(cudaMemcpyToSymbol(g_t1, &lo, sizeof lo));
    stream<<<sms, kThreads, kStages * kStage>>>(map, src, tiles, mode, sink);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    unsigned long long t0 = 0, t1 = 0;
    CHECK(cudaMemcpyFromSymbol(&t0, g_t0, sizeof t0));
    CHECK(cudaMemcpyFromSymbol(&t1, g_t1, sizeof t1));
    std::vector<long long> st(size_t(sms) * 3);
    CHECK(cudaMemcpyFromSymbol(st.data(), g_stamp, st.size() * sizeof(long long)));
    std::vector<double> is, fu;
    for (int bk = 0; bk < sms; ++bk)
      is.push_back(double(st[size_t(bk) * 3 + 1] - st[size_t(bk) * 3]) * 1e-3),
          fu.push_back(double(st[size_t(bk) * 3 + 2] - st[size_t(bk) * 3]) * 1e-3);
    std::sort(is.begin(), is.end());
    std::sort(fu.begin(), fu.end());
    return Run{double(t1 - t0) * 1e-3, is[is.size() / 2], fu[fu.size() / 2]};
  };
  auto report = [&](const char* name, double mb, std::vector<Run> r) {
    std::sort(r.begin(), r.end(), [](const Run& x, const Run& y) { return x.us < y.us; });
    const Run m = r[r.size() / 2];
    const double gbs = mb * 1e-3 / (m.us * 1e-6);
    std::printf("%-44s %6.1f MB %7.2f us %5.0f GB/s %5.1f%% | 1st issue %5.2f, 1st full %5.2f us\n", name, mb, m.us,
                gbs, 100.0 * gbs / copy_gbs, m.issue, m.full);
  };

  const char* names[] = {"one copy per row (the kernel now)", "one copy per 16 rows (dense)", "one copy per stage",
                         "2-D tensor copy per 16 rows (padded)"};
  // 20 and 28 MB: a layer's o and q/k/v products; 64 MB: its experts; 512 MB: the steady rate.
  for (int64_t mb : {20, 28, 64, 512}) {
    const int64_t tiles = mb * (1 << 20) / (kRows * kRowBytes);
    for (int mode = 0; mode < 4; ++mode) {
      if ((mode == kTensor && er != CUDA_SUCCESS) || (mb < 64 && mode != kPerRow && mode != kPerStage)) continue;
      std::vector<Run> r;
      for (int rep = 0; rep < 12; ++rep) {
        const Run x = run_once(Source{buf, nullptr, 1}, tiles, mode);
        if (rep > 0) r.push_back(x);
      }
      report(names[mode], double(tiles * kRows * kRowBytes) / 1e6, r);
    }
  }

  // A decode step's w1/w3/w2 reads: 24 regions of 2.36 MB (8 experts x 3 matrices) at random
  // 2 MB-aligned places of a pool the size of 33 layers' experts, either the same regions every
  // run (their translations cached) or new ones every run (as when each step picks new experts).
  size_t free_b = 0, total_b = 0;
  CHECK(cudaMemGetInfo(&free_b, &total_b));
  const int64_t pool_bytes = std::min<int64_t>(int64_t(60) << 30, int64_t(free_b) - (int64_t(2) << 30));
  uint8_t* pool = nullptr;
  CHECK(cudaMalloc(&pool, size_t(pool_bytes)));
  const int64_t region = 1536LL * 3072 / 2, per_region = region / (kRows * kRowBytes), nreg = 24;
  int64_t* d_reg = nullptr;
  CHECK(cudaMalloc(&d_reg, nreg * sizeof(int64_t)));
  uint64_t seed = 88172645463325252ull;
  auto draw = [&] {
    std::vector<int64_t> off(nreg);
    for (auto& o : off) {
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      o = int64_t(seed % uint64_t((pool_bytes - region) >> 21)) << 21;
    }
    CHECK(cudaMemcpy(d_reg, off.data(), off.size() * sizeof(int64_t), cudaMemcpyHostToDevice));
  };
  std::printf("pool of %.1f GB for the scattered regions\n", double(pool_bytes) / 1e9);
  for (int fresh = 0; fresh < 2; ++fresh) {
    std::vector<Run> r;
    draw();
    for (int rep = 0; rep < 12; ++rep) {
      if (fresh) draw();
      const Run x = run_once(Source{pool, d_reg, per_region}, nreg * per_region, kPerRow);
      if (rep > 0) r.push_back(x);
    }
    report(fresh ? "24 scattered regions, new ones every run" : "24 scattered regions, the same every run",
           double(nreg * per_region * kRows * kRowBytes) / 1e6, r);
  }
  return 0;
}
