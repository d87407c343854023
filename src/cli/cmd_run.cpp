// moeq run -m DIR -p TEXT -n N [sampling flags]: streams the continuation to stdout, then prints
// prefill and decode throughput to stderr.
#include <fmt/format.h>

#include <cstdio>
#include <iostream>

#include "backend/backend.h"
#include "cli/commands.h"
#include "core/error.h"
#include "io/json_file.h"
#include "model/minimax_m2.h"
#include "runtime/generation_config.h"
#include "runtime/generator.h"
#include "text/tokenizer.h"

namespace moeq::cli {
namespace {

struct RunArgs {
  std::string model, prompt, prompt_file;
  int n = 128;
  RuntimeOptions rt;
  // Sampling overrides: unset flags keep the model's generation_config.json defaults.
  std::optional<float> temperature, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty;
  std::optional<int> top_k;
  std::optional<uint64_t> seed;
  bool greedy = false, ignore_eos = false, no_echo = false, quiet = false;
  std::vector<std::string> stop;
  int prefill_chunk = 512;
};

int run(const RunArgs& a) {
  a.rt.apply();
  if (a.prompt.empty() == a.prompt_file.empty()) fail("give exactly one of -p/--prompt and -f/--file");
  const std::string prompt = a.prompt_file.empty() ? a.prompt : io::read_text_file(a.prompt_file);
  SamplingParams sp = load_generation_defaults(a.model);
  if (a.temperature) sp.temperature = *a.temperature;
  if (a.top_k) sp.top_k = *a.top_k;
  if (a.top_p) sp.top_p = *a.top_p;
  if (a.min_p) sp.min_p = *a.min_p;
  if (a.repeat_penalty) sp.repetition_penalty = *a.repeat_penalty;
  if (a.frequency_penalty) sp.frequency_penalty = *a.frequency_penalty;
  if (a.presence_penalty) sp.presence_penalty = *a.presence_penalty;
  if (a.seed) sp.seed = *a.seed, sp.has_seed = true;
  if (a.greedy) sp.temperature = 0;
  sp.validate();

  const text::Tokenizer tok = text::Tokenizer::from_model_dir(a.model);
  auto backend = make_backend(a.rt.device);
  auto model = Model::load(a.model, *backend);
  const std::vector<int32_t> ids = tok.encode(prompt);
  GenerateOptions opt;
  opt.max_tokens = a.n;
  opt.sampling = sp;
  opt.stop = a.stop;
  opt.ignore_eos = a.ignore_eos;
  opt.prefill_chunk = a.prefill_chunk;
  if (!a.no_echo) {
    std::fputs(prompt.c_str(), stdout);
    std::fflush(stdout);
  }
  const GenerateResult r = generate(*model, tok, ids, opt, [](const std::string& s) {
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
    return true;
  });
  std::fputs("\n", stdout);
  std::fflush(stdout);
  if (!a.quiet) {
    const double pre = r.prefill_seconds > 0 ? r.prompt_tokens / r.prefill_seconds : 0;
    const double dec = r.decode_seconds > 0 ? r.decode_steps / r.decode_seconds : 0;
    std::fprintf(stderr,
                 "\n[%s] prefill: %d tokens in %.3f s (%.1f tok/s)  decode: %zu tokens in %.3f s (%.1f tok/s)  "
                 "finish: %s\n",
                 backend->name().c_str(), r.prompt_tokens, r.prefill_seconds, pre, r.tokens.size(), r.decode_seconds,
                 dec, r.finish_reason.c_str());
  }
  return 0;
}

}  // namespace

void add_run(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("run", "Generate a continuation of a prompt, streaming it to stdout");
  auto a = std::make_shared<RunArgs>();
  cmd->add_option("-m,--model", a->model, "model directory")->required();
  cmd->add_option("-p,--prompt", a->prompt, "prompt text");
  cmd->add_option("-f,--file", a->prompt_file, "read the prompt from a file");
  cmd->add_option("-n,--max-tokens", a->n, "tokens to generate")->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--temperature,--temp", a->temperature, "sampling temperature (0 = greedy)");
  cmd->add_option("--top-k", a->top_k, "keep the k most likely tokens (0 = off)");
  cmd->add_option("--top-p", a->top_p, "nucleus sampling mass (1 = off)");
  cmd->add_option("--min-p", a->min_p, "drop tokens below min-p times the top probability (0 = off)");
  cmd->add_option("--repeat-penalty,--repetition-penalty", a->repeat_penalty, "repetition penalty (1 = off)");
  cmd->add_option("--frequency-penalty", a->frequency_penalty, "OpenAI frequency penalty");
  cmd->add_option("--presence-penalty", a->presence_penalty, "OpenAI presence penalty");
  cmd->add_option("--seed", a->seed, "random seed");
  cmd->add_flag("--greedy", a->greedy, "argmax decoding (same as --temperature 0)");
  cmd->add_option("--stop", a->stop, "stop string (repeatable)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "keep generating past the end-of-sequence token");
  cmd->add_flag("--no-echo", a->no_echo, "do not print the prompt before the continuation");
  cmd->add_flag("-q,--quiet", a->quiet, "no throughput line");
  cmd->add_option("--prefill-chunk", a->prefill_chunk, "prompt tokens per prefill step")->check(CLI::Range(1, 1 << 20));
  a->rt.add_to(*cmd);
  cmd->callback([&action, a] { action = [a] { return run(*a); }; });
}

}  // namespace moeq::cli
