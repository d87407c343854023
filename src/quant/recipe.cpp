#include "quant/recipe.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "io/json_file.h"
#include "quant/formats/format.h"

namespace moeq {
namespace {

const char* kExperts13 = R"(block_sparse_moe\.experts\.\d+\.w[13]$)";
const char* kExperts2 = R"(block_sparse_moe\.experts\.\d+\.w2$)";
const char* kAttention = R"(self_attn\.[qkvo]_proj$)";
const char* kRouter = R"(block_sparse_moe\.gate$)";
const char* kEmbedHead = R"(^(model\.embed_tokens|lm_head)$)";

nlohmann::json rule(const char* match, const char* format, bool awq = false, bool rtn = false) {
  nlohmann::json j = {{"match", match}, {"format", format}, {"awq", awq}};
  if (rtn) j["rtn"] = true;
  return j;
}

// The seeds' tiers. awq-w4g32/rtn-w4g32: the llm-compressor W4A16 group-32 expert recipe with the
// original fp8 attention kept; awq is AWQ as published (input scales searched and folded, then
// group scales chosen against the calibration-weighted error: AWQ's clipping search), rtn the
// plain round-to-nearest baseline the AWQ paper compares with (absmax group scales). mq*: hipfire's tiers, attention/router/embed/lm_head at q8_g32 and
// AWQ on gate/up: mq4 and mq3 are uniform 4- and 3-bit experts; the "-lloyd" tiers put gate/up on
// a Lloyd codebook and promote the down projection to 4 bits; mq2 is Lloyd 2-bit gate/up with a
// Lloyd 3-bit down projection.
nlohmann::json preset_json(std::string_view name) {
  auto mq = [&](const char* w13, const char* w2) {
    return nlohmann::json{{"name", std::string(name)},
                          {"rules",
                           {rule(kExperts13, w13, true), rule(kExperts2, w2), rule(kAttention, "q8_g32"),
                            rule(kRouter, "q8_g32"), rule(kEmbedHead, "q8_g32")}}};
  };
  if (name == "awq-w4g32" || name == "rtn-w4g32") {
    const bool awq = name == "awq-w4g32";
    return {{"name", std::string(name)},
            {"rules",
             {rule(kExperts13, "int4_g32", awq, !awq), rule(kExperts2, "int4_g32", awq, !awq),
              rule(kAttention, "fp8_b128"),
              rule(kRouter, "bf16"), rule(kEmbedHead, "bf16")}}};
  }
  if (name == "mq4") return mq("int4_g32", "int4_g32");
  if (name == "mq3-lloyd") return mq("lloyd3_g32", "int4_g32");
  if (name == "mq3") return mq("int3_g32", "int3_g32");
  if (name == "mq2-lloyd") return mq("lloyd2_g32", "int4_g32");
  if (name == "mq2") return mq("lloyd2_g32", "lloyd3_g32");
  return nullptr;
}

}  // namespace

int64_t format_group(std::string_view f) {
  const auto at = f.rfind("_g");
  if (at == std::string_view::npos) return 0;
  int64_t g = 0;
  for (char c : f.substr(at + 2)) {
    if (c < '0' || c > '9') return 0;
    g = g * 10 + (c - '0');
  }
  return g;
}

const std::vector<std::string>& Recipe::preset_names() {
  static const std::vector<std::string> names = {"awq-w4g32", "rtn-w4g32", "mq4",      "mq3-lloyd",
                                                 "mq3",       "mq2-lloyd", "mq2"};
  return names;
}

Recipe Recipe::preset(std::string_view name) {
  const nlohmann::json j = preset_json(name);
  if (j.is_null()) fail("unknown preset '{}' (presets: {})", name, fmt::join(preset_names(), ", "));
  return from_json(j, fmt::format("preset {}", name));
}

Recipe Recipe::load(const std::string& path) { return from_json(io::read_json_file(path), path); }

Recipe Recipe::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object()) fail("{}: a recipe is a JSON object", origin);
  Recipe r;
  r.name = j.value("name", "custom");
  if (j.contains("awq_grid")) {
    if (!j["awq_grid"].is_number_integer() || j["awq_grid"].get<int>() < 1 || j["awq_grid"].get<int>() > 1000)
      fail("{}: 'awq_grid' must be an integer in [1, 1000]", origin);
    r.awq_grid = j["awq_grid"].get<int>();
  }
  if (!j.contains("rules") || !j["rules"].is_array() || j["rules"].empty())
    fail("{}: 'rules' must be a non-empty list of {{\"match\", \"format\", \"awq\"}}", origin);
  for (size_t i = 0; i < j["rules"].size(); ++i) {
    const auto& e = j["rules"][i];
    const std::string where = fmt::format("{}: rule {}", origin, i);
    if (!e.is_object() || !e.contains("match") || !e["match"].is_string() || !e.contains("format") ||
        !e["format"].is_string())
      fail("{}: needs string fields 'match' and 'format'", where);
    RecipeRule rr;
    rr.match = e["match"].get<std::string>();
    rr.format = e["format"].get<std::string>();
    if (e.contains("awq")) {
      if (!e["awq"].is_boolean()) fail("{}: 'awq' must be true or false", where);
      rr.awq = e["awq"].get<bool>();
    }
    if (e.contains("rtn")) {
      if (!e["rtn"].is_boolean()) fail("{}: 'rtn' must be true or false", where);
      rr.rtn = e["rtn"].get<bool>();
    }
    if (rr.awq && rr.rtn) fail("{}: 'awq' and 'rtn' exclude each other", where);
    try {
      rr.re = std::make_shared<const Regex>(rr.match);
    } catch (const Error& err) {
      fail("{}: {}", where, err.what());
    }
    try {
      format_ops(rr.format);
    } catch (const Error&) {
      fail("{}: unknown format '{}' (formats: {})", where, rr.format, fmt::join(format_names(), ", "));
    }
    if (rr.format == "f32") fail("{}: f32 is not an output format (use bf16)", where);
    r.rules.push_back(std::move(rr));
  }
  return r;
}

