// Every CUDA op against the CPU op on fresh random inputs at several shapes, the real MiniMax-M2
// dimensions included, with outputs poisoned (NaN) first to catch unwritten elements; then the
// whole tiny-m2 model. Skipped (GTEST_SKIP) when no CUDA device is present.
//
// Tolerances (relative error ||cuda - cpu|| / ||cpu||), by the arithmetic each path uses:
//   f32 paths (decode products with <= 16 tokens, norms, RoPE, attention, router): 1e-5
//     (summation order only; fewer ulps are not promised by either side)
//   tensor-core paths (> 16 tokens: products on f16-rounded operands, f32 accumulation; with
//     MOEQ_GEMM_CUBLAS=1, from 256 tokens by cuBLAS on a dequantized f16 copy of the weight): 1e-2
//   the MoE block switches to its tensor-core (grouped) path above 4 tokens
//   MoE decode of 4-bit integer experts (<= 4 tokens) runs on tensor cores with the activations
//   rounded to f16 (relative 2^-11 per element, f32 accumulation), twice (w1/w3, then w2): 2e-3
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/minimax_m2.h"
#include "support/numeric.h"
#include "support/random.h"
#include "support/test_support.h"

using namespace moeq;

namespace {

constexpr double kF32Tol = 1e-5, kTensorCoreTol = 1e-2, kF16ActTol = 2e-3;
constexpr int64_t kDecodeTokens = 16, kMoeDecodeTokens = 4;

// Experts of one MoE test case: hidden H, intermediate I, E experts, K chosen per token.
struct MoeCase {
  int64_t H, I, E, K;
  std::string f13, f2;
};

class Parity : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
    gpu = make_backend("cuda");
  }
  std::unique_ptr<Backend> gpu;
  CpuBackend cpu;
  std::mt19937_64 rng{test::test_seed()};

  // The same host data on both backends.
  std::pair<Tensor, Tensor> both(const std::vector<float>& v, std::vector<int64_t> shape) {
    Tensor a = cpu.alloc(DType::F32, shape), b = gpu->alloc(DType::F32, shape);
    cpu.to_device(a, v.data());
    gpu->to_device(b, v.data());
    return {a, b};
  }
  std::pair<Tensor, Tensor> both_i32(const std::vector<int32_t>& v, std::vector<int64_t> shape) {
    Tensor a = cpu.alloc(DType::I32, shape), b = gpu->alloc(DType::I32, shape);
    cpu.to_device(a, v.data());
    gpu->to_device(b, v.data());
    return {a, b};
  }
  // Outputs start as NaN on both sides: an element the op does not write fails the comparison.
  std::pair<Tensor, Tensor> poisoned(std::vector<int64_t> shape) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return both(std::vector<float>(static_cast<size_t>(n), NAN), shape);
  }
  double compare(const Tensor& c, const Tensor& g) {
    const std::vector<float> a = cpu.download_f32(c), b = gpu->download_f32(g);
    for (size_t i = 0; i < b.size(); ++i)
      if (!std::isfinite(b[i])) return INFINITY;  // unwritten (NaN poison) or broken
    return test::rel_err(b.data(), a.data(), a.size());
  }
  QuantizedWeight weight(const std::string& fmt, int64_t rows, int64_t cols, float scale = 0.05f) {
    const auto w = test::randn(size_t(rows * cols), rng, scale);
    std::vector<float> imp = test::randn(size_t(cols), rng);
    for (auto& v : imp) v = v * v + 0.1f;
    return format_ops(fmt).quantize({w.data(), rows, cols, imp.data()});
  }
  // The same random experts of a case on both backends.
  std::pair<std::unique_ptr<BackendExperts>, std::unique_ptr<BackendExperts>> experts(const MoeCase& cs) {
    std::vector<QuantizedWeight> w1, w2, w3;
    for (int64_t e = 0; e < cs.E; ++e) {
      w1.push_back(weight(cs.f13, cs.I, cs.H));
      w2.push_back(weight(cs.f2, cs.H, cs.I));
      w3.push_back(weight(cs.f13, cs.I, cs.H));
    }
    return {cpu.upload_experts(w1, w2, w3), gpu->upload_experts(w1, w2, w3)};
  }
};

const std::vector<std::string> kFormats = {"f32",      "bf16",     "fp8_b128",   "q8_g32",     "int4_g32",
                                           "int4_g128", "int3_g32", "int2_g32",   "lloyd2_g32", "lloyd3_g32",
                                           "lloyd4_g32", "lloyd2_g128", "lloyd3_g128", "lloyd4_g128"};

}  // namespace

TEST_F(Parity, RmsNorm) {
  for (auto [T, D] : std::vector<std::pair<int64_t, int64_t>>{{1, 384}, {17, 3072}, {300, 6144}, {5, 1024}}) {
    auto x = both(test::randn(size_t(T * D), rng, 2.0f), {T, D});
    auto w = both(test::randn(size_t(D), rng), {D});
    auto o = poisoned({T, D});
    cpu.rmsnorm(x.first, w.first, 1e-6f, o.first);
    gpu->rmsnorm(x.second, w.second, 1e-6f, o.second);
    EXPECT_LT(compare(o.first, o.second), kF32Tol) << T << "x" << D;
  }
}

