#include "runtime/generation_config.h"

#include "core/error.h"
#include "io/json_file.h"

namespace moeq {

void apply_sampling_json(SamplingParams& p, const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) fail("{}: expected a JSON object", origin);
  auto num = [&](const char* key, float& dst) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_number()) fail("{}: '{}' must be a number, got {}", origin, key, j[key].dump());
    dst = j[key].get<float>();
  };
  for (const auto& f : kSamplingFloatFields) num(f.name, p.*f.field);
  if (j.contains("top_k") && !j["top_k"].is_null()) {
    if (!j["top_k"].is_number_integer()) fail("{}: 'top_k' must be an integer, got {}", origin, j["top_k"].dump());
    const int64_t k = j["top_k"].get<int64_t>();
    p.top_k = k < 0 ? 0 : int(std::min<int64_t>(k, 1 << 30));  // -1 means off, as in vLLM
  }
  if (j.contains("seed") && !j["seed"].is_null()) {
    if (!j["seed"].is_number_integer()) fail("{}: 'seed' must be an integer, got {}", origin, j["seed"].dump());
    p.seed = uint64_t(j["seed"].get<int64_t>());
    p.has_seed = true;
  }
  if (j.contains("do_sample") && j["do_sample"].is_boolean() && !j["do_sample"].get<bool>()) p.temperature = 0;
  try {
    p.validate();
  } catch (const Error& e) {
    fail("{}: {}", origin, e.what());
  }
}

SamplingParams load_generation_defaults(const std::filesystem::path& model_dir) {
  SamplingParams p;
  const auto path = model_dir / "generation_config.json";
  if (std::filesystem::exists(path)) apply_sampling_json(p, io::read_json_file(path), path.string());
  return p;
}

}  // namespace moeq
