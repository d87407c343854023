// MoE decode for 4-bit integer experts, streamed: the tensor-core arithmetic of moe_decode_mma.cu
// (moe_mma_core.cuh), with the weights brought into shared memory by the copy engine (TMA bulk
// copies) in one persistent launch, and W2 stored by column panels (DevWeight::panels).
//
// Why: the register-loading kernels are bound by memory latency, not bandwidth (docs/PERF.md):
// each of their ~800 blocks lives for a few DRAM round trips, each grid runs in two waves, a
// block's bytes in flight are limited by its registers, and w2 waits for w1/w3 to drain.
//
// The work is cut into units: a unit is (pair, panel c) of a (token, choice) pair: rows
// [32c, 32c + 32) of W1_e and W3_e (two tiles of 16 rows of each), which give the 32 a values
// a[32c, 32c + 32) = silu(W1 x) * (W3 x), then W2_e's panel c (those 32 inputs of every output
// row, contiguous in the panel layout; in chunks of up to a stage's bytes), which turns them into
// that unit's share of y. One block per multiprocessor walks a contiguous range of units; it
// computes each unit's a values itself and adds w_k * (W2 panel . a) into its own partial row of
// y in shared memory, so that no block waits for another. moe_panel_sum_kernel then adds up the
// blocks' partial rows (in order of block: deterministic) into the output.
//
// Until the twelfth session W2 was stored by rows and this kernel ran two phases, w1/w3 tiles then
// w2 row tiles, with a grid-wide barrier between them (w2 needs every a value), the w2 bytes asked
// for only once the w1/w3 tiles had left the ring, and a weighted sum of K rows of y after it. On
// an H100 the decode step went from 2.889 ms (the old kernel, earlier calls) to 2.711-2.749 ms
// with the panels (docs/PERF.md).
//
// Warps: a producer keeps the next S - 1 tiles' rows and scales in flight as bulk copies into a
// ring of S shared-memory stages (mbarriers "full" and "empty" per stage); it needs only the
// router's choices. Eight consumer warps take each full stage apart with ldmatrix (staged w1/w3
// rows padded so that the eight rows of a matrix fall in different banks; a panel's rows are 16
// bytes apart, which is conflict-free as it is) and run the group mma. The warps' partial sums of
// a unit's two w1/w3 tiles meet in shared memory (one barrier of the consumer warps a unit); each
// warp then forms the unit's 32 a values and stages them in registers. Every thread that reads a
// stage arrives on its "empty" barrier itself: compute-sanitizer's racecheck does not take one
// lane's arrival after a __syncwarp as ordering the other lanes' reads.
//
// Every lane ends a group's two mma with the products of all the tile's rows: the staged
// activations make the 8 columns of B equal, so every column of C holds the dot products. Lane
// (gid, q) keeps row set q (A rows gid, gid + 8, B rows gid, gid + 8) and applies that row's scale.
#include <algorithm>
#include <cstdio>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device.h"
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/launch.cuh"
#include "backend/cuda/kernels/moe_common.cuh"
#include "backend/cuda/kernels/moe_mma_core.cuh"
#include "backend/cuda/kernels/tma.cuh"

