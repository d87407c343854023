#include "core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace moeq {

std::string format_duration(double s) {
  if (s < 0) s = 0;
  if (s < 60) return fmt::format("{:.1f}s", s);
  const int64_t t = int64_t(s + 0.5);
  if (t < 3600) return fmt::format("{}m{:02d}s", t / 60, int(t % 60));
  return fmt::format("{}h{:02d}m", t / 3600, int((t % 3600) / 60));
}

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(::isatty(2) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

Progress::~Progress() {
  if (enabled_ && !finished_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

void Progress::update(int64_t done, const std::string& note) {
  done_ = done;
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since < (tty_ ? 0.1 : 5.0) || (done >= total_ && !tty_)) return;  // finish() prints the last line
  last_draw_ = now;
  draw(false, note);
}

void Progress::finish(const std::string& note) {
  if (finished_) return;
  finished_ = true;
  draw(true, note);
}

void Progress::draw(bool final, const std::string& note) {
  if (!enabled_) return;
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total_ > 0 ? double(done_) / double(total_) : 1.0;
  std::string eta = done_ > 0 && !final ? "ETA " + format_duration(el / frac - el) : format_duration(el);
  std::string line;
  if (tty_) {
    const int width = 24, fill = int(frac * width + 0.5);
    line = fmt::format("\r{} [{}{}] {}/{} {} {}\x1b[K", label_, std::string(size_t(fill), '#'),
                       std::string(size_t(width - fill), '.'), done_, total_, eta, note);
    if (final) line += "\n";
  } else {
    line = fmt::format("{}: {}/{} {} {}\n", label_, done_, total_, eta, note);
  }
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace moeq
