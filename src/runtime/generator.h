// Single-sequence generation: chunked prefill into the KV cache, then token-by-token decode with
// sampling, streaming detokenized text, stopping at EOS, a stop string or the token limit.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "model/minimax_m2.h"
#include "runtime/sampler.h"
#include "text/tokenizer.h"

namespace moeq {

struct GenerateOptions {
  int max_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool ignore_eos = false;
  int prefill_chunk = 512;        // tokens per prefill step
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated tokens (EOS excluded)
  std::string text;
  std::string finish_reason;    // "stop" (EOS or stop string) or "length"
  int prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  int decode_steps = 0;         // forward passes after the prefill
};

// `on_text` receives each new piece of text as it becomes final; returning false cancels.
GenerateResult generate(Model& model, const text::Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opt, const std::function<bool(const std::string&)>& on_text = {});

// The EOS ids of a model: config.json's eos_token_id plus the tokenizer's eos token.
std::vector<int32_t> eos_ids(const Model& model, const text::Tokenizer& tok);

}  // namespace moeq