namespace moeq::cuda {
namespace {

constexpr int kConsumerWarps = 8, kConsumers = 32 * kConsumerWarps;
constexpr int kBlockThreads = 32 * (kConsumerWarps + 1);  // the consumer warps, then the producer
constexpr int kMaxStages = 6;
constexpr int64_t kSmemBudget = 220 * 1024;

constexpr int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

// The w1/w3 tiles' geometry: a tile (a stage) is 16 rows of W1 and 16 of W3 (16 rows of a).
struct MatGeom {
  int64_t cols = 0, groups = 0, row_bytes = 0, pitch = 0;  // pitch: a staged row's stride in bytes
  int64_t spr = 0, scale_bytes = 0;                        // scales per row; one 16-row scale block
  int64_t stage_bytes = 0;                                 // a tile's 32 rows and their scales
  int64_t act_bytes = 0;                                   // one staged activation vector
  int per_warp = 0, sshift = 0;                            // groups per consumer warp; scale shift
  bool vec_scales = false;                                 // 4 scales of a row per 8-byte load
};

MatGeom mat_geom(const DevWeight& w) {
  MatGeom g;
  g.cols = w.cols;
  g.groups = w.cols / 32;
  g.row_bytes = w.row_bytes;
  g.pitch = w.row_bytes % 32 == 16 ? w.row_bytes : w.row_bytes + 16;  // (pitch / 4) % 8 == 4
  g.spr = w.cols / w.group;
  g.scale_bytes = round_up(16 * g.spr * 2, 16);
  g.stage_bytes = 32 * g.pitch + 2 * g.scale_bytes;
  g.act_bytes = g.groups * 64 + round_up(g.groups * 4, 16);
  g.per_warp = int(round_up((g.groups + kConsumerWarps - 1) / kConsumerWarps, 4));
  g.sshift = w.group == 128 ? 2 : 0;
  g.vec_scales = g.sshift == 0 && g.spr % 4 == 0;
  return g;
}

__device__ __forceinline__ int64_t rows_in(const DevWeight& w, int64_t r0) {
  return max(int64_t(0), min(int64_t(16), w.rows - r0));
}

// The bytes the copies of one half bring (rows [rA, rA + 16) of A and [rB, rB + 16) of B, with scales).
__device__ __forceinline__ uint32_t half_tx(const MatGeom& g, const DevWeight& A, int64_t rA, const DevWeight& B,
                                            int64_t rB) {
  return uint32_t((rows_in(A, rA) + rows_in(B, rB)) * (g.row_bytes + g.spr * 2));
}

// Producer: the bulk copies of one half into `st` (rows [rA, rA + 16) of A and [rB, rB + 16) of B,
// each with its 16-row block of scales), counted on `bar` (whose expected bytes the caller set).
__device__ __forceinline__ void issue_half(const MatGeom& g, const DevWeight& A, int64_t rA, const DevWeight& B,
                                           int64_t rB, unsigned char* st, uint64_t* bar, int lane) {
  const int64_t nA = rows_in(A, rA), nB = rows_in(B, rB);
  if (g.pitch == g.row_bytes) {  // rows need no padding: one copy per 16-row block
    if (lane == 2 && nA) bulk_copy_g2s(st, A.q + rA * g.row_bytes, uint32_t(nA * g.row_bytes), bar);
    if (lane == 3 && nB) bulk_copy_g2s(st + 16 * g.pitch, B.q + rB * g.row_bytes, uint32_t(nB * g.row_bytes), bar);
  } else {
    const uint8_t* src = lane < 16 ? A.q + (rA + lane) * g.row_bytes : B.q + (rB + lane - 16) * g.row_bytes;
    if (lane % 16 < (lane < 16 ? nA : nB)) bulk_copy_g2s(st + lane * g.pitch, src, uint32_t(g.row_bytes), bar);
  }
  if (lane == 0 && nA)
    bulk_copy_g2s(st + 32 * g.pitch, static_cast<const uint16_t*>(A.scales) + rA * g.spr, uint32_t(nA * g.spr * 2),
                  bar);
  if (lane == 1 && nB)
    bulk_copy_g2s(st + 32 * g.pitch + g.scale_bytes, static_cast<const uint16_t*>(B.scales) + rB * g.spr,
                  uint32_t(nB * g.spr * 2), bar);
}

// Consumer warp: its groups of one staged tile against staged activations (xs, dg); returns the
// scaled sum for this lane's row of the tile (row j: A rows 0-15, B rows 16-31).
__device__ __forceinline__ float consume_tile(const MatGeom& g, const unsigned char* st, const uint4* xs,
                                              const float* dg, int warp, int lane, int j) {
  const int q = lane & 3;
  const int64_t g_lo = int64_t(warp) * g.per_warp, g_hi = min(g.groups, g_lo + g.per_warp);
  const unsigned char* lrow = st + lane * g.pitch;  // ldmatrix: lane l gives staged row l
  const __half* srow =
      reinterpret_cast<const __half*>(st + 32 * g.pitch + (j >= 16 ? g.scale_bytes : 0)) + (j % 16) * g.spr;
  float acc = 0;
  for (int64_t g4 = g_lo; g4 < g_hi; g4 += 4) {
    float sc[4];
    if (g.vec_scales) {
      const uint2 u = *reinterpret_cast<const uint2*>(srow + g4);
      const float2 lo = __half22float2(*reinterpret_cast<const __half2*>(&u.x));
      const float2 hi = __half22float2(*reinterpret_cast<const __half2*>(&u.y));
      sc[0] = lo.x, sc[1] = lo.y, sc[2] = hi.x, sc[3] = hi.y;
    } else {
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) sc[jj] = __half2float(srow[min(g4 + jj, g_hi - 1) >> g.sshift]);
    }
    // The four groups' fragments first, then their mma: ldmatrix and mma are volatile asm, kept in
    // program order, so loading each group just before its mma left a warp one group in flight.
    const int n = int(min(int64_t(4), g_hi - g4));  // the same for the whole warp
    uint32_t f[4][4];
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
      if (jj < n) ldmatrix_x4(lrow + (g4 + jj) * 16, f[jj][0], f[jj][1], f[jj][2], f[jj][3]);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      if (jj >= n) break;
      const int64_t gg = g4 + jj;
      const uint4 xb = xs[gg * 4 + q];
      const float d = dg[gg];
      float t0, t1, t2, t3;
      group_mma(f[jj][0], f[jj][1], xb, d, t0, t1);
      group_mma(f[jj][2], f[jj][3], xb, d, t2, t3);
      acc = fmaf(sc[jj], q == 0 ? t0 : q == 1 ? t1 : q == 2 ? t2 : t3, acc);
    }
  }
  return acc;
}

