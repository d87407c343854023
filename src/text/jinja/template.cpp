#include "text/jinja/template.h"

#include <new>

#include "text/jinja/builtins.h"
#include "text/jinja/parser.h"

namespace moeq::text::jinja {

namespace {

const Dict& builtin_globals() {
  static const Dict globals = [] {
    Dict d;
    add_builtin_globals(d);
    return d;
  }();
  return globals;
}

}  // namespace

Template::Template(std::string_view source, const TemplateOptions& options) : options_(options) {
  try {
    body_ = std::make_shared<const Body>(parse(tokenize(source, options.lex)));
  } catch (const TemplateError&) {
    throw;
  } catch (const moeq::Error& e) {
    throw TemplateError(std::string("syntax error: ") + e.what(), false);
  }
}

std::string Template::render(const Dict& context) const {
  Interpreter in(context, builtin_globals(), options_.limits);
  try {
    return in.render(*body_);
  } catch (const TemplateError&) {
    throw;
  } catch (const moeq::Error& e) {
    throw TemplateError(fmt::format("line {}: {}", in.line(), e.what()), false);
  } catch (const std::bad_alloc&) {
    throw TemplateError(fmt::format("line {}: out of memory", in.line()), false);
  } catch (const std::exception& e) {
    throw TemplateError(fmt::format("line {}: {}", in.line(), e.what()), false);
  }
}

namespace {

template <typename J>
Value context_value(const J& context) {
  if (!context.is_object() && !context.is_null()) throw TemplateError("the render context must be a JSON object", false);
  try {
    return context.is_null() ? make_dict() : from_json(context);
  } catch (const TemplateError&) {
    throw;
  } catch (const moeq::Error& e) {
    throw TemplateError(std::string("render context: ") + e.what(), false);
  }
}

}  // namespace

std::string Template::render(const nlohmann::ordered_json& context) const {
  const Value v = context_value(context);
  return render(*v.as_dict());
}

std::string Template::render(const nlohmann::json& context) const {
  const Value v = context_value(context);
  return render(*v.as_dict());
}

}  // namespace moeq::text::jinja
