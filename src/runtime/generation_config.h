// Default sampling parameters from a model directory's generation_config.json, and overrides
// from a JSON object (the server's --override-generation-config, a request's fields).
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>

#include "runtime/sampler.h"

namespace moeq {

// The sampler's float settings by their generation_config.json / OpenAI request names, for the
// parsers of both (each checks values its own way).
struct SamplingFloatField {
  const char* name;
  float SamplingParams::*field;
};
inline constexpr SamplingFloatField kSamplingFloatFields[] = {
    {"temperature", &SamplingParams::temperature},
    {"top_p", &SamplingParams::top_p},
    {"min_p", &SamplingParams::min_p},
    {"repetition_penalty", &SamplingParams::repetition_penalty},
    {"frequency_penalty", &SamplingParams::frequency_penalty},
    {"presence_penalty", &SamplingParams::presence_penalty},
};

// Missing file: the built-in defaults. A malformed file or value: moeq::Error naming the key.
SamplingParams load_generation_defaults(const std::filesystem::path& model_dir);
// Applies the keys present in `j` (temperature, top_p, top_k, min_p, repetition_penalty,
// frequency_penalty, presence_penalty, seed, do_sample) onto `p`; `origin` names the source.
void apply_sampling_json(SamplingParams& p, const nlohmann::json& j, const std::string& origin);

}  // namespace moeq
