// Decode attention (a few tokens, each attending over its sequence's cache) with the cache write
// fused in, then the merge of the splits.
//
// A block takes one token, one kv head and one split of the token's positions; each of its four
// warps walks groups of 8 consecutive positions. Per group, lane (j, c) = (lane / 4, lane % 4)
// holds a quarter of row j's K (dims 16i + 4c .. +3) and scores it against the GQA group's queries
// (read from shared memory as float4 broadcasts); two shuffles finish each score, three more give
// the group's maximum, and one exp2 per (row, head) per lane feeds the online softmax. For P V the
// lanes split the dimensions instead (lane l owns dims D l .. D l + D - 1 of all 8 V rows) and read
// P from shared memory. The version this replaced reduced every score over all 32 lanes (five
// shuffles per head and position) and evaluated the softmax's exponentials on every lane, and
// spent most of its time issuing them (13 us for 2048 positions of MiniMax-M2 whether the cache
// came from DRAM or L2). Measured with ncu on an H100 (docs/PERF.md): 5.95 M warp instructions
// for those positions then, 2.64 M here; the kernel is now bound by load latency, and the decode
// step did not get faster (its cache reads now overlap the projections' weight reads).
//
// The cache write of this step's k and v rows is fused in (block split 0 writes them), so no
// block reads a cache row that this launch writes: rows a token of this launch writes come from
// the k and v inputs. With `early` (the caller guarantees that no kernel still in flight writes
// the positions, slots or this layer's cache: an upload since the layer's last attention), the
// first group's cache rows below the first position this launch writes for the slot are loaded
// before the dependency wait, while the projections before it still run.
//
// QN (one token): q and k arrive as the raw projections, and the QK-norm and RoPE that
// qk_norm_rope_reg_kernel would apply happen here, which removes that kernel's launch and its
// dependent step from the decode chain. The norm is over the whole q (and k) row, all heads, but a
// block holds 6 of 48 heads: the q/k/v product leaves per-block partial sums of squares
// (gemv_multi_rmsnorm's sumsq, a few hundred floats), and every block adds them up instead of
// reading the whole rows. The norm weights and the RoPE frequencies are copied to shared memory
// (cp.async) before the dependency wait. This step's k row, normalised and rotated in shared
// memory, is both the cache write and the late row the last split scores.
#include <algorithm>
#include <cstdio>
#include <type_traits>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/cache_policy.cuh"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

constexpr int kThreads = 128, kWarps = kThreads / 32, kRows = 8;

// A build with -DMOEQ_ATTN_TIMELINE records, per block, when each step of the decode attention
// and of its merge is reached (globaltimer, ns), and prints a summary at exit: where the
// attention's time goes after the q/k/v product (docs/PERF.md).
enum : int { kAtStart, kAtIssued, kAtWait, kAtSums, kAtRotated, kAtLoop, kAtScores, kAtScored, kAtEnd, kMgStart,
             kMgWait, kMgEnd, kAtEvents };
#ifdef MOEQ_ATTN_TIMELINE
constexpr int kAtMaxBlocks = 2048;
__device__ int64_t g_attn_tl[kAtMaxBlocks * kAtEvents];
__device__ __forceinline__ void at_stamp(int block, int ev) {
  if (block >= kAtMaxBlocks || threadIdx.x != 0) return;
  int64_t t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  g_attn_tl[block * kAtEvents + ev] = t;
}
#else
__device__ __forceinline__ void at_stamp(int, int) {}
#endif

