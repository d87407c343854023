// The MoE expert block on device. Decode (few tokens): warp-per-row products straight from the
// packed experts, SwiGLU fused into the w1/w3 pass and the weighted sum over the chosen experts
// fused into the w2 pass. Prefill: (token, choice) pairs grouped by expert on device (no host
// round trip), then per-expert tensor-core products; every pair owns an output row and the
// choices are summed in a fixed order, so results do not depend on scheduling.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/gemm_pipe.cuh"
#include "backend/cuda/kernels/gemv_core.cuh"

namespace moeq::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kW13Rows = 2, kW2Rows = 4;  // rows per warp: independent loads in flight per lane

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// ---- decode -----------------------------------------------------------------------------------
// grid (inter / 8, pairs): a[pair][r] = silu(W1_e[r] . x_t) * (W3_e[r] . x_t); a warp per row,
// the w1 and w3 loads of a step in flight together, x_t staged in shared memory.
template <int F>
__global__ void __launch_bounds__(kWarps * 32) w13_decode_kernel(MoeWeights m, const float* x, const int32_t* ids,
                                                                 int K, float* a) {
  extern __shared__ float xs[];
  __shared__ float cb1[16], cb3[16];
  const int64_t pair = blockIdx.y;
  const int e = ids[pair];
  const DevWeight w1 = expert_view(m.w1, e), w3 = expert_view(m.w3, e);
  stage_vectors(xs, x + (pair / K) * m.hidden, m.hidden, m.hidden, 1);
  stage_codebook(cb1, w1);
  stage_codebook(cb3, w3);
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int64_t r0 = (int64_t(blockIdx.x) * kWarps + threadIdx.x / 32) * kW13Rows;
  float g[kW13Rows] = {}, u[kW13Rows] = {};
  for (int64_t grp = lane; grp < m.hidden / 32; grp += 32) {
    RawGroup r1[kW13Rows], r3[kW13Rows];
#pragma unroll
    for (int i = 0; i < kW13Rows; ++i) {
      const int64_t r = min(r0 + i, m.inter - 1);
      r1[i] = load_group<F>(w1, r, grp);
      r3[i] = load_group<F>(w3, r, grp);
    }
    float xv[32];
    load_x32(xs + grp * kPadGroup, xv);
#pragma unroll
    for (int i = 0; i < kW13Rows; ++i) {
      const int64_t r = min(r0 + i, m.inter - 1);
      g[i] += group_dot<F>(w1, r, grp, r1[i], xv, cb1);
      u[i] += group_dot<F>(w3, r, grp, r3[i], xv, cb3);
    }
  }
#pragma unroll
  for (int i = 0; i < kW13Rows; ++i) {
    const float gs = warp_sum(g[i]), us = warp_sum(u[i]);
    if (lane == 0 && r0 + i < m.inter) a[pair * m.inter + r0 + i] = silu(gs) * us;
  }
}

// grid (hidden / 16, pairs): y[pair][r] = W2_e[r] . a[pair]; two rows per warp.
template <int F>
__global__ void __launch_bounds__(kWarps * 32) w2_decode_kernel(MoeWeights m, const float* a, const int32_t* ids,
                                                                float* y) {
  extern __shared__ float as[];
  __shared__ float cb2[16];
  const int64_t pair = blockIdx.y;
  const DevWeight w2 = expert_view(m.w2, ids[pair]);
  stage_vectors(as, a + pair * m.inter, m.inter, m.inter, 1);
  stage_codebook(cb2, w2);
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int64_t r0 = (int64_t(blockIdx.x) * kWarps + threadIdx.x / 32) * kW2Rows;
  float acc[kW2Rows] = {};
  for (int64_t grp = lane; grp < m.inter / 32; grp += 32) {
    RawGroup raw[kW2Rows];
#pragma unroll
    for (int i = 0; i < kW2Rows; ++i) raw[i] = load_group<F>(w2, min(r0 + i, m.hidden - 1), grp);
    float xv[32];
    load_x32(as + grp * kPadGroup, xv);
#pragma unroll
    for (int i = 0; i < kW2Rows; ++i) acc[i] += group_dot<F>(w2, min(r0 + i, m.hidden - 1), grp, raw[i], xv, cb2);
  }
#pragma unroll
  for (int i = 0; i < kW2Rows; ++i) {
    const float sum = warp_sum(acc[i]);
    if (lane == 0 && r0 + i < m.hidden) y[pair * m.hidden + r0 + i] = sum;
  }
}

// ---- prefill: grouping ------------------------------------------------------------------------
__global__ void count_kernel(const int32_t* ids, int64_t pairs, int32_t* counts) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < pairs) atomicAdd(&counts[ids[i]], 1);
}

