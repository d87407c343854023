// MoE decode for 4-bit integer experts, streamed: the same tensor-core arithmetic as
// moe_decode_mma.cu (moe_mma_core.cuh), but the weights reach the tensor cores through shared
// memory, brought there by the copy engine (TMA bulk copies), in one persistent launch that does
// w1/w3 + SwiGLU, then w2 + the weighted sum.
//
// Why: the register-loading kernels are bound by memory latency, not bandwidth (docs/PERF.md):
// each of their ~800 blocks lives for a few DRAM round trips, each grid runs in two waves, a
// block's bytes in flight are limited by its registers, and w2 waits for w1/w3 to drain. Here one
// block per multiprocessor walks a contiguous range of tiles (16 rows of W1_e and of W3_e, or 64
// rows of W2_e as two halves of 32, for one (token, choice) pair): first its w1/w3 tiles, then its
// w2 tiles. Both kinds of tile are about 50 KB, so both phases keep as many bytes in flight.
//
// Warps: a producer keeps the next S - 1 tiles' rows and scales in flight as bulk copies into a
// ring of S shared-memory stages (mbarriers "full" and "empty" per stage); it needs only the
// router's choices, so w2's weights start streaming while w1/w3 finishes. Eight consumer warps
// take each full stage apart with ldmatrix (staged rows padded so that the eight rows of a matrix
// fall in different banks), run the group mma, and hand their partial sums to an epilogue warp
// through a ring of slots (mbarriers again), so that no consumer waits for a store, a fence or an
// atomic. The epilogue warp writes a = silu(W1 x) * (W3 x), or y = W2 a; at the end, as the last
// of a token's K pairs for a row block (atomic ticket), the weighted sum over the K choices in
// order of k (deterministic), unless the caller leaves that sum to a later kernel (`combine` off:
// moe_combine.cu adds it in a short launch, which saves the last blocks a fence, an
// atomic and a load round trip). Between the phases the blocks meet once: w2 needs every a row, so
// each block waits until all w1/w3 tiles are done (a counter in global memory); the grid is at
// most one block per multiprocessor and launched cooperatively, so all blocks are resident and
// the wait is safe. Every thread that reads a stage or a slot arrives on its "empty" barrier
// itself: compute-sanitizer's racecheck does not take one lane's arrival after a __syncwarp as
// ordering the other lanes' reads, and with every reader arriving it reports no hazard.
//
// Measured on an H100 (docs/PERF.md): the MoE op 1.59 -> 1.45 ms per decode step against the
// register-loading kernels. Sixth session (stamps of a -DMOEQ_MOE_TIMELINE build): the w1/w3
// phase streams at about 2.5-2.9 TB/s once its first stage has arrived (5 us after the start);
// with 32-row w2 tiles the w2 phase had half the bytes in flight and ran at about half the rate.
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
constexpr int kProducerWarp = kConsumerWarps, kEpilogueWarp = kConsumerWarps + 1;
constexpr int kBlockThreads = 32 * (kConsumerWarps + 2);
constexpr int kMaxStages = 6, kRing = 4;
constexpr int64_t kSmemBudget = 220 * 1024;

// One matrix kind's tiles (w1/w3 or w2).
struct MatGeom {
  int64_t cols = 0, groups = 0, row_bytes = 0, pitch = 0;  // pitch: a staged row's stride in bytes
  int64_t spr = 0, scale_bytes = 0;                        // scales per row; one 16-row scale block
  int64_t half_bytes = 0, stage_bytes = 0;                 // one 32-row half; a whole tile
  int64_t act_bytes = 0;                                   // one staged activation vector
  int64_t n_rb = 0, tiles = 0;                             // row blocks; tiles = pairs * n_rb
  int per_warp = 0, sshift = 0;
  bool vec_scales = false;  // 4 scales of a row per 8-byte load
};

struct FusedGeom {
  MatGeom m13, m2;
  int64_t stage_bytes = 0, xacts_off = 0, aacts_off = 0, stages_off = 0, smem = 0;
  int stages = 0, xacts = 0, aacts = 0, grid = 0;
  bool split_halves = false;
};

