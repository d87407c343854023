// MoE decode for 4-bit integer experts (int4_g32, int4_g128) on tensor cores.
//
// Why: with f32 activations every 4-bit code costs about four instructions (extract, convert,
// subtract the zero point, FMA), and at that rate the expert kernels run out of issue slots at a
// third of the memory bandwidth. Here the weights are the A operand of mma.sync m16n8k16 (16 rows
// by 16 inputs, f16) and the token's activations, rounded to f16, the B operand (only column 0
// is used); accumulation is f32. Per 8 codes a lane spends one shift and four LOP3s:
//
//   LOP3 (u & 0x000f000f) | 0x64006400 gives the f16 pair 1024 + c for codes 0 and 4 of a word,
//   and (u & 0x00f000f0) | 0x64006400 gives 1024 + 16c for codes 1 and 5 (then u >> 8 for 2,6 / 3,7).
//
// The offsets are not subtracted per weight. The mma of one 32-input group instead starts from
// -D_g, where D_g is a per-group constant of the activations alone: the "1024 + c" codes meet the
// activation x and the "1024 + 16c" codes meet h = x/16 (exact in f16), so with the zero point 8
//   sum (1024 + c) x + sum (1024 + 16c) h - D_g = sum (c - 8) x + sum 16 (c - 8) h
// when D_g = 1032 sum x (even codes) + 1152 sum h (odd codes). The group's result is then scaled by
// the row's group scale and accumulated in f32. The order of the inputs inside a group does not
// matter to a dot product, so the activations are staged once per block in exactly the order the
// mma fragments take the codes.
//
// Lane (gid, q) of a warp takes word q (codes 8q..8q+7) of every group of rows gid and gid + 8 of
// its 16-row tile: 4-byte loads, a warp's load covering 16 bytes of each of 8 rows. (Storing the
// experts word-major per 4 groups, for 16-byte loads, was measured: 2.5% faster decode, 12% slower
// prefill, so the file order stays.) The kernels are bound by memory latency more than by
// bandwidth at this size (a block lives for a few DRAM round trips): each warp keeps the next run
// of 4 groups in flight while it works on the current one (measured better than issuing all of a
// warp's loads at once with fewer warps per SM), and the w2 kernel issues its first weight loads
// before it waits for the w1/w3 kernel. Numerics: the tensor-core tolerance of the prefill path (activations
// rounded to f16, f32 accumulation).
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/launch.cuh"
#include "backend/cuda/kernels/gemv_core.cuh"
#include "backend/cuda/kernels/moe_common.cuh"
#include "backend/cuda/kernels/moe_mma_core.cuh"

namespace moeq::cuda {
namespace {

constexpr int kThreads = 256;  // 8 warps

// The scales of rows [row0, row0 + R) (R a multiple of 16) of N weights, as floats laid out so
// that a lane reads the scales of all its rows for one scale index in one load: with tiles
// t = m * R/16 + r/16 (NT = N * R/16 of them), ss[(c*8 + gid) * 2NT + 2t + h] = scale c of row
// 16t + 8h + gid of the block (rows past the end: the last row's). The global loads (16 bytes,
// when the rows are whole and aligned, at most kScaleChunks per thread) all go out before the
// first store.
constexpr int kScaleChunks = 1;
template <int N>
__device__ void stage_scales(const DevWeight (&w)[N], int64_t row0, int R, float* ss) {
  const int64_t S = w[0].cols / w[0].group, n8 = R * S / 8;
  const int NT = N * R / 16;
  auto put = [&](int m, int64_t r, int64_t c, float v) {
    const int64_t t = m * (R / 16) + r / 16, rr = r % 16;
    ss[(c * 8 + rr % 8) * 2 * NT + 2 * t + rr / 8] = v;
  };
  bool wide = row0 + R <= w[0].rows && (R * S) % 8 == 0 && n8 <= kScaleChunks * int64_t(blockDim.x);
  const uint4* src[N];
#pragma unroll
  for (int m = 0; m < N; ++m) {
    src[m] = reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(w[m].scales) + row0 * S);
    wide = wide && reinterpret_cast<uintptr_t>(src[m]) % 16 == 0;
  }
  if (wide) {
    uint4 v[N][kScaleChunks];
#pragma unroll
    for (int m = 0; m < N; ++m)
#pragma unroll
      for (int c = 0; c < kScaleChunks; ++c) {
        const int64_t i = threadIdx.x + c * int64_t(blockDim.x);
        if (i < n8) v[m][c] = ld_stream(src[m] + i);
      }
#pragma unroll
    for (int m = 0; m < N; ++m)
#pragma unroll
      for (int c = 0; c < kScaleChunks; ++c) {
        const int64_t i = threadIdx.x + c * int64_t(blockDim.x);
        if (i >= n8) continue;
        const uint32_t u[4] = {v[m][c].x, v[m][c].y, v[m][c].z, v[m][c].w};
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&u[k]));
          const int64_t el = 8 * i + 2 * k;  // element of the R x S block
          put(m, el / S, el % S, f.x);
          put(m, (el + 1) / S, (el + 1) % S, f.y);
        }
      }
    return;
  }
