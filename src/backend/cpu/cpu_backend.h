// The CPU backend: the reference. Plain float32 math over host memory, threaded with
// parallel_for; weights stay in their packed format (zero-copy views of the mmapped checkpoint).
#pragma once
#include "backend/backend.h"

namespace moeq {

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  void to_device(const Tensor& dst, const void* host_src) override;
  void to_host(void* host_dst, const Tensor& src) override;
  std::unique_ptr<BackendWeight> upload_weight(const QuantizedWeight& w) override;
  std::unique_ptr<BackendExperts> upload_experts(const std::vector<QuantizedWeight>& w1,
                                                 const std::vector<QuantizedWeight>& w2,
                                                 const std::vector<QuantizedWeight>& w3) override;

  void embedding(const BackendWeight& table, const Tensor& ids, const Tensor& out) override;
  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override;
  void linear(const Tensor& x, const BackendWeight& w, const Tensor& out) override;
  void rope(const Tensor& x, const Tensor& positions, int n_heads, int head_dim, int rotary_dim, double theta) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCache& kv, int layer, const Tensor& positions,
                 const Tensor& slots, int n_heads, int n_kv_heads, int head_dim, const Tensor& out) override;
  void router(const Tensor& x, const BackendWeight& gate, const Tensor& bias, int top_k, const Tensor& ids,
              const Tensor& weights) override;
  void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const BackendExperts& experts,
                   const Tensor& out) override;
  void add(const Tensor& a, const Tensor& b, const Tensor& out) override;
  void gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) override;
  void argmax(const Tensor& logits, const Tensor& ids) override;
  double copy_bandwidth() override;
  int64_t memory_available() override;
};

// The host-side weight a CPU BackendWeight wraps (for code that needs the packed data itself).
const QuantizedWeight& cpu_weight(const BackendWeight& w);

}  // namespace moeq