// A build with -DMOEQ_MOE_TIMELINE records, per block, when each step of the kernel is reached
// (globaltimer, ns) and prints a summary at exit: where the MoE's time goes (docs/PERF.md).
enum : int { kTlStart, kTlIds, kTlFirstIssue, kTlFirstFull, kTlFirstA, kTlLastIssue, kTlLastFull, kTlEnd, kTlEvents };
#ifdef MOEQ_MOE_TIMELINE
__device__ int64_t g_timeline[1024 * kTlEvents];
__device__ __forceinline__ void stamp(int ev) {
  int64_t t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  g_timeline[blockIdx.x * kTlEvents + ev] = t;
}
#else
__device__ __forceinline__ void stamp(int) {}
#endif

struct PanelGeom {
  MatGeom m13;                 // the w1/w3 tiles
  int64_t panels = 0;          // per expert: inter / 32
  int64_t units = 0;           // pairs * panels
  int64_t prow = 0, chunks = 0;  // rows of a W2 chunk (a multiple of 256, or all rows); chunks a panel
  int64_t red_off = 0, af_off = 0, xacts_off = 0, yacc_off = 0, stages_off = 0, stage_bytes = 0, smem = 0;
  int stages = 0, xacts = 0, grid = 0;
};

PanelGeom panel_geom(const MoeWeights& m, int64_t pairs, int K) {
  PanelGeom p;
  p.m13 = mat_geom(m.w1);
  p.panels = m.inter / 32;
  p.units = pairs * p.panels;
  // A chunk's rows (16 code bytes and a 2-byte scale each) fill about a w1/w3 stage: the whole
  // panel when it fits one (MiniMax-M2: 3072 rows, 55.3 KB against a 55.8 KB w1/w3 stage), else
  // chunks of a multiple of 256 rows, so that a consumer warp keeps the same rows of y in each.
  // (MOEQ_MOE_PANEL_WHOLE=0: always multiples of 256 rows, as first built: 2816 + 256 rows at
  // MiniMax-M2's shapes, a fourth ring step per unit that holds 4.6 KB.)
  static const bool whole_ok = env_knob("MOEQ_MOE_PANEL_WHOLE", 1, 0, 1) != 0;
  const int64_t fit = std::max<int64_t>(256, p.m13.stage_bytes / 18 / 256 * 256);
  const bool whole = whole_ok && m.hidden * 16 + round_up(m.hidden * 2, 16) <= p.m13.stage_bytes;
  p.prow = whole ? m.hidden : std::min(m.hidden, fit);
  p.chunks = (m.hidden + p.prow - 1) / p.prow;
  // As few blocks as give the same longest range of units (the spare multiprocessors take the
  // next kernel's blocks early).
  const int64_t per_block = (p.units + sm_count() - 1) / sm_count();
  p.grid = int(std::max<int64_t>(1, (p.units + per_block - 1) / per_block));
  p.xacts = int(std::min<int64_t>(pairs / K, per_block / (K * p.panels) + 2));
  p.red_off = 128;                                                  // [2 units][2 tiles][warps][32]
  p.af_off = p.red_off + 2 * 2 * kConsumerWarps * 32 * 4;           // [warps][32]
  p.xacts_off = round_up(p.af_off + kConsumerWarps * 32 * 4, 128);  // x, staged per token
  p.yacc_off = round_up(p.xacts_off + p.xacts * p.m13.act_bytes, 128);
  p.stages_off = round_up(p.yacc_off + m.hidden * 4, 128);
  p.stage_bytes = std::max(p.m13.stage_bytes, p.prow * 16 + round_up(p.prow * 2, 16));
  p.stages = int(std::min<int64_t>(kMaxStages, (kSmemBudget - p.stages_off) / p.stage_bytes));
  p.smem = p.stages_off + int64_t(p.stages) * p.stage_bytes;
  return p;
}

