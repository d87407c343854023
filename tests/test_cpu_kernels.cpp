// CPU kernels against plain reference loops on fresh random inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm.h"
#include "core/error.h"
#include "quant/formats/format.h"
#include "support/numeric.h"
#include "support/random.h"

using namespace moeq;

namespace {

HostArray f32_array(const std::vector<float>& v, std::vector<int64_t> shape) {
  HostArray a = HostArray::owned(DType::F32, std::move(shape));
  std::memcpy(a.mutable_data(), v.data(), a.nbytes);
  return a;
}

QuantizedWeight random_fp8(std::mt19937_64& rng, int64_t rows, int64_t cols, int64_t br, int64_t bc) {
  HostArray q = HostArray::owned(DType::F8_E4M3, {rows, cols});
  std::uniform_int_distribution<int> code(0, 255);
  for (size_t i = 0; i < q.nbytes; ++i) {
    int c = code(rng);
    if ((c & 0x7f) == 0x7f) c = 0x7e;  // NaN codes are not weights
    q.mutable_data()[i] = std::byte(c);
  }
  const std::vector<int64_t> sshape = {(rows + br - 1) / br, (cols + bc - 1) / bc};
  std::uniform_real_distribution<float> sc(1e-4f, 1e-2f);
  std::vector<float> s(size_t(sshape[0] * sshape[1]));
  for (auto& x : s) x = sc(rng);
  return make_fp8_block_weight(q, f32_array(s, sshape), br, bc);
}

QuantizedWeight random_bf16(std::mt19937_64& rng, int64_t rows, int64_t cols) {
  HostArray q = HostArray::owned(DType::BF16, {rows, cols});
  auto v = test::randn(size_t(rows * cols), rng);
  for (size_t i = 0; i < v.size(); ++i) reinterpret_cast<uint16_t*>(q.mutable_data())[i] = f32_to_bf16(v[i]);
  return make_dense_weight(q);
}

}  // namespace

TEST(Fp8Format, FastDequantEqualsReferenceBitForBit) {
  std::mt19937_64 rng(test::test_seed());
  for (auto [r, c, br, bc] : std::vector<std::array<int64_t, 4>>{
           {256, 384, 128, 128}, {130, 200, 128, 128}, {7, 13, 4, 5}, {64, 1000, 32, 64}, {1, 9, 1, 8}}) {
    QuantizedWeight w = random_fp8(rng, r, c, br, bc);
    const FormatOps& ops = format_ops("fp8_b128");
    ASSERT_NO_THROW(ops.validate(w, "test"));
    std::vector<float> a(size_t(r * c)), b(size_t(r * c));
    ops.dequantize_rows_ref(w, 0, r, a.data());
    ops.dequantize_rows(w, 0, r, b.data());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << r << "x" << c;
    // Partial ranges too.
    std::vector<float> part(static_cast<size_t>(c));
    ops.dequantize_rows(w, r - 1, 1, part.data());
    EXPECT_EQ(std::memcmp(part.data(), a.data() + (r - 1) * c, size_t(c) * 4), 0);
    // Spot-check the definition W = fp8 * scale_inv[i/br][j/bc].
    const uint8_t* q = w.part("qweight").as<uint8_t>();
    const float* s = w.part("scales").as<float>();
    const int64_t i = r - 1, j = c - 1;
    EXPECT_EQ(a[size_t(i * c + j)], fp8e4m3_to_f32(q[i * c + j]) * s[(i / br) * ((c + bc - 1) / bc) + j / bc]);
  }
}

