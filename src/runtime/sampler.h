// Token sampling from logits: penalties, temperature, top-k, top-p, min-p, then a draw.
#pragma once
#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace moeq {

struct SamplingParams {
  float temperature = 1.0f;       // 0: greedy (argmax)
  int top_k = 0;                  // 0: off
  float top_p = 1.0f;             // 1: off
  float min_p = 0.0f;             // 0: off; keeps tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f;  // HF style, over prompt and output: logit/p if > 0 else logit*p
  float frequency_penalty = 0.0f;   // OpenAI style, over output: logit -= f * count
  float presence_penalty = 0.0f;    // OpenAI style, over output: logit -= p * (count > 0)
  uint64_t seed = 0;
  bool has_seed = false;

  bool greedy() const { return temperature <= 0.0f; }
  // Throws moeq::Error naming the parameter when a value is out of range.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(SamplingParams p);
  const SamplingParams& params() const { return p_; }

  // Chooses the next token. `prompt` and `output` are the tokens so far (for the penalties).
  // `logits` is modified in place (penalised and scaled).
  int32_t sample(std::span<float> logits, std::span<const int32_t> prompt, std::span<const int32_t> output);

  // The log-probabilities (after penalties and temperature) of the chosen token and of the
  // `n` most likely tokens of the last call, for logprobs in the API.
  struct TopEntry {
    int32_t token;
    float logprob;
  };
  float last_logprob() const { return last_logprob_; }
  std::vector<TopEntry> last_top(int n) const;

 private:
  void apply_penalties(std::span<float> logits, std::span<const int32_t> prompt, std::span<const int32_t> output);
  SamplingParams p_;
  std::mt19937_64 rng_;
  std::vector<float> last_logp_;  // log-softmax of the final distribution, for logprobs
  float last_logprob_ = 0.0f;
  std::vector<std::pair<float, int32_t>> cand_;
  std::vector<int32_t> count_;
};

}  // namespace moeq
