// A model's chat template: turns OpenAI-style `messages` (+ `tools`) into the prompt text, exactly
// as Hugging Face transformers' apply_chat_template(tokenize=False) does (which vLLM and SGLang
// use): the template sees messages, tools (None when absent), documents (None),
// add_generation_prompt, the tokenizer's special tokens (bos_token, eos_token, ...) and any extra
// chat_template_kwargs. Parsed once; render() is const and safe to call from many threads.
//
// Key order matters for parity: `tools | tojson` prints keys in the order the client sent them,
// as Python's json.loads keeps it. Parse request bodies into nlohmann::ordered_json and use the
// ordered overload; nlohmann::json sorts object keys.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "text/jinja/template.h"

namespace moeq::text {

class ChatTemplate {
 public:
  // DIR/chat_template.jinja if present, else tokenizer_config.json's "chat_template" (a string, or
  // a list of {name, template}: "default", or "tool_use" when the request has tools, like
  // transformers). Special tokens come from tokenizer_config.json. Throws moeq::Error.
  static ChatTemplate from_model_dir(const std::filesystem::path& dir);

  // `special_tokens`: template variables such as {"bos_token": "<s>", "eos_token": "</s>"}.
  // Throws jinja::TemplateError (a moeq::Error) on syntax errors.
  explicit ChatTemplate(std::string_view source,
                        const nlohmann::ordered_json& special_tokens = nlohmann::ordered_json::object());

  // `tools`: null or an array. `extra`: an object of additional template variables (e.g.
  // {"enable_thinking": false}); it may override special tokens but not the four fixed names.
  // Throws jinja::TemplateError; raised_by_template() tells a template's raise_exception() apart.
  std::string render(const nlohmann::ordered_json& messages, const nlohmann::ordered_json& tools,
                     bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;
  std::string render(const nlohmann::json& messages, const nlohmann::json& tools, bool add_generation_prompt,
                     const nlohmann::json& extra = nlohmann::json::object()) const;

  // transformers' special_tokens_map from a tokenizer_config.json object: bos_token, eos_token,
  // unk/sep/pad/cls/mask_token when set (strings or AddedToken objects), additional_special_tokens.
  static nlohmann::ordered_json special_tokens_from_config(const nlohmann::ordered_json& tokenizer_config);

  const std::string& source() const { return source_; }
  const nlohmann::ordered_json& special_tokens() const { return special_tokens_; }

 private:
  ChatTemplate() = default;
  const jinja::Template& pick(bool has_tools) const;

  std::string source_;  // the default template's text
  std::shared_ptr<const jinja::Template> default_;
  std::shared_ptr<const jinja::Template> tool_use_;  // optional named "tool_use" template
  nlohmann::ordered_json special_tokens_ = nlohmann::ordered_json::object();
};

}  // namespace moeq::text
