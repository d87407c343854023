// The MoE expert block on device. Decode (few tokens): warp-per-row products straight from the
// packed experts, SwiGLU fused into the w1/w3 pass and the weighted sum over the chosen experts
// fused into the w2 pass. Prefill: (token, choice) pairs grouped by expert on device (no host
// round trip), then per-expert tensor-core products; every pair owns an output row and the
// choices are summed in a fixed order, so results do not depend on scheduling.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/gemm_core.cuh"

namespace moeq::cuda {
namespace {

constexpr int kWarps = 8;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float dot32(const float* w, const float* x) {
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float acc = 0;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float4 v = __ldg(x4 + i);
    acc = fmaf(w[4 * i], v.x, fmaf(w[4 * i + 1], v.y, fmaf(w[4 * i + 2], v.z, fmaf(w[4 * i + 3], v.w, acc))));
  }
  return acc;
}

__device__ __forceinline__ float silu(float g) { return g / (1.0f + expf(-g)); }

// ---- decode -----------------------------------------------------------------------------------
// grid (rows / 8, pairs): a[pair][r] = silu(W1_e[r] . x_t) * (W3_e[r] . x_t).
template <int F>
__global__ void __launch_bounds__(kWarps * 32) w13_decode_kernel(MoeWeights m, const float* x, const int32_t* ids,
                                                                 int K, float* a) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int64_t pair = blockIdx.y;
  if (r >= m.inter) return;
  const int e = ids[pair];
  const DevWeight w1 = expert_view(m.w1, e), w3 = expert_view(m.w3, e);
  const float* xt = x + (pair / K) * m.hidden;
  float g = 0, u = 0;
  for (int64_t grp = lane; grp < m.hidden / 32; grp += 32) {
    float v[32];
    dequant32<F>(w1, r, grp, v);
    g += dot32(v, xt + grp * 32);
    dequant32<F>(w3, r, grp, v);
    u += dot32(v, xt + grp * 32);
  }
  g = warp_sum(g);
  u = warp_sum(u);
  if (lane == 0) a[pair * m.inter + r] = silu(g) * u;
}

// grid (hidden / 8, T): out[t][r] = sum_k wt[t][k] * (W2_e[r] . a[t*K + k]).
template <int F>
__global__ void __launch_bounds__(kWarps * 32) w2_decode_kernel(MoeWeights m, const float* a, const int32_t* ids,
                                                                const float* wts, int K, float* out) {
  const int lane = threadIdx.x % 32;
  const int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int64_t t = blockIdx.y;
  if (r >= m.hidden) return;
  float total = 0;
  for (int k = 0; k < K; ++k) {
    const int64_t pair = t * K + k;
    const DevWeight w2 = expert_view(m.w2, ids[pair]);
    float acc = 0;
    for (int64_t grp = lane; grp < m.inter / 32; grp += 32) {
      float v[32];
      dequant32<F>(w2, r, grp, v);
      acc += dot32(v, a + pair * m.inter + grp * 32);
    }
    total += wts[pair] * warp_sum(acc);
  }
  if (lane == 0) out[t * m.hidden + r] = total;
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
    tcount[e + 1] = (counts[e] + kBM - 1) / kBM;
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
      tile[1] = off[e] + j * kBM;
      tile[2] = min(kBM, counts[e] - j * kBM);
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
// a[start + i][n] = silu(x[tok] . W1_e[n]) * (x[tok] . W3_e[n]) for the tile's rows.
template <int F>
__global__ void __launch_bounds__(kGemmThreads) w13_gemm_kernel(MoeWeights m, const float* x, const int32_t* tiles,
                                                                const int32_t* num_tiles, const int32_t* perm_token,
                                                                float* a) {
  if (int(blockIdx.y) >= *num_tiles) return;
  __shared__ __align__(16) __nv_bfloat16 As[kBM][kBK + kPad];
  __shared__ __align__(16) __nv_bfloat16 B1[kBN][kBK + kPad];
  __shared__ __align__(16) __nv_bfloat16 B3[kBN][kBK + kPad];
  const int32_t* tile = tiles + 3 * blockIdx.y;
  const int e = tile[0], start = tile[1], rows = tile[2];
  const DevWeight w1 = expert_view(m.w1, e), w3 = expert_view(m.w3, e);
  const int64_t n0 = int64_t(blockIdx.x) * kBN;
  float g[2][4][4] = {}, u[2][4][4] = {};
  for (int64_t k0 = 0; k0 < m.hidden; k0 += kBK) {
    stage_a(As, x, m.hidden, rows, k0, [&](int i) { return int64_t(perm_token[start + i]); });
    stage_w<F>(B1, w1, n0, k0);
    stage_w<F>(B3, w3, n0, k0);
    __syncthreads();
    mma_tile(g, As, B1);
    mma_tile(u, As, B3);
    __syncthreads();
  }
  // g and u hold the same (i, n) element at the same accumulator position.
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32, r = lane / 4, c = (lane % 4) * 2;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int i = wm + mi * 16 + r + (q >= 2 ? 8 : 0);
        const int64_t n = n0 + wn + ni * 8 + c + (q & 1);
        if (i < rows && n < m.inter) a[(start + i) * m.inter + n] = silu(g[mi][ni][q]) * u[mi][ni][q];
      }
}

