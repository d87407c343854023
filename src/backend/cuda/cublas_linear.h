// Prefill products of many tokens by cuBLAS: the weight decoded to a dense f16 copy in scratch
// (dequant_f16), the activations rounded to f16, one f16 GEMM with f32 accumulation; for the
// router, whose logits choose the experts, an f32 copy and an f32 GEMM (no tensor cores, no
// TF32), in place of gemm_f32's simple tiles. Past a few
// hundred tokens the product is bound by the tensor cores, and cuBLAS keeps them busier than the
// fused pipeline of gemm_pipe.cuh (mma.sync, two stages), which stays the path for fewer tokens
// (where decoding in the product saves the extra pass over the weight) and for weights too large
// for the scratch copy.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/dev_weight.h"

namespace moeq::cuda {

class CublasLinear {
 public:
  CublasLinear() = default;
  CublasLinear(const CublasLinear&) = delete;
  CublasLinear& operator=(const CublasLinear&) = delete;
  ~CublasLinear();

  // Whether run() should take T tokens through w: MOEQ_GEMM_CUBLAS (default 1; 0 keeps every
  // prefill product on the fused pipeline), at least MOEQ_GEMM_CUBLAS_TOKENS tokens (default
  // 256), and a dequantized copy of at most 256 MB. On an H100 it took a 2048-token prefill of all
  // 62 MiniMax-M2 layers from 4936 to 6185 tok/s (docs/PERF.md).
  static bool wanted(const DevWeight& w, int64_t T);
  // y[T][w.rows] (+)= x[T][w.cols] W^T. Not during stream capture the first time a size is seen
  // (the scratch grows then).
  void run(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s, bool accumulate);

  // The same for the f32 product: the same knobs, and an f32 copy of at most 256 MB.
  static bool wanted_f32(const DevWeight& w, int64_t T);
  // y[T][w.rows] = x[T][w.cols] W^T in f32.
  void run_f32(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s);

 private:
  void* grow(void*& buf, size_t& cap, size_t bytes, cudaStream_t s);
  void* handle(cudaStream_t s);  // created on first use, bound to s and the workspace
  void* handle_ = nullptr;  // cublasHandle_t
  void *wbuf_ = nullptr, *xbuf_ = nullptr, *work_ = nullptr;
  size_t wcap_ = 0, xcap_ = 0;
};

}  // namespace moeq::cuda
