// Attention over the KV cache for any batch and shape (the fallback where neither the decode kernel
// of attention_decode.cu nor the tensor-core prefill of flash_attention.cu applies), and the cache
// write ahead of it: a block takes one token, one kv head (all query heads of its GQA group share
// the K/V loads) and one split of the cache positions, with an online softmax over tiles of 32
// positions staged in shared memory; splits are merged by a combine kernel. f32 throughout (the CPU
// reference's math).
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kTile = 32;
constexpr int kMaxOut = 8;  // group * head_dim <= kMaxOut * kThreads

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
  return int(std::clamp<int64_t>(std::min(want, most), 1, kAttentionMaxSplits));
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
  const size_t smem =
      sizeof(float) * size_t(group * head_dim + kTile * (head_dim + 1) + kTile * head_dim + group * kTile);
  attention_kernel<<<grid, kThreads, smem, s>>>(q, kc, vc, pos, slots, n_heads, n_kv_heads, head_dim, slot_stride,
                                                chunk, splits, scratch.partial_o, scratch.partial_ml, out);
  CUDA_LAUNCH_CHECK();
  if (splits > 1) {
    combine_kernel<<<unsigned(T * n_heads), 128, 0, s>>>(scratch.partial_o, scratch.partial_ml, splits, head_dim, out);
    CUDA_LAUNCH_CHECK();
  }
}

}  // namespace moeq::cuda
