// Decode-time matrix-vector products (up to 4 tokens per pass) for one to three weights that share
// their input (the attention's q, k and v in one launch). Memory-bound: each warp streams R rows at
// once (R independent loads in flight per lane), dequantizes in registers and dots each group
// with the activations staged in shared memory (gemv_core.cuh). R is chosen per launch so that
// the grid fills the GPU: big matrices take 4 rows a warp, small ones 1.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/block_sum.cuh"
#include "backend/cuda/kernels/gemv_core.cuh"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kPassTokens = 4;

// Up to three weights (same format and input width) stacked in one row space; each segment's
// rows are padded to a multiple of the rows a warp takes, so a warp never straddles two.
struct GemvSet {
  DevWeight w[3];
  float* y[3];
  int64_t start[4] = {0, 0, 0, 0};
  int n = 0;
  bool stream = true;  // the only pass over the weights: load them evict-first (cache_policy.cuh)
  // NORM kernels (one token): the input is rmsnorm(x) * norm_w, computed by every block from x;
  // block 0 also writes it to xn (the MoE's input, for the kernels after the router).
  const float* norm_w = nullptr;
  float eps = 0;
  float* xn = nullptr;
  // NORM kernels: per-block sums of squares of the outputs in y[0] (sq_nq blocks from block 0) and
  // y[1] (sq_nk blocks from block sq_kb), when sumsq is set (gemv_multi_rmsnorm).
  float* sumsq = nullptr;
  int sq_nq = 0, sq_kb = 0, sq_nk = 0;
};

// Float4 of a row per thread in the NORM prologue: rows of at most 4 * kNormF4 * 256 inputs.
constexpr int kNormF4 = 4;

// The norm weight's float4 for this thread (read-only: loaded before the dependency wait).
__device__ __forceinline__ void load_norm_weight(const GemvSet& set, int64_t cols, float4 (&g)[kNormF4]) {
  const int64_t n4 = cols / 4;
#pragma unroll
  for (int i = 0; i < kNormF4; ++i)
    g[i] = ld_cg_ordered(reinterpret_cast<const float4*>(set.norm_w) + min(threadIdx.x + int64_t(i) * blockDim.x, n4 - 1));
}

// xs <- rmsnorm(x) * g, staged and padded as stage_vectors does; block 0 also stores it to set.xn.
// The same arithmetic as rmsnorm_kernel per element (w * (x * inv)); the sum of squares is
// taken in another order.
__device__ __forceinline__ void stage_normed(float* xs, const float* x, int64_t cols, const GemvSet& set,
                                             const float4 (&g)[kNormF4], float* red) {
  const int64_t n4 = cols / 4;
  float4 v[kNormF4];
  float ss = 0;
#pragma unroll
  for (int i = 0; i < kNormF4; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * blockDim.x;
    // Coherent loads: ptxas hoisted __ldg's (ld.global.nc) of x above the PDL wait, and read x
    // before the kernel that writes it had finished (tiny-m2's greedy decode diverged).
    v[i] = j < n4 ? __ldcg(reinterpret_cast<const float4*>(x) + j) : make_float4(0, 0, 0, 0);
    ss += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
  }
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(cols) + set.eps);
#pragma unroll
  for (int i = 0; i < kNormF4; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * blockDim.x;
    if (j >= n4) continue;
    const float4 o = make_float4(g[i].x * (v[i].x * inv), g[i].y * (v[i].y * inv), g[i].z * (v[i].z * inv),
                                 g[i].w * (v[i].w * inv));
    *reinterpret_cast<float4*>(xs + (j / 8) * kPadGroup + (j % 8) * 4) = o;
    if (blockIdx.x == 0) reinterpret_cast<float4*>(set.xn)[j] = o;
  }
}

