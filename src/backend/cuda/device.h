// CUDA device discovery, usable from code compiled without nvcc.
#pragma once
#include <string>

namespace moeq::cuda {

int device_count();          // 0 when no driver or device is present (never throws)
std::string device_name(int index);

}  // namespace moeq::cuda
