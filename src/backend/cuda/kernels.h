// Host-side launchers of the CUDA backend's kernels (each file under kernels/ implements some).
// All take device pointers and a stream, check the launch, and never synchronise.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/cuda/dev_weight.h"

namespace moeq::cuda {

// ---- elementwise.cu ----
void embedding(const DevWeight& table, const int32_t* ids, int64_t T, float* out, int32_t* bad_id, cudaStream_t s);
void rmsnorm(const float* x, const float* w, float eps, int64_t T, int64_t D, float* out, cudaStream_t s);
void rope(float* x, const int32_t* pos, int64_t T, int n_heads, int head_dim, int rotary_dim, const float* inv_freq,
          cudaStream_t s);
void qk_norm_rope(float* q, float* k, const float* qw, const float* kw, float eps, const int32_t* pos, int64_t T,
                  int n_heads, int n_kv, int head_dim, int rotary_dim, const float* inv_freq, cudaStream_t s);
void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s);
void gather_rows(const float* x, const int32_t* rows, int64_t n, int64_t D, float* out, cudaStream_t s);
void fill_f32(float* p, float v, int64_t n, cudaStream_t s);

// ---- synthetic.cu: benchmark weights filled on device ----
enum : int { kFillRandomBytes = 0, kFillFp8, kFillNormal, kFillScale, kFillCodebook };
enum : int { kFillF32 = 0, kFillF16, kFillBF16 };
void fill_synthetic(void* p, int64_t n, int kind, int dtype, float scale, uint64_t seed, int64_t codebook_n,
                    cudaStream_t s);
// ---- argmax.cu: greedy choice ----
constexpr int kArgmaxBlocks = 48;  // blocks per row
struct ArgmaxScratch {
  float* part_v = nullptr;     // [T][kArgmaxBlocks]
  int32_t* part_i = nullptr;   // [T][kArgmaxBlocks]
  int32_t* tickets = nullptr;  // [T], zeroed (the kernel leaves it zeroed)
};
void argmax(const float* logits, int64_t T, int64_t V, const ArgmaxScratch& sc, int32_t* ids, cudaStream_t s);

// ---- gemv.cu: y[t][r] = sum_j W[r][j] x[t][j], for few tokens (decode) ----
// accumulate: y += instead of y =.
void gemv(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s, bool accumulate = false);
// Up to three weights of one format and input width sharing x, in one launch per pass.
void gemv_multi(const DevWeight* const* w, float* const* y, int n, const float* x, int64_t T, cudaStream_t s,
                bool accumulate = false);

// One token: xn = rmsnorm(x) * norm_w (as rmsnorm), then y_i = W_i xn as gemv_multi, in one
// launch: every block normalises x itself and block 0 writes xn (the norms before the router's and
// the q/k/v products, without a launch of their own).
bool gemv_rmsnorm_supported(const DevWeight& w);
// With `sumsq` (n >= 2): every block whose rows meet y[0]'s or y[1]'s also writes the sum of the
// squares of its outputs there: y[0]'s partial sums first (counts->q of them), then y[1]'s
// (counts->k), for a consumer that needs the RMS of those whole rows (the QK-norm folded into the
// decode attention). Returns false, launching nothing, where the blocks do not allow it (the last
// block of y[1]'s rows would reach past the row space); gemv_sumsq_floats bounds the floats written.
struct SumSqCounts {
  int q = 0, k = 0;
};
int64_t gemv_sumsq_floats(int64_t rows0, int64_t rows1);
bool gemv_multi_rmsnorm(const DevWeight* const* w, float* const* y, int n, const float* x, const float* norm_w,
                        float eps, float* xn, cudaStream_t s, float* sumsq = nullptr, SumSqCounts* counts = nullptr);

// ---- gemm_f32.cu: f32 CUDA-core product for many tokens and a small weight (the router) ----
void gemm_f32(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s);

