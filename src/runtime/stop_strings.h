// Streaming stop-string detection: text is released only once it cannot be the start of a stop
// string, so a client never sees part of a stop sequence.
#pragma once
#include <string>
#include <vector>

namespace moeq {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);
  // Adds generated text; returns the text that is now safe to emit. After a stop string is seen,
  // stopped() is true and the returned text ends just before it.
  std::string push(const std::string& text);
  std::string flush();  // at the end of generation: everything held back
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace moeq
