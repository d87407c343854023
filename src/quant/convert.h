// moeq convert: the original checkpoint to a quantized model directory, one layer at a time
// (DESIGN §6). Peak memory is about one layer's weights plus the calibration activations. A work
// directory holds finished layer shards and the calibration state after each layer, so --resume
// continues after a crash or SIGKILL and produces byte-identical output. The output directory
// appears only when complete (assembled inside the work directory, then renamed into place).
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

#include "quant/calibration.h"
#include "quant/recipe.h"

namespace moeq {

struct ConvertOptions {
  std::filesystem::path src, dst;
  Recipe recipe;
  std::filesystem::path calib_file;  // calibration text
  int64_t calib_tokens = 16384;      // tokens used (whole sequences of calib_ctx)
  int calib_ctx = 512;
  CalibOptions calib;
  bool resume = false;
  std::filesystem::path work_dir;  // default: DST.work beside DST
  bool progress = true;
};

struct ConvertSummary {
  double bits_per_weight = 0;  // over every linear module (embed and lm_head included)
  uint64_t bytes = 0;          // all tensors of the output
  ExpertCoverage coverage;     // routed calibration tokens per expert
  int layers_done_before = 0;  // > 0 when resumed
};

// Checks everything that can be checked before any work (sources, recipe coverage, calibration
// file, output and work directories), then converts.
ConvertSummary convert_model(const ConvertOptions& opt);

}  // namespace moeq
