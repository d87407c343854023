// Server-sent events as OpenAI streams them: one "data: <json>\n\n" event per chunk, and
// "data: [DONE]\n\n" at the end.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "server/api_error.h"

namespace moeq::server {

inline std::string sse_event(const nlohmann::ordered_json& j) { return "data: " + dump_json(j) + "\n\n"; }

inline std::string sse_events(const std::vector<nlohmann::ordered_json>& chunks) {
  std::string out;
  for (const auto& c : chunks) out += sse_event(c);
  return out;
}

inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace moeq::server
