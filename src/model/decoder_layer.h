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

// h += o_proj(attention(q_norm(x Wq), k_norm(x Wk), x Wv)) with x = input_norm(h) (left in s.x;
// one step with the products where a backend fuses them); then, with post_norm, leaves
// post_norm(h), the MoE block's input, in s.x (the model's layers leave it to moe_block).
void attention_block(Backend& be, const ModelConfig& c, const BackendLayer& L, const Tensor& h, const Tensor& pos,
                     const Tensor& slots, KVCache& kv, int cache_layer, const LayerScratch& s,
                     const AttentionTaps* taps = nullptr, bool post_norm = true);
// s.x = post_norm(h), then h += sum_j w_j expert_j(s.x), routed by the layer's router: one fused
// op (Backend::moe_block_add).
void moe_block(Backend& be, const ModelConfig& c, const BackendLayer& L, const Tensor& h, const LayerScratch& s);

}  // namespace moeq
