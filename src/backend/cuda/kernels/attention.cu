// Attention over the KV cache for any batch (prefill chunks, single-token decode, mixed sequences):
// a block takes one token, one kv head (all query heads of its GQA group share the K/V loads) and
// one split of the cache positions, with an online softmax over tiles of 32 positions staged in
// shared memory; splits are merged by a combine kernel. f32 throughout (the CPU reference's math).
#include <algorithm>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/cache_policy.cuh"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kTile = 32;
constexpr int kMaxOut = 8;  // group * head_dim <= kMaxOut * kThreads
constexpr int64_t kDecodeAttentionTokens = 16;
constexpr int kMaxSplits = 128;

__global__ void kv_write_kernel(const float* k, const float* v, const int32_t* pos, const int32_t* slots, int64_t T,
                                float* kc, float* vc, int64_t slot_stride, int kv_dim) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * kv_dim) return;
  const int64_t t = i / kv_dim, d = i % kv_dim;
  const int64_t at = int64_t(slots[t]) * slot_stride + int64_t(pos[t]) * kv_dim + d;
  kc[at] = k[i];
  vc[at] = v[i];
}

// Dynamic shared memory: q [group][hd], k tile [32][hd+1], v tile [32][hd], p [group][32].
__global__ void __launch_bounds__(kThreads) attention_kernel(const float* q, const float* kc, const float* vc,
                                                             const int32_t* pos, const int32_t* slots, int n_heads,
                                                             int n_kv, int hd, int64_t slot_stride, int chunk,
                                                             int splits, float* part_o, float* part_ml, float* out) {
  extern __shared__ float sm[];
  const int group = n_heads / n_kv;
  const int64_t t = blockIdx.x / n_kv;
  const int g = int(blockIdx.x % n_kv);
  const int sp = blockIdx.y;
  const int kv_dim = n_kv * hd;
  float* qs = sm;
  float* ks = qs + group * hd;
  float* vs = ks + kTile * (hd + 1);
  float* ps = vs + kTile * hd;
  __shared__ float m_run[64], l_run[64], rescale[64];

  const float scale = rsqrtf(float(hd));
  for (int i = threadIdx.x; i < group * hd; i += kThreads)
    qs[i] = q[t * n_heads * hd + int64_t(g * group) * hd + i] * scale;
  if (threadIdx.x < group) m_run[threadIdx.x] = -INFINITY, l_run[threadIdx.x] = 0.0f;
  float acc[kMaxOut];
#pragma unroll
  for (int i = 0; i < kMaxOut; ++i) acc[i] = 0.0f;

  const int64_t p_end = min(int64_t(pos[t]) + 1, int64_t(sp + 1) * chunk);
  const int64_t p_begin = int64_t(sp) * chunk;
  const float* kbase = kc + int64_t(slots[t]) * slot_stride + g * hd;
  const float* vbase = vc + int64_t(slots[t]) * slot_stride + g * hd;
  __syncthreads();
  for (int64_t p0 = p_begin; p0 < p_end; p0 += kTile) {
    const int n = int(min(int64_t(kTile), p_end - p0));
    for (int i = threadIdx.x; i < n * hd; i += kThreads) {
      const int p = i / hd, d = i % hd;
      ks[p * (hd + 1) + d] = kbase[(p0 + p) * kv_dim + d];
      vs[p * hd + d] = vbase[(p0 + p) * kv_dim + d];
    }
    __syncthreads();
    // Scores for every (head, position) of the tile.
    for (int i = threadIdx.x; i < group * kTile; i += kThreads) {
      const int h = i / kTile, p = i % kTile;
      float s = -INFINITY;
      if (p < n) {
        s = 0.0f;
        for (int d = 0; d < hd; ++d) s = fmaf(qs[h * hd + d], ks[p * (hd + 1) + d], s);
      }
      ps[h * kTile + p] = s;
    }
    __syncthreads();
    // Online softmax: one warp per head updates the running max and sum.
    for (int h = threadIdx.x / 32; h < group; h += kThreads / 32) {
      const int lane = threadIdx.x % 32;
      const float s = ps[h * kTile + lane];
      float mx = s;
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float m_new = fmaxf(m_run[h], mx);
      const float e = s == -INFINITY ? 0.0f : expf(s - m_new);
      ps[h * kTile + lane] = e;
      float sum = e;
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      if (lane == 0) {
        const float r = m_run[h] == -INFINITY ? 0.0f : expf(m_run[h] - m_new);
        rescale[h] = r;
        l_run[h] = l_run[h] * r + sum;
        m_run[h] = m_new;
      }
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kMaxOut; ++k) {
      const int i = threadIdx.x + k * kThreads;
      if (i < group * hd) {
        const int h = i / hd, d = i % hd;
        float a = acc[k] * rescale[h];
        for (int p = 0; p < n; ++p) a = fmaf(ps[h * kTile + p], vs[p * hd + d], a);
        acc[k] = a;
      }
    }
    __syncthreads();
  }
  // Partial results (or the final ones when there is a single split).
#pragma unroll
  for (int k = 0; k < kMaxOut; ++k) {
    const int i = threadIdx.x + k * kThreads;
    if (i < group * hd) {
      const int h = i / hd, d = i % hd;
      const int64_t head = t * n_heads + g * group + h;
      if (splits == 1) out[head * hd + d] = acc[k] / l_run[h];
      else part_o[(head * splits + sp) * hd + d] = acc[k];
    }
  }
  if (splits > 1 && threadIdx.x < group) {
    const int64_t head = t * n_heads + g * group + threadIdx.x;
    part_ml[(head * splits + sp) * 2] = m_run[threadIdx.x];
    part_ml[(head * splits + sp) * 2 + 1] = l_run[threadIdx.x];
  }
}

