#include "model/minimax_m2.h"

#include "core/error.h"
#include "io/checkpoint.h"

namespace moeq {

Model::Model(ModelConfig config, const HostWeights& w, Backend& backend) : cfg_(std::move(config)), be_(backend) {
  embed_ = be_.upload_weight(w.embed);
  lm_head_ = be_.upload_weight(w.lm_head);
  final_norm_ = be_.upload_f32(w.final_norm);
  for (const HostLayer& hl : w.layers) layers_.push_back(BackendLayer::upload(be_, cfg_, hl));
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
  Tensor tok = buf_.ids.view_rows(0, T), pos = buf_.pos.view_rows(0, T), slot = buf_.slots.view_rows(0, T);
  be_.to_device(tok, ids.data());
  be_.to_device(pos, positions.data());
  be_.to_device(slot, slots.data());
  const Tensor h = buf_.h.view_rows(0, T);
  const LayerScratch s = buf_.layer.first(T);

  be_.embedding(*embed_, tok, h);
  if (on_hidden) on_hidden(0, h);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    const BackendLayer& L = layers_[size_t(l)];
    attention_block(be_, cfg_, L, h, pos, slot, kv, l, s);
    moe_block(be_, cfg_, L, h, s);
    if (on_hidden) on_hidden(l + 1, h);
  }
  Tensor sel = buf_.sel.view_rows(0, R);
  bool all_rows = R == T;
  for (int64_t i = 0; all_rows && i < R; ++i) all_rows = logit_rows[size_t(i)] == i;
  if (all_rows) {
    be_.rmsnorm(h, final_norm_, cfg_.rms_norm_eps, sel);
  } else {
    Tensor rows = buf_.rows.view_rows(0, R);
    be_.to_device(rows, logit_rows.data());
    be_.gather_rows(h, rows, s.x.view_rows(0, R));
    be_.rmsnorm(s.x.view_rows(0, R), final_norm_, cfg_.rms_norm_eps, sel);
  }
  logits_view_ = buf_.logits.view_rows(0, R);
  be_.linear(sel, *lm_head_, logits_view_);
  return logits_view_;
}

}  // namespace moeq
