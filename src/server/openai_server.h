// The OpenAI-compatible API on top of the scheduler: routing, API-key check, the endpoints
//   GET  /health                 200 once the model is loaded (no key needed)
//   GET  /metrics                Prometheus text (no key needed)
//   GET  /v1/models, /v1/models/{id}
//   POST /v1/chat/completions    chat template, reasoning and tool-call parsing; stream or not
//   POST /v1/completions         plain text or token-id prompts; stream or not
// and the bookkeeping around each request (metrics, access log, cancellation when the client
// leaves). One instance serves all connections; handle() runs on each connection's thread.
#pragma once
#include <chrono>
#include <optional>
#include <string>

#include "runtime/scheduler.h"
#include "server/http_server.h"
#include "server/metrics.h"
#include "server/openai_request.h"
#include "server/response_builder.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace moeq::server {

struct OpenAIServerConfig {
  ServerDefaults defaults;
  std::optional<std::string> api_key;  // "Authorization: Bearer KEY" required on /v1/* when set
  std::string model_root;              // shown as "root" in /v1/models
  bool access_log = true;              // one line per request on stderr
  std::chrono::milliseconds poll_interval{50};  // how often a waiting request checks its client
};

class OpenAIServer {
 public:
  // `tmpl` may be null (a model without a chat template: chat requests get 400).
  OpenAIServer(OpenAIServerConfig cfg, Scheduler& sched, const text::Tokenizer& tok, const text::ChatTemplate* tmpl);

  void handle(const HttpRequest& req, ResponseWriter& w);
  // The body of an error the HTTP layer produces itself (malformed request, 413, 408...).
  HttpResponse format_error(int status, const std::string& message) const;
  Metrics& metrics() { return metrics_; }

 private:
  using Clock = std::chrono::steady_clock;
  void dispatch(const HttpRequest& req, ResponseWriter& w, Clock::time_point t0);
  void check_api_key(const HttpRequest& req) const;
  void list_models(ResponseWriter& w, const std::string& only) const;
  void generate(const HttpRequest& req, ResponseWriter& w, Endpoint endpoint, Clock::time_point t0);

  OpenAIServerConfig cfg_;
  Scheduler& sched_;
  const text::Tokenizer& tok_;
  const text::ChatTemplate* tmpl_;
  Metrics metrics_;
  int64_t started_ = 0;  // Unix seconds, "created" of the model
};

}  // namespace moeq::server
