#include "backend/cuda/cuda_backend.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string_view>
#include <tuple>

#include "backend/cuda/cublas_linear.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/dev_weight.h"
#include "backend/cuda/device.h"
#include "backend/cuda/host_copies.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/panels.h"
#include "core/error.h"
#include "quant/formats/synthetic.h"

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
// Above this many tokens the MoE block takes the grouped tensor-core path (each chosen expert read
// once for all its tokens, f16 operands) instead of the per-(token, choice) f32 decode kernels.
// Measured on an H100 (docs/PERF.md): the decode kernels win at 1 and 4 sequences, the grouped
// path at 8 and 16. MOEQ_MOE_DECODE_TOKENS overrides it (0 to kDecodeTokens).
constexpr int64_t kMoeDecodeTokens = 4;

using cuda::env_knob;  // device.h

int64_t moe_decode_tokens() {
  static const int64_t n = env_knob("MOEQ_MOE_DECODE_TOKENS", kMoeDecodeTokens, 0, kDecodeTokens);
  return n;
}

// Decode attention blocks per multiprocessor the cache is split for (cuda::attention_splits);
// MOEQ_ATTN_BLOCKS_PER_SM overrides it (1 to 16). Measured on an H100 (docs/PERF.md).
constexpr int64_t kAttnBlocksPerSm = 4;
int attn_blocks_per_sm() {
  static const int n = int(env_knob("MOEQ_ATTN_BLOCKS_PER_SM", kAttnBlocksPerSm, 1, 16));
  return n;
}

// The decode attention's loads of cache rows before its dependency wait (attention_decode.cu);
// MOEQ_ATTN_EARLY=0 turns them off, for comparison.
bool pdl_early_reads() {
  static const bool on = env_knob("MOEQ_ATTN_EARLY", 1, 0, 1) != 0;
  return on;
}

// MoE decode of 4-bit experts through the streaming kernels (TMA into shared memory, persistent
// grid): MOEQ_MOE_STREAM=0 takes the register-loading tensor-core kernels instead.
bool moe_stream() {
  static const bool on = env_knob("MOEQ_MOE_STREAM", 1, 0, 1) != 0;
  return on;
}

// For one token, the RMSNorms before the router's and the q/k/v products run inside those
// products (gemv_multi_rmsnorm); MOEQ_FUSED_NORMS=0 launches them apart, for comparison.
bool fused_norms() {
  static const bool on = env_knob("MOEQ_FUSED_NORMS", 1, 0, 1) != 0;
  return on;
}

// For one token, the QK-norm and RoPE run inside the decode attention, from sums of squares the
// q/k/v product leaves (norm_qkv_attention); MOEQ_FUSED_QK_NORM=0 launches them apart.
bool fused_qk_norm() {
  static const bool on = env_knob("MOEQ_FUSED_QK_NORM", 1, 0, 1) != 0;
  return on;
}

// Results and the bad-id flag come back through pinned memory in one stream wait
// (CudaBackend::to_host), instead of a pageable copy and then a second blocking copy of the flag,
// which each wait for the device. On an H100 the decode step took 2.703-2.724 ms against
// 2.728-2.735 (two calls, alternating: docs/PERF.md, fourteenth session); MOEQ_PINNED_SYNC=0 for
// the two copies.
bool pinned_sync() {
  static const bool on = env_knob("MOEQ_PINNED_SYNC", 1, 0, 1) != 0;
  return on;
}

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

// The format fields of a DevWeight (no data pointers) for a [rows, cols] weight of `format`.
DevWeight describe_format(const std::string& format, int64_t rows, int64_t cols, int64_t block_rows,
                          int64_t block_cols, int32_t cb_rows) {
  DevWeight d;
  d.rows = rows;
  d.cols = cols;
  if (cols % 32 != 0) fail("CUDA: weight with {} inputs (must be a multiple of 32)", cols);
  int bits = 0, group = 0;
  if (format == "f32") {
    d.fmt = Fmt::F32;
    d.row_bytes = cols * 4;
  } else if (format == "bf16") {
    d.fmt = Fmt::BF16;
    d.row_bytes = cols * 2;
  } else if (format == "fp8_b128") {
    d.fmt = Fmt::FP8_B128;
    d.row_bytes = cols;
    d.group = int32_t(block_cols);
    d.block_rows = int32_t(block_rows);
    if (block_cols % 32 != 0 || block_rows <= 0)
      fail("CUDA: fp8 block of {}x{} (columns must be a multiple of 32)", block_rows, block_cols);
  } else if (format == "q8_g32") {
    d.fmt = Fmt::Q8;
    d.row_bytes = cols;
    d.group = 32;
  } else if (parse_grouped(format, "int", bits, group) || parse_grouped(format, "lloyd", bits, group)) {
    d.fmt = format[0] == 'i' ? Fmt::INT : Fmt::LLOYD;
    d.bits = bits;
    d.group = group;
    d.row_bytes = cols * bits / 8;
    d.cb_rows = cb_rows;
  } else {
    fail("CUDA backend: no kernels for weight format '{}'", format);
  }
  return d;
}

DevWeight describe(const QuantizedWeight& w) {
  const int32_t cb = w.parts.count("codebook") ? int32_t(w.part("codebook").shape[0]) : 1;
  return describe_format(w.format, w.rows, w.cols, w.block_rows, w.block_cols, cb);
}

