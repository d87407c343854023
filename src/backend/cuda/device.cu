#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>

#include "backend/cuda/device.h"

namespace moeq::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

int64_t env_knob(const char* name, int64_t def, int64_t lo, int64_t hi) {
  const char* env = std::getenv(name);
  if (!env || !*env) return def;
  char* end = nullptr;
  const long v = std::strtol(env, &end, 10);
  return *end == 0 && v >= lo ? std::min<int64_t>(v, hi) : def;
}

std::string device_name(int index) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) return "unknown";
  return p.name;
}

}  // namespace moeq::cuda

#include <cstdlib>
#include <cstring>

#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {

bool pdl_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("MOEQ_PDL");
    if (env && std::strcmp(env, "0") == 0) return false;
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) return false;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
    return major >= 9;
  }();
  return on;
}

int sm_count() {
  static const int n = [] {
    int dev = 0, count = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev));
    return count;
  }();
  return n;
}

}  // namespace moeq::cuda
