// A Jinja template, parsed once and rendered many times (concurrently: render is const and keeps
// its state on the stack). Renders like Python's jinja2 in the environment Hugging Face
// transformers uses for chat templates: ImmutableSandboxedEnvironment(trim_blocks=True,
// lstrip_blocks=True) with loop controls, the {% generation %} tag, tojson as json.dumps without
// HTML escaping, and the globals raise_exception and strftime_now.
#pragma once
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>

#include "core/error.h"
#include "text/jinja/interpreter.h"
#include "text/jinja/lexer.h"
#include "text/jinja/value.h"

namespace moeq::text::jinja {

// Every failure of parsing or rendering. Messages name the template line ("line 12: ...") except
// those of raise_exception(), which are the template's own words.
class TemplateError : public moeq::Error {
 public:
  TemplateError(const std::string& msg, bool raised) : moeq::Error(msg), raised_(raised) {}
  bool raised_by_template() const { return raised_; }

 private:
  bool raised_;
};

struct TemplateOptions {
  LexOptions lex;
  RenderLimits limits;
};

class Template {
 public:
  // Throws TemplateError for syntax errors.
  explicit Template(std::string_view source, const TemplateOptions& options = {});

  // The context's keys become template variables (a JSON object; key order is kept with
  // ordered_json, as Python's json.loads keeps it). Throws TemplateError.
  std::string render(const nlohmann::ordered_json& context) const;
  std::string render(const nlohmann::json& context) const;
  std::string render(const Dict& context) const;  // values may include callables

 private:
  std::shared_ptr<const Body> body_;
  TemplateOptions options_;
};

}  // namespace moeq::text::jinja