constexpr int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
// The partial-sum ring: per slot and consumer warp 64 floats (a w2 tile's two halves; w1/w3 use 32).
constexpr int64_t kRedOff = 256, kRedBytes = int64_t(kRing) * kConsumerWarps * 64 * 4;

// A w2 tile's two halves are taken by the two halves of the consumer warps at once (each half's
// groups over 4 warps) rather than by every warp in turn: the last w2 tile's arithmetic is the
// kernel's tail once its bytes arrive, and it took 2.0 us that way (timeline stamps), 1.55 us
// split. Measured on an H100 (docs/PERF.md): 2.875-2.915 ms/step against 2.916-2.977.
// MOEQ_MOE_W2_SPLIT=0 takes both halves in every warp, for comparison.
bool split_halves() {
  static const bool on = env_knob("MOEQ_MOE_W2_SPLIT", 1, 0, 1) != 0;
  return on;
}

// A w1/w3 tile is one half: 16 rows of W1 and of W3 (16 rows of a). A w2 tile is two halves of 32
// rows of W2 each (64 rows of y): a stage then holds as many bytes as a w1/w3 one, so that the w2
// phase keeps as many bytes in flight per multiprocessor (with 32-row tiles it had half and moved
// its bytes at about half the rate).
// warps: the consumer warps that share one half's groups.
MatGeom mat_geom(const DevWeight& w, int64_t out_rows, int64_t rows_per_tile, int halves, int64_t pairs, int warps) {
  MatGeom g;
  g.cols = w.cols;
  g.groups = w.cols / 32;
  g.row_bytes = w.row_bytes;
  g.pitch = w.row_bytes % 32 == 16 ? w.row_bytes : w.row_bytes + 16;  // (pitch / 4) % 8 == 4
  g.spr = w.cols / w.group;
  g.scale_bytes = round_up(16 * g.spr * 2, 16);
  g.half_bytes = 32 * g.pitch + 2 * g.scale_bytes;
  g.stage_bytes = halves * g.half_bytes;
  g.act_bytes = g.groups * 64 + round_up(g.groups * 4, 16);
  g.n_rb = (out_rows + rows_per_tile - 1) / rows_per_tile;
  g.tiles = pairs * g.n_rb;
  g.per_warp = int(round_up((g.groups + warps - 1) / warps, 4));
  g.sshift = w.group == 128 ? 2 : 0;
  g.vec_scales = g.sshift == 0 && g.spr % 4 == 0;
  return g;
}

// Activation vectors a contiguous range of at most ceil(tiles / grid) tiles can touch.
int span(const MatGeom& g, int64_t pairs_per_act, int64_t vectors, int grid) {
  const int64_t per_block = (g.tiles + grid - 1) / grid;
  return int(std::min<int64_t>(vectors, per_block / (g.n_rb * pairs_per_act) + 2));
}

FusedGeom fused_geom(const MoeWeights& m, int64_t pairs, int K) {
  FusedGeom f;
  f.split_halves = split_halves();
  // A w1/w3 tile's one half over all 8 consumer warps; a w2 tile's halves over 4 warps each when
  // split, else each over all 8 in turn.
  f.m13 = mat_geom(m.w1, m.inter, 16, 1, pairs, kConsumerWarps);
  f.m2 = mat_geom(m.w2, m.hidden, 64, 2, pairs, f.split_halves ? kConsumerWarps / 2 : kConsumerWarps);
  // Every block gets tiles of both phases (each block passes the phase barrier once).
  f.grid = int(std::max<int64_t>(1, std::min<int64_t>(sm_count(), std::min(f.m13.tiles, f.m2.tiles))));
  f.xacts = span(f.m13, K, pairs / K, f.grid);
  f.aacts = span(f.m2, 1, pairs, f.grid);
  f.stage_bytes = std::max(f.m13.stage_bytes, f.m2.stage_bytes);
  f.xacts_off = kRedOff + kRedBytes;
  f.aacts_off = round_up(f.xacts_off + f.xacts * f.m13.act_bytes, 128);
  f.stages_off = round_up(f.aacts_off + f.aacts * f.m2.act_bytes, 128);
  f.stages = int(std::min<int64_t>(kMaxStages, (kSmemBudget - f.stages_off) / f.stage_bytes));
  f.smem = f.stages_off + int64_t(f.stages) * f.stage_bytes;
  return f;
}

