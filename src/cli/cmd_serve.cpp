// moeq serve -m DIR: the OpenAI-compatible HTTP server (docs/SERVER.md). Loads the model, starts
// the continuous-batching scheduler and the HTTP server, prints the URL, and runs until SIGINT
// or SIGTERM, then ends running requests and closes every connection before exiting.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "backend/backend.h"
#include "cli/commands.h"
#include "core/error.h"
#include "model/minimax_m2.h"
#include "runtime/generation_config.h"
#include "runtime/scheduler.h"
#include "server/http_server.h"
#include "server/openai_server.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace moeq::cli {
namespace {

struct ServeArgs {
  std::string model, host = "127.0.0.1", served_name, reasoning_parser, tool_parser, override_config;
  std::optional<std::string> api_key;
  int port = 8000;
  SchedulerOptions sched;
  size_t max_body_bytes = 8u << 20;
  bool auto_tool_choice = false, no_access_log = false;
  RuntimeOptions rt;
};

std::optional<text::ChatTemplate> load_template(const std::string& dir) {
  try {
    return text::ChatTemplate::from_model_dir(dir);
  } catch (const Error& e) {
    // A model without any template can still serve /v1/completions; a broken one is an error.
    if (std::string(e.what()).find("no chat template") == std::string::npos) throw;
    std::fprintf(stderr, "moeq serve: warning: %s; /v1/chat/completions will answer 400\n", e.what());
    return std::nullopt;
  }
}

int serve(ServeArgs a) {
  // Every thread started from here on inherits this mask, so SIGINT/SIGTERM reach only the
  // sigwait() below and shutdown runs in order on the main thread.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  a.rt.apply();

  server::OpenAIServerConfig cfg;
  cfg.defaults.model_name = a.served_name.empty() ? a.model : a.served_name;
  cfg.defaults.sampling = load_generation_defaults(a.model);
  if (!a.override_config.empty()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(a.override_config);
    } catch (const nlohmann::json::exception& e) {
      fail("--override-generation-config is not valid JSON: {}", e.what());
    }
    apply_sampling_json(cfg.defaults.sampling, j, "--override-generation-config");
  }
  if (!a.reasoning_parser.empty()) {
    cfg.defaults.reasoning = text::reasoning_mode_from_name(a.reasoning_parser);
    if (!cfg.defaults.reasoning)
      fail("unknown --reasoning-parser '{}' (minimax, minimax_append_think, minimax_m2, minimax_m2_append_think)",
           a.reasoning_parser);
  }
  if (!a.tool_parser.empty() && a.tool_parser != "minimax_m2")
    fail("unknown --tool-call-parser '{}' (minimax_m2)", a.tool_parser);
  cfg.defaults.tool_parser = !a.tool_parser.empty();
  if (a.auto_tool_choice && !cfg.defaults.tool_parser) fail("--enable-auto-tool-choice needs --tool-call-parser");
  cfg.defaults.auto_tool_choice = a.auto_tool_choice;
  cfg.api_key = a.api_key;
  if (!cfg.api_key)
    if (const char* k = std::getenv("MOEQ_API_KEY"); k && *k) cfg.api_key = k;
  cfg.model_root = a.model;
  cfg.access_log = !a.no_access_log;

  const text::Tokenizer tok = text::Tokenizer::from_model_dir(a.model);
  const std::optional<text::ChatTemplate> tmpl = load_template(a.model);
  auto backend = make_backend(a.rt.device);
  auto model = Model::load(a.model, *backend);
  Scheduler sched(*model, tok, a.sched);
  server::OpenAIServer app(cfg, sched, tok, tmpl ? &*tmpl : nullptr);

  server::HttpServerOptions hopt;
  hopt.host = a.host;
  hopt.port = a.port;
  hopt.limits.max_body_bytes = a.max_body_bytes;
  hopt.error_formatter = [&app](int status, const std::string& msg) { return app.format_error(status, msg); };
  server::HttpServer http(hopt, [&app](const server::HttpRequest& r, server::ResponseWriter& w) { app.handle(r, w); });
  http.start();

  const auto& so = sched.options();
  const double kv_mib = 2.0 * double(model->config().num_layers) * so.max_num_seqs * so.max_model_len *
                        double(model->config().kv_dim()) * 4.0 / (1 << 20);
  std::fprintf(stderr,
               "moeq serve: model '%s' on %s; %d slots x %d tokens (KV cache %.0f MiB), queue %d, %d tokens per step%s\n",
               cfg.defaults.model_name.c_str(), backend->name().c_str(), so.max_num_seqs, so.max_model_len, kv_mib,
               so.max_queue, so.max_batch_tokens, cfg.api_key ? ", API key required" : "");
  const bool v6 = a.host.find(':') != std::string::npos;
  std::printf("moeq serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", a.host.c_str(), v6 ? "]" : "", http.port());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&sigs, &sig);
  std::fprintf(stderr, "moeq serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  sched.stop();  // running requests end with an error their clients receive
  http.stop();   // then every connection closes and its thread is joined
  return 0;
}

}  // namespace

void add_serve(CLI::App& app, Action& action) {
  auto* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching (docs/SERVER.md)");
  auto a = std::make_shared<ServeArgs>();
  cmd->add_option("-m,--model", a->model, "model directory")->required();
  cmd->add_option("--host", a->host, "address to bind (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", a->port, "TCP port (0: any free port, printed at startup)")->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", a->api_key, "require 'Authorization: Bearer KEY' on /v1/* (default: $MOEQ_API_KEY)");
  cmd->add_option("--served-model-name", a->served_name, "model name in the API (default: the -m argument)");
  cmd->add_option("--max-num-seqs", a->sched.max_num_seqs, "sequences generated together (KV-cache slots)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option("--max-queue", a->sched.max_queue, "requests waiting for a slot before 503")->check(CLI::Range(0, 1 << 20));
  cmd->add_option("--max-model-len", a->sched.max_model_len, "context per sequence, prompt + output (default: the model's)")
      ->check(CLI::Range(2, 1 << 30));
  cmd->add_option("--max-num-batched-tokens", a->sched.max_batch_tokens,
                  "tokens per forward step (decode tokens + prompt chunks)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--max-body-bytes", a->max_body_bytes, "largest request body accepted (413 beyond)")
      ->check(CLI::Range(size_t(1024), size_t(1) << 32));
  cmd->add_option("--reasoning-parser", a->reasoning_parser,
                  "minimax (or minimax_m2): <think> text into reasoning_content; minimax_append_think: keep it in content");
  cmd->add_option("--tool-call-parser", a->tool_parser, "minimax_m2: parse <minimax:tool_call> blocks into tool_calls");
  cmd->add_flag("--enable-auto-tool-choice", a->auto_tool_choice, "allow tool_choice \"auto\" (needs --tool-call-parser)");
  cmd->add_option("--override-generation-config", a->override_config,
                  "JSON of default sampling values over generation_config.json, e.g. '{\"temperature\": 0.7}'");
  cmd->add_flag("--no-access-log", a->no_access_log, "do not log each request on stderr");
  a->rt.add_to(*cmd);
  cmd->callback([&action, a] { action = [a] { return serve(*a); }; });
}

}  // namespace moeq::cli
