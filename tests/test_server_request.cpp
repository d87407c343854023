// Validation of OpenAI request bodies: what is accepted and how, and every refusal with its status
// and the field it names; prompts (chat template, token ids) and the context-limit errors.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/prompt.h"
#include "support/test_support.h"

namespace moeq::server {
namespace {

using ojson = nlohmann::ordered_json;

ServerDefaults defaults(bool tools = true) {
  ServerDefaults d;
  d.model_name = "tiny";
  d.sampling.temperature = 0.7f;
  d.sampling.top_k = 40;
  d.tool_parser = tools;
  d.auto_tool_choice = tools;
  return d;
}

ojson chat(ojson extra = ojson::object()) {
  ojson b = {{"model", "tiny"}, {"messages", ojson::array({{{"role", "user"}, {"content", "Hi"}}})}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}

ojson completion(ojson extra = ojson::object()) {
  ojson b = {{"model", "tiny"}, {"prompt", "Once upon"}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}

// The ApiError a body provokes (status 0 if accepted).
ApiError refusal(const ojson& body, bool is_chat = true, const ServerDefaults& d = defaults()) {
  try {
    if (is_chat) parse_chat_request(body, d);
    else parse_completion_request(body, d);
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "accepted");
}

TEST(ServerRequest, AcceptsAChatRequestOverTheDefaults) {
  const ApiRequest r = parse_chat_request(
      chat({{"stream", true}, {"stream_options", {{"include_usage", true}}}, {"max_tokens", 5}, {"temperature", 0},
            {"top_p", 0.5}, {"seed", 42}, {"stop", "END"}, {"logprobs", true}, {"top_logprobs", 3}, {"n", 1},
            {"user", "ignored"}, {"unknown_field", {1, 2}}}),
      defaults());
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.max_tokens, 5);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 40);  // from the defaults
  EXPECT_TRUE(r.sampling.has_seed);
  EXPECT_EQ(r.sampling.seed, 42u);
  EXPECT_EQ(r.stop, std::vector<std::string>{"END"});
  EXPECT_TRUE(r.logprobs);
  EXPECT_EQ(r.top_logprobs, 3);
  EXPECT_FALSE(r.parse_tool_calls);
  // Model may be omitted; max_completion_tokens wins over max_tokens; integral floats are integers.
  ojson b = chat({{"max_tokens", 5}, {"max_completion_tokens", 7.0}, {"top_k", -1}, {"stop", {"a", "b"}}});
  b.erase("model");
  const ApiRequest r2 = parse_chat_request(b, defaults());
  EXPECT_EQ(r2.max_tokens, 7);
  EXPECT_EQ(r2.sampling.top_k, 0);
  EXPECT_EQ(r2.stop.size(), 2u);
  EXPECT_EQ(r2.sampling.temperature, 0.7f);
}

TEST(ServerRequest, RefusesBadValuesNamingTheField) {
  const std::vector<std::pair<ojson, std::string>> cases = {
      {chat({{"temperature", -1}}), "temperature"},
      {chat({{"temperature", "hot"}}), "temperature"},
      {chat({{"top_p", 0}}), "top_p"},
      {chat({{"top_p", 1.5}}), "top_p"},
      {chat({{"top_k", -2}}), "top_k"},
      {chat({{"top_k", 2.5}}), "top_k"},
      {chat({{"min_p", 2}}), "min_p"},
      {chat({{"repetition_penalty", 0}}), "repetition_penalty"},
      {chat({{"frequency_penalty", 3}}), "frequency_penalty"},
      {chat({{"presence_penalty", -2.5}}), "presence_penalty"},
      {chat({{"max_tokens", 0}}), "max_tokens"},
      {chat({{"max_tokens", "many"}}), "max_tokens"},
      {chat({{"max_completion_tokens", -3}}), "max_completion_tokens"},
      {chat({{"n", 2}}), "n"},
      {chat({{"stream", "yes"}}), "stream"},
      {chat({{"stream_options", {{"include_usage", true}}}}), "stream_options"},
      {chat({{"stop", 5}}), "stop"},
      {chat({{"stop", {"a", 1}}}), "stop"},
      {chat({{"seed", "x"}}), "seed"},
      {chat({{"logprobs", 1}}), "logprobs"},
      {chat({{"top_logprobs", 3}}), "top_logprobs"},
      {chat({{"logprobs", true}, {"top_logprobs", 21}}), "top_logprobs"},
      {chat({{"logit_bias", {{"50", 1}}}}), "logit_bias"},
      {chat({{"response_format", {{"type", "json_object"}}}}), "response_format"},
      {chat({{"messages", ojson::array()}}), "messages"},
      {chat({{"messages", "hi"}}), "messages"},
      {chat({{"messages", {{{"content", "no role"}}}}}), "messages[0].role"},
      {chat({{"messages", {{{"role", "wizard"}, {"content", "x"}}}}}), "messages[0].role"},
      {chat({{"messages", {{{"role", "user"}, {"content", 5}}}}}), "messages[0].content"},
      {chat({{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}}), "messages[0].content[0]"},
      {chat({{"messages", {{{"role", "assistant"}, {"tool_calls", {{{"function", {{"name", "f"}, {"arguments", "{bad"}}}}}}}}}}),
       "messages[0].tool_calls[0].function.arguments"},
      {chat({{"tools", "all"}}), "tools"},
      {chat({{"tools", {{{"type", "function"}, {"function", {{"description", "no name"}}}}}}}), "tools[0].function.name"},
      {chat({{"tool_choice", "required"}, {"tools", {{{"type", "function"}, {"function", {{"name", "f"}}}}}}}), "tool_choice"},
      {chat({{"tool_choice", 3}}), "tool_choice"},
      {chat({{"chat_template_kwargs", "x"}}), "chat_template_kwargs"},
  };
  for (const auto& [body, param] : cases) {
    const ApiError e = refusal(body);
    EXPECT_EQ(e.status, 400) << body.dump();
    EXPECT_EQ(e.param, param) << body.dump() << ": " << e.what();
    EXPECT_EQ(error_json(e)["error"]["type"], "invalid_request_error");
  }
  ojson no_messages = chat();
  no_messages.erase("messages");
  EXPECT_EQ(refusal(no_messages).param, "messages");
  const ApiError unknown = refusal(chat({{"model", "gpt-4"}}));
  EXPECT_EQ(unknown.status, 404);
  EXPECT_EQ(unknown.code, "model_not_found");
}

TEST(ServerRequest, ToolChoiceNeedsTheParser) {
  const ojson tools = {{{"type", "function"}, {"function", {{"name", "get_weather"}, {"parameters", {{"type", "object"}}}}}}};
  EXPECT_TRUE(parse_chat_request(chat({{"tools", tools}}), defaults()).parse_tool_calls);  // absent = auto
  EXPECT_FALSE(parse_chat_request(chat({{"tools", tools}, {"tool_choice", "none"}}), defaults()).parse_tool_calls);
  const ApiError e = refusal(chat({{"tools", tools}}), true, defaults(false));
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(std::string(e.what()).find("--enable-auto-tool-choice"), std::string::npos);
  // tool_choice "none" is fine without the parser; so is "auto" without tools.
  EXPECT_FALSE(parse_chat_request(chat({{"tools", tools}, {"tool_choice", "none"}}), defaults(false)).parse_tool_calls);
  EXPECT_FALSE(parse_chat_request(chat({{"tool_choice", "auto"}}), defaults(false)).parse_tool_calls);
}

TEST(ServerRequest, ToolCallArgumentStringsBecomeObjects) {
  const ojson messages = ojson::parse(R"([
    {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}},
      {"id": "c2", "type": "function", "function": {"name": "now", "arguments": ""}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}])");
  const ApiRequest r = parse_chat_request(chat({{"messages", messages}}), defaults());
  const ojson& args = r.messages[1]["tool_calls"][0]["function"]["arguments"];
  ASSERT_TRUE(args.is_object());
  EXPECT_EQ(args.dump(), R"({"city":"Paris","days":2})");  // key order kept
  EXPECT_EQ(r.messages[1]["tool_calls"][1]["function"]["arguments"], ojson::object());
}