// 16 bytes global -> shared without a register or a wait (cp.async; completed by cp_async_wait).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// A vector of D floats (D = 2 or 4): loaded with an L2 policy, stored to shared memory.
template <int D>
struct Vec;
template <>
struct Vec<4> {
  float v[4];
  __device__ __forceinline__ void load(const float* p, uint64_t pol) {
    const float4 x = ld_hint(reinterpret_cast<const float4*>(p), pol);
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
  }
  __device__ __forceinline__ void store(float* p) const { *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]); }
};
template <>
struct Vec<2> {
  float v[2];
  __device__ __forceinline__ void load(const float* p, uint64_t pol) {
    const uint2 x = ld_hint(reinterpret_cast<const uint2*>(p), pol);
    v[0] = __uint_as_float(x.x), v[1] = __uint_as_float(x.y);
  }
  __device__ __forceinline__ void store(float* p) const { *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]); }
};

// Row offsets within a slot are 32-bit (the host checks ctx * kv_dim < 2^31).
template <int D, int G, bool QN>
__global__ void __launch_bounds__(kThreads, G <= 6 ? 4 : 3)
    attention_decode_kernel(const float* q, const float* k, const float* v, float* kc, float* vc, const int32_t* pos,
                            const int32_t* slots, int T, int n_heads, int n_kv, int64_t slot_stride, int splits,
                            bool early, float* part_o, float* part_ml, float* out, QkNormArgs qn) {
  constexpr int hd = 32 * D, kQ4 = hd / 16;  // float4 of a K row per lane
  static_assert(G <= 8, "P is staged as 8 heads per row");
  __shared__ float4 qs[G * hd / 4];
  // QN: the q and k norm weights of the block's heads, this step's k row, the angles, the sums.
  __shared__ float4 qn_qw[QN ? G * hd / 4 : 1], qn_kw[QN ? hd / 4 : 1], qn_k[QN ? hd / 4 : 1];
  __shared__ float4 qn_freq[QN ? hd / 8 : 1];
  __shared__ float qn_sin[QN ? hd / 2 : 1], qn_cos[QN ? hd / 2 : 1], qn_red[2][kWarps];
  __shared__ float4 ps[kWarps][kRows][2];  // p of row j for heads 0-3 and 4-7
  __shared__ float sm_m[kWarps][G], sm_l[kWarps][G], sm_f[kWarps][G], sm_inv_l[G];
  __shared__ __align__(16) float sm_o[kWarps][G][hd];
  pdl_launch_dependents();
  const int group = n_heads / n_kv;  // <= G; heads past it are zero queries and never stored
  const int t = int(blockIdx.x / n_kv), g = int(blockIdx.x % n_kv), sp = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, j = lane / 4, c = lane % 4;
  const int kv_dim = n_kv * hd;
  const uint64_t pol = l2_stream_policy();
  const int tl_block = int(blockIdx.y * gridDim.x + blockIdx.x);
  at_stamp(tl_block, kAtStart);

  // The token's length, its slot, and `lo`: the first position any token of this launch writes
  // in that slot (rows below it are in the cache before this launch; rows from it on may be
  // this launch's own, taken from k and v).
  int len = 0, lo = 0, p_begin = 0, p_end = 0, slot = 0;
  const float* kslot = nullptr;
  const float* vslot = nullptr;
  auto locate = [&] {
    slot = slots[t];
    len = pos[t] + 1;
    lo = len - 1;
    if (T > 1) {
#pragma unroll 1
      for (int u = 0; u < T; ++u)
        if (slots[u] == slot) lo = min(lo, int(pos[u]));
    }
    const int chunk = (len + splits - 1) / splits;
    p_begin = min(len, sp * chunk), p_end = min(len, (sp + 1) * chunk);
    kslot = kc + int64_t(slot) * slot_stride + g * hd;
    vslot = vc + int64_t(slot) * slot_stride + g * hd;
  };
  // Row p (>= lo) of this slot: the input row of the token of this launch that writes it, else
  // the cache's (an earlier launch's).
  auto late_row = [&](int p, const float* in, const float* cache) -> const float* {
#pragma unroll 1
    for (int u = 0; u < T; ++u)
      if (slots[u] == slot && pos[u] == p) return in + u * kv_dim + g * hd;
    return cache + p * kv_dim;
  };

  float4 kr[kQ4];
  Vec<D> vr[kRows];
  // Loads the rows of the group at r0: the cache rows below lo when `cached`, the others when
  // `late` (rows past the split stay as they are: masked or weighted by zero).
  auto load_group = [&](int r0, bool cached, bool late) {
    const int pk = r0 + j;
    if (QN && pk < p_end && pk >= lo && late) {  // this step's k row (QN: one token), normalised here
#pragma unroll
      for (int i = 0; i < kQ4; ++i) kr[i] = qn_k[c + 4 * i];
    } else if (pk < p_end && (pk < lo ? cached : late)) {
      const float* src = (pk < lo ? kslot + pk * kv_dim : late_row(pk, k, kslot)) + 4 * c;
#pragma unroll
      for (int i = 0; i < kQ4; ++i) kr[i] = ld_hint(reinterpret_cast<const float4*>(src + 16 * i), pol);
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const int pv = r0 + r;
      if (pv < p_end && (pv < lo ? cached : late))
        vr[r].load((pv < lo ? vslot + pv * kv_dim : late_row(pv, v, vslot)) + lane * D, pol);
    }
  };
#pragma unroll
  for (int i = 0; i < kQ4; ++i) kr[i] = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int d = 0; d < D; ++d) vr[r].v[d] = 0.0f;

  // The first group's rows: those earlier launches wrote before the dependency wait when allowed,
  // the rest right after it, ahead of everything else.
  if (early) {
    locate();
    load_group(p_begin + warp * kRows, true, false);
  }
  constexpr int kQIters = (G * hd / 4 + kThreads - 1) / kThreads;
  [[maybe_unused]] const int half = qn.rotary_dim / 2;
  if constexpr (QN) {
    // The norm weights and frequencies (read-only) start on their way to shared memory before the
    // wait, by cp.async: no registers held across it, and no round trip of their own after it
    // (blocks that become resident only once the q/k/v product ends would otherwise wait for
    // these loads and then for the partial sums, one after the other).
#pragma unroll
    for (int it = 0; it < kQIters; ++it) {
      const int i = threadIdx.x + it * kThreads;
      if (i < G * hd / 4) {
        if (i / (hd / 4) < group)
          cp_async16(&qn_qw[i], reinterpret_cast<const float4*>(qn.q_weight + g * group * hd) + i);
        else
          qn_qw[i] = make_float4(0.f, 0.f, 0.f, 0.f);
      }
    }
    const int tid = threadIdx.x;
    if (tid < hd / 4) cp_async16(&qn_kw[tid], reinterpret_cast<const float4*>(qn.k_weight + g * hd) + tid);
    if (tid < half / 4) cp_async16(&qn_freq[tid], reinterpret_cast<const float4*>(qn.inv_freq) + tid);
  }
  at_stamp(tl_block, kAtIssued);
  pdl_wait();
  at_stamp(tl_block, kAtWait);
  if (!early) locate();
  const int first = p_begin + warp * kRows;
  // QN: this step's k row only once it is normalised (below).
  if (first < p_end) load_group(first, !early, !QN);

  // Queries of the group, pre-scaled for a base-2 softmax.
  const float scale = rsqrtf(float(hd)) * 1.4426950408889634f;
  const float4* q4 = reinterpret_cast<const float4*>(q + (int64_t(t) * n_heads + g * group) * hd);
  if constexpr (QN) {
    // Every load at once: the partial sums of squares, the group's raw q and this kv head's raw k.
    float sq = 0, sk = 0;
    const int n_sums = qn.counts.q + qn.counts.k;
    for (int b0 = 0; b0 < n_sums; b0 += 4 * kThreads) {
      float part[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = b0 + threadIdx.x + u * kThreads;
        part[u] = i < n_sums ? ld_cg_ordered(qn.sumsq + i) : 0.0f;
      }
#pragma unroll
      for (int u = 0; u < 4; ++u) {
        const int i = b0 + threadIdx.x + u * kThreads;
        if (i < qn.counts.q) sq += part[u];
        else sk += part[u];
      }
    }
    float4 xq[kQIters], xk = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int it = 0; it < kQIters; ++it) {
      const int i = threadIdx.x + it * kThreads;
      xq[it] = i < G * hd / 4 && i / (hd / 4) < group ? ld_cg_ordered(q4 + i) : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    if (threadIdx.x < hd / 4) xk = ld_cg_ordered(reinterpret_cast<const float4*>(k + g * hd) + threadIdx.x);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      sq += __shfl_xor_sync(0xffffffffu, sq, o);
      sk += __shfl_xor_sync(0xffffffffu, sk, o);
    }
    if (lane == 0) qn_red[0][warp] = sq, qn_red[1][warp] = sk;
    cp_async_wait();
    __syncthreads();  // the sums, and the weights and frequencies copied before the wait
    at_stamp(tl_block, kAtSums);
    if (threadIdx.x < half) {  // the rotation angles of this token's position (len - 1)
      const float f = reinterpret_cast<const float*>(qn_freq)[threadIdx.x];
      sincosf(float(len - 1) * f, &qn_sin[threadIdx.x], &qn_cos[threadIdx.x]);
    }
    sq = 0, sk = 0;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sq += qn_red[0][w], sk += qn_red[1][w];
    // x * inv * w as the row norms compute it; the softmax scale before the rotation (linear).
    const float inv_q = 1.0f / sqrtf(sq / float(n_heads * hd) + qn.eps);
    const float inv_k = 1.0f / sqrtf(sk / float(n_kv * hd) + qn.eps);
