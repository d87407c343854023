// OpenAI-style API errors: {"error": {"message", "type", "param", "code"}} with an HTTP status.
// Handlers throw ApiError; the router turns it into the response.
#pragma once
#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "server/http_response.h"

namespace moeq::server {

class ApiError : public std::runtime_error {
 public:
  // `param`: the request field at fault (empty: null); `code`: a short machine-readable reason
  // (empty: null); `type`: empty picks "invalid_request_error" (4xx) or "server_error" (5xx).
  ApiError(int status, const std::string& message, std::string param = {}, std::string code = {},
           std::string type = {})
      : std::runtime_error(message), status(status), param(std::move(param)), code(std::move(code)), type(std::move(type)) {}

  int status;
  std::string param, code, type;
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Retry-After
};

nlohmann::ordered_json error_json(const ApiError& e);
HttpResponse error_response(const ApiError& e);

// JSON text for the wire: invalid UTF-8 (say, in an echoed string) becomes U+FFFD instead of
// making the serializer throw.
std::string dump_json(const nlohmann::ordered_json& j);

}  // namespace moeq::server
