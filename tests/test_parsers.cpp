// The streaming reasoning and MiniMax tool-call parsers on crafted model outputs. Each output is
// parsed whole, split in two at every byte boundary, and fed one byte at a time: every way must
// give the same final result, equal to the expected one (which follows vLLM's minimax_m2 parsers).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>

#include "text/parsers/minimax_tool_parser.h"
#include "text/parsers/reasoning_parser.h"

namespace moeq::text {
namespace {

using ojson = nlohmann::ordered_json;

// All the ways we feed an output: whole, every two-piece split, and byte by byte.
std::vector<std::vector<std::string>> feeds(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  out.push_back({text});
  for (size_t i = 0; i <= text.size(); ++i) out.push_back({text.substr(0, i), text.substr(i)});
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  out.push_back(bytes);
  return out;
}

std::string describe(const std::vector<std::string>& feed) {
  if (feed.size() == 1) return "whole";
  if (feed.size() == 2) return "split at byte " + std::to_string(feed[0].size());
  return "byte by byte";
}

// ---- reasoning -------------------------------------------------------------------------------------

void expect_reasoning(ReasoningMode mode, const std::string& text, const std::string& reasoning, const std::string& content) {
  for (const auto& feed : feeds(text)) {
    ReasoningParser p(mode);
    ReasoningDelta total;
    for (const auto& piece : feed) {
      const ReasoningDelta d = p.push(piece);
      total.reasoning += d.reasoning;
      total.content += d.content;
      // Emitted text is final: always a prefix of the expected result.
      ASSERT_EQ(total.reasoning, reasoning.substr(0, total.reasoning.size())) << describe(feed);
      ASSERT_EQ(total.content, content.substr(0, total.content.size())) << describe(feed);
    }
    const ReasoningDelta d = p.finish();
    total.reasoning += d.reasoning;
    total.content += d.content;
    EXPECT_EQ(total.reasoning, reasoning) << describe(feed) << " of " << text;
    EXPECT_EQ(total.content, content) << describe(feed) << " of " << text;
  }
}

TEST(ReasoningParser, SplitsAtTheEndOfThinkingVerbatim) {
  const auto M = ReasoningMode::MiniMax;
  // The prompt ended with "<think>\n": the output starts inside the reasoning. Newlines are kept.
  expect_reasoning(M, "Let me think.\n</think>\n\nThe answer is 4.", "Let me think.\n", "\n\nThe answer is 4.");
  expect_reasoning(M, "still thinking when the tokens ran out", "still thinking when the tokens ran out", "");
  expect_reasoning(M, "</think>answer only", "", "answer only");
  expect_reasoning(M, "all reasoning</think>", "all reasoning", "");
  // An explicit <think> at the start is dropped; elsewhere it is text.
  expect_reasoning(M, "<think>\nexplicit\n</think>\n\nok", "\nexplicit\n", "\n\nok");
  expect_reasoning(M, "a <think> b</think>c", "a <think> b", "c");
  expect_reasoning(M, "<thinking>x</think>y", "<thinking>x", "y");
  // A repeated </think> in the answer is removed, as vLLM does.
  expect_reasoning(M, "r</think>a</think>b</think", "r", "ab</think");
  // Partial tags that never complete come out at the end.
  expect_reasoning(M, "abc</thi", "abc</thi", "");
  expect_reasoning(M, "<thi", "<thi", "");
  expect_reasoning(M, "", "", "");
  expect_reasoning(M, "思考🙂 ü</think>答案 é", "思考🙂 ü", "答案 é");
  expect_reasoning(M, "x<</think><<think>", "x<", "<<think>");
}

TEST(ReasoningParser, AppendThinkKeepsEverythingInContent) {
  const auto A = ReasoningMode::MiniMaxAppendThink;
  expect_reasoning(A, "plan\n</think>\n\nanswer", "", "<think>plan\n</think>\n\nanswer");
  expect_reasoning(A, "<think>plan</think>answer", "", "<think>plan</think>answer");
  expect_reasoning(A, "<thin", "", "<think><thin");
  expect_reasoning(A, "", "", "<think>");
  expect_reasoning(A, "ünïcode</think>✓", "", "<think>ünïcode</think>✓");
}

TEST(ReasoningParser, ModeNames) {
  EXPECT_EQ(reasoning_mode_from_name("minimax"), ReasoningMode::MiniMax);
  EXPECT_EQ(reasoning_mode_from_name("minimax_m2"), ReasoningMode::MiniMax);
  EXPECT_EQ(reasoning_mode_from_name("minimax_append_think"), ReasoningMode::MiniMaxAppendThink);
  EXPECT_EQ(reasoning_mode_from_name("minimax_m2_append_think"), ReasoningMode::MiniMaxAppendThink);
  EXPECT_FALSE(reasoning_mode_from_name("deepseek_r1"));
  const ReasoningDelta d = ReasoningParser::parse(ReasoningMode::MiniMax, "r</think>c");
  EXPECT_EQ(d.reasoning, "r");
  EXPECT_EQ(d.content, "c");
}

// ---- tool calls ------------------------------------------------------------------------------------

const ojson kTools = ojson::parse(R"([
  {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
    "location": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
    "ratio": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string"}}, "opts": {"type": "object"},
    "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]}, "mode": {"enum": ["fast", "slow"]},
    "mixed": {"type": ["number", "string"]}}}}},
  {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}
])");

