#include "backend/backend.h"

#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "quant/formats/synthetic.h"
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

uint64_t Backend::start_to_host(const Tensor& src) {
  MOEQ_CHECK(host_copies_.size() < size_t(kMaxToHostPending), "more than {} copies to the host left unfinished",
             kMaxToHostPending);
  std::vector<char> bytes(src.nbytes());
  to_host(bytes.data(), src);
  host_copies_[next_ticket_] = std::move(bytes);
  return next_ticket_++;
}

void Backend::finish_to_host(uint64_t ticket, void* host_dst) {
  const auto it = host_copies_.find(ticket);
  MOEQ_CHECK(it != host_copies_.end(), "no unfinished copy to the host has ticket {}", ticket);
  std::copy(it->second.begin(), it->second.end(), static_cast<char*>(host_dst));
  host_copies_.erase(it);
}

std::vector<float> Backend::download_f32(const Tensor& t) {
  MOEQ_CHECK(t.dtype() == DType::F32, "download_f32 of a {} tensor", dtype_name(t.dtype()));
  std::vector<float> out(size_t(t.numel()));
  to_host(out.data(), t);
  return out;
}

void Backend::linear3(const Tensor& x, const BackendWeight& a, const Tensor& oa, const BackendWeight& b,
                      const Tensor& ob, const BackendWeight& c, const Tensor& oc) {
  linear(x, a, oa);
  linear(x, b, ob);
  linear(x, c, oc);
}

void Backend::qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight,
                           float eps, const Tensor& positions, int n_heads, int n_kv_heads, int head_dim,
                           int rotary_dim, double theta) {
  rmsnorm(q, q_weight, eps, q);
  rmsnorm(k, k_weight, eps, k);
  rope(q, positions, n_heads, head_dim, rotary_dim, theta);
  rope(k, positions, n_kv_heads, head_dim, rotary_dim, theta);
}

void Backend::norm_qkv_attention(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x,
                                 const BackendWeight& wq, const BackendWeight& wk, const BackendWeight& wv,
                                 const Tensor* q_norm, const Tensor* k_norm, const Tensor& q, const Tensor& k,
                                 const Tensor& v, KVCache& kv, int layer, const Tensor& positions, const Tensor& slots,
                                 const AttentionShape& a, const Tensor& out) {
  MOEQ_CHECK((q_norm == nullptr) == (k_norm == nullptr), "norm_qkv_attention: q_norm and k_norm go together");
  rmsnorm_linear3(h, norm_weight, eps, x, wq, q, wk, k, wv, v);
  if (q_norm) {
    qk_norm_rope(q, k, *q_norm, *k_norm, eps, positions, a.n_heads, a.n_kv_heads, a.head_dim, a.rotary_dim,
                 a.rope_theta);
  } else {
    rope(q, positions, a.n_heads, a.head_dim, a.rotary_dim, a.rope_theta);
    rope(k, positions, a.n_kv_heads, a.head_dim, a.rotary_dim, a.rope_theta);
  }
  attention(q, k, v, kv, layer, positions, slots, a.n_heads, a.n_kv_heads, a.head_dim, out);
}

void Backend::linear_add(const Tensor& x, const BackendWeight& w, const Tensor& out, const Tensor& tmp) {
  linear(x, w, tmp);
  add(out, tmp, out);
}

void Backend::moe_experts_add(const Tensor& x, const Tensor& ids, const Tensor& weights,
                              const BackendExperts& experts, const Tensor& out, const Tensor& tmp) {
  moe_experts(x, ids, weights, experts, tmp);
  add(out, tmp, out);
}

void Backend::moe_block_add(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x,
                            const BackendWeight& gate, const Tensor& bias, int top_k, const Tensor& ids,
                            const Tensor& weights, const BackendExperts& experts, const Tensor& tmp) {
  rmsnorm(h, norm_weight, eps, x);
  router(x, gate, bias, top_k, ids, weights);
  moe_experts_add(x, ids, weights, experts, h, tmp);
}

void Backend::rmsnorm_linear3(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x,
                              const BackendWeight& a, const Tensor& oa, const BackendWeight& b, const Tensor& ob,
                              const BackendWeight& c, const Tensor& oc) {
  rmsnorm(h, norm_weight, eps, x);
  linear3(x, a, oa, b, ob, c, oc);
}

std::unique_ptr<BackendWeight> Backend::synthetic_weight(const std::string& format, int64_t rows, int64_t cols,
                                                         uint64_t seed) {
  return upload_weight(synthetic_host_weight(format, rows, cols, seed));
}

std::unique_ptr<BackendExperts> Backend::synthetic_experts(const std::string& format13, const std::string& format2,
                                                           int experts, int64_t hidden, int64_t inter, uint64_t seed) {
  std::vector<QuantizedWeight> w1, w2, w3;
  for (int e = 0; e < experts; ++e) {
    w1.push_back(synthetic_host_weight(format13, inter, hidden, seed + 3 * uint64_t(e)));
    w2.push_back(synthetic_host_weight(format2, hidden, inter, seed + 3 * uint64_t(e) + 1));
    w3.push_back(synthetic_host_weight(format13, inter, hidden, seed + 3 * uint64_t(e) + 2));
  }
  return upload_experts(w1, w2, w3);
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

KVCache Backend::alloc_kv(int layers, int slots, int ctx, int kv_dim) {
  KVCache c;
  c.layers = layers;
  c.slots = slots;
  c.ctx = ctx;
  c.kv_dim = kv_dim;
  c.k = alloc(DType::F32, {layers, slots, ctx, kv_dim});
  c.v = alloc(DType::F32, {layers, slots, ctx, kv_dim});
  return c;
}

}  // namespace moeq
