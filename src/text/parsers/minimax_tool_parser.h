// Extracts OpenAI tool calls from MiniMax-M2 output, incrementally, following vLLM's
// `--tool-call-parser minimax_m2`. The model writes
//
//   <minimax:tool_call>
//   <invoke name="NAME">
//   <parameter name="KEY">VALUE</parameter>
//   ...
//   </invoke>
//   ...more invokes...
//   </minimax:tool_call>
//
// Each complete invoke becomes {id, type: "function", function: {name, arguments}}, arguments
// being a JSON object text written as Python's json.dumps writes it ({"k": 1, "s": "x"}), with
// each value typed by the request's tool schema as vLLM does (convert_parameter below).
//
// Text outside the blocks is content, except whitespace-only stretches that touch a block (the
// "\n\n" before a block or the "\n" after one), which are dropped. Inside a block, text outside
// invokes is ignored, an invoke cut off by "</minimax:tool_call>" is dropped, and a parameter cut
// off by "</invoke>" is dropped (all as vLLM's regular expressions do). A block never closed by
// the end of the output (a truncated generation) gives its calls completed so far; the rest of it
// is returned as content, raw, so nothing the model wrote is lost.
//
// Streaming: push() returns new content and the calls completed by this piece; finish() flushes.
// No partial "<minimax:tool_call>" ever reaches the content, and however the output is split the
// concatenated results are identical.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace moeq::text {

struct ToolCall {
  int index = 0;          // 0, 1, ... in the order the calls complete
  std::string id;         // from the IdGenerator
  std::string name;
  std::string arguments;  // JSON object text
  nlohmann::ordered_json to_openai() const;  // {"id", "type": "function", "function": {"name", "arguments"}}
};

struct ToolParseDelta {
  std::string content;
  std::vector<ToolCall> calls;
};

using ToolCallIdGenerator = std::function<std::string()>;
// "call_0", "call_1", ... (reproducible, for tests).
ToolCallIdGenerator counter_tool_call_ids(std::string prefix = "call_");
// "call_" + 24 hex digits like vLLM's ids, from a seeded generator.
ToolCallIdGenerator random_tool_call_ids(uint64_t seed);

// vLLM's typing of one parameter's text by its JSON schema (nullptr: not in the schema, so a
// string). "null"/"none"/"nil" (any case) become null whatever the type; then, in the order
// integer, number, boolean, object/array, string, the first schema type the text converts to
// wins; types come from "type" (string or list), "enum" values and anyOf/oneOf/allOf. Numbers with
// an integral value become integers. Failing all: the text as JSON if it parses, else the string.
nlohmann::ordered_json convert_tool_parameter(std::string_view value, const nlohmann::ordered_json* schema);

class MiniMaxToolParser {
 public:
  // `tools`: the request's "tools" array (OpenAI format) or null; only parameter schemas are used.
  MiniMaxToolParser(const nlohmann::ordered_json& tools, ToolCallIdGenerator ids);
  MiniMaxToolParser(const nlohmann::json& tools, ToolCallIdGenerator ids);

  ToolParseDelta push(std::string_view text);
  ToolParseDelta finish();

  // The whole output at once: push(text) + finish().
  static ToolParseDelta parse(std::string_view text, const nlohmann::ordered_json& tools, ToolCallIdGenerator ids);

 private:
  enum class State { Text, Block, Invoke, Param };

  void drain(ToolParseDelta& out, bool final);
  bool step_text(ToolParseDelta& out, bool final);
  bool step_block(ToolParseDelta& out);
  bool step_invoke(ToolParseDelta& out);
  bool step_param(ToolParseDelta& out);
  void consume(size_t n);  // drops n bytes of buf_, remembering them as raw block text
  void emit_text(ToolParseDelta& out, std::string_view text);
  void close_run(ToolParseDelta& out, bool block_follows);
  void complete_invoke(ToolParseDelta& out);

  std::map<std::string, nlohmann::ordered_json> properties_;  // tool name -> "properties" schema
  ToolCallIdGenerator ids_;
  State state_ = State::Text;
  std::string buf_;  // text not yet decided
  // Content runs (text between blocks): trailing whitespace is held until we know what follows.
  std::string ws_held_;
  bool run_has_text_ = false;
  bool seen_block_ = false;
  // The open block: raw text since it opened or since its last complete invoke.
  std::string raw_;
  std::string invoke_name_;
  nlohmann::ordered_json invoke_args_;
  std::string param_name_;
  std::string param_value_;
  int calls_ = 0;
};

}  // namespace moeq::text