TEST_F(Parity, PartialRope) {
  for (auto [T, H, hd, rd] : std::vector<std::array<int, 4>>{{1, 48, 128, 64}, {33, 12, 64, 32}, {200, 8, 128, 64}}) {
    const auto v = test::randn(size_t(T * H * hd), rng);
    std::vector<int32_t> pos(static_cast<size_t>(T));
    std::uniform_int_distribution<int32_t> pd(0, 8000);
    for (auto& p : pos) p = pd(rng);
    auto x = both(v, {T, int64_t(H) * hd});
    auto p = both_i32(pos, {T});
    cpu.rope(x.first, p.first, H, hd, rd, 5e6);
    gpu->rope(x.second, p.second, H, hd, rd, 5e6);
    EXPECT_LT(compare(x.first, x.second), kF32Tol) << T << " " << H << " " << hd;
  }
}

TEST_F(Parity, QkNormRope) {
  for (auto [T, H, KV, hd, rd] : std::vector<std::array<int, 5>>{{1, 48, 8, 128, 64}, {37, 12, 2, 64, 32}}) {
    auto q = both(test::randn(size_t(T * H * hd), rng, 3.0f), {T, int64_t(H) * hd});
    auto k = both(test::randn(size_t(T * KV * hd), rng, 3.0f), {T, int64_t(KV) * hd});
    auto qw = both(test::randn(size_t(H * hd), rng), {int64_t(H) * hd});
    auto kw = both(test::randn(size_t(KV * hd), rng), {int64_t(KV) * hd});
    std::vector<int32_t> pos(static_cast<size_t>(T));
    std::uniform_int_distribution<int32_t> pd(0, 5000);
    for (auto& p : pos) p = pd(rng);
    auto p = both_i32(pos, {T});
    cpu.qk_norm_rope(q.first, k.first, qw.first, kw.first, 1e-6f, p.first, H, KV, hd, rd, 5e6);
    gpu->qk_norm_rope(q.second, k.second, qw.second, kw.second, 1e-6f, p.second, H, KV, hd, rd, 5e6);
    EXPECT_LT(compare(q.first, q.second), kF32Tol) << T;
    EXPECT_LT(compare(k.first, k.second), kF32Tol) << T;
  }
}

TEST_F(Parity, LinearAddAndMoeAddAccumulate) {
  const QuantizedWeight q = weight("int4_g32", 256, 512);
  auto wc = cpu.upload_weight(q);
  auto wg = gpu->upload_weight(q);
  for (int64_t T : {1, 40}) {
    auto x = both(test::randn(size_t(T * 512), rng), {T, 512});
    auto o = both(test::randn(size_t(T * 256), rng), {T, 256});
    auto tmp = poisoned({T, 256});
    cpu.linear_add(x.first, *wc, o.first, tmp.first);
    gpu->linear_add(x.second, *wg, o.second, tmp.second);
    EXPECT_LT(compare(o.first, o.second), T <= kDecodeTokens ? kF32Tol : kTensorCoreTol) << T;
  }
}

TEST_F(Parity, LinearEveryFormatDecodeAndPrefillPaths) {
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1536, 3072}, {3072, 1536}, {128, 384}, {96, 256}};
  for (const auto& fmt : kFormats)
    for (auto [N, K] : shapes) {
      if (fmt.ends_with("g128") && K % 128) continue;
      const QuantizedWeight q = weight(fmt, N, K);
      auto wc = cpu.upload_weight(q);
      auto wg = gpu->upload_weight(q);
      for (int64_t T : {1, 3, 8, 13, 16, 17, 100, 300}) {
        if (N * K > 1000000 && T > 1 && T < 16 && T != 8) continue;  // keep the test short
        if (N * K > 1000000 && T == 300) continue;  // (cuBLAS at these shapes: MOEQ_GEMM_CUBLAS_TOKENS=17)
        auto x = both(test::randn(size_t(T * K), rng), {T, K});
        auto o = poisoned({T, N});
        cpu.linear(x.first, *wc, o.first);
        gpu->linear(x.second, *wg, o.second);
        const double tol = T <= kDecodeTokens ? kF32Tol : kTensorCoreTol;
        EXPECT_LT(compare(o.first, o.second), tol) << fmt << " " << N << "x" << K << " T=" << T;
      }
    }
}

