// The global functions a chat template can call: jinja2's range/dict/namespace/joiner (range
// capped like the sandbox's), plus raise_exception and strftime_now from transformers.
#include <ctime>

#include "core/error.h"
#include "text/jinja/builtins.h"
#include "text/jinja/template.h"

namespace moeq::text::jinja {

namespace {

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

int64_t int_arg(const Value& v) {
  if (!v.is_int() && !v.is_bool()) fail("'{}' object cannot be interpreted as an integer", type_name(v));
  return v.as_int();
}

Value range_fn(Interpreter& in, CallArgs& args) {
  if (!args.keyword.empty()) fail("range() takes no keyword arguments");
  const auto& p = args.positional;
  if (p.empty() || p.size() > 3) fail("range expected 1 to 3 arguments, got {}", p.size());
  int64_t start = 0, stop, step = 1;
  if (p.size() == 1) {
    stop = int_arg(p[0]);
  } else {
    start = int_arg(p[0]);
    stop = int_arg(p[1]);
    if (p.size() == 3) step = int_arg(p[2]);
  }
  if (step == 0) fail("range() arg 3 must not be zero");
  // Count with overflow-safe arithmetic before materializing anything.
  const long double span = step > 0 ? (long double)stop - start : (long double)start - stop;
  const long double count = span <= 0 ? 0 : std::ceil(span / (long double)(step > 0 ? step : -step));
  if (count > kMaxRange)
    fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE ({}).", kMaxRange);
  in.step(uint64_t(count));
  std::vector<Value> out;
  out.reserve(size_t(count));
  for (int64_t i = 0, v = start; i < int64_t(count); ++i, v += step) out.emplace_back(v);
  return make_list(std::move(out));
}

// dict(*args, **kwargs) as Python builds it: a mapping or pairs, then keywords.
void fill_dict(Dict& d, const CallArgs& args, const char* fn) {
  if (args.positional.size() > 1) fail("{} expected at most 1 argument, got {}", fn, args.positional.size());
  if (!args.positional.empty()) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      for (const auto& [k, v] : src.as_dict()->entries()) d.set(k, v);
    } else {
      for (const auto& pair : iterate(src)) {
        const std::vector<Value> kv = iterate(pair);
        if (kv.size() != 2) fail("dictionary update sequence element has length {}; 2 is required", kv.size());
        d.set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [k, v] : args.keyword) d.set(Value(k), v);
}

Value dict_fn(Interpreter&, CallArgs& args) {
  Value d = make_dict();
  fill_dict(*d.as_dict(), args, "dict");
  return d;
}

Value namespace_fn(Interpreter& in, CallArgs& args) {
  auto o = std::make_shared<Object>();
  o->type = Object::Type::Namespace;
  fill_dict(o->attrs, args, "namespace");
  in.track(o);
  return Value(std::move(o));
}

Value joiner_fn(Interpreter&, CallArgs& args) {
  Args a("joiner", args, {"sep"});
  const std::string sep = a.has(0) ? to_str(a[0]) : ", ";
  auto used = std::make_shared<bool>(false);
  return make_callable("joiner", [sep, used](Interpreter&, CallArgs& call) {
    Args none("joiner", call, {});
    if (!*used) {
      *used = true;
      return Value("");
    }
    return Value(sep);
  });
}

Value raise_exception_fn(Interpreter&, CallArgs& args) {
  Args a("raise_exception", args, {"message"});
  throw TemplateError(to_str(a[0]), true);
}

Value strftime_now_fn(Interpreter&, CallArgs& args) {
  Args a("strftime_now", args, {"format"});
  if (!a[0].is_string()) fail("strftime() argument 1 must be str, not {}", type_name(a[0]));
  const std::string& f = a[0].as_string();
  if (f.empty()) return Value("");
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  localtime_r(&now, &tm);
  // strftime returns 0 both for "too small" and for an empty result: grow a few times.
  for (size_t size = 256; size <= 65536; size *= 4) {
    std::string buf(size, '\0');
    const size_t n = std::strftime(buf.data(), buf.size(), f.c_str(), &tm);
    if (n > 0) {
      buf.resize(n);
      return Value(std::move(buf));
    }
  }
  return Value("");
}

}  // namespace

void add_builtin_globals(Dict& g) {
  g.set(Value("range"), make_callable("range", range_fn));
  g.set(Value("dict"), make_callable("dict", dict_fn));
  g.set(Value("namespace"), make_callable("namespace", namespace_fn));
  g.set(Value("joiner"), make_callable("joiner", joiner_fn));
  g.set(Value("raise_exception"), make_callable("raise_exception", raise_exception_fn));
  g.set(Value("strftime_now"), make_callable("strftime_now", strftime_now_fn));
}

}  // namespace moeq::text::jinja