#pragma unroll
  for (int m = 0; m < N; ++m) {
    const uint16_t* sc = static_cast<const uint16_t*>(w[m].scales);
    for (int64_t i = threadIdx.x; i < R * S; i += blockDim.x)
      put(m, i / S, i % S, f16_bits(ld_stream(sc + min(row0 + i / S, w[m].rows - 1) * S + i % S)));
  }
}

// Word q of groups [4 run, 4 run + 4) of N rows (4-byte loads); p[i] points at word q of row i;
// zero for groups past g_end.
template <int N>
__device__ __forceinline__ void load_run(uint32_t (&u)[N][4], const uint32_t* const (&p)[N], int64_t run,
                                         int64_t g_end) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    const int64_t g = 4 * run + j;
#pragma unroll
    for (int i = 0; i < N; ++i) u[i][j] = g < g_end ? ld_stream(p[i] + 4 * g) : 0u;
  }
}

__device__ __forceinline__ const uint32_t* row_word(const DevWeight& w, int64_t r, int q) {
  return reinterpret_cast<const uint32_t*>(w.q + r * w.row_bytes) + q;
}

int scale_shift(const DevWeight& w) { return w.group == 128 ? 2 : 0; }  // group index -> scale index

// Shared memory of a block: staged activations, D_g, and the scales of 32 rows.
size_t staged_bytes(int64_t cols, int64_t scales_per_row) {
  const size_t groups = size_t(cols / 32);  // D_g padded to 16 bytes: the scales are read as float4
  return groups * sizeof(uint4) * 4 + (groups + 3) / 4 * 4 * sizeof(float) + sizeof(float) * size_t(32 * scales_per_row);
}