// Decode (few tokens): a block takes one token, one kv head and one split of the cache; each warp
// walks every 4th position of the split with the GQA group's G queries in registers (D floats of
// each head per lane), so K and V rows are read once, coalesced, straight into registers; four
// positions per step keep eight loads and four reductions in flight. Splits divide the token's
// actual length (pos + 1, read on device, so a captured graph stays right as the sequence grows),
// not the cache capacity. The four warps' online-softmax states merge through shared memory; with
// several splits, decode_merge_kernel merges them, a block per head. (Merging in the last block of
// each (token, kv head) to finish, by an atomic ticket, saves that launch but reads every split
// of the group's 6 heads from one SM: measured 4% slower per decode step on an H100.)
template <int D, int G>
__global__ void __launch_bounds__(kThreads) attention_decode_kernel(const float* q, const float* kc, const float* vc,
                                                                    const int32_t* pos, const int32_t* slots,
                                                                    int n_heads, int n_kv, int64_t slot_stride,
                                                                    int splits, float* part_o, float* part_ml,
                                                                    float* out) {
  constexpr int kMaxGroup = G, hd = 32 * D, kWarpsD = kThreads / 32, kP = 4;
  __shared__ float sm_m[kWarpsD][kMaxGroup], sm_l[kWarpsD][kMaxGroup];
  __shared__ float sm_o[kWarpsD][kMaxGroup][hd];
  pdl_launch_dependents();
  pdl_wait();
  const int group = n_heads / n_kv;  // <= G; heads past it are zero queries and never stored
  const int64_t t = blockIdx.x / n_kv;
  const int g = int(blockIdx.x % n_kv), sp = blockIdx.y;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int kv_dim = n_kv * hd;
  const float scale = rsqrtf(float(hd)) * 1.4426950408889634f;  // base-2 softmax
  float qr[kMaxGroup][D], acc[kMaxGroup][D], m[kMaxGroup], l[kMaxGroup];
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    m[h] = -INFINITY, l[h] = 0;
#pragma unroll
    for (int d = 0; d < D; ++d) {
      acc[h][d] = 0;
      qr[h][d] = h < group ? q[(t * n_heads + g * group + h) * hd + lane * D + d] * scale : 0.0f;
    }
  }
  const int64_t len = int64_t(pos[t]) + 1, chunk = (len + splits - 1) / splits;
  const int64_t p_begin = min(len, int64_t(sp) * chunk), p_end = min(len, int64_t(sp + 1) * chunk);
  const float* kb = kc + int64_t(slots[t]) * slot_stride + g * hd + lane * D;
  const float* vb = vc + int64_t(slots[t]) * slot_stride + g * hd + lane * D;
  for (int64_t p = p_begin + warp; p < p_end; p += kP * kWarpsD) {
    float kr[kP][D], vr[kP][D];
#pragma unroll
    for (int j = 0; j < kP; ++j) {
      const int64_t pj = p + j * kWarpsD < p_end ? p + j * kWarpsD : p;  // past the end: a valid row, unused
      if constexpr (D == 4) {
        const float4 k4 = ld_stream(reinterpret_cast<const float4*>(kb + pj * kv_dim));
        const float4 v4 = ld_stream(reinterpret_cast<const float4*>(vb + pj * kv_dim));
        kr[j][0] = k4.x, kr[j][1] = k4.y, kr[j][2] = k4.z, kr[j][3] = k4.w;
        vr[j][0] = v4.x, vr[j][1] = v4.y, vr[j][2] = v4.z, vr[j][3] = v4.w;
      } else {
#pragma unroll
        for (int d = 0; d < D; ++d) kr[j][d] = ld_stream(kb + pj * kv_dim + d), vr[j][d] = ld_stream(vb + pj * kv_dim + d);
      }
    }
    float sc[kP][kMaxGroup];
#pragma unroll
    for (int j = 0; j < kP; ++j)
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        float x = 0;
#pragma unroll
        for (int d = 0; d < D; ++d) x = fmaf(qr[h][d], kr[j][d], x);
        sc[j][h] = x;
      }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
