// ChatTemplate: finding the template in a model directory, the variables it passes (as
// transformers does), and its error handling. Expected strings were rendered with jinja2.
#include <gtest/gtest.h>

#include <fstream>

#include "support/test_support.h"
#include "text/chat_template.h"

namespace moeq::test {
namespace {

using ojson = nlohmann::ordered_json;
using text::ChatTemplate;

void write(const std::filesystem::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

TEST(ChatTemplate, LoadsMiniMaxFromTheModelDirectory) {
  const ChatTemplate t = ChatTemplate::from_model_dir(tiny_model_dir());
  EXPECT_EQ(t.special_tokens(), ojson::parse(R"({"bos_token": "]~!b[", "eos_token": "[e~["})"));
  const ojson messages = ojson::parse(R"([{"role": "user", "content": "Hi"}])");
  EXPECT_EQ(t.render(messages, ojson(), true),
            "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nHi[e~[\n]~b]ai\n<think>\n");
  // The nlohmann::json overload renders the same.
  EXPECT_EQ(t.render(nlohmann::json::parse(R"([{"role": "user", "content": "Hi"}])"), nlohmann::json(), true),
            t.render(messages, ojson(), true));
}

TEST(ChatTemplate, PassesTheVariablesTransformersPasses) {
  const ChatTemplate t(
      "{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}|{{ tools is none }}|{{ documents is none }}|"
      "{{ messages|length }}|{{ add_generation_prompt }}|{{ extra_flag }}",
      ojson{{"bos_token", "<s>"}, {"eos_token", "</s>"}});
  EXPECT_EQ(t.render(ojson::array(), ojson(), false, ojson{{"extra_flag", 3}}), "<s>|</s>|False|True|True|0|False|3");
  // Extra variables may override special tokens, not the fixed arguments.
  EXPECT_EQ(ChatTemplate("{{ bos_token }}", ojson{{"bos_token", "<s>"}}).render(ojson::array(), ojson(), false, ojson{{"bos_token", "B"}}), "B");
  EXPECT_THROW(t.render(ojson::array(), ojson(), false, ojson{{"messages", 1}}), text::jinja::TemplateError);
  EXPECT_THROW(t.render(ojson::object(), ojson(), false), text::jinja::TemplateError);
  EXPECT_THROW(t.render(ojson::array(), ojson::object(), false), text::jinja::TemplateError);
}

TEST(ChatTemplate, ReadsTokenizerConfigTemplates) {
  TempDir dir;
  // A plain string, with AddedToken-style special tokens.
  write(dir / "tokenizer_config.json",
        R"({"chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.content }}]{% endfor %}",
            "bos_token": {"__type": "AddedToken", "content": "<B>"}, "eos_token": "<E>", "pad_token": null})");
  const ojson msgs = ojson::parse(R"([{"role": "user", "content": "x"}])");
  EXPECT_EQ(ChatTemplate::from_model_dir(dir.path()).render(msgs, ojson(), false), "<B>[x]");

  // Named templates: "default", and "tool_use" when the request has tools (as transformers picks).
  write(dir / "tokenizer_config.json",
        R"({"chat_template": [{"name": "default", "template": "plain"}, {"name": "tool_use", "template": "tools:{{ tools|length }}"}]})");
  const ChatTemplate named = ChatTemplate::from_model_dir(dir.path());
  EXPECT_EQ(named.render(msgs, ojson(), false), "plain");
  EXPECT_EQ(named.render(msgs, ojson::parse(R"([{"type": "function", "function": {"name": "f"}}])"), false), "tools:1");

  // chat_template.jinja wins over tokenizer_config.json.
  write(dir / "chat_template.jinja", "from file\n");
  EXPECT_EQ(ChatTemplate::from_model_dir(dir.path()).render(msgs, ojson(), false), "from file");
}

TEST(ChatTemplate, ReportsMissingAndBrokenTemplates) {
  TempDir dir;
  EXPECT_THROW(ChatTemplate::from_model_dir(dir.path()), Error);
  write(dir / "tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_THROW(ChatTemplate::from_model_dir(dir.path()), Error);
  write(dir / "tokenizer_config.json", R"({"chat_template": [{"name": "other", "template": "x"}]})");
  EXPECT_THROW(ChatTemplate::from_model_dir(dir.path()), Error);
  write(dir / "tokenizer_config.json", R"({"chat_template": "{% if %}"})");
  try {
    ChatTemplate::from_model_dir(dir.path());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("line 1"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, MiniMaxRaisesOnAnOrphanToolMessage) {
  const ChatTemplate t = ChatTemplate::from_model_dir(tiny_model_dir());
  try {
    t.render(ojson::parse(R"([{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}])"), ojson(), true);
    FAIL() << "no error";
  } catch (const text::jinja::TemplateError& e) {
    EXPECT_TRUE(e.raised_by_template());
    EXPECT_STREQ(e.what(), "A tool message must follow an assistant message with tool calls.");
  }
}

}  // namespace
}  // namespace moeq::test
