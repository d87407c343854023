// moeq::Error: the one exception type for user-facing failures (bad files, bad arguments, bad
// requests). Messages name the file, tensor or key at fault; the CLI prints them and exits non-zero.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace moeq {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Prefixes an error raised inside `fn` with context ("file.safetensors: ...").
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  }
}

}  // namespace moeq

#define MOEQ_CHECK(cond, ...)                \
  do {                                       \
    if (!(cond)) ::moeq::fail(__VA_ARGS__);  \
  } while (0)
