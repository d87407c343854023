// Server metrics in the Prometheus text format (GET /metrics). Names (all prefixed moeq_):
//   http_requests_total{route,status}   responses sent, by route ("other" for unknown paths)
//   requests_cancelled_total            requests ended because the client left (or shutdown)
//   prompt_tokens_total, generation_tokens_total   tokens prefilled / generated
//   num_requests_waiting, num_requests_running     the scheduler's queue and its running sequences
//   max_num_seqs                        KV-cache slots
//   scheduler_steps_total               batched forward passes
//   request_duration_seconds            histogram: generation requests, arrival to last byte
//   time_to_first_token_seconds         histogram: arrival to the first generated token
//   process_resident_memory_bytes       the server's RSS
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "runtime/scheduler.h"

namespace moeq::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // Appends the _bucket/_sum/_count lines of `name`.
  void render(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void count_response(const std::string& route, int status);
  void observe_duration(double seconds);
  void observe_ttft(double seconds);
  std::string render(const SchedulerStats& st, int max_num_seqs) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> responses_;
  Histogram duration_, ttft_;
};

}  // namespace moeq::server
