#include "eval/kld.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/thread_pool.h"

namespace moeq {
namespace {

struct RowSoftmax {
  double max = 0;       // largest logit
  double log_z = 0;     // log sum_v exp(x_v - max)
  int64_t argmax = 0;   // first index of the largest logit
};

// One pass for max/argmax, one for the normaliser, all in double. `e`, when given, receives
// exp(x_v - max) so that the caller need not recompute it.
RowSoftmax row_softmax(const float* x, int64_t vocab, double* e) {
  RowSoftmax r;
  float mx = x[0];
  for (int64_t v = 1; v < vocab; ++v)
    if (x[v] > mx) mx = x[v], r.argmax = v;
  r.max = double(mx);
  double z = 0;
  for (int64_t v = 0; v < vocab; ++v) {
    const double ev = std::exp(double(x[v]) - r.max);
    if (e) e[v] = ev;
    z += ev;
  }
  r.log_z = std::log(z);
  return r;
}

// log p(v) as (x - max) - log z: the same operations, in the same order, as log_prob() in
// eval/windows.cpp, so that the NLL here is bit-identical to `eval ppl`'s.
inline double log_p(const float* x, const RowSoftmax& s, int64_t v) { return double(x[v]) - s.max - s.log_z; }

PositionStats compare_with_buffer(const float* ref, const float* q, int64_t vocab, int32_t target, double* e) {
  if (vocab <= 0) fail("compare_position: empty vocabulary");
  if (target < 0 || target >= vocab) fail("compare_position: target {} outside the vocabulary of {}", target, vocab);
  const RowSoftmax sr = row_softmax(ref, vocab, e);
  const RowSoftmax sq = row_softmax(q, vocab, nullptr);
  const double inv_z = std::exp(-sr.log_z);
  double kl = 0;
  // p_ref(v) (log p_ref(v) - log p_q(v)); identical rows give exactly 0 term by term.
  for (int64_t v = 0; v < vocab; ++v) kl += e[v] * inv_z * (log_p(ref, sr, v) - log_p(q, sq, v));
  PositionStats s;
  s.kld = kl;
  s.nll_ref = -log_p(ref, sr, target);
  s.nll_q = -log_p(q, sq, target);
  s.top1 = sr.argmax == sq.argmax;
  return s;
}

// A model's side of the protocol: its own KV cache, positions 0..ctx-1 in one fresh sequence.
class WindowRunner {
 public:
  WindowRunner(Model& m, int ctx)
      : m_(m), kv_(m.make_cache(1, ctx)), pos_(static_cast<size_t>(ctx)), slots_(static_cast<size_t>(ctx), 0) {
    std::iota(pos_.begin(), pos_.end(), 0);
  }
  std::vector<float> logits(std::span<const int32_t> win) {
    const Tensor& l = m_.forward(win, pos_, slots_, pos_, kv_);
    return m_.backend().download_f32(l);
  }

 private:
  Model& m_;
  KVCache kv_;
  std::vector<int32_t> pos_, slots_;
};

}  // namespace

PositionStats compare_position(const float* ref, const float* q, int64_t vocab, int32_t target) {
  std::vector<double> e(static_cast<size_t>(std::max<int64_t>(vocab, 0)));
  return compare_with_buffer(ref, q, vocab, target, e.data());
}

double kl_divergence(const float* ref, const float* q, int64_t vocab) { return compare_position(ref, q, vocab, 0).kld; }

double percentile(std::vector<double> values, double p) {
  if (values.empty()) fail("percentile of an empty set");
  if (!(p >= 0 && p <= 1)) fail("percentile: p = {} is outside [0, 1]", p);
  std::sort(values.begin(), values.end());
  const double h = p * double(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= values.size()) return values.back();
  return values[lo] + (h - double(lo)) * (values[lo + 1] - values[lo]);
}

KldResult summarize_positions(const std::vector<PositionStats>& positions, int64_t group) {
  if (positions.empty()) fail("no predicted positions to summarise");
  if (group <= 0) group = int64_t(positions.size());
  KldResult r;
  // Sums in position order (independent of the thread count), NLL summed per window first and
  // then over windows, as perplexity() does: the two tools report bit-identical perplexities.
  double kl = 0, nr = 0, nq = 0, wr = 0, wq = 0;
  int64_t agree = 0;
  std::vector<double> klds;
  klds.reserve(positions.size());
  for (size_t i = 0; i < positions.size(); ++i) {
    const PositionStats& s = positions[i];
    kl += s.kld;
    wr += s.nll_ref, wq += s.nll_q;
    if (int64_t(i + 1) % group == 0 || i + 1 == positions.size()) nr += wr, nq += wq, wr = 0, wq = 0;
    agree += s.top1 ? 1 : 0;
    klds.push_back(s.kld);
  }
  const double n = double(positions.size());
  r.positions = int64_t(positions.size());
  r.kld_mean = kl / n;
  r.top1 = double(agree) / n;
  r.nll_ref = nr / n;
  r.nll_quant = nq / n;
  r.ppl_ref = std::exp(r.nll_ref);
  r.ppl_quant = std::exp(r.nll_quant);
  std::sort(klds.begin(), klds.end());
  r.kld_median = percentile(klds, 0.5);
  r.kld_p90 = percentile(klds, 0.9);
  r.kld_p99 = percentile(klds, 0.99);
  r.kld_max = klds.back();
  return r;
}

KldResult kld_eval(Model& ref, Model& quant, std::span<const int32_t> tokens, const WindowOptions& opt,
                   const std::function<void(int64_t, int64_t)>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t V = ref.config().vocab_size;
  if (quant.config().vocab_size != V)
    fail("the models' vocabularies differ: reference {} tokens, quantized {}", V, quant.config().vocab_size);
  const int64_t windows = count_windows(int64_t(tokens.size()), opt);
  for (const Model* m : {&ref, &quant})
    if (opt.ctx > m->config().max_position_embeddings)
      fail("--ctx {} exceeds the model's context limit of {}", opt.ctx, m->config().max_position_embeddings);
  for (int32_t t : tokens)
    if (t < 0 || t >= V) fail("token id {} is outside the vocabulary of {}", t, V);

  WindowRunner run_ref(ref, opt.ctx), run_q(quant, opt.ctx);
  const int64_t per_window = opt.ctx - 1;
  std::vector<PositionStats> stats(static_cast<size_t>(windows * per_window));
  for (int64_t w = 0; w < windows; ++w) {
    const auto win = tokens.subspan(size_t(w * opt.ctx), size_t(opt.ctx));
    const std::vector<float> lr = run_ref.logits(win);
    const std::vector<float> lq = run_q.logits(win);
    parallel_for(per_window, 8, [&](int64_t b, int64_t e) {
      std::vector<double> buf(static_cast<size_t>(V));
      for (int64_t i = b; i < e; ++i)
        stats[size_t(w * per_window + i)] =
            compare_with_buffer(lr.data() + i * V, lq.data() + i * V, V, win[size_t(i) + 1], buf.data());
    });
    if (progress) progress(w + 1, windows);
  }
  KldResult r = summarize_positions(stats, per_window);
  r.windows = windows;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace moeq
