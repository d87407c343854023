// Incremental HTTP/1.1 request parser (RFC 9112). Bytes arrive in whatever pieces the socket
// gives; feed() consumes them and stops at the end of one request, so pipelined requests stay in
// the caller's buffer for the next round. Every limit and malformation ends in an error state with
// the status code to answer (400, 411, 413, 414, 417, 431, 501, 505); after an error the
// connection must be closed, since the request boundary is lost.
//
// Bodies: Content-Length or Transfer-Encoding: chunked (extensions and trailers are read and
// ignored). Both at once is refused (request smuggling), as is any other transfer coding. A POST,
// PUT or PATCH with neither gets 411.
#pragma once
#include <string>
#include <string_view>

#include "server/http_request.h"

namespace moeq::server {

class HttpRequestParser {
 public:
  explicit HttpRequestParser(HttpLimits limits = {}) : limits_(limits) {}

  // Consumes bytes of the current request; returns how many were used (less than data.size()
  // only once the request is complete or failed).
  size_t feed(std::string_view data);

  bool complete() const { return state_ == State::Complete; }
  bool failed() const { return state_ == State::Error; }
  // The header section is done and a body is still to come (time for "100 Continue").
  bool awaiting_body() const;
  // Some byte of a request has arrived (a keep-alive connection between requests has none).
  bool started() const { return started_; }

  int error_status() const { return error_status_; }
  const std::string& error_message() const { return error_message_; }

  HttpRequest& request() { return req_; }
  void reset();  // ready for the next request on the same connection

 private:
  enum class State { RequestLine, Headers, Body, ChunkSize, ChunkData, ChunkDataEnd, Trailers, Complete, Error };

  bool take_line(std::string_view data, size_t& i, size_t limit, int over_status, const char* over_what);
  void on_request_line();
  void on_header_line();
  void on_headers_done();
  void on_chunk_size_line();
  void on_trailer_line();
  void fail(int status, std::string message);

  HttpLimits limits_;
  State state_ = State::RequestLine;
  HttpRequest req_;
  std::string line_;           // the line being read (without its line ending)
  bool line_done_ = false;
  size_t header_bytes_ = 0;    // request line + fields (+ trailers) so far
  size_t body_left_ = 0;       // Content-Length left, or the current chunk's bytes left
  bool started_ = false;
  int error_status_ = 0;
  std::string error_message_;
};

}  // namespace moeq::server
