#include "server/openai_server.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdio>
#include <ctime>

#include "core/error.h"
#include "server/api_error.h"
#include "server/prompt.h"
#include "server/sse.h"

namespace moeq::server {
namespace {

using ojson = nlohmann::ordered_json;

// Forwards to the connection's writer, remembering the status sent (for metrics and the log).
class RecordingWriter final : public ResponseWriter {
 public:
  explicit RecordingWriter(ResponseWriter& w) : w_(w) {}
  void send(const HttpResponse& r) override {
    if (status_) return;
    status_ = r.status;
    w_.send(r);
  }
  bool begin_stream(int status, std::string_view type, const std::vector<std::pair<std::string, std::string>>& h) override {
    if (status_) return false;
    status_ = status;
    return w_.begin_stream(status, type, h);
  }
  bool write(std::string_view data) override { return w_.write(data); }
  bool end_stream() override { return w_.end_stream(); }
  bool client_gone() override { return w_.client_gone(); }
  int status() const { return status_; }

 private:
  ResponseWriter& w_;
  int status_ = 0;
};

// Cancels the generation when the handler leaves early (client gone, exception).
struct CancelOnExit {
  std::shared_ptr<GenerationStream> stream;
  bool done = false;
  ~CancelOnExit() {
    if (stream && !done) stream->cancel();
  }
};

// Route label for metrics: known paths only, so arbitrary URLs cannot grow the label set.
std::string route_of(const std::string& path) {
  for (const char* r : {"/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions"})
    if (path == r) return r;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{id}";
  return "other";
}

// Compares without stopping at the first difference, so timing does not reveal the key's prefix.
bool equal_constant_time(std::string_view a, std::string_view b) {
  size_t diff = a.size() ^ b.size();
  for (size_t i = 0; i < a.size(); ++i)
    diff |= size_t(static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(i < b.size() ? b[i] : 0));
  return diff == 0;
}

std::string printable(std::string_view s, size_t max) {
  std::string out;
  for (char c : s.substr(0, max)) out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  if (s.size() > max) out += "...";
  return out;
}

HttpResponse json_response(int status, const ojson& j) {
  HttpResponse r;
  r.status = status;
  r.body = dump_json(j);
  return r;
}

}  // namespace

OpenAIServer::OpenAIServer(OpenAIServerConfig cfg, Scheduler& sched, const text::Tokenizer& tok,
                           const text::ChatTemplate* tmpl)
    : cfg_(std::move(cfg)), sched_(sched), tok_(tok), tmpl_(tmpl), started_(int64_t(std::time(nullptr))) {}

HttpResponse OpenAIServer::format_error(int status, const std::string& message) const {
  return error_response(ApiError(status, message));
}

void OpenAIServer::handle(const HttpRequest& req, ResponseWriter& w) {
  const auto t0 = Clock::now();
  RecordingWriter rw(w);
  try {
    dispatch(req, rw, t0);
  } catch (const ApiError& e) {
    rw.send(error_response(e));
  } catch (const std::exception& e) {
    rw.send(error_response(ApiError(500, fmt::format("internal error: {}", e.what()))));
  }
  // No response at all: the client left while its request was being generated (nginx's 499).
  const int status = rw.status() ? rw.status() : 499;
  metrics_.count_response(route_of(req.path), status);
  if (cfg_.access_log)
    std::fprintf(stderr, "moeq serve: \"%s %s\" %d %.3fs\n", printable(req.method, 16).c_str(),
                 printable(req.target, 120).c_str(), status, std::chrono::duration<double>(Clock::now() - t0).count());
}

void OpenAIServer::check_api_key(const HttpRequest& req) const {
  if (!cfg_.api_key) return;
  const auto auth = req.header("authorization");
  if (!auth) throw ApiError(401, "Missing API key: send it as 'Authorization: Bearer <key>'.", "", "invalid_api_key");
  std::string_view v = *auth;
  std::string scheme(v.substr(0, 7));
  for (char& c : scheme) c = char(std::tolower(static_cast<unsigned char>(c)));
  std::string_view key = v.size() > 7 ? v.substr(7) : std::string_view();
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  if (scheme != "bearer " || !equal_constant_time(key, *cfg_.api_key))
    throw ApiError(401, "Incorrect API key provided.", "", "invalid_api_key");
}

void OpenAIServer::dispatch(const HttpRequest& req, ResponseWriter& w, Clock::time_point t0) {
  const std::string& p = req.path;
  auto allow = [&](const char* method) {
    if (req.method == method) return;
    ApiError e(405, fmt::format("{} is not allowed on {}; use {}", printable(req.method, 16), p, method), "", "method_not_allowed");
    e.headers.emplace_back("Allow", method);
    throw e;
  };
  if (p == "/health") {
    allow("GET");
    return w.send(json_response(200, ojson::object()));
  }
  if (p == "/metrics") {
    allow("GET");
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = metrics_.render(sched_.stats(), sched_.options().max_num_seqs);
    return w.send(r);
  }
  const bool models = p == "/v1/models" || p.rfind("/v1/models/", 0) == 0;
  const bool chat = p == "/v1/chat/completions", completions = p == "/v1/completions";
  if (!models && !chat && !completions)
    throw ApiError(404, fmt::format("no route for {} {}", printable(req.method, 16), printable(p, 200)), "", "not_found");
  check_api_key(req);
  if (models) {
    allow("GET");
    return list_models(w, p == "/v1/models" ? std::string() : p.substr(11));
  }
  allow("POST");
  generate(req, w, chat ? Endpoint::Chat : Endpoint::Completion, t0);
}

void OpenAIServer::list_models(ResponseWriter& w, const std::string& only) const {
  ojson m = {{"id", cfg_.defaults.model_name},     {"object", "model"},
             {"created", started_},                {"owned_by", "moeq"},
             {"root", cfg_.model_root},            {"parent", nullptr},
             {"max_model_len", sched_.max_model_len()}};
  if (only.empty()) return w.send(json_response(200, {{"object", "list"}, {"data", ojson::array({m})}}));
  if (only != cfg_.defaults.model_name)
    throw ApiError(404, fmt::format("The model `{}` does not exist.", printable(only, 200)), "model", "model_not_found");
  w.send(json_response(200, m));
}

void OpenAIServer::generate(const HttpRequest& req, ResponseWriter& w, Endpoint endpoint, Clock::time_point t0) {
  const ojson body = parse_json_body(req.body);
  ApiRequest api = endpoint == Endpoint::Chat ? parse_chat_request(body, cfg_.defaults)
                                              : parse_completion_request(body, cfg_.defaults);
  GenerationRequest gen = make_generation_request(api, build_prompt_ids(api, tok_, tmpl_), sched_.max_model_len());

  Scheduler::Refusal why = Scheduler::Refusal::None;
  CancelOnExit guard;
  try {
    guard.stream = sched_.submit(std::move(gen), &why);
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
  if (!guard.stream) {
    const auto& o = sched_.options();
    ApiError e(503,
               why == Scheduler::Refusal::QueueFull
                   ? fmt::format("The server is at capacity ({} running, {} queued); retry later.", o.max_num_seqs, o.max_queue)
                   : std::string("The server is shutting down."),
               "", "server_overloaded");
    e.headers.emplace_back("Retry-After", "1");
    throw e;
  }
  GenerationStream& stream = *guard.stream;

  ResponseContext ctx;
  ctx.id = new_response_id(endpoint);
  ctx.created = int64_t(std::time(nullptr));
  ctx.model = cfg_.defaults.model_name;
  ctx.endpoint = endpoint;
  ctx.reasoning = cfg_.defaults.reasoning;
  ctx.parse_tool_calls = api.parse_tool_calls;
  ctx.tools = api.tools;
  ctx.logprobs = api.logprobs;
  ctx.top_logprobs = api.top_logprobs;
  ctx.include_usage = api.include_usage;
  ctx.tok = &tok_;
  ResponseBuilder builder(std::move(ctx));

  bool ok = true;
  if (api.stream) {
    ok = w.begin_stream(200, "text/event-stream", {{"Cache-Control", "no-cache"}});
    ok = ok && w.write(sse_events(builder.start()));
  }
  bool first_token = true;
  auto last_check = Clock::now();
  std::vector<GenerationEvent> events;
  while (ok) {
    const bool got = stream.wait(events, cfg_.poll_interval);
    // The client may leave while tokens keep coming, so check on a clock, not only when idle.
    if (Clock::now() - last_check >= cfg_.poll_interval || !got) {
      last_check = Clock::now();
      if (w.client_gone()) return;  // the guard cancels the generation
    }
    if (!got) continue;
    std::string out;
    for (const GenerationEvent& e : events) {
      if (first_token && (e.new_tokens > 0 || e.finished)) {
        first_token = false;
        metrics_.observe_ttft(std::chrono::duration<double>(Clock::now() - t0).count());
      }
      if (e.finished && (e.finish_reason == "error" || e.finish_reason == "cancelled")) {
        guard.done = true;
        const ApiError err(e.finish_reason == "error" ? 500 : 503,
                           e.error.empty() ? std::string("the request was cancelled") : e.error);
        if (!api.stream) throw err;
        w.write(out + sse_event(error_json(err)) + kSseDone);
        w.end_stream();
        return;
      }
      const auto chunks = builder.on_event(e);
      if (api.stream) out += sse_events(chunks);
    }
    if (builder.finished()) {
      guard.done = true;
      metrics_.observe_duration(std::chrono::duration<double>(Clock::now() - t0).count());
      if (!api.stream) return w.send(json_response(200, builder.response()));
      w.write(out + kSseDone);
      w.end_stream();
      return;
    }
    if (api.stream) ok = w.write(out);
  }
}

}  // namespace moeq::server