TEST(DenseAndFp8Formats, MatvecEqualsDequantizeThenDot) {
  std::mt19937_64 rng(test::test_seed());
  for (auto [r, c] : std::vector<std::array<int64_t, 2>>{{64, 384}, {5, 200}, {3, 7}}) {
    for (const char* fmt : {"fp8_b128", "bf16", "f32"}) {
      QuantizedWeight w;
      if (std::string(fmt) == "fp8_b128") {
        w = random_fp8(rng, r, c, 128, 128);
      } else {
        const auto v = test::randn(size_t(r * c), rng);
        w = format_ops(fmt).quantize({v.data(), r, c, nullptr});
      }
      const FormatOps& ops = format_ops(fmt);
      ASSERT_NE(ops.matvec, nullptr);
      std::vector<float> wf(static_cast<size_t>(r * c)), x = test::randn(size_t(c), rng);
      std::vector<float> y(static_cast<size_t>(r), NAN), ref(static_cast<size_t>(r));
      ops.dequantize_rows_ref(w, 0, r, wf.data());
      cpu::gemm_nt_ref(x.data(), 1, c, wf.data(), r, ref.data(), r);
      ops.matvec(w, x.data(), 0, r, y.data());
      EXPECT_LT(test::rel_err(y.data(), ref.data(), y.size()), 1e-6) << fmt << " " << r << "x" << c;
      ops.matvec(w, x.data(), r - 1, 1, y.data());
      EXPECT_NEAR(y[0], ref[size_t(r - 1)], 1e-5 * (1 + std::fabs(ref[size_t(r - 1)])));
    }
  }
}

TEST(Bf16Format, FastDequantEqualsReference) {
  std::mt19937_64 rng(test::test_seed());
  QuantizedWeight w = random_bf16(rng, 33, 77);
  const FormatOps& ops = format_ops("bf16");
  std::vector<float> a(33 * 77), b(33 * 77);
  ops.dequantize_rows_ref(w, 0, 33, a.data());
  ops.dequantize_rows(w, 0, 33, b.data());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0);
}

TEST(Gemm, MatchesReferenceOnManyShapes) {
  std::mt19937_64 rng(test::test_seed());
  for (auto [T, K, N] : std::vector<std::array<int64_t, 3>>{
           {1, 384, 768}, {5, 384, 128}, {64, 128, 384}, {3, 7, 5}, {17, 1000, 9}, {4, 8, 4}, {130, 96, 67}}) {
    const auto x = test::randn(size_t(T * K), rng), w = test::randn(size_t(N * K), rng);
    std::vector<float> out(size_t(T * N), NAN), ref(size_t(T * N));
    cpu::gemm_nt(x.data(), T, K, w.data(), N, out.data(), N);
    cpu::gemm_nt_ref(x.data(), T, K, w.data(), N, ref.data(), N);
    EXPECT_LT(test::rel_err(out.data(), ref.data(), out.size()), 1e-6) << T << "x" << K << "x" << N;
  }
}

TEST(Gemm, LinearOnPackedWeightsEqualsDequantizeThenMultiply) {
  std::mt19937_64 rng(test::test_seed());
  for (auto [T, K, N] : std::vector<std::array<int64_t, 3>>{{1, 384, 768}, {37, 384, 128}, {200, 128, 384}, {2, 130, 70}, {9, 130, 70}, {6, 5, 17}, {101, 64, 33}}) {
    for (bool fp8 : {true, false}) {
      QuantizedWeight w = fp8 ? random_fp8(rng, N, K, 128, 128) : random_bf16(rng, N, K);
      std::vector<float> wf(size_t(N * K));
      format_ops(w.format).dequantize_rows_ref(w, 0, N, wf.data());
      const auto x = test::randn(size_t(T * K), rng);
      std::vector<float> out(size_t(T * N), NAN), ref(size_t(T * N));
      cpu::linear(x.data(), T, w, out.data());
      cpu::gemm_nt_ref(x.data(), T, K, wf.data(), N, ref.data(), N);
      EXPECT_LT(test::rel_err(out.data(), ref.data(), out.size()), 1e-6) << w.format << " " << T << "x" << K << "x" << N;
    }
  }
}

