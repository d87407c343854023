// CPU throughput of the reference engine on a model (default models/tiny-m2): prefill and decode
// tokens per second, with the achieved GFLOP/s against this machine's measured f32 GEMM rate
// (moeq's own kernel on an in-cache problem) as the stated ceiling.
//   bench_cpu_model [--model DIR] [--prompt 512] [--gen 128] [--threads N] [--reps 3]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm.h"
#include "core/thread_pool.h"
#include "model/minimax_m2.h"

using namespace moeq;
using clk = std::chrono::steady_clock;

namespace {

double seconds_since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

// Multiply-adds per token at context length `ctx` (linear layers + attention scores and values).
double macs_per_token(const ModelConfig& c, double ctx) {
  const double H = c.hidden_size, attn = H * c.q_dim() * 2 + H * c.kv_dim() * 2;
  const double moe = double(c.experts_per_tok) * 3 * H * c.intermediate_size + H * c.num_experts;
  const double scores = 2.0 * c.num_heads * c.head_dim * ctx;
  return c.num_layers * (attn + moe + scores) + H * c.vocab_size;
}

// The ceiling: cpu::linear (the CPU backend's matrix product, packing included) on an f32 weight
// with enough tokens to reach its steady rate, all in cache.
double gemm_peak_gflops() {
  const int64_t T = 240, K = 768, N = 768;
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  HostArray wa = HostArray::owned(DType::F32, {N, K});
  for (int64_t i = 0; i < N * K; ++i) reinterpret_cast<float*>(wa.mutable_data())[i] = d(rng);
  const QuantizedWeight w = make_dense_weight(wa);
  std::vector<float> x(size_t(T * K)), out(size_t(T * N));
  for (auto& v : x) v = d(rng);
  const int reps = 20;
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = clk::now();
    for (int i = 0; i < reps; ++i) cpu::linear(x.data(), T, w, out.data());
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * double(T * K * N) * reps / best / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = std::string(MOEQ_SOURCE_DIR) + "/models/tiny-m2";
  int prompt = 512, gen = 128, threads = 0, reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--model") dir = argv[i + 1];
    else if (a == "--prompt") prompt = std::atoi(argv[i + 1]);
    else if (a == "--gen") gen = std::atoi(argv[i + 1]);
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--reps") reps = std::atoi(argv[i + 1]);
    else {
      fmt::print(stderr, "unknown option {}\n", a);
      return 2;
    }
  }
  if (threads > 0) set_num_threads(threads);
  CpuBackend be;
  auto model = Model::load(dir, be);
  const ModelConfig& c = model->config();
  std::mt19937 rng(7);
  std::uniform_int_distribution<int32_t> tok(100, c.vocab_size - 1);
  std::vector<int32_t> ids(static_cast<size_t>(prompt)), pos(static_cast<size_t>(prompt)), slots(static_cast<size_t>(prompt), 0);
  for (auto& t : ids) t = tok(rng);
  std::iota(pos.begin(), pos.end(), 0);
  KVCache kv = model->make_cache(1, prompt + gen);
  const int32_t last = prompt - 1;

  double prefill = 1e30, decode = 1e30;
  for (int r = 0; r < reps; ++r) {
    auto t0 = clk::now();
    const Tensor* l = &model->forward(ids, pos, slots, std::span<const int32_t>(&last, 1), kv);
    prefill = std::min(prefill, seconds_since(t0));
    t0 = clk::now();
    for (int i = 0; i < gen; ++i) {
      const float* lg = l->as<float>();
      const int32_t next = int32_t(std::max_element(lg, lg + c.vocab_size) - lg);
      const int32_t p = prompt + i, z = 0;
      l = &model->forward(std::span<const int32_t>(&next, 1), std::span<const int32_t>(&p, 1),
                          std::span<const int32_t>(&z, 1), std::span<const int32_t>(&z, 1), kv);
    }
    decode = std::min(decode, seconds_since(t0));
  }
  const double peak = gemm_peak_gflops();
  const double pre_tps = prompt / prefill, dec_tps = gen / decode;
  const double pre_gf = pre_tps * 2 * macs_per_token(c, prompt / 2.0) / 1e9;
  const double dec_gf = dec_tps * 2 * macs_per_token(c, prompt + gen / 2.0) / 1e9;
  fmt::print("model {}  threads {}  prompt {}  gen {}  (best of {})\n", dir, num_threads(), prompt, gen, reps);
  fmt::print("ceiling: f32 matrix product {:.1f} GFLOP/s (cpu::linear, 240x768x768, in cache)\n", peak);
  fmt::print("prefill {:8.1f} tok/s  {:6.1f} GFLOP/s  {:5.1f}% of ceiling   (target >= 1000 tok/s)\n", pre_tps, pre_gf,
             100 * pre_gf / peak);
  fmt::print("decode  {:8.1f} tok/s  {:6.1f} GFLOP/s  {:5.1f}% of ceiling   (target >= 100 tok/s)\n", dec_tps, dec_gf,
             100 * dec_gf / peak);
  return 0;
}
