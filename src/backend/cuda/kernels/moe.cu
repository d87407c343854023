// The MoE expert block on device. Decode (few tokens): warp-per-row products straight from the
// packed experts, SwiGLU fused into the w1/w3 pass and the weighted sum over the chosen experts
// fused into the w2 pass. Prefill: (token, choice) pairs grouped by expert on device (no host
// round trip), then per-expert tensor-core products; every pair owns an output row and the
// choices are summed in a fixed order, so results do not depend on scheduling.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/gemm_pipe.cuh"
#include "backend/cuda/kernels/gemv_core.cuh"
#include "backend/cuda/kernels/launch.cuh"
#include "backend/cuda/kernels/moe_common.cuh"

namespace moeq::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kW13Rows = 2, kW2Rows = 4;  // rows per warp: independent loads in flight per lane
static_assert(kWarps * kW2Rows == kMoeW2BlockRows, "w2 decode blocks share the tickets' row blocks");

// ---- decode ----------------------------------------------------------------------------------
// grid (inter / 16, pairs): a[pair][r] = silu(W1_e[r] . x_t) * (W3_e[r] . x_t); a warp per two
// rows. The expert comes from the router (the previous kernel), so the weight loads wait for it;
// they are then issued before x_t is staged in shared memory, and each step's loads overlap the
// previous step's arithmetic (double buffering).
//
// GPL > 0 (packed formats of up to 4 bits, rows of at most 32 * GPL groups): every group a lane
// will need is loaded at once, so a warp waits for memory once instead of once per step. GPL 0:
// any width, double-buffered steps.
template <int F, int GPL>
__global__ void __launch_bounds__(kWarps * 32) w13_decode_kernel(MoeWeights m, const float* x, const int32_t* ids,
                                                                 int K, float* a) {
  extern __shared__ float xs[];
  __shared__ float cb1[16], cb3[16];
  pdl_wait();
  pdl_launch_dependents();  // after the wait: w2_mma_kernel relies on it (see there)
  const int64_t pair = blockIdx.y;
  const int e = ids[pair];
  const DevWeight w1 = expert_view(m.w1, e), w3 = expert_view(m.w3, e);
  const int lane = threadIdx.x % 32;
  const uint64_t pol = l2_stream_policy();  // one (token, choice) pair reads its rows once
  const int64_t r0 = (int64_t(blockIdx.x) * kWarps + threadIdx.x / 32) * kW13Rows;
  const int64_t groups = m.hidden / 32;
  if constexpr (GPL > 0) {
    RawGroup r1[GPL][kW13Rows], r3[GPL][kW13Rows];
#pragma unroll
    for (int j = 0; j < GPL; ++j)
      if (lane + 32 * j < groups) {
#pragma unroll
        for (int i = 0; i < kW13Rows; ++i) {
          const int64_t r = min(r0 + i, m.inter - 1);
          r1[j][i] = load_group<F>(w1, r, lane + 32 * j, pol);
          r3[j][i] = load_group<F>(w3, r, lane + 32 * j, pol);
        }
      }
    stage_vectors(xs, x + (pair / K) * m.hidden, m.hidden, m.hidden, 1);
    stage_codebook(cb1, w1);
    stage_codebook(cb3, w3);
    __syncthreads();
    float g[kW13Rows] = {}, u[kW13Rows] = {};
#pragma unroll
    for (int j = 0; j < GPL; ++j)
      if (lane + 32 * j < groups) {
        float xv[32];
        load_x32(xs + (lane + 32 * j) * kPadGroup, xv);
#pragma unroll
        for (int i = 0; i < kW13Rows; ++i) {
          const int64_t r = min(r0 + i, m.inter - 1);
          g[i] += group_dot<F>(w1, r, lane + 32 * j, r1[j][i], xv, cb1);
          u[i] += group_dot<F>(w3, r, lane + 32 * j, r3[j][i], xv, cb3);
        }
      }
#pragma unroll
    for (int i = 0; i < kW13Rows; ++i) {
      const float gs = warp_sum(g[i]), us = warp_sum(u[i]);
      if (lane == 0 && r0 + i < m.inter) a[pair * m.inter + r0 + i] = silu(gs) * us;
    }
    return;
  }
  RawGroup r1[kW13Rows], r3[kW13Rows];
  if (lane < groups) {
#pragma unroll
    for (int i = 0; i < kW13Rows; ++i) {
      const int64_t r = min(r0 + i, m.inter - 1);
      r1[i] = load_group<F>(w1, r, lane, pol);
      r3[i] = load_group<F>(w3, r, lane, pol);
    }
  }
  stage_vectors(xs, x + (pair / K) * m.hidden, m.hidden, m.hidden, 1);
  stage_codebook(cb1, w1);
  stage_codebook(cb3, w3);
  __syncthreads();
  float g[kW13Rows] = {}, u[kW13Rows] = {};
  for (int64_t grp = lane; grp < groups; grp += 32) {
    const bool more = grp + 32 < groups;
    RawGroup n1[kW13Rows], n3[kW13Rows];
    if (more) {
#pragma unroll
      for (int i = 0; i < kW13Rows; ++i) {
        const int64_t r = min(r0 + i, m.inter - 1);
        n1[i] = load_group<F>(w1, r, grp + 32, pol);
        n3[i] = load_group<F>(w3, r, grp + 32, pol);
      }
    }
    float xv[32];
    load_x32(xs + grp * kPadGroup, xv);
#pragma unroll
    for (int i = 0; i < kW13Rows; ++i) {
      const int64_t r = min(r0 + i, m.inter - 1);
      g[i] += group_dot<F>(w1, r, grp, r1[i], xv, cb1);
      u[i] += group_dot<F>(w3, r, grp, r3[i], xv, cb3);
    }
    if (more) {
#pragma unroll
      for (int i = 0; i < kW13Rows; ++i) r1[i] = n1[i], r3[i] = n3[i];
    }
  }
#pragma unroll
  for (int i = 0; i < kW13Rows; ++i) {
    const float gs = warp_sum(g[i]), us = warp_sum(u[i]);
    if (lane == 0 && r0 + i < m.inter) a[pair * m.inter + r0 + i] = silu(gs) * us;
  }
}

