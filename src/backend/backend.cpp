#include "backend/backend.h"

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#ifdef MOEQ_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/device.h"
#endif

namespace moeq {

Tensor Backend::upload(const HostArray& a) {
  Tensor t = alloc(a.dtype, a.shape);
  to_device(t, a.data.get());
  return t;
}

Tensor Backend::upload_f32(const HostArray& a) {
  if (a.dtype == DType::F32) return upload(a);
  std::vector<float> tmp(size_t(a.numel()));
  for (size_t i = 0; i < tmp.size(); ++i) tmp[i] = load_as_f32(a.dtype, a.data.get(), i);
  Tensor t = alloc(DType::F32, a.shape);
  to_device(t, tmp.data());
  return t;
}

std::vector<float> Backend::download_f32(const Tensor& t) {
  MOEQ_CHECK(t.dtype() == DType::F32, "download_f32 of a {} tensor", dtype_name(t.dtype()));
  std::vector<float> out(size_t(t.numel()));
  to_host(out.data(), t);
  return out;
}

bool cuda_available() {
#ifdef MOEQ_HAVE_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

std::vector<std::string> backend_names() {
  std::vector<std::string> n = {"cpu"};
#ifdef MOEQ_HAVE_CUDA
  n.push_back("cuda");
#endif
  return n;
}

std::unique_ptr<Backend> make_backend(std::string_view name) {
  if (name == "auto") name = cuda_available() ? "cuda" : "cpu";
  if (name == "cpu") return std::make_unique<CpuBackend>();
  if (name == "cuda") {
#ifdef MOEQ_HAVE_CUDA
    if (!cuda_available()) fail("--device cuda: no CUDA device is present");
    return make_cuda_backend(0);
#else
    fail("--device cuda: this moeq was built without CUDA (no nvcc at build time)");
#endif
  }
  fail("unknown device '{}' (cpu, cuda or auto)", name);
}

}  // namespace moeq