#pragma unroll
    for (int it = 0; it < kQIters; ++it) {
      const int i = threadIdx.x + it * kThreads;
      if (i < G * hd / 4) {
        const float4 w = qn_qw[i], x = xq[it];
        qs[i] = make_float4(w.x * (x.x * inv_q) * scale, w.y * (x.y * inv_q) * scale, w.z * (x.z * inv_q) * scale,
                            w.w * (x.w * inv_q) * scale);
      }
    }
    if (threadIdx.x < hd / 4) {
      const float4 w = qn_kw[threadIdx.x];
      qn_k[threadIdx.x] =
          make_float4(w.x * (xk.x * inv_k), w.y * (xk.y * inv_k), w.z * (xk.z * inv_k), w.w * (xk.w * inv_k));
    }
    __syncthreads();
    // Rotate-half RoPE on the first rotary_dim dims of every head of the group and of the k row.
    float* qf = reinterpret_cast<float*>(qs);
#pragma unroll 1
    for (int i = threadIdx.x; i < (G + 1) * half; i += kThreads) {
      const int h = i / half, d = i % half;
      float* row = h < G ? qf + h * hd : reinterpret_cast<float*>(qn_k);
      const float a = row[d], b = row[d + half];
      row[d] = a * qn_cos[d] - b * qn_sin[d];
      row[d + half] = b * qn_cos[d] + a * qn_sin[d];
    }
    __syncthreads();
    at_stamp(tl_block, kAtRotated);
    if (first < p_end) load_group(first, false, true);
  } else {
#pragma unroll
    for (int it = 0; it < kQIters; ++it) {
      const int i = threadIdx.x + it * kThreads;
      const int h = i / (hd / 4);
      if (i < G * hd / 4) {
        float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
        if (h < group) {
          x = q4[i];
          x.x *= scale, x.y *= scale, x.z *= scale, x.w *= scale;
        }
        qs[i] = x;
      }
    }
  }
  // The cache write of this token's row for kv head g (QN: the normalised, rotated k).
  if (sp == 0 && threadIdx.x < hd / 4) {
    const int64_t at = int64_t(slot) * slot_stride + int64_t(len - 1) * kv_dim + g * hd;
    const int64_t in = int64_t(t) * kv_dim + g * hd;
    reinterpret_cast<float4*>(kc + at)[threadIdx.x] =
        QN ? qn_k[threadIdx.x] : reinterpret_cast<const float4*>(k + in)[threadIdx.x];
    reinterpret_cast<float4*>(vc + at)[threadIdx.x] = reinterpret_cast<const float4*>(v + in)[threadIdx.x];
  }
  if constexpr (!QN) __syncthreads();

  float acc[G][D], m[G], l[G];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    m[h] = -INFINITY, l[h] = 0.0f;