// grid (hidden / 32, pairs): y[pair][r] = W2_e[r] . a[pair], four rows per warp; the weighted sum
// over a token's K experts is fused (moe_combine_rows).
template <int F, int GPL>
__global__ void __launch_bounds__(kWarps * 32) w2_decode_kernel(MoeWeights m, const float* a, const int32_t* ids,
                                                                const float* wts, int K, float* y, int32_t* tickets,
                                                                float* out, bool accumulate) {
  extern __shared__ float as[];
  __shared__ float cb2[16];
  pdl_launch_dependents();
  pdl_wait();
  const int64_t pair = blockIdx.y;
  const DevWeight w2 = expert_view(m.w2, ids[pair]);
  const int lane = threadIdx.x % 32;
  const uint64_t pol = l2_stream_policy();  // one (token, choice) pair reads its rows once
  const int64_t r0 = (int64_t(blockIdx.x) * kWarps + threadIdx.x / 32) * kW2Rows;
  const int64_t groups = m.inter / 32;
  float acc[kW2Rows] = {};
  if constexpr (GPL > 0) {  // all of a lane's groups loaded at once (see w13_decode_kernel)
    RawGroup raw[GPL][kW2Rows];
#pragma unroll
    for (int j = 0; j < GPL; ++j)
      if (lane + 32 * j < groups) {
#pragma unroll
        for (int i = 0; i < kW2Rows; ++i) raw[j][i] = load_group<F>(w2, min(r0 + i, m.hidden - 1), lane + 32 * j, pol);
      }
    stage_vectors(as, a + pair * m.inter, m.inter, m.inter, 1);
    stage_codebook(cb2, w2);
    __syncthreads();
#pragma unroll
    for (int j = 0; j < GPL; ++j)
      if (lane + 32 * j < groups) {
        float xv[32];
        load_x32(as + (lane + 32 * j) * kPadGroup, xv);
#pragma unroll
        for (int i = 0; i < kW2Rows; ++i)
          acc[i] += group_dot<F>(w2, min(r0 + i, m.hidden - 1), lane + 32 * j, raw[j][i], xv, cb2);
      }
  }
  RawGroup raw[kW2Rows];
  if (GPL == 0 && lane < groups) {
#pragma unroll
    for (int i = 0; i < kW2Rows; ++i) raw[i] = load_group<F>(w2, min(r0 + i, m.hidden - 1), lane, pol);
  }
  if (GPL == 0) {
    stage_vectors(as, a + pair * m.inter, m.inter, m.inter, 1);
    stage_codebook(cb2, w2);
    __syncthreads();
  }
  for (int64_t grp = lane; GPL == 0 && grp < groups; grp += 32) {
    const bool more = grp + 32 < groups;
    RawGroup next[kW2Rows];
    if (more) {
#pragma unroll
      for (int i = 0; i < kW2Rows; ++i) next[i] = load_group<F>(w2, min(r0 + i, m.hidden - 1), grp + 32, pol);
    }
    float xv[32];
    load_x32(as + grp * kPadGroup, xv);
#pragma unroll
    for (int i = 0; i < kW2Rows; ++i) acc[i] += group_dot<F>(w2, min(r0 + i, m.hidden - 1), grp, raw[i], xv, cb2);
    if (more) {
#pragma unroll
      for (int i = 0; i < kW2Rows; ++i) raw[i] = next[i];
    }
  }
#pragma unroll
  for (int i = 0; i < kW2Rows; ++i) {
    const float sum = warp_sum(acc[i]);
    if (lane == 0 && r0 + i < m.hidden) y[pair * m.hidden + r0 + i] = sum;
  }
  moe_combine_rows(pair, K, int64_t(blockIdx.x) * kMoeW2BlockRows, kMoeW2BlockRows, m.hidden, wts, y, tickets, out,
                   accumulate);
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
                float* a_scratch, float* y_scratch, int32_t* tickets, float* out, bool accumulate, cudaStream_t s,
                bool stream) {
  if (T == 0) return;
  const int64_t pairs = T * K;
  // Groups per lane for the load-everything-at-once kernels (0: the stepping ones).
  auto gpl = [](const DevWeight& w, int64_t cols) -> int {
    const int code = fmt_code(w);
    const int64_t per_lane = (cols / 32 + 31) / 32;
    return code >= kINT2 && code <= kL4 && per_lane <= 3 ? int(per_lane) : 0;
  };
  auto with_gpl = [](int n, auto&& fn) {
    if (n == 1) fn(std::integral_constant<int, 1>{});
    else if (n == 2) fn(std::integral_constant<int, 2>{});
    else if (n == 3) fn(std::integral_constant<int, 3>{});
    else fn(std::integral_constant<int, 0>{});
  };
  if (stream && moe_stream_decode_supported(m, pairs, K)) {
    moe_decode_stream(m, x, ids, wts, pairs, K, y_scratch, out, accumulate, s);
    return;
  }
  if (moe_mma_decode_supported(m.w1) && moe_mma_decode_supported(m.w3) && m.w1.group == m.w3.group) {
    moe_w13_decode_mma(m, x, ids, pairs, K, a_scratch, s);
  } else {
    dispatch_format(m.w1, [&](auto f) {
      with_gpl(gpl(m.w1, m.hidden), [&](auto n) {
        launch(w13_decode_kernel<decltype(f)::value, decltype(n)::value>,
               dim3(unsigned((m.inter + kWarps * kW13Rows - 1) / (kWarps * kW13Rows)), unsigned(pairs)),
               dim3(kWarps * 32), sizeof(float) * size_t(staged_floats(m.hidden)), s, m, x, ids, K, a_scratch);
      });
    });
  }
  if (moe_mma_decode_supported(m.w2)) {
    moe_w2_decode_mma(m, a_scratch, ids, wts, pairs, K, y_scratch, tickets, out, accumulate, s);
  } else {
    dispatch_format(m.w2, [&](auto f) {
      with_gpl(gpl(m.w2, m.inter), [&](auto n) {
        launch(w2_decode_kernel<decltype(f)::value, decltype(n)::value>,
               dim3(unsigned(moe_decode_row_blocks(m.hidden)), unsigned(pairs)), dim3(kWarps * 32),
               sizeof(float) * size_t(staged_floats(m.inter)), s, m, static_cast<const float*>(a_scratch), ids, wts,
               K, y_scratch, tickets, out, accumulate);
      });
    });
  }
}

int64_t moe_decode_row_blocks(int64_t hidden) { return (hidden + kMoeW2BlockRows - 1) / kMoeW2BlockRows; }

int64_t moe_decode_y_rows(int64_t T, int K) { return std::max<int64_t>(T * K, sm_count() + T - 1); }

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
