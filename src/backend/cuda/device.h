// CUDA device discovery and the backend's tuning knobs, usable from code compiled without nvcc.
#pragma once
#include <cstdint>
#include <string>

namespace moeq::cuda {

int device_count();          // 0 when no driver or device is present (never throws)
std::string device_name(int index);

// A tuning knob from the environment, for measurements: an integer >= lo (clamped to hi), else def.
int64_t env_knob(const char* name, int64_t def, int64_t lo, int64_t hi);

}  // namespace moeq::cuda
