// The MiniMax-M2 forward pass (DESIGN §4), written once against the Backend ops.
#pragma once
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "model/config.h"
#include "model/decoder_layer.h"
#include "model/weights.h"

namespace moeq {

class Model {
 public:
  Model(ModelConfig config, const HostWeights& weights, Backend& backend);
  // Reads DIR/config.json and the checkpoint, validates every tensor, uploads to the backend.
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, Backend& backend);

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() const { return be_; }

  // A KV cache for `slots` concurrent sequences of up to `ctx` tokens each.
  KVCache make_cache(int slots, int ctx) const;

  // One step over a batch of tokens: token t is ids[t] at positions[t] of the sequence in
  // slots[t] (its earlier positions must already be in the cache). Returns logits F32
  // [logit_rows.size(), vocab] for the listed batch rows, valid until the next call.
  const Tensor& forward(std::span<const int32_t> ids, std::span<const int32_t> positions,
                        std::span<const int32_t> slots, std::span<const int32_t> logit_rows, KVCache& kv);

  // Optional observer: called with the residual stream after the embedding (index 0) and after
  // each decoder layer (index l + 1), before the final norm.
  std::function<void(int index, const Tensor& hidden)> on_hidden;

 private:
  struct Buffers {  // activations, sized for the largest batch seen so far
    int64_t tokens = 0, logit_rows = 0;
    Tensor ids, pos, slots, rows, h, sel, logits;
    LayerScratch layer;
  };
  void reserve(int64_t T, int64_t R);

  ModelConfig cfg_;
  Backend& be_;
  std::unique_ptr<BackendWeight> embed_, lm_head_;
  Tensor final_norm_;
  std::vector<BackendLayer> layers_;
  Buffers buf_;
  Tensor logits_view_;
};

}  // namespace moeq
