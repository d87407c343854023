#include "server/openai_request.h"

#include <cmath>
#include <set>

#include "core/error.h"
#include "runtime/generation_config.h"
#include "server/api_error.h"

namespace moeq::server {
namespace {

using ojson = nlohmann::ordered_json;

constexpr int kMaxTopLogprobs = 20;
constexpr size_t kMaxStopStrings = 64;
constexpr int kMaxJsonDepth = 128;

[[noreturn]] void bad(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  throw ApiError(400, message, param, code);
}

// The field's value, or null when absent or JSON null (OpenAI clients send null for "unset").
const ojson* field(const ojson& body, const char* key) {
  const auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

std::optional<bool> get_bool(const ojson& body, const char* key) {
  const ojson* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) bad(key, fmt::format("'{}' must be a boolean, got {}", key, dump_json(*v)));
  return v->get<bool>();
}

// Integers; an integral float (5.0) is accepted as pydantic does.
std::optional<int64_t> get_int(const ojson& body, const char* key, int64_t lo, int64_t hi) {
  const ojson* v = field(body, key);
  if (!v) return std::nullopt;
  int64_t n = 0;
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    n = u > uint64_t(INT64_MAX) ? INT64_MAX : int64_t(u);
  } else if (v->is_number_integer()) {
    n = v->get<int64_t>();
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) && v->get<double>() == std::floor(v->get<double>()) &&
             std::fabs(v->get<double>()) < 9e18) {
    n = int64_t(v->get<double>());
  } else {
    bad(key, fmt::format("'{}' must be an integer, got {}", key, dump_json(*v)));
  }
  if (n < lo || n > hi) bad(key, fmt::format("'{}' must be in [{}, {}], got {}", key, lo, hi, n));
  return n;
}

std::optional<double> get_number(const ojson& body, const char* key) {
  const ojson* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) bad(key, fmt::format("'{}' must be a number, got {}", key, dump_json(*v)));
  return v->get<double>();
}

// Request values over the server defaults; each checked as it is set, so the error names it.
void apply_sampling(const ojson& body, SamplingParams& p) {
  auto check = [&](const char* key) {
    try {
      p.validate();
    } catch (const Error& e) {
      bad(key, e.what());
    }
  };
  auto num = [&](const char* key, float& dst) {
    if (auto v = get_number(body, key)) {
      if (!std::isfinite(*v) || std::fabs(*v) > 1e30) bad(key, fmt::format("'{}' is out of range", key));
      dst = float(*v);
      check(key);
    }
  };
  for (const auto& f : kSamplingFloatFields) num(f.name, p.*f.field);
  if (auto k = get_int(body, "top_k", -1, 1 << 30)) p.top_k = *k < 0 ? 0 : int(*k);  // -1 or 0: off
  if (auto s = get_int(body, "seed", INT64_MIN, INT64_MAX)) {
    p.seed = uint64_t(*s);
    p.has_seed = true;
  }
}

void parse_common(const ojson& body, const ServerDefaults& d, ApiRequest& r) {
  if (const ojson* m = field(body, "model")) {
    if (!m->is_string()) bad("model", "'model' must be a string");
    if (m->get<std::string>() != d.model_name)
      throw ApiError(404, fmt::format("The model `{}` does not exist. This server serves `{}`.", m->get<std::string>(), d.model_name),
                     "model", "model_not_found");
  }
  if (auto n = get_int(body, "n", INT64_MIN, INT64_MAX); n && *n != 1)
    bad("n", fmt::format("n = {} is not supported: moeq returns one choice per request (n must be 1)", *n));
  r.stream = get_bool(body, "stream").value_or(false);
  if (const ojson* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    if (!r.stream) bad("stream_options", "stream_options can only be given when stream is true");
    r.include_usage = get_bool(*so, "include_usage").value_or(false);
  }
  // max_completion_tokens is the newer name; it wins when both are given.
  const auto mt = get_int(body, "max_tokens", INT64_MIN, INT64_MAX);
  const auto mct = get_int(body, "max_completion_tokens", INT64_MIN, INT64_MAX);
  if (mct || mt) {
    const char* key = mct ? "max_completion_tokens" : "max_tokens";
    const int64_t v = mct ? *mct : *mt;
    if (v < 1) bad(key, fmt::format("'{}' must be at least 1, got {}", key, v));
    r.max_tokens = int(std::min<int64_t>(v, 1 << 30));
  }
  if (const ojson* s = field(body, "stop")) {
    if (s->is_string()) {
      r.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      if (s->size() > kMaxStopStrings) bad("stop", fmt::format("at most {} stop strings are accepted", kMaxStopStrings));
      for (const auto& x : *s) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or a list of strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", "'stop' must be a string or a list of strings");
    }
  }
  if (const ojson* lb = field(body, "logit_bias"); lb && !(lb->is_object() && lb->empty()))
    bad("logit_bias", "logit_bias is not supported");
  r.ignore_eos = get_bool(body, "ignore_eos").value_or(false);
  r.sampling = d.sampling;
  apply_sampling(body, r.sampling);
}