#pragma unroll
    for (int d = 0; d < D; ++d) acc[h][d] = 0.0f;
  }
  at_stamp(tl_block, kAtLoop);
  for (int r0 = first; r0 < p_end; r0 += kRows * kWarps) {
    if (r0 != first) load_group(r0, true, true);
    // Scores of row j: a quarter of the dot product per lane, then two shuffles.
    float s[G];
#pragma unroll
    for (int h = 0; h < G; ++h) {
      float x = 0.0f;
#pragma unroll
      for (int i = 0; i < kQ4; ++i) {
        const float4 qv = qs[h * (hd / 4) + 4 * i + c];
        x = fmaf(qv.x, kr[i].x, x);
        x = fmaf(qv.y, kr[i].y, x);
        x = fmaf(qv.z, kr[i].z, x);
        x = fmaf(qv.w, kr[i].w, x);
      }
      s[h] = x;
    }
#pragma unroll
    for (int h = 0; h < G; ++h) {
      s[h] += __shfl_xor_sync(0xffffffffu, s[h], 1);
      s[h] += __shfl_xor_sync(0xffffffffu, s[h], 2);
    }
    if (r0 == first) at_stamp(tl_block, kAtScores);
    const bool valid = r0 + j < p_end;
    float p[8], r[G];
#pragma unroll
    for (int h = 0; h < G; ++h) {
      if (!valid) s[h] = -INFINITY;
      float mx = s[h];
#pragma unroll
      for (int o = 4; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_new = fmaxf(m[h], mx);  // finite: row r0 is valid
      r[h] = exp2f(m[h] - m_new);           // m[h] = -inf: 0
      p[h] = exp2f(s[h] - m_new);           // invalid row: 0
      l[h] = l[h] * r[h] + p[h];            // this lane's row; summed over rows at the end
      m[h] = m_new;
    }
#pragma unroll
    for (int h = G; h < 8; ++h) p[h] = 0.0f;
    if (c == 0) {
      ps[warp][j][0] = make_float4(p[0], p[1], p[2], p[3]);
      ps[warp][j][1] = make_float4(p[4], p[5], p[6], p[7]);
    }
    __syncwarp();
#pragma unroll
    for (int h = 0; h < G; ++h)
#pragma unroll
      for (int d = 0; d < D; ++d) acc[h][d] *= r[h];
#pragma unroll
    for (int rr = 0; rr < kRows; ++rr) {
      const float4 pa = ps[warp][rr][0], pb = ps[warp][rr][1];
      const float pr[8] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
#pragma unroll
      for (int h = 0; h < G; ++h)
#pragma unroll
        for (int d = 0; d < D; ++d) acc[h][d] = fmaf(pr[h], vr[rr].v[d], acc[h][d]);
    }
    __syncwarp();  // ps is rewritten by the next group
  }
  at_stamp(tl_block, kAtScored);
  // Sums over the rows (lanes of the same c hold the same partial sums for their row j).
#pragma unroll
  for (int h = 0; h < G; ++h)
#pragma unroll
    for (int o = 4; o < 32; o <<= 1) l[h] += __shfl_xor_sync(0xffffffffu, l[h], o);

  // Merge the warps of the block: each head's weights once, then the outputs as vectors.
#pragma unroll
  for (int h = 0; h < G; ++h) {
    if (lane == 0) sm_m[warp][h] = m[h], sm_l[warp][h] = l[h];
    Vec<D> o;
#pragma unroll
    for (int d = 0; d < D; ++d) o.v[d] = acc[h][d];
    o.store(&sm_o[warp][h][lane * D]);
  }
  __syncthreads();
  if (threadIdx.x < group) {
    const int h = threadIdx.x;
    float M = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) M = fmaxf(M, sm_m[w][h]);
    float L = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float f = M == -INFINITY ? 0.0f : exp2f(sm_m[w][h] - M);
      sm_f[w][h] = f;
      L += f * sm_l[w][h];
    }
    const int64_t head = int64_t(t) * n_heads + g * group + h;
    if (splits == 1) {
      sm_inv_l[h] = 1.0f / L;
    } else {
      sm_inv_l[h] = 1.0f;
      part_ml[(head * splits + sp) * 2] = M, part_ml[(head * splits + sp) * 2 + 1] = L;
    }
  }
  __syncthreads();
  constexpr int kOutIters = (G * hd / 4 + kThreads - 1) / kThreads;