// ---- gemm.cu: tensor-core matrix products on dequantized tiles (prefill) ----
void gemm(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s, bool accumulate = false);
// ---- dequant_dense.cu: operands for cuBLAS (cublas_linear.h) ----
// out (f16 [w.rows][w.cols]) = the weight's values, rounded to f16 as the fused pipeline stores them.
void dequant_f16(const DevWeight& w, void* out, cudaStream_t s);
// out (f32 [w.rows][w.cols]) = the weight's values (dequant32, as gemm_f32 uses them).
void dequant_f32(const DevWeight& w, float* out, cudaStream_t s);
// out (f16 [n]) = x rounded to f16; n a multiple of 4.
void to_f16(const float* x, int64_t n, void* out, cudaStream_t s);

// ---- attention.cu ----
// Writes k, v rows into the cache, then attends (split over the cache length, then combined).
void kv_write(const float* k, const float* v, const int32_t* pos, const int32_t* slots, int64_t T, float* kc,
              float* vc, int64_t slot_stride, int kv_dim, int ctx, cudaStream_t s);
struct AttnScratch {
  float* partial_o = nullptr;    // [T][n_heads][splits][head_dim]
  float* partial_ml = nullptr;   // [T][n_heads][splits][2]
  int64_t capacity_splits = 0;   // T * n_heads * splits the buffers hold
};
constexpr int kAttentionMaxSplits = 128;
// Splits of the cache for about target_blocks blocks (at least 32 positions per split, at most
// kAttentionMaxSplits).
int attention_splits(int64_t T, int n_kv_heads, int ctx, int target_blocks);
// The general kernel (any GQA group and head size; the cache already written), then the merge.
void attention(const float* q, const float* kc, const float* vc, const int32_t* pos, const int32_t* slots, int64_t T,
               int n_heads, int n_kv_heads, int head_dim, int64_t slot_stride, int ctx, int splits,
               const AttnScratch& scratch, float* out, cudaStream_t s);

// ---- attention_decode.cu: a few tokens over the cache, with the cache write of their k, v rows ----
constexpr int64_t kAttentionDecodeTokens = 16;
// Rows within a slot are indexed in 32 bits: slot_stride (ctx * kv_dim) must be below 2^31.
bool attention_decode_supported(int64_t T, int n_heads, int n_kv_heads, int head_dim, int64_t slot_stride);
// `early`: no kernel still in flight writes pos, slots or this layer's cache (kc, vc), so the
// kernel may read the cache rows before its programmatic dependency wait (attention_decode.cu).
// qn (one token only): q and k are the raw projections; the kernel applies the QK-norm (RMS over
// the whole q and k rows, from the partial sums of squares gemv_multi_rmsnorm wrote) and the
// partial RoPE itself, as qk_norm_rope would, and writes the normalised k row to the cache.
struct QkNormArgs {
  const float* q_weight = nullptr;  // [n_heads * head_dim]
  const float* k_weight = nullptr;  // [n_kv_heads * head_dim]
  const float* sumsq = nullptr;     // partial sums of squares: q's (counts.q floats), then k's
  SumSqCounts counts;
  const float* inv_freq = nullptr;  // [rotary_dim / 2]
  int rotary_dim = 0;
  float eps = 0;
};
bool attention_qk_norm_supported(int head_dim, int rotary_dim);  // with attention_decode_supported
void attention_decode(const float* q, const float* k, const float* v, float* kc, float* vc, const int32_t* pos,
                      const int32_t* slots, int64_t T, int n_heads, int n_kv_heads, int head_dim,
                      int64_t slot_stride, int splits, bool early, const AttnScratch& scratch, float* out,
                      cudaStream_t s, const QkNormArgs* qn = nullptr);

// ---- flash_attention.cu: prefill attention on tensor cores (bf16 operands, f32 accumulation) ----
bool flash_attention_supported(int head_dim);
void flash_attention(const float* q, const float* kc, const float* vc, const int32_t* pos, const int32_t* slots,
                     int64_t T, int n_heads, int n_kv_heads, int head_dim, int64_t slot_stride, float* out,
                     cudaStream_t s);

