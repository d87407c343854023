#include "runtime/scheduler.h"

#include <algorithm>
#include <exception>

#include "core/error.h"
#include "runtime/generator.h"

namespace moeq {

Scheduler::Scheduler(Model& model, const text::Tokenizer& tok, SchedulerOptions opt)
    : model_(model), tok_(tok), opt_(opt), eos_(eos_ids(model, tok)) {
  const int64_t limit = model.config().max_position_embeddings;
  if (opt_.max_model_len <= 0) opt_.max_model_len = int(std::min<int64_t>(limit, 1 << 30));
  if (opt_.max_model_len > limit)
    fail("max_model_len {} exceeds the model's context limit of {} (max_position_embeddings)", opt_.max_model_len, limit);
  if (opt_.max_model_len < 2) fail("max_model_len must be at least 2, got {}", opt_.max_model_len);
  if (opt_.max_num_seqs < 1) fail("max_num_seqs must be at least 1, got {}", opt_.max_num_seqs);
  if (opt_.max_queue < 0) fail("max_queue must be >= 0, got {}", opt_.max_queue);
  if (opt_.max_batch_tokens < opt_.max_num_seqs)
    fail("the batch token budget ({}) must be at least max_num_seqs ({}): every running sequence decodes each step",
         opt_.max_batch_tokens, opt_.max_num_seqs);
  kv_ = model_.make_cache(opt_.max_num_seqs, opt_.max_model_len);
  for (int s = opt_.max_num_seqs - 1; s >= 0; --s) free_slots_.push_back(s);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { stop(); }

std::shared_ptr<GenerationStream> Scheduler::submit(GenerationRequest req, Refusal* refusal) {
  if (refusal) *refusal = Refusal::None;
  if (req.prompt.empty()) fail("the prompt is empty");
  const int32_t vocab = int32_t(model_.config().vocab_size);
  for (int32_t id : req.prompt)
    if (id < 0 || id >= vocab) fail("prompt token id {} is outside the vocabulary (0..{})", id, vocab - 1);
  if (req.max_tokens < 1) fail("max_tokens must be at least 1, got {}", req.max_tokens);
  if (int64_t(req.prompt.size()) + req.max_tokens > opt_.max_model_len)
    fail("the prompt ({} tokens) plus max_tokens ({}) exceeds the context limit of {} tokens", req.prompt.size(),
         req.max_tokens, opt_.max_model_len);
  auto stream = std::make_shared<GenerationStream>();
  // Built here, on the caller's thread, so a bad sampling value throws to the caller.
  auto seq = std::make_unique<Sequence>(std::move(req), stream, tok_, eos_, opt_.max_model_len);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) {
      if (refusal) *refusal = Refusal::ShuttingDown;
      return nullptr;
    }
    // Capacity = the slots plus the queue, so a request that arrives just before the thread
    // admits the previous one is not refused while a slot is free.
    if (stats_.waiting + stats_.running >= opt_.max_num_seqs + opt_.max_queue) {
      if (refusal) *refusal = Refusal::QueueFull;
      return nullptr;
    }
    waiting_.push_back(std::move(seq));
    stats_.waiting = int(waiting_.size());
  }
  cv_.notify_one();
  return stream;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void Scheduler::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !running_.empty(); });
    if (stopping_) break;
    admit_and_reap(lock);
    lock.unlock();
    step();
    lock.lock();
    stats_.running = int(running_.size());
  }
  // Shutting down: every request still here ends now.
  auto end_all = [](auto& seqs) {
    for (auto& s : seqs) {
      s->abort("cancelled", "the server is shutting down");
      s->publish_final();
    }
  };
  end_all(running_);
  end_all(waiting_);
  running_.clear();
  waiting_.clear();
  stats_.running = stats_.waiting = 0;
}

