// Error checks for CUDA calls and kernel launches: every failure becomes a moeq::Error naming the
// call site (exit code 0 proves nothing on a GPU).
#pragma once
#include <cuda_runtime.h>

namespace moeq::cuda {

[[noreturn]] void fail_cuda(cudaError_t err, const char* what, const char* file, int line);

}  // namespace moeq::cuda

#define CUDA_CHECK(call)                                                                   \
  do {                                                                                     \
    const cudaError_t moeq_err_ = (call);                                                  \
    if (moeq_err_ != cudaSuccess) ::moeq::cuda::fail_cuda(moeq_err_, #call, __FILE__, __LINE__); \
  } while (0)
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())
