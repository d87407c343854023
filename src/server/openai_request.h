// Parsing and validation of the bodies of POST /v1/chat/completions and /v1/completions into
// one ApiRequest. Everything a client can get wrong is refused here with an ApiError (400, or
// 404 for an unknown model) naming the field ("param"), before any work is queued. Request
// values override the server defaults (the model's generation_config.json, then
// --override-generation-config). Unknown fields are ignored, as OpenAI-compatible servers do.
#pragma once
#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "runtime/sampler.h"
#include "text/parsers/reasoning_parser.h"

namespace moeq::server {

enum class Endpoint { Chat, Completion };

// What the server decided at startup.
struct ServerDefaults {
  std::string model_name;         // --served-model-name
  SamplingParams sampling;        // generation_config.json + --override-generation-config
  std::optional<text::ReasoningMode> reasoning;  // --reasoning-parser
  bool tool_parser = false;       // --tool-call-parser minimax_m2
  bool auto_tool_choice = false;  // --enable-auto-tool-choice
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::Chat;
  bool stream = false;
  bool include_usage = false;    // stream_options.include_usage
  std::optional<int> max_tokens;  // max_completion_tokens or max_tokens; unset: the rest of the context
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;       // vLLM's extension
  bool logprobs = false;
  int top_logprobs = 0;          // alternatives per token (chat: top_logprobs; completions: logprobs)

  // Completions: the prompt as text, or as token ids.
  std::string prompt_text;
  std::optional<std::vector<int32_t>> prompt_ids;

  // Chat: what the template renders (tool-call arguments already parsed into objects).
  nlohmann::ordered_json messages;
  nlohmann::ordered_json tools;  // null or a non-empty array
  nlohmann::ordered_json template_kwargs = nlohmann::ordered_json::object();  // chat_template_kwargs
  bool add_generation_prompt = true;
  bool parse_tool_calls = false;  // tool_choice "auto" with the parser enabled
};

// Throws ApiError.
ApiRequest parse_chat_request(const nlohmann::ordered_json& body, const ServerDefaults& defaults);
ApiRequest parse_completion_request(const nlohmann::ordered_json& body, const ServerDefaults& defaults);

// Parses a request body as JSON (object required, nesting at most 128 deep so that no recursive
// code downstream can be driven out of stack). Throws ApiError 400.
nlohmann::ordered_json parse_json_body(const std::string& body);

}  // namespace moeq::server
