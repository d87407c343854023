#include "server/connection.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <exception>

namespace moeq::server {
namespace {

int ms_until(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return left.count() <= 0 ? 0 : int(std::min<long long>(left.count(), 1 << 30));
}

HttpResponse default_error(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') escaped += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) escaped += c;
  }
  r.body = "{\"error\": {\"message\": \"" + escaped + "\"}}";
  return r;
}

}  // namespace

Connection::ReadResult Connection::read_some(Clock::time_point deadline) {
  char buf[16384];
  while (true) {
    pollfd p{fd_, POLLIN, 0};
    const int n = ::poll(&p, 1, ms_until(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ReadResult::Error;
    if (n == 0) return ReadResult::Timeout;
    const ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
    if (got > 0) {
      in_.append(buf, size_t(got));
      return ReadResult::Data;
    }
    if (got == 0) return ReadResult::Closed;
    if (errno == EINTR || errno == EAGAIN) continue;
    return ReadResult::Error;
  }
}

bool Connection::send_all(std::string_view data) {
  if (broken_) return false;
  while (!data.empty()) {
    // MSG_NOSIGNAL: a closed peer is an error return, not SIGPIPE. SO_SNDTIMEO bounds each send.
    const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      return false;
    }
    data.remove_prefix(size_t(n));
  }
  return true;
}

void Connection::run() {
  HttpRequestParser parser(opt_.limits);
  bool sent_continue = false;
  bool request_started = false;
  Clock::time_point deadline = Clock::now() + opt_.idle_timeout;
  while (!stopping_.load() && !(draining_.load() && in_.empty() && !request_started)) {
    if (!in_.empty()) {
      if (!request_started) {
        // The first byte of a request starts its deadline (a slow sender cannot hold us forever).
        request_started = true;
        deadline = Clock::now() + opt_.request_timeout;
      }
      in_.erase(0, parser.feed(in_));
    }
    if (parser.failed()) return send_error_and_close(parser.error_status(), parser.error_message());
    if (parser.complete()) {
      handle(parser.request());
      if (!keep_alive_ || broken_ || (streaming_ && !stream_ended_)) {
        if (!broken_) lingering_close();
        return;
      }
      parser.reset();
      sent_continue = false;
      request_started = false;
      deadline = Clock::now() + opt_.idle_timeout;
      continue;
    }
    if (parser.awaiting_body() && parser.request().expect_continue && !sent_continue) {
      if (!send_all("HTTP/1.1 100 Continue\r\n\r\n")) return;
      sent_continue = true;
    }
    switch (read_some(deadline)) {
      case ReadResult::Data:
        break;
      case ReadResult::Timeout:
        if (request_started) return send_error_and_close(408, "timed out reading the request");
        return;  // an idle keep-alive connection: close quietly
      case ReadResult::Closed:
      case ReadResult::Error:
        return;
    }
  }
}

void Connection::handle(HttpRequest& req) {
  responded_ = streaming_ = stream_ended_ = false;
  keep_alive_ = req.keep_alive && !draining_.load();
  version_minor_ = req.version_minor;
  busy_.store(true);
  try {
    handler_(req, *this);
  } catch (const std::exception& e) {
    if (!responded_) send((opt_.error_formatter ? opt_.error_formatter : default_error)(500, e.what()));
    else broken_ = true;  // a half-written response: the connection cannot be reused
  }
  if (!responded_) send((opt_.error_formatter ? opt_.error_formatter : default_error)(500, "the handler sent no response"));
  busy_.store(false);
}

void Connection::send(const HttpResponse& r) {
  if (responded_) return;
  responded_ = true;
  keep_alive_ = keep_alive_ && !draining_.load();  // stop() may have begun while the handler ran
  std::string out = response_head(r.status, r.content_type, r.headers, static_cast<long long>(r.body.size()), keep_alive_);
  out += r.body;
  send_all(out);
}

bool Connection::begin_stream(int status, std::string_view content_type,
                              const std::vector<std::pair<std::string, std::string>>& headers) {
  if (responded_) return false;
  responded_ = streaming_ = true;
  // HTTP/1.0 has no chunked coding: the stream's end is the connection's end.
  chunked_ = version_minor_ >= 1;
  if (!chunked_) keep_alive_ = false;
  keep_alive_ = keep_alive_ && !draining_.load();
  return send_all(response_head(status, content_type, headers, chunked_ ? kChunked : kUntilClose, keep_alive_));
}

bool Connection::write(std::string_view data) {
  if (!streaming_ || stream_ended_) return false;
  if (data.empty()) return !broken_;
  return send_all(chunked_ ? chunk(data) : std::string(data));
}

bool Connection::end_stream() {
  if (!streaming_ || stream_ended_) return false;
  stream_ended_ = true;
  return chunked_ ? send_all(chunk_end()) : !broken_;
}

bool Connection::client_gone() {
  if (broken_ || stopping_.load()) return true;
  pollfd p{fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
  if (p.revents & POLLIN) {
    // Readable: either the client's next (pipelined) request or end-of-file.
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
  }
  return false;
}

void Connection::send_error_and_close(int status, const std::string& message) {
  keep_alive_ = false;
  responded_ = false;
  send((opt_.error_formatter ? opt_.error_formatter : default_error)(status, message));
  lingering_close();
}

// Half-closes, then reads and drops what the client still sends for a short while, so that our
// last response is not destroyed by a reset (closing with unread input sends RST).
void Connection::lingering_close() {
  ::shutdown(fd_, SHUT_WR);
  const auto until = Clock::now() + std::chrono::seconds(2);
  size_t drained = 0;
  char buf[16384];
  while (drained < (64u << 20)) {
    pollfd p{fd_, POLLIN, 0};
    const int n = ::poll(&p, 1, ms_until(until));
    if (n <= 0) return;
    const ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
    if (got <= 0) return;
    drained += size_t(got);
  }
}

}  // namespace moeq::server
