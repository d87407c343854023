#include "backend/cpu/cpu_backend.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>

#include "backend/cpu/gemm.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace moeq {
namespace {

struct CpuWeight final : BackendWeight {
  QuantizedWeight w;
};

struct CpuExperts final : BackendExperts {
  std::vector<QuantizedWeight> w1, w2, w3;
};

void check_f32(const Tensor& t, const char* what) {
  MOEQ_CHECK(t.dtype() == DType::F32, "cpu: {} must be F32, got {}", what, dtype_name(t.dtype()));
}
void check_rows(const Tensor& t, int64_t rows, int64_t cols, const char* what) {
  MOEQ_CHECK(t.rows() == rows && t.row_size() == cols, "cpu: {} has shape {}, expected [{}, {}]", what,
             shape_str(t.shape()), rows, cols);
}

inline float silu(float g) { return g / (1.0f + std::exp(-g)); }

}  // namespace

const QuantizedWeight& cpu_weight(const BackendWeight& w) { return static_cast<const CpuWeight&>(w).w; }

Tensor CpuBackend::alloc(DType dtype, std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    MOEQ_CHECK(d >= 0, "cpu: negative dimension in {}", shape_str(shape));
    n *= d;
  }
  const size_t bytes = (std::max<size_t>(size_t(n) * dtype_size(dtype), 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) fail("cpu: out of memory allocating {} bytes", bytes);
  std::memset(p, 0, bytes);
  std::shared_ptr<void> storage(p, std::free);
  return Tensor(std::move(storage), p, dtype, std::move(shape), this);
}

void CpuBackend::to_device(const Tensor& dst, const void* src) { std::memcpy(dst.data(), src, dst.nbytes()); }
void CpuBackend::to_host(void* dst, const Tensor& src) { std::memcpy(dst, src.data(), src.nbytes()); }

std::unique_ptr<BackendWeight> CpuBackend::upload_weight(const QuantizedWeight& w) {
  format_ops(w.format).validate(w, "cpu upload");
  auto out = std::make_unique<CpuWeight>();
  out->format = w.format;
  out->rows = w.rows;
  out->cols = w.cols;
  out->w = w;  // shares the host storage (mmapped or owned); nothing is copied
  return out;
}

std::unique_ptr<BackendExperts> CpuBackend::upload_experts(const std::vector<QuantizedWeight>& w1,
                                                           const std::vector<QuantizedWeight>& w2,
                                                           const std::vector<QuantizedWeight>& w3) {
  MOEQ_CHECK(!w1.empty() && w1.size() == w2.size() && w1.size() == w3.size(), "cpu: expert weight lists differ");
  auto out = std::make_unique<CpuExperts>();
  out->num_experts = int(w1.size());
  out->inter = w1[0].rows;
  out->hidden = w1[0].cols;
  for (size_t e = 0; e < w1.size(); ++e) {
    MOEQ_CHECK(w1[e].rows == out->inter && w1[e].cols == out->hidden && w3[e].rows == out->inter &&
                   w3[e].cols == out->hidden && w2[e].rows == out->hidden && w2[e].cols == out->inter,
               "cpu: expert {} has inconsistent shapes", e);
    for (const auto* w : {&w1[e], &w2[e], &w3[e]}) format_ops(w->format).validate(*w, "cpu upload");
  }
  out->w1 = w1;
  out->w2 = w2;
  out->w3 = w3;
  return out;
}

void CpuBackend::embedding(const BackendWeight& table, const Tensor& ids, const Tensor& out) {
  const QuantizedWeight& w = cpu_weight(table);
  const int64_t T = ids.numel();
  check_f32(out, "embedding output");
  check_rows(out, T, w.cols, "embedding output");
  const FormatOps& ops = format_ops(w.format);
  for (int64_t t = 0; t < T; ++t) {
    const int32_t id = ids.as<int32_t>()[t];
    MOEQ_CHECK(id >= 0 && id < w.rows, "token id {} outside the vocabulary of {}", id, w.rows);
    ops.dequantize_rows(w, id, 1, out.as<float>() + t * w.cols);
  }
}

