// How long does one short kernel of the decode step take when it runs in a chain of launches
// with programmatic dependent launch, as in the replayed graph? The graph trace (docs/PERF.md)
// gave the router's top-k kernel about 6 us per layer after its predecessor ends, where a norm
// took about 2 us. This probe replays graphs of 200 launches of one kernel (or of a pair) and
// prints the best time per launch over 10 replays (everything warm in L2): what the kernel costs
// in the chain by itself. It found the top-k's and QK-norm's loads issued one round trip after
// another (fixed: 4.5 -> 2.2 and 4.8 -> 3.7 us).
//
//   build-dev/bench/chain_latency_probe
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/launch.cuh"
#include "probe_common.cuh"

using namespace moeq::cuda;

namespace {

__global__ void empty_kernel(float* p) {
  pdl_launch_dependents();
  pdl_wait();
  if (threadIdx.x == 0 && blockIdx.x == 0 && p[0] == 12345.0f) p[1] = 1.0f;
}

// Microseconds per launch of `body` (which launches `per` kernels) replayed in a graph of n bodies.
double per_launch_us(cudaStream_t s, int n, int per, const std::function<void()>& body) {
  cudaGraph_t g{};
  cudaGraphExec_t ge{};
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < n; ++i) body();
  CHECK(cudaStreamEndCapture(s, &g));
  CHECK(cudaGraphInstantiate(&ge, g, 0));
  CHECK(cudaGraphLaunch(ge, s));  // warm-up
  const float best = probe::best_ms(10, s, [&] { CHECK(cudaGraphLaunch(ge, s)); });
  CHECK(cudaGraphExecDestroy(ge));
  CHECK(cudaGraphDestroy(g));
  return best * 1e3 / double(n) / per;
}

}  // namespace

