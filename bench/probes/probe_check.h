// The probes' check of a CUDA call: print the call site and the error, exit 1. (The probes that
// do not link moeq_lib cannot use CUDA_CHECK, which throws moeq::Error.)
#pragma once
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CHECK(x)                                                                         \
  do {                                                                                   \
    const cudaError_t e_ = (x);                                                          \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));  \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)