#pragma unroll
      for (int j = 0; j < kP; ++j)
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h) sc[j][h] += __shfl_xor_sync(0xffffffffu, sc[j][h], o);
#pragma unroll
    for (int j = 0; j < kP; ++j) {
      if (p + j * kWarpsD >= p_end) break;
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h >= group) break;
        const float m_new = fmaxf(m[h], sc[j][h]);
        const float r = exp2f(m[h] - m_new), e = exp2f(sc[j][h] - m_new);  // m[h] = -inf: r = 0
        l[h] = l[h] * r + e;
#pragma unroll
        for (int d = 0; d < D; ++d) acc[h][d] = fmaf(acc[h][d], r, e * vr[j][d]);
        m[h] = m_new;
      }
    }
  }
  // Merge the warps of the block.
#pragma unroll
  for (int h = 0; h < kMaxGroup; ++h) {
    if (h >= group) break;
    if (lane == 0) sm_m[warp][h] = m[h], sm_l[warp][h] = l[h];
#pragma unroll
    for (int d = 0; d < D; ++d) sm_o[warp][h][lane * D + d] = acc[h][d];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < group * hd; i += kThreads) {
    const int h = i / hd, d = i % hd;
    float M = -INFINITY;
    for (int w = 0; w < kWarpsD; ++w) M = fmaxf(M, sm_m[w][h]);
    float L = 0, O = 0;
    if (M != -INFINITY)
      for (int w = 0; w < kWarpsD; ++w) {
        const float f = exp2f(sm_m[w][h] - M);
        L += f * sm_l[w][h];
        O += f * sm_o[w][h][d];
      }
    const int64_t head = t * n_heads + g * group + h;
    if (splits == 1) {
      out[head * hd + d] = O / L;
    } else {
      part_o[(head * splits + sp) * hd + d] = O;
      if (d == 0) part_ml[(head * splits + sp) * 2] = M, part_ml[(head * splits + sp) * 2 + 1] = L;
    }
  }
}

// The decode kernel's splits (base-2 maxima) merged a block per head: the weights exp2(m_s - M)
// once in shared memory (a thread per split), then kMergeParts threads per dimension (hd <= 128),
// each over every kMergeParts-th split with all its loads in flight, summed through shared memory.
// (One thread per dimension walking all ~66 splits left the merge a chain of dependent L2 round
// trips: 6.8 us per layer in the graph on an H100.)
constexpr int kMergeParts = 4, kMergeThreads = 128 * kMergeParts;
__global__ void __launch_bounds__(kMergeThreads) decode_merge_kernel(const float* part_o, const float* part_ml,
                                                                    int splits, int hd, float* out) {
  __shared__ float f_s[kMaxSplits], red[4], part[kMergeParts - 1][128];
  __shared__ float s_M, s_L;
  pdl_launch_dependents();
  pdl_wait();
  const int64_t head = blockIdx.x;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const float* ml = part_ml + head * splits * 2;
  static_assert(kMaxSplits <= 128 && kMaxSplits % kMergeParts == 0, "a thread per split among the first 128");
  const bool splitter = tid < 128;
  const int d = tid % 128, p = tid / 128;
  // Every load at once: the split statistics and this thread's partial outputs (indices clamped,
  // the surplus weighted by zero), so the merge waits for L2 once, not once for the statistics
  // and again for the outputs.
  constexpr int kPer = kMaxSplits / kMergeParts;
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
}