// One block of >= E threads: offsets (exclusive scan of counts) and the tile list.
__global__ void plan_kernel(const int32_t* counts, int E, int32_t* offsets, int32_t* cursor, int32_t* tiles,
                            int32_t* num_tiles) {
  __shared__ int32_t off[1025], tcount[1025];
  const int e = threadIdx.x;
  if (e < E) {
    off[e + 1] = counts[e];
    tcount[e + 1] = (counts[e] + kPM - 1) / kPM;
    cursor[e] = 0;
  }
  if (e == 0) off[0] = tcount[0] = 0;
  __syncthreads();
  if (e == 0)  // E <= 1024: a serial scan is cheap next to the products
    for (int i = 1; i <= E; ++i) off[i] += off[i - 1], tcount[i] += tcount[i - 1];
  __syncthreads();
  if (e < E) {
    offsets[e] = off[e];
    for (int j = 0; j < tcount[e + 1] - tcount[e]; ++j) {
      int32_t* tile = tiles + 3 * (tcount[e] + j);
      tile[0] = e;
      tile[1] = off[e] + j * kPM;
      tile[2] = min(kPM, counts[e] - j * kPM);
    }
  }
  if (e == 0) {
    offsets[E] = off[E];
    *num_tiles = tcount[E];
  }
}

__global__ void scatter_kernel(const int32_t* ids, const float* wts, int64_t pairs, int K, const int32_t* offsets,
                               int32_t* cursor, int32_t* perm, int32_t* perm_token, float* perm_weight) {
  const int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= pairs) return;
  const int e = ids[p];
  const int32_t at = offsets[e] + atomicAdd(&cursor[e], 1);
  perm[at] = int32_t(p);
  perm_token[at] = int32_t(p / K);
  perm_weight[at] = wts[p];
}

// ---- prefill: products ------------------------------------------------------------------------
using Dual = PipeShape<true>;
using Single = PipeShape<false>;

// a[start + i][n] = silu(x[tok] . W1_e[n]) * (x[tok] . W3_e[n]) for the tile's rows.
template <int F>
__global__ void __launch_bounds__(kPThreads) w13_gemm_kernel(MoeWeights m, const float* x, const int32_t* tiles,
                                                             const int32_t* num_tiles, const int32_t* perm_token,
                                                             float* a) {
  if (int(blockIdx.y) >= *num_tiles) return;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float cb1[16], cb3[16];
  const int32_t* tile = tiles + 3 * blockIdx.y;
  const int e = tile[0], start = tile[1], rows = tile[2];
  const DevWeight w1 = expert_view(m.w1, e), w3 = expert_view(m.w3, e);
  stage_codebook(cb1, w1);
  stage_codebook(cb3, w3);
  __syncthreads();
  const int64_t n0 = int64_t(blockIdx.x) * Dual::kN;
  float g[2][Dual::kNT][4] = {}, u[2][Dual::kNT][4] = {};
  gemm_pipeline<F, true>(x, m.hidden, rows, [&](int i) { return int64_t(perm_token[start + i]); }, w1, w3, n0,
                         m.hidden, g, u, reinterpret_cast<__half*>(smem_raw), cb1, cb3);
  pipe_epilogue<true>(g, u, n0, rows, m.inter, [&](int i, int64_t n, float gv, float uv) {
    a[(start + i) * m.inter + n] = silu(gv) * uv;
  });
}

// y[perm[start + i]][n] = wt * (a[start + i] . W2_e[n]).
template <int F>
__global__ void __launch_bounds__(kPThreads) w2_gemm_kernel(MoeWeights m, const float* a, const int32_t* tiles,
                                                            const int32_t* num_tiles, const int32_t* perm,
                                                            const float* perm_weight, float* y) {
  if (int(blockIdx.y) >= *num_tiles) return;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ float cb2[16];
  const int32_t* tile = tiles + 3 * blockIdx.y;
  const int e = tile[0], start = tile[1], rows = tile[2];
  const DevWeight w2 = expert_view(m.w2, e);
  stage_codebook(cb2, w2);
  __syncthreads();
  const int64_t n0 = int64_t(blockIdx.x) * Single::kN;
  float acc[2][Single::kNT][4] = {}, unused[2][Single::kNT][4];
  gemm_pipeline<F, false>(a, m.inter, rows, [&](int i) { return int64_t(start + i); }, w2, w2, n0, m.inter, acc,
                          unused, reinterpret_cast<__half*>(smem_raw), cb2, cb2);
  pipe_epilogue<false>(acc, unused, n0, rows, m.hidden, [&](int i, int64_t n, float v, float) {
    y[int64_t(perm[start + i]) * m.hidden + n] = perm_weight[start + i] * v;
  });
}

