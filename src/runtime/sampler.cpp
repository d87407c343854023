#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace moeq {

void SamplingParams::validate() const {
  auto finite = [](float v) { return std::isfinite(v); };
  if (!finite(temperature) || temperature < 0 || temperature > 100) fail("temperature must be in [0, 100], got {}", temperature);
  if (top_k < 0) fail("top_k must be >= 0, got {}", top_k);
  if (!finite(top_p) || top_p <= 0 || top_p > 1) fail("top_p must be in (0, 1], got {}", top_p);
  if (!finite(min_p) || min_p < 0 || min_p > 1) fail("min_p must be in [0, 1], got {}", min_p);
  if (!finite(repetition_penalty) || repetition_penalty <= 0 || repetition_penalty > 10)
    fail("repetition_penalty must be in (0, 10], got {}", repetition_penalty);
  if (!finite(frequency_penalty) || frequency_penalty < -2 || frequency_penalty > 2)
    fail("frequency_penalty must be in [-2, 2], got {}", frequency_penalty);
  if (!finite(presence_penalty) || presence_penalty < -2 || presence_penalty > 2)
    fail("presence_penalty must be in [-2, 2], got {}", presence_penalty);
}

Sampler::Sampler(SamplingParams p) : p_(p), rng_(p.has_seed ? p.seed : std::random_device{}()) { p_.validate(); }

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> prompt,
                              std::span<const int32_t> output) {
  const int64_t V = int64_t(logits.size());
  auto valid = [&](int32_t t) { return t >= 0 && t < V; };
  if (p_.repetition_penalty != 1.0f) {
    // Each distinct token once, whether it occurs in the prompt, the output or both.
    std::vector<int32_t> seen(prompt.begin(), prompt.end());
    seen.insert(seen.end(), output.begin(), output.end());
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t t : seen) {
      if (!valid(t)) continue;
      float& l = logits[size_t(t)];
      l = l > 0 ? l / p_.repetition_penalty : l * p_.repetition_penalty;
    }
  }
  if (p_.frequency_penalty != 0.0f || p_.presence_penalty != 0.0f) {
    count_.assign(size_t(V), 0);
    for (int32_t t : output)
      if (valid(t)) ++count_[size_t(t)];
    for (int32_t t : output) {
      if (!valid(t) || count_[size_t(t)] == 0) continue;
      logits[size_t(t)] -= p_.frequency_penalty * float(count_[size_t(t)]) + p_.presence_penalty;
      count_[size_t(t)] = 0;  // apply once per distinct token
    }
  }
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> prompt, std::span<const int32_t> output) {
  MOEQ_CHECK(!logits.empty(), "sample: empty logits");
  apply_penalties(logits, prompt, output);
  const size_t V = logits.size();
  if (p_.greedy()) {
    const size_t best = size_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    // Log-probabilities of the unscaled distribution, for logprobs.
    const float mx = logits[best];
    double z = 0;
    for (float l : logits) z += std::exp(double(l - mx));
    last_logp_.resize(V);
    for (size_t i = 0; i < V; ++i) last_logp_[i] = float(double(logits[i] - mx) - std::log(z));
    last_logprob_ = last_logp_[best];
    return int32_t(best);
  }
  for (float& l : logits) l /= p_.temperature;
  const float mx = *std::max_element(logits.begin(), logits.end());
  double z = 0;
  for (float l : logits) z += std::exp(double(l - mx));
  last_logp_.resize(V);
  for (size_t i = 0; i < V; ++i) last_logp_[i] = float(double(logits[i] - mx) - std::log(z));

  // Candidates sorted by probability; each filter keeps a prefix.
  cand_.clear();
  for (size_t i = 0; i < V; ++i) cand_.emplace_back(last_logp_[i], int32_t(i));
  size_t keep = V;
  if (p_.top_k > 0 && size_t(p_.top_k) < keep) keep = size_t(p_.top_k);
  std::partial_sort(cand_.begin(), cand_.begin() + std::ptrdiff_t(keep), cand_.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  if (p_.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < keep) {
      cum += std::exp(double(cand_[n].first));
      ++n;
      if (cum >= p_.top_p) break;
    }
    keep = std::max<size_t>(1, n);
  }
  if (p_.min_p > 0.0f) {
    const float floor = cand_[0].first + std::log(p_.min_p);
    size_t n = 1;
    while (n < keep && cand_[n].first >= floor) ++n;
    keep = n;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += std::exp(double(cand_[i].first));
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), acc = 0;
  size_t pick = keep - 1;
  for (size_t i = 0; i < keep; ++i) {
    acc += std::exp(double(cand_[i].first));
    if (r < acc) {
      pick = i;
      break;
    }
  }
  last_logprob_ = cand_[pick].first;
  return cand_[pick].second;
}

std::vector<Sampler::TopEntry> Sampler::last_top(int n) const {
  std::vector<TopEntry> out;
  if (n <= 0 || last_logp_.empty()) return out;
  std::vector<int32_t> idx(last_logp_.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = int32_t(i);
  const size_t k = std::min(idx.size(), size_t(n));
  std::partial_sort(idx.begin(), idx.begin() + std::ptrdiff_t(k), idx.end(), [&](int32_t a, int32_t b) {
    return last_logp_[size_t(a)] > last_logp_[size_t(b)] || (last_logp_[size_t(a)] == last_logp_[size_t(b)] && a < b);
  });
  for (size_t i = 0; i < k; ++i) out.push_back({idx[i], last_logp_[size_t(idx[i])]});
  return out;
}

}  // namespace moeq
