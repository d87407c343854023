#include "backend/cuda/cublas_linear.h"

#include <cublas_v2.h>

#include <string>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device.h"
#include "backend/cuda/kernels.h"

namespace moeq::cuda {
namespace {

constexpr size_t kMaxWeightBytes = size_t(256) << 20, kWorkspaceBytes = size_t(32) << 20;

void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    fail_cuda(cudaErrorUnknown, (std::string("cuBLAS: ") + what + ": " + cublasGetStatusString(st)).c_str(), __FILE__,
              __LINE__);
}

// MOEQ_GEMM_CUBLAS and MOEQ_GEMM_CUBLAS_TOKENS, and a dense copy of `bytes` per weight.
bool wanted_for(const DevWeight& w, int64_t T, size_t bytes) {
  static const bool on = env_knob("MOEQ_GEMM_CUBLAS", 1, 0, 1) != 0;
  static const int64_t min_tokens = env_knob("MOEQ_GEMM_CUBLAS_TOKENS", 256, 17, int64_t(1) << 30);
  // The size bound also keeps rows and cols within cuBLAS's int dimensions.
  return on && T >= min_tokens && T < (int64_t(1) << 31) && size_t(w.rows) * size_t(w.cols) * bytes <= kMaxWeightBytes;
}

}  // namespace

CublasLinear::~CublasLinear() {
  if (handle_) cublasDestroy(static_cast<cublasHandle_t>(handle_));
  cudaFree(wbuf_);
  cudaFree(xbuf_);
  cudaFree(work_);
}

bool CublasLinear::wanted(const DevWeight& w, int64_t T) { return wanted_for(w, T, 2); }
bool CublasLinear::wanted_f32(const DevWeight& w, int64_t T) { return wanted_for(w, T, 4); }

void* CublasLinear::grow(void*& buf, size_t& cap, size_t bytes, cudaStream_t s) {
  if (cap < bytes) {
    CUDA_CHECK(cudaStreamSynchronize(s));  // kernels in flight may still read the old buffer
    CUDA_CHECK(cudaFree(buf));
    buf = nullptr;
    cap = 0;
    CUDA_CHECK(cudaMalloc(&buf, bytes));
    cap = bytes;
  }
  return buf;
}

void* CublasLinear::handle(cudaStream_t s) {
  if (!handle_) {
    cublasHandle_t h{};
    check_cublas(cublasCreate(&h), "create");
    handle_ = h;
    // Default math: f16 products on the tensor cores, f32 ones in f32 (TF32 only where asked for).
    check_cublas(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "set math mode");
    CUDA_CHECK(cudaMalloc(&work_, kWorkspaceBytes));
  }
  auto* h = static_cast<cublasHandle_t>(handle_);
  check_cublas(cublasSetStream(h, s), "set stream");
  check_cublas(cublasSetWorkspace(h, work_, kWorkspaceBytes), "set workspace");
  return h;
}

void CublasLinear::run(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s, bool accumulate) {
  auto* h = static_cast<cublasHandle_t>(handle(s));
  void* wf = grow(wbuf_, wcap_, size_t(w.rows) * size_t(w.cols) * 2, s);
  void* xf = grow(xbuf_, xcap_, size_t(T) * size_t(w.cols) * 2, s);
  dequant_f16(w, wf, s);
  to_f16(x, T * w.cols, xf, s);
  // Row-major Y[T][rows] is column-major rows x T: Y = W (rows x cols) times X^T (cols x T), with
  // the row-major W read as its column-major transpose.
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  check_cublas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(w.rows), int(T), int(w.cols), &alpha, wf, CUDA_R_16F,
                            int(w.cols), xf, CUDA_R_16F, int(w.cols), &beta, y, CUDA_R_32F, int(w.rows),
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "f16 GEMM");
}

void CublasLinear::run_f32(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s) {
  auto* h = static_cast<cublasHandle_t>(handle(s));
  auto* wf = static_cast<float*>(grow(wbuf_, wcap_, size_t(w.rows) * size_t(w.cols) * 4, s));
  dequant_f32(w, wf, s);
  // As in run(), column-major: Y (rows x T) = W (the row-major weight, transposed) times X^T.
  const float alpha = 1.0f, beta = 0.0f;
  check_cublas(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, int(w.rows), int(T), int(w.cols), &alpha, wf, int(w.cols), x,
                           int(w.cols), &beta, y, int(w.rows)),
               "f32 GEMM");
}

}  // namespace moeq::cuda