// ---- router.cu: from router logits [T][E]: sigmoid, top-k of (s + bias), renormalised ----
void router_topk(const float* logits, const float* bias, int64_t T, int E, int K, int32_t* ids, float* weights,
                 cudaStream_t s);

// ---- moe.cu ----
struct MoeWeights {
  DevWeight w1, w2, w3;  // stacked over experts
  int64_t hidden = 0, inter = 0;
  int experts = 0;
};
// Decode path (few tokens): a[t*K+k] = silu(x W1_e) * (x W3_e); out[t] = sum_k wt * a W2_e.
// a_scratch [T*K][inter], y_scratch [moe_decode_y_rows(T, K)][hidden], tickets [T * moe_decode_row_blocks(hidden)]
// zeroed (the kernels leave them zeroed); accumulate: out += instead of out =.
// stream: 4-bit experts take the streaming kernel (moe_decode_stream.cu) where it applies.
void moe_decode(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t T, int K,
                float* a_scratch, float* y_scratch, int32_t* tickets, float* out, bool accumulate, cudaStream_t s,
                bool stream = true);
int64_t moe_decode_row_blocks(int64_t hidden);
// Rows of y_scratch: T*K rows of y, or the streaming kernel's partial rows (a block's and token's).
int64_t moe_decode_y_rows(int64_t T, int K);
// ---- moe_decode_mma.cu: the decode kernels for 4-bit integer experts on tensor cores (f16 activations) ----
bool moe_mma_decode_supported(const DevWeight& w);
void moe_w13_decode_mma(const MoeWeights& m, const float* x, const int32_t* ids, int64_t pairs, int K, float* a,
                        cudaStream_t s);
void moe_w2_decode_mma(const MoeWeights& m, const float* a, const int32_t* ids, const float* wts, int64_t pairs, int K,
                       float* y, int32_t* tickets, float* out, bool accumulate, cudaStream_t s);
// ---- moe_decode_stream.cu: the whole 4-bit MoE decode in one persistent launch, weights streamed
// into shared memory by TMA, W2 stored by column panels (DevWeight::panels): each block computes
// 32 a values of a (token, choice) pair at a time and applies W2's matching panel itself, so no
// block waits for another; a short launch then adds the blocks' partial rows of y into `out`.
// part: scratch of moe_decode_y_rows(T, K) rows of hidden floats. ----
// Whether a W2 is to be stored by panels: 4-bit integer codes, groups of 32 or 128
// (MOEQ_MOE_W2_PANELS=0: never, so that the other decode kernels can be compared).
bool moe_w2_panels_wanted(const DevWeight& w2);
bool moe_stream_decode_supported(const MoeWeights& m, int64_t pairs, int K);
void moe_decode_stream(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t pairs, int K,
                       float* part, float* out, bool accumulate, cudaStream_t s);
// Prefill path: tokens grouped by expert, tensor-core products per expert.
struct MoeScratch {
  int32_t* counts = nullptr;      // [E]
  int32_t* offsets = nullptr;     // [E + 1]
  int32_t* cursor = nullptr;      // [E]
  int32_t* perm = nullptr;        // [T*K]: (t*K + k) in expert order
  int32_t* perm_token = nullptr;  // [T*K]: token of perm[i]
  float* perm_weight = nullptr;   // [T*K]
  int32_t* tiles = nullptr;       // [max_tiles][3]: expert, start, rows
  int32_t* num_tiles = nullptr;   // [1]
  float* a = nullptr;             // [T*K][inter]
  float* y = nullptr;             // [T*K][hidden]
  int64_t capacity = 0;           // T*K the buffers hold
};
int64_t moe_max_tiles(int64_t pairs, int experts);
void moe_prefill(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t T, int K,
                 const MoeScratch& sc, float* out, bool accumulate, cudaStream_t s);

}  // namespace moeq::cuda
