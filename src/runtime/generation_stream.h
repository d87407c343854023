// The channel between the scheduler thread (producer) and the thread serving one request
// (consumer): generation events in order, plus a cancel flag going the other way.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/sampler.h"

namespace moeq {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<Sampler::TopEntry> top;  // the most likely alternatives, best first
};

struct GenerationEvent {
  std::string text;                    // newly final output text (may be empty)
  int new_tokens = 0;                  // tokens generated since the previous event
  std::vector<TokenLogprob> logprobs;  // one per new token, when the request asked for them
  bool finished = false;
  // On the last event: "stop" (EOS or a stop string), "length" (max tokens or the context
  // limit), "cancelled" (the consumer cancelled), or "error" (see `error`).
  std::string finish_reason;
  std::string error;
  int prompt_tokens = 0, completion_tokens = 0;  // totals, set on the last event
};

class GenerationStream {
 public:
  // Consumer: waits up to `timeout` for events and moves every pending one into `out` (which is
  // cleared first). False when none arrived in time.
  bool wait(std::vector<GenerationEvent>& out, std::chrono::milliseconds timeout);
  // Consumer: asks the scheduler to drop this request (it answers with a "cancelled" event).
  void cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

  // Producer.
  void push(GenerationEvent e);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  std::atomic<bool> cancelled_{false};
};

}  // namespace moeq