// The backend ops against loops written straight from their definitions (double precision).
class CpuOps : public ::testing::Test {
 protected:
  CpuBackend be;
  std::mt19937_64 rng{test::test_seed()};
  Tensor tensor(const std::vector<float>& v, std::vector<int64_t> shape) {
    Tensor t = be.alloc(DType::F32, std::move(shape));
    be.to_device(t, v.data());
    return t;
  }
  Tensor itensor(const std::vector<int32_t>& v) {
    Tensor t = be.alloc(DType::I32, {int64_t(v.size())});
    be.to_device(t, v.data());
    return t;
  }
};

TEST_F(CpuOps, RmsNorm) {
  const int64_t T = 9, D = 384;
  const auto x = test::randn(size_t(T * D), rng, 3.0f), w = test::randn(size_t(D), rng);
  Tensor out = be.alloc(DType::F32, {T, D});
  be.rmsnorm(tensor(x, {T, D}), tensor(w, {D}), 1e-6f, out);
  std::vector<float> ref(size_t(T * D));
  for (int64_t t = 0; t < T; ++t) {
    double ms = 0;
    for (int64_t i = 0; i < D; ++i) ms += double(x[size_t(t * D + i)]) * x[size_t(t * D + i)];
    const double inv = 1.0 / std::sqrt(ms / D + 1e-6);
    for (int64_t i = 0; i < D; ++i) ref[size_t(t * D + i)] = float(w[size_t(i)] * x[size_t(t * D + i)] * inv);
  }
  EXPECT_LT(test::rel_err(out.as<float>(), ref.data(), ref.size()), 1e-6);
}

TEST_F(CpuOps, PartialRope) {
  const int T = 5, H = 3, hd = 16, rd = 8;
  auto x = test::randn(size_t(T * H * hd), rng);
  const std::vector<int32_t> pos = {0, 1, 7, 100, 4000};
  Tensor t = tensor(x, {T, H * hd});
  be.rope(t, itensor(pos), H, hd, rd, 10000.0);
  for (int i = 0; i < T; ++i)
    for (int h = 0; h < H; ++h) {
      const float* in = &x[size_t((i * H + h) * hd)];
      const float* out = t.as<float>() + (i * H + h) * hd;
      for (int d = 0; d < hd; ++d) {
        double ref;
        if (d >= rd) {
          ref = in[d];  // beyond rotary_dim: untouched
        } else {
          const int j = d % (rd / 2);
          const double ang = pos[size_t(i)] * std::pow(10000.0, -2.0 * j / rd);
          const double rot = d < rd / 2 ? -in[d + rd / 2] : in[d - rd / 2];  // rotate_half
          ref = in[d] * std::cos(ang) + rot * std::sin(ang);
        }
        EXPECT_NEAR(out[d], ref, 2e-3 * (1 + std::fabs(ref))) << i << " " << h << " " << d;
      }
    }
}

