// One MiniMax-M2 decoder layer on a backend, shared by the model's forward and by calibration
// (which runs the original model one layer at a time and looks inside).
#pragma once
#include <functional>
#include <memory>

#include "backend/backend.h"
#include "model/config.h"
#include "model/weights.h"

namespace moeq {

struct BackendLayer {
  Tensor input_norm, post_norm, q_norm, k_norm, router_bias;
  std::unique_ptr<BackendWeight> q, k, v, o, gate;
  std::unique_ptr<BackendExperts> experts;  // null when uploaded without experts

  static BackendLayer upload(Backend& be, const ModelConfig& c, const HostLayer& w, bool with_experts = true);
};

// Activations of a batch of up to `tokens` tokens (views of the first T rows for smaller batches).
struct LayerScratch {
  int64_t tokens = 0;
  Tensor x, q, k, v, attn, tmp, route_ids, route_w;
  static LayerScratch alloc(Backend& be, const ModelConfig& c, int64_t tokens);
  LayerScratch first(int64_t T) const;
};

// Observers of the inputs of the attention linears (x = input_norm(h), for q/k/v; attn, for o_proj).
struct AttentionTaps {
  std::function<void(const Tensor&)> qkv_input, o_input;
};

// h += o_proj(attention(q_norm(x Wq), k_norm(x Wk), x Wv)) with x = input_norm(h); then leaves
// post_norm(h), the MoE block's input, in s.x. input_normed: s.x already holds input_norm(h)
// (moe_block_norm of the layer before computed it).
void attention_block(Backend& be, const ModelConfig& c, const BackendLayer& L, const Tensor& h, const Tensor& pos,
                     const Tensor& slots, KVCache& kv, int cache_layer, const LayerScratch& s,
                     const AttentionTaps* taps = nullptr, bool input_normed = false);
// h += sum_j w_j expert_j(s.x), routed by the layer's router.
void moe_block(Backend& be, const ModelConfig& c, const BackendLayer& L, const Tensor& h, const LayerScratch& s);
// moe_block, then normed = rmsnorm(h) * next_norm (the next layer's input norm or the final norm;
// normed may be s.x): fused on backends that can (Backend::moe_block_rmsnorm).
void moe_block_norm(Backend& be, const ModelConfig& c, const BackendLayer& L, const Tensor& h, const LayerScratch& s,
                    const Tensor& next_norm, const Tensor& normed);

}  // namespace moeq