// out[t][n] (+)= sum_k wt[t][k] * y[t*K + k][n], in order of k (wts null: already weighted).
__global__ void reduce_kernel(const float* y, const float* wts, int64_t T, int K, int64_t H, float* out,
                              bool accumulate) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * H) return;
  const int64_t t = i / H, n = i % H;
  float s = 0;
  for (int k = 0; k < K; ++k) s += (wts ? wts[t * K + k] : 1.0f) * y[(t * K + k) * H + n];
  out[i] = accumulate ? out[i] + s : s;
}

}  // namespace

void moe_decode(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t T, int K,
                float* a_scratch, float* y_scratch, float* out, bool accumulate, cudaStream_t s) {
  if (T == 0) return;
  const int64_t pairs = T * K;
  dispatch_format(m.w1, [&](auto f) {
    w13_decode_kernel<decltype(f)::value>
        <<<dim3(unsigned((m.inter + kWarps * kW13Rows - 1) / (kWarps * kW13Rows)), unsigned(pairs)), kWarps * 32,
           sizeof(float) * size_t(staged_floats(m.hidden)), s>>>(m, x, ids, K, a_scratch);
  });
  CUDA_LAUNCH_CHECK();
  dispatch_format(m.w2, [&](auto f) {
    w2_decode_kernel<decltype(f)::value>
        <<<dim3(unsigned((m.hidden + kWarps * kW2Rows - 1) / (kWarps * kW2Rows)), unsigned(pairs)), kWarps * 32,
           sizeof(float) * size_t(staged_floats(m.inter)), s>>>(m, a_scratch, ids, y_scratch);
  });
  CUDA_LAUNCH_CHECK();
  reduce_kernel<<<unsigned((T * m.hidden + 255) / 256), 256, 0, s>>>(y_scratch, wts, T, K, m.hidden, out, accumulate);
  CUDA_LAUNCH_CHECK();
}

int64_t moe_max_tiles(int64_t pairs, int experts) { return (pairs + kPM - 1) / kPM + experts; }

void moe_prefill(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t T, int K,
                 const MoeScratch& sc, float* out, bool accumulate, cudaStream_t s) {
  const int64_t pairs = T * K;
  if (pairs == 0) return;
  if (pairs > sc.capacity || m.experts > 1024)
    fail_cuda(cudaErrorInvalidValue, "moe_prefill: scratch too small or too many experts", __FILE__, __LINE__);
  CUDA_CHECK(cudaMemsetAsync(sc.counts, 0, sizeof(int32_t) * size_t(m.experts), s));
  count_kernel<<<unsigned((pairs + 255) / 256), 256, 0, s>>>(ids, pairs, sc.counts);
  CUDA_LAUNCH_CHECK();
  plan_kernel<<<1, ((m.experts + 31) / 32) * 32, 0, s>>>(sc.counts, m.experts, sc.offsets, sc.cursor, sc.tiles,
                                                          sc.num_tiles);
  CUDA_LAUNCH_CHECK();
  scatter_kernel<<<unsigned((pairs + 255) / 256), 256, 0, s>>>(ids, wts, pairs, K, sc.offsets, sc.cursor, sc.perm,
                                                               sc.perm_token, sc.perm_weight);
  CUDA_LAUNCH_CHECK();
  const unsigned max_tiles = unsigned(moe_max_tiles(pairs, m.experts));
  dispatch_format(m.w1, [&](auto f) {
    auto* k = w13_gemm_kernel<decltype(f)::value>;
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Dual::smem_bytes())));
    k<<<dim3(unsigned((m.inter + Dual::kN - 1) / Dual::kN), max_tiles), kPThreads, Dual::smem_bytes(), s>>>(
        m, x, sc.tiles, sc.num_tiles, sc.perm_token, sc.a);
  });
  CUDA_LAUNCH_CHECK();
  dispatch_format(m.w2, [&](auto f) {
    auto* k = w2_gemm_kernel<decltype(f)::value>;
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(Single::smem_bytes())));
    k<<<dim3(unsigned((m.hidden + Single::kN - 1) / Single::kN), max_tiles), kPThreads, Single::smem_bytes(), s>>>(
        m, sc.a, sc.tiles, sc.num_tiles, sc.perm, sc.perm_weight, sc.y);
  });
  CUDA_LAUNCH_CHECK();
  reduce_kernel<<<unsigned((T * m.hidden + 255) / 256), 256, 0, s>>>(sc.y, nullptr, T, K, m.hidden, out, accumulate);
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