// The block's sums of the squares of its outputs in y[0] and in y[1] (GemvSet::sumsq), from each
// warp's finished sums ys. pass() gives sums only to blocks whose warps are all active, so every
// thread of such a block reaches the barrier.
template <int R>
__device__ __forceinline__ void write_sumsq(const GemvSet& set, int seg, int64_t r0, int64_t rows,
                                            const float (&ys)[R], float* red) {
  const int b = int(blockIdx.x);
  const bool to_q = b < set.sq_nq, to_k = b >= set.sq_kb && b < set.sq_kb + set.sq_nk;
  if (!to_q && !to_k) return;  // the same for the whole block
  float ss = 0;
#pragma unroll
  for (int i = 0; i < R; ++i)
    if (r0 + i < rows) ss += ys[i] * ys[i];
  const int warp = threadIdx.x / 32;
  if (threadIdx.x % 32 == 0) red[warp] = seg == 0 ? ss : 0.0f, red[kWarps + warp] = seg == 1 ? ss : 0.0f;
  __syncthreads();
  if (threadIdx.x < 2) {
    float sum = 0;
#pragma unroll
    for (int i = 0; i < kWarps; ++i) sum += red[threadIdx.x * kWarps + i];
    if (threadIdx.x == 0 && to_q) set.sumsq[b] = sum;
    if (threadIdx.x == 1 && to_k) set.sumsq[set.sq_nq + b - set.sq_kb] = sum;
  }
}

// GPL > 0 (one token, packed formats, rows of at most 32 * GPL groups): every group a lane will
// need is loaded before the first is used, so a warp waits for memory once rather than once per
// step. GPL 0: any shape, double-buffered steps. NORM (T = 1): the input is normalised first.
template <int F, int T, int R, int GPL, bool NORM = false>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(GemvSet set, const float* x, bool accumulate) {
  static_assert(!NORM || T == 1, "the fused norm is for one token");
  extern __shared__ float xs[];
  __shared__ float cbs[3][16];
  __shared__ float red[NORM ? 32 : 1];
  float4 nw[NORM ? kNormF4 : 1];
  pdl_launch_dependents();
  const int64_t cols = set.w[0].cols;
  const int lane = threadIdx.x % 32;
  const int64_t gr = (int64_t(blockIdx.x) * kWarps + threadIdx.x / 32) * R;
  const bool active = gr < set.start[set.n];
  const int seg = !active ? 0 : gr >= set.start[1] ? (gr >= set.start[2] ? 2 : 1) : 0;
  const DevWeight& w = set.w[seg];
  const int64_t r0 = gr - set.start[seg];
  const int64_t groups = cols / 32;
  const uint64_t pol = l2_policy(set.stream);
  // The first step's weight loads do not depend on the previous kernel: issue them before waiting
  // for it (rows past the end re-read the last row; their results are dropped).
  float acc[R][T] = {};
  if constexpr (GPL > 0) {
    RawGroup all[GPL][R];
#pragma unroll
    for (int j = 0; j < GPL; ++j)
      if (active && lane + 32 * j < groups) {
#pragma unroll
        for (int i = 0; i < R; ++i) all[j][i] = load_group<F>(w, min(r0 + i, w.rows - 1), lane + 32 * j, pol);
      }
    for (int i = 0; i < set.n; ++i) stage_codebook(cbs[i], set.w[i]);
    if constexpr (NORM) load_norm_weight(set, cols, nw);
    pdl_wait();
    if constexpr (NORM) stage_normed(xs, x, cols, set, nw, red);
    else stage_vectors(xs, x, cols, cols, T);
    __syncthreads();
    if (!active) return;
#pragma unroll
    for (int j = 0; j < GPL; ++j)
      if (lane + 32 * j < groups) {
        float xv[32];
        load_x32(xs + (lane + 32 * j) * kPadGroup, xv);
#pragma unroll
        for (int i = 0; i < R; ++i)
          acc[i][0] += group_dot<F>(w, min(r0 + i, w.rows - 1), lane + 32 * j, all[j][i], xv, cbs[seg]);
      }
  }
  RawGroup raw[R];
  if (GPL == 0 && active && lane < groups) {
#pragma unroll
    for (int i = 0; i < R; ++i) raw[i] = load_group<F>(w, min(r0 + i, w.rows - 1), lane, pol);
  }
  if (GPL == 0) {
    for (int i = 0; i < set.n; ++i) stage_codebook(cbs[i], set.w[i]);
    if constexpr (NORM) load_norm_weight(set, cols, nw);
    pdl_wait();
    if constexpr (NORM) stage_normed(xs, x, cols, set, nw, red);
    else stage_vectors(xs, x, cols, cols, T);
    __syncthreads();
    if (!active) return;
  }
  for (int64_t g = lane; GPL == 0 && g < groups; g += 32) {
    // Double buffering: the next step's loads are in flight while this step computes.
    const bool more = g + 32 < groups;
    RawGroup next[R];
    if (more) {
#pragma unroll
      for (int i = 0; i < R; ++i) next[i] = load_group<F>(w, min(r0 + i, w.rows - 1), g + 32, pol);
    }
#pragma unroll
    for (int t = 0; t < T; ++t) {
      float xv[32];
      load_x32(xs + t * staged_floats(cols) + g * kPadGroup, xv);
#pragma unroll
      for (int i = 0; i < R; ++i) acc[i][t] += group_dot<F>(w, min(r0 + i, w.rows - 1), g, raw[i], xv, cbs[seg]);
    }
    if (more) {
#pragma unroll
      for (int i = 0; i < R; ++i) raw[i] = next[i];
    }
  }
  float ys[R];  // token 0's sums (the norm's partial sums of squares)
#pragma unroll
  for (int i = 0; i < R; ++i)
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const float s = warp_sum(acc[i][t]);
      if (t == 0) ys[i] = s;
      if (lane == 0 && r0 + i < w.rows) {
        float* dst = set.y[seg] + t * w.rows + r0 + i;
        *dst = accumulate ? *dst + s : s;
      }
    }
  if constexpr (NORM)
    if (set.sumsq) write_sumsq<R>(set, seg, r0, w.rows, ys, red);
}

