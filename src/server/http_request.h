// One parsed HTTP/1.1 request, as the parser hands it to the server.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moeq::server {

struct HttpRequest {
  std::string method;  // as sent (methods are case-sensitive)
  std::string target;  // request-target as sent, e.g. "/v1/models?x=1"
  std::string path;    // target without the query
  std::string query;   // after '?', may be empty
  int version_minor = 1;  // HTTP/1.<minor>
  // Field names lower-cased; values with surrounding whitespace removed. Order kept.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;   // de-chunked when the request was chunked
  bool keep_alive = true;       // whether the connection may carry another request afterwards
  bool expect_continue = false;  // "Expect: 100-continue" was sent

  // The first field with this (lower-case) name.
  std::optional<std::string_view> header(std::string_view lower_name) const {
    for (const auto& [k, v] : headers)
      if (k == lower_name) return std::string_view(v);
    return std::nullopt;
  }
};

// Limits the parser enforces; each violation answers with its own status code.
struct HttpLimits {
  size_t max_request_line = 8 * 1024;  // 414 URI Too Long
  size_t max_header_bytes = 16 * 1024;  // whole header section incl. request line: 431
  size_t max_headers = 100;             // 431
  size_t max_body_bytes = 8 * 1024 * 1024;  // 413
};

}  // namespace moeq::server
