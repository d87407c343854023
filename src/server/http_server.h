// A small HTTP/1.1 server over POSIX sockets: one thread accepts, one thread per connection reads
// requests (keep-alive and pipelining), calls the handler, and writes the response — whole, or
// streamed with chunked transfer encoding (for server-sent events).
//
// Robustness: header/body size limits (HttpLimits); a deadline for reading each request from its
// first byte (slow senders get 408), an idle timeout between requests, a send timeout (a client
// that stops reading is dropped); a cap on connections (503 beyond it); malformed requests get an
// error status and the connection is closed; error responses close with a lingering drain, so a
// client still sending a too-large body reads its 413 instead of a reset.
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server/http_request.h"
#include "server/http_response.h"

namespace moeq::server {

// What a handler writes its response through. Either send() one whole response, or
// begin_stream(), write() pieces, end_stream(). Calls after the client left are harmless no-ops.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;
  virtual void send(const HttpResponse& r) = 0;
  // Starts a chunked response; false if the client is gone.
  virtual bool begin_stream(int status, std::string_view content_type,
                            const std::vector<std::pair<std::string, std::string>>& headers = {}) = 0;
  virtual bool write(std::string_view data) = 0;  // one chunk, sent now; false if the client is gone
  virtual bool end_stream() = 0;
  // Checks, without blocking, whether the client has closed its end of the connection (used
  // while a response is being prepared, to cancel work nobody will read).
  virtual bool client_gone() = 0;
};

using HttpHandler = std::function<void(const HttpRequest&, ResponseWriter&)>;
// Builds the response for a request the parser refused (status, message).
using HttpErrorFormatter = std::function<HttpResponse(int status, const std::string& message)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (see HttpServer::port())
  HttpLimits limits;
  int max_connections = 512;
  std::chrono::milliseconds request_timeout{30000};  // first byte of a request to its last
  std::chrono::milliseconds idle_timeout{30000};     // keep-alive: waiting for the next request
  std::chrono::milliseconds send_timeout{30000};     // one blocked send
  HttpErrorFormatter error_formatter;                // default: {"error": {"message": ...}}
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions opt, HttpHandler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens, then accepts on a thread of its own. Throws moeq::Error if it cannot bind.
  void start();
  int port() const { return port_; }  // the bound port (after start)
  // Stops accepting and closes idle connections; lets requests being handled finish for up to
  // `grace`; then shuts every connection down (handlers see client_gone()) and joins all threads.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  int open_connections() const;

 private:
  struct Conn {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> busy{false};  // inside the handler
    std::atomic<bool> done{false};
  };
  void accept_loop();
  void serve_connection(Conn& c);
  void reap(bool all);

  HttpServerOptions opt_;
  HttpHandler handler_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // a pipe that wakes the accept loop on stop()
  int port_ = 0;
  std::atomic<bool> draining_{false};  // stop() began: no new connections or keep-alive
  std::atomic<bool> stopping_{false};  // the grace period is over: everything closes
  std::thread acceptor_;
  mutable std::mutex mu_;
  std::list<std::unique_ptr<Conn>> conns_;
};

}  // namespace moeq::server
