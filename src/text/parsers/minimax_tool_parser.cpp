#include "text/parsers/minimax_tool_parser.h"

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <set>

#include "text/jinja/pystr.h"
#include "text/jinja/value.h"
#include "text/parsers/stream_util.h"

namespace moeq::text {

namespace {

using ojson = nlohmann::ordered_json;
namespace py = jinja::py;

constexpr std::string_view kStart = "<minimax:tool_call>";
constexpr std::string_view kEnd = "</minimax:tool_call>";
constexpr std::string_view kInvoke = "<invoke name=";
constexpr std::string_view kInvokeEnd = "</invoke>";
constexpr std::string_view kParam = "<parameter name=";
constexpr std::string_view kParamEnd = "</parameter>";
// A "<invoke name=" or "<parameter name=" with no '>' this far on is not a tag: we stop waiting.
constexpr size_t kMaxHeader = 4096;

bool ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// vLLM's _extract_name: strip, then drop one pair of surrounding quotes.
std::string extract_name(std::string_view raw) {
  std::string s = py::strip(raw, std::nullopt, true, true);
  if (s.size() >= 2 && ((s.front() == '"' && s.back() == '"') || (s.front() == '\'' && s.back() == '\'')))
    return s.substr(1, s.size() - 2);
  return s;
}

void collect_types(const ojson& schema, std::set<std::string>& types, int depth) {
  if (!schema.is_object() || depth > 32) return;
  if (auto it = schema.find("type"); it != schema.end()) {
    if (it->is_string()) {
      types.insert(py::lower(it->get<std::string>()));
    } else if (it->is_array()) {
      for (const auto& t : *it)
        if (t.is_string()) types.insert(py::lower(t.get<std::string>()));
    }
  }
  if (auto it = schema.find("enum"); it != schema.end() && it->is_array()) {
    for (const auto& v : *it) {
      switch (v.type()) {
        case ojson::value_t::null: types.insert("null"); break;
        case ojson::value_t::boolean: types.insert("boolean"); break;
        case ojson::value_t::number_integer:
        case ojson::value_t::number_unsigned: types.insert("integer"); break;
        case ojson::value_t::number_float: types.insert("number"); break;
        case ojson::value_t::string: types.insert("string"); break;
        case ojson::value_t::array: types.insert("array"); break;
        case ojson::value_t::object: types.insert("object"); break;
        default: break;
      }
    }
  }
  for (const char* key : {"anyOf", "oneOf", "allOf"})
    if (auto it = schema.find(key); it != schema.end() && it->is_array())
      for (const auto& choice : *it) collect_types(choice, types, depth + 1);
}

std::optional<ojson> parse_json(std::string_view text) {
  ojson j = ojson::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

// Python's json.dumps(obj, ensure_ascii=False): {"k": 1, "s": "x"}, floats as Python prints them.
std::string python_json(const ojson& j) { return jinja::to_json(jinja::from_json(j), jinja::JsonStyle{}); }

}  // namespace

ojson convert_tool_parameter(std::string_view value, const ojson* schema) {
  std::set<std::string> types;
  if (schema) collect_types(*schema, types, 0);
  if (types.empty()) types.insert("string");
  const std::string low = py::lower(value);
  if (low == "null" || low == "none" || low == "nil") return nullptr;
  static const char* kPriority[] = {"integer", "int", "number", "float", "boolean", "bool",
                                    "object", "array", "string", "str", "text"};
  for (const char* t : kPriority) {
    if (!types.count(t)) continue;
    const std::string_view type = t;
    if (type == "string" || type == "str" || type == "text") return std::string(value);
    if (type == "integer" || type == "int") {
      if (auto i = py::parse_int(value)) return *i;
    } else if (type == "number" || type == "float") {
      if (auto d = py::parse_float(value); d && std::isfinite(*d)) {
        if (*d == std::trunc(*d) && std::fabs(*d) < 9.2e18) return int64_t(*d);
        return *d;
      }
    } else if (type == "boolean" || type == "bool") {
      const std::string b = py::strip(low, std::nullopt, true, true);
      if (b == "true" || b == "1" || b == "yes" || b == "on") return true;
      if (b == "false" || b == "0" || b == "no" || b == "off") return false;
    } else if (auto j = parse_json(value)) {  // object / array
      return *j;
    }
  }
  if (auto j = parse_json(value)) return *j;
  return std::string(value);
}

ojson ToolCall::to_openai() const {
  return ojson{{"id", id}, {"type", "function"}, {"function", ojson{{"name", name}, {"arguments", arguments}}}};
}

ToolCallIdGenerator counter_tool_call_ids(std::string prefix) {
  auto n = std::make_shared<uint64_t>(0);
  return [prefix = std::move(prefix), n] { return prefix + std::to_string((*n)++); };
}

ToolCallIdGenerator random_tool_call_ids(uint64_t seed) {
  auto rng = std::make_shared<std::mt19937_64>(seed);
  return [rng] {
    char buf[32];
    const uint64_t a = (*rng)(), b = (*rng)();
    std::snprintf(buf, sizeof buf, "%016llx%08llx", (unsigned long long)a, (unsigned long long)(b & 0xffffffffULL));
    return "call_" + std::string(buf);
  };
}

MiniMaxToolParser::MiniMaxToolParser(const ojson& tools, ToolCallIdGenerator ids) : ids_(std::move(ids)) {
  if (!ids_) ids_ = counter_tool_call_ids();
  if (!tools.is_array()) return;
  for (const auto& tool : tools) {
    const ojson* fn = tool.is_object() && tool.contains("function") ? &tool["function"] : &tool;
    if (!fn->is_object() || !fn->contains("name") || !(*fn)["name"].is_string()) continue;
    const std::string name = (*fn)["name"].get<std::string>();
    if (properties_.count(name)) continue;  // the first tool of a name wins, as in vLLM
    ojson props = ojson::object();
    if (auto p = fn->find("parameters"); p != fn->end() && p->is_object())
      if (auto q = p->find("properties"); q != p->end() && q->is_object()) props = *q;
    properties_.emplace(name, std::move(props));
  }
}

MiniMaxToolParser::MiniMaxToolParser(const nlohmann::json& tools, ToolCallIdGenerator ids)
    : MiniMaxToolParser(ojson(tools), std::move(ids)) {}

ToolParseDelta MiniMaxToolParser::parse(std::string_view text, const ojson& tools, ToolCallIdGenerator ids) {
  MiniMaxToolParser p(tools, std::move(ids));
  ToolParseDelta out = p.push(text);
  ToolParseDelta tail = p.finish();
  out.content += tail.content;
  for (auto& c : tail.calls) out.calls.push_back(std::move(c));
  return out;
}

ToolParseDelta MiniMaxToolParser::push(std::string_view text) {
  buf_.append(text);
  ToolParseDelta out;
  drain(out, false);
  return out;
}

ToolParseDelta MiniMaxToolParser::finish() {
  ToolParseDelta out;
  drain(out, true);
  return out;
}

void MiniMaxToolParser::consume(size_t n) {
  raw_.append(buf_, 0, n);
  buf_.erase(0, n);
}

// Content text: trailing whitespace waits in ws_held_ until we know whether a block follows.
void MiniMaxToolParser::emit_text(ToolParseDelta& out, std::string_view text) {
  size_t last = text.size();
  while (last > 0 && ascii_space(text[last - 1])) --last;
  if (last == 0) {
    ws_held_.append(text);
    return;
  }
  out.content += ws_held_;
  out.content.append(text.substr(0, last));
  ws_held_.assign(text.substr(last));
  run_has_text_ = true;
}

// Ends a stretch of content: kept whole if it has text; whitespace alone touching a block is dropped.
void MiniMaxToolParser::close_run(ToolParseDelta& out, bool block_follows) {
  if (run_has_text_ || (!block_follows && !seen_block_)) out.content += ws_held_;
  ws_held_.clear();
  run_has_text_ = false;
}

void MiniMaxToolParser::complete_invoke(ToolParseDelta& out) {
  ToolCall c;
  c.index = calls_++;
  c.id = ids_();
  c.name = invoke_name_;
  c.arguments = python_json(invoke_args_);
  out.calls.push_back(std::move(c));
  raw_.clear();
  state_ = State::Block;
}

bool MiniMaxToolParser::step_text(ToolParseDelta& out, bool final) {
  const size_t at = buf_.find(kStart);
  if (at != std::string::npos) {
    emit_text(out, std::string_view(buf_).substr(0, at));
    close_run(out, true);
    buf_.erase(0, at + kStart.size());
    raw_.assign(kStart);
    seen_block_ = true;
    state_ = State::Block;
    return true;
  }
  const size_t keep = final ? 0 : parsers::partial_tag_suffix(buf_, kStart);
  emit_text(out, std::string_view(buf_).substr(0, buf_.size() - keep));
  buf_.erase(0, buf_.size() - keep);
  return false;
}

bool MiniMaxToolParser::step_block(ToolParseDelta&) {
  const auto hit = parsers::find_first_tag(buf_, {kInvoke, kEnd});
  if (!hit.found()) {
    consume(buf_.size() - parsers::partial_tag_suffix(buf_, {kInvoke, kEnd}));  // text between invokes: ignored
    return false;
  }
  if (hit.which == 1) {
    consume(hit.pos + kEnd.size());
    raw_.clear();
    state_ = State::Text;
    return true;
  }
  const size_t gt = buf_.find('>', hit.pos + kInvoke.size());
  if (gt == std::string::npos) {
    consume(hit.pos);
    if (buf_.size() <= kMaxHeader) return false;
    consume(kInvoke.size());
    return true;
  }
  invoke_name_ = extract_name(std::string_view(buf_).substr(hit.pos + kInvoke.size(), gt - hit.pos - kInvoke.size()));
  invoke_args_ = ojson::object();
  consume(gt + 1);
  state_ = State::Invoke;
  return true;
}

bool MiniMaxToolParser::step_invoke(ToolParseDelta& out) {
  const auto hit = parsers::find_first_tag(buf_, {kParam, kInvokeEnd, kEnd});
  if (!hit.found()) {
    consume(buf_.size() - parsers::partial_tag_suffix(buf_, {kParam, kInvokeEnd, kEnd}));
    return false;
  }
  if (hit.which == 1) {
    consume(hit.pos + kInvokeEnd.size());
    complete_invoke(out);
    return true;
  }
  if (hit.which == 2) {  // the block closed inside an unfinished invoke: dropped
    consume(hit.pos + kEnd.size());
    raw_.clear();
    state_ = State::Text;
    return true;
  }
  const size_t gt = buf_.find('>', hit.pos + kParam.size());
  if (gt == std::string::npos) {
    consume(hit.pos);
    if (buf_.size() <= kMaxHeader) return false;
    consume(kParam.size());
    return true;
  }
  param_name_ = extract_name(std::string_view(buf_).substr(hit.pos + kParam.size(), gt - hit.pos - kParam.size()));
  param_value_.clear();
  consume(gt + 1);
  state_ = State::Param;
  return true;
}

bool MiniMaxToolParser::step_param(ToolParseDelta& out) {
  const auto hit = parsers::find_first_tag(buf_, {kParamEnd, kInvokeEnd, kEnd});
  if (!hit.found()) {
    const size_t take = buf_.size() - parsers::partial_tag_suffix(buf_, {kParamEnd, kInvokeEnd, kEnd});
    param_value_.append(buf_, 0, take);
    consume(take);
    return false;
  }
  if (hit.which == 0) {
    param_value_.append(buf_, 0, hit.pos);
    consume(hit.pos + kParamEnd.size());
    // vLLM: strip, then one more leading/trailing newline (already gone after strip).
    const std::string value = py::strip(param_value_, std::nullopt, true, true);
    const ojson* schema = nullptr;
    if (auto tool = properties_.find(invoke_name_); tool != properties_.end())
      if (auto p = tool->second.find(param_name_); p != tool->second.end()) schema = &*p;
    invoke_args_[param_name_] = convert_tool_parameter(value, schema);
    state_ = State::Invoke;
    return true;
  }
  if (hit.which == 1) {  // parameter never closed: dropped, the invoke completes
    consume(hit.pos + kInvokeEnd.size());
    complete_invoke(out);
    return true;
  }
  consume(hit.pos + kEnd.size());
  raw_.clear();
  state_ = State::Text;
  return true;
}

void MiniMaxToolParser::drain(ToolParseDelta& out, bool final) {
  while (true) {
    bool progressed = false;
    switch (state_) {
      case State::Text: progressed = step_text(out, final); break;
      case State::Block: progressed = step_block(out); break;
      case State::Invoke: progressed = step_invoke(out); break;
      case State::Param: progressed = step_param(out); break;
    }
    if (!progressed) break;
  }
  if (!final) return;
  if (state_ != State::Text) {
    // A block the output never closed: what follows its last complete invoke is returned raw.
    std::string leftover = raw_ + buf_;
    raw_.clear();
    buf_.clear();
    state_ = State::Text;
    emit_text(out, leftover);
  }
  close_run(out, false);
}

}  // namespace moeq::text
