// The response builder on crafted model outputs (tiny-m2 does not write tool calls, so the
// tool-call path is tested here): reasoning_content vs content, tool_calls typed by the schema,
// finish_reason "tool_calls", and streams whose deltas, however the text is split into events,
// add up to the non-stream response with no partial tag in any delta. Also the chunk and
// response shapes of both endpoints, logprobs, and usage.
#include <gtest/gtest.h>

#include "server/response_builder.h"
#include "support/test_support.h"

namespace moeq::server {
namespace {

using ojson = nlohmann::ordered_json;

const ojson kTools = ojson::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
     "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}}}}}])");

const std::string kOutput =
    "The user wants the weather.\n</think>\n\nLet me check.\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
    "<parameter name=\"city\">Paris</parameter>\n<parameter name=\"days\">3</parameter>\n"
    "<parameter name=\"metric\">true</parameter>\n</invoke>\n</minimax:tool_call>";

ResponseContext chat_ctx(bool reasoning = true, bool tools = true) {
  ResponseContext c;
  c.id = "chatcmpl-test";
  c.created = 1700000000;
  c.model = "tiny";
  c.endpoint = Endpoint::Chat;
  if (reasoning) c.reasoning = text::ReasoningMode::MiniMax;
  c.parse_tool_calls = tools;
  c.tools = kTools;
  c.tool_call_ids = text::counter_tool_call_ids();
  return c;
}

// The output as events of `piece` bytes (0: one event), the last one finishing.
std::vector<GenerationEvent> events_of(const std::string& text, size_t piece, const std::string& reason = "stop") {
  std::vector<GenerationEvent> evs;
  if (piece == 0) piece = text.size() + 1;
  for (size_t at = 0; at < text.size() || evs.empty(); at += piece) {
    GenerationEvent e;
    e.text = text.substr(std::min(at, text.size()), piece);
    e.new_tokens = 1;
    evs.push_back(e);
  }
  evs.back().finished = true;
  evs.back().finish_reason = reason;
  evs.back().prompt_tokens = 10;
  evs.back().completion_tokens = int(evs.size());
  return evs;
}

struct Streamed {
  std::string reasoning, content;
  ojson calls = ojson::array();
  std::string finish_reason;
  std::vector<ojson> chunks;
};

Streamed stream(ResponseBuilder& b, const std::vector<GenerationEvent>& evs) {
  Streamed s;
  for (auto& c : b.start()) s.chunks.push_back(c);
  for (const auto& e : evs)
    for (auto& c : b.on_event(e)) s.chunks.push_back(c);
  for (const auto& c : s.chunks) {
    if (c["choices"].empty()) continue;
    const ojson& ch = c["choices"][0];
    if (!ch["finish_reason"].is_null()) s.finish_reason = ch["finish_reason"];
    if (!ch.contains("delta")) continue;
    const ojson& d = ch["delta"];
    if (d.contains("reasoning_content")) s.reasoning += d["reasoning_content"].get<std::string>();
    if (d.contains("content")) s.content += d["content"].get<std::string>();
    if (d.contains("tool_calls"))
      for (const auto& tc : d["tool_calls"]) s.calls.push_back(tc);
  }
  return s;
}

TEST(ServerResponse, ToolCallRoundTrip) {
  ResponseBuilder b(chat_ctx());
  for (const auto& e : events_of(kOutput, 0)) b.on_event(e);
  const ojson r = b.response();
  EXPECT_EQ(r["object"], "chat.completion");
  const ojson& choice = r["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "tool_calls");
  const ojson& msg = choice["message"];
  EXPECT_EQ(msg["role"], "assistant");
  EXPECT_EQ(msg["reasoning_content"], "The user wants the weather.\n");
  EXPECT_EQ(msg["content"], "\n\nLet me check.\n\n");  // only whitespace-only runs next to a block are dropped
  ASSERT_EQ(msg["tool_calls"].size(), 1u);
  const ojson& call = msg["tool_calls"][0];
  EXPECT_EQ(call["id"], "call_0");
  EXPECT_EQ(call["type"], "function");
  EXPECT_EQ(call["function"]["name"], "get_weather");
  // Arguments are a JSON string, typed by the schema.
  EXPECT_EQ(call["function"]["arguments"], R"({"city": "Paris", "days": 3, "metric": true})");
  EXPECT_EQ(r["usage"], ojson::parse(R"({"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11})"));
}

TEST(ServerResponse, StreamDeltasAddUpToTheResponseHoweverSplit) {
  ResponseBuilder whole(chat_ctx());
  for (const auto& e : events_of(kOutput, 0)) whole.on_event(e);
  const ojson want = whole.response()["choices"][0]["message"];
  for (size_t piece = 1; piece <= kOutput.size(); piece += (piece < 24 ? 1 : 7)) {
    ResponseBuilder b(chat_ctx());
    const Streamed s = stream(b, events_of(kOutput, piece));
    EXPECT_EQ(s.reasoning, want["reasoning_content"]) << "pieces of " << piece;
    EXPECT_EQ(s.content, want["content"]) << "pieces of " << piece;
    ASSERT_EQ(s.calls.size(), 1u) << "pieces of " << piece;
    EXPECT_EQ(s.calls[0]["index"], 0);
    EXPECT_EQ(s.calls[0]["function"], want["tool_calls"][0]["function"]);
    EXPECT_EQ(s.finish_reason, "tool_calls");
    for (const auto& c : s.chunks) {
      const std::string text = c.dump();
      EXPECT_EQ(text.find("<minimax"), std::string::npos) << text;
      EXPECT_EQ(text.find("</think"), std::string::npos) << text;
      EXPECT_EQ(text.find("<invoke"), std::string::npos) << text;
    }
    // Same response object either way.
    EXPECT_EQ(b.response()["choices"][0]["message"], want);
  }
}

TEST(ServerResponse, ChunkShapes) {
  ResponseContext ctx = chat_ctx(false, false);
  ctx.include_usage = true;
  ResponseBuilder b(ctx);
  const Streamed s = stream(b, events_of("Hello there", 5, "length"));
  ASSERT_GE(s.chunks.size(), 4u);
  const ojson& first = s.chunks.front();
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["id"], "chatcmpl-test");
  EXPECT_EQ(first["created"], 1700000000);
  EXPECT_EQ(first["choices"][0]["delta"], ojson::parse(R"({"role": "assistant", "content": ""})"));
  EXPECT_TRUE(first["usage"].is_null());
  EXPECT_EQ(s.content, "Hello there");
  EXPECT_EQ(s.finish_reason, "length");
  // The finish chunk has an empty delta; then the usage chunk has no choices.
  const ojson& fin = s.chunks[s.chunks.size() - 2];
  EXPECT_EQ(fin["choices"][0]["delta"], ojson::object());
  EXPECT_EQ(fin["choices"][0]["finish_reason"], "length");
  const ojson& usage = s.chunks.back();
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 13);
  // Without a reasoning parser there is no reasoning_content field, and content is verbatim.
  EXPECT_FALSE(b.response()["choices"][0]["message"].contains("reasoning_content"));
  EXPECT_FALSE(b.response()["choices"][0]["message"].contains("tool_calls"));
}

