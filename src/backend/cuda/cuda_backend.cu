#include "backend/cuda/cuda_backend.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <map>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dev_weight.h"
#include "backend/cuda/kernels.h"
#include "core/error.h"

namespace moeq {
namespace cuda {

void fail_cuda(cudaError_t err, const char* what, const char* file, int line) {
  fail("CUDA error '{}' ({}) in {} at {}:{}", cudaGetErrorString(err), int(err), what, file, line);
}

}  // namespace cuda

namespace {

using cuda::DevWeight;
using cuda::Fmt;

// Token counts up to this use the decode kernels (weights read once per 8 tokens); above, the
// tensor-core products.
constexpr int64_t kDecodeTokens = 16;

std::shared_ptr<void> device_alloc(size_t bytes) {
  void* p = nullptr;
  if (bytes == 0) bytes = 16;
  const cudaError_t e = cudaMalloc(&p, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    fail("CUDA: out of device memory allocating {:.1f} MiB ({})", double(bytes) / (1 << 20), cudaGetErrorString(e));
  }
  return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
}

// Parses "int4_g32" / "lloyd3_g128" into bits and group.
bool parse_grouped(const std::string& f, const char* prefix, int& bits, int& group) {
  const size_t n = std::strlen(prefix);
  if (f.compare(0, n, prefix) != 0) return false;
  return std::sscanf(f.c_str() + n, "%d_g%d", &bits, &group) == 2;
}

struct CudaWeight final : BackendWeight {
  DevWeight dev;
  std::vector<std::shared_ptr<void>> keep;  // the parts' device memory
};

struct CudaExperts final : BackendExperts {
  cuda::MoeWeights dev;
  std::vector<std::shared_ptr<void>> keep;
};

// Fills the format fields of a DevWeight from a host weight (no data pointers).
DevWeight describe(const QuantizedWeight& w) {
  DevWeight d;
  d.rows = w.rows;
  d.cols = w.cols;
  if (w.cols % 32 != 0) fail("CUDA: weight with {} inputs (must be a multiple of 32)", w.cols);
  int bits = 0, group = 0;
  if (w.format == "f32") {
    d.fmt = Fmt::F32;
    d.row_bytes = w.cols * 4;
  } else if (w.format == "bf16") {
    d.fmt = Fmt::BF16;
    d.row_bytes = w.cols * 2;
  } else if (w.format == "fp8_b128") {
    d.fmt = Fmt::FP8_B128;
    d.row_bytes = w.cols;
    d.group = int32_t(w.block_cols);
    d.block_rows = int32_t(w.block_rows);
    if (w.block_cols % 32 != 0) fail("CUDA: fp8 block of {} columns (must be a multiple of 32)", w.block_cols);
  } else if (w.format == "q8_g32") {
    d.fmt = Fmt::Q8;
    d.row_bytes = w.cols;
    d.group = 32;
  } else if (parse_grouped(w.format, "int", bits, group) || parse_grouped(w.format, "lloyd", bits, group)) {
    d.fmt = w.format[0] == 'i' ? Fmt::INT : Fmt::LLOYD;
    d.bits = bits;
    d.group = group;
    d.row_bytes = w.cols * bits / 8;
    if (d.fmt == Fmt::LLOYD) d.cb_rows = int32_t(w.part("codebook").shape[0]);
  } else {
    fail("CUDA backend: no kernels for weight format '{}'", w.format);
  }
  return d;
}

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(int device) : device_(device) {
    CUDA_CHECK(cudaSetDevice(device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    cudaDeviceProp p{};
    CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    sm_count_ = p.multiProcessorCount;
    name_ = fmt::format("cuda:{} ({})", device, p.name);
    bad_id_ = device_alloc(sizeof(int32_t));
    CUDA_CHECK(cudaMemset(bad_id_.get(), 0xff, sizeof(int32_t)));
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return name_; }

  Tensor alloc(DType dtype, std::vector<int64_t> shape) override {
    int64_t n = 1;
    for (int64_t d : shape) {
      MOEQ_CHECK(d >= 0, "cuda: negative dimension in {}", shape_str(shape));
      n *= d;
    }
    auto mem = device_alloc(size_t(n) * dtype_size(dtype));
    void* p = mem.get();
    return Tensor(std::move(mem), p, dtype, std::move(shape), this);
  }

  void to_device(const Tensor& dst, const void* src) override {
    if (dst.nbytes()) CUDA_CHECK(cudaMemcpyAsync(dst.data(), src, dst.nbytes(), cudaMemcpyHostToDevice, stream_));
  }

  void to_host(void* dst, const Tensor& src) override {
    if (src.nbytes()) CUDA_CHECK(cudaMemcpyAsync(dst, src.data(), src.nbytes(), cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }

  void synchronize() override {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    int32_t bad = -1;
    CUDA_CHECK(cudaMemcpy(&bad, bad_id_.get(), sizeof bad, cudaMemcpyDeviceToHost));
    if (bad != -1) {
      CUDA_CHECK(cudaMemset(bad_id_.get(), 0xff, sizeof(int32_t)));
      fail("token id {} outside the embedding table", bad);
    }
  }

  std::unique_ptr<BackendWeight> upload_weight(const QuantizedWeight& w) override {
    format_ops(w.format).validate(w, "cuda upload");
    auto out = std::make_unique<CudaWeight>();
    out->format = w.format;
    out->rows = w.rows;
    out->cols = w.cols;
    out->dev = describe(w);
    out->dev.q = static_cast<const uint8_t*>(copy_part(w.part("qweight"), out->keep));
    if (w.parts.count("scales")) out->dev.scales = copy_part(w.part("scales"), out->keep);
    if (w.parts.count("codebook"))
      out->dev.codebook = static_cast<const uint16_t*>(copy_part(w.part("codebook"), out->keep));
    return out;
  }

  std::unique_ptr<BackendExperts> upload_experts(const std::vector<QuantizedWeight>& w1,
                                                 const std::vector<QuantizedWeight>& w2,
                                                 const std::vector<QuantizedWeight>& w3) override {
    MOEQ_CHECK(!w1.empty() && w1.size() == w2.size() && w1.size() == w3.size(), "cuda: expert weight lists differ");
    auto out = std::make_unique<CudaExperts>();
    out->num_experts = int(w1.size());
    out->inter = w1[0].rows;
    out->hidden = w1[0].cols;
    out->dev.experts = out->num_experts;
    out->dev.hidden = out->hidden;
    out->dev.inter = out->inter;
    out->dev.w1 = stack(w1, out->keep);
    out->dev.w2 = stack(w2, out->keep);
    out->dev.w3 = stack(w3, out->keep);
    MOEQ_CHECK(w1[0].format == w3[0].format, "CUDA backend: w1 ({}) and w3 ({}) of a layer must share a format",
               w1[0].format, w3[0].format);
    MOEQ_CHECK(out->dev.w1.rows == out->inter && out->dev.w3.rows == out->inter && out->dev.w2.rows == out->hidden &&
                   out->dev.w2.cols == out->inter && out->dev.w3.cols == out->hidden,
               "cuda: inconsistent expert shapes");
    return out;
  }

  KVCache alloc_kv(int layers, int slots, int ctx, int kv_dim) override {
    KVCache c;
    c.layers = layers;
    c.slots = slots;
    c.ctx = ctx;
    c.kv_dim = kv_dim;
    c.k = alloc(DType::F32, {layers, slots, ctx, kv_dim});
    c.v = alloc(DType::F32, {layers, slots, ctx, kv_dim});
    CUDA_CHECK(cudaMemsetAsync(c.k.data(), 0, c.k.nbytes(), stream_));
    CUDA_CHECK(cudaMemsetAsync(c.v.data(), 0, c.v.nbytes(), stream_));
    return c;
  }

  // ---- ops --------------------------------------------------------------------------------
  void embedding(const BackendWeight& table, const Tensor& ids, const Tensor& out) override {
    const auto& w = static_cast<const CudaWeight&>(table);
    check(out, ids.numel(), w.cols, "embedding output");
    cuda::embedding(w.dev, ids.as<int32_t>(), ids.numel(), out.as<float>(), static_cast<int32_t*>(bad_id_.get()),
                    stream_);
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override {
    check(out, x.rows(), x.row_size(), "rmsnorm output");
    MOEQ_CHECK(weight.numel() == x.row_size(), "cuda: rmsnorm weight of {} for rows of {}", weight.numel(), x.row_size());
    cuda::rmsnorm(x.as<float>(), weight.as<float>(), eps, x.rows(), x.row_size(), out.as<float>(), stream_);
  }

  void linear(const Tensor& x, const BackendWeight& w, const Tensor& out) override {
    check(x, x.rows(), w.cols, "linear input");
    check(out, x.rows(), w.rows, "linear output");
    run_linear(static_cast<const CudaWeight&>(w).dev, x.as<float>(), x.rows(), out.as<float>());
  }

  void rope(const Tensor& x, const Tensor& positions, int n_heads, int head_dim, int rotary_dim,
            double theta) override {
    check(x, x.rows(), int64_t(n_heads) * head_dim, "rope input");
    MOEQ_CHECK(positions.numel() == x.rows(), "cuda: rope positions {} for {} rows", positions.numel(), x.rows());
    cuda::rope(x.as<float>(), positions.as<int32_t>(), x.rows(), n_heads, head_dim, rotary_dim,
               inv_freq(rotary_dim, theta), stream_);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCache& kv, int layer, const Tensor& positions,
                 const Tensor& slots, int n_heads, int n_kv_heads, int head_dim, const Tensor& out) override {
    const int64_t T = q.rows(), kv_dim = int64_t(n_kv_heads) * head_dim;
    check(q, T, int64_t(n_heads) * head_dim, "attention q");
    check(k, T, kv_dim, "attention k");
    check(v, T, kv_dim, "attention v");
    check(out, T, int64_t(n_heads) * head_dim, "attention output");
    MOEQ_CHECK(kv.kv_dim == kv_dim && layer >= 0 && layer < kv.layers, "cuda: attention cache mismatch");
    const int64_t slot_stride = int64_t(kv.ctx) * kv_dim;
    float* kc = kv.k.as<float>() + int64_t(layer) * kv.slots * slot_stride;
    float* vc = kv.v.as<float>() + int64_t(layer) * kv.slots * slot_stride;
    cuda::kv_write(k.as<float>(), v.as<float>(), positions.as<int32_t>(), slots.as<int32_t>(), T, kc, vc, slot_stride,
                   int(kv_dim), kv.ctx, stream_);
    const int splits = cuda::attention_splits(T, n_kv_heads, kv.ctx, sm_count_);
    cuda::AttnScratch sc;
    if (splits > 1) {
      const int64_t n = T * n_heads * splits;
      sc.partial_o = scratch_f32("attn_o", n * head_dim);
      sc.partial_ml = scratch_f32("attn_ml", n * 2);
      sc.capacity_splits = n;
    }
    cuda::attention(q.as<float>(), kc, vc, positions.as<int32_t>(), slots.as<int32_t>(), T, n_heads, n_kv_heads,
                    head_dim, slot_stride, kv.ctx, splits, sc, out.as<float>(), stream_);
  }

  void router(const Tensor& x, const BackendWeight& gate, const Tensor& bias, int top_k, const Tensor& ids,
              const Tensor& weights) override {
    const int64_t T = x.rows(), E = gate.rows;
    MOEQ_CHECK(top_k > 0 && top_k <= E, "cuda: router top_k {} of {} experts", top_k, E);
    MOEQ_CHECK(bias.numel() == E, "cuda: router bias of {} for {} experts", bias.numel(), E);
    check(ids, T, top_k, "router ids");
    check(weights, T, top_k, "router weights");
    // f32 products (not the tensor cores) for the router: a rounding difference in the logits
    // could change which experts are chosen. The gate is small; its reads stay cheap.
    float* logits = scratch_f32("router_logits", T * E);
    cuda::gemv(static_cast<const CudaWeight&>(gate).dev, x.as<float>(), T, logits, stream_);
    cuda::router_topk(logits, bias.as<float>(), T, int(E), top_k, ids.as<int32_t>(), weights.as<float>(), stream_);
  }

  void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const BackendExperts& experts,
                   const Tensor& out) override {
    const auto& ex = static_cast<const CudaExperts&>(experts);
    const int64_t T = x.rows(), K = ids.row_size();
    check(x, T, ex.hidden, "moe input");
    check(out, T, ex.hidden, "moe output");
    check(weights, T, K, "moe weights");
    if (T <= kDecodeTokens) {
      float* a = scratch_f32("moe_a", T * K * ex.inter);
      cuda::moe_decode(ex.dev, x.as<float>(), ids.as<int32_t>(), weights.as<float>(), T, int(K), a, out.as<float>(),
                       stream_);
      return;
    }
    const int64_t pairs = T * K;
    cuda::MoeScratch sc;
    sc.counts = scratch_i32("moe_counts", ex.num_experts);
    sc.offsets = scratch_i32("moe_offsets", ex.num_experts + 1);
    sc.cursor = scratch_i32("moe_cursor", ex.num_experts);
    sc.perm = scratch_i32("moe_perm", pairs);
    sc.perm_token = scratch_i32("moe_perm_token", pairs);
    sc.perm_weight = scratch_f32("moe_perm_weight", pairs);
    sc.tiles = scratch_i32("moe_tiles", 3 * cuda::moe_max_tiles(pairs, ex.num_experts));
    sc.num_tiles = scratch_i32("moe_num_tiles", 1);
    sc.a = scratch_f32("moe_a", pairs * ex.inter);
    sc.y = scratch_f32("moe_y", pairs * ex.hidden);
    sc.capacity = pairs;
    cuda::moe_prefill(ex.dev, x.as<float>(), ids.as<int32_t>(), weights.as<float>(), T, int(K), sc, out.as<float>(),
                      stream_);
  }

  void add(const Tensor& a, const Tensor& b, const Tensor& out) override {
    MOEQ_CHECK(a.numel() == b.numel() && a.numel() == out.numel(), "cuda: add of {} and {} into {}",
               shape_str(a.shape()), shape_str(b.shape()), shape_str(out.shape()));
    cuda::add(a.as<float>(), b.as<float>(), out.as<float>(), a.numel(), stream_);
  }

  void gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) override {
    check(out, rows.numel(), x.row_size(), "gather output");
    cuda::gather_rows(x.as<float>(), rows.as<int32_t>(), rows.numel(), x.row_size(), out.as<float>(), stream_);
  }

 private:
  static void check(const Tensor& t, int64_t rows, int64_t cols, const char* what) {
    MOEQ_CHECK(t.rows() == rows && t.row_size() == cols, "cuda: {} has shape {}, expected [{}, {}]", what,
               shape_str(t.shape()), rows, cols);
  }

  void run_linear(const DevWeight& w, const float* x, int64_t T, float* y) {
    if (T <= kDecodeTokens) cuda::gemv(w, x, T, y, stream_);
    else cuda::gemm(w, x, T, y, stream_);
  }

  void* copy_part(const HostArray& a, std::vector<std::shared_ptr<void>>& keep) {
    auto mem = device_alloc(a.nbytes);
    CUDA_CHECK(cudaMemcpy(mem.get(), a.data.get(), a.nbytes, cudaMemcpyHostToDevice));
    keep.push_back(mem);
    return mem.get();
  }

  // All experts' parts of one matrix in one allocation each, expert after expert.
  DevWeight stack(const std::vector<QuantizedWeight>& ws, std::vector<std::shared_ptr<void>>& keep) {
    DevWeight d = describe(ws[0]);
    d.experts = int32_t(ws.size());
    for (const auto& w : ws) {
      format_ops(w.format).validate(w, "cuda upload");
      if (w.format != ws[0].format || w.rows != ws[0].rows || w.cols != ws[0].cols ||
          describe(w).cb_rows != d.cb_rows)
        fail("CUDA backend: the experts of a layer must share one format and shape ({} vs {})", w.format,
             ws[0].format);
    }
    auto pack = [&](const char* part, int64_t& stride_bytes) -> void* {
      if (!ws[0].parts.count(part)) return nullptr;
      const size_t n = ws[0].part(part).nbytes;
      stride_bytes = int64_t(n);
      auto mem = device_alloc(n * ws.size());
      for (size_t e = 0; e < ws.size(); ++e)
        CUDA_CHECK(cudaMemcpy(static_cast<char*>(mem.get()) + e * n, ws[e].part(part).data.get(), n,
                              cudaMemcpyHostToDevice));
      keep.push_back(mem);
      return mem.get();
    };
    int64_t qs = 0, ss = 0, cs = 0;
    d.q = static_cast<const uint8_t*>(pack("qweight", qs));
    d.scales = pack("scales", ss);
    d.codebook = static_cast<const uint16_t*>(pack("codebook", cs));
    d.q_stride = qs;
    d.s_stride = d.fmt == Fmt::FP8_B128 ? ss / 4 : ss / 2;  // in elements of the scale type
    d.cb_stride = cs / 2;
    return d;
  }

  const float* inv_freq(int rotary_dim, double theta) {
    const auto key = std::make_pair(rotary_dim, theta);
    auto it = inv_freq_.find(key);
    if (it != inv_freq_.end()) return it->second.as<float>();
    std::vector<float> f(static_cast<size_t>(rotary_dim / 2));
    for (int i = 0; i < rotary_dim / 2; ++i) f[size_t(i)] = float(1.0 / std::pow(theta, double(2 * i) / rotary_dim));
    Tensor t = alloc(DType::F32, {int64_t(f.size())});
    CUDA_CHECK(cudaMemcpy(t.data(), f.data(), t.nbytes(), cudaMemcpyHostToDevice));
    return inv_freq_.emplace(key, t).first->second.as<float>();
  }

  // Named scratch buffers that only grow (growing synchronises the stream first: the old buffer
  // may still be in use by queued kernels).
  void* scratch(const std::string& name, size_t bytes) {
    auto& s = scratch_[name];
    if (s.second < bytes) {
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      s.first = device_alloc(bytes);
      s.second = bytes;
    }
    return s.first.get();
  }
  float* scratch_f32(const std::string& n, int64_t count) {
    return static_cast<float*>(scratch(n, size_t(count) * sizeof(float)));
  }
  int32_t* scratch_i32(const std::string& n, int64_t count) {
    return static_cast<int32_t*>(scratch(n, size_t(count) * sizeof(int32_t)));
  }

  int device_;
  cudaStream_t stream_{};
  int sm_count_ = 0;
  std::string name_;
  std::shared_ptr<void> bad_id_;
  std::map<std::pair<int, double>, Tensor> inv_freq_;
  std::map<std::string, std::pair<std::shared_ptr<void>, size_t>> scratch_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace moeq