// part [grid + T - 1][hidden]: block b's partial row of token t at row b + t (a block's units
// cover consecutive tokens, so b + t is one row per (block, token)).
__global__ void __launch_bounds__(kBlockThreads, 1)
    moe_panel_kernel(MoeWeights m, PanelGeom pg, const float* x, const int32_t* ids, const float* wts, int K,
                     float* part) {
  extern __shared__ __align__(128) unsigned char smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem);
  uint64_t* empty = full + kMaxStages;
  unsigned char* stages = smem + pg.stages_off;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, S = pg.stages;
  const MatGeom& g13 = pg.m13;
  const int64_t P = pg.panels, tpu = 2 + pg.chunks, H = m.hidden;
  const int64_t ub = blockIdx.x * pg.units / gridDim.x, ue = (blockIdx.x + 1) * pg.units / gridDim.x;
  const int64_t n_all = (ue - ub) * tpu;
  if (threadIdx.x == 0) {
    for (int s = 0; s < S; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], kConsumers);
    mbar_init_fence();
  }
  __syncthreads();
  pdl_launch_dependents();  // the next kernel (the partial rows' sum) waits before reading
  pdl_wait();               // the router's choices and the MoE input
  if (threadIdx.x == 0) stamp(kTlStart);

  if (warp == kConsumerWarps) {  // the producer
    for (int64_t k = 0; k < n_all; ++k) {
      const int s = int(k % S);
      if (k >= S) mbar_wait(&empty[s], uint32_t(k / S - 1) & 1);
      unsigned char* st = stages + s * pg.stage_bytes;
      const int64_t u = ub + k / tpu, sub = k % tpu, c = u % P;
      const int e = ids[u / P];
      if (lane == 0 && k == 0 && e != -12345) stamp(kTlIds);  // the branch waits for the load
      if (lane == 0 && k == n_all - 1) stamp(kTlLastIssue);
      if (sub < 2) {
        const int64_t r = (2 * c + sub) * 16;
        const DevWeight w1 = expert_view(m.w1, e), w3 = expert_view(m.w3, e);
        if (lane == 0) mbar_arrive_expect_tx(&full[s], half_tx(g13, w1, r, w3, r));
        __syncwarp();
        issue_half(g13, w1, r, w3, r, st, &full[s], lane);
        if (lane == 0 && k == 0) stamp(kTlFirstIssue);
      } else {
        const int64_t r0 = (sub - 2) * pg.prow, n = min(pg.prow, H - r0);
        const DevWeight w2 = expert_view(m.w2, e);
        if (lane == 0) mbar_arrive_expect_tx(&full[s], uint32_t(n * 18));
        __syncwarp();
        if (lane == 0) bulk_copy_g2s(st, w2.q + packed_group_offset(w2, r0, c, 4), uint32_t(n * 16), &full[s]);
        if (lane == 1)
          bulk_copy_g2s(st + pg.prow * 16, static_cast<const uint16_t*>(w2.scales) + packed_scale_index(w2, r0, c),
                        uint32_t(n * 2), &full[s]);
      }
    }
    return;
  }

  // ---- the consumer warps ----
  const int tid = threadIdx.x, q = lane & 3;
  const int j = ((lane & 3) >> 1) * 16 + (lane & 1) * 8 + (lane >> 2);  // this lane's row of a tile
  float* red = reinterpret_cast<float*>(smem + pg.red_off);
  float* af = reinterpret_cast<float*>(smem + pg.af_off) + warp * 32;
  float* yacc = reinterpret_cast<float*>(smem + pg.yacc_off);
  unsigned char* xacts = smem + pg.xacts_off;
  const int64_t t0 = (ub / P) / K, t1 = ((ue - 1) / P) / K, row_blocks = H / 32;
  // This lane's rows of y: row j of every 32-row block b = warp (mod 8), in every chunk.
  for (int64_t b = warp; b < row_blocks; b += kConsumerWarps) yacc[b * 32 + j] = 0.0f;
  auto flush = [&](int64_t t) {
    float* dst = part + (blockIdx.x + t) * H;
    for (int64_t b = warp; b < row_blocks; b += kConsumerWarps) {
      dst[b * 32 + j] = yacc[b * 32 + j];
      yacc[b * 32 + j] = 0.0f;
    }
  };
  for (int64_t v = t0; v <= t1; ++v) {
    uint4* xs = reinterpret_cast<uint4*>(xacts + (v - t0) * g13.act_bytes);
    stage_activations(x + v * g13.cols, g13.cols, xs, reinterpret_cast<float*>(xs + g13.groups * 4), [] {}, tid,
                      kConsumers);
  }
  named_barrier(kConsumers);
  int64_t cur = t0;
  uint4 ab{};       // this unit's a values, staged (chunk q of its one group)
  float ad = 0, wt = 0;  // their D_g; the pair's routing weight
  for (int64_t k = 0; k < n_all; ++k) {
    const int s = int(k % S);
    const int64_t u = ub + k / tpu, sub = k % tpu, pair = u / P, t = pair / K;
    if (sub == 0) {
      wt = wts[pair];
      if (t != cur) flush(cur), cur = t;
    }
    mbar_wait(&full[s], uint32_t(k / S) & 1);
    if (tid == 0 && k == 0) stamp(kTlFirstFull);
    if (tid == 0 && k == n_all - 1) stamp(kTlLastFull);
    const unsigned char* st = stages + s * pg.stage_bytes;
    if (sub < 2) {
      const uint4* xs = reinterpret_cast<const uint4*>(xacts + (t - t0) * g13.act_bytes);
      const float acc =
          consume_tile(g13, st, xs, reinterpret_cast<const float*>(xs + g13.groups * 4), warp, lane, j);
      mbar_arrive(&empty[s]);  // this thread is done with the stage
      float* rd = red + ((k / tpu) % 2) * 2 * kConsumerWarps * 32;  // two units' sums in turn
      rd[(sub * kConsumerWarps + warp) * 32 + j] = acc;
      if (sub == 1) {
        named_barrier(kConsumers);  // every warp's sums of both tiles are in
        // a value `lane` of the unit: the sums over the warps of its W1 (gate) and W3 (up) rows.
        const float* rt = rd + (lane / 16) * kConsumerWarps * 32;
        float gs = 0, us = 0;
#pragma unroll
        for (int w = 0; w < kConsumerWarps; ++w) gs += rt[w * 32 + lane % 16], us += rt[w * 32 + 16 + lane % 16];
        af[lane] = silu(gs) * us;
        __syncwarp();
        const float4* a4 = reinterpret_cast<const float4*>(af);
        ad = stage_chunk(a4[2 * q], a4[2 * q + 1], &ab);
        ad += __shfl_xor_sync(0xffffffffu, ad, 1);
        ad += __shfl_xor_sync(0xffffffffu, ad, 2);
        __syncwarp();  // af is rewritten a unit later
        if (tid == 0 && k == 1) stamp(kTlFirstA);
      }
    } else {
      const int64_t r0 = (sub - 2) * pg.prow, n = min(pg.prow, H - r0);
      const __half* sc = reinterpret_cast<const __half*>(st + pg.prow * 16);
      // This warp's 32-row blocks b = warp (mod 8), four at a time: their fragments and scales
      // first, then the mma, then the sums (volatile asm stays in program order: see consume_tile).
      for (int64_t b0 = warp; b0 < n / 32; b0 += 4 * kConsumerWarps) {
        const int nb = int(min(int64_t(4), (n / 32 - b0 + kConsumerWarps - 1) / kConsumerWarps));
        uint32_t f[4][4];
        float scl[4], v[4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (i < nb) {
            const int64_t b = b0 + i * kConsumerWarps;
            ldmatrix_x4(st + (b * 32 + lane) * 16, f[i][0], f[i][1], f[i][2], f[i][3]);
            scl[i] = __half2float(sc[b * 32 + j]);
          }
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (i < nb) {
            float v0, v1, v2, v3;
            group_mma(f[i][0], f[i][1], ab, ad, v0, v1);
            group_mma(f[i][2], f[i][3], ab, ad, v2, v3);
            v[i] = q == 0 ? v0 : q == 1 ? v1 : q == 2 ? v2 : v3;
          }
#pragma unroll
        for (int i = 0; i < 4; ++i)
          if (i < nb) yacc[r0 + (b0 + i * kConsumerWarps) * 32 + j] += wt * (scl[i] * v[i]);
      }
      mbar_arrive(&empty[s]);
    }
  }
  flush(cur);
  if (tid == 0) stamp(kTlEnd);
}