nlohmann::json Recipe::to_json() const {
  nlohmann::json rules = nlohmann::json::array();
  for (const auto& r : this->rules) {
    nlohmann::json j = {{"match", r.match}, {"format", r.format}, {"awq", r.awq}};
    if (r.rtn) j["rtn"] = true;
    rules.push_back(std::move(j));
  }
  return {{"name", name}, {"rules", rules}, {"awq_grid", awq_grid}};
}

std::map<std::string, ModuleAssignment> Recipe::resolve(const std::vector<LinearSpec>& modules) const {
  std::map<std::string, ModuleAssignment> out;
  std::vector<std::string> unassigned, misfit;
  for (const LinearSpec& m : modules) {
    const RecipeRule* hit = nullptr;
    for (const auto& r : rules)
      if (r.re->search(m.name)) {
        hit = &r;
        break;
      }
    if (!hit) {
      unassigned.push_back(m.name);
      continue;
    }
    const int64_t g = format_group(hit->format);
    if (g > 0 && m.cols % g != 0)
      misfit.push_back(fmt::format("{} ({} inputs, not a multiple of {} for {})", m.name, m.cols, g, hit->format));
    out[m.name] = {hit->format, hit->awq, hit->rtn};
  }
  auto some = [](const std::vector<std::string>& v) {
    std::vector<std::string> head(v.begin(), v.begin() + std::min<size_t>(v.size(), 5));
    return fmt::format("{}{}", fmt::join(head, ", "), v.size() > 5 ? fmt::format(" and {} more", v.size() - 5) : "");
  };
  if (!unassigned.empty())
    fail("recipe '{}' assigns no format to {} module(s): {}", name, unassigned.size(), some(unassigned));
  if (!misfit.empty()) fail("recipe '{}': format does not fit {} module(s): {}", name, misfit.size(), some(misfit));
  return out;
}

}  // namespace moeq
