#include "quant/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/gemm.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "model/decoder_layer.h"

namespace moeq {

void ChannelStats::add(const float* x, int64_t rows, int64_t cols) {
  if (sum_sq.empty()) {
    sum_sq.assign(size_t(cols), 0.0);
    sum_abs.assign(size_t(cols), 0.0);
  }
  MOEQ_CHECK(int64_t(sum_sq.size()) == cols, "channel stats of width {} fed rows of {}", sum_sq.size(), cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      const double v = x[r * cols + j];
      sum_sq[size_t(j)] += v * v;
      sum_abs[size_t(j)] += std::fabs(v);
    }
  count += rows;
}

void ChannelStats::merge(const ChannelStats& o) {
  if (o.count == 0) return;
  if (sum_sq.empty()) {
    *this = o;
    return;
  }
  for (size_t j = 0; j < sum_sq.size(); ++j) {
    sum_sq[j] += o.sum_sq[j];
    sum_abs[j] += o.sum_abs[j];
  }
  count += o.count;
}

std::vector<float> ChannelStats::mean_sq() const {
  std::vector<float> m(sum_sq.size());
  for (size_t j = 0; j < m.size(); ++j) m[j] = count ? float(sum_sq[j] / double(count)) : 0.0f;
  return m;
}

std::vector<float> ChannelStats::mean_abs() const {
  std::vector<float> m(sum_abs.size());
  for (size_t j = 0; j < m.size(); ++j) m[j] = count ? float(sum_abs[j] / double(count)) : 0.0f;
  return m;
}

void RowSample::add(const float* x, int64_t n) {
  for (int64_t r = 0; r < n; ++r, ++seen) {
    if (seen < cap) {
      rows.insert(rows.end(), x + r * cols, x + (r + 1) * cols);
      continue;
    }
    // Reservoir: keep row `seen` with probability cap / (seen + 1) (xorshift, deterministic).
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    const int64_t slot = int64_t(rng % uint64_t(seen + 1));
    if (slot < cap) std::memcpy(&rows[size_t(slot * cols)], x + r * cols, size_t(cols) * sizeof(float));
  }
}

LayerCalibrator::LayerCalibrator(ModelConfig c, CalibOptions o, int64_t n_seqs, int64_t seq_len)
    : cfg_(std::move(c)), opt_(o), n_seqs_(n_seqs), seq_len_(seq_len) {
  MOEQ_CHECK(n_seqs > 0 && seq_len > 0, "calibration needs at least one sequence");
}

namespace {

inline float silu(float g) { return g / (1.0f + std::exp(-g)); }

// Wraps host memory as a CPU tensor (no copy, no ownership).
Tensor host_tensor(CpuBackend& be, float* p, std::vector<int64_t> shape) {
  return Tensor(std::shared_ptr<void>(), p, DType::F32, std::move(shape), &be);
}

}  // namespace

LayerCalibration LayerCalibrator::run(int layer, const HostLayer& w, std::vector<float>& h) const {
  const int64_t H = cfg_.hidden_size, I = cfg_.intermediate_size, E = cfg_.num_experts, K = cfg_.experts_per_tok;
  const int64_t total = n_seqs_ * seq_len_;
  MOEQ_CHECK(int64_t(h.size()) == total * H, "calibration hidden state has {} values, expected {}", h.size(), total * H);
  CpuBackend be;
  const BackendLayer L = BackendLayer::upload(be, cfg_, w, /*with_experts=*/false);
  const uint64_t seed = 0x9e3779b97f4a7c15ull * uint64_t(layer + 1);
  LayerCalibration cal;
  cal.qkv_sample = RowSample(H, opt_.sample_rows, seed + 1);
  cal.o_sample = RowSample(cfg_.q_dim(), opt_.sample_rows, seed + 2);
  cal.w13_in.resize(size_t(E));
  cal.w2_in.resize(size_t(E));
  cal.routed.assign(size_t(E), 0);
  for (int64_t e = 0; e < E; ++e) {
    cal.w13_sample.emplace_back(H, opt_.sample_rows, seed + 100 + uint64_t(e));
    cal.w2_sample.emplace_back(I, opt_.sample_rows, seed + 100000 + uint64_t(e));
  }

  // Whole sequences per batch; each sequence has its own cache slot.
  const int64_t seqs_per_batch = std::max<int64_t>(1, std::min(n_seqs_, opt_.batch_tokens / seq_len_));
  KVCache kv = be.alloc_kv(1, int(seqs_per_batch), int(seq_len_), cfg_.kv_dim());
  const LayerScratch scratch = LayerScratch::alloc(be, cfg_, seqs_per_batch * seq_len_);
  AttentionTaps taps;
  taps.qkv_input = [&](const Tensor& x) {
    cal.qkv_in.add(x.as<float>(), x.rows(), H);
    cal.qkv_sample.add(x.as<float>(), x.rows());
  };
  taps.o_input = [&](const Tensor& a) {
    cal.o_in.add(a.as<float>(), a.rows(), cfg_.q_dim());
    cal.o_sample.add(a.as<float>(), a.rows());
  };

  for (int64_t s0 = 0; s0 < n_seqs_; s0 += seqs_per_batch) {
    const int64_t ns = std::min(seqs_per_batch, n_seqs_ - s0), T = ns * seq_len_;
    std::vector<int32_t> pos(static_cast<size_t>(T)), slots(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      pos[size_t(t)] = int32_t(t % seq_len_);
      slots[size_t(t)] = int32_t(t / seq_len_);
    }
    Tensor tpos = be.alloc(DType::I32, {T}), tslots = be.alloc(DType::I32, {T});
    be.to_device(tpos, pos.data());
    be.to_device(tslots, slots.data());
    const Tensor hb = host_tensor(be, h.data() + s0 * seq_len_ * H, {T, H});
    const LayerScratch s = scratch.first(T);
    attention_block(be, cfg_, L, hb, tpos, tslots, kv, 0, s, &taps);

    // MoE, expert by expert, looking inside: route, then each expert over its tokens (or over
    // every token with all_experts, for statistics; the output still uses the routed tokens only).
    const float* x = s.x.as<float>();
    cal.moe_in.add(x, T, H);
    be.router(s.x, *L.gate, L.router_bias, int(K), s.route_ids, s.route_w);
    std::vector<std::vector<int64_t>> assigned(static_cast<size_t>(E));  // (token * K + choice)
    for (int64_t i = 0; i < T * K; ++i) assigned[size_t(s.route_ids.as<int32_t>()[i])].push_back(i);
    std::vector<float> partial(static_cast<size_t>(T * K * H));
    parallel_for(E, 1, [&](int64_t e0, int64_t e1) {
      std::vector<float> xe, g, u, y;
      for (int64_t e = e0; e < e1; ++e) {
        const auto& rows = assigned[size_t(e)];
        cal.routed[size_t(e)] += int64_t(rows.size());
        // The tokens this expert computes: its routed tokens, or all of them.
        const int64_t n = opt_.all_experts ? T : int64_t(rows.size());
        if (n == 0) continue;
        xe.resize(size_t(n * H));
        if (opt_.all_experts) {
          std::memcpy(xe.data(), x, size_t(T * H) * sizeof(float));
        } else {
          for (int64_t r = 0; r < n; ++r)
            std::memcpy(&xe[size_t(r * H)], x + (rows[size_t(r)] / K) * H, size_t(H) * sizeof(float));
        }
        g.resize(size_t(n * I));
        u.resize(size_t(n * I));
        cpu::linear(xe.data(), n, w.w1[size_t(e)], g.data());
        cpu::linear(xe.data(), n, w.w3[size_t(e)], u.data());
        for (size_t i = 0; i < g.size(); ++i) g[i] = silu(g[i]) * u[i];
        cal.w13_in[size_t(e)].add(xe.data(), n, H);
        cal.w13_sample[size_t(e)].add(xe.data(), n);
        cal.w2_in[size_t(e)].add(g.data(), n, I);
        cal.w2_sample[size_t(e)].add(g.data(), n);
        if (rows.empty()) continue;
        // Down projection for the routed tokens only.
        std::vector<float> a(rows.size() * size_t(I));
        for (size_t r = 0; r < rows.size(); ++r) {
          const int64_t src = opt_.all_experts ? rows[r] / K : int64_t(r);
          std::memcpy(&a[r * size_t(I)], &g[size_t(src * I)], size_t(I) * sizeof(float));
        }
        y.resize(rows.size() * size_t(H));
        cpu::linear(a.data(), int64_t(rows.size()), w.w2[size_t(e)], y.data());
        for (size_t r = 0; r < rows.size(); ++r) {
          const float wt = s.route_w.as<float>()[rows[r]];
          float* dst = &partial[size_t(rows[r] * H)];
          for (int64_t c = 0; c < H; ++c) dst[c] = wt * y[r * size_t(H) + size_t(c)];
        }
      }
    });
    // Sum the choices in a fixed order (as the CPU backend does): results do not depend on threads.
    float* acc = s.tmp.as<float>();
    std::fill(acc, acc + T * H, 0.0f);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < K; ++j) {
        const float* p = &partial[size_t((t * K + j) * H)];
        for (int64_t c = 0; c < H; ++c) acc[t * H + c] += p[c];
      }
    float* hp = hb.as<float>();
    for (int64_t i = 0; i < T * H; ++i) hp[i] += acc[i];
  }
  return cal;
}

ExpertCoverage expert_coverage(const std::vector<std::vector<int64_t>>& routed_per_layer) {
  std::vector<int64_t> all;
  for (const auto& l : routed_per_layer) all.insert(all.end(), l.begin(), l.end());
  ExpertCoverage c;
  if (all.empty()) return c;
  std::sort(all.begin(), all.end());
  c.min = all.front();
  c.max = all.back();
  c.median = all[all.size() / 2];
  c.experts_without_tokens = std::count(all.begin(), all.end(), 0);
  return c;
}

}  // namespace moeq