// The one-token product's tall kernel (a resident grid walking rows; gemv.cu, taken by
// lm_head-sized weights) on every packed format, at shapes it would not take by itself
// (MOEQ_GEMV_TALL=2), plus one q8 weight tall enough that the default picks it.
TEST_F(Parity, LinearTallKernelOneToken) {
  struct Restore {
    ~Restore() {
      unsetenv("MOEQ_GEMV_TALL");
      unsetenv("MOEQ_GEMV_TALL_BLOCKS");
    }
  } restore;
  const std::vector<std::pair<int64_t, int64_t>> shapes = {{1536, 3072}, {3072, 1536}, {97, 256}, {1000, 6144}};
  setenv("MOEQ_GEMV_TALL", "2", 1);
  for (const char* blocks : {"2", "3"}) {  // MOEQ_GEMV_TALL_BLOCKS: the default and the variant
    setenv("MOEQ_GEMV_TALL_BLOCKS", blocks, 1);
    for (const auto& fmt : kFormats) {
      if (fmt == "f32" || fmt == "bf16" || fmt == "fp8_b128") continue;  // not packed: never tall
      for (auto [N, K] : shapes) {
        if (fmt.ends_with("g128") && K % 128) continue;
        const QuantizedWeight q = weight(fmt, N, K);
        auto wc = cpu.upload_weight(q);
        auto wg = gpu->upload_weight(q);
        auto x = both(test::randn(size_t(K), rng), {1, K});
        auto o = poisoned({1, N});
        cpu.linear(x.first, *wc, o.first);
        gpu->linear(x.second, *wg, o.second);
        EXPECT_LT(compare(o.first, o.second), kF32Tol)
            << "MOEQ_GEMV_TALL=2 MOEQ_GEMV_TALL_BLOCKS=" << blocks << " " << fmt << " " << N << "x" << K;
      }
    }
  }
  unsetenv("MOEQ_GEMV_TALL");
  unsetenv("MOEQ_GEMV_TALL_BLOCKS");
  const QuantizedWeight q = weight("q8_g32", 40000, 3072);  // > 16 rows per warp of two blocks per SM (132 SMs)
  auto wc = cpu.upload_weight(q);
  auto wg = gpu->upload_weight(q);
  auto x = both(test::randn(3072, rng), {1, 3072});
  auto o = poisoned({1, 40000});
  cpu.linear(x.first, *wc, o.first);
  gpu->linear(x.second, *wg, o.second);
  EXPECT_LT(compare(o.first, o.second), kF32Tol) << "q8_g32 40000x3072, default kernel choice";
}

TEST_F(Parity, EmbeddingEveryFormat) {
  for (const auto& fmt : kFormats) {
    const QuantizedWeight q = weight(fmt, 1000, 256);
    auto wc = cpu.upload_weight(q);
    auto wg = gpu->upload_weight(q);
    const std::vector<int32_t> ids = {0, 999, 17, 17, 500};
    auto i = both_i32(ids, {5});
    auto o = poisoned({5, 256});
    cpu.embedding(*wc, i.first, o.first);
    gpu->embedding(*wg, i.second, o.second);
    EXPECT_EQ(compare(o.first, o.second), 0.0) << fmt << ": dequantization must be bit-identical";
  }
}

TEST_F(Parity, AttentionMixedBatchesOverTheCache) {
  // (heads, kv heads, head_dim, ctx): tiny-m2 and MiniMax-M2 shapes. On a 132-SM GPU the second's
  // one-token decode takes 66 splits of 33 rows: each block's first warp loads a second group of
  // rows after scoring its first.
  for (auto [nh, nkv, hd, ctx] : std::vector<std::array<int, 4>>{{12, 2, 64, 300}, {48, 8, 128, 2200}}) {
    const int slots = 3, layers = 2, kvd = nkv * hd;
    KVCache kc = cpu.alloc_kv(layers, slots, ctx, kvd), kg = gpu->alloc_kv(layers, slots, ctx, kvd);
    auto run = [&](const std::vector<int32_t>& sl, const std::vector<int32_t>& ps, const char* what) {
      const int64_t T = int64_t(sl.size());
      auto q = both(test::randn(size_t(T * nh * hd), rng), {T, int64_t(nh) * hd});
      auto k = both(test::randn(size_t(T * kvd), rng), {T, kvd});
      auto v = both(test::randn(size_t(T * kvd), rng), {T, kvd});
      auto s = both_i32(sl, {T});
      auto p = both_i32(ps, {T});
      auto o = poisoned({T, int64_t(nh) * hd});
      cpu.attention(q.first, k.first, v.first, kc, 1, p.first, s.first, nh, nkv, hd, o.first);
      gpu->attention(q.second, k.second, v.second, kg, 1, p.second, s.second, nh, nkv, hd, o.second);
      // More than 16 tokens: tensor cores (f16 Q, K, P, V), or per token in f32 for mixed slots.
      const double tol = T <= kDecodeTokens ? kF32Tol : kTensorCoreTol;
      EXPECT_LT(compare(o.first, o.second), tol) << what << " nh=" << nh << " ctx=" << ctx;
    };
    // Prefill of slot 1 (long), then decode steps mixing slots, then a chunk continuing slot 1.
    std::vector<int32_t> sl(static_cast<size_t>(ctx - 40), 1), ps(static_cast<size_t>(ctx - 40));
    std::iota(ps.begin(), ps.end(), 0);
    run(sl, ps, "prefill");
    run({1}, {ctx - 40}, "decode one");
    run({0, 1, 2}, {0, ctx - 39, 0}, "decode mixed");
    std::vector<int32_t> sl2(20, 1), ps2(20);
    std::iota(ps2.begin(), ps2.end(), ctx - 38);
    run(sl2, ps2, "chunk");
    // A batch of more than 16 tokens from several sequences (a server step): slot 0 and 2 grow.
    std::vector<int32_t> sl3, ps3;
    for (int i = 0; i < 30; ++i) {
      sl3.push_back(i % 2 ? 2 : 0);
      ps3.push_back(1 + i / 2);
    }
    run(sl3, ps3, "mixed sequences");
    // Up to 16 tokens (the decode kernel, which writes the cache itself): a short chunk of slot 0
    // whose tokens see each other's rows, interleaved with slot 2; then slot 1 rewriting two
    // rows with old rows between them.
    run({0, 2, 0, 0, 2, 0}, {16, 16, 17, 18, 17, 19}, "short chunks");
    run({1, 1}, {ctx - 25, ctx - 22}, "rows rewritten around cached ones");
    // The same inputs attended twice with no upload between: the second launch may not read the
    // cache before its dependency wait (the first one writes it).
    {
      auto q = both(test::randn(size_t(2 * nh * hd), rng), {2, int64_t(nh) * hd});
      auto k = both(test::randn(size_t(2 * kvd), rng), {2, kvd});
      auto v = both(test::randn(size_t(2 * kvd), rng), {2, kvd});
      auto s = both_i32({0, 2}, {2});
      auto p = both_i32({20, 18}, {2});
      std::array<std::pair<Tensor, Tensor>, 2> o = {poisoned({2, int64_t(nh) * hd}), poisoned({2, int64_t(nh) * hd})};
      for (auto& out : o) {
        cpu.attention(q.first, k.first, v.first, kc, 1, p.first, s.first, nh, nkv, hd, out.first);
        gpu->attention(q.second, k.second, v.second, kg, 1, p.second, s.second, nh, nkv, hd, out.second);
      }
      for (auto& out : o) EXPECT_LT(compare(out.first, out.second), kF32Tol) << "repeat, nh=" << nh;
    }
  }
}

