#include "runtime/generator.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "core/error.h"
#include "runtime/stop_strings.h"

namespace moeq {

std::vector<int32_t> eos_ids(const Model& model, const text::Tokenizer& tok) {
  std::vector<int32_t> ids(model.config().eos_token_ids.begin(), model.config().eos_token_ids.end());
  if (auto e = tok.eos_id()) ids.push_back(*e);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

GenerateResult generate(Model& model, const text::Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const GenerateOptions& opt, const std::function<bool(const std::string&)>& on_text) {
  using clock = std::chrono::steady_clock;
  const ModelConfig& cfg = model.config();
  if (prompt.empty()) fail("the prompt is empty");
  if (opt.max_tokens < 0) fail("max_tokens must be >= 0, got {}", opt.max_tokens);
  const int64_t limit = cfg.max_position_embeddings;
  if (int64_t(prompt.size()) >= limit)
    fail("the prompt has {} tokens; this model's context limit is {}", prompt.size(), limit);
  const int ctx = int(std::min<int64_t>(limit, int64_t(prompt.size()) + opt.max_tokens));
  KVCache kv = model.make_cache(1, ctx);
  Sampler sampler(opt.sampling);
  const std::vector<int32_t> eos = opt.ignore_eos ? std::vector<int32_t>{} : eos_ids(model, tok);
  GenerateResult res;
  res.prompt_tokens = int(prompt.size());

  // Prefill in chunks; only the last chunk's last row needs logits.
  const auto t0 = clock::now();
  const int chunk = std::max(1, opt.prefill_chunk);
  std::vector<float> logits;
  for (size_t p0 = 0; p0 < prompt.size(); p0 += size_t(chunk)) {
    const size_t n = std::min(prompt.size() - p0, size_t(chunk));
    std::vector<int32_t> pos(n), slots(n, 0);
    std::iota(pos.begin(), pos.end(), int32_t(p0));
    const int32_t last = int32_t(n - 1);
    const Tensor& l = model.forward(std::span<const int32_t>(prompt.data() + p0, n), pos, slots,
                                    std::span<const int32_t>(&last, 1), kv);
    if (p0 + n == prompt.size()) logits = model.backend().download_f32(l);
  }
  const auto t1 = clock::now();
  res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  text::StreamDecoder detok(tok, /*skip_special=*/false);
  StopMatcher stops(opt.stop);
  auto emit = [&](const std::string& s) {
    res.text += s;
    return s.empty() || !on_text || on_text(s);
  };
  res.finish_reason = "length";
  int32_t pos = int32_t(prompt.size());
  for (int i = 0; i < opt.max_tokens && pos < ctx; ++i) {
    const int32_t next = sampler.sample(logits, prompt, res.tokens);
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) {
      res.finish_reason = "stop";
      break;
    }
    res.tokens.push_back(next);
    if (!emit(stops.push(detok.push(next)))) break;
    if (stops.stopped()) {
      res.finish_reason = "stop";
      break;
    }
    if (i + 1 == opt.max_tokens || pos + 1 > ctx - 1) break;  // no forward needed for the last token
    const int32_t zero = 0, row = 0;
    const Tensor& l = model.forward(std::span<const int32_t>(&next, 1), std::span<const int32_t>(&pos, 1),
                                    std::span<const int32_t>(&zero, 1), std::span<const int32_t>(&row, 1), kv);
    logits = model.backend().download_f32(l);
    ++pos;
    ++res.decode_steps;
  }
  if (!stops.stopped()) emit(stops.push(detok.flush()) + stops.flush());
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace moeq
