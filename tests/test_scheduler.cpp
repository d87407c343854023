// The continuous-batching scheduler on tiny-m2: batched generation gives each request exactly the
// tokens it gets alone (greedy and seeded sampling), prompts are prefilled in chunks alongside
// other sequences' decoding, slots are reused, cancellation and the queue bound work, and the
// context limit is enforced.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "backend/backend.h"
#include "core/error.h"
#include "runtime/generator.h"
#include "runtime/scheduler.h"
#include "support/test_support.h"

namespace moeq {
namespace {

using namespace std::chrono_literals;

struct Fixture {
  std::unique_ptr<Backend> backend = make_backend("cpu");
  text::Tokenizer tok = text::Tokenizer::from_model_dir(test::tiny_model_dir());
  std::unique_ptr<Model> model = Model::load(test::tiny_model_dir(), *backend);
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

struct Outcome {
  std::vector<int32_t> tokens;
  std::string text;
  std::string finish_reason, error;
  int prompt_tokens = 0, completion_tokens = 0;
};

// Reads a stream to its end (tokens come from the logprob entries, so requests set logprobs >= 0).
Outcome collect(GenerationStream& s) {
  Outcome o;
  std::vector<GenerationEvent> evs;
  for (int waited = 0; waited < 600; ++waited) {
    if (!s.wait(evs, 100ms)) continue;
    for (auto& e : evs) {
      o.text += e.text;
      for (auto& lp : e.logprobs) o.tokens.push_back(lp.token);
      if (e.finished) {
        o.finish_reason = e.finish_reason;
        o.error = e.error;
        o.prompt_tokens = e.prompt_tokens;
        o.completion_tokens = e.completion_tokens;
        return o;
      }
    }
  }
  ADD_FAILURE() << "the stream did not finish within 60 s";
  return o;
}

const std::vector<std::string> kPrompts = {
    "def fibonacci(n):",
    "The quick brown fox",
    "import os\nimport sys\n\ndef main():\n    args = sys.argv[1:]\n",
    "In computing, a hash table is a data structure that",
    "class Foo:\n    def __init__(self):",
    "#include <stdio.h>\n\nint main(void) {",
};

GenerationRequest greedy_request(const std::string& prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt = fixture().tok.encode(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0;
  r.ignore_eos = true;
  r.logprobs = 0;
  return r;
}

// The single-sequence reference: runtime/generator.cpp.
std::vector<int32_t> reference_greedy(const std::string& prompt, int max_tokens) {
  GenerateOptions opt;
  opt.max_tokens = max_tokens;
  opt.sampling.temperature = 0;
  opt.ignore_eos = true;
  return generate(*fixture().model, fixture().tok, fixture().tok.encode(prompt), opt).tokens;
}

std::vector<Outcome> run_all(Scheduler& sched, const std::vector<GenerationRequest>& reqs) {
  std::vector<std::shared_ptr<GenerationStream>> streams;
  for (const auto& r : reqs) {
    Scheduler::Refusal why;
    streams.push_back(sched.submit(r, &why));
    EXPECT_TRUE(streams.back()) << "refused";
  }
  std::vector<Outcome> out;
  for (auto& s : streams) out.push_back(s ? collect(*s) : Outcome{});
  return out;
}

TEST(Scheduler, BatchedGreedyEqualsSequential) {
  constexpr int kTokens = 24;
  std::vector<std::vector<int32_t>> want;
  for (const auto& p : kPrompts) want.push_back(reference_greedy(p, kTokens));
  std::vector<GenerationRequest> reqs;
  for (const auto& p : kPrompts) reqs.push_back(greedy_request(p, kTokens));

  // All together; then two slots (queueing, slot reuse) with a budget of 8 tokens per step, so
  // prompts are prefilled in chunks in the same forward as other sequences' decode tokens.
  for (const SchedulerOptions opt : {SchedulerOptions{6, 16, 256, 512}, SchedulerOptions{2, 16, 256, 8}}) {
    Scheduler sched(*fixture().model, fixture().tok, opt);
    const auto got = run_all(sched, reqs);
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      EXPECT_EQ(got[i].tokens, want[i]) << "prompt " << i << " with " << opt.max_num_seqs << " slots, budget "
                                        << opt.max_batch_tokens;
      EXPECT_EQ(got[i].finish_reason, "length");
      EXPECT_EQ(got[i].completion_tokens, kTokens);
      EXPECT_EQ(got[i].prompt_tokens, int(reqs[i].prompt.size()));
      EXPECT_EQ(got[i].text, fixture().tok.decode(want[i]));
    }
    const SchedulerStats st = sched.stats();
    EXPECT_EQ(st.finished, kPrompts.size());
    EXPECT_EQ(st.generated_tokens, kPrompts.size() * kTokens);
    EXPECT_EQ(st.running, 0);
    EXPECT_EQ(st.waiting, 0);
  }
}

TEST(Scheduler, SeededSamplingDoesNotDependOnBatching) {
  auto sampled = [](const std::string& prompt, uint64_t seed) {
    GenerationRequest r = greedy_request(prompt, 16);
    r.sampling.temperature = 1.0f;
    r.sampling.top_p = 0.95f;
    r.sampling.seed = seed;
    r.sampling.has_seed = true;
    return r;
  };
  std::vector<Outcome> alone;
  {
    Scheduler sched(*fixture().model, fixture().tok, SchedulerOptions{1, 16, 256, 64});
    for (size_t i = 0; i < 3; ++i) alone.push_back(run_all(sched, {sampled(kPrompts[i], 100 + i)})[0]);
  }
  Scheduler sched(*fixture().model, fixture().tok, SchedulerOptions{4, 16, 256, 64});
  const auto together = run_all(sched, {sampled(kPrompts[0], 100), sampled(kPrompts[1], 101), sampled(kPrompts[2], 102),
                                        greedy_request(kPrompts[3], 16)});
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(together[i].tokens, alone[i].tokens) << "prompt " << i;
}

TEST(Scheduler, CancellationFreesTheSlot) {
  Scheduler sched(*fixture().model, fixture().tok, SchedulerOptions{1, 4, 512, 64});
  auto long_req = greedy_request(kPrompts[0], 400);
  auto s = sched.submit(long_req);
  ASSERT_TRUE(s);
  std::vector<GenerationEvent> evs;
  while (!s->wait(evs, 100ms)) {
  }
  ASSERT_FALSE(evs.empty());
  EXPECT_FALSE(evs.back().finished);
  s->cancel();
  const Outcome o = collect(*s);
  EXPECT_EQ(o.finish_reason, "cancelled");
  EXPECT_LT(o.completion_tokens, 400);
  // The only slot is free again: the next request runs to completion.
  const auto next = run_all(sched, {greedy_request(kPrompts[1], 8)});
  EXPECT_EQ(next[0].finish_reason, "length");
  EXPECT_EQ(next[0].tokens, reference_greedy(kPrompts[1], 8));
  EXPECT_EQ(sched.stats().cancelled, 1u);
}

TEST(Scheduler, BoundedQueueRefusesWhenFull) {
  Scheduler sched(*fixture().model, fixture().tok, SchedulerOptions{1, 1, 512, 64});
  auto a = sched.submit(greedy_request(kPrompts[0], 400));
  auto b = sched.submit(greedy_request(kPrompts[1], 400));
  Scheduler::Refusal why = Scheduler::Refusal::None;
  auto c = sched.submit(greedy_request(kPrompts[2], 400), &why);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(c);
  EXPECT_EQ(why, Scheduler::Refusal::QueueFull);
  // A cancelled waiting request leaves the queue without running.
  b->cancel();
  EXPECT_EQ(collect(*b).finish_reason, "cancelled");
  a->cancel();
  EXPECT_EQ(collect(*a).finish_reason, "cancelled");
  EXPECT_EQ(sched.stats().cancelled, 2u);
}

TEST(Scheduler, ContextLimit) {
  Scheduler sched(*fixture().model, fixture().tok, SchedulerOptions{2, 4, 64, 64});
  EXPECT_EQ(sched.max_model_len(), 64);
  const auto prompt = fixture().tok.encode(kPrompts[3]);
  GenerationRequest r = greedy_request(kPrompts[3], 64);
  EXPECT_THROW(sched.submit(r), Error);  // prompt + max_tokens > 64
  r.max_tokens = 64 - int(prompt.size());
  const auto got = run_all(sched, {r});
  EXPECT_EQ(got[0].finish_reason, "length");
  EXPECT_EQ(got[0].completion_tokens, 64 - int(prompt.size()));
  GenerationRequest empty = r;
  empty.prompt.clear();
  EXPECT_THROW(sched.submit(empty), Error);
  GenerationRequest bad = r;
  bad.max_tokens = 1;
  bad.sampling.top_p = 2;
  EXPECT_THROW(sched.submit(bad), Error);
  EXPECT_THROW(Scheduler(*fixture().model, fixture().tok, SchedulerOptions{2, 4, 1 << 20, 64}), Error);
}

TEST(Scheduler, StopStringsEndTheOutputBeforeTheMatch) {
  const auto ref = reference_greedy(kPrompts[0], 24);
  const std::string text = fixture().tok.decode(ref);
  ASSERT_GT(text.size(), 12u);
  const std::string stop = text.substr(8, 3);
  GenerationRequest r = greedy_request(kPrompts[0], 24);
  r.stop = {stop};
  Scheduler sched(*fixture().model, fixture().tok, SchedulerOptions{2, 4, 256, 64});
  const auto got = run_all(sched, {r});
  EXPECT_EQ(got[0].finish_reason, "stop");
  EXPECT_EQ(got[0].text, text.substr(0, text.find(stop)));
}

TEST(Scheduler, StopEndsPendingRequests) {
  auto sched = std::make_unique<Scheduler>(*fixture().model, fixture().tok, SchedulerOptions{1, 4, 512, 64});
  auto a = sched->submit(greedy_request(kPrompts[0], 400));
  auto b = sched->submit(greedy_request(kPrompts[1], 400));
  std::this_thread::sleep_for(50ms);
  sched->stop();
  const Outcome oa = collect(*a), ob = collect(*b);
  EXPECT_EQ(oa.finish_reason, "cancelled");
  EXPECT_EQ(ob.finish_reason, "cancelled");
  EXPECT_FALSE(ob.error.empty());
  Scheduler::Refusal why;
  EXPECT_FALSE(sched->submit(greedy_request(kPrompts[2], 4), &why));
  EXPECT_EQ(why, Scheduler::Refusal::ShuttingDown);
}

}  // namespace
}  // namespace moeq