int main() {
  cudaStream_t s{};
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const int E = 256, K = 8, D = 3072, n = 200;
  float *logits = nullptr, *bias = nullptr, *wts = nullptr, *x = nullptr, *nw = nullptr, *y = nullptr;
  int32_t* ids = nullptr;
  CHECK(cudaMalloc(&logits, E * 4));
  CHECK(cudaMalloc(&bias, E * 4));
  CHECK(cudaMalloc(&wts, K * 4));
  CHECK(cudaMalloc(&ids, K * 4));
  CHECK(cudaMalloc(&x, D * 4));
  CHECK(cudaMalloc(&nw, D * 4));
  CHECK(cudaMalloc(&y, D * 4));
  // MiniMax-M2 attention shapes: 48 query heads, 8 kv heads of 128, rotary 64, cache of 4096.
  const int H = 48, KVH = 8, HD = 128, ROT = 64, CTX = 4096;
  float *q = nullptr, *k = nullptr, *v = nullptr, *qw = nullptr, *kw = nullptr, *inv_freq = nullptr, *kc = nullptr,
        *vc = nullptr;
  int32_t *pos = nullptr, *slots = nullptr;
  CHECK(cudaMalloc(&q, H * HD * 4));
  CHECK(cudaMalloc(&k, KVH * HD * 4));
  CHECK(cudaMalloc(&v, KVH * HD * 4));
  CHECK(cudaMalloc(&qw, H * HD * 4));
  CHECK(cudaMalloc(&kw, KVH * HD * 4));
  CHECK(cudaMalloc(&inv_freq, ROT / 2 * 4));
  CHECK(cudaMalloc(&kc, int64_t(CTX) * KVH * HD * 4));
  CHECK(cudaMalloc(&vc, int64_t(CTX) * KVH * HD * 4));
  CHECK(cudaMalloc(&pos, 4));
  CHECK(cudaMalloc(&slots, 4));
  CHECK(cudaMemset(q, 0, H * HD * 4));
  CHECK(cudaMemset(k, 0, KVH * HD * 4));
  CHECK(cudaMemset(v, 0, KVH * HD * 4));
  CHECK(cudaMemset(qw, 0, H * HD * 4));
  CHECK(cudaMemset(kw, 0, KVH * HD * 4));
  CHECK(cudaMemset(inv_freq, 0, ROT / 2 * 4));
  CHECK(cudaMemset(slots, 0, 4));
  const int32_t p2047 = 2047;
  CHECK(cudaMemcpy(pos, &p2047, 4, cudaMemcpyHostToDevice));
  std::vector<float> h(D);
  for (int i = 0; i < D; ++i) h[size_t(i)] = float((i * 7919) % 1000) / 1000.0f - 0.5f;
  CHECK(cudaMemcpy(logits, h.data(), E * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(bias, h.data() + E, E * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(x, h.data(), D * 4, cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(nw, h.data(), D * 4, cudaMemcpyHostToDevice));
  std::printf("PDL %s; us per launch in a graph of %d\n", pdl_enabled() ? "on" : "off", n);
  std::printf("empty kernel (1 block)            %6.2f\n",
              per_launch_us(s, n, 1, [&] { launch(empty_kernel, dim3(1), dim3(128), 0, s, y); }));
  std::printf("router top-k (1 token, 256, 8)    %6.2f\n",
              per_launch_us(s, n, 1, [&] { router_topk(logits, bias, 1, E, K, ids, wts, s); }));
  std::printf("rmsnorm (1 x 3072)                %6.2f\n",
              per_launch_us(s, n, 1, [&] { rmsnorm(x, nw, 1e-6f, 1, D, y, s); }));
  std::printf("qk norm + rope (48 + 8 heads)      %6.2f\n", per_launch_us(s, n, 1, [&] {
                qk_norm_rope(q, k, qw, kw, 1e-6f, pos, 1, H, KVH, HD, ROT, inv_freq, s);
              }));
  std::printf("kv write (1 token, 8 x 128)       %6.2f\n", per_launch_us(s, n, 1, [&] {
                kv_write(k, v, pos, slots, 1, kc, vc, int64_t(CTX) * KVH * HD, KVH * HD, CTX, s);
              }));
  {  // decode attention over 2048 positions (the benchmark's), splits as the backend picks them
    int sms = 0;
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    const int splits = attention_splits(1, KVH, CTX, 4 * sms);
    AttnScratch sc;
    sc.capacity_splits = int64_t(H) * splits;
    CHECK(cudaMalloc(&sc.partial_o, size_t(sc.capacity_splits) * HD * 4));
    CHECK(cudaMalloc(&sc.partial_ml, size_t(sc.capacity_splits) * 2 * 4));
    CHECK(cudaMemset(kc, 0, size_t(CTX) * KVH * HD * 4));
    CHECK(cudaMemset(vc, 0, size_t(CTX) * KVH * HD * 4));
    float* ao = nullptr;
    CHECK(cudaMalloc(&ao, H * HD * 4));
    std::printf("attention + merge (2048 of %d, %d splits, KV %.1f MB, warm in L2) %6.2f per pair\n", CTX, splits,
                2048.0 * KVH * HD * 8 / 1e6, 2 * per_launch_us(s, n, 2, [&] {
                  attention_decode(q, k, v, kc, vc, pos, slots, 1, H, KVH, HD, int64_t(CTX) * KVH * HD, splits, false,
                                   sc, ao, s);
                }));
    // The same over 16 caches in turn (16 x 2 x 16.8 MB, far past the 50 MB L2): from DRAM.
    const int kCold = 16;
    const size_t cache_bytes = size_t(CTX) * KVH * HD * 4;
    char* cold = nullptr;
    CHECK(cudaMalloc(&cold, 2 * kCold * cache_bytes));
    CHECK(cudaMemset(cold, 0, 2 * kCold * cache_bytes));
    // early: the first rows loaded before the dependency wait (rows 0..2046 are never written
    // here, so that is safe in this chain too).
    for (const bool early : {false, true}) {
      int turn = 0;
      std::printf("attention + merge (same, cold: 16 caches in turn, early %d) %6.2f per pair\n", int(early),
                  2 * per_launch_us(s, n, 2, [&] {
                    float* kk = reinterpret_cast<float*>(cold + size_t(2 * (turn % kCold)) * cache_bytes);
                    float* vv = reinterpret_cast<float*>(cold + size_t(2 * (turn % kCold) + 1) * cache_bytes);
                    ++turn;
                    attention_decode(q, k, v, kk, vv, pos, slots, 1, H, KVH, HD, int64_t(CTX) * KVH * HD, splits,
                                     early, sc, ao, s);
                  }));
    }
  }
  std::printf("rmsnorm + empty, per launch       %6.2f\n", per_launch_us(s, n, 2, [&] {
                rmsnorm(x, nw, 1e-6f, 1, D, y, s);
                launch(empty_kernel, dim3(1), dim3(128), 0, s, y);
              }));
  std::printf("rmsnorm + top-k, per launch       %6.2f\n", per_launch_us(s, n, 2, [&] {
                rmsnorm(x, nw, 1e-6f, 1, D, y, s);
                router_topk(logits, bias, 1, E, K, ids, wts, s);
              }));
  return 0;
}