__device__ __forceinline__ int64_t rows_in(const DevWeight& w, int64_t r0) {
  return max(int64_t(0), min(int64_t(16), w.rows - r0));
}

__device__ __forceinline__ int ld_acquire(const int32_t* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// The bytes the copies of one half bring (rows [rA, rA + 16) of A and [rB, rB + 16) of B, with scales).
__device__ __forceinline__ uint32_t half_tx(const MatGeom& g, const DevWeight& A, int64_t rA, const DevWeight& B,
                                            int64_t rB) {
  return uint32_t((rows_in(A, rA) + rows_in(B, rB)) * (g.row_bytes + g.spr * 2));
}

__device__ __forceinline__ void stamp(int ev);  // the timeline's (below)

// Producer: the bulk copies of one half into `st` (rows [rA, rA + 16) of A and [rB, rB + 16) of B,
// each with its 16-row block of scales), counted on `bar` (whose expected bytes the caller set).
// ev >= 0: lane 0 stamps that timeline event between the rows' and the scales' copies.
__device__ __forceinline__ void issue_half(const MatGeom& g, const DevWeight& A, int64_t rA, const DevWeight& B,
                                           int64_t rB, unsigned char* st, uint64_t* bar, int lane, int ev = -1) {
  const int64_t nA = rows_in(A, rA), nB = rows_in(B, rB);
  if (g.pitch == g.row_bytes) {  // rows need no padding: one copy per 16-row block
    if (lane == 2 && nA) bulk_copy_g2s(st, A.q + rA * g.row_bytes, uint32_t(nA * g.row_bytes), bar);
    if (lane == 3 && nB) bulk_copy_g2s(st + 16 * g.pitch, B.q + rB * g.row_bytes, uint32_t(nB * g.row_bytes), bar);
  } else {
    const uint8_t* src = lane < 16 ? A.q + (rA + lane) * g.row_bytes : B.q + (rB + lane - 16) * g.row_bytes;
    if (lane % 16 < (lane < 16 ? nA : nB)) bulk_copy_g2s(st + lane * g.pitch, src, uint32_t(g.row_bytes), bar);
  }
  if (ev >= 0 && lane == 0) stamp(ev);
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
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int64_t gg = g4 + jj;
      if (gg >= g_hi) break;  // the same for the whole warp
      uint32_t a_top, a_bot, b_top, b_bot;
      ldmatrix_x4(lrow + gg * 16, a_top, a_bot, b_top, b_bot);
      const uint4 xb = xs[gg * 4 + q];
      const float d = dg[gg];
      float t0, t1, t2, t3;
      group_mma(a_top, a_bot, xb, d, t0, t1);
      group_mma(b_top, b_bot, xb, d, t2, t3);
      acc = fmaf(sc[jj], q == 0 ? t0 : q == 1 ? t1 : q == 2 ? t2 : t3, acc);
    }
  }
  return acc;
}

// A build with -DMOEQ_MOE_TIMELINE records, per block, when each phase of the kernel is reached
// (globaltimer, ns) and prints a summary at exit: where the MoE's time goes (docs/PERF.md).
enum : int { kTlStart, kTlIds, kTlFirstIssue, kTlFirstFull, kTlW13Done, kTlBarrier, kTlStaged, kTlW2Done, kTlEnd,
             kTlLastIssue, kTlProducer, kTlExpect, kTlRows, kTlW2Full, kTlW2LastFull, kTlEvents };
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

