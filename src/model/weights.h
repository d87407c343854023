// MiniMax-M2 weight names and loading the host-side weights (zero-copy views of the mmapped
// checkpoint) with every tensor checked for presence, dtype and shape.
#pragma once
#include <string>
#include <vector>

#include "core/host_array.h"
#include "io/checkpoint.h"
#include "model/config.h"
#include "quant/formats/format.h"

namespace moeq {

// Module names (a linear module's tensors are "<module>.weight" etc.).
std::string layer_prefix(int layer);  // "model.layers.N."
std::string attn_module(int layer, const char* proj);  // proj: q_proj k_proj v_proj o_proj
std::string router_module(int layer);                   // "...block_sparse_moe.gate"
std::string expert_module(int layer, int expert, const char* w);  // w: w1 w2 w3
inline const char* kEmbedModule = "model.embed_tokens";
inline const char* kLmHeadModule = "lm_head";

// Every linear module of the model with its [rows, cols], in checkpoint order (for quantization).
struct LinearSpec {
  std::string name;
  int64_t rows = 0, cols = 0;
};
std::vector<LinearSpec> linear_modules(const ModelConfig& c);

struct HostLayer {
  HostArray input_norm, post_norm, q_norm, k_norm;  // F32
  HostArray router_bias;                            // F32 [E] (zeros without a routing bias)
  QuantizedWeight q, k, v, o, gate;
  std::vector<QuantizedWeight> w1, w2, w3;
};

struct HostWeights {
  QuantizedWeight embed, lm_head;
  HostArray final_norm;
  std::vector<HostLayer> layers;
};

// Loads one linear module: the original layout ("<m>.weight" as BF16/F32, or F8_E4M3 plus
// "<m>.weight_scale_inv") or moeq's quantized layout (config quantization_config, quant_method
// "moeq"). Throws naming the file and tensor for anything missing or misshapen.
QuantizedWeight load_linear(const io::Checkpoint& ck, const ModelConfig& c, const std::string& module, int64_t rows,
                            int64_t cols);
HostArray load_vector_f32(const io::Checkpoint& ck, const std::string& name, int64_t n);

// Loads every layer plus embed, lm_head and the final norm (views: nothing is copied but norms).
HostWeights load_host_weights(const io::Checkpoint& ck, const ModelConfig& c);
HostLayer load_host_layer(const io::Checkpoint& ck, const ModelConfig& c, int layer);

}  // namespace moeq
