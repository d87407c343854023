// Configurations of known models, for synthetic benchmarks (no checkpoint needed).
#pragma once
#include <string>

#include "model/config.h"

namespace moeq {

// "minimax-m2" (the real MiniMax-M2 dimensions) or "tiny-m2" (the fixture's); `layers` > 0
// overrides the layer count. Throws for an unknown name.
ModelConfig known_config(const std::string& name, int layers = 0);

}  // namespace moeq
