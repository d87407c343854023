// Recipes: which format (and whether AWQ) each linear module gets. A recipe is an ordered list of
// rules, each a regular expression searched in the module name (as llm-compressor's "re:" targets);
// the first rule that matches decides. Presets reproduce the seeds' tiers (docs/QUALITY.md).
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/regex.h"
#include "model/weights.h"

namespace moeq {

struct RecipeRule {
  std::string match;   // PCRE2 regular expression, searched in the module name
  std::string format;  // a format tag (quant/formats)
  bool awq = false;    // the module takes part in AWQ (its input scale is searched and folded)
  bool rtn = false;    // plain round to nearest: absmax group scales, no calibration-weighted
                       // scale (clipping) search; excludes awq
  std::shared_ptr<const Regex> re;
};

struct ModuleAssignment {
  std::string format;
  bool awq = false;
  bool rtn = false;
};

struct Recipe {
  std::string name;
  std::vector<RecipeRule> rules;
  int awq_grid = 20;  // AWQ exponents tried: 0, 1/grid, ..., (grid-1)/grid (plus no scaling)

  // Validates everything (regexes compile, formats exist); throws naming `origin` and the rule.
  static Recipe from_json(const nlohmann::json& j, const std::string& origin);
  static Recipe load(const std::string& path);
  static Recipe preset(std::string_view name);  // throws listing the presets for an unknown name
  static const std::vector<std::string>& preset_names();
  nlohmann::json to_json() const;

  // A format for every module, or an error naming the modules no rule matches (or whose shape
  // the chosen format cannot hold) before any work starts.
  std::map<std::string, ModuleAssignment> resolve(const std::vector<LinearSpec>& modules) const;
};

// Group size of a group format tag ("int4_g32" -> 32); 0 for formats without groups.
int64_t format_group(std::string_view format);

}  // namespace moeq