TEST_F(Parity, Router) {
  for (auto [T, H, E, K] : std::vector<std::array<int64_t, 4>>{{1, 3072, 256, 8}, {40, 384, 32, 4}, {300, 3072, 256, 8}}) {
    const QuantizedWeight g = weight("bf16", E, H, 0.02f);
    auto gc = cpu.upload_weight(g);
    auto gg = gpu->upload_weight(g);
    auto x = both(test::randn(size_t(T * H), rng), {T, H});
    auto b = both(test::randn(size_t(E), rng, 0.1f), {E});
    Tensor ic = cpu.alloc(DType::I32, {T, K}), ig = gpu->alloc(DType::I32, {T, K});
    auto w = poisoned({T, K});
    cpu.router(x.first, *gc, b.first, int(K), ic, w.first);
    gpu->router(x.second, *gg, b.second, int(K), ig, w.second);
    std::vector<int32_t> a(size_t(T * K)), c(size_t(T * K));
    cpu.to_host(a.data(), ic);
    gpu->to_host(c.data(), ig);
    EXPECT_EQ(a, c) << "T=" << T << " E=" << E;
    EXPECT_LT(compare(w.first, w.second), kF32Tol);
  }
}

// Greedy choice: the first index of the maximum, ties included; run twice on the same buffers so
// the kernel's per-row tickets are shown to reset between launches.
TEST_F(Parity, ArgmaxWithTies) {
  for (auto [T, V] : std::vector<std::pair<int64_t, int64_t>>{{1, 200064}, {3, 1000}, {16, 32000}, {2, 7}}) {
    std::vector<float> v = test::randn(size_t(T * V), rng);
    for (int64_t t = 0; t < T; ++t) {  // the maximum twice: the first place wins
      const int64_t a = (t * 7919) % V, b = std::min<int64_t>(V - 1, a + V / 2 + 1);
      v[size_t(t * V + a)] = v[size_t(t * V + b)] = 100.0f;
    }
    auto l = both(v, {T, V});
    Tensor ic = cpu.alloc(DType::I32, {T}), ig = gpu->alloc(DType::I32, {T});
    for (int rep = 0; rep < 2; ++rep) {
      cpu.argmax(l.first, ic);
      gpu->argmax(l.second, ig);
      std::vector<int32_t> a(static_cast<size_t>(T)), c(static_cast<size_t>(T));
      cpu.to_host(a.data(), ic);
      gpu->to_host(c.data(), ig);
      EXPECT_EQ(a, c) << "T=" << T << " V=" << V;
      for (int64_t t = 0; t < T; ++t) EXPECT_EQ(c[size_t(t)], int32_t((t * 7919) % V));
    }
  }
}

TEST_F(Parity, MoeExpertsDecodeAndPrefill) {
  for (const MoeCase& cs : std::vector<MoeCase>{{384, 128, 32, 4, "fp8_b128", "fp8_b128"},
                                                {384, 128, 32, 4, "lloyd3_g32", "int4_g32"},
                                                {3072, 1536, 32, 8, "lloyd4_g32", "lloyd4_g32"},
                                                {3072, 1536, 64, 8, "q8_g32", "int2_g32"},
                                                {3072, 1536, 16, 8, "int4_g32", "int4_g128"},
                                                {640, 384, 16, 4, "int4_g32", "int4_g32"},
                                                {416, 160, 16, 4, "int4_g32", "int4_g32"},
                                                {1024, 256, 16, 4, "int4_g128", "int4_g128"}}) {
    auto [ec, eg] = experts(cs);
    for (int64_t T : {1, 4, 5, 16, 17, 200}) {
      std::vector<int32_t> ids(static_cast<size_t>(T * cs.K));
      std::vector<float> wt(static_cast<size_t>(T * cs.K));
      std::uniform_int_distribution<int32_t> pick(0, int32_t(cs.E - 1));
      std::uniform_real_distribution<float> u(0.05f, 1.0f);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < cs.K; ++k) {  // distinct experts per token
          int32_t e;
          bool dup;
          do {
            e = pick(rng);
            dup = false;
            for (int64_t j = 0; j < k; ++j) dup |= ids[size_t(t * cs.K + j)] == e;
          } while (dup);
          ids[size_t(t * cs.K + k)] = e;
          wt[size_t(t * cs.K + k)] = u(rng);
        }
      auto x = both(test::randn(size_t(T * cs.H), rng), {T, cs.H});
      auto i = both_i32(ids, {T, cs.K});
      auto w = both(wt, {T, cs.K});
      auto o = poisoned({T, cs.H});
      cpu.moe_experts(x.first, i.first, w.first, *ec, o.first);
      gpu->moe_experts(x.second, i.second, w.second, *eg, o.second);
      const bool f16_act = cs.f13.rfind("int4_", 0) == 0 || cs.f2.rfind("int4_", 0) == 0;
      const double tol = T > kMoeDecodeTokens ? kTensorCoreTol : f16_act ? kF16ActTol : kF32Tol;
      EXPECT_LT(compare(o.first, o.second), tol) << cs.f13 << "/" << cs.f2 << " H=" << cs.H << " T=" << T;
    }
  }
}