// grid (ceil(inter / 16), pairs), 8 warps. The block computes rows [16 bx, 16 bx + 16) of W1_e and
// W3_e for one (token, choice) pair, each warp over an eighth of the runs of 4 groups; then
// a[pair][row] = silu(W1_e[row] . x) * (W3_e[row] . x).
__global__ void __launch_bounds__(kThreads, 3) w13_mma_kernel(MoeWeights m, const float* x, const int32_t* ids, int K,
                                                              int sshift, float* a) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ float red[kThreads / 32][2][16];
  const int64_t groups = m.hidden / 32, runs = (groups + 3) / 4;
  uint4* xs = reinterpret_cast<uint4*>(smem);
  float* dg = reinterpret_cast<float*>(xs + groups * 4);
  float* ss = dg + (groups + 3) / 4 * 4;  // per scale index and gid: W1 rows gid, gid + 8, W3 rows gid, gid + 8
  pdl_wait();
  // After the wait, not before: w2_mma_kernel reads the router's choices before its own wait,
  // which is safe only if it cannot start before every block of this grid has seen them.
  pdl_launch_dependents();
  const int64_t pair = blockIdx.y;
  const int e = ids[pair];
  const DevWeight w1 = expert_view(m.w1, e), w3 = expert_view(m.w3, e);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, q = lane & 3;
  const int64_t row0 = int64_t(blockIdx.x) * 16;
  const int64_t rt = min(row0 + gid, m.inter - 1), rb = min(row0 + gid + 8, m.inter - 1);
  const int64_t per = (runs + 7) / 8, run0 = warp * per, run1 = min(runs, run0 + per);
  const int64_t g_end = min(groups, 4 * run1);
  const uint32_t* const p[4] = {row_word(w1, rt, q), row_word(w1, rb, q), row_word(w3, rt, q), row_word(w3, rb, q)};
  uint32_t u[4][4];
  load_run(u, p, run0, g_end);  // in flight while the activations and scales are staged
  stage_activations(x + (pair / K) * m.hidden, m.hidden, xs, dg,
                    [&] { stage_scales<2>({w1, w3}, row0, 16, ss); });
  __syncthreads();
  float acc[4] = {};  // W1 rows gid, gid + 8; W3 rows gid, gid + 8
  for (int64_t run = run0; run < run1; ++run) {
    uint32_t next[4][4];
    load_run(next, p, run + 1, g_end);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t g = 4 * run + j;
      if (g >= g_end) continue;  // the same for the whole warp
      const uint4 xb = xs[g * 4 + q];
      const float d = dg[g];
      const float4 sc = *reinterpret_cast<const float4*>(ss + ((g >> sshift) * 8 + gid) * 4);
      float top, bot;
      group_mma(u[0][j], u[1][j], xb, d, top, bot);
      acc[0] = fmaf(sc.x, top, acc[0]);
      acc[1] = fmaf(sc.y, bot, acc[1]);
      group_mma(u[2][j], u[3][j], xb, d, top, bot);
      acc[2] = fmaf(sc.z, top, acc[2]);
      acc[3] = fmaf(sc.w, bot, acc[3]);
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) u[i][j] = next[i][j];
  }
  if (q == 0) {
    red[warp][0][gid] = acc[0], red[warp][0][gid + 8] = acc[1];
    red[warp][1][gid] = acc[2], red[warp][1][gid + 8] = acc[3];
  }
  __syncthreads();
  if (threadIdx.x < 16) {
    float gs = 0, us = 0;
#pragma unroll
    for (int w = 0; w < kThreads / 32; ++w) gs += red[w][0][threadIdx.x], us += red[w][1][threadIdx.x];
    const int64_t r = row0 + threadIdx.x;
    if (r < m.inter) a[pair * m.inter + r] = silu(gs) * us;
  }
}

