// The Backend boundary (DESIGN §3): device memory plus the small set of ops the MiniMax-M2 forward
// is written against. The model never branches on the device; a backend never knows the model.
// Every op has a CPU reference (backend/cpu) and a parity test for every other backend.
// Tensors are handles to backend memory: outputs are passed as `const Tensor&` and written through.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backend/tensor.h"
#include "core/host_array.h"
#include "quant/formats/format.h"

namespace moeq {

// A linear weight [rows = out, cols = in] uploaded in its packed format.
class BackendWeight {
 public:
  virtual ~BackendWeight() = default;
  std::string format;
  int64_t rows = 0, cols = 0;
};

// All experts of one MoE layer, uploaded together (w1 = gate, w3 = up: [inter, hidden];
// w2 = down: [hidden, inter]).
class BackendExperts {
 public:
  virtual ~BackendExperts() = default;
  int num_experts = 0;
  int64_t hidden = 0, inter = 0;
};

// Key/value cache: k and v are [layers, slots, ctx, kv_dim]; a slot holds one sequence.
struct KVCache {
  Tensor k, v;
  int layers = 0, slots = 0, ctx = 0, kv_dim = 0;
};

// The attention's head layout and rotation (the model's config).
struct AttentionShape {
  int n_heads = 0, n_kv_heads = 0, head_dim = 0, rotary_dim = 0;
  double rope_theta = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory -----------------------------------------------------------------------------
  virtual Tensor alloc(DType dtype, std::vector<int64_t> shape) = 0;
  virtual void to_device(const Tensor& dst, const void* host_src) = 0;  // dst.nbytes() bytes
  virtual void to_host(void* host_dst, const Tensor& src) = 0;          // src.nbytes() bytes
  virtual std::unique_ptr<BackendWeight> upload_weight(const QuantizedWeight& w) = 0;
  virtual std::unique_ptr<BackendExperts> upload_experts(const std::vector<QuantizedWeight>& w1,
                                                         const std::vector<QuantizedWeight>& w2,
                                                         const std::vector<QuantizedWeight>& w3) = 0;
  // K and V caches [layers][slots][ctx][kv_dim], f32, from alloc().
  virtual KVCache alloc_kv(int layers, int slots, int ctx, int kv_dim);
  virtual void synchronize() {}
  // A copy to the host that need not wait for work queued after it: start_to_host queues a copy
  // of src and returns a ticket; finish_to_host(ticket, dst) waits for that copy only and fills
  // dst with src.nbytes() bytes (pipelined decoding: the next step is queued before this one's
  // tokens are read). Tickets are finished in any order, at most kMaxToHostPending unfinished at
  // a time. The default copies at start.
  static constexpr int kMaxToHostPending = 8;
  virtual uint64_t start_to_host(const Tensor& src);
  virtual void finish_to_host(uint64_t ticket, void* host_dst);

  Tensor upload(const HostArray& a);      // same dtype and shape
  Tensor upload_f32(const HostArray& a);  // any float dtype, widened to F32
  std::vector<float> download_f32(const Tensor& t);