// A string member, or `fallback` when absent; "" when present but not a string (never throws,
// unlike ojson::value()).
std::string str_of(const ojson& obj, const char* key, const std::string& fallback = "") {
  const auto it = obj.find(key);
  if (it == obj.end()) return fallback;
  return it->is_string() ? it->get<std::string>() : std::string();
}

const std::set<std::string>& known_roles() {
  static const std::set<std::string> roles = {"system", "developer", "user", "assistant", "tool", "function"};
  return roles;
}

// Checks the messages and returns the copy the template renders: tool-call arguments sent as JSON
// strings (the OpenAI wire format) become objects, as vLLM does, since templates iterate them.
ojson prepare_messages(const ojson& messages) {
  if (!messages.is_array() || messages.empty()) bad("messages", "'messages' must be a non-empty array");
  ojson out = messages;
  for (size_t i = 0; i < out.size(); ++i) {
    ojson& m = out[i];
    const std::string at = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad(at, at + " must be an object");
    const ojson* role = field(m, "role");
    if (!role || !role->is_string()) bad(at + ".role", at + " needs a string 'role'");
    if (!known_roles().count(role->get<std::string>()))
      bad(at + ".role", fmt::format("{} has an unknown role '{}'", at, role->get<std::string>()));
    if (const ojson* c = field(m, "content")) {
      if (c->is_array()) {
        for (size_t j = 0; j < c->size(); ++j) {
          const ojson& part = (*c)[j];
          const bool text = part.is_object() && str_of(part, "type") == "text" && part.contains("text") &&
                            part["text"].is_string();
          if (!text) bad(fmt::format("{}.content[{}]", at, j), "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
        }
      } else if (!c->is_string()) {
        bad(at + ".content", at + ".content must be a string, a list of text parts, or null");
      }
    }
    if (const ojson* calls = field(m, "tool_calls")) {
      if (!calls->is_array()) bad(at + ".tool_calls", at + ".tool_calls must be an array");
      for (size_t j = 0; j < calls->size(); ++j) {
        ojson& call = m["tool_calls"][j];
        const std::string cat = fmt::format("{}.tool_calls[{}]", at, j);
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
          bad(cat, cat + " must be an object with a 'function'");
        ojson& fn = call["function"];
        if (!fn.contains("name") || !fn["name"].is_string()) bad(cat + ".function.name", cat + " needs a function name");
        ojson& args = fn["arguments"];  // inserts null when absent
        if (args.is_string()) {
          const std::string text = args.get<std::string>();
          if (text.empty()) {
            args = ojson::object();
          } else {
            ojson parsed = ojson::parse(text, nullptr, false);
            if (parsed.is_discarded() || !parsed.is_object())
              bad(cat + ".function.arguments", cat + ".function.arguments must be a JSON object (as a string or an object)");
            args = std::move(parsed);
          }
        } else if (args.is_null()) {
          args = ojson::object();
        } else if (!args.is_object()) {
          bad(cat + ".function.arguments", cat + ".function.arguments must be a JSON object (as a string or an object)");
        }
      }
    }
  }
  return out;
}

ojson check_tools(const ojson& body) {
  const ojson* tools = field(body, "tools");
  if (!tools) return ojson();
  if (!tools->is_array()) bad("tools", "'tools' must be an array");
  for (size_t i = 0; i < tools->size(); ++i) {
    const ojson& t = (*tools)[i];
    const std::string at = fmt::format("tools[{}]", i);
    if (!t.is_object() || str_of(t, "type", "function") != "function" || !t.contains("function") || !t["function"].is_object())
      bad(at, at + " must be {\"type\": \"function\", \"function\": {...}}");
    if (!t["function"].contains("name") || !t["function"]["name"].is_string()) bad(at + ".function.name", at + " needs a function name");
    if (t["function"].contains("parameters") && !t["function"]["parameters"].is_object() && !t["function"]["parameters"].is_null())
      bad(at + ".function.parameters", at + ".function.parameters must be a JSON schema object");
  }
  return tools->empty() ? ojson() : *tools;
}

}  // namespace

