#include "model/minimax_m2.h"

#include "core/error.h"
#include "io/checkpoint.h"

namespace moeq {

Model::Model(ModelConfig config, const HostWeights& w, Backend& backend) : cfg_(std::move(config)), be_(backend) {
  embed_ = be_.upload_weight(w.embed);
  lm_head_ = be_.upload_weight(w.lm_head);
  final_norm_ = be_.upload_f32(w.final_norm);
  for (const HostLayer& hl : w.layers) {
    Layer L;
    L.input_norm = be_.upload_f32(hl.input_norm);
    L.post_norm = be_.upload_f32(hl.post_norm);
    if (cfg_.use_qk_norm) {
      L.q_norm = be_.upload_f32(hl.q_norm);
      L.k_norm = be_.upload_f32(hl.k_norm);
    }
    L.router_bias = be_.upload_f32(hl.router_bias);
    L.q = be_.upload_weight(hl.q);
    L.k = be_.upload_weight(hl.k);
    L.v = be_.upload_weight(hl.v);
    L.o = be_.upload_weight(hl.o);
    L.gate = be_.upload_weight(hl.gate);
    L.experts = be_.upload_experts(hl.w1, hl.w2, hl.w3);
    layers_.push_back(std::move(L));
  }
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
    const int64_t H = cfg_.hidden_size, K = cfg_.experts_per_tok;
    buf_.tokens = T;
    buf_.ids = be_.alloc(DType::I32, {T});
    buf_.pos = be_.alloc(DType::I32, {T});
    buf_.slots = be_.alloc(DType::I32, {T});
    buf_.h = be_.alloc(DType::F32, {T, H});
    buf_.x = be_.alloc(DType::F32, {T, H});
    buf_.tmp = be_.alloc(DType::F32, {T, H});
    buf_.q = be_.alloc(DType::F32, {T, cfg_.q_dim()});
    buf_.attn = be_.alloc(DType::F32, {T, cfg_.q_dim()});
    buf_.k = be_.alloc(DType::F32, {T, cfg_.kv_dim()});
    buf_.v = be_.alloc(DType::F32, {T, cfg_.kv_dim()});
    buf_.route_ids = be_.alloc(DType::I32, {T, K});
    buf_.route_w = be_.alloc(DType::F32, {T, K});
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
  for (int32_t r : logit_rows) MOEQ_CHECK(r >= 0 && r < T, "logit row {} outside the batch of {}", r, T);
  reserve(T, R);
  const int64_t H = cfg_.hidden_size, K = cfg_.experts_per_tok;
  Tensor tok = buf_.ids.view_rows(0, T), pos = buf_.pos.view_rows(0, T), slot = buf_.slots.view_rows(0, T);
  be_.to_device(tok, ids.data());
  be_.to_device(pos, positions.data());
  be_.to_device(slot, slots.data());
  Tensor h = buf_.h.view_rows(0, T), x = buf_.x.view_rows(0, T), tmp = buf_.tmp.view_rows(0, T);
  Tensor q = buf_.q.view_rows(0, T), k = buf_.k.view_rows(0, T), v = buf_.v.view_rows(0, T);
  Tensor attn = buf_.attn.view_rows(0, T);
  Tensor rid = buf_.route_ids.view_rows(0, T), rw = buf_.route_w.view_rows(0, T);

  be_.embedding(*embed_, tok, h);
  if (on_hidden) on_hidden(0, h);
  for (int l = 0; l < cfg_.num_layers; ++l) {
    Layer& L = layers_[size_t(l)];
    be_.rmsnorm(h, L.input_norm, cfg_.rms_norm_eps, x);
    be_.linear(x, *L.q, q);
    be_.linear(x, *L.k, k);
    be_.linear(x, *L.v, v);
    if (cfg_.use_qk_norm) {
      be_.rmsnorm(q, L.q_norm, cfg_.rms_norm_eps, q);
      be_.rmsnorm(k, L.k_norm, cfg_.rms_norm_eps, k);
    }
    be_.rope(q, pos, cfg_.num_heads, cfg_.head_dim, cfg_.rotary_dim, cfg_.rope_theta);
    be_.rope(k, pos, cfg_.num_kv_heads, cfg_.head_dim, cfg_.rotary_dim, cfg_.rope_theta);
    be_.attention(q, k, v, kv, l, pos, slot, cfg_.num_heads, cfg_.num_kv_heads, cfg_.head_dim, attn);
    be_.linear(attn, *L.o, tmp);
    be_.add(h, tmp, h);
    be_.rmsnorm(h, L.post_norm, cfg_.rms_norm_eps, x);
    be_.router(x, *L.gate, L.router_bias, int(K), rid, rw);
    be_.moe_experts(x, rid, rw, *L.experts, tmp);
    be_.add(h, tmp, h);
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
    be_.gather_rows(h, rows, x.view_rows(0, R));
    be_.rmsnorm(x.view_rows(0, R), final_norm_, cfg_.rms_norm_eps, sel);
  }
  logits_view_ = buf_.logits.view_rows(0, R);
  be_.linear(sel, *lm_head_, logits_view_);
  (void)H;
  return logits_view_;
}

}  // namespace moeq