#pragma unroll
  for (int it = 0; it < kOutIters; ++it) {
    const int i = threadIdx.x + it * kThreads, h = i / (hd / 4), d4 = i % (hd / 4);
    if (h < group) {
      float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float f = sm_f[w][h];
        const float4 x = reinterpret_cast<const float4*>(sm_o[w][h])[d4];
        o.x = fmaf(f, x.x, o.x), o.y = fmaf(f, x.y, o.y), o.z = fmaf(f, x.z, o.z), o.w = fmaf(f, x.w, o.w);
      }
      const float il = sm_inv_l[h];
      o.x *= il, o.y *= il, o.z *= il, o.w *= il;
      const int64_t head = int64_t(t) * n_heads + g * group + h;
      float* dst = splits == 1 ? out + head * hd : part_o + (head * splits + sp) * hd;
      reinterpret_cast<float4*>(dst)[d4] = o;
    }
  }
  at_stamp(tl_block, kAtEnd);
}

// The decode kernel's splits (base-2 maxima) merged a block per head: the weights exp2(m_s - M)
// once in shared memory (a thread per split), then kMergeParts threads per dimension (hd <= 128),
// each over every kMergeParts-th split with all its loads in flight, summed through shared memory.
// (One thread per dimension walking all ~66 splits left the merge a chain of dependent L2 round
// trips: 6.8 us per layer in the graph on an H100.)
constexpr int kMergeParts = 4, kMergeThreads = 128 * kMergeParts;
__global__ void __launch_bounds__(kMergeThreads) decode_merge_kernel(const float* part_o, const float* part_ml,
                                                                    int splits, int hd, float* out) {
  __shared__ float f_s[kAttentionMaxSplits], red[4], part[kMergeParts - 1][128];
  __shared__ float s_M, s_L;
  at_stamp(int(blockIdx.x), kMgStart);
  pdl_launch_dependents();
  pdl_wait();
  at_stamp(int(blockIdx.x), kMgWait);
  const int64_t head = blockIdx.x;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const float* ml = part_ml + head * splits * 2;
  static_assert(kAttentionMaxSplits <= 128 && kAttentionMaxSplits % kMergeParts == 0,
                "a thread per split among the first 128");
  const bool splitter = tid < 128;
  const int d = tid % 128, p = tid / 128;
  // Every load at once: the split statistics and this thread's partial outputs (indices clamped,
  // the surplus weighted by zero), so the merge waits for L2 once, not once for the statistics
  // and again for the outputs.
  constexpr int kPer = kAttentionMaxSplits / kMergeParts;
  const float* po = part_o + head * splits * hd + min(d, hd - 1);
  const float m_raw = ld_cg_ordered(ml + min(tid, splits - 1) * 2), l_raw = ld_cg_ordered(ml + min(tid, splits - 1) * 2 + 1);
  float pv[kPer];
#pragma unroll
  for (int i = 0; i < kPer; ++i) pv[i] = ld_cg_ordered(po + min(p + i * kMergeParts, splits - 1) * hd);
  const float m = tid < splits ? m_raw : -INFINITY;
  const float l = tid < splits ? l_raw : 0.0f;
  float M = m;
  for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
  if (splitter && lane == 0) red[warp] = M;
  __syncthreads();
  if (tid == 0) s_M = fmaxf(fmaxf(red[0], red[1]), fmaxf(red[2], red[3]));
  __syncthreads();
  M = s_M;
  const float f = m == -INFINITY ? 0.0f : exp2f(m - M);
  if (tid < 128) f_s[tid] = tid < splits ? f : 0.0f;
  float L = f * l;
  for (int o = 16; o > 0; o >>= 1) L += __shfl_xor_sync(0xffffffffu, L, o);
  __syncthreads();  // red[] reused; f_s complete
  if (splitter && lane == 0) red[warp] = L;
  __syncthreads();
  if (tid == 0) s_L = red[0] + red[1] + red[2] + red[3];
  float o = 0;
  if (d < hd) {
#pragma unroll
    for (int i = 0; i < kPer; ++i) o = fmaf(f_s[p + i * kMergeParts], pv[i], o);
    if (p > 0) part[p - 1][d] = o;
  }
  __syncthreads();
  if (p == 0 && d < hd) {
#pragma unroll
    for (int i = 0; i < kMergeParts - 1; ++i) o += part[i][d];
    out[head * hd + d] = o / s_L;
  }
  at_stamp(int(blockIdx.x), kMgEnd);
}

