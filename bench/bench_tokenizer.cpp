// Tokenizer throughput: encodes every data/eval/dev_*.txt several times, then decodes.
//   bench_tokenizer [MODEL_DIR] [REPEATS]    (defaults: models/tiny-m2, 5)
// Prints MB/s and tokens/s for a cold pass (fresh tokenizer: empty BPE cache), warm passes, one
// file split across all cores, and decoding.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "core/error.h"
#include "io/json_file.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;
using moeq::text::Tokenizer;

namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void report(const char* what, size_t bytes, size_t tokens, double secs) {
  fmt::print("{:<34} {:8.2f} MB/s {:10.0f} tokens/s  ({:.3f} s for {:.2f} MB, {} tokens)\n", what,
             bytes / secs / 1e6, tokens / secs, secs, bytes / 1e6, tokens);
}

}  // namespace

int main(int argc, char** argv) try {
  const fs::path root = MOEQ_SOURCE_DIR;
  const fs::path model = argc > 1 ? fs::path(argv[1]) : root / "models" / "tiny-m2";
  const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;

  std::vector<std::string> texts;
  size_t total = 0;
  for (const auto& e : fs::directory_iterator(root / "data" / "eval"))
    if (e.path().filename().string().rfind("dev_", 0) == 0) {
      texts.push_back(moeq::io::read_text_file(e.path()));
      total += texts.back().size();
    }
  if (texts.empty()) moeq::fail("no data/eval/dev_*.txt under {}", root.string());

  double t0 = now();
  const Tokenizer tok = Tokenizer::from_model_dir(model);
  fmt::print("load {}: {:.3f} s, vocab {}\n", model.string(), now() - t0, tok.vocab_size());

  size_t tokens = 0;
  t0 = now();
  std::vector<std::vector<int32_t>> ids;
  for (const auto& t : texts) ids.push_back(tok.encode(t));
  for (const auto& v : ids) tokens += v.size();
  report("encode, cold cache (1 thread)", total, tokens, now() - t0);

  double best = 1e9;
  for (int r = 0; r < repeats; ++r) {
    t0 = now();
    for (const auto& t : texts) tok.encode(t);
    best = std::min(best, now() - t0);
  }
  report(fmt::format("encode, warm, best of {} (1 thread)", repeats).c_str(), total, tokens, best);

  const unsigned nth = std::max(1u, std::thread::hardware_concurrency());
  t0 = now();
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < nth; ++i)
    pool.emplace_back([&] {
      for (const auto& t : texts) tok.encode(t);
    });
  for (auto& th : pool) th.join();
  report(fmt::format("encode, {} threads at once", nth).c_str(), total * nth, tokens * nth, now() - t0);

  best = 1e9;
  for (int r = 0; r < repeats; ++r) {
    t0 = now();
    for (const auto& v : ids) tok.decode(v);
    best = std::min(best, now() - t0);
  }
  report("decode (1 thread)", total, tokens, best);
  return 0;
} catch (const std::exception& e) {
  fmt::print(stderr, "error: {}\n", e.what());
  return 1;
}
