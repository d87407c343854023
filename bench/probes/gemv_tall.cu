// lm_head's product (200064 x 3072, q8, one token) by the decode GEMV's kernels, against a plain
// read of the same bytes: the graph trace gives lm_head 251 us for 653 MB, 86% of the copy
// bandwidth (fourteenth session). MOEQ_GEMV_TALL picks the kernel (gemv.cu): 0 a block per 8-16
// rows, 1 the tall kernel (a resident grid walking rows, the next row's loads in flight).
//
//   build-dev/bench/gemv_tall_probe [rows, default 200064]
//
// Each line: the kernel, the best time of 15 runs (L2 flushed between them), GB/s of weight bytes,
// the fraction of the copy bandwidth measured here (bytes read + written), and the largest
// difference of its outputs from mode 0's relative to their largest magnitude.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backend/cuda/dev_weight.h"
#include "backend/cuda/kernels.h"
#include "probe_common.cuh"

using namespace moeq::cuda;

namespace {

// Block b reads its contiguous share of the n 16-byte words, 8 loads in flight per thread.
__global__ void read_all(const uint4* p, int64_t n, uint32_t* sink) {
  const int64_t b0 = blockIdx.x * n / gridDim.x, b1 = (blockIdx.x + 1) * n / gridDim.x;
  uint32_t acc = 0;
  for (int64_t i = b0 + threadIdx.x; i < b1; i += 8 * blockDim.x) {
    uint4 r[8];
#pragma unroll
    for (int u = 0; u < 8; ++u) r[u] = i + u * blockDim.x < b1 ? __ldcs(p + i + u * blockDim.x) : make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int u = 0; u < 8; ++u) acc ^= r[u].x ^ r[u].y ^ r[u].z ^ r[u].w;
  }
  if (acc == 0x9e3779b9u) sink[blockIdx.x] = acc;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 200064, cols = 3072;
  int sms = 0;
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int64_t qbytes = rows * cols, sbytes = rows * (cols / 32) * 2;
  uint8_t* buf = nullptr;
  uint32_t *flush = nullptr, *sink = nullptr;
  float *x = nullptr, *y = nullptr;
  CHECK(cudaMalloc(&buf, qbytes + sbytes));
  CHECK(cudaMalloc(&flush, 128 << 20));
  CHECK(cudaMalloc(&sink, 1 << 20));
  CHECK(cudaMalloc(&x, cols * 4));
  CHECK(cudaMalloc(&y, rows * 4));
  fill_synthetic(buf, qbytes, kFillRandomBytes, 0, 0, 1, 0, 0);
  fill_synthetic(buf + qbytes, sbytes / 2, kFillScale, kFillF16, 0.01f, 2, 0, 0);
  fill_synthetic(x, cols, kFillNormal, kFillF32, 1.0f, 3, 0, 0);
  CHECK(cudaDeviceSynchronize());
  DevWeight w;
  w.fmt = Fmt::Q8;
  w.group = 32;
  w.rows = rows, w.cols = cols, w.row_bytes = cols;
  w.q = buf;
  w.scales = buf + qbytes;

  uint8_t* cbuf = nullptr;
  const int64_t cn = int64_t(1) << 30;
  CHECK(cudaMalloc(&cbuf, 2 * cn));
  CHECK(cudaMemset(cbuf, 1, 2 * cn));
  const double copy = probe::copy_gbs(cbuf, cn);
  CHECK(cudaFree(cbuf));
  const double bytes = double(qbytes + sbytes);
  std::printf("copy bandwidth (bytes read + written): %.0f GB/s; weight %lld x %lld q8: %.1f MB\n", copy,
              (long long)rows, (long long)cols, bytes / 1e6);
  auto report = [&](const char* what, float ms, double diff) {
    const double gbs = bytes / 1e9 / (ms / 1e3);
    std::printf("%-40s %8.1f us %7.0f GB/s %6.1f%%  max diff %.2e\n", what, ms * 1e3, gbs, 100 * gbs / copy, diff);
  };
  const float rd = probe::best_ms_after(15, 0, [&] { probe::flush_l2(flush, sms); },
                                        [&] { read_all<<<sms * 4, 512>>>(reinterpret_cast<const uint4*>(buf), int64_t(bytes) / 16, sink); });
  report("plain read of the same bytes", rd, 0);
  std::vector<float> ref(rows), out(rows);
  for (const char* mode : {"0", "1", "0", "1"}) {
    setenv("MOEQ_GEMV_TALL", mode, 1);
    CHECK(cudaMemset(y, 0xff, rows * 4));
    const float ms = probe::best_ms_after(15, 0, [&] { probe::flush_l2(flush, sms); }, [&] { gemv(w, x, 1, y, 0); });
    CHECK(cudaMemcpy(out.data(), y, rows * 4, cudaMemcpyDeviceToHost));
    if (mode[0] == '0') ref = out;
    double mx = 0, diff = 0;
    for (int64_t i = 0; i < rows; ++i) {
      mx = std::max(mx, double(std::fabs(ref[i])));
      diff = std::max(diff, std::isfinite(out[i]) ? double(std::fabs(out[i] - ref[i])) : INFINITY);
    }
    char name[64];
    std::snprintf(name, sizeof name, "gemv, MOEQ_GEMV_TALL=%s", mode);
    report(name, ms, diff / std::max(mx, 1e-30));
  }
  return 0;
}
