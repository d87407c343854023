#include "model/decoder_layer.h"

namespace moeq {

BackendLayer BackendLayer::upload(Backend& be, const ModelConfig& c, const HostLayer& hl, bool with_experts) {
  BackendLayer L;
  L.input_norm = be.upload_f32(hl.input_norm);
  L.post_norm = be.upload_f32(hl.post_norm);
  if (c.use_qk_norm) {
    L.q_norm = be.upload_f32(hl.q_norm);
    L.k_norm = be.upload_f32(hl.k_norm);
  }
  L.router_bias = be.upload_f32(hl.router_bias);
  L.q = be.upload_weight(hl.q);
  L.k = be.upload_weight(hl.k);
  L.v = be.upload_weight(hl.v);
  L.o = be.upload_weight(hl.o);
  L.gate = be.upload_weight(hl.gate);
  if (with_experts) L.experts = be.upload_experts(hl.w1, hl.w2, hl.w3);
  return L;
}

LayerScratch LayerScratch::alloc(Backend& be, const ModelConfig& c, int64_t T) {
  LayerScratch s;
  s.tokens = T;
  s.x = be.alloc(DType::F32, {T, c.hidden_size});
  s.tmp = be.alloc(DType::F32, {T, c.hidden_size});
  s.q = be.alloc(DType::F32, {T, c.q_dim()});
  s.attn = be.alloc(DType::F32, {T, c.q_dim()});
  s.k = be.alloc(DType::F32, {T, c.kv_dim()});
  s.v = be.alloc(DType::F32, {T, c.kv_dim()});
  s.route_ids = be.alloc(DType::I32, {T, c.experts_per_tok});
  s.route_w = be.alloc(DType::F32, {T, c.experts_per_tok});
  return s;
}

LayerScratch LayerScratch::first(int64_t T) const {
  LayerScratch s;
  s.tokens = T;
  s.x = x.view_rows(0, T);
  s.tmp = tmp.view_rows(0, T);
  s.q = q.view_rows(0, T);
  s.attn = attn.view_rows(0, T);
  s.k = k.view_rows(0, T);
  s.v = v.view_rows(0, T);
  s.route_ids = route_ids.view_rows(0, T);
  s.route_w = route_w.view_rows(0, T);
  return s;
}

void attention_block(Backend& be, const ModelConfig& c, const BackendLayer& L, const Tensor& h, const Tensor& pos,
                     const Tensor& slots, KVCache& kv, int cache_layer, const LayerScratch& s,
                     const AttentionTaps* taps, bool post_norm) {
  // QK-norm: RMSNorm over the whole projection, all heads at once, then RoPE.
  const AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim, c.rotary_dim, c.rope_theta};
  be.norm_qkv_attention(h, L.input_norm, c.rms_norm_eps, s.x, *L.q, *L.k, *L.v, c.use_qk_norm ? &L.q_norm : nullptr,
                        c.use_qk_norm ? &L.k_norm : nullptr, s.q, s.k, s.v, kv, cache_layer, pos, slots, shape,
                        s.attn);
  if (taps && taps->qkv_input) taps->qkv_input(s.x);  // x is still the products' input
  if (taps && taps->o_input) taps->o_input(s.attn);
  be.linear_add(s.attn, *L.o, h, s.tmp);
  if (post_norm) be.rmsnorm(h, L.post_norm, c.rms_norm_eps, s.x);
}

void moe_block(Backend& be, const ModelConfig& c, const BackendLayer& L, const Tensor& h, const LayerScratch& s) {
  be.moe_block_add(h, L.post_norm, c.rms_norm_eps, s.x, *L.gate, L.router_bias, c.experts_per_tok, s.route_ids,
                   s.route_w, *L.experts, s.tmp);
}

}  // namespace moeq
