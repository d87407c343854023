#include "text/chat_template.h"

#include <fstream>
#include <optional>
#include <sstream>

#include "core/error.h"

namespace moeq::text {

namespace {

using ojson = nlohmann::ordered_json;

std::string read_file(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) fail("{}: cannot open", p.string());
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A special token in tokenizer_config.json: a string, or an AddedToken object {"content": ...}.
std::optional<std::string> token_text(const ojson& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

jinja::Value to_value(const ojson& j) { return jinja::from_json(j); }

}  // namespace

ojson ChatTemplate::special_tokens_from_config(const ojson& config) {
  ojson out = ojson::object();
  for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
    if (!config.contains(key)) continue;
    if (auto t = token_text(config[key])) out[key] = *t;
  }
  if (config.contains("additional_special_tokens") && config["additional_special_tokens"].is_array()) {
    ojson list = ojson::array();
    for (const auto& t : config["additional_special_tokens"])
      if (auto s = token_text(t)) list.push_back(*s);
    if (!list.empty()) out["additional_special_tokens"] = list;
  }
  return out;
}

ChatTemplate::ChatTemplate(std::string_view source, const ojson& special_tokens)
    : source_(source), default_(std::make_shared<jinja::Template>(source)), special_tokens_(special_tokens) {
  if (!special_tokens_.is_object()) fail("chat template special tokens must be a JSON object");
}

ChatTemplate ChatTemplate::from_model_dir(const std::filesystem::path& dir) {
  return with_context(dir.string(), [&] {
    ChatTemplate t;
    ojson config = ojson::object();
    const auto config_path = dir / "tokenizer_config.json";
    if (std::filesystem::exists(config_path)) {
      try {
        config = ojson::parse(read_file(config_path));
      } catch (const nlohmann::json::exception& e) {
        fail("tokenizer_config.json: {}", e.what());
      }
      t.special_tokens_ = special_tokens_from_config(config);
    }
    const auto jinja_path = dir / "chat_template.jinja";
    if (std::filesystem::exists(jinja_path)) {
      t.source_ = read_file(jinja_path);
      t.default_ = std::make_shared<jinja::Template>(t.source_);
      return t;
    }
    if (!config.contains("chat_template")) fail("no chat template (neither chat_template.jinja nor tokenizer_config.json \"chat_template\")");
    const ojson& ct = config["chat_template"];
    if (ct.is_string()) {
      t.source_ = ct.get<std::string>();
      t.default_ = std::make_shared<jinja::Template>(t.source_);
      return t;
    }
    if (!ct.is_array()) fail("tokenizer_config.json: \"chat_template\" must be a string or a list of {{name, template}}");
    for (const auto& entry : ct) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") || !entry["name"].is_string() ||
          !entry["template"].is_string())
        fail("tokenizer_config.json: each \"chat_template\" entry needs a string name and template");
      const std::string name = entry["name"].get<std::string>();
      if (name == "default") {
        t.source_ = entry["template"].get<std::string>();
        t.default_ = std::make_shared<jinja::Template>(t.source_);
      } else if (name == "tool_use") {
        t.tool_use_ = std::make_shared<jinja::Template>(entry["template"].get<std::string>());
      }
    }
    if (!t.default_) fail("tokenizer_config.json: no chat template named \"default\"");
    return t;
  });
}

const jinja::Template& ChatTemplate::pick(bool has_tools) const {
  return (has_tools && tool_use_) ? *tool_use_ : *default_;
}

std::string ChatTemplate::render(const ojson& messages, const ojson& tools, bool add_generation_prompt,
                                 const ojson& extra) const {
  if (!messages.is_array()) throw jinja::TemplateError("messages must be a JSON array", false);
  if (!tools.is_null() && !tools.is_array()) throw jinja::TemplateError("tools must be null or a JSON array", false);
  if (!extra.is_null() && !extra.is_object()) throw jinja::TemplateError("extra template variables must be a JSON object", false);
  jinja::Dict ctx;
  try {
    for (auto it = special_tokens_.begin(); it != special_tokens_.end(); ++it) ctx.set(jinja::Value(it.key()), to_value(it.value()));
    if (extra.is_object()) {
      for (auto it = extra.begin(); it != extra.end(); ++it) {
        const std::string& k = it.key();
        if (k == "messages" || k == "tools" || k == "documents" || k == "add_generation_prompt")
          fail("'{}' cannot be passed as an extra chat template variable", k);
        ctx.set(jinja::Value(k), to_value(it.value()));
      }
    }
    ctx.set(jinja::Value("messages"), to_value(messages));
    ctx.set(jinja::Value("tools"), tools.is_null() ? jinja::Value(jinja::None{}) : to_value(tools));
    ctx.set(jinja::Value("documents"), jinja::Value(jinja::None{}));
    ctx.set(jinja::Value("add_generation_prompt"), jinja::Value(add_generation_prompt));
  } catch (const jinja::TemplateError&) {
    throw;
  } catch (const moeq::Error& e) {
    throw jinja::TemplateError(e.what(), false);
  }
  return pick(tools.is_array() && !tools.empty()).render(ctx);
}

std::string ChatTemplate::render(const nlohmann::json& messages, const nlohmann::json& tools, bool add_generation_prompt,
                                 const nlohmann::json& extra) const {
  // nlohmann::json has already sorted object keys; converting keeps that order.
  return render(ojson(messages), ojson(tools), add_generation_prompt, ojson(extra));
}

}  // namespace moeq::text
