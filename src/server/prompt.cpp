#include "server/prompt.h"

#include <fmt/format.h>

#include "server/api_error.h"
#include "text/jinja/template.h"

namespace moeq::server {

std::vector<int32_t> build_prompt_ids(const ApiRequest& r, const text::Tokenizer& tok, const text::ChatTemplate* tmpl) {
  if (r.endpoint == Endpoint::Completion) {
    if (!r.prompt_ids) return tok.encode(r.prompt_text);
    for (int32_t id : *r.prompt_ids)
      if (id >= tok.vocab_size()) throw ApiError(400, fmt::format("prompt token id {} is outside the vocabulary", id), "prompt");
    return *r.prompt_ids;
  }
  if (!tmpl) throw ApiError(400, "this model has no chat template; use /v1/completions", "messages");
  std::string text;
  try {
    text = tmpl->render(r.messages, r.tools, r.add_generation_prompt, r.template_kwargs);
  } catch (const text::jinja::TemplateError& e) {
    // raise_exception() in a template rejects the conversation; anything else is still caused
    // by what this request sent (the template rendered fine at startup).
    throw ApiError(400, fmt::format("the chat template rejected the messages: {}", e.what()), "messages");
  }
  return tok.encode(text);
}

GenerationRequest make_generation_request(const ApiRequest& r, std::vector<int32_t> prompt, int max_model_len) {
  const char* what = r.endpoint == Endpoint::Chat ? "messages" : "prompt";
  const long long n = (long long)prompt.size();
  if (n >= max_model_len)
    throw ApiError(400,
                   fmt::format("This model's maximum context length is {} tokens. However, your request has {} input "
                               "tokens. Please reduce the length of the {}.",
                               max_model_len, n, what),
                   what, "context_length_exceeded");
  if (r.max_tokens && n + *r.max_tokens > max_model_len)
    throw ApiError(400,
                   fmt::format("This model's maximum context length is {} tokens. However, you requested {} tokens ({} "
                               "in the {}, {} in the completion). Please reduce the length of the {} or completion.",
                               max_model_len, n + *r.max_tokens, n, what, *r.max_tokens, what),
                   "max_tokens", "context_length_exceeded");
  GenerationRequest g;
  g.max_tokens = r.max_tokens ? *r.max_tokens : int(max_model_len - n);
  g.prompt = std::move(prompt);
  g.sampling = r.sampling;
  g.stop = r.stop;
  g.ignore_eos = r.ignore_eos;
  g.logprobs = r.logprobs ? r.top_logprobs : -1;
  return g;
}

}  // namespace moeq::server