TEST(ServerRequest, CompletionPrompts) {
  EXPECT_EQ(parse_completion_request(completion(), defaults()).prompt_text, "Once upon");
  EXPECT_EQ(parse_completion_request(completion({{"prompt", {"one"}}}), defaults()).prompt_text, "one");
  EXPECT_EQ(*parse_completion_request(completion({{"prompt", {5, 6, 7}}}), defaults()).prompt_ids,
            (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(*parse_completion_request(completion({{"prompt", {{8, 9}}}}), defaults()).prompt_ids,
            (std::vector<int32_t>{8, 9}));
  const ApiRequest lp = parse_completion_request(completion({{"logprobs", 2}}), defaults());
  EXPECT_TRUE(lp.logprobs);
  EXPECT_EQ(lp.top_logprobs, 2);
  for (const ojson& bad : {completion({{"prompt", ""}}), completion({{"prompt", {"a", "b"}}}), completion({{"prompt", 5}}),
                           completion({{"prompt", {1, -2}}}), completion({{"prompt", ojson::array()}}),
                           completion({{"prompt", {{1}, {2}}}})}) {
    const ApiError e = refusal(bad, false);
    EXPECT_EQ(e.status, 400) << bad.dump();
    EXPECT_EQ(e.param, "prompt") << bad.dump();
  }
  EXPECT_EQ(refusal(completion({{"echo", true}}), false).param, "echo");
  EXPECT_EQ(refusal(completion({{"best_of", 3}}), false).param, "best_of");
  EXPECT_EQ(refusal(completion({{"suffix", "x"}}), false).param, "suffix");
  EXPECT_EQ(refusal(completion({{"logprobs", 50}}), false).param, "logprobs");
}

TEST(ServerRequest, JsonBodies) {
  EXPECT_EQ(parse_json_body(R"({"a": [1, {"b": "]]]"}]})")["a"][1]["b"], "]]]");
  for (const std::string bad : {"", "{", "[1, 2]", "\"text\"", "{\"a\": 1,}", "{\"a\": \"\xff\"}"}) {
    try {
      parse_json_body(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const ApiError& e) {
      EXPECT_EQ(e.status, 400);
    }
  }
  // Deep nesting is refused before anything recursive sees it.
  std::string deep(100000, '[');
  deep = "{\"a\": " + deep;
  EXPECT_THROW(parse_json_body(deep), ApiError);
}