// Records start/stop events around one op while profiling is on.
struct OpTimer {
  std::vector<std::tuple<std::string, cudaEvent_t, cudaEvent_t>>* log = nullptr;
  cudaEvent_t stop{};
  OpTimer(bool on, std::vector<std::tuple<std::string, cudaEvent_t, cudaEvent_t>>& events, std::string name,
          cudaStream_t s)
      : log(on ? &events : nullptr) {
    if (!log) return;
    cudaEvent_t start{};
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
    CUDA_CHECK(cudaEventRecord(start, s));
    log->emplace_back(std::move(name), start, stop);
    stream = s;
  }
  ~OpTimer() {
    if (log) cudaEventRecord(stop, stream);
  }
  cudaStream_t stream{};
};

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
    for (auto& [n, a, b] : events_) cudaEventDestroy(a), cudaEventDestroy(b);
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

  // Small uploads through pinned slots (host_copies.h): queued without waiting for the stream.
  void to_device(const Tensor& dst, const void* src) override {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(stream_, &capturing));
    if (capturing == cudaStreamCaptureStatusNone) host_copies_.upload(dst.data(), src, dst.nbytes(), stream_);
    else if (dst.nbytes()) CUDA_CHECK(cudaMemcpyAsync(dst.data(), src, dst.nbytes(), cudaMemcpyHostToDevice, stream_));
    attended_.clear();  // every kernel before the copy has finished when the next one starts
  }

  static_assert(cuda::HostCopies::kSlots == kMaxToHostPending, "one pinned slot per unfinished copy to the host");
  // With the bad-id flag, as synchronize() checks it.
  uint64_t start_to_host(const Tensor& src) override {
    return host_copies_.start_download(src.data(), src.nbytes(), static_cast<const int32_t*>(bad_id_.get()), stream_);
  }
  void finish_to_host(uint64_t ticket, void* dst) override {
    fail_on_bad_id(host_copies_.finish_download(ticket, dst));
  }

  // Through a pinned slot with the bad-id flag in the same wait (pinned_sync), so that a decode
  // step ends in one round trip to the host (the token), where a pageable copy and a second
  // blocking copy of the flag each wait for the device, leaving it idle between steps. The slot's
  // event is recorded after every earlier op on the stream, so its wait is a stream wait.
  void to_host(void* dst, const Tensor& src) override {
    if (pinned_sync()) return finish_to_host(start_to_host(src), dst);
    if (src.nbytes()) CUDA_CHECK(cudaMemcpyAsync(dst, src.data(), src.nbytes(), cudaMemcpyDeviceToHost, stream_));
    synchronize();
  }

  void synchronize() override {
    if (pinned_sync()) {  // the flag alone through a pinned slot
      const auto* flag = static_cast<const int32_t*>(bad_id_.get());
      return fail_on_bad_id(host_copies_.finish_download(host_copies_.start_download(nullptr, 0, flag, stream_), nullptr));
    }
    int32_t bad = -1;
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    CUDA_CHECK(cudaMemcpy(&bad, bad_id_.get(), sizeof bad, cudaMemcpyDeviceToHost));
    fail_on_bad_id(bad);
  }

  // The embedding's out-of-range flag as read back (-1: none): cleared for the next op, then the error.
  void fail_on_bad_id(int32_t bad) {
    if (bad == -1) return;
    CUDA_CHECK(cudaMemset(bad_id_.get(), 0xff, sizeof(int32_t)));
    fail("token id {} outside the embedding table", bad);
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
    out->dev.w2 = stack(w2, out->keep, /*panels_if_wanted=*/true);
    out->dev.w3 = stack(w3, out->keep);
    MOEQ_CHECK(w1[0].format == w3[0].format, "CUDA backend: w1 ({}) and w3 ({}) of a layer must share a format",
               w1[0].format, w3[0].format);
    MOEQ_CHECK(out->dev.w1.rows == out->inter && out->dev.w3.rows == out->inter && out->dev.w2.rows == out->hidden &&
                   out->dev.w2.cols == out->inter && out->dev.w3.cols == out->hidden,
               "cuda: inconsistent expert shapes");
    return out;
  }

  KVCache alloc_kv(int layers, int slots, int ctx, int kv_dim) override {
    KVCache c = Backend::alloc_kv(layers, slots, ctx, kv_dim);
    CUDA_CHECK(cudaMemsetAsync(c.k.data(), 0, c.k.nbytes(), stream_));
    CUDA_CHECK(cudaMemsetAsync(c.v.data(), 0, c.v.nbytes(), stream_));
    return c;
  }

  // ---- ops --------------------------------------------------------------------------------
  void embedding(const BackendWeight& table, const Tensor& ids, const Tensor& out) override {
    const OpTimer timer(profiling_, events_, "embedding", stream_);
    const auto& w = static_cast<const CudaWeight&>(table);
    check(out, ids.numel(), w.cols, "embedding output");
    cuda::embedding(w.dev, ids.as<int32_t>(), ids.numel(), out.as<float>(), static_cast<int32_t*>(bad_id_.get()),
                    stream_);
  }

  void rmsnorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& out) override {
    const OpTimer timer(profiling_, events_, "rmsnorm", stream_);
    check(out, x.rows(), x.row_size(), "rmsnorm output");
    MOEQ_CHECK(weight.numel() == x.row_size(), "cuda: rmsnorm weight of {} for rows of {}", weight.numel(), x.row_size());
    cuda::rmsnorm(x.as<float>(), weight.as<float>(), eps, x.rows(), x.row_size(), out.as<float>(), stream_);
  }

  void linear(const Tensor& x, const BackendWeight& w, const Tensor& out) override {
    const OpTimer timer(profiling_, events_,
                        profiling_ ? fmt::format("linear {} {}x{}{}", w.format, w.rows, w.cols,
                                                 x.rows() <= kDecodeTokens ? "" : " (tensor cores)")
                                   : std::string(),
                        stream_);
    check(x, x.rows(), w.cols, "linear input");
    check(out, x.rows(), w.rows, "linear output");
    run_linear(static_cast<const CudaWeight&>(w).dev, x.as<float>(), x.rows(), out.as<float>());
  }

  void rope(const Tensor& x, const Tensor& positions, int n_heads, int head_dim, int rotary_dim,
            double theta) override {
    const OpTimer timer(profiling_, events_, "rope", stream_);
    check(x, x.rows(), int64_t(n_heads) * head_dim, "rope input");
    MOEQ_CHECK(positions.numel() == x.rows(), "cuda: rope positions {} for {} rows", positions.numel(), x.rows());
    cuda::rope(x.as<float>(), positions.as<int32_t>(), x.rows(), n_heads, head_dim, rotary_dim,
               inv_freq(rotary_dim, theta), stream_);
  }

  void linear3(const Tensor& x, const BackendWeight& a, const Tensor& oa, const BackendWeight& b, const Tensor& ob,
               const BackendWeight& c, const Tensor& oc) override {
    const auto& wa = static_cast<const CudaWeight&>(a).dev;
    const auto& wb = static_cast<const CudaWeight&>(b).dev;
    const auto& wc = static_cast<const CudaWeight&>(c).dev;
    const bool fusable = x.rows() <= kDecodeTokens && one_launch(a, b, c);
    if (!fusable) {
      linear(x, a, oa);
      linear(x, b, ob);
      linear(x, c, oc);
      return;
    }
    const OpTimer timer(profiling_, events_, profiling_ ? fmt::format("linear {} q/k/v", a.format) : std::string(),
                        stream_);
    check(x, x.rows(), a.cols, "linear input");
    check(oa, x.rows(), a.rows, "linear output");
    check(ob, x.rows(), b.rows, "linear output");
    check(oc, x.rows(), c.rows, "linear output");
    const DevWeight* ws[3] = {&wa, &wb, &wc};
    float* ys[3] = {oa.as<float>(), ob.as<float>(), oc.as<float>()};
    cuda::gemv_multi(ws, ys, 3, x.as<float>(), x.rows(), stream_);
  }

  void rmsnorm_linear3(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x, const BackendWeight& a,
                       const Tensor& oa, const BackendWeight& b, const Tensor& ob, const BackendWeight& c,
                       const Tensor& oc) override {
    const bool fusable = h.rows() == 1 && fused_norms() && one_launch(a, b, c) &&
                         cuda::gemv_rmsnorm_supported(static_cast<const CudaWeight&>(a).dev);
    if (!fusable) {
      Backend::rmsnorm_linear3(h, norm_weight, eps, x, a, oa, b, ob, c, oc);
      return;
    }
    normed_linear3(h, norm_weight, eps, x, a, oa, b, ob, c, oc);
  }

  // rmsnorm_linear3's one launch for one token (the caller checked that it applies); with `sums`,
  // also the per-block sums of squares of oa and ob (false: nothing launched, see
  // gemv_multi_rmsnorm).
  bool normed_linear3(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x, const BackendWeight& a,
                      const Tensor& oa, const BackendWeight& b, const Tensor& ob, const BackendWeight& c,
                      const Tensor& oc, float* sums = nullptr, cuda::SumSqCounts* counts = nullptr) {
    const OpTimer timer(
        profiling_, events_,
        profiling_ ? fmt::format("rmsnorm + linear {} q/k/v{}", a.format, sums ? " + sums" : "") : std::string(),
        stream_);
    check(h, 1, a.cols, "norm input");
    check(x, 1, a.cols, "norm output");
    MOEQ_CHECK(norm_weight.numel() == a.cols, "cuda: norm weight of {} for rows of {}", norm_weight.numel(), a.cols);
    check(oa, 1, a.rows, "linear output");
    check(ob, 1, b.rows, "linear output");
    check(oc, 1, c.rows, "linear output");
    const DevWeight* ws[3] = {&static_cast<const CudaWeight&>(a).dev, &static_cast<const CudaWeight&>(b).dev,
                              &static_cast<const CudaWeight&>(c).dev};
    float* ys[3] = {oa.as<float>(), ob.as<float>(), oc.as<float>()};
    return cuda::gemv_multi_rmsnorm(ws, ys, 3, h.as<float>(), norm_weight.as<float>(), eps, x.as<float>(), stream_,
                                    sums, counts);
  }

  void qk_norm_rope(const Tensor& q, const Tensor& k, const Tensor& q_weight, const Tensor& k_weight, float eps,
                    const Tensor& positions, int n_heads, int n_kv_heads, int head_dim, int rotary_dim,
                    double theta) override {
    const OpTimer timer(profiling_, events_, "qk norm + rope", stream_);
    const int64_t T = q.rows();
    check(q, T, int64_t(n_heads) * head_dim, "qk_norm_rope q");
    check(k, T, int64_t(n_kv_heads) * head_dim, "qk_norm_rope k");
    MOEQ_CHECK(q_weight.numel() == q.row_size() && k_weight.numel() == k.row_size() && positions.numel() == T,
               "cuda: qk_norm_rope weights or positions do not fit");
    cuda::qk_norm_rope(q.as<float>(), k.as<float>(), q_weight.as<float>(), k_weight.as<float>(), eps,
                       positions.as<int32_t>(), T, n_heads, n_kv_heads, head_dim, rotary_dim,
                       inv_freq(rotary_dim, theta), stream_);
  }

  void attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCache& kv, int layer, const Tensor& positions,
                 const Tensor& slots, int n_heads, int n_kv_heads, int head_dim, const Tensor& out) override {
    const OpTimer timer(profiling_, events_, "attention", stream_);
    const int64_t T = q.rows(), kv_dim = int64_t(n_kv_heads) * head_dim;
    check_attention(q, k, v, kv, layer, positions, slots, n_heads, n_kv_heads, head_dim, out);
    const AttnSetup a = attn_setup(kv, layer, T, n_heads, n_kv_heads, head_dim);
    if (cuda::attention_decode_supported(T, n_heads, n_kv_heads, head_dim, a.slot_stride)) {
      cuda::attention_decode(q.as<float>(), k.as<float>(), v.as<float>(), a.kc, a.vc, positions.as<int32_t>(),
                             slots.as<int32_t>(), T, n_heads, n_kv_heads, head_dim, a.slot_stride, a.splits, a.early,
                             a.scratch, out.as<float>(), stream_);
      return;
    }
    cuda::kv_write(k.as<float>(), v.as<float>(), positions.as<int32_t>(), slots.as<int32_t>(), T, a.kc, a.vc,
                   a.slot_stride, int(kv_dim), kv.ctx, stream_);
    if (T > kDecodeTokens && cuda::flash_attention_supported(head_dim)) {
      cuda::flash_attention(q.as<float>(), a.kc, a.vc, positions.as<int32_t>(), slots.as<int32_t>(), T, n_heads,
                            n_kv_heads, head_dim, a.slot_stride, out.as<float>(), stream_);
      return;
    }
    cuda::attention(q.as<float>(), a.kc, a.vc, positions.as<int32_t>(), slots.as<int32_t>(), T, n_heads, n_kv_heads,
                    head_dim, a.slot_stride, kv.ctx, a.splits, a.scratch, out.as<float>(), stream_);
  }

  // For one token: the q/k/v product (with the input norm) also leaves per-block sums of squares
  // of q and k, and the decode attention applies the QK-norm and RoPE itself from them, so the
  // QK-norm kernel and its dependent step leave the chain. MOEQ_FUSED_QK_NORM=0 runs the ops apart.
  void norm_qkv_attention(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x,
                          const BackendWeight& wq, const BackendWeight& wk, const BackendWeight& wv,
                          const Tensor* q_norm, const Tensor* k_norm, const Tensor& q, const Tensor& k,
                          const Tensor& v, KVCache& kv, int layer, const Tensor& positions, const Tensor& slots,
                          const AttentionShape& sh, const Tensor& out) override {
    const int64_t q_dim = int64_t(sh.n_heads) * sh.head_dim, kv_dim = int64_t(sh.n_kv_heads) * sh.head_dim;
    const bool fusable = h.rows() == 1 && q_norm && k_norm && fused_norms() && fused_qk_norm() &&
                         one_launch(wq, wk, wv) && cuda::gemv_rmsnorm_supported(static_cast<const CudaWeight&>(wq).dev) &&
                         wq.rows == q_dim &&
                         wk.rows == kv_dim && wv.rows == kv_dim && kv.kv_dim == kv_dim &&
                         cuda::attention_qk_norm_supported(sh.head_dim, sh.rotary_dim) &&
                         cuda::attention_decode_supported(1, sh.n_heads, sh.n_kv_heads, sh.head_dim,
                                                          int64_t(kv.ctx) * kv_dim);
    auto apart = [&] {
      Backend::norm_qkv_attention(h, norm_weight, eps, x, wq, wk, wv, q_norm, k_norm, q, k, v, kv, layer, positions,
                                  slots, sh, out);
    };
    if (!fusable) return apart();
    check_attention(q, k, v, kv, layer, positions, slots, sh.n_heads, sh.n_kv_heads, sh.head_dim, out);
    MOEQ_CHECK(q_norm->numel() == q_dim && k_norm->numel() == kv_dim, "cuda: QK-norm weights do not fit");
    cuda::QkNormArgs qn;
    float* sums = scratch_f32("qk_sumsq", cuda::gemv_sumsq_floats(wq.rows, wk.rows));
    qn.sumsq = sums;
    if (!normed_linear3(h, norm_weight, eps, x, wq, q, wk, k, wv, v, sums, &qn.counts))
      return apart();  // nothing launched
    const OpTimer timer(profiling_, events_, "attention with QK-norm", stream_);
    qn.q_weight = q_norm->as<float>();
    qn.k_weight = k_norm->as<float>();
    qn.inv_freq = inv_freq(sh.rotary_dim, sh.rope_theta);
    qn.rotary_dim = sh.rotary_dim;
    qn.eps = eps;
    const AttnSetup a = attn_setup(kv, layer, 1, sh.n_heads, sh.n_kv_heads, sh.head_dim);
    cuda::attention_decode(q.as<float>(), k.as<float>(), v.as<float>(), a.kc, a.vc, positions.as<int32_t>(),
                           slots.as<int32_t>(), 1, sh.n_heads, sh.n_kv_heads, sh.head_dim, a.slot_stride, a.splits,
                           a.early, a.scratch, out.as<float>(), stream_, &qn);
  }

  void router(const Tensor& x, const BackendWeight& gate, const Tensor& bias, int top_k, const Tensor& ids,
              const Tensor& weights) override {
    const OpTimer timer(profiling_, events_, "router", stream_);
    const int64_t T = x.rows();
    // f32 products (not the tensor cores) for the router: a rounding difference in the logits
    // could change which experts are chosen. The gate is small; its reads stay cheap.
    route(T, gate, bias, top_k, ids, weights, [&](const DevWeight& g, float* logits) {
      if (T <= kDecodeTokens) cuda::gemv(g, x.as<float>(), T, logits, stream_);
      else if (cuda::CublasLinear::wanted_f32(g, T)) cublas_.run_f32(g, x.as<float>(), T, logits, stream_);
      else cuda::gemm_f32(g, x.as<float>(), T, logits, stream_);
    });
  }

  // x = rmsnorm(h) * norm_weight, then router(x, ...): for one token the router's product
  // normalises its input itself (every block from h; block 0 writes x for the experts), so the
  // post-attention norm is no step of its own. MOEQ_FUSED_NORMS=0 runs the two ops, for comparison.
  void rmsnorm_router(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x, const BackendWeight& gate,
                      const Tensor& bias, int top_k, const Tensor& ids, const Tensor& weights) {
    const int64_t T = x.rows();
    if (T != 1 || !fused_norms() || !cuda::gemv_rmsnorm_supported(static_cast<const CudaWeight&>(gate).dev)) {
      rmsnorm(h, norm_weight, eps, x);
      router(x, gate, bias, top_k, ids, weights);
      return;
    }
    const OpTimer timer(profiling_, events_, "rmsnorm + router", stream_);
    check(h, T, gate.cols, "norm input");
    check(x, T, gate.cols, "norm output");
    MOEQ_CHECK(norm_weight.numel() == gate.cols, "cuda: norm weight of {} for rows of {}", norm_weight.numel(),
               gate.cols);
    route(T, gate, bias, top_k, ids, weights, [&](const DevWeight& g, float* logits) {
      const DevWeight* ws[1] = {&g};
      float* ys[1] = {logits};
      cuda::gemv_multi_rmsnorm(ws, ys, 1, h.as<float>(), norm_weight.as<float>(), eps, x.as<float>(), stream_);
    });
  }

  void moe_experts(const Tensor& x, const Tensor& ids, const Tensor& weights, const BackendExperts& experts,
                   const Tensor& out) override {
    const OpTimer timer(profiling_, events_, x.rows() <= moe_decode_tokens() ? "moe experts (decode)" : "moe experts (grouped)",
                        stream_);
    run_moe(x, ids, weights, experts, out, false);
  }

  void moe_experts_add(const Tensor& x, const Tensor& ids, const Tensor& weights, const BackendExperts& experts,
                       const Tensor& out, const Tensor& /*tmp*/) override {
    const OpTimer timer(profiling_, events_, x.rows() <= moe_decode_tokens() ? "moe experts (decode)" : "moe experts (grouped)",
                        stream_);
    run_moe(x, ids, weights, experts, out, true);
  }

  // The norm runs inside the router's product for one token (rmsnorm_router); the experts op then
  // adds into h: for a few tokens of 4-bit experts that is the streaming kernel and the sum of its
  // blocks' partial rows (moe_decode_stream.cu). (Routing inside the MoE kernel, without the top-k
  // launch, measured slower: docs/PERF.md.)
  void moe_block_add(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& x, const BackendWeight& gate,
                     const Tensor& bias, int top_k, const Tensor& ids, const Tensor& weights,
                     const BackendExperts& experts, const Tensor& tmp) override {
    rmsnorm_router(h, norm_weight, eps, x, gate, bias, top_k, ids, weights);
    moe_experts_add(x, ids, weights, experts, h, tmp);
  }

  void linear_add(const Tensor& x, const BackendWeight& w, const Tensor& out, const Tensor& /*tmp*/) override {
    const OpTimer timer(profiling_, events_,
                        profiling_ ? fmt::format("linear {} {}x{}{} +=", w.format, w.rows, w.cols,
                                                 x.rows() <= kDecodeTokens ? "" : " (tensor cores)")
                                   : std::string(),
                        stream_);
    check(x, x.rows(), w.cols, "linear input");
    check(out, x.rows(), w.rows, "linear output");
    run_linear(static_cast<const CudaWeight&>(w).dev, x.as<float>(), x.rows(), out.as<float>(), true);
  }

  void add(const Tensor& a, const Tensor& b, const Tensor& out) override {
    const OpTimer timer(profiling_, events_, "add", stream_);
    MOEQ_CHECK(a.numel() == b.numel() && a.numel() == out.numel(), "cuda: add of {} and {} into {}",
               shape_str(a.shape()), shape_str(b.shape()), shape_str(out.shape()));
    cuda::add(a.as<float>(), b.as<float>(), out.as<float>(), a.numel(), stream_);
  }

  void argmax(const Tensor& logits, const Tensor& ids) override {
    const OpTimer timer(profiling_, events_, "argmax", stream_);
    MOEQ_CHECK(ids.numel() == logits.rows(), "cuda: argmax of {} rows into {} ids", logits.rows(), ids.numel());
    const int64_t T = logits.rows();
    cuda::ArgmaxScratch sc;
    sc.part_v = scratch_f32("argmax_v", T * cuda::kArgmaxBlocks);
    sc.part_i = scratch_i32("argmax_i", T * cuda::kArgmaxBlocks);
    sc.tickets = scratch_zeroed_i32("argmax_tickets", T);
    cuda::argmax(logits.as<float>(), T, logits.row_size(), sc, ids.as<int32_t>(), stream_);
  }

  // ---- benchmarks ---------------------------------------------------------------------------
  std::unique_ptr<BackendWeight> synthetic_weight(const std::string& format, int64_t rows, int64_t cols,
                                                  uint64_t seed) override {
    auto out = std::make_unique<CudaWeight>();
    out->format = format;
    out->rows = rows;
    out->cols = cols;
    out->dev = synthetic_dev(format, rows, cols, 1, seed, out->keep);
    return out;
  }

  std::unique_ptr<BackendExperts> synthetic_experts(const std::string& f13, const std::string& f2, int experts,
                                                    int64_t hidden, int64_t inter, uint64_t seed) override {
    auto out = std::make_unique<CudaExperts>();
    out->num_experts = experts;
    out->hidden = out->dev.hidden = hidden;
    out->inter = out->dev.inter = inter;
    out->dev.experts = experts;
    out->dev.w1 = synthetic_dev(f13, inter, hidden, experts, seed, out->keep);
    out->dev.w2 = synthetic_dev(f2, hidden, inter, experts, seed + 1, out->keep);
    out->dev.w2.panels = cuda::moe_w2_panels_wanted(out->dev.w2);  // random bytes: either layout
    out->dev.w3 = synthetic_dev(f13, inter, hidden, experts, seed + 2, out->keep);
    return out;
  }

  double copy_bandwidth() override {
    const size_t n = size_t(2) << 30;  // 2 GiB each way: far beyond the L2
    auto a = device_alloc(n), b = device_alloc(n);
    CUDA_CHECK(cudaMemsetAsync(a.get(), 1, n, stream_));
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    float best = 1e30f;
    for (int r = 0; r < 6; ++r) {  // the first is a warm-up
      CUDA_CHECK(cudaEventRecord(e0, stream_));
      CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), n, cudaMemcpyDeviceToDevice, stream_));
      CUDA_CHECK(cudaEventRecord(e1, stream_));
      CUDA_CHECK(cudaEventSynchronize(e1));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
      if (r > 0) best = std::min(best, ms);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return 2.0 * double(n) / (double(best) * 1e-3);  // bytes read + written per second
  }

  int64_t memory_available() override {
    size_t free_b = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
    return int64_t(free_b);
  }

  // ---- graphs -------------------------------------------------------------------------------
  bool supports_graphs() const override { return true; }
  void begin_capture() override { CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal)); }
  std::shared_ptr<void> end_capture() override {
    cudaGraph_t g{};
    CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
    cudaGraphExec_t exec{};
    const cudaError_t e = cudaGraphInstantiate(&exec, g, 0);
    cudaGraphDestroy(g);
    CUDA_CHECK(e);
    return std::shared_ptr<void>(exec, [](void* p) { cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(p)); });
  }
  void replay(const std::shared_ptr<void>& graph) override {
    CUDA_CHECK(cudaGraphLaunch(static_cast<cudaGraphExec_t>(graph.get()), stream_));
  }

  // ---- profiling ----------------------------------------------------------------------------
  void set_profiling(bool on) override { profiling_ = on; }
  std::vector<std::pair<std::string, double>> profile() override {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::map<std::string, double> sum;
    for (auto& [name, a, b] : events_) {
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
      sum[name] += ms * 1e-3;
      cudaEventDestroy(a);
      cudaEventDestroy(b);
    }
    events_.clear();
    return {sum.begin(), sum.end()};
  }

  void gather_rows(const Tensor& x, const Tensor& rows, const Tensor& out) override {
    const OpTimer timer(profiling_, events_, "gather", stream_);
    check(out, rows.numel(), x.row_size(), "gather output");
    cuda::gather_rows(x.as<float>(), rows.as<int32_t>(), rows.numel(), x.row_size(), out.as<float>(), stream_);
  }

 private:
  static void check(const Tensor& t, int64_t rows, int64_t cols, const char* what) {
    MOEQ_CHECK(t.rows() == rows && t.row_size() == cols, "cuda: {} has shape {}, expected [{}, {}]", what,
               shape_str(t.shape()), rows, cols);
  }

  void run_linear(const DevWeight& w, const float* x, int64_t T, float* y, bool accumulate = false) {
    if (T <= kDecodeTokens) cuda::gemv(w, x, T, y, stream_, accumulate);
    else if (cuda::CublasLinear::wanted(w, T)) cublas_.run(w, x, T, y, stream_, accumulate);
    else cuda::gemm(w, x, T, y, stream_, accumulate);
  }

  // The attention op's shape checks (q, k, v and out for T = q.rows() tokens; the cache; a
  // position and a slot per token).
  void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const KVCache& kv, int layer,
                       const Tensor& positions, const Tensor& slots, int n_heads, int n_kv_heads, int head_dim,
                       const Tensor& out) {
    const int64_t T = q.rows(), kv_dim = int64_t(n_kv_heads) * head_dim;
    check(q, T, int64_t(n_heads) * head_dim, "attention q");
    check(k, T, kv_dim, "attention k");
    check(v, T, kv_dim, "attention v");
    check(out, T, int64_t(n_heads) * head_dim, "attention output");
    MOEQ_CHECK(kv.kv_dim == kv_dim && layer >= 0 && layer < kv.layers, "cuda: attention cache mismatch");
    MOEQ_CHECK(positions.numel() == T && slots.numel() == T, "cuda: attention positions or slots do not fit");
  }

  // A layer's cache, its splits and their scratch for T tokens attending.
  struct AttnSetup {
    int64_t slot_stride = 0;
    float* kc = nullptr;
    float* vc = nullptr;
    bool early = false;
    int splits = 1;
    cuda::AttnScratch scratch;
  };
  AttnSetup attn_setup(KVCache& kv, int layer, int64_t T, int n_heads, int n_kv_heads, int head_dim) {
    AttnSetup a;
    a.slot_stride = int64_t(kv.ctx) * kv.kv_dim;
    a.kc = kv.k.as<float>() + int64_t(layer) * kv.slots * a.slot_stride;
    a.vc = kv.v.as<float>() + int64_t(layer) * kv.slots * a.slot_stride;
    // The decode kernel may read this layer's cache before its dependency wait only if no kernel
    // still in flight writes it: none has attended over it since the last upload (a copy from
    // the host waits for every kernel before it; each forward uploads its positions).
    a.early = attended_.insert(a.kc).second && pdl_early_reads();
    a.splits = cuda::attention_splits(T, n_kv_heads, kv.ctx, sm_count_ * attn_blocks_per_sm());
    if (a.splits > 1) {
      const int64_t n = T * n_heads * a.splits;
      a.scratch.partial_o = scratch_f32("attn_o", n * head_dim);
      a.scratch.partial_ml = scratch_f32("attn_ml", n * 2);
      a.scratch.capacity_splits = n;
    }
    return a;
  }

  // Whether three products can share one launch (gemv_multi): one format and input width.
  static bool one_launch(const BackendWeight& a, const BackendWeight& b, const BackendWeight& c) {
    return a.format == b.format && a.format == c.format && a.cols == b.cols && a.cols == c.cols;
  }

  // The router's checks, its logits [T][E] (written by `product(gate, logits)`), then the top-k.
  template <typename Product>
  void route(int64_t T, const BackendWeight& gate, const Tensor& bias, int top_k, const Tensor& ids,
             const Tensor& weights, Product&& product) {
    const int64_t E = gate.rows;
    MOEQ_CHECK(top_k > 0 && top_k <= E, "cuda: router top_k {} of {} experts", top_k, E);
    MOEQ_CHECK(bias.numel() == E, "cuda: router bias of {} for {} experts", bias.numel(), E);
    check(ids, T, top_k, "router ids");
    check(weights, T, top_k, "router weights");
    float* logits = scratch_f32("router_logits", T * E);
    product(static_cast<const CudaWeight&>(gate).dev, logits);
    cuda::router_topk(logits, bias.as<float>(), T, int(E), top_k, ids.as<int32_t>(), weights.as<float>(), stream_);
  }

  // The decode MoE's scratch (cuda::moe_decode): a and y rows per (token, choice), zeroed tickets.
  struct DecodeMoeScratch {
    float *a, *y;
    int32_t* tickets;
  };
  DecodeMoeScratch decode_moe_scratch(const CudaExperts& ex, int64_t T, int64_t K) {
    return {scratch_f32("moe_a", T * K * ex.inter), scratch_f32("moe_y", cuda::moe_decode_y_rows(T, int(K)) * ex.hidden),
            scratch_zeroed_i32("moe_tickets", T * cuda::moe_decode_row_blocks(ex.hidden))};
  }

  void run_moe(const Tensor& x, const Tensor& ids, const Tensor& weights, const BackendExperts& experts,
               const Tensor& out, bool accumulate) {
    const auto& ex = static_cast<const CudaExperts&>(experts);
    const int64_t T = x.rows(), K = ids.row_size();
    check(x, T, ex.hidden, "moe input");
    check(out, T, ex.hidden, "moe output");
    check(weights, T, K, "moe weights");
    if (T <= moe_decode_tokens()) {
      const DecodeMoeScratch sc = decode_moe_scratch(ex, T, K);
      cuda::moe_decode(ex.dev, x.as<float>(), ids.as<int32_t>(), weights.as<float>(), T, int(K), sc.a, sc.y,
                       sc.tickets, out.as<float>(), accumulate, stream_, moe_stream());
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
                      accumulate, stream_);
  }

  void* copy_part(const HostArray& a, std::vector<std::shared_ptr<void>>& keep) {
    auto mem = device_alloc(a.nbytes);
    CUDA_CHECK(cudaMemcpy(mem.get(), a.data.get(), a.nbytes, cudaMemcpyHostToDevice));
    keep.push_back(mem);
    return mem.get();
  }

  // All experts' parts of one matrix in one allocation each, expert after expert; W2 (panels_if_wanted)
  // by column panels where the streaming MoE decode takes it (cuda::moe_w2_panels_wanted).
  DevWeight stack(const std::vector<QuantizedWeight>& ws, std::vector<std::shared_ptr<void>>& keep,
                  bool panels_if_wanted = false) {
    DevWeight d = describe(ws[0]);
    d.experts = int32_t(ws.size());
    d.panels = panels_if_wanted && cuda::moe_w2_panels_wanted(d);
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
      std::vector<uint8_t> reordered(d.panels ? n : 0);
      for (size_t e = 0; e < ws.size(); ++e) {
        const void* src = ws[e].part(part).data.get();
        if (d.panels && std::string_view(part) == "qweight") {
          cuda::codes_to_panels(static_cast<const uint8_t*>(src), d.rows, d.cols / 32, 4 * d.bits, reordered.data());
          src = reordered.data();
        } else if (d.panels && std::string_view(part) == "scales") {
          cuda::scales_to_panels(static_cast<const uint16_t*>(src), d.rows, d.cols / d.group,
                                 reinterpret_cast<uint16_t*>(reordered.data()));
          src = reordered.data();
        }
        CUDA_CHECK(cudaMemcpy(static_cast<char*>(mem.get()) + e * n, src, n, cudaMemcpyHostToDevice));
      }
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

  // Device memory for `experts` stacked weights of a format, filled with synthetic values.
  DevWeight synthetic_dev(const std::string& format, int64_t rows, int64_t cols, int experts, uint64_t seed,
                          std::vector<std::shared_ptr<void>>& keep) {
    const SyntheticLayout layout = synthetic_layout(format, rows, cols);
    DevWeight d = describe_format(format, rows, cols, layout.block_rows, layout.block_cols, 1);
    d.experts = experts;
    for (const SyntheticPart& p : layout.parts) {
      int64_t n = 1;
      for (int64_t x : p.shape) n *= x;
      const size_t bytes = size_t(n) * dtype_size(p.dtype);
      auto mem = device_alloc(bytes * size_t(experts));
      keep.push_back(mem);
      const int dtype = p.dtype == DType::F32 ? cuda::kFillF32 : p.dtype == DType::F16 ? cuda::kFillF16 : cuda::kFillBF16;
      const int kind = p.fill == SyntheticFill::RandomBytes ? cuda::kFillRandomBytes
                       : p.fill == SyntheticFill::Fp8Codes  ? cuda::kFillFp8
                       : p.fill == SyntheticFill::Normal    ? cuda::kFillNormal
                       : p.fill == SyntheticFill::Scale     ? cuda::kFillScale
                                                            : cuda::kFillCodebook;
      const bool bytewise = kind == cuda::kFillRandomBytes || kind == cuda::kFillFp8;
      cuda::fill_synthetic(mem.get(), bytewise ? int64_t(bytes) * experts : n * experts, kind, dtype, p.scale,
                           seed * 7919 + std::hash<std::string>{}(p.name), p.shape.back(), stream_);
      if (p.name == "qweight") {
        d.q = static_cast<const uint8_t*>(mem.get());
        d.q_stride = int64_t(bytes);
      } else if (p.name == "scales") {
        d.scales = mem.get();
        d.s_stride = n;
      } else {
        d.codebook = static_cast<const uint16_t*>(mem.get());
        d.cb_stride = n;
      }
    }
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
  // Scratch that starts zeroed (kernels that use it leave it zeroed again).
  int32_t* scratch_zeroed_i32(const std::string& n, int64_t count) {
    auto& s = scratch_[n];
    const size_t bytes = size_t(count) * sizeof(int32_t);
    if (s.second < bytes) {
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      s.first = device_alloc(bytes);
      s.second = bytes;
      CUDA_CHECK(cudaMemset(s.first.get(), 0, bytes));
    }
    return static_cast<int32_t*>(s.first.get());
  }
  int32_t* scratch_i32(const std::string& n, int64_t count) {
    return static_cast<int32_t*>(scratch(n, size_t(count) * sizeof(int32_t)));
  }
  int device_;
  cudaStream_t stream_{};
  cuda::CublasLinear cublas_;  // prefill products of many tokens (cublas_linear.h)
  cuda::HostCopies host_copies_;  // uploads and pipelined downloads (host_copies.h)
  int sm_count_ = 0;
  std::string name_;
  std::shared_ptr<void> bad_id_;
  std::map<std::pair<int, double>, Tensor> inv_freq_;
  std::set<const float*> attended_;  // layers' caches attended over since the last upload
  std::map<std::string, std::pair<std::shared_ptr<void>, size_t>> scratch_;
  bool profiling_ = false;
  std::vector<std::tuple<std::string, cudaEvent_t, cudaEvent_t>> events_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(int device) { return std::make_unique<CudaBackend>(device); }

}  // namespace moeq