// out[t] (+)= the sum of the partial rows of the blocks whose units hold token t's pairs, in a
// fixed order (deterministic). Each block takes 32 float4 columns; its warps take every 16th
// partial row, 8 at once (the 128 partial rows of one token on an H100 in one round of loads), and
// meet in shared memory; warp 0 loads out's row with them, so that the kernel waits for L2 once.
// (Measured, not kept: 8 warps of two rows a load, whose blocks fit beside a streaming block so
// that all of them are resident early: no faster, docs/PERF.md.)
constexpr int kSumWarps = 16, kSumLoads = 8;
__global__ void __launch_bounds__(32 * kSumWarps, 1)
    moe_panel_sum_kernel(const float* part, int64_t units, int grid, int64_t units_per_token, int64_t D, float* out,
                         bool accumulate) {
  __shared__ float4 red[kSumWarps][32];
  pdl_launch_dependents();
  pdl_wait();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = blockIdx.y, n4 = D / 4, col = min(int64_t(blockIdx.x) * 32 + lane, n4 - 1);
  const int64_t s = t * units_per_token, e = s + units_per_token;
  // Block b holds units [b U / G, (b + 1) U / G): the first block past s, the last before e.
  const int64_t b_lo = ((s + 1) * grid + units - 1) / units - 1, b_hi = min(int64_t(grid) - 1, (e * grid - 1) / units);
  float4* o = reinterpret_cast<float4*>(out + t * D) + col;
  const float4 h = warp == 0 && accumulate ? *o : make_float4(0, 0, 0, 0);
  const float4* p4 = reinterpret_cast<const float4*>(part) + col;
  float4 acc = make_float4(0, 0, 0, 0);
  for (int64_t b = b_lo + warp; b <= b_hi; b += kSumLoads * kSumWarps) {
    float4 v[kSumLoads];
#pragma unroll
    for (int i = 0; i < kSumLoads; ++i)
      if (b + i * kSumWarps <= b_hi) v[i] = __ldcg(p4 + (b + i * kSumWarps + t) * n4);
#pragma unroll
    for (int i = 0; i < kSumLoads; ++i)
      if (b + i * kSumWarps <= b_hi) acc.x += v[i].x, acc.y += v[i].y, acc.z += v[i].z, acc.w += v[i].w;
  }
  red[warp][lane] = acc;
  __syncthreads();
  if (warp != 0 || int64_t(blockIdx.x) * 32 + lane >= n4) return;
  float4 sum = red[0][lane];
  for (int w = 1; w < kSumWarps; ++w) {
    const float4 r = red[w][lane];
    sum.x += r.x, sum.y += r.y, sum.z += r.z, sum.w += r.w;
  }
  *o = make_float4(h.x + sum.x, h.y + sum.y, h.z + sum.z, h.w + sum.w);
}

