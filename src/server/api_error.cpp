#include "server/api_error.h"

namespace moeq::server {

nlohmann::ordered_json error_json(const ApiError& e) {
  nlohmann::ordered_json err = nlohmann::ordered_json::object();
  err["message"] = e.what();
  err["type"] = !e.type.empty() ? e.type : e.status >= 500 ? "server_error" : "invalid_request_error";
  err["param"] = e.param.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.param);
  err["code"] = e.code.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.code);
  return {{"error", err}};
}

HttpResponse error_response(const ApiError& e) {
  HttpResponse r;
  r.status = e.status;
  r.headers = e.headers;
  r.body = dump_json(error_json(e));
  return r;
}

std::string dump_json(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace moeq::server