// Under the lock: ends cancelled waiting requests, then moves waiting requests into free slots.
bool Scheduler::admit_and_reap(std::unique_lock<std::mutex>&) {
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->cancelled()) {
      (*it)->abort("cancelled");
      ++stats_.cancelled;
      (*it)->publish_final();
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  bool admitted = false;
  while (!waiting_.empty() && !free_slots_.empty()) {
    std::unique_ptr<Sequence> s = std::move(waiting_.front());
    waiting_.pop_front();
    s->slot = free_slots_.back();
    free_slots_.pop_back();
    running_.push_back(std::move(s));
    ++stats_.admitted;
    admitted = true;
  }
  stats_.waiting = int(waiting_.size());
  stats_.running = int(running_.size());
  return admitted;
}

std::unique_ptr<Sequence> Scheduler::release(size_t index) {
  std::unique_ptr<Sequence> s = std::move(running_[index]);
  free_slots_.push_back(s->slot);
  running_.erase(running_.begin() + std::ptrdiff_t(index));
  return s;
}

void Scheduler::step() {
  uint64_t cancelled = 0, prompt_tokens = 0, generated = 0;
  std::vector<std::unique_ptr<Sequence>> done;  // leaving this step; their last events go out at the end
  for (size_t i = running_.size(); i-- > 0;)
    if (running_[i]->cancelled()) {
      running_[i]->abort("cancelled");
      done.push_back(release(i));
      ++cancelled;
    }

  // The batch: decode tokens first (one per sequence past its prompt), then prompt chunks.
  std::vector<int32_t> ids, pos, slots, rows;
  std::vector<Sequence*> owners;  // the sequence sampling from each logits row
  for (auto& s : running_) {
    if (!s->prefill_done()) continue;
    rows.push_back(int32_t(ids.size()));
    owners.push_back(s.get());
    ids.push_back(s->next_token());
    pos.push_back(s->next_position());
    slots.push_back(s->slot);
  }
  for (auto& s : running_) {
    const int budget = opt_.max_batch_tokens - int(ids.size());
    if (budget <= 0) break;
    if (s->prefill_done()) continue;
    const int take = std::min(budget, int(s->prompt().size()) - s->prefilled);
    for (int i = 0; i < take; ++i) {
      ids.push_back(s->prompt()[size_t(s->prefilled + i)]);
      pos.push_back(s->prefilled + i);
      slots.push_back(s->slot);
    }
    s->prefilled += take;
    prompt_tokens += uint64_t(take);
    if (s->prefill_done()) {  // the prompt's last row gives the first output token
      rows.push_back(int32_t(ids.size() - 1));
      owners.push_back(s.get());
    }
  }

  if (!ids.empty()) {
    // Every row is one sequence's own computation (the batch only shares the weights), but a
    // forward needs at least one logits row: a step of unfinished prompt chunks asks for one and
    // ignores it.
    if (rows.empty()) {
      rows.push_back(int32_t(ids.size() - 1));
      owners.push_back(nullptr);
    }
    try {
      const Tensor& out = model_.forward(ids, pos, slots, rows, kv_);
      std::vector<float> logits = model_.backend().download_f32(out);
      const size_t V = size_t(model_.config().vocab_size);
      for (size_t r = 0; r < owners.size(); ++r) {
        if (!owners[r]) continue;
        const size_t before = owners[r]->output().size();
        owners[r]->on_logits(std::span<float>(logits.data() + r * V, V));
        generated += owners[r]->output().size() - before;
      }
    } catch (const std::exception& e) {
      // A failed step ends everything that was in it; the scheduler keeps serving.
      for (auto& s : running_) s->abort("error", e.what());
    }
  }
  for (size_t i = running_.size(); i-- > 0;)
    if (running_[i]->finished()) done.push_back(release(i));

  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.cancelled += cancelled;
    stats_.finished += done.size() - cancelled;
    stats_.prompt_tokens += prompt_tokens;
    stats_.generated_tokens += generated;
    stats_.running = int(running_.size());
    ++stats_.steps;
  }
  // Statistics first, then the ends: a consumer that sees its request finish sees it counted.
  for (auto& s : done) s->publish_final();
}

}  // namespace moeq