// a [pairs][inter] and y [pairs][hidden] are scratch; sync = 2 zeroed counters (left zeroed).
// combine: the weighted sums over the K choices into `out` at the end (tickets); without it the
// kernel leaves y and a later kernel sums (moe_combine_add).
__global__ void __launch_bounds__(kBlockThreads, 1)
    moe_stream_kernel(MoeWeights m, FusedGeom fg, const float* x, const int32_t* ids, const float* wts, int K,
                      float* a, float* y, int32_t* tickets, int32_t* sync, float* out, bool accumulate,
                      bool combine) {
  extern __shared__ __align__(128) unsigned char smem[];
  uint64_t* full = reinterpret_cast<uint64_t*>(smem);
  uint64_t* empty = full + kMaxStages;
  uint64_t* red_full = empty + kMaxStages;
  uint64_t* red_empty = red_full + kRing;
  float* red = reinterpret_cast<float*>(smem + kRedOff);  // [kRing][warps][64]
  unsigned char* stages = smem + fg.stages_off;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int S = fg.stages;
  const MatGeom &g13 = fg.m13, &g2 = fg.m2;
  const int64_t b13 = blockIdx.x * g13.tiles / gridDim.x, e13 = (blockIdx.x + 1) * g13.tiles / gridDim.x;
  const int64_t b2 = blockIdx.x * g2.tiles / gridDim.x, e2 = (blockIdx.x + 1) * g2.tiles / gridDim.x;
  const int64_t n13 = e13 - b13, n2 = e2 - b2, n_all = n13 + n2;
  uint32_t* s_mask = reinterpret_cast<uint32_t*>(red_empty + kRing);
  // The weighted sums of the w2 tiles [base, base + 32) of this block whose tickets came last
  // (*s_mask, posted by the epilogue warp), dealt over the consumer warps and the epilogue warp
  // (`me`): a tile's 32 rows, a lane each.
  auto finish_sums = [&](int64_t base, int me) {
    named_barrier(kConsumers + 32, 2);
    uint32_t mask = *s_mask;
    if (mask) __threadfence();
    for (int n = 0; mask; ++n) {
      const int l = __ffs(mask) - 1;
      mask &= mask - 1;
      if (n % (kConsumerWarps + 1) != me) continue;
      const int64_t i = b2 + base + l, pair = i / g2.n_rb, t = pair / K, r0 = (i % g2.n_rb) * 64 + lane;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t r = r0 + 32 * h;
        if (r < m.hidden) {
          const float sum = moe_weighted_row(wts, y, t, K, m.hidden, r);
          float* o = out + t * m.hidden + r;
          *o = accumulate ? *o + sum : sum;
        }
      }
    }
    named_barrier(kConsumers + 32, 2);  // *s_mask may be rewritten
  };
  if (threadIdx.x == 0) {
    // Every thread that read a buffer arrives on its "empty" barrier (not one lane after a
    // __syncwarp), so that each read is ordered before the refill by the barrier itself.
    for (int s = 0; s < S; ++s) mbar_init(&full[s], 1), mbar_init(&empty[s], kConsumers);
    for (int r = 0; r < kRing; ++r) mbar_init(&red_full[r], kConsumers), mbar_init(&red_empty[r], 32);
    mbar_init_fence();
  }
  __syncthreads();
  pdl_launch_dependents();  // the next kernel (the next layer's norm) waits before reading
  pdl_wait();               // the router's choices and the MoE input
  if (threadIdx.x == 0) stamp(kTlStart);

  if (warp == kProducerWarp) {
    if (lane == 0) stamp(kTlProducer);
    for (int64_t k = 0; k < n_all; ++k) {
      if (lane == 0 && k == n_all - 1) stamp(kTlLastIssue);
      const int s = int(k % S);
      if (k >= S) mbar_wait(&empty[s], uint32_t(k / S - 1) & 1);
      unsigned char* st = stages + s * fg.stage_bytes;
      if (k < n13) {
        const int64_t i = b13 + k, pair = i / g13.n_rb, rb = i % g13.n_rb;
        const int e = ids[pair];
        if (lane == 0 && k == 0 && e != -12345) stamp(kTlIds);  // the branch waits for the load
        const DevWeight w1 = expert_view(m.w1, e), w3 = expert_view(m.w3, e);
        if (lane == 0) mbar_arrive_expect_tx(&full[s], half_tx(g13, w1, rb * 16, w3, rb * 16));
        if (lane == 0 && k == 0) stamp(kTlExpect);
        __syncwarp();
        issue_half(g13, w1, rb * 16, w3, rb * 16, st, &full[s], lane, k == 0 ? kTlRows : -1);
        if (lane == 0 && k == 0) stamp(kTlFirstIssue);
      } else {
        const int64_t i = b2 + (k - n13), pair = i / g2.n_rb, r0 = (i % g2.n_rb) * 64;
        const DevWeight w2 = expert_view(m.w2, ids[pair]);
        if (lane == 0)
          mbar_arrive_expect_tx(&full[s], half_tx(g2, w2, r0, w2, r0 + 16) + half_tx(g2, w2, r0 + 32, w2, r0 + 48));
        __syncwarp();
        issue_half(g2, w2, r0, w2, r0 + 16, st, &full[s], lane);
        issue_half(g2, w2, r0 + 32, w2, r0 + 48, st + g2.half_bytes, &full[s], lane);
      }
    }
    return;
  }

  if (warp == kEpilogueWarp) {
    // Per tile only sums and stores; the fences and atomics that publish them come once per
    // phase (a fence costs about a memory round trip: per tile it made this warp the bottleneck).
    for (int64_t k = 0; k < n_all; ++k) {
      const int slot = int(k % kRing);
      mbar_wait(&red_full[slot], uint32_t(k / kRing) & 1);
      const float* rd = red + slot * kConsumerWarps * 64;
      if (k < n13) {
        const int64_t i = b13 + k, pair = i / g13.n_rb, r = (i % g13.n_rb) * 16 + lane;
        float gs = 0, us = 0;
        if (lane < 16) {
#pragma unroll
          for (int w = 0; w < kConsumerWarps; ++w) gs += rd[w * 64 + lane], us += rd[w * 64 + 16 + lane];
        }
        mbar_arrive(&red_empty[slot]);
        if (lane < 16 && r < m.inter) a[pair * m.inter + r] = silu(gs) * us;
        if (k == n13 - 1) {  // this block's a rows, before the count the other blocks wait on
          __threadfence();
          __syncwarp();
          if (lane == 0) atomicAdd(&sync[0], int(n13));
        }
      } else {
        const int64_t i = b2 + (k - n13), pair = i / g2.n_rb, r = (i % g2.n_rb) * 64 + lane;
        float y0 = 0, y1 = 0;
#pragma unroll
        for (int w = 0; w < kConsumerWarps; ++w) y0 += rd[w * 64 + lane], y1 += rd[w * 64 + 32 + lane];
        mbar_arrive(&red_empty[slot]);
        if (r < m.hidden) y[pair * m.hidden + r] = y0;
        if (r + 32 < m.hidden) y[pair * m.hidden + r + 32] = y1;
      }
    }
    // The weighted sums: per w2 tile (pair, row block) a ticket of its token and row block; the
    // last of the K pairs adds the K rows in order of k. All tickets at once, one lane per tile;
    // the sums are shared with the consumer warps (finish_sums).
    if (!combine) return;
    __threadfence();
    __syncwarp();
    for (int64_t base = 0; base < n2; base += 32) {
      int last = 0;
      if (base + lane < n2) {
        const int64_t i = b2 + base + lane, pair = i / g2.n_rb, rb = i % g2.n_rb;
        int32_t* ticket = tickets + (pair / K) * g2.n_rb + rb;
        last = atomicAdd(ticket, 1) == K - 1;
        if (last) *ticket = 0;  // ready for the next launch
      }
      const uint32_t mask = __ballot_sync(0xffffffffu, last);
      if (lane == 0) *s_mask = mask;
      finish_sums(base, kConsumerWarps);
    }
    return;
  }

  // ---- the consumer warps ----
  const int tid = threadIdx.x;
  const int j = ((lane & 3) >> 1) * 16 + (lane & 1) * 8 + (lane >> 2);  // this lane's row of a tile
  auto hand_over = [&](int64_t k, float acc0, float acc1) {  // acc1: a w2 tile's second half
    const int slot = int(k % kRing);
    if (k >= kRing) mbar_wait(&red_empty[slot], uint32_t(k / kRing - 1) & 1);
    red[(slot * kConsumerWarps + warp) * 64 + j] = acc0;
    red[(slot * kConsumerWarps + warp) * 64 + 32 + j] = acc1;
    mbar_arrive(&red_full[slot]);
  };
  const int64_t x0 = n13 ? (b13 / g13.n_rb) / K : 0, x1 = n13 ? ((e13 - 1) / g13.n_rb) / K : -1;
  unsigned char* xacts = smem + fg.xacts_off;
  for (int64_t v = x0; v <= x1; ++v) {
    uint4* xs = reinterpret_cast<uint4*>(xacts + (v - x0) * g13.act_bytes);
    stage_activations(x + v * g13.cols, g13.cols, xs, reinterpret_cast<float*>(xs + g13.groups * 4), [] {}, tid,
                      kConsumers);
  }
  named_barrier(kConsumers);
  int64_t k = 0;
  for (; k < n13; ++k) {
    const int s = int(k % S);
    const int64_t pair = (b13 + k) / g13.n_rb;
    const uint4* xs = reinterpret_cast<const uint4*>(xacts + (pair / K - x0) * g13.act_bytes);
    mbar_wait(&full[s], uint32_t(k / S) & 1);
    if (tid == 0 && k == 0) stamp(kTlFirstFull);
    const float acc = consume_tile(g13, stages + s * fg.stage_bytes, xs,
                                   reinterpret_cast<const float*>(xs + g13.groups * 4), warp, lane, j);
    mbar_arrive(&empty[s]);  // this thread is done with the stage
    hand_over(k, acc, 0.0f);
  }
  // Every a row of the pairs this block's w2 tiles take must be complete: wait for all w1/w3
  // tiles of the grid. The last block past the wait zeroes the counters for the next launch.
  if (tid == 0) {
    stamp(kTlW13Done);
    while (ld_acquire(&sync[0]) < int(g13.tiles)) __nanosleep(32);
    stamp(kTlBarrier);
    if (atomicAdd(&sync[1], 1) == int(gridDim.x) - 1) atomicExch(&sync[0], 0), atomicExch(&sync[1], 0);
  }
  named_barrier(kConsumers);
  const int64_t p0 = b2 / g2.n_rb, p1 = (e2 - 1) / g2.n_rb;
  unsigned char* aacts = smem + fg.aacts_off;
  for (int64_t v = p0; v <= p1; ++v) {
    uint4* xs = reinterpret_cast<uint4*>(aacts + (v - p0) * g2.act_bytes);
    stage_activations<true>(a + v * g2.cols, g2.cols, xs, reinterpret_cast<float*>(xs + g2.groups * 4), [] {}, tid,
                            kConsumers);
  }
  named_barrier(kConsumers);
  if (tid == 0) stamp(kTlStaged);
  for (; k < n_all; ++k) {
    const int s = int(k % S);
    const int64_t pair = (b2 + k - n13) / g2.n_rb;
    const uint4* xs = reinterpret_cast<const uint4*>(aacts + (pair - p0) * g2.act_bytes);
    mbar_wait(&full[s], uint32_t(k / S) & 1);
    if (tid == 0 && k == n13) stamp(kTlW2Full);
    if (tid == 0 && k == n_all - 1) stamp(kTlW2LastFull);
    const unsigned char* st = stages + s * fg.stage_bytes;
    const float* dg = reinterpret_cast<const float*>(xs + g2.groups * 4);
    float acc0, acc1;
    if (fg.split_halves) {  // warps 0-3 take the first half's groups, warps 4-7 the second's
      const int h = warp / (kConsumerWarps / 2);
      const float acc = consume_tile(g2, st + h * g2.half_bytes, xs, dg, warp % (kConsumerWarps / 2), lane, j);
      acc0 = h ? 0.0f : acc, acc1 = h ? acc : 0.0f;
    } else {
      acc0 = consume_tile(g2, st, xs, dg, warp, lane, j);
      acc1 = consume_tile(g2, st + g2.half_bytes, xs, dg, warp, lane, j);
    }
    mbar_arrive(&empty[s]);  // this thread is done with the stage
    hand_over(k, acc0, acc1);
  }
  if (tid == 0) stamp(kTlW2Done);
  for (int64_t base = 0; combine && base < n2; base += 32) finish_sums(base, warp);
  if (tid == 0) stamp(kTlEnd);
}