bool format_ok(const DevWeight& w) {
  return w.fmt == Fmt::INT && w.bits == 4 && (w.group == 32 || w.group == 128) && w.cols % w.group == 0 &&
         w.rows % 16 == 0 && w.row_bytes % 16 == 0;
}

#ifdef MOEQ_MOE_TIMELINE
// Every 7th launch after the first 100 (layers in turn: 7 does not divide 33), the stamps are read
// back (the stream is synchronised after the launch, so the kernel itself runs as in the step)
// and each event's min / median / max over the blocks, from the earliest start, is summed.
struct Timeline {
  int64_t launches = 0, samples = 0;
  int grid = 0;
  double sum_min[kTlEvents] = {}, sum_med[kTlEvents] = {}, sum_max[kTlEvents] = {};
  ~Timeline() {
    if (!samples) return;
    static const char* names[kTlEvents] = {"start (after wait)", "producer: 1st expert id", "producer: 1st tile issued",
                                           "first stage full", "first a staged", "producer: last tile issued",
                                           "last stage full, seen", "end"};
    std::fprintf(stderr, "moe_stream timeline: %lld launches sampled, %d blocks; us from the earliest start\n",
                 (long long)samples, grid);
    std::fprintf(stderr, "  %-28s %8s %8s %8s\n", "event", "min", "median", "max");
    for (int e = 0; e < kTlEvents; ++e)
      std::fprintf(stderr, "  %-28s %8.2f %8.2f %8.2f\n", names[e], sum_min[e] / samples * 1e-3,
                   sum_med[e] / samples * 1e-3, sum_max[e] / samples * 1e-3);
  }
  void after_launch(int g, cudaStream_t s) {
    cudaStreamCaptureStatus cap{};
    CUDA_CHECK(cudaStreamIsCapturing(s, &cap));
    if (cap != cudaStreamCaptureStatusNone || ++launches < 100 || launches % 7 != 0) return;
    CUDA_CHECK(cudaStreamSynchronize(s));
    std::vector<int64_t> t(size_t(g) * kTlEvents);
    CUDA_CHECK(cudaMemcpyFromSymbol(t.data(), g_timeline, t.size() * sizeof(int64_t)));
    int64_t t0 = INT64_MAX;
    for (int b = 0; b < g; ++b) t0 = std::min(t0, t[size_t(b) * kTlEvents]);
    for (int e = 0; e < kTlEvents; ++e) {
      std::vector<double> v;
      for (int b = 0; b < g; ++b) v.push_back(double(t[size_t(b) * kTlEvents + e] - t0));
      std::sort(v.begin(), v.end());
      sum_min[e] += v.front(), sum_med[e] += v[v.size() / 2], sum_max[e] += v.back();
    }
    ++samples;
    grid = g;
  }
};
Timeline timeline;
#endif

}  // namespace