ojson parse_json_body(const std::string& body) {
  if (body.empty()) throw ApiError(400, "the request body is empty; expected a JSON object", "", "invalid_json");
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        throw ApiError(400, fmt::format("the JSON body is nested more than {} levels deep", kMaxJsonDepth), "", "invalid_json");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  ojson j;
  try {
    j = ojson::parse(body);
  } catch (const nlohmann::json::exception& e) {
    throw ApiError(400, fmt::format("malformed JSON in the request body: {}", e.what()), "", "invalid_json");
  }
  if (!j.is_object()) throw ApiError(400, "the request body must be a JSON object", "", "invalid_json");
  return j;
}

ApiRequest parse_chat_request(const ojson& body, const ServerDefaults& d) {
  ApiRequest r;
  r.endpoint = Endpoint::Chat;
  const ojson* messages = field(body, "messages");
  if (!messages) bad("messages", "'messages' is required", "missing_required_parameter");
  parse_common(body, d, r);
  r.messages = prepare_messages(*messages);
  r.tools = check_tools(body);

  r.logprobs = get_bool(body, "logprobs").value_or(false);
  if (auto n = get_int(body, "top_logprobs", 0, kMaxTopLogprobs)) {
    if (!r.logprobs && *n > 0) bad("top_logprobs", "top_logprobs needs logprobs to be true");
    r.top_logprobs = int(*n);
  }

  // tool_choice: absent means "auto" when tools are given (OpenAI, vLLM). "auto" needs the
  // parser; "required" and a named function need constrained decoding, which moeq lacks.
  std::string choice = r.tools.is_null() ? "none" : "auto";
  if (const ojson* tc = field(body, "tool_choice")) {
    if (tc->is_string()) {
      choice = tc->get<std::string>();
      if (choice != "none" && choice != "auto" && choice != "required")
        bad("tool_choice", "tool_choice must be \"none\", \"auto\", \"required\" or a named function");
    } else if (tc->is_object()) {
      choice = "named";
    } else {
      bad("tool_choice", "tool_choice must be a string or an object");
    }
  }
  if (choice == "required" || choice == "named")
    bad("tool_choice", "tool_choice \"required\" and named functions are not supported (they need constrained decoding); use \"auto\"");
  if (choice == "auto" && !r.tools.is_null()) {
    if (!d.tool_parser || !d.auto_tool_choice)
      bad("tool_choice", "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set");
    r.parse_tool_calls = true;
  }

  if (const ojson* rf = field(body, "response_format")) {
    if (!rf->is_object() || str_of(*rf, "type") != "text")
      bad("response_format", "only response_format {\"type\": \"text\"} is supported");
  }
  if (const ojson* kw = field(body, "chat_template_kwargs")) {
    if (!kw->is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    r.template_kwargs = *kw;
  }
  r.add_generation_prompt = get_bool(body, "add_generation_prompt").value_or(true);
  return r;
}

ApiRequest parse_completion_request(const ojson& body, const ServerDefaults& d) {
  ApiRequest r;
  r.endpoint = Endpoint::Completion;
  const ojson* prompt = field(body, "prompt");
  if (!prompt) bad("prompt", "'prompt' is required", "missing_required_parameter");
  parse_common(body, d, r);
  auto ids_of = [&](const ojson& a) {
    std::vector<int32_t> ids;
    for (const auto& x : a) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX)
        bad("prompt", "a token-id prompt must hold non-negative integers");
      ids.push_back(int32_t(x.get<int64_t>()));
    }
    return ids;
  };
  const char* one = "one prompt per request: a string, a list with one string, or a list of token ids";
  if (prompt->is_string()) {
    r.prompt_text = prompt->get<std::string>();
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_string()) {
    if (prompt->size() != 1) bad("prompt", std::string("batched prompts are not supported: ") + one);
    r.prompt_text = (*prompt)[0].get<std::string>();
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_array()) {
    if (prompt->size() != 1) bad("prompt", std::string("batched prompts are not supported: ") + one);
    r.prompt_ids = ids_of((*prompt)[0]);
  } else if (prompt->is_array()) {
    r.prompt_ids = ids_of(*prompt);
  } else {
    bad("prompt", std::string("'prompt' must be ") + one);
  }
  if (r.prompt_ids ? r.prompt_ids->empty() : r.prompt_text.empty()) bad("prompt", "the prompt is empty");

  if (auto n = get_int(body, "logprobs", 0, kMaxTopLogprobs)) {
    r.logprobs = true;
    r.top_logprobs = int(*n);
  }
  if (get_bool(body, "echo").value_or(false)) bad("echo", "echo is not supported");
  if (auto b = get_int(body, "best_of", INT64_MIN, INT64_MAX); b && *b != 1) bad("best_of", "best_of must be 1");
  if (const ojson* s = field(body, "suffix"); s && !(s->is_string() && s->get<std::string>().empty()))
    bad("suffix", "suffix is not supported");
  return r;
}

}  // namespace moeq::server