#ifdef MOEQ_ATTN_TIMELINE
// Every 7th launch pair after the first 100 (one token; layers in turn), read back after the
// merge's launch (the stream synchronised, so both kernels ran as in the step): each event's
// min / median / max over the blocks, from the earliest "past the wait" of the attention's blocks
// (about when the q/k/v product ended), averaged over the samples.
struct AttnTimeline {
  int64_t launches = 0, samples = 0;
  int grid = 0, merge_grid = 0;
  double sum[kAtEvents][3] = {};
  ~AttnTimeline() {
    if (!samples) return;
    static const char* names[kAtEvents] = {"start", "cache rows issued", "past the wait", "sums, q, k in",
                                           "q, k rotated", "loop entered", "1st group's scores",
                                           "rows done", "end", "merge: start", "merge: past the wait",
                                           "merge: end"};
    std::fprintf(stderr, "attention timeline: %lld launches sampled, %d + %d blocks; us from the earliest wait\n",
                 (long long)samples, grid, merge_grid);
    std::fprintf(stderr, "  %-24s %8s %8s %8s\n", "event", "min", "median", "max");
    for (int e = 0; e < kAtEvents; ++e)
      std::fprintf(stderr, "  %-24s %8.2f %8.2f %8.2f\n", names[e], sum[e][0] / samples * 1e-3,
                   sum[e][1] / samples * 1e-3, sum[e][2] / samples * 1e-3);
  }
  void after_launch(int g, int mg, cudaStream_t s) {
    cudaStreamCaptureStatus cap{};
    CUDA_CHECK(cudaStreamIsCapturing(s, &cap));
    if (cap != cudaStreamCaptureStatusNone || g > kAtMaxBlocks || ++launches < 100 || launches % 7 != 0) return;
    CUDA_CHECK(cudaStreamSynchronize(s));
    std::vector<int64_t> t(size_t(kAtMaxBlocks) * kAtEvents);
    CUDA_CHECK(cudaMemcpyFromSymbol(t.data(), g_attn_tl, t.size() * sizeof(int64_t)));
    int64_t t0 = INT64_MAX;
    for (int b = 0; b < g; ++b) t0 = std::min(t0, t[size_t(b) * kAtEvents + kAtWait]);
    for (int e = 0; e < kAtEvents; ++e) {
      const int n = e >= kMgStart ? mg : g;
      std::vector<double> v;
      for (int b = 0; b < n; ++b) v.push_back(double(t[size_t(b) * kAtEvents + e] - t0));
      std::sort(v.begin(), v.end());
      sum[e][0] += v.front(), sum[e][1] += v[v.size() / 2], sum[e][2] += v.back();
    }
    ++samples;
    grid = g, merge_grid = mg;
  }
};
AttnTimeline attn_timeline;
#endif

}  // namespace

