// Progress reporting on stderr for long work: a redrawn bar on a terminal, a line every few
// seconds otherwise (logs stay readable), with rate and ETA.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace moeq {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true);
  ~Progress();
  void update(int64_t done, const std::string& note = {});
  void finish(const std::string& note = {});

 private:
  void draw(bool final, const std::string& note);
  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

}  // namespace moeq
