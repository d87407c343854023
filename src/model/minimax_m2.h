// The MiniMax-M2 forward pass (DESIGN §4), written once against the Backend ops.
#pragma once
#include <filesystem>
#include <functional>
#include <map>
#include <tuple>
#include <string>
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
  // Random weights made on the backend in the formats `format_of(module name)` gives (benchmarks).
  // With 0 < weight_sets < config.num_layers, only that many layers' weights are made and layer l
  // runs on set l % weight_sets: the full depth's work on a device too small for all its weights
  // (a MiniMax-M2 layer's bytes are far larger than any L2, so a reused set is read from DRAM
  // again, as a distinct one would be).
  static std::unique_ptr<Model> synthetic(ModelConfig config, Backend& backend,
                                          const std::function<std::string(const std::string&)>& format_of,
                                          uint64_t seed = 1, int weight_sets = 0);
  // Distinct layer weights held (num_layers unless made with fewer weight sets).
  int weight_sets() const { return int(layers_.size()); }

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() const { return be_; }

  // A KV cache for `slots` concurrent sequences of up to `ctx` tokens each.
  KVCache make_cache(int slots, int ctx) const;

  // One step over a batch of tokens: token t is ids[t] at positions[t] of the sequence in
  // slots[t] (its earlier positions must already be in the cache). Returns logits F32
  // [logit_rows.size(), vocab] for the listed batch rows, valid until the next call.
  const Tensor& forward(std::span<const int32_t> ids, std::span<const int32_t> positions,
                        std::span<const int32_t> slots, std::span<const int32_t> logit_rows, KVCache& kv);

  // Greedy next tokens for the rows of the last forward's logits, chosen on the backend.
  std::vector<int32_t> argmax_last();

  // Pipelined greedy decoding: argmax_feed() chooses the next tokens of the last forward (which
  // must have logits for every token) into the model's device-side input and starts their copy
  // to the host; forward_fed() runs the next step on them, so it can be queued before tokens()
  // has waited for them, and the device does not idle while the host reads each step's tokens.
  struct PendingTokens {
    uint64_t ticket = 0;
    int64_t count = 0;
  };
  PendingTokens argmax_feed();
  const Tensor& forward_fed(std::span<const int32_t> positions, std::span<const int32_t> slots, KVCache& kv);
  std::vector<int32_t> tokens(const PendingTokens& p);

  // CUDA graphs for small batches (up to kGraphTokens tokens with logits for every row): the first
  // forward of a shape runs eagerly (sizing scratch memory), the second is captured, later ones
  // replay the graph. On by default where the backend supports graphs; off while on_hidden is set.
  static constexpr int64_t kGraphTokens = 64;
  void set_graphs(bool on) { graphs_ = on; }

  // Optional observer: called with the residual stream after the embedding (index 0) and after
  // each decoder layer (index l + 1), before the final norm.
  std::function<void(int index, const Tensor& hidden)> on_hidden;

 private:
  explicit Model(ModelConfig config, Backend& backend);
  // The forward once ids, positions and slots are on the device (and rows, unless all_rows).
  void compute(int64_t T, int64_t R, bool all_rows, KVCache& kv);
  // Positions and slots up, then the step (graph replay or compute) on the ids already in buf_.
  const Tensor& run(int64_t T, int64_t R, bool all_rows, std::span<const int32_t> positions,
                    std::span<const int32_t> slots, KVCache& kv);
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
  Tensor argmax_ids_;
  int64_t fed_ = 0;             // tokens argmax_feed left in buf_.ids for forward_fed (0: none)
  bool last_all_rows_ = false;  // the last forward had logits for every token
  bool graphs_ = true;
  struct GraphKey {
    int64_t tokens;
    const void* cache;
    int slots, ctx;
    auto tie() const { return std::make_tuple(tokens, cache, slots, ctx); }
    bool operator<(const GraphKey& o) const { return tie() < o.tie(); }
  };
  std::map<GraphKey, std::shared_ptr<void>> graphs_by_shape_;  // null: seen once (eager), not captured yet
};

}  // namespace moeq