// grid (ceil(hidden / 32), pairs), 8 warps: two 16-row tiles times four quarters of the runs.
// y[pair][row] = W2_e[row] . a[pair], then the fused weighted sum over the token's K choices.
__global__ void __launch_bounds__(kThreads) w2_mma_kernel(MoeWeights m, const float* a, const int32_t* ids,
                                                          const float* wts, int K, int sshift, float* y,
                                                          int32_t* tickets, float* out, bool accumulate) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ float red[4][kMoeW2BlockRows];
  const int64_t groups = m.inter / 32, runs = (groups + 3) / 4;
  uint4* xs = reinterpret_cast<uint4*>(smem);
  float* dg = reinterpret_cast<float*>(xs + groups * 4);
  float* ss = dg + (groups + 3) / 4 * 4;  // per scale index and gid: tile 0 rows gid, gid + 8, tile 1 rows gid, gid + 8
  pdl_launch_dependents();
  // Before the wait for the w1/w3 kernel (which triggers this launch only after its own wait, so
  // the router's choices are complete and visible): the expert's weights and scales, the bulk of
  // this kernel's reads, go out while the w1/w3 kernel's last blocks finish.
  const int64_t pair = blockIdx.y;
  const DevWeight w2 = expert_view(m.w2, ids[pair]);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gid = lane >> 2, q = lane & 3;
  const int tile = warp & 1, quarter = warp >> 1;
  const int64_t row0 = int64_t(blockIdx.x) * kMoeW2BlockRows, trow = tile * 16;
  const int64_t rt = min(row0 + trow + gid, m.hidden - 1), rb = min(row0 + trow + gid + 8, m.hidden - 1);
  const int64_t per = (runs + 3) / 4, run0 = quarter * per, run1 = min(runs, run0 + per);
  const int64_t g_end = min(groups, 4 * run1);
  const uint32_t* const p[2] = {row_word(w2, rt, q), row_word(w2, rb, q)};
  uint32_t u[2][4];
  load_run(u, p, run0, g_end);
  stage_scales<1>({w2}, row0, kMoeW2BlockRows, ss);
  pdl_wait();
  stage_activations(a + pair * m.inter, m.inter, xs, dg, [] {});
  __syncthreads();
  float acc[2] = {};
  for (int64_t run = run0; run < run1; ++run) {
    uint32_t next[2][4];
    load_run(next, p, run + 1, g_end);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t g = 4 * run + j;
      if (g >= g_end) continue;
      const float2 sc = *reinterpret_cast<const float2*>(ss + ((g >> sshift) * 8 + gid) * 4 + 2 * tile);
      float top, bot;
      group_mma(u[0][j], u[1][j], xs[g * 4 + q], dg[g], top, bot);
      acc[0] = fmaf(sc.x, top, acc[0]);
      acc[1] = fmaf(sc.y, bot, acc[1]);
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) u[i][j] = next[i][j];
  }
  if (q == 0) red[quarter][trow + gid] = acc[0], red[quarter][trow + gid + 8] = acc[1];
  __syncthreads();
  if (threadIdx.x < kMoeW2BlockRows) {
    const float sum = red[0][threadIdx.x] + red[1][threadIdx.x] + red[2][threadIdx.x] + red[3][threadIdx.x];
    const int64_t r = row0 + threadIdx.x;
    if (r < m.hidden) y[pair * m.hidden + r] = sum;
  }
  moe_combine_rows(pair, K, row0, kMoeW2BlockRows, m.hidden, wts, y, tickets, out, accumulate);
}

template <typename Kernel>
void allow_smem(Kernel k, size_t bytes) {
  if (bytes > 48 * 1024)
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
}

}  // namespace

bool moe_mma_decode_supported(const DevWeight& w) {
  // Rows stored contiguously (row_word, stage_scales): W2 by panels takes the generic kernels.
  return !w.panels && w.fmt == Fmt::INT && w.bits == 4 && (w.group == 32 || w.group == 128) && w.cols % w.group == 0 &&
         staged_bytes(w.cols, w.cols / w.group) <= 160 * 1024;  // staged data fits shared memory
}

void moe_w13_decode_mma(const MoeWeights& m, const float* x, const int32_t* ids, int64_t pairs, int K, float* a,
                        cudaStream_t s) {
  const size_t smem = staged_bytes(m.hidden, m.hidden / m.w1.group);
  allow_smem(w13_mma_kernel, smem);
  launch(w13_mma_kernel, dim3(unsigned((m.inter + 15) / 16), unsigned(pairs)), dim3(kThreads), smem, s, m, x, ids, K,
         scale_shift(m.w1), a);
}

void moe_w2_decode_mma(const MoeWeights& m, const float* a, const int32_t* ids, const float* wts, int64_t pairs, int K,
                       float* y, int32_t* tickets, float* out, bool accumulate, cudaStream_t s) {
  const size_t smem = staged_bytes(m.inter, m.inter / m.w2.group);
  allow_smem(w2_mma_kernel, smem);
  launch(w2_mma_kernel, dim3(unsigned(moe_decode_row_blocks(m.hidden)), unsigned(pairs)), dim3(kThreads), smem, s, m,
         a, ids, wts, K, scale_shift(m.w2), y, tickets, out, accumulate);
}

}  // namespace moeq::cuda