bool format_ok(const DevWeight& w) {
  return w.fmt == Fmt::INT && w.bits == 4 && (w.group == 32 || w.group == 128) && w.cols % w.group == 0 &&
         w.rows % 16 == 0 && w.row_bytes % 16 == 0;
}

#ifdef MOEQ_MOE_TIMELINE
// Every 7th launch after the first 100 (layers in turn: 7 does not divide 33), the
// stamps are read back (the stream is synchronised after the launch, so the kernel itself runs as
// in the step) and each phase's time from the earliest start is summed for the summary.
struct Timeline {
  int64_t launches = 0, samples = 0;
  int grid = 0;
  double sum_min[kTlEvents] = {}, sum_med[kTlEvents] = {}, sum_max[kTlEvents] = {};
  ~Timeline() {
    if (!samples) return;
    static const char* names[kTlEvents] = {"start (after wait)", "producer: 1st expert id", "producer: 1st tile issued", "first stage full",
                                           "w1/w3 tiles done", "phase barrier passed", "a staged",
                                           "w2 tiles done", "end", "producer: last tile issued",
                                           "producer: past its wait", "producer: 1st expect_tx",
                                           "producer: 1st rows issued", "1st w2 stage full, seen",
                                           "last w2 stage full, seen"};
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

bool moe_stream_decode_supported(const MoeWeights& m, int64_t pairs, int K) {
  if (!format_ok(m.w1) || !format_ok(m.w3) || !format_ok(m.w2) || m.w1.group != m.w3.group || pairs % K != 0 ||
      m.hidden % 32 != 0 || m.inter % 16 != 0)
    return false;
  static const bool coop = [] {
    int v = 0, dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrCooperativeLaunch, dev));
    return v != 0;
  }();
  return coop && fused_geom(m, pairs, K).stages >= 2;
}

void moe_decode_stream(const MoeWeights& m, const float* x, const int32_t* ids, const float* wts, int64_t pairs, int K,
                       float* a, float* y, int32_t* tickets, float* out, bool accumulate, cudaStream_t s,
                       bool combine) {
  int32_t* sync = tickets + pairs / K * moe_decode_row_blocks(m.hidden);  // the 2 counters past the tickets
  const FusedGeom g = fused_geom(m, pairs, K);
  CUDA_CHECK(cudaFuncSetAttribute(moe_stream_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(g.smem)));
  cudaLaunchAttribute attr[2];
  attr[0].id = cudaLaunchAttributeCooperative;  // all blocks resident: the phase wait is safe
  attr[0].val.cooperative = 1;
  attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(unsigned(g.grid));
  cfg.blockDim = dim3(kBlockThreads);
  cfg.dynamicSmemBytes = size_t(g.smem);
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 2 : 1;
  CUDA_CHECK(cudaLaunchKernelEx(&cfg, moe_stream_kernel, m, g, x, ids, wts, K, a, y, tickets, sync, out, accumulate,
                                combine));
#ifdef MOEQ_MOE_TIMELINE
  timeline.after_launch(g.grid, s);
#endif
}

}  // namespace moeq::cuda