// The MoE block with the norm before it: x = rmsnorm(h) * w, routing, h += moe(x). On the GPU
// (4-bit experts, <= 4 tokens): for one token the norm inside the router's logits product, else a
// norm launch; the top-k; one streaming launch that leaves a partial row of y per block (W2 by
// column panels; with 4-bit groups of 128 for W1/W3 too, the panel comes in two chunks); and a
// short kernel that adds them to h. Other experts: the same norm and router, then the experts op;
// more tokens: the ops in turn. The gate reads one input per expert ((64 / E) x_e), and those inputs
// come from a shuffled grid in h per token (the norm scales a row by one positive factor and w is 1
// there), so no two experts' scores are close and both sides choose the same experts. The gate as
// f32 (the router product's generic loop) and q8 (its groups loaded at once); the last case has
// MiniMax-M2's router shape (256 experts of 3072 inputs).
TEST_F(Parity, MoeBlockWithNormFused) {
  for (const MoeCase& cs : std::vector<MoeCase>{{3072, 1536, 16, 8, "int4_g32", "int4_g32"},
                                                {3072, 1536, 16, 8, "int4_g32", "int4_g128"},
                                                {416, 160, 16, 4, "int4_g32", "int4_g32"},
                                                {384, 128, 16, 4, "fp8_b128", "fp8_b128"},
                                                {1024, 256, 16, 4, "int4_g128", "int4_g128"},
                                                {3072, 32, 256, 8, "int4_g32", "int4_g32"}}) {
    auto [ec, eg] = experts(cs);
    std::vector<float> gate(size_t(cs.E * cs.H), 0.0f), imp(size_t(cs.H), 1.0f);
    // Logits apart by about 1/E of their range (the sigmoids distinct in f32 at 256 experts too).
    for (int64_t e = 0; e < cs.E; ++e) gate[size_t(e * cs.H + e)] = 64.0f / float(cs.E);
    // The bias lifts a few experts above every other (a sigmoid is below 1): they must be chosen.
    std::vector<float> bv(size_t(cs.E), 0.0f);
    for (int64_t e = 5; e < cs.E; e += 37) bv[size_t(e)] = 1.0f;
    for (const std::string gate_fmt : {"f32", "q8_g32"}) {
      const QuantizedWeight gq = format_ops(gate_fmt).quantize({gate.data(), cs.E, cs.H, imp.data()});
      auto gc = cpu.upload_weight(gq);
      auto gg = gpu->upload_weight(gq);
      auto bias = both(bv, {cs.E});
      std::vector<float> nv = test::randn(size_t(cs.H), rng);
      for (int64_t e = 0; e < cs.H; ++e) nv[size_t(e)] = e < cs.E ? 1.0f : 0.5f + std::fabs(nv[size_t(e)]);
      auto nw = both(nv, {cs.H});
      for (int64_t T : {1, 3, 4, 5}) {
        std::vector<float> hv = test::randn(size_t(T * cs.H), rng, 4.0f);
        for (int64_t t = 0; t < T; ++t) {
          std::vector<float> grid(static_cast<size_t>(cs.E));
          for (int64_t e = 0; e < cs.E; ++e) grid[size_t(e)] = float(e - cs.E / 2);
          std::shuffle(grid.begin(), grid.end(), rng);
          std::copy(grid.begin(), grid.end(), hv.begin() + t * cs.H);
        }
        auto h = both(hv, {T, cs.H});
        auto x = poisoned({T, cs.H});
        auto ids = both_i32(std::vector<int32_t>(size_t(T * cs.K), -1), {T, cs.K});
        auto wt = poisoned({T, cs.K});
        auto tmp = poisoned({T, cs.H});
        cpu.moe_block_add(h.first, nw.first, 1e-6f, x.first, *gc, bias.first, int(cs.K), ids.first, wt.first, *ec,
                          tmp.first);
        gpu->moe_block_add(h.second, nw.second, 1e-6f, x.second, *gg, bias.second, int(cs.K), ids.second, wt.second,
                           *eg, tmp.second);
        std::vector<int32_t> ic(size_t(T * cs.K)), ig(size_t(T * cs.K));
        cpu.to_host(ic.data(), ids.first);
        gpu->to_host(ig.data(), ids.second);
        const std::string what = cs.f13 + "/" + cs.f2 + " gate " + gate_fmt + " E=" + std::to_string(cs.E) +
                                 " T=" + std::to_string(T);
        EXPECT_EQ(ic, ig) << what;
        EXPECT_LT(compare(wt.first, wt.second), kF32Tol) << what;
        EXPECT_LT(compare(x.first, x.second), kF32Tol) << what;  // the norm's output, the experts' input
        const bool f16_act = cs.f13.rfind("int4_", 0) == 0;
        const double tol = T > kMoeDecodeTokens ? kTensorCoreTol : f16_act ? kF16ActTol : kF32Tol;
        EXPECT_LT(compare(h.first, h.second), tol) << what;
      }
    }
  }
}

