#include "model/minimax_m2.h"

#include <algorithm>

#include "core/error.h"
#include "io/checkpoint.h"

namespace moeq {

Model::Model(ModelConfig config, const HostWeights& w, Backend& backend) : cfg_(std::move(config)), be_(backend) {
  embed_ = be_.upload_weight(w.embed);
  lm_head_ = be_.upload_weight(w.lm_head);
  final_norm_ = be_.upload_f32(w.final_norm);
  MOEQ_CHECK(int64_t(w.layers.size()) == cfg_.num_layers, "model: {} layers of weights for {} layers", w.layers.size(),
             cfg_.num_layers);
  for (const HostLayer& hl : w.layers) layers_.push_back(BackendLayer::upload(be_, cfg_, hl));
}

Model::Model(ModelConfig config, Backend& backend) : cfg_(std::move(config)), be_(backend) {}

std::unique_ptr<Model> Model::synthetic(ModelConfig c, Backend& be,
                                        const std::function<std::string(const std::string&)>& format_of,
                                        uint64_t seed, int weight_sets) {
  std::unique_ptr<Model> m(new Model(std::move(c), be));
  const ModelConfig& cfg = m->cfg_;
  MOEQ_CHECK(weight_sets >= 0, "synthetic model: {} weight sets", weight_sets);
  const int sets = weight_sets == 0 ? cfg.num_layers : std::min(weight_sets, cfg.num_layers);
  const int64_t H = cfg.hidden_size;
  auto ones = [&](int64_t n) {
    HostArray a = HostArray::owned(DType::F32, {n});
    for (int64_t i = 0; i < n; ++i) reinterpret_cast<float*>(a.mutable_data())[i] = 1.0f;
    return be.upload_f32(a);
  };
  uint64_t s = seed;
  m->embed_ = be.synthetic_weight(format_of(kEmbedModule), cfg.vocab_size, H, s++);
  m->lm_head_ = be.synthetic_weight(format_of(kLmHeadModule), cfg.vocab_size, H, s++);
  m->final_norm_ = ones(H);
  for (int l = 0; l < sets; ++l) {
    BackendLayer L;
    L.input_norm = ones(H);
    L.post_norm = ones(H);
    L.q_norm = ones(cfg.q_dim());
    L.k_norm = ones(cfg.kv_dim());
    L.router_bias = be.upload_f32(HostArray::owned(DType::F32, {cfg.num_experts}));
    L.q = be.synthetic_weight(format_of(attn_module(l, "q_proj")), cfg.q_dim(), H, s++);
    L.k = be.synthetic_weight(format_of(attn_module(l, "k_proj")), cfg.kv_dim(), H, s++);
    L.v = be.synthetic_weight(format_of(attn_module(l, "v_proj")), cfg.kv_dim(), H, s++);
    L.o = be.synthetic_weight(format_of(attn_module(l, "o_proj")), H, cfg.q_dim(), s++);
    L.gate = be.synthetic_weight(format_of(router_module(l)), cfg.num_experts, H, s++);
    L.experts = be.synthetic_experts(format_of(expert_module(l, 0, "w1")), format_of(expert_module(l, 0, "w2")),
                                     cfg.num_experts, H, cfg.intermediate_size, s);
    s += 3;
    m->layers_.push_back(std::move(L));
  }
  return m;
}

std::vector<int32_t> Model::argmax_last() {
  const int64_t R = logits_view_.rows();
  if (!argmax_ids_.data() || argmax_ids_.numel() < R) argmax_ids_ = be_.alloc(DType::I32, {std::max<int64_t>(R, 64)});
  const Tensor ids = argmax_ids_.view_rows(0, R);
  be_.argmax(logits_view_, ids);
  std::vector<int32_t> out(static_cast<size_t>(R));
  be_.to_host(out.data(), ids);
  return out;
}

std::unique_ptr<Model> Model::load(const std::filesystem::path& dir, Backend& backend) {
  ModelConfig cfg = ModelConfig::load(dir);
  const io::Checkpoint ck = io::Checkpoint::open(dir);
  const HostWeights w = load_host_weights(ck, cfg);
  return std::make_unique<Model>(std::move(cfg), w, backend);
}

KVCache Model::make_cache(int slots, int ctx) const {
  MOEQ_CHECK(slots > 0 && ctx > 0, "cache of {} slots x {} tokens", slots, ctx);
  return be_.alloc_kv(cfg_.num_layers, slots, ctx, cfg_.kv_dim());
}

void Model::reserve(int64_t T, int64_t R) {
  if (T > buf_.tokens || R > buf_.logit_rows) graphs_by_shape_.clear();  // captured graphs hold the old buffers
  if (T > buf_.tokens) {
    buf_.tokens = T;
    buf_.ids = be_.alloc(DType::I32, {T});
    buf_.pos = be_.alloc(DType::I32, {T});
    buf_.slots = be_.alloc(DType::I32, {T});
    buf_.h = be_.alloc(DType::F32, {T, cfg_.hidden_size});
    buf_.layer = LayerScratch::alloc(be_, cfg_, T);
  }
  if (R > buf_.logit_rows) {
    buf_.logit_rows = R;
    buf_.rows = be_.alloc(DType::I32, {R});
    buf_.sel = be_.alloc(DType::F32, {R, cfg_.hidden_size});
    buf_.logits = be_.alloc(DType::F32, {R, cfg_.vocab_size});
  }
}

const Tensor& Model::forward(std::span<const int32_t> ids, std::span<const int32_t> positions,
                             std::span<const int32_t> slots, std::span<const int32_t> logit_rows, KVCache& kv) {
  const int64_t T = int64_t(ids.size()), R = int64_t(logit_rows.size());
  MOEQ_CHECK(T > 0 && positions.size() == ids.size() && slots.size() == ids.size(),
             "forward: ids, positions and slots must have the same non-zero length");
  for (int32_t id : ids) MOEQ_CHECK(id >= 0 && id < cfg_.vocab_size, "token id {} outside the vocabulary", id);
  MOEQ_CHECK(R <= T, "forward: {} logit rows for a batch of {}", R, T);
  for (int32_t r : logit_rows) MOEQ_CHECK(r >= 0 && r < T, "logit row {} outside the batch of {}", r, T);
  reserve(T, R);
  be_.to_device(buf_.ids.view_rows(0, T), ids.data());
  bool all_rows = R == T;
  for (int64_t i = 0; all_rows && i < R; ++i) all_rows = logit_rows[size_t(i)] == i;
  if (!all_rows) be_.to_device(buf_.rows.view_rows(0, R), logit_rows.data());
  return run(T, R, all_rows, positions, slots, kv);
}

Model::PendingTokens Model::argmax_feed() {
  const int64_t R = logits_view_.rows();
  MOEQ_CHECK(R > 0 && last_all_rows_, "argmax_feed: the last forward must have logits for every token");
  const Tensor ids = buf_.ids.view_rows(0, R);
  be_.argmax(logits_view_, ids);
  fed_ = R;
  return {be_.start_to_host(ids), R};
}

const Tensor& Model::forward_fed(std::span<const int32_t> positions, std::span<const int32_t> slots, KVCache& kv) {
  const int64_t T = int64_t(positions.size());
  MOEQ_CHECK(fed_ > 0 && T == fed_ && slots.size() == positions.size(),
             "forward_fed: {} positions and {} slots for the {} tokens argmax_feed left on the device", T,
             slots.size(), fed_);
  return run(T, T, true, positions, slots, kv);
}

std::vector<int32_t> Model::tokens(const PendingTokens& p) {
  std::vector<int32_t> out(static_cast<size_t>(p.count));
  be_.finish_to_host(p.ticket, out.data());
  return out;
}

const Tensor& Model::run(int64_t T, int64_t R, bool all_rows, std::span<const int32_t> positions,
                         std::span<const int32_t> slots, KVCache& kv) {
  fed_ = 0;  // buf_.ids is this step's input until the next argmax_feed
  last_all_rows_ = all_rows;
  be_.to_device(buf_.pos.view_rows(0, T), positions.data());
  be_.to_device(buf_.slots.view_rows(0, T), slots.data());
  logits_view_ = buf_.logits.view_rows(0, R);

  // CUDA graphs: eager the first time a shape is seen, captured the second, replayed after.
  if (graphs_ && !on_hidden && all_rows && T <= kGraphTokens && be_.supports_graphs()) {
    const GraphKey key{T, kv.k.data(), kv.slots, kv.ctx};
    auto it = graphs_by_shape_.find(key);
    if (it != graphs_by_shape_.end() && it->second) {
      be_.replay(it->second);
      return logits_view_;
    }
    if (it != graphs_by_shape_.end()) {
      be_.begin_capture();
      compute(T, R, all_rows, kv);
      it->second = be_.end_capture();
      be_.replay(it->second);
      return logits_view_;
    }
    graphs_by_shape_[key] = nullptr;
  }
  compute(T, R, all_rows, kv);
  return logits_view_;
}

void Model::compute(int64_t T, int64_t R, bool all_rows, KVCache& kv) {
  const Tensor tok = buf_.ids.view_rows(0, T), pos = buf_.pos.view_rows(0, T), slot = buf_.slots.view_rows(0, T);
  const Tensor h = buf_.h.view_rows(0, T);
  const LayerScratch s = buf_.layer.first(T);
  const Tensor sel = buf_.sel.view_rows(0, R);
  be_.embedding(*embed_, tok, h);
  if (on_hidden) on_hidden(0, h);
  // The norms come with the products after them (rmsnorm_linear3, moe_block_add): fewer dependent
  // steps per layer where a backend fuses them.
  const int n = cfg_.num_layers;
  for (int l = 0; l < n; ++l) {
    const BackendLayer& L = layers_[size_t(l) % layers_.size()];  // fewer sets: synthetic() above
    attention_block(be_, cfg_, L, h, pos, slot, kv, l, s, nullptr, false);
    moe_block(be_, cfg_, L, h, s);
    if (on_hidden) on_hidden(l + 1, h);
  }
  if (all_rows) {
    be_.rmsnorm(h, final_norm_, cfg_.rms_norm_eps, sel);
  } else {
    be_.gather_rows(h, buf_.rows.view_rows(0, R), s.x.view_rows(0, R));
    be_.rmsnorm(s.x.view_rows(0, R), final_norm_, cfg_.rms_norm_eps, sel);
  }
  be_.linear(sel, *lm_head_, logits_view_);
}


}  // namespace moeq