// Merges the splits of one (token, head): rescale each by exp(m_s - M).
__global__ void combine_kernel(const float* part_o, const float* part_ml, int splits, int hd, float* out) {
  const int64_t head = blockIdx.x;
  float M = -INFINITY;
  for (int s = 0; s < splits; ++s) M = fmaxf(M, part_ml[(head * splits + s) * 2]);
  float L = 0;
  for (int s = 0; s < splits; ++s) {
    const float m = part_ml[(head * splits + s) * 2];
    if (m != -INFINITY) L += expf(m - M) * part_ml[(head * splits + s) * 2 + 1];
  }
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0;
    for (int s = 0; s < splits; ++s) {
      const float m = part_ml[(head * splits + s) * 2];
      if (m != -INFINITY) o += expf(m - M) * part_o[(head * splits + s) * hd + d];
    }
    out[head * hd + d] = o / L;
  }
}

}  // namespace

void kv_write(const float* k, const float* v, const int32_t* pos, const int32_t* slots, int64_t T, float* kc,
              float* vc, int64_t slot_stride, int kv_dim, int /*ctx*/, cudaStream_t s) {
  const int64_t n = T * kv_dim;
  if (n == 0) return;
  launch(kv_write_kernel, dim3(unsigned((n + 255) / 256)), dim3(256), 0, s, k, v, pos, slots, T, kc, vc, slot_stride,
         kv_dim);
}

int attention_splits(int64_t T, int n_kv_heads, int ctx, int target_blocks) {
  // Enough blocks to spread over the GPU (the caller's target, a few per multiprocessor): each
  // warp then walks only a few steps of the cache (the decode kernel is bound by the latency of
  // those steps, not by bandwidth), against the cost of merging more splits at the end.
  const int64_t blocks = T * n_kv_heads;
  if (blocks >= target_blocks) return 1;
  const int64_t want = (target_blocks + blocks - 1) / blocks;
  const int64_t most = std::max<int64_t>(1, (ctx + 31) / 32);  // at least 32 positions per split
  return int(std::clamp<int64_t>(std::min(want, most), 1, kMaxSplits));
}

void attention(const float* q, const float* kc, const float* vc, const int32_t* pos, const int32_t* slots, int64_t T,
               int n_heads, int n_kv_heads, int head_dim, int64_t slot_stride, int ctx, int splits,
               const AttnScratch& scratch, float* out, cudaStream_t s) {
  if (T == 0) return;
  const int group = n_heads / n_kv_heads;
  if (group * head_dim > kMaxOut * kThreads || group > 64)
    fail_cuda(cudaErrorInvalidValue, "attention: GQA group too large", __FILE__, __LINE__);
  if (splits > 1 && T * n_heads * splits > scratch.capacity_splits)
    fail_cuda(cudaErrorInvalidValue, "attention: scratch too small", __FILE__, __LINE__);
  int chunk = (ctx + splits - 1) / splits;
  chunk = (chunk + kTile - 1) / kTile * kTile;
  const dim3 grid(unsigned(T * n_kv_heads), unsigned(splits));
  if (T <= kDecodeAttentionTokens && group <= 8 && (head_dim == 64 || head_dim == 128)) {
    auto run = [&](auto d, auto gsize) {
      launch(attention_decode_kernel<decltype(d)::value, decltype(gsize)::value>, grid, dim3(kThreads), 0, s, q, kc, vc,
             pos, slots, n_heads, n_kv_heads, slot_stride, splits, scratch.partial_o, scratch.partial_ml,
             out);
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
    return;
  } else {
    const size_t smem =
        sizeof(float) * size_t(group * head_dim + kTile * (head_dim + 1) + kTile * head_dim + group * kTile);
    attention_kernel<<<grid, kThreads, smem, s>>>(q, kc, vc, pos, slots, n_heads, n_kv_heads, head_dim, slot_stride,
                                                  chunk, splits, scratch.partial_o, scratch.partial_ml, out);
  }
  CUDA_LAUNCH_CHECK();
  if (splits > 1) {
    combine_kernel<<<unsigned(T * n_heads), 128, 0, s>>>(scratch.partial_o, scratch.partial_ml, splits, head_dim, out);
    CUDA_LAUNCH_CHECK();
  }
}

}  // namespace moeq::cuda
