// Turns a request's generation events into OpenAI response objects: the chunks of a stream
// (chat.completion.chunk / text_completion) and the final non-stream response, from one code
// path. Chat output runs through the reasoning parser (reasoning_content vs content) and then
// the MiniMax tool-call parser (content vs tool_calls), both incremental, so stream deltas never
// carry part of a tag and the concatenated deltas equal the non-stream message.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/generation_stream.h"
#include "server/openai_request.h"
#include "text/parsers/minimax_tool_parser.h"
#include "text/parsers/reasoning_parser.h"
#include "text/tokenizer.h"

namespace moeq::server {

struct ResponseContext {
  std::string id;       // "chatcmpl-..." / "cmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
  Endpoint endpoint = Endpoint::Chat;
  std::optional<text::ReasoningMode> reasoning;
  bool parse_tool_calls = false;
  nlohmann::ordered_json tools;  // the request's tools (parameter schemas type the arguments)
  text::ToolCallIdGenerator tool_call_ids;  // null: random "call_..." ids
  bool logprobs = false;
  int top_logprobs = 0;
  bool include_usage = false;  // streams: a final usage chunk, and "usage": null on the others
  const text::Tokenizer* tok = nullptr;  // token strings for logprobs
};

class ResponseBuilder {
 public:
  explicit ResponseBuilder(ResponseContext ctx);

  // Streams: the chunk that opens a chat stream (delta {"role": "assistant", "content": ""}).
  // Completions have none.
  std::vector<nlohmann::ordered_json> start();
  // Consumes one event; returns the stream chunks it produces (content, reasoning, tool calls,
  // logprobs; on the last event also the finish chunk and, with include_usage, the usage chunk).
  // Non-stream callers ignore the chunks and call response() after the last event.
  std::vector<nlohmann::ordered_json> on_event(const GenerationEvent& e);
  nlohmann::ordered_json response() const;  // chat.completion / text_completion

  bool finished() const { return finished_; }
  const std::string& finish_reason() const { return finish_reason_; }
  int prompt_tokens() const { return prompt_tokens_; }
  int completion_tokens() const { return completion_tokens_; }

 private:
  struct Piece {
    std::string reasoning, content;
    std::vector<text::ToolCall> calls;
  };
  Piece parse(const std::string& text, bool final);
  nlohmann::ordered_json chunk(nlohmann::ordered_json choice) const;
  nlohmann::ordered_json usage() const;
  nlohmann::ordered_json chat_logprobs(const std::vector<TokenLogprob>& lps) const;
  nlohmann::ordered_json completion_logprobs(const std::vector<TokenLogprob>& lps, size_t& text_offset) const;
  std::string token_text(int32_t id) const;

  ResponseContext ctx_;
  std::unique_ptr<text::ReasoningParser> reasoning_;
  std::unique_ptr<text::MiniMaxToolParser> tools_;
  // The whole response so far, for response().
  std::string reasoning_text_, content_;
  std::vector<text::ToolCall> calls_;
  std::vector<TokenLogprob> logprobs_;
  bool finished_ = false;
  std::string finish_reason_;
  int prompt_tokens_ = 0, completion_tokens_ = 0;
  size_t stream_text_offset_ = 0;  // completions' logprobs text_offset, streamed
};

// "chatcmpl-" / "cmpl-" + 32 random hex digits.
std::string new_response_id(Endpoint e);

}  // namespace moeq::server