void CpuBackend::rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) {
  const int64_t T = x.rows(), D = x.row_size();
  check_f32(x, "rmsnorm input");
  check_rows(out, T, D, "rmsnorm output");
  MOEQ_CHECK(weight.numel() == D, "cpu: rmsnorm weight has {} elements for rows of {}", weight.numel(), D);
  const float* w = weight.as<float>();
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* xr = x.as<float>() + t * D;
      float* o = out.as<float>() + t * D;
      const float ms = cpu::dot(xr, xr, D) / float(D);
      const float inv = 1.0f / std::sqrt(ms + eps);
      for (int64_t i = 0; i < D; ++i) o[i] = w[i] * (xr[i] * inv);
    }
  });
}

void CpuBackend::linear(const Tensor& x, const BackendWeight& w, const Tensor& out) {
  check_f32(x, "linear input");
  check_rows(x, x.rows(), w.cols, "linear input");
  check_rows(out, x.rows(), w.rows, "linear output");
  cpu::linear(x.as<float>(), x.rows(), cpu_weight(w), out.as<float>());
}

void CpuBackend::rope(const Tensor& x, const Tensor& positions, int n_heads, int head_dim, int rotary_dim, double theta) {
  const int64_t T = x.rows();
  check_rows(x, T, int64_t(n_heads) * head_dim, "rope input");
  MOEQ_CHECK(positions.numel() == T, "cpu: rope positions {} for {} rows", positions.numel(), T);
  const int half = rotary_dim / 2;
  // inv_freq[i] = theta^(-2i / rotary_dim), as float like the reference implementation.
  std::vector<float> inv_freq(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i)
    inv_freq[size_t(i)] = float(1.0 / std::pow(theta, double(2 * i) / double(rotary_dim)));
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
    std::vector<float> c(static_cast<size_t>(half)), s(static_cast<size_t>(half));
    for (int64_t t = t0; t < t1; ++t) {
      const float pos = float(positions.as<int32_t>()[t]);
      for (int i = 0; i < half; ++i) {
        const float f = pos * inv_freq[size_t(i)];
        c[size_t(i)] = std::cos(f);
        s[size_t(i)] = std::sin(f);
      }
      for (int h = 0; h < n_heads; ++h) {
        float* v = x.as<float>() + t * x.row_size() + int64_t(h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * c[size_t(i)] - b * s[size_t(i)];
          v[i + half] = b * c[size_t(i)] + a * s[size_t(i)];
        }
      }
    }
  });
}

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCache& kv, int layer,
                           const Tensor& positions, const Tensor& slots, int n_heads, int n_kv_heads, int head_dim,
                           const Tensor& out) {
  const int64_t T = q.rows();
  const int64_t kv_dim = int64_t(n_kv_heads) * head_dim, q_dim = int64_t(n_heads) * head_dim;
  check_rows(q, T, q_dim, "attention q");
  check_rows(k, T, kv_dim, "attention k");
  check_rows(v, T, kv_dim, "attention v");
  check_rows(out, T, q_dim, "attention output");
  MOEQ_CHECK(kv.kv_dim == kv_dim && layer >= 0 && layer < kv.layers, "cpu: attention cache mismatch");
  MOEQ_CHECK(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "cpu: {} heads over {} kv heads", n_heads, n_kv_heads);
  const int32_t* pos = positions.as<int32_t>();
  const int32_t* slot = slots.as<int32_t>();
  auto cache_row = [&](const Tensor& c, int64_t s, int64_t p) {
    return c.as<float>() + ((int64_t(layer) * kv.slots + s) * kv.ctx + p) * kv_dim;
  };
  for (int64_t t = 0; t < T; ++t) {
    MOEQ_CHECK(slot[t] >= 0 && slot[t] < kv.slots && pos[t] >= 0 && pos[t] < kv.ctx,
               "cpu: attention token {} at slot {} position {} outside the cache ({} slots x {})", t, slot[t],
               pos[t], kv.slots, kv.ctx);
    std::memcpy(cache_row(kv.k, slot[t], pos[t]), k.as<float>() + t * kv_dim, size_t(kv_dim) * 4);
    std::memcpy(cache_row(kv.v, slot[t], pos[t]), v.as<float>() + t * kv_dim, size_t(kv_dim) * 4);
  }
  const int group = n_heads / n_kv_heads;
  const float scale = 1.0f / std::sqrt(float(head_dim));
  parallel_for(T * n_heads, 4, [&](int64_t i0, int64_t i1) {
    std::vector<float> scores;
    std::vector<float> acc(static_cast<size_t>(head_dim));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / n_heads;
      const int h = int(i % n_heads), g = h / group;
      const int64_t n = int64_t(pos[t]) + 1;
      const float* qh = q.as<float>() + t * q_dim + int64_t(h) * head_dim;
      scores.resize(size_t(n));
      float mx = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        scores[size_t(j)] = cpu::dot(qh, cache_row(kv.k, slot[t], j) + int64_t(g) * head_dim, head_dim) * scale;
        mx = std::max(mx, scores[size_t(j)]);
      }
      float sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += (scores[size_t(j)] = std::exp(scores[size_t(j)] - mx));
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const float p = scores[size_t(j)];
        const float* vr = cache_row(kv.v, slot[t], j) + int64_t(g) * head_dim;
        for (int d = 0; d < head_dim; ++d) acc[size_t(d)] += p * vr[d];
      }
      float* o = out.as<float>() + t * q_dim + int64_t(h) * head_dim;
      for (int d = 0; d < head_dim; ++d) o[d] = acc[size_t(d)] / sum;
    }
  });
}