// x = rmsnorm(h) * w, then the q/k/v products: for one token the norm runs inside the products'
// launch (every block normalises h, block 0 writes x). Shapes for each of its instantiations: the
// MiniMax-M2 projections (two rows a warp, groups loaded at once), 4096 inputs (six groups a lane
// at once), a short row of q8 (one row a warp, groups at once) and of bf16 (the double-buffered
// loop); T = 2 takes the separate ops.
TEST_F(Parity, RmsNormLinear3Fused) {
  struct Case {
    std::string fmt;
    int64_t K, Nq, Nkv;
  };
  for (const Case& cs : std::vector<Case>{{"q8_g32", 3072, 6144, 1024},
                                          {"q8_g32", 4096, 64, 32},
                                          {"q8_g32", 416, 96, 40},
                                          {"bf16", 416, 96, 40}}) {
    const QuantizedWeight qa = weight(cs.fmt, cs.Nq, cs.K), qb = weight(cs.fmt, cs.Nkv, cs.K),
                          qc = weight(cs.fmt, cs.Nkv, cs.K);
    auto ac = cpu.upload_weight(qa), bc = cpu.upload_weight(qb), cc = cpu.upload_weight(qc);
    auto ag = gpu->upload_weight(qa), bg = gpu->upload_weight(qb), cg = gpu->upload_weight(qc);
    auto nw = both(test::randn(size_t(cs.K), rng), {cs.K});
    for (int64_t T : {1, 2}) {
      auto h = both(test::randn(size_t(T * cs.K), rng, 3.0f), {T, cs.K});
      auto x = poisoned({T, cs.K});
      auto oa = poisoned({T, cs.Nq}), ob = poisoned({T, cs.Nkv}), oc = poisoned({T, cs.Nkv});
      cpu.rmsnorm_linear3(h.first, nw.first, 1e-6f, x.first, *ac, oa.first, *bc, ob.first, *cc, oc.first);
      gpu->rmsnorm_linear3(h.second, nw.second, 1e-6f, x.second, *ag, oa.second, *bg, ob.second, *cg, oc.second);
      const std::string what = cs.fmt + " " + std::to_string(cs.K) + " T=" + std::to_string(T);
      EXPECT_LT(compare(x.first, x.second), kF32Tol) << what;
      EXPECT_LT(compare(oa.first, oa.second), kF32Tol) << what;
      EXPECT_LT(compare(ob.first, ob.second), kF32Tol) << what;
      EXPECT_LT(compare(oc.first, oc.second), kF32Tol) << what;
    }
  }
}