bool attention_decode_supported(int64_t T, int n_heads, int n_kv_heads, int head_dim, int64_t slot_stride) {
  return T >= 1 && T <= kAttentionDecodeTokens && n_kv_heads > 0 && n_heads % n_kv_heads == 0 &&
         n_heads / n_kv_heads <= 8 && (head_dim == 64 || head_dim == 128) && slot_stride < (int64_t(1) << 31);
}

bool attention_qk_norm_supported(int head_dim, int rotary_dim) {
  return rotary_dim >= 0 && rotary_dim <= head_dim && rotary_dim % 8 == 0;  // frequencies copied as float4
}

void attention_decode(const float* q, const float* k, const float* v, float* kc, float* vc, const int32_t* pos,
                      const int32_t* slots, int64_t T, int n_heads, int n_kv_heads, int head_dim,
                      int64_t slot_stride, int splits, bool early, const AttnScratch& scratch, float* out,
                      cudaStream_t s, const QkNormArgs* qn) {
  if (!attention_decode_supported(T, n_heads, n_kv_heads, head_dim, slot_stride) || splits < 1 ||
      splits > kAttentionMaxSplits)
    fail_cuda(cudaErrorInvalidValue, "attention_decode: unsupported shape or splits", __FILE__, __LINE__);
  if (qn && (T != 1 || !attention_qk_norm_supported(head_dim, qn->rotary_dim)))
    fail_cuda(cudaErrorInvalidValue,
              "attention_decode: the folded QK-norm takes one token, and rotary_dim a multiple of 8 up to head_dim",
              __FILE__, __LINE__);
  if (splits > 1 && T * n_heads * splits > scratch.capacity_splits)
    fail_cuda(cudaErrorInvalidValue, "attention_decode: scratch too small", __FILE__, __LINE__);
  const int group = n_heads / n_kv_heads;
  const dim3 grid(unsigned(T * n_kv_heads), unsigned(splits));
  const QkNormArgs none;
  auto run = [&](auto d, auto gsize) {
    constexpr int D = decltype(d)::value, G = decltype(gsize)::value;
    launch(qn ? attention_decode_kernel<D, G, true> : attention_decode_kernel<D, G, false>, grid, dim3(kThreads), 0,
           s, q, k, v, kc, vc, pos, slots, int(T), n_heads, n_kv_heads, slot_stride, splits, early, scratch.partial_o,
           scratch.partial_ml, out, qn ? *qn : none);
  };
  auto by_group = [&](auto d) {
    if (group == 1) run(d, std::integral_constant<int, 1>{});
    else if (group == 2) run(d, std::integral_constant<int, 2>{});
    else if (group <= 4) run(d, std::integral_constant<int, 4>{});
    else if (group <= 6) run(d, std::integral_constant<int, 6>{});
    else run(d, std::integral_constant<int, 8>{});
  };
  if (head_dim == 64) by_group(std::integral_constant<int, 2>{});
  else by_group(std::integral_constant<int, 4>{});
  if (splits > 1)
    launch(decode_merge_kernel, dim3(unsigned(T * n_heads)), dim3(kMergeThreads), 0, s,
           static_cast<const float*>(scratch.partial_o), static_cast<const float*>(scratch.partial_ml), splits,
           head_dim, out);
#ifdef MOEQ_ATTN_TIMELINE
  if (qn && splits > 1) attn_timeline.after_launch(int(grid.x * grid.y), int(T * n_heads), s);
#endif
}

}  // namespace moeq::cuda