void CpuBackend::router(const Tensor& x, const BackendWeight& gate, const Tensor& bias, int top_k, const Tensor& ids,
                        const Tensor& weights) {
  const int64_t T = x.rows(), E = gate.rows;
  MOEQ_CHECK(top_k > 0 && top_k <= E, "cpu: router top_k {} of {} experts", top_k, E);
  MOEQ_CHECK(bias.numel() == E, "cpu: router bias has {} elements for {} experts", bias.numel(), E);
  check_rows(ids, T, top_k, "router ids");
  check_rows(weights, T, top_k, "router weights");
  std::vector<float> logits(static_cast<size_t>(T * E));
  cpu::linear(x.as<float>(), T, cpu_weight(gate), logits.data());
  const float* b = bias.as<float>();
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
    std::vector<float> s(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
    std::vector<int> order(static_cast<size_t>(E));
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t e = 0; e < E; ++e) {
        s[size_t(e)] = 1.0f / (1.0f + std::exp(-logits[size_t(t * E + e)]));
        choice[size_t(e)] = s[size_t(e)] + b[e];
      }
      std::iota(order.begin(), order.end(), 0);
      // Highest choice score first; ties to the lower expert index.
      std::partial_sort(order.begin(), order.begin() + top_k, order.end(), [&](int a, int c) {
        return choice[size_t(a)] > choice[size_t(c)] || (choice[size_t(a)] == choice[size_t(c)] && a < c);
      });
      float sum = 0;
      for (int j = 0; j < top_k; ++j) sum += s[size_t(order[size_t(j)])];
      for (int j = 0; j < top_k; ++j) {
        ids.as<int32_t>()[t * top_k + j] = order[size_t(j)];
        weights.as<float>()[t * top_k + j] = s[size_t(order[size_t(j)])] / sum;
      }
    }
  });
}

