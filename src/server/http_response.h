// HTTP responses: status reason phrases and the serialized head of a response.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moeq::server {

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra fields (e.g. Retry-After)
  std::string body;
};

std::string_view reason_phrase(int status);

// "HTTP/1.1 <status> <reason>\r\n" plus Date, Server, Content-Type, the extra headers, Connection,
// and Content-Length (body_length >= 0), Transfer-Encoding: chunked (kChunked) or nothing (kUntilClose:
// the body ends when the connection closes, for HTTP/1.0 clients), then "\r\n".
inline constexpr long long kChunked = -1, kUntilClose = -2;
std::string response_head(int status, std::string_view content_type,
                           const std::vector<std::pair<std::string, std::string>>& headers, long long body_length,
                           bool keep_alive);

// One chunk of a chunked body ("<hex size>\r\n<data>\r\n"); empty data is skipped by callers
// since a zero-size chunk ends the body. chunk_end() is that last chunk.
std::string chunk(std::string_view data);
inline std::string_view chunk_end() { return "0\r\n\r\n"; }

}  // namespace moeq::server