struct Call {
  std::string id, name, arguments;
  bool operator==(const Call&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Call& c) { return os << c.id << " " << c.name << " " << c.arguments; }

void expect_tools(const std::string& text, const std::string& content, const std::vector<Call>& calls) {
  for (const auto& feed : feeds(text)) {
    MiniMaxToolParser p(kTools, counter_tool_call_ids());
    std::string got_content;
    std::vector<Call> got_calls;
    auto take = [&](const ToolParseDelta& d) {
      got_content += d.content;
      for (const auto& c : d.calls) {
        EXPECT_EQ(c.index, int(got_calls.size()));
        got_calls.push_back({c.id, c.name, c.arguments});
      }
    };
    for (const auto& piece : feed) {
      take(p.push(piece));
      ASSERT_EQ(got_content, content.substr(0, got_content.size())) << describe(feed) << " of " << text;
    }
    take(p.finish());
    EXPECT_EQ(got_content, content) << describe(feed) << " of " << text;
    EXPECT_EQ(got_calls, calls) << describe(feed) << " of " << text;
  }
}

TEST(MiniMaxToolParser, TypesParametersByTheToolSchema) {
  expect_tools(
      "I'll check.\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
      "<parameter name=\"location\">Paris, FR</parameter>\n<parameter name=\"days\">3</parameter>\n"
      "<parameter name=\"metric\">true</parameter>\n<parameter name=\"ratio\">0.5</parameter>\n"
      "</invoke>\n</minimax:tool_call>",
      "I'll check.\n\n",
      {{"call_0", "get_weather", R"({"location": "Paris, FR", "days": 3, "metric": true, "ratio": 0.5})"}});
}

TEST(MiniMaxToolParser, SeveralInvokesAndBlocksWithNestedJson) {
  expect_tools(
      "<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
      "<parameter name=\"tags\">[\"a\", \"b\"]</parameter>\n"
      "<parameter name=\"opts\">{\"nested\": {\"list\": [1, 2.5, null, true]}, \"s\": \"x\\\"y\"}</parameter>\n"
      "<parameter name=\"limit\">null</parameter>\n</invoke>\n"
      "<invoke name=\"noop\">\n</invoke>\n</minimax:tool_call>\n"
      "Between blocks.\n"
      "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"limit\">7</parameter>\n"
      "<parameter name=\"mode\">fast</parameter>\n<parameter name=\"mixed\">12.0</parameter>\n</invoke>\n"
      "</minimax:tool_call>\nDone.",
      "\nBetween blocks.\n\nDone.",
      {{"call_0", "get_weather",
        R"({"tags": ["a", "b"], "opts": {"nested": {"list": [1, 2.5, null, true]}, "s": "x\"y"}, "limit": null})"},
       {"call_1", "noop", "{}"},
       {"call_2", "get_weather", R"({"limit": 7, "mode": "fast", "mixed": 12})"}});
}