bool moe_w2_panels_wanted(const DevWeight& w2) {
  static const bool on = env_knob("MOEQ_MOE_W2_PANELS", 1, 0, 1) != 0;
  return on && w2.fmt == Fmt::INT && w2.bits == 4 && (w2.group == 32 || w2.group == 128) && w2.rows % 32 == 0 &&
         w2.cols % 32 == 0;
}

bool moe_stream_decode_supported(const MoeWeights& m, int64_t pairs, int K) {
  const DevWeight& w2 = m.w2;
  // W2 is stored by panels only where moe_w2_panels_wanted took its format (4-bit codes, groups of
  // 32 or 128), so w2.panels stands for those checks.
  return format_ok(m.w1) && format_ok(m.w3) && m.w1.group == m.w3.group && w2.panels && w2.cols == m.inter &&
         w2.rows == m.hidden &&
         m.inter % 32 == 0 && m.hidden % 32 == 0 && K >= 1 && pairs % K == 0 && panel_geom(m, pairs, K).stages >= 2;
}

void moe_decode_stream(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t pairs, int K,
                       float* part, float* out, bool accumulate, cudaStream_t s) {
  if (pairs == 0) return;
  const PanelGeom pg = panel_geom(m, pairs, K);
  CUDA_CHECK(cudaFuncSetAttribute(moe_panel_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(pg.smem)));
  launch(moe_panel_kernel, dim3(unsigned(pg.grid)), dim3(kBlockThreads), size_t(pg.smem), s, m, pg, x, ids, wts, K,
         part);
#ifdef MOEQ_MOE_TIMELINE
  timeline.after_launch(pg.grid, s);
#endif
  const int64_t T = pairs / K;
  launch(moe_panel_sum_kernel, dim3(unsigned((m.hidden / 4 + 31) / 32), unsigned(T)), dim3(32 * kSumWarps), 0, s,
         static_cast<const float*>(part), pg.units, pg.grid, pg.units / T, m.hidden, out, accumulate);
}

}  // namespace moeq::cuda