// y[perm[start + i]][n] = wt * (a[start + i] . W2_e[n]).
template <int F>
__global__ void __launch_bounds__(kGemmThreads) w2_gemm_kernel(MoeWeights m, const float* a, const int32_t* tiles,
                                                               const int32_t* num_tiles, const int32_t* perm,
                                                               const float* perm_weight, float* y) {
  if (int(blockIdx.y) >= *num_tiles) return;
  __shared__ __align__(16) __nv_bfloat16 As[kBM][kBK + kPad];
  __shared__ __align__(16) __nv_bfloat16 Bs[kBN][kBK + kPad];
  const int32_t* tile = tiles + 3 * blockIdx.y;
  const int e = tile[0], start = tile[1], rows = tile[2];
  const DevWeight w2 = expert_view(m.w2, e);
  const int64_t n0 = int64_t(blockIdx.x) * kBN;
  float acc[2][4][4] = {};
  for (int64_t k0 = 0; k0 < m.inter; k0 += kBK) {
    stage_a(As, a, m.inter, rows, k0, [&](int i) { return int64_t(start + i); });
    stage_w<F>(Bs, w2, n0, k0);
    __syncthreads();
    mma_tile(acc, As, Bs);
    __syncthreads();
  }
  for_each_acc(acc, n0, rows, m.hidden, [&](int i, int64_t n, float v) {
    y[int64_t(perm[start + i]) * m.hidden + n] = perm_weight[start + i] * v;
  });
}

// out[t][n] = sum_k y[t*K + k][n], in order of k.
__global__ void reduce_kernel(const float* y, int64_t T, int K, int64_t H, float* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * H) return;
  const int64_t t = i / H, n = i % H;
  float s = 0;
  for (int k = 0; k < K; ++k) s += y[(t * K + k) * H + n];
  out[i] = s;
}

}  // namespace

void moe_decode(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t T, int K,
                float* a_scratch, float* out, cudaStream_t s) {
  if (T == 0) return;
  dispatch_format(m.w1, [&](auto f) {
    w13_decode_kernel<decltype(f)::value>
        <<<dim3(unsigned((m.inter + kWarps - 1) / kWarps), unsigned(T * K)), kWarps * 32, 0, s>>>(m, x, ids, K,
                                                                                                 a_scratch);
  });
  CUDA_LAUNCH_CHECK();
  dispatch_format(m.w2, [&](auto f) {
    w2_decode_kernel<decltype(f)::value>
        <<<dim3(unsigned((m.hidden + kWarps - 1) / kWarps), unsigned(T)), kWarps * 32, 0, s>>>(m, a_scratch, ids, wts,
                                                                                               K, out);
  });
  CUDA_LAUNCH_CHECK();
}

int64_t moe_max_tiles(int64_t pairs, int experts) { return (pairs + kBM - 1) / kBM + experts; }

void moe_prefill(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t T, int K,
                 const MoeScratch& sc, float* out, cudaStream_t s) {
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
    w13_gemm_kernel<decltype(f)::value><<<dim3(unsigned((m.inter + kBN - 1) / kBN), max_tiles), kGemmThreads, 0, s>>>(
        m, x, sc.tiles, sc.num_tiles, sc.perm_token, sc.a);
  });
  CUDA_LAUNCH_CHECK();
  dispatch_format(m.w2, [&](auto f) {
    w2_gemm_kernel<decltype(f)::value><<<dim3(unsigned((m.hidden + kBN - 1) / kBN), max_tiles), kGemmThreads, 0, s>>>(
        m, sc.a, sc.tiles, sc.num_tiles, sc.perm, sc.perm_weight, sc.y);
  });
  CUDA_LAUNCH_CHECK();
  reduce_kernel<<<unsigned((T * m.hidden + 255) / 256), 256, 0, s>>>(sc.y, T, K, m.hidden, out);
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