TEST(ServerRequest, PromptsAndTheContextLimit) {
  const text::Tokenizer tok = text::Tokenizer::from_model_dir(test::tiny_model_dir());
  const text::ChatTemplate tmpl = text::ChatTemplate::from_model_dir(test::tiny_model_dir());
  const ApiRequest r = parse_chat_request(chat(), defaults());
  const auto ids = build_prompt_ids(r, tok, &tmpl);
  EXPECT_EQ(tok.decode(ids), "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nHi[e~[\n]~b]ai\n<think>\n");
  EXPECT_EQ(ids[0], 0);  // the BOS text is the special token

  // A template's raise_exception() is the client's fault: 400.
  const ApiRequest orphan =
      parse_chat_request(chat({{"messages", {{{"role", "tool"}, {"content", "x"}}}}}), defaults());
  try {
    build_prompt_ids(orphan, tok, &tmpl);
    ADD_FAILURE() << "rendered an orphan tool message";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find("must follow an assistant"), std::string::npos);
  }
  EXPECT_THROW(build_prompt_ids(r, tok, nullptr), ApiError);

  const GenerationRequest g = make_generation_request(r, ids, 100);
  EXPECT_EQ(g.max_tokens, 100 - int(ids.size()));  // unset: the rest of the context
  try {
    make_generation_request(r, ids, int(ids.size()));
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(e.code, "context_length_exceeded");
    EXPECT_NE(std::string(e.what()).find("maximum context length is " + std::to_string(ids.size()) + " tokens"),
              std::string::npos);
  }
  ApiRequest r5 = r;
  r5.max_tokens = 50;
  try {
    make_generation_request(r5, ids, 60);
    ADD_FAILURE();
  } catch (const ApiError& e) {
    EXPECT_EQ(e.param, "max_tokens");
    EXPECT_NE(std::string(e.what()).find("maximum context length is 60 tokens"), std::string::npos);
  }
  const ApiRequest big_id = parse_completion_request(completion({{"prompt", {1, 99999}}}), defaults());
  EXPECT_THROW(build_prompt_ids(big_id, tok, &tmpl), ApiError);
}

}  // namespace
}  // namespace moeq::server