// The attention block up to its output projection (input norm, q/k/v, QK-norm, RoPE, attention
// with the cache write). For one token the CUDA backend folds the QK-norm and RoPE into the decode
// attention, from sums of squares the q/k/v product leaves. Caches start with the same random
// rows on both sides; steps at a long position and at position 0 (only this step's row), two
// steps in a row with no upload between (the second may not read the cache early, and must see
// the row the first wrote, normalised), a step of two tokens (the ops apart), and a model
// without QK-norm. The caches are compared at the end.
TEST_F(Parity, NormQkvAttentionFused) {
  struct Case {
    std::string fmt;
    int64_t H;
    int nh, nkv, hd, rd, ctx;
  };
  // ctx 2200 at MiniMax-M2's shapes: see AttentionMixedBatchesOverTheCache.
  for (const Case& cs : std::vector<Case>{{"q8_g32", 3072, 48, 8, 128, 64, 2200},
                                          {"q8_g32", 384, 12, 2, 64, 32, 300},
                                          {"bf16", 384, 12, 2, 64, 32, 300}}) {
    const int64_t qd = int64_t(cs.nh) * cs.hd, kvd = int64_t(cs.nkv) * cs.hd;
    const QuantizedWeight wq = weight(cs.fmt, qd, cs.H), wk = weight(cs.fmt, kvd, cs.H), wv = weight(cs.fmt, kvd, cs.H);
    auto qc = cpu.upload_weight(wq), kc_ = cpu.upload_weight(wk), vc_ = cpu.upload_weight(wv);
    auto qg = gpu->upload_weight(wq), kg_ = gpu->upload_weight(wk), vg_ = gpu->upload_weight(wv);
    auto nw = both(test::randn(size_t(cs.H), rng), {cs.H});
    auto qn = both(test::randn(size_t(qd), rng), {qd});
    auto kn = both(test::randn(size_t(kvd), rng), {kvd});
    const int layers = 2, slots = 2;
    KVCache cc = cpu.alloc_kv(layers, slots, cs.ctx, int(kvd)), cg = gpu->alloc_kv(layers, slots, cs.ctx, int(kvd));
    for (Tensor KVCache::*part : {&KVCache::k, &KVCache::v}) {
      const auto rows = test::randn(size_t((cc.*part).numel()), rng);
      cpu.to_device(cc.*part, rows.data());
      gpu->to_device(cg.*part, rows.data());
    }
    const AttentionShape shape{cs.nh, cs.nkv, cs.hd, cs.rd, 5e6};
    const std::string name = cs.fmt + " H=" + std::to_string(cs.H);
    // Inputs and outputs of one call with T tokens.
    struct Step {
      std::pair<Tensor, Tensor> h, pos, slot;
    };
    auto make = [&](const std::vector<int32_t>& sl, const std::vector<int32_t>& ps) {
      const int64_t T = int64_t(sl.size());
      return Step{both(test::randn(size_t(T * cs.H), rng, 3.0f), {T, cs.H}), both_i32(ps, {T}), both_i32(sl, {T})};
    };
    auto run = [&](const Step& st, bool qk_norm, const std::string& what) {
      const int64_t T = st.h.first.rows();
      auto x = poisoned({T, cs.H});
      auto q = poisoned({T, qd}), k = poisoned({T, kvd}), v = poisoned({T, kvd});
      auto o = poisoned({T, qd});
      cpu.norm_qkv_attention(st.h.first, nw.first, 1e-6f, x.first, *qc, *kc_, *vc_, qk_norm ? &qn.first : nullptr,
                             qk_norm ? &kn.first : nullptr, q.first, k.first, v.first, cc, 1, st.pos.first,
                             st.slot.first, shape, o.first);
      gpu->norm_qkv_attention(st.h.second, nw.second, 1e-6f, x.second, *qg, *kg_, *vg_, qk_norm ? &qn.second : nullptr,
                              qk_norm ? &kn.second : nullptr, q.second, k.second, v.second, cg, 1, st.pos.second,
                              st.slot.second, shape, o.second);
      EXPECT_LT(compare(x.first, x.second), kF32Tol) << name << " " << what;
      EXPECT_LT(compare(o.first, o.second), kF32Tol) << name << " " << what;
    };
    run(make({1}, {cs.ctx - 40}), true, "one token, long history");
    run(make({0}, {0}), true, "one token at position 0");
    {
      const Step a = make({1}, {cs.ctx - 39}), b = make({1}, {cs.ctx - 38});
      run(a, true, "first of two in a row");
      run(b, true, "second of two in a row");
    }
    run(make({0, 1}, {1, cs.ctx - 37}), true, "two tokens");
    // Position 2177 over 66 splits of 33: the step's own row is the first row of the last split's
    // second group (132 SMs; elsewhere just another position).
    if (cs.ctx > 2177) run(make({1}, {2177}), true, "the step's row first in a second group");
    run(make({0}, {2}), false, "without QK-norm");
    EXPECT_LT(compare(cc.k, cg.k), kF32Tol) << name << " k cache";
    EXPECT_LT(compare(cc.v, cg.v), kF32Tol) << name << " v cache";
  }
}

TEST_F(Parity, AddAndGather) {
  auto a = both(test::randn(1000, rng), {10, 100});
  auto b = both(test::randn(1000, rng), {10, 100});
  auto o = poisoned({10, 100});
  cpu.add(a.first, b.first, o.first);
  gpu->add(a.second, b.second, o.second);
  EXPECT_EQ(compare(o.first, o.second), 0.0);
  auto r = both_i32({9, 0, 4}, {3});
  auto g = poisoned({3, 100});
  cpu.gather_rows(a.first, r.first, g.first);
  gpu->gather_rows(a.second, r.second, g.second);
  EXPECT_EQ(compare(g.first, g.second), 0.0);
}

// Copies to the host finish in any order, with to_host and synchronize between them (they take
// the same pinned slots), and at most 8 may be left unfinished.
TEST_F(Parity, CopiesToHostFinishInAnyOrder) {
  static_assert(Backend::kMaxToHostPending == 8, "the counts below assume eight");
  std::vector<Tensor> src;
  for (int i = 0; i < 12; ++i) {
    src.push_back(gpu->alloc(DType::I32, {3 + i}));
    std::vector<int32_t> v(size_t(3 + i));
    std::iota(v.begin(), v.end(), 100 * i);
    gpu->to_device(src.back(), v.data());
  }
  auto expect = [&](int i, uint64_t ticket) {
    std::vector<int32_t> got(size_t(3 + i), -7), want(size_t(3 + i));
    std::iota(want.begin(), want.end(), 100 * i);
    gpu->finish_to_host(ticket, got.data());
    EXPECT_EQ(got, want) << "copy " << i;
  };
  std::vector<uint64_t> t;
  for (int i = 0; i < 8; ++i) t.push_back(gpu->start_to_host(src[size_t(i)]));
  EXPECT_THROW(gpu->start_to_host(src[8]), Error);  // a ninth left unfinished
  for (int i = 7; i >= 1; --i) expect(i, t[size_t(i)]);  // copy 0 stays unfinished
  std::vector<int32_t> whole(3, -7);
  for (int round = 0; round < 10; ++round) {  // every slot but copy 0's taken again and again
    gpu->to_host(whole.data(), src[0]);
    gpu->synchronize();
  }
  EXPECT_EQ(whole, (std::vector<int32_t>{0, 1, 2}));
  for (int i = 8; i < 12; ++i) t.push_back(gpu->start_to_host(src[size_t(i)]));
  expect(10, t[10]);
  expect(0, t[0]);
  expect(8, t[8]);
  expect(11, t[11]);
  expect(9, t[9]);
  EXPECT_THROW(gpu->finish_to_host(t[9], whole.data()), Error);  // finished already
}

