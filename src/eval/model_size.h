// Size and bits per weight of a model directory, from its safetensors headers alone (nothing is
// loaded). bpw counts the linear layers only (norms, biases and the router's correction bias are
// excluded, as every quantization report does), side data (scales, codebooks) included:
//   bpw = 8 * sum(bytes of every tensor "<module>.*") / sum(rows * cols), over linear_modules().
// Rows and cols come from the config, so original (fp8 + weight_scale_inv, bf16) and moeq
// quantized (qweight + scales + codebook) checkpoints are measured the same way.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>

namespace moeq {

struct ModelSize {
  size_t total_bytes = 0;    // every tensor of the checkpoint
  size_t linear_bytes = 0;   // tensors belonging to linear modules
  int64_t linear_params = 0; // sum of rows * cols of the linear modules
  double bpw = 0;            // 8 * linear_bytes / linear_params
};

// Throws naming the directory if it has no config or checkpoint, or if a linear module of the
// config has no tensor in the checkpoint.
ModelSize model_size(const std::filesystem::path& dir);

}  // namespace moeq