TEST_F(CpuOps, AttentionGqaOverCacheAndSlots) {
  const int nh = 6, nkv = 2, hd = 16, ctx = 12, slots = 3;
  KVCache kv = be.alloc_kv(2, slots, ctx, nkv * hd);
  // Fill slot 1 with a prefix of 4 tokens, then run a batch mixing slot 1 (positions 4,5) and
  // slot 2 (position 0): each token must see only its own slot's positions up to its own.
  std::vector<std::vector<float>> keys(slots * ctx), vals(slots * ctx);
  auto step = [&](const std::vector<int32_t>& sl, const std::vector<int32_t>& ps) {
    const int64_t T = int64_t(sl.size());
    auto q = test::randn(size_t(T * nh * hd), rng), k = test::randn(size_t(T * nkv * hd), rng),
         v = test::randn(size_t(T * nkv * hd), rng);
    Tensor out = be.alloc(DType::F32, {T, nh * hd});
    be.attention(tensor(q, {T, nh * hd}), tensor(k, {T, nkv * hd}), tensor(v, {T, nkv * hd}), kv, 1, itensor(ps),
                 itensor(sl), nh, nkv, hd, out);
    for (int64_t t = 0; t < T; ++t) {
      keys[size_t(sl[size_t(t)] * ctx + ps[size_t(t)])] = {k.begin() + t * nkv * hd, k.begin() + (t + 1) * nkv * hd};
      vals[size_t(sl[size_t(t)] * ctx + ps[size_t(t)])] = {v.begin() + t * nkv * hd, v.begin() + (t + 1) * nkv * hd};
    }
    std::vector<float> ref(size_t(T * nh * hd));
    for (int64_t t = 0; t < T; ++t)
      for (int h = 0; h < nh; ++h) {
        const int g = h / (nh / nkv);
        const int n = ps[size_t(t)] + 1;
        std::vector<double> s(static_cast<size_t>(n));
        double mx = -1e300;
        for (int j = 0; j < n; ++j) {
          double d = 0;
          for (int e = 0; e < hd; ++e)
            d += double(q[size_t(t * nh * hd + h * hd + e)]) * keys[size_t(sl[size_t(t)] * ctx + j)][size_t(g * hd + e)];
          s[size_t(j)] = d / std::sqrt(double(hd));
          mx = std::max(mx, s[size_t(j)]);
        }
        double z = 0;
        for (auto& x : s) z += (x = std::exp(x - mx));
        for (int e = 0; e < hd; ++e) {
          double acc = 0;
          for (int j = 0; j < n; ++j) acc += s[size_t(j)] / z * vals[size_t(sl[size_t(t)] * ctx + j)][size_t(g * hd + e)];
          ref[size_t(t * nh * hd + h * hd + e)] = float(acc);
        }
      }
    EXPECT_LT(test::rel_err(out.as<float>(), ref.data(), ref.size()), 1e-5);
  };
  step({1, 1, 1, 1}, {0, 1, 2, 3});
  step({1, 2, 1}, {4, 0, 5});
}

TEST_F(CpuOps, RouterTopKAndRenormalisation) {
  const int64_t T = 7, H = 64, E = 16;
  const int K = 4;
  auto x = test::randn(size_t(T * H), rng);
  HostArray g = HostArray::owned(DType::F32, {E, H});
  auto gv = test::randn(size_t(E * H), rng, 0.3f);
  std::memcpy(g.mutable_data(), gv.data(), g.nbytes);
  auto bias = test::randn(size_t(E), rng, 0.5f);
  auto gate = be.upload_weight(make_dense_weight(g));
  Tensor ids = be.alloc(DType::I32, {T, K}), w = be.alloc(DType::F32, {T, K});
  be.router(tensor(x, {T, H}), *gate, tensor(bias, {E}), K, ids, w);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<std::pair<double, int>> choice;
    std::vector<double> s(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      double l = 0;
      for (int64_t h = 0; h < H; ++h) l += double(x[size_t(t * H + h)]) * gv[size_t(e * H + h)];
      s[size_t(e)] = 1 / (1 + std::exp(-l));
      choice.emplace_back(s[size_t(e)] + bias[size_t(e)], int(e));
    }
    std::sort(choice.rbegin(), choice.rend());
    double sum = 0;
    for (int j = 0; j < K; ++j) sum += s[size_t(choice[size_t(j)].second)];
    for (int j = 0; j < K; ++j) {
      EXPECT_EQ(ids.as<int32_t>()[t * K + j], choice[size_t(j)].second);
      EXPECT_NEAR(w.as<float>()[t * K + j], s[size_t(choice[size_t(j)].second)] / sum, 1e-6);
    }
  }
}