void CpuBackend::moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights,
                             const BackendExperts& experts, const Tensor& out) {
  const auto& ex = static_cast<const CpuExperts&>(experts);
  const int64_t T = x.rows(), H = ex.hidden, I = ex.inter, K = ids.row_size();
  check_rows(x, T, H, "moe input");
  check_rows(out, T, H, "moe output");
  check_rows(weights, T, K, "moe weights");
  // Group (token, choice) pairs by expert, then run each expert once over its tokens.
  std::vector<std::vector<int64_t>> assigned(size_t(ex.num_experts));
  for (int64_t i = 0; i < T * K; ++i) {
    const int32_t e = ids.as<int32_t>()[i];
    MOEQ_CHECK(e >= 0 && e < ex.num_experts, "cpu: expert id {} out of range", e);
    assigned[size_t(e)].push_back(i);
  }
  // Each (token, choice) gets its own output row, summed in a fixed order afterwards, so the
  // result does not depend on thread scheduling.
  std::vector<float> partial(static_cast<size_t>(T * K * H));
  parallel_for(ex.num_experts, 1, [&](int64_t e0, int64_t e1) {
    std::vector<float> xe, g, u, y;
    for (int64_t e = e0; e < e1; ++e) {
      const auto& rows = assigned[size_t(e)];
      const int64_t n = int64_t(rows.size());
      if (n == 0) continue;
      xe.resize(size_t(n * H));
      g.resize(size_t(n * I));
      u.resize(size_t(n * I));
      y.resize(size_t(n * H));
      for (int64_t r = 0; r < n; ++r)
        std::memcpy(&xe[size_t(r * H)], x.as<float>() + (rows[size_t(r)] / K) * H, size_t(H) * 4);
      cpu::linear(xe.data(), n, ex.w1[size_t(e)], g.data());
      cpu::linear(xe.data(), n, ex.w3[size_t(e)], u.data());
      for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
      cpu::linear(g.data(), n, ex.w2[size_t(e)], y.data());
      for (int64_t r = 0; r < n; ++r) {
        const float wgt = weights.as<float>()[rows[size_t(r)]];
        float* dst = &partial[size_t(rows[size_t(r)] * H)];
        for (int64_t h = 0; h < H; ++h) dst[h] = wgt * y[size_t(r * H + h)];
      }
    }
  });
  parallel_for(T, 16, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* o = out.as<float>() + t * H;
      std::fill(o, o + H, 0.0f);
      for (int64_t j = 0; j < K; ++j) {
        const float* p = &partial[size_t((t * K + j) * H)];
        for (int64_t h = 0; h < H; ++h) o[h] += p[h];
      }
    }
  });
}

void CpuBackend::add(const Tensor& a, const Tensor& b, const Tensor& out) {
  MOEQ_CHECK(a.numel() == b.numel() && a.numel() == out.numel(), "cpu: add of {} and {} into {}",
             shape_str(a.shape()), shape_str(b.shape()), shape_str(out.shape()));
  const float* pa = a.as<float>();
  const float* pb = b.as<float>();
  float* po = out.as<float>();
  for (int64_t i = 0; i < a.numel(); ++i) po[i] = pa[i] + pb[i];
}

void CpuBackend::gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) {
  const int64_t n = rows.numel(), D = x.row_size();
  check_rows(out, n, D, "gather output");
  for (int64_t i = 0; i < n; ++i) {
    const int32_t r = rows.as<int32_t>()[i];
    MOEQ_CHECK(r >= 0 && r < x.rows(), "cpu: gather row {} of {}", r, x.rows());
    std::memcpy(out.as<float>() + i * D, x.as<float>() + int64_t(r) * D, size_t(D) * dtype_size(x.dtype()));
  }
}

void CpuBackend::argmax(const Tensor& logits, const Tensor& ids) {
  const int64_t T = logits.rows(), V = logits.row_size();
  MOEQ_CHECK(ids.numel() == T, "cpu: argmax of {} rows into {} ids", T, ids.numel());
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits.as<float>() + t * V;
    ids.as<int32_t>()[t] = int32_t(std::max_element(l, l + V) - l);
  }
}

int64_t CpuBackend::memory_available() { return int64_t(sysconf(_SC_AVPHYS_PAGES)) * sysconf(_SC_PAGESIZE); }

double CpuBackend::copy_bandwidth() {
  const size_t n = size_t(256) << 20;
  std::vector<char> a(n, 1), b(n, 2);
  double best = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    std::memcpy(b.data(), a.data(), n);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return 2.0 * double(n) / best;  // bytes read + written
}

}  // namespace moeq
