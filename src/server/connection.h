// One client connection: reads requests off the socket under the limits and deadlines of
// HttpServerOptions, hands each to the handler, and is the handler's ResponseWriter.
#pragma once
#include <atomic>
#include <chrono>
#include <string>

#include "server/http_parser.h"
#include "server/http_server.h"

namespace moeq::server {

class Connection final : public ResponseWriter {
 public:
  // `draining`: the server is stopping, finish the current request and close; `stopping`: close
  // now. `busy` is set while the handler runs.
  Connection(int fd, const HttpServerOptions& opt, const HttpHandler& handler, const std::atomic<bool>& draining,
             const std::atomic<bool>& stopping, std::atomic<bool>& busy)
      : fd_(fd), opt_(opt), handler_(handler), draining_(draining), stopping_(stopping), busy_(busy) {}

  // Serves requests until the client closes, an error, a timeout, or "Connection: close".
  // Leaves the socket open (the owner closes it).
  void run();

  void send(const HttpResponse& r) override;
  bool begin_stream(int status, std::string_view content_type,
                    const std::vector<std::pair<std::string, std::string>>& headers) override;
  bool write(std::string_view data) override;
  bool end_stream() override;
  bool client_gone() override;

 private:
  using Clock = std::chrono::steady_clock;
  enum class ReadResult { Data, Closed, Timeout, Error };

  ReadResult read_some(Clock::time_point deadline);
  bool send_all(std::string_view data);
  void handle(HttpRequest& req);
  void send_error_and_close(int status, const std::string& message);
  void lingering_close();

  int fd_;
  const HttpServerOptions& opt_;
  const HttpHandler& handler_;
  const std::atomic<bool>& draining_;
  const std::atomic<bool>& stopping_;
  std::atomic<bool>& busy_;
  std::string in_;  // bytes read but not yet parsed (the start of pipelined requests)

  // The response to the current request.
  bool responded_ = false;  // a head has been sent
  bool streaming_ = false, stream_ended_ = false;
  bool broken_ = false;     // a send failed: the client is gone
  bool keep_alive_ = true;
  bool chunked_ = true;     // streams: chunked (HTTP/1.1) or raw until close (HTTP/1.0)
  int version_minor_ = 1;
};

}  // namespace moeq::server