TEST(MiniMaxToolParser, ConvertsLikeVllm) {
  // Failed conversions fall back to JSON, then to the text; "None"/"null"/"nil" are null.
  expect_tools(
      "<minimax:tool_call><invoke name=\"get_weather\">"
      "<parameter name=\"days\"> 0012 </parameter><parameter name=\"metric\">Yes</parameter>"
      "<parameter name=\"ratio\">1e3</parameter><parameter name=\"location\">None</parameter>"
      "<parameter name=\"limit\">abc</parameter><parameter name=\"mixed\">abc</parameter>"
      "<parameter name=\"opts\">[1,2]</parameter><parameter name=\"tags\">not json</parameter>"
      "<parameter name=\"extra\">42</parameter><parameter name=\"days\">nan</parameter>"
      "</invoke></minimax:tool_call>",
      "",
      {{"call_0", "get_weather",
        R"({"days": "nan", "metric": true, "ratio": 1000, "location": null, "limit": "abc", "mixed": "abc", "opts": [1, 2], "tags": "not json", "extra": "42"})"}});
  // A tool not in the request: every value stays a string (vLLM has no schema to type it).
  expect_tools(
      "<minimax:tool_call>\n<invoke name=\"unknown_tool\">\n<parameter name=\"n\">42</parameter>\n"
      "<parameter name=\"obj\">{\"a\":1}</parameter>\n</invoke>\n</minimax:tool_call>",
      "", {{"call_0", "unknown_tool", R"({"n": "42", "obj": "{\"a\":1}"})"}});
}

TEST(MiniMaxToolParser, UnicodeAndSurroundingWhitespace) {
  expect_tools(
      "Voilà 🙂\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"location\">\n"
      "  São Paulo 🇧🇷 \"q\" \\ \t\n</parameter>\n</invoke>\n</minimax:tool_call>\n",
      "Voilà 🙂\n", {{"call_0", "get_weather", R"({"location": "São Paulo 🇧🇷 \"q\" \\"})"}});
  // Whitespace alone next to blocks is not content.
  expect_tools(
      "\n\n<minimax:tool_call><invoke name=\"noop\"></invoke></minimax:tool_call>\n\n"
      "<minimax:tool_call><invoke name=\"noop\"></invoke></minimax:tool_call>\n",
      "", {{"call_0", "noop", "{}"}, {"call_1", "noop", "{}"}});
}

TEST(MiniMaxToolParser, PlainTextIsContent) {
  expect_tools("Just text.\n", "Just text.\n", {});
  expect_tools("   ", "   ", {});
  expect_tools("", "", {});
  expect_tools("Use <minimax:tool_calls> literally, or <minimax:tool_call", "Use <minimax:tool_calls> literally, or <minimax:tool_call", {});
  expect_tools("a <invoke name=\"x\"></invoke> b", "a <invoke name=\"x\"></invoke> b", {});
}

TEST(MiniMaxToolParser, MalformedCalls) {
  // Truncated before any invoke completed: the whole block comes back as content.
  const std::string truncated =
      "<minimax:tool_call>\n<invoke name=\"get_weather\">\n<parameter name=\"location\">Par";
  expect_tools("Sure." + truncated, "Sure." + truncated, {});
  // Truncated after one invoke: that call, and the rest raw.
  expect_tools("<minimax:tool_call>\n<invoke name=\"noop\">\n</invoke>\n<invoke name=\"get_weather\">\n<parameter name=\"days\">2",
               "\n<invoke name=\"get_weather\">\n<parameter name=\"days\">2", {{"call_0", "noop", "{}"}});
  // An unclosed block whose last invoke completed: nothing left over.
  expect_tools("<minimax:tool_call>\n<invoke name=\"noop\">\n</invoke>\n", "", {{"call_0", "noop", "{}"}});
  // The block closes inside an invoke: the invoke is dropped.
  expect_tools("<minimax:tool_call><invoke name=\"noop\"><parameter name=\"x\">1</parameter></minimax:tool_call>ok", "ok", {});
  // A parameter without its closing tag runs to the next </parameter> (vLLM's regex does the same)...
  expect_tools(
      "<minimax:tool_call><invoke name='get_weather'><parameter name='days'>5<parameter name=\"location\">Rome"
      "</parameter></invoke></minimax:tool_call>",
      "", {{"call_0", "get_weather", R"({"days": "5<parameter name=\"location\">Rome"})"}});
  // ...or is dropped when </invoke> comes first.
  expect_tools("<minimax:tool_call><invoke name=\"get_weather\"><parameter name=\"days\">5</invoke></minimax:tool_call>", "",
               {{"call_0", "get_weather", "{}"}});
  // Text inside a block but outside invokes is ignored.
  expect_tools("<minimax:tool_call>junk<invoke name=\"noop\"></invoke>more junk</minimax:tool_call>", "", {{"call_0", "noop", "{}"}});
  // A repeated parameter keeps its first position and last value (a Python dict).
  expect_tools("<minimax:tool_call><invoke name=\"get_weather\"><parameter name=\"days\">1</parameter>"
               "<parameter name=\"metric\">0</parameter><parameter name=\"days\">2</parameter></invoke></minimax:tool_call>",
               "", {{"call_0", "get_weather", R"({"days": 2, "metric": false})"}});
}

TEST(MiniMaxToolParser, AfterTheReasoningParser) {
  // The server chains them: reasoning first, then tool calls in the content.
  const std::string output =
      "The user wants weather.\n</think>\n\n<minimax:tool_call>\n<invoke name=\"get_weather\">\n"
      "<parameter name=\"location\">Oslo</parameter>\n<parameter name=\"days\">2</parameter>\n</invoke>\n"
      "</minimax:tool_call>";
  for (const auto& feed : feeds(output)) {
    ReasoningParser rp(ReasoningMode::MiniMax);
    MiniMaxToolParser tp(kTools, counter_tool_call_ids("id"));
    std::string reasoning, content;
    std::vector<ToolCall> calls;
    auto tools_take = [&](const ToolParseDelta& d) {
      content += d.content;
      calls.insert(calls.end(), d.calls.begin(), d.calls.end());
    };
    for (const auto& piece : feed) {
      const ReasoningDelta r = rp.push(piece);
      reasoning += r.reasoning;
      tools_take(tp.push(r.content));
    }
    const ReasoningDelta r = rp.finish();
    reasoning += r.reasoning;
    tools_take(tp.push(r.content));
    tools_take(tp.finish());
    EXPECT_EQ(reasoning, "The user wants weather.\n") << describe(feed);
    EXPECT_EQ(content, "") << describe(feed);
    ASSERT_EQ(calls.size(), 1u) << describe(feed);
    EXPECT_EQ(calls[0].to_openai().dump(),
              R"({"id":"id0","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Oslo\", \"days\": 2}"}})");
  }
}

TEST(MiniMaxToolParser, ConvertParameterDirectly) {
  const ojson integer = {{"type", "integer"}}, number = {{"type", "number"}}, boolean = {{"type", "boolean"}};
  const ojson nullable = ojson::parse(R"({"type": ["integer", "null"]})");
  EXPECT_EQ(convert_tool_parameter("-17", &integer), -17);
  EXPECT_EQ(convert_tool_parameter("1_000", &integer), 1000);
  EXPECT_EQ(convert_tool_parameter("2.5", &integer), 2.5);  // not an int: JSON fallback
  EXPECT_EQ(convert_tool_parameter("2.50", &number), 2.5);
  EXPECT_EQ(convert_tool_parameter("-3.0", &number), -3);
  EXPECT_EQ(convert_tool_parameter("off", &boolean), false);
  EXPECT_EQ(convert_tool_parameter("NIL", &nullable), nullptr);
  EXPECT_EQ(convert_tool_parameter("{\"a\": [1]}", nullptr), "{\"a\": [1]}");
  const ojson object = {{"type", "object"}};
  EXPECT_EQ(convert_tool_parameter("{\"b\": 1, \"a\": 2}", &object).dump(), R"({"b":1,"a":2})");
}

TEST(MiniMaxToolParser, RandomIdsLookLikeVllms) {
  auto ids = random_tool_call_ids(42);
  const std::string a = ids(), b = ids();
  ASSERT_EQ(a.size(), 29u) << a;
  EXPECT_EQ(a.substr(0, 5), "call_");
  EXPECT_TRUE(std::all_of(a.begin() + 5, a.end(), [](unsigned char c) { return std::isxdigit(c) && !std::isupper(c); })) << a;
  EXPECT_NE(a, b);
  EXPECT_EQ(random_tool_call_ids(42)(), a);  // seeded: reproducible
}

}  // namespace
}  // namespace moeq::text
