// A compiled PCRE2 regular expression (UTF-8) for names and patterns given by users: recipes'
// module patterns. (std::regex is avoided: slow, and g++ 12 misreports it under sanitizers.)
#pragma once
#include <memory>
#include <string>
#include <string_view>

namespace moeq {

class Regex {
 public:
  // Throws moeq::Error with PCRE2's message and offset for a bad pattern.
  explicit Regex(const std::string& pattern);
  // True when the pattern matches anywhere in `text` (a search, as Python's re.search).
  bool search(std::string_view text) const;
  const std::string& pattern() const { return pattern_; }

 private:
  struct Code;
  std::string pattern_;
  std::shared_ptr<Code> code_;
};

}  // namespace moeq
