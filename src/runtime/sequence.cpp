#include "runtime/sequence.h"

#include <algorithm>

namespace moeq {

Sequence::Sequence(GenerationRequest req, std::shared_ptr<GenerationStream> stream, const text::Tokenizer& tok,
                   std::span<const int32_t> eos, int max_model_len)
    : req_(std::move(req)),
      stream_(std::move(stream)),
      eos_(eos),
      max_model_len_(max_model_len),
      sampler_(req_.sampling),
      detok_(tok, /*skip_special=*/false),  // parsers need <think> and tool-call tags, which may be special
      stops_(req_.stop) {}

bool Sequence::on_logits(std::span<float> logits) {
  const int32_t tok = sampler_.sample(logits, req_.prompt, output_);
  GenerationEvent e;
  if (!req_.ignore_eos && std::find(eos_.begin(), eos_.end(), tok) != eos_.end()) {
    finish(e, "stop");  // EOS is not part of the output
    return true;
  }
  output_.push_back(tok);
  e.new_tokens = 1;
  if (req_.logprobs >= 0) e.logprobs.push_back({tok, sampler_.last_logprob(), sampler_.last_top(req_.logprobs)});
  e.text = stops_.push(detok_.push(tok));
  if (stops_.stopped()) {
    finish(e, "stop");
    return true;
  }
  // prompt + output reaching max_model_len: the next token would have no cache position.
  if (int(output_.size()) >= req_.max_tokens || int(req_.prompt.size() + output_.size()) >= max_model_len_) {
    finish(e, "length");
    return true;
  }
  stream_->push(std::move(e));
  return false;
}

void Sequence::finish(GenerationEvent& e, const std::string& reason) {
  if (!stops_.stopped()) e.text += stops_.push(detok_.flush()) + stops_.flush();
  e.finished = true;
  e.finish_reason = reason;
  e.prompt_tokens = int(req_.prompt.size());
  e.completion_tokens = int(output_.size());
  finished_ = true;
  final_ = std::move(e);
}

void Sequence::abort(const std::string& reason, const std::string& error) {
  if (finished_) return;
  GenerationEvent e;
  e.finished = true;
  e.finish_reason = reason;
  e.error = error;
  e.prompt_tokens = int(req_.prompt.size());
  e.completion_tokens = int(output_.size());
  finished_ = true;
  final_ = std::move(e);
}

void Sequence::publish_final() {
  if (!finished_ || published_) return;
  published_ = true;
  stream_->push(std::move(final_));
}

}  // namespace moeq