// The whole model: logits of both golden sequences, and the greedy continuation.
TEST_F(Parity, TinyModelLogitsAndGreedy) {
  CpuBackend cb;
  auto mc = Model::load(test::tiny_model_dir(), cb);
  auto mg = Model::load(test::tiny_model_dir(), *gpu);
  const auto golden = io::SafetensorsFile::open(test::tiny_model_dir() / "golden.safetensors");
  const HostArray ids = golden.get("input_ids");
  const int64_t T = ids.shape[1];
  // Prefill path (48 tokens: tensor cores) and decode path (chunks of 4: f32 throughout) both.
  for (int64_t chunk : {T, kMoeDecodeTokens}) {
    KVCache kc = mc->make_cache(1, int(T)), kg = mg->make_cache(1, int(T));
    std::vector<float> lc, lg;
    for (int64_t p0 = 0; p0 < T; p0 += chunk) {
      const int64_t n = std::min(chunk, T - p0);
      std::vector<int32_t> pos(static_cast<size_t>(n)), slots(static_cast<size_t>(n), 0), rows(static_cast<size_t>(n));
      std::iota(pos.begin(), pos.end(), int32_t(p0));
      std::iota(rows.begin(), rows.end(), 0);
      const std::span<const int32_t> seq(ids.as<int32_t>() + p0, size_t(n));
      const auto a = cb.download_f32(mc->forward(seq, pos, slots, rows, kc));
      const auto b = gpu->download_f32(mg->forward(seq, pos, slots, rows, kg));
      lc.insert(lc.end(), a.begin(), a.end());
      lg.insert(lg.end(), b.begin(), b.end());
    }
    const double err = test::rel_err(lg.data(), lc.data(), lc.size());
    std::printf("tiny-m2 logits, prefill chunks of %lld: relative error %.3g\n", (long long)chunk, err);
    EXPECT_LT(err, chunk <= kMoeDecodeTokens ? 1e-5 : kTensorCoreTol);
  }
  // Greedy: prompt of 32 tokens, 32 new tokens, on both backends; must be identical.
  const HostArray prompt = golden.get("greedy_prompt"), expect = golden.get("greedy_output");
  for (int64_t chunk : {int64_t(32), int64_t(16)}) {
    KVCache kg = mg->make_cache(1, 64);
    std::vector<int32_t> out;
    int32_t next = -1;
    for (int64_t p0 = 0; p0 < 32; p0 += chunk) {
      std::vector<int32_t> pos(static_cast<size_t>(chunk)), slots(static_cast<size_t>(chunk), 0);
      std::iota(pos.begin(), pos.end(), int32_t(p0));
      const int32_t last = int32_t(chunk - 1);
      const auto l = gpu->download_f32(mg->forward(std::span<const int32_t>(prompt.as<int32_t>() + p0, size_t(chunk)),
                                                   pos, slots, std::span<const int32_t>(&last, 1), kg));
      next = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
    }
    for (int i = 0; i < 32; ++i) {
      out.push_back(next);
      const int32_t p = 32 + i, z = 0;
      const auto l = gpu->download_f32(mg->forward(std::span<const int32_t>(&next, 1), std::span<const int32_t>(&p, 1),
                                                   std::span<const int32_t>(&z, 1), std::span<const int32_t>(&z, 1), kg));
      next = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
    }
    EXPECT_EQ(out, std::vector<int32_t>(expect.as<int32_t>(), expect.as<int32_t>() + 32)) << "prefill chunk " << chunk;
  }
}

// Pipelined greedy decoding on the device (Model::argmax_feed / forward_fed: each step queued on
// the tokens the previous one left on the device, through CUDA graphs, the host reading the
// tokens a step behind) gives the reference's 32 tokens.
TEST_F(Parity, TinyModelPipelinedGreedy) {
  auto mg = Model::load(test::tiny_model_dir(), *gpu);
  const auto golden = io::SafetensorsFile::open(test::tiny_model_dir() / "golden.safetensors");
  const HostArray prompt = golden.get("greedy_prompt"), expect = golden.get("greedy_output");
  KVCache kg = mg->make_cache(1, 64);
  std::vector<int32_t> pos(32), slots(32, 0);
  std::iota(pos.begin(), pos.end(), 0);
  const int32_t last = 31, z = 0;
  mg->forward(std::span<const int32_t>(prompt.as<int32_t>(), 32), pos, slots, std::span<const int32_t>(&last, 1), kg);
  std::vector<int32_t> out = {mg->argmax_last()[0]};
  int32_t p = 32;
  mg->forward(std::span<const int32_t>(&out[0], 1), std::span<const int32_t>(&p, 1), std::span<const int32_t>(&z, 1),
              std::span<const int32_t>(&z, 1), kg);
  Model::PendingTokens pending = mg->argmax_feed();
  while (out.size() < 32) {
    Model::PendingTokens after;
    if (out.size() + 1 < 32) {
      ++p;
      mg->forward_fed(std::span<const int32_t>(&p, 1), std::span<const int32_t>(&z, 1), kg);
      after = mg->argmax_feed();
    }
    out.push_back(mg->tokens(pending)[0]);
    pending = after;
  }
  EXPECT_EQ(out, std::vector<int32_t>(expect.as<int32_t>(), expect.as<int32_t>() + 32));
}
