// Calibration (layer streaming, DESIGN §6): the original model runs over calibration text one
// decoder layer at a time; for every linear layer we collect input statistics (per-channel mean
// square = "imatrix", mean |x| for AWQ) and a bounded sample of input rows (for AWQ's output-error
// search), and for every expert the number of routed tokens.
#pragma once
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace moeq {

// Running per-channel sums of a linear layer's input.
struct ChannelStats {
  int64_t count = 0;
  std::vector<double> sum_sq, sum_abs;
  void add(const float* x, int64_t rows, int64_t cols);
  void merge(const ChannelStats& o);
  std::vector<float> mean_sq() const;
  std::vector<float> mean_abs() const;
};

// A deterministic reservoir sample of at most `cap` input rows.
struct RowSample {
  int64_t cols = 0, cap = 0, seen = 0;
  uint64_t rng = 0;
  std::vector<float> rows;  // [n()][cols]
  RowSample() = default;
  RowSample(int64_t cols, int64_t cap, uint64_t seed) : cols(cols), cap(cap), rng(seed ? seed : 1) {}
  void add(const float* x, int64_t n);
  int64_t n() const { return cols ? int64_t(rows.size()) / cols : 0; }
};

struct LayerCalibration {
  ChannelStats qkv_in, o_in, moe_in;  // moe_in: every token (router input = w1/w3 input)
  std::vector<ChannelStats> w13_in;   // per expert: the input of w1/w3 over the tokens that count for it
  std::vector<ChannelStats> w2_in;    // per expert: silu(x W1) * (x W3), the input of w2
  std::vector<int64_t> routed;        // per expert: tokens the router sent to it
  RowSample qkv_sample, o_sample;
  std::vector<RowSample> w13_sample, w2_sample;  // per expert
};

struct CalibOptions {
  // Statistics of every expert over every calibration token (the routed forward is unchanged):
  // no expert is left without calibration data (llm-compressor PR 2171).
  bool all_experts = false;
  int64_t sample_rows = 512;     // AWQ sample rows per linear (per expert for experts)
  int64_t batch_tokens = 4096;   // tokens per forward batch (whole sequences)
};

class LayerCalibrator {
 public:
  LayerCalibrator(ModelConfig c, CalibOptions o, int64_t n_seqs, int64_t seq_len);
  // Runs layer `layer` of the original model over h [n_seqs * seq_len, hidden] (host, f32),
  // replacing h by the layer's output, and returns the statistics.
  LayerCalibration run(int layer, const HostLayer& w, std::vector<float>& h) const;

 private:
  ModelConfig cfg_;
  CalibOptions opt_;
  int64_t n_seqs_, seq_len_;
};

// min / median / max of routed tokens per expert over the layers given.
struct ExpertCoverage {
  int64_t min = 0, median = 0, max = 0, experts_without_tokens = 0;
};
ExpertCoverage expert_coverage(const std::vector<std::vector<int64_t>>& routed_per_layer);

}  // namespace moeq