// Tall products (one token, one weight, far more rows than the GPU holds warps: lm_head's
// 200064): a grid of what the GPU holds at once (two blocks per multiprocessor for rows of up
// to 3072 inputs), each warp walking rows a grid's worth of warps apart with the next row's
// groups in flight while it dots the current one. The kernel above launches a block per 8-16
// rows instead (12504 blocks for lm_head): each stages the 12 KB of activations again and loads
// its weights only once it is resident, so only the first wave's loads start before the
// dependency wait.
// lm_head's 653 MB alone: 238 us against 244 on an H100, 204 against 222 on an H200; three blocks
// per multiprocessor measured 190 on the H200 but were not measured on an H100 (docs/PERF.md), so
// MOEQ_GEMV_TALL_BLOCKS=3 selects them for a comparison (read at each call, as MOEQ_GEMV_TALL).
constexpr int kTallBlocksPerSm = 2;  // for rows of up to 3 groups a lane (register bound)
int tall_blocks_per_sm() { return int(env_knob("MOEQ_GEMV_TALL_BLOCKS", kTallBlocksPerSm, 2, 3)); }

template <int F, int GPL, int MINB>
__global__ void __launch_bounds__(kWarps * 32, MINB) gemv_tall_kernel(DevWeight w, float* y, const float* x, bool accumulate) {
  extern __shared__ float xs[];
  __shared__ float cbs[16];
  pdl_launch_dependents();
  const int lane = threadIdx.x % 32;
  const int64_t groups = w.cols / 32, stride = int64_t(gridDim.x) * kWarps;
  const uint64_t pol = l2_policy(true);
  auto load_row = [&](int64_t r, RawGroup (&dst)[GPL]) {
#pragma unroll
    for (int j = 0; j < GPL; ++j)
      if (lane + 32 * j < groups) dst[j] = load_group<F>(w, r, lane + 32 * j, pol);
  };
  int64_t r = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  RawGroup cur[GPL];
  if (r < w.rows) load_row(r, cur);  // weights only: before the dependency wait
  stage_codebook(cbs, w);
  pdl_wait();
  stage_vectors(xs, x, w.cols, w.cols, 1);
  __syncthreads();
  for (; r < w.rows; r += stride) {
    const bool more = r + stride < w.rows;
    RawGroup nxt[GPL];
    if (more) load_row(r + stride, nxt);
    float acc = 0;
#pragma unroll
    for (int j = 0; j < GPL; ++j)
      if (lane + 32 * j < groups) {
        float xv[32];
        load_x32(xs + (lane + 32 * j) * kPadGroup, xv);
        acc += group_dot<F>(w, r, lane + 32 * j, cur[j], xv, cbs);
      }
    acc = warp_sum(acc);
    if (lane == 0) y[r] = accumulate ? y[r] + acc : acc;
    if (more) {
#pragma unroll
      for (int j = 0; j < GPL; ++j) cur[j] = nxt[j];
    }
  }
}