TEST(ServerResponse, AppendThinkModeKeepsReasoningInline) {
  ResponseContext ctx = chat_ctx(false, false);
  ctx.reasoning = text::ReasoningMode::MiniMaxAppendThink;
  ResponseBuilder b(ctx);
  const Streamed s = stream(b, events_of("hmm\n</think>\n\nAnswer.", 3));
  EXPECT_EQ(s.content, "<think>hmm\n</think>\n\nAnswer.");
  EXPECT_EQ(s.reasoning, "");
  EXPECT_EQ(s.finish_reason, "stop");
}

TEST(ServerResponse, ToolTextWithoutParserIsContent) {
  ResponseBuilder b(chat_ctx(true, false));
  for (const auto& e : events_of(kOutput, 4)) b.on_event(e);
  const ojson msg = b.response()["choices"][0]["message"];
  EXPECT_NE(msg["content"].get<std::string>().find("<minimax:tool_call>"), std::string::npos);
  EXPECT_EQ(b.response()["choices"][0]["finish_reason"], "stop");
}

TEST(ServerResponse, Completions) {
  ResponseContext ctx;
  ctx.id = "cmpl-x";
  ctx.model = "tiny";
  ctx.endpoint = Endpoint::Completion;
  ctx.reasoning = text::ReasoningMode::MiniMax;  // ignored: completions return raw text
  ResponseBuilder b(ctx);
  EXPECT_TRUE(b.start().empty());
  std::string text;
  for (const auto& e : events_of("a</think>b", 2))
    for (const auto& c : b.on_event(e)) {
      EXPECT_EQ(c["object"], "text_completion");
      text += c["choices"][0]["text"].get<std::string>();
    }
  EXPECT_EQ(text, "a</think>b");
  const ojson r = b.response();
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_EQ(r["choices"][0]["text"], "a</think>b");
  EXPECT_TRUE(r["choices"][0]["logprobs"].is_null());
}