TEST_F(CpuOps, MoeExpertsWeightedSwiGlu) {
  const int64_t T = 11, H = 32, I = 24, E = 5;
  const int K = 2;
  std::vector<QuantizedWeight> w1, w2, w3;
  std::vector<std::vector<float>> f1, f2, f3;
  auto dense = [&](int64_t r, int64_t c, std::vector<std::vector<float>>& keep) {
    auto v = test::randn(size_t(r * c), rng, 0.2f);
    keep.push_back(v);
    HostArray a = HostArray::owned(DType::F32, {r, c});
    std::memcpy(a.mutable_data(), v.data(), a.nbytes);
    return make_dense_weight(a);
  };
  for (int e = 0; e < E; ++e) {
    w1.push_back(dense(I, H, f1));
    w2.push_back(dense(H, I, f2));
    w3.push_back(dense(I, H, f3));
  }
  auto experts = be.upload_experts(w1, w2, w3);
  auto x = test::randn(size_t(T * H), rng);
  std::vector<int32_t> ids(size_t(T * K));
  std::vector<float> wt(size_t(T * K));
  std::uniform_int_distribution<int> pick(0, int(E) - 1);
  for (int64_t t = 0; t < T; ++t) {
    ids[size_t(t * K)] = pick(rng);
    do ids[size_t(t * K + 1)] = pick(rng); while (ids[size_t(t * K + 1)] == ids[size_t(t * K)]);
    wt[size_t(t * K)] = 0.3f;
    wt[size_t(t * K + 1)] = 0.7f;
  }
  Tensor idt = be.alloc(DType::I32, {T, K});
  be.to_device(idt, ids.data());
  Tensor out = be.alloc(DType::F32, {T, H});
  be.moe_experts(tensor(x, {T, H}), idt, tensor(wt, {T, K}), *experts, out);
  std::vector<float> ref(size_t(T * H), 0.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int j = 0; j < K; ++j) {
      const int e = ids[size_t(t * K + j)];
      std::vector<double> a(static_cast<size_t>(I));
      for (int64_t i = 0; i < I; ++i) {
        double g = 0, u = 0;
        for (int64_t h = 0; h < H; ++h) {
          g += double(x[size_t(t * H + h)]) * f1[size_t(e)][size_t(i * H + h)];
          u += double(x[size_t(t * H + h)]) * f3[size_t(e)][size_t(i * H + h)];
        }
        a[size_t(i)] = g / (1 + std::exp(-g)) * u;
      }
      for (int64_t h = 0; h < H; ++h) {
        double y = 0;
        for (int64_t i = 0; i < I; ++i) y += a[size_t(i)] * f2[size_t(e)][size_t(h * I + i)];
        ref[size_t(t * H + h)] += float(wt[size_t(t * K + j)] * y);
      }
    }
  EXPECT_LT(test::rel_err(out.as<float>(), ref.data(), ref.size()), 1e-5);
}

TEST_F(CpuOps, EmbeddingAndGather) {
  std::mt19937_64 r2(1);
  QuantizedWeight table = random_bf16(r2, 50, 16);
  auto tw = be.upload_weight(table);
  const std::vector<int32_t> ids = {3, 0, 49, 3};
  Tensor out = be.alloc(DType::F32, {4, 16});
  be.embedding(*tw, itensor(ids), out);
  for (size_t t = 0; t < ids.size(); ++t)
    for (int d = 0; d < 16; ++d)
      EXPECT_EQ(out.as<float>()[t * 16 + size_t(d)], bf16_to_f32(table.part("qweight").as<uint16_t>()[ids[t] * 16 + d]));
  Tensor g = be.alloc(DType::F32, {2, 16});
  be.gather_rows(out, itensor({2, 0}), g);
  EXPECT_EQ(std::memcmp(g.as<float>(), out.as<float>() + 32, 64), 0);
  EXPECT_EQ(std::memcmp(g.as<float>() + 16, out.as<float>(), 64), 0);
  const std::vector<int32_t> bad = {50};
  EXPECT_THROW(be.embedding(*tw, itensor(bad), out.view_rows(0, 1)), Error);
}