// The tall kernel's launch: as many blocks as the GPU holds at once.
template <int F, int GPL, int MINB>
void launch_tall(const DevWeight& w, float* y, const float* x, bool acc, cudaStream_t s) {
  auto* k = gemv_tall_kernel<F, GPL, MINB>;
  const size_t smem = sizeof(float) * size_t(staged_floats(w.cols));
  if (smem > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, kWarps * 32, smem));
  const int64_t blocks = (w.rows + kWarps - 1) / kWarps;
  const int grid = int(std::min<int64_t>(blocks, int64_t(std::max(per_sm, 1)) * sm_count()));
  launch(k, dim3(unsigned(grid)), dim3(kWarps * 32), smem, s, w, y, x, acc);
}

// MOEQ_GEMV_TALL: 0 never; 1 (default) for products of more than 16 rows per warp of two
// blocks per multiprocessor (lm_head); 2 for every one-token product of one packed weight whose
// rows fit (the parity test's setting; read at each call).
int tall_mode() { return int(env_knob("MOEQ_GEMV_TALL", 1, 0, 2)); }

template <int F, int T, int R, int GPL = 0, bool NORM = false>
void launch_one(const GemvSet& set, const float* x, bool acc, cudaStream_t s) {
  const size_t smem = sizeof(float) * size_t(staged_floats(set.w[0].cols)) * T;
  auto* k = gemv_kernel<F, T, R, GPL, NORM>;
  if (smem > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const int64_t rows = set.start[set.n];
  launch(k, dim3(unsigned((rows + kWarps * R - 1) / (kWarps * R))), dim3(kWarps * 32), smem, s, set, x, acc);
}

// One pass of T tokens: picks rows per warp, pads the segments, launches. With set.sumsq, sets
// the partial sums' counts first, or returns false without launching where a block that writes
// them would have inactive warps.
template <int T>
bool pass(GemvSet set, const float* x, bool acc, cudaStream_t s, SumSqCounts* counts = nullptr) {
  int64_t total = 0;
  for (int i = 0; i < set.n; ++i) total += set.w[i].rows;
  // The most rows per warp that still leaves about three blocks per multiprocessor.
  int R = 4;
  while (R > 1 && total / (kWarps * R) < 3 * sm_count()) R /= 2;
  if (T >= 4) R = 1;  // registers: four tokens' accumulators already
  // One token, a packed format, and at most six steps per lane in registers: load them all at once.
  const int64_t per_lane = (set.w[0].cols / 32 + 31) / 32;
  const int code = fmt_code(set.w[0]);
  const bool packed = code >= kQ8 && code <= kL4;
  int gpl = 0;
  if (T == 1 && packed) {
    if (per_lane <= 3) gpl = 3;
    else if (per_lane <= 6) gpl = 6;
    while (gpl > 0 && R * gpl > 6 && R > 1) R /= 2;  // registers: at most six groups in flight per lane
  }
  if (set.norm_w && gpl == 0) R = 1;  // the fused norm's generic instantiations: one row per warp
  for (int i = 0; i < set.n; ++i) set.start[i + 1] = set.start[i] + (set.w[i].rows + R - 1) / R * R;
  if (set.sumsq) {
    const int64_t rpb = int64_t(kWarps) * R, k_end = (set.start[2] + rpb - 1) / rpb;
    if (set.n < 2 || k_end * rpb > set.start[set.n]) return false;
    set.sq_nq = int((set.start[1] + rpb - 1) / rpb);
    set.sq_kb = int(set.start[1] / rpb);
    set.sq_nk = int(k_end - set.sq_kb);
    if (counts) counts->q = set.sq_nq, counts->k = set.sq_nk;
  }
  const int tall = T == 1 && set.n == 1 && !set.norm_w && gpl > 0 ? tall_mode() : 0;
  const int tall_blocks = tall != 0 ? tall_blocks_per_sm() : kTallBlocksPerSm;  // env read only where it matters
  const bool tall_rows = set.w[0].rows > int64_t(16) * tall_blocks * kWarps * sm_count();
  if (tall == 2 || (tall != 0 && tall_rows)) {
    dispatch_format(set.w[0], [&](auto f) {
      constexpr int F = decltype(f)::value;
      if constexpr (F >= kQ8) {
        if (gpl == 3 && tall_blocks == 3) return launch_tall<F, 3, 3>(set.w[0], set.y[0], x, acc, s);
        if (gpl == 3) return launch_tall<F, 3, kTallBlocksPerSm>(set.w[0], set.y[0], x, acc, s);
        return launch_tall<F, 6, 1>(set.w[0], set.y[0], x, acc, s);
      }
    });
    return true;
  }
  dispatch_format(set.w[0], [&](auto f) {
    constexpr int F = decltype(f)::value;
    if constexpr (T == 1) {
      if (set.norm_w) {
        if constexpr (F >= kQ8) {
          if (gpl == 3 && R == 2) return launch_one<F, 1, 2, 3, true>(set, x, acc, s);
          if (gpl == 3) return launch_one<F, 1, 1, 3, true>(set, x, acc, s);
          if (gpl == 6) return launch_one<F, 1, 1, 6, true>(set, x, acc, s);
        }
        return launch_one<F, 1, 1, 0, true>(set, x, acc, s);
      }
    }
    if constexpr (T == 1 && F >= kQ8) {
      if (gpl == 3 && R == 2) return launch_one<F, 1, 2, 3>(set, x, acc, s);
      if (gpl == 3 && R == 1) return launch_one<F, 1, 1, 3>(set, x, acc, s);
      if (gpl == 6) return launch_one<F, 1, 1, 6>(set, x, acc, s);
    }
    if (R == 4) launch_one<F, T, 4>(set, x, acc, s);
    else if (R == 2) launch_one<F, T, 2>(set, x, acc, s);
    else launch_one<F, T, 1>(set, x, acc, s);
  });
  return true;
}

}  // namespace