TEST(ServerResponse, Logprobs) {
  const text::Tokenizer tok = text::Tokenizer::from_model_dir(test::tiny_model_dir());
  const auto ids = tok.encode("Hello world");
  ASSERT_GE(ids.size(), 2u);
  std::vector<GenerationEvent> evs;
  for (size_t i = 0; i < ids.size(); ++i) {
    GenerationEvent e;
    e.text = tok.decode(std::vector<int32_t>{ids[i]});
    e.new_tokens = 1;
    e.logprobs.push_back({ids[i], -0.5f, {{ids[i], -0.5f}, {7, -1.5f}}});
    evs.push_back(e);
  }
  evs.back().finished = true;
  evs.back().finish_reason = "stop";
  evs.back().logprobs[0].logprob = -std::numeric_limits<float>::infinity();

  ResponseContext ctx = chat_ctx(false, false);
  ctx.logprobs = true;
  ctx.top_logprobs = 2;
  ctx.tok = &tok;
  ResponseBuilder chat(ctx);
  for (const auto& e : evs) chat.on_event(e);
  const ojson lp = chat.response()["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(lp.size(), ids.size());
  EXPECT_EQ(lp[0]["token"], tok.token_bytes(ids[0]));
  EXPECT_EQ(lp[0]["logprob"], -0.5);
  EXPECT_EQ(lp[0]["bytes"].size(), tok.token_bytes(ids[0]).size());
  EXPECT_EQ(lp[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp[0]["top_logprobs"][1]["logprob"], -1.5);
  EXPECT_EQ(lp.back()["logprob"], -9999.0);  // -inf is not JSON

  ctx.endpoint = Endpoint::Completion;
  ResponseBuilder comp(ctx);
  for (const auto& e : evs) comp.on_event(e);
  const ojson clp = comp.response()["choices"][0]["logprobs"];
  EXPECT_EQ(clp["tokens"].size(), ids.size());
  EXPECT_EQ(clp["token_logprobs"][0], -0.5);
  EXPECT_EQ(clp["top_logprobs"][0].size(), 2u);
  EXPECT_EQ(clp["text_offset"][0], 0);
  EXPECT_EQ(clp["text_offset"][1], tok.token_bytes(ids[0]).size());
}

TEST(ServerResponse, ResponseIds) {
  const std::string a = new_response_id(Endpoint::Chat), b = new_response_id(Endpoint::Chat);
  EXPECT_EQ(a.rfind("chatcmpl-", 0), 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(new_response_id(Endpoint::Completion).rfind("cmpl-", 0), 0u);
}

}  // namespace
}  // namespace moeq::server
