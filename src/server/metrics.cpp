#include "server/metrics.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace moeq::server {

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, bounds_[i], cum);
  }
  out += fmt::format("{}_bucket{{le=\"+Inf\"}} {}\n", name, count_);
  out += fmt::format("{}_sum {}\n{}_count {}\n", name, sum_, name, count_);
}

Metrics::Metrics()
    : duration_({0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}),
      ttft_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}) {}

void Metrics::count_response(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++responses_[{route, status}];
}

void Metrics::observe_duration(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  duration_.observe(seconds);
}

void Metrics::observe_ttft(double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  ttft_.observe(seconds);
}

namespace {

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

long long resident_bytes() {
  long long pages_total = 0, pages_resident = 0;
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  const int n = std::fscanf(f, "%lld %lld", &pages_total, &pages_resident);
  std::fclose(f);
  return n == 2 ? pages_resident * sysconf(_SC_PAGESIZE) : 0;
}

}  // namespace

std::string Metrics::render(const SchedulerStats& st, int max_num_seqs) const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  header(out, "moeq_http_requests_total", "counter", "HTTP responses by route and status code.");
  for (const auto& [key, n] : responses_)
    out += fmt::format("moeq_http_requests_total{{route=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  header(out, "moeq_requests_cancelled_total", "counter", "Generation requests cancelled (client disconnected or shutdown).");
  out += fmt::format("moeq_requests_cancelled_total {}\n", st.cancelled);
  header(out, "moeq_requests_finished_total", "counter", "Generation requests that ran to their end.");
  out += fmt::format("moeq_requests_finished_total {}\n", st.finished);
  header(out, "moeq_prompt_tokens_total", "counter", "Prompt tokens prefilled.");
  out += fmt::format("moeq_prompt_tokens_total {}\n", st.prompt_tokens);
  header(out, "moeq_generation_tokens_total", "counter", "Tokens generated.");
  out += fmt::format("moeq_generation_tokens_total {}\n", st.generated_tokens);
  header(out, "moeq_num_requests_waiting", "gauge", "Requests queued for a KV-cache slot.");
  out += fmt::format("moeq_num_requests_waiting {}\n", st.waiting);
  header(out, "moeq_num_requests_running", "gauge", "Sequences being generated (holding a slot).");
  out += fmt::format("moeq_num_requests_running {}\n", st.running);
  header(out, "moeq_max_num_seqs", "gauge", "KV-cache slots (--max-num-seqs).");
  out += fmt::format("moeq_max_num_seqs {}\n", max_num_seqs);
  header(out, "moeq_scheduler_steps_total", "counter", "Batched forward passes.");
  out += fmt::format("moeq_scheduler_steps_total {}\n", st.steps);
  header(out, "moeq_request_duration_seconds", "histogram", "Generation request latency, arrival to the end of the response.");
  duration_.render(out, "moeq_request_duration_seconds");
  header(out, "moeq_time_to_first_token_seconds", "histogram", "Time from a request's arrival to its first generated token.");
  ttft_.render(out, "moeq_time_to_first_token_seconds");
  header(out, "moeq_process_resident_memory_bytes", "gauge", "Resident memory of the server process.");
  out += fmt::format("moeq_process_resident_memory_bytes {}\n", resident_bytes());
  return out;
}

}  // namespace moeq::server