void gemv_multi(const DevWeight* const* w, float* const* y, int n, const float* x, int64_t T, cudaStream_t s,
                bool accumulate) {
  if (staged_floats(w[0]->cols) * kPassTokens * 4 > 200 * 1024)
    fail_cuda(cudaErrorInvalidValue, "gemv: rows too long for the staged activations", __FILE__, __LINE__);
  int64_t t0 = 0;
  while (t0 < T) {  // passes of 4, 2, 1 tokens: each pass reads the weights once
    const int64_t left = T - t0;
    const int nt = left >= 4 ? 4 : left >= 2 ? 2 : 1;
    GemvSet set;
    set.n = n;
    set.stream = T <= kPassTokens;  // several passes re-read the weights: keep them in L2
    for (int i = 0; i < n; ++i) {
      set.w[i] = *w[i];
      set.y[i] = y[i] + t0 * w[i]->rows;
    }
    const float* xt = x + t0 * w[0]->cols;
    if (nt == 4) pass<4>(set, xt, accumulate, s);
    else if (nt == 2) pass<2>(set, xt, accumulate, s);
    else pass<1>(set, xt, accumulate, s);
    t0 += nt;
  }
}

bool gemv_rmsnorm_supported(const DevWeight& w) { return w.cols % 32 == 0 && w.cols <= 4 * kNormF4 * kWarps * 32; }

// At most one partial sum per block of the smallest (8 rows, R = 1) plus one straddling block each.
int64_t gemv_sumsq_floats(int64_t rows0, int64_t rows1) { return (rows0 + rows1) / kWarps + 4; }

bool gemv_multi_rmsnorm(const DevWeight* const* w, float* const* y, int n, const float* x, const float* norm_w,
                        float eps, float* xn, cudaStream_t s, float* sumsq, SumSqCounts* counts) {
  if (n < 1 || n > 3 || !gemv_rmsnorm_supported(*w[0]))
    fail_cuda(cudaErrorInvalidValue, "gemv_multi_rmsnorm: row length or weight count not supported", __FILE__,
              __LINE__);
  GemvSet set;
  set.n = n;
  for (int i = 0; i < n; ++i) {
    set.w[i] = *w[i];
    set.y[i] = y[i];
  }
  set.norm_w = norm_w;
  set.eps = eps;
  set.xn = xn;
  set.sumsq = sumsq;
  return pass<1>(set, x, false, s, counts);
}

void gemv(const DevWeight& w, const float* x, int64_t T, float* y, cudaStream_t s, bool accumulate) {
  const DevWeight* ws[1] = {&w};
  float* ys[1] = {y};
  gemv_multi(ws, ys, 1, x, T, s, accumulate);
}

}  // namespace moeq::cuda
