// One decoder layer from original weights + calibration to output tensors: AWQ search and folding
// where the recipe asks for it, then each linear quantized into its format with the calibration
// importance (imatrix) of its input.
#pragma once
#include <nlohmann/json.hpp>

#include <map>
#include <string>

#include "io/safetensors.h"
#include "model/config.h"
#include "quant/calibration.h"
#include "quant/float_layer.h"
#include "quant/recipe.h"

namespace moeq {

// Adds the layer's tensors to `out` and returns its records: {"modules": {name: {"format", "block"}},
// "awq": {...the exponents chosen...}}.
nlohmann::json quantize_layer(const ModelConfig& c, int layer, const HostLayer& orig, const LayerCalibration& cal,
                              const std::map<std::string, ModuleAssignment>& assign, int awq_grid,
                              io::SafetensorsWriter& out);

// Adds one module's parts as "<module>.<part>" and returns its record.
nlohmann::json emit_weight(const std::string& module, const QuantizedWeight& q, io::SafetensorsWriter& out);

// Quantizes a float matrix into `format`, weighting input channels by `importance` (may be empty).
QuantizedWeight quantize_module(const std::string& format, const FloatLinear& w, const std::vector<float>& importance);

}  // namespace moeq
