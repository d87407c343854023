// From a validated ApiRequest to what the scheduler runs: the prompt's token ids (chat: rendered
// by the model's chat template) and the GenerationRequest, with the context limit enforced.
#pragma once
#include <vector>

#include "runtime/sequence.h"
#include "server/openai_request.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace moeq::server {

// Chat: renders messages + tools (400 if the template raises, e.g. a misplaced tool message).
// Completions: encodes the text, or checks the given ids against the vocabulary.
std::vector<int32_t> build_prompt_ids(const ApiRequest& r, const text::Tokenizer& tok, const text::ChatTemplate* tmpl);

// 400 naming the limit when the prompt leaves no room, or prompt + max_tokens exceeds it (the
// messages of vLLM). An unset max_tokens takes the rest of the context.
GenerationRequest make_generation_request(const ApiRequest& r, std::vector<int32_t> prompt, int max_model_len);

}  // namespace moeq::server