  // ---- ops (all tensors belong to this backend; the first dimension counts tokens) ----------
  // out[t] = table row ids[t]; ids I32 [T], out F32 [T, table.cols].
  virtual void embedding(const BackendWeight& table, const Tensor& ids, const Tensor& out) = 0;
  // out = x / sqrt(mean(x^2) + eps) * weight, per row; x, out F32 [T, D]; weight F32 [D].
  virtual void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) = 0;
  // out[T, w.rows] = x[T, w.cols] W^T.
  virtual void linear(const Tensor& x, const BackendWeight& w, const Tensor& out) = 0;
  // In place, rotate-half RoPE on the first rotary_dim dims of each head; x F32 [T, n_heads*head_dim].
  virtual void rope(const Tensor& x, const Tensor& positions, int n_heads, int head_dim, int rotary_dim,
                    double theta) = 0;
  // Writes k, v [T, kv_dim] into the cache at (slots[t], positions[t]) of `layer`, then
  // out[t] = softmax(q k^T / sqrt(head_dim)) v over cache positions 0..positions[t] of slots[t]
  // (GQA: query head h reads kv head h / (n_heads / n_kv_heads)).
  virtual void attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCache& kv, int layer,
                         const Tensor& positions, const Tensor& slots, int n_heads, int n_kv_heads,
                         int head_dim, const Tensor& out) = 0;
  // MiniMax router: s = sigmoid(x G^T); choose top_k of s + bias; weights = s[chosen] renormalised.
  // ids I32 [T, top_k], weights F32 [T, top_k] (in descending order of s + bias).
  virtual void router(const Tensor& x, const BackendWeight& gate, const Tensor& bias, int top_k, const Tensor& ids,
                      const Tensor& weights) = 0;
  // out[t] = sum_j weights[t,j] * (silu(x W1_e^T) * (x W3_e^T)) W2_e^T with e = ids[t,j].
  virtual void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const BackendExperts& experts,
                           const Tensor& out) = 0;
  // out = a + b (out may alias a).
  virtual void add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;
  // out[i] = x[rows[i]]; rows I32 [n].
  virtual void gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) = 0;
  // oa = x A^T, ob = x B^T, oc = x C^T: the attention's q, k and v projections (one input), fused
  // where a backend can (the default calls linear three times).
  virtual void linear3(const Tensor& x, const BackendWeight& a, const Tensor& oa, const BackendWeight& b,
                       const Tensor& ob, const BackendWeight& c, const Tensor& oc);
  // x = rmsnorm(h) * norm_weight, then linear3(x, ...): the attention block's input norm and
  // projections, fused where a backend can (the default calls rmsnorm and linear3).
  virtual void rmsnorm_linear3(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x,
                               const BackendWeight& a, const Tensor& oa, const BackendWeight& b, const Tensor& ob,
                               const BackendWeight& c, const Tensor& oc);
  // In place: q and k each RMS-normalised over the whole row (q_weight, k_weight), then partial
  // RoPE on both; what the attention block does between the projections and attention, fused
  // where a backend can (the default calls rmsnorm and rope).
  virtual void qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight,
                            float eps, const Tensor& positions, int n_heads, int n_kv_heads, int head_dim,
                            int rotary_dim, double theta);
  // The attention block up to its output projection: x = rmsnorm(h) * norm_weight; q, k, v = x
  // Wq^T, x Wk^T, x Wv^T; q and k normalised over the whole row by q_norm and k_norm (skipped when
  // those are null) and rotated (partial RoPE); then attention as `attention` (this step's k and v
  // written to the cache) into out. x and out are outputs; q, k and v are scratch for it (their
  // contents afterwards are unspecified). Fused where a backend can (the default calls
  // rmsnorm_linear3, qk_norm_rope or rope, and attention).
  virtual void norm_qkv_attention(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x,
                                  const BackendWeight& wq, const BackendWeight& wk, const BackendWeight& wv,
                                  const Tensor* q_norm, const Tensor* k_norm, const Tensor& q, const Tensor& k,
                                  const Tensor& v, KVCache& kv, int layer, const Tensor& positions,
                                  const Tensor& slots, const AttentionShape& shape, const Tensor& out);
  // Residual forms, fused where a backend can: out += x W^T, out += moe(x). `tmp` (the shape of
  // out) is scratch for backends that compute the two steps apart (the defaults do).
  virtual void linear_add(const Tensor& x, const BackendWeight& w, const Tensor& out, const Tensor& tmp);
  virtual void moe_experts_add(const Tensor& x, const Tensor& ids, const Tensor& weights,
                               const BackendExperts& experts, const Tensor& out, const Tensor& tmp);
  // The MoE block with the RMSNorm before it: x = rmsnorm(h) * norm_weight (the post-attention
  // norm); router(x, gate, bias, top_k, ids, weights); h += moe(x) as moe_experts_add. Fused where
  // a backend can (the default calls rmsnorm, router and moe_experts_add).
  virtual void moe_block_add(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x,
                             const BackendWeight& gate, const Tensor& bias, int top_k, const Tensor& ids,
                             const Tensor& weights, const BackendExperts& experts, const Tensor& tmp);
  // ids[t] = argmax of logits row t (lowest index on ties): greedy sampling where the logits are.
  virtual void argmax(const Tensor& logits, const Tensor& ids) = 0;

  // ---- benchmarks ----------------------------------------------------------------------------
  // Random weights of a format with valid contents (finite, roughly unit-variance products), made
  // where they live (the CUDA backend fills device memory: no host copy of a 100 GB model).
  virtual std::unique_ptr<BackendWeight> synthetic_weight(const std::string& format, int64_t rows, int64_t cols,
                                                          uint64_t seed);
  virtual std::unique_ptr<BackendExperts> synthetic_experts(const std::string& format13, const std::string& format2,
                                                            int experts, int64_t hidden, int64_t inter, uint64_t seed);
  // Measured copy bandwidth of this backend's memory: bytes read + written per second.
  virtual double copy_bandwidth() = 0;
  // Bytes this backend can still allocate (device memory free; host RAM for the CPU).
  virtual int64_t memory_available() = 0;

  // ---- CUDA graphs: ops issued between begin_capture and end_capture are recorded, not run ----
  virtual bool supports_graphs() const { return false; }
  virtual void begin_capture() {}
  virtual std::shared_ptr<void> end_capture() { return nullptr; }
  virtual void replay(const std::shared_ptr<void>& /*graph*/) {}

  // ---- per-op timing (benchmarks): seconds spent in each op since profiling was switched on ----
  virtual void set_profiling(bool /*on*/) {}
  virtual std::vector<std::pair<std::string, double>> profile() { return {}; }

 private:
  std::map<uint64_t, std::vector<char>> host_copies_;  // the default start_to_host's finished copies
  uint64_t next_ticket_ = 1;
};

// "cpu", "cuda" or "auto" (cuda when a device is present and moeq was built with CUDA).
std::unique_ptr<Backend> make_backend(std::string_view name);
bool cuda_available();
std::vector<std::string> backend_names();

}  // namespace moeq
