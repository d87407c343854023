// The CUDA backend (built when nvcc is found): the Backend ops on device memory, weights kept in
// their packed formats and dequantized in registers by the kernels.
#pragma once
#include <memory>

#include "backend/backend.h"

namespace moeq {

std::unique_ptr<Backend> make_cuda_backend(int device = 0);

}  // namespace moeq
