// Continuous batching. One scheduler thread owns the Model and its KV cache (one slot per running
// sequence). Requests wait in a bounded FIFO queue; every step the thread
//   1. drops cancelled sequences (freeing their slots) and admits waiting requests to free slots,
//   2. builds one batch: a decode token for every sequence past its prompt, then prompt chunks of
//      sequences still in prefill (oldest first) while the token budget lasts,
//   3. calls Model::forward once for the whole batch, asking logits only for the rows that end a
//      prompt or decode a token,
//   4. samples each of those rows with its sequence's own sampler and streams the text to it;
//      finished sequences free their slot at once.
// So new requests join running ones between steps, long prompts are prefilled in chunks without
// stalling the others' decoding for long, and a sequence's tokens depend only on its own request
// (its seed) and the model's per-row math — not on what it is batched with.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "model/minimax_m2.h"
#include "runtime/generation_stream.h"
#include "runtime/sequence.h"
#include "text/tokenizer.h"

namespace moeq {

struct SchedulerOptions {
  int max_num_seqs = 16;       // KV-cache slots: sequences generating together
  int max_queue = 128;         // requests waiting for a slot; submit() refuses more
  int max_model_len = 0;       // tokens per sequence, prompt + output; 0: the model's limit
  int max_batch_tokens = 512;  // tokens per forward (decode tokens + prompt chunks); >= max_num_seqs
};

struct SchedulerStats {
  int waiting = 0, running = 0;
  uint64_t admitted = 0, finished = 0, cancelled = 0, steps = 0;
  uint64_t prompt_tokens = 0, generated_tokens = 0;  // processed so far
};

class Scheduler {
 public:
  // Starts the scheduler thread. `model` and `tok` must outlive the scheduler.
  Scheduler(Model& model, const text::Tokenizer& tok, SchedulerOptions opt);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  int max_model_len() const { return opt_.max_model_len; }
  const SchedulerOptions& options() const { return opt_; }

  enum class Refusal { None, QueueFull, ShuttingDown };
  // Queues a request. Throws moeq::Error for an invalid one (empty prompt, prompt + max_tokens
  // over max_model_len, bad sampling values); returns null with `refusal` set when the queue is
  // full or the scheduler is stopping.
  std::shared_ptr<GenerationStream> submit(GenerationRequest req, Refusal* refusal = nullptr);

  SchedulerStats stats() const;
  // Ends every request ("cancelled" with an error message) and joins the thread.
  void stop();

 private:
  void loop();
  bool admit_and_reap(std::unique_lock<std::mutex>& lock);
  void step();  // one batched forward; runs without the lock
  std::unique_ptr<Sequence> release(size_t index);  // frees the slot

  Model& model_;
  const text::Tokenizer& tok_;
  SchedulerOptions opt_;
  std::vector<int32_t> eos_;
  KVCache kv_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> waiting_;  // guarded by mu_
  bool stopping_ = false;                          // guarded by mu_
  SchedulerStats stats_;                           // guarded by mu_

  // Owned by the scheduler thread (running_.size() is mirrored into stats_ under mu_).
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<int> free_slots_;
  std::thread thread_;
};

}  // namespace moeq
