// Small kernels: embedding lookup, RMSNorm, partial RoPE, add, row gather.
#include <algorithm>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels.h"
#include "backend/cuda/kernels/block_sum.cuh"
#include "backend/cuda/kernels/cache_policy.cuh"
#include "backend/cuda/kernels/launch.cuh"

namespace moeq::cuda {
namespace {

constexpr int kMaxRotaryHalf = 512;

template <int F>
__global__ void embedding_kernel(DevWeight table, const int32_t* ids, float* out, int32_t* bad_id) {
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  if (id < 0 || id >= table.rows) {  // report, and write zeros rather than read out of bounds
    if (threadIdx.x == 0) atomicExch(bad_id, id);
    for (int64_t j = threadIdx.x; j < table.cols; j += blockDim.x) out[t * table.cols + j] = 0.0f;
    return;
  }
  for (int64_t g = threadIdx.x; g < table.cols / 32; g += blockDim.x) {
    float v[32];
    dequant32<F>(table, id, g, v);
#pragma unroll
    for (int i = 0; i < 32; ++i) out[t * table.cols + g * 32 + i] = v[i];
  }
}

// Sum of squares of a row of n4 float4s: up to 8 loads per thread issued together (one memory
// latency per row, not one per loop step), a strided loop past that.
__device__ __forceinline__ float row_sum_sq(const float4* r, int64_t n4) {
  float ss = 0;
  float4 v[8];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * blockDim.x;
    v[i] = j < n4 ? r[j] : make_float4(0, 0, 0, 0);
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) ss += v[i].x * v[i].x + v[i].y * v[i].y + v[i].z * v[i].z + v[i].w * v[i].w;
  for (int64_t j = threadIdx.x + 8 * int64_t(blockDim.x); j < n4; j += blockDim.x) {
    const float4 u = r[j];
    ss += u.x * u.x + u.y * u.y + u.z * u.z + u.w * u.w;
  }
  return ss;
}

// One block per row (D a multiple of 4, at most 8 float4 per thread), the row in registers. The
// weight is loaded before waiting for the kernel that produced x (it is read-only), so its memory
// latency overlaps that kernel's tail. In place is allowed (the sum is complete before any write).
constexpr int kNormPerThread = 8;
__global__ void rmsnorm_kernel(const float* x, const float* w, float eps, int64_t D, float* out) {
  __shared__ float red[32];
  pdl_launch_dependents();
  const int64_t n4 = D / 4;
  const float4* w4 = reinterpret_cast<const float4*>(w);
  float4 g[kNormPerThread], a[kNormPerThread];
#pragma unroll
  for (int i = 0; i < kNormPerThread; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * blockDim.x;
    g[i] = ld_cg_ordered(w4 + min(j, n4 - 1));  // ahead of pdl_wait() (cache_policy.cuh)
  }
  pdl_wait();
  const float4* xr = reinterpret_cast<const float4*>(x + blockIdx.x * D);
  float ss = 0;
#pragma unroll
  for (int i = 0; i < kNormPerThread; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * blockDim.x;
    a[i] = j < n4 ? xr[j] : make_float4(0, 0, 0, 0);
  }
#pragma unroll
  for (int i = 0; i < kNormPerThread; ++i) ss += a[i].x * a[i].x + a[i].y * a[i].y + a[i].z * a[i].z + a[i].w * a[i].w;
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(D) + eps);
  float4* o = reinterpret_cast<float4*>(out + blockIdx.x * D);
#pragma unroll
  for (int i = 0; i < kNormPerThread; ++i) {
    const int64_t j = threadIdx.x + int64_t(i) * blockDim.x;
    if (j < n4)
      o[j] = make_float4(g[i].x * (a[i].x * inv), g[i].y * (a[i].y * inv), g[i].z * (a[i].z * inv),
                         g[i].w * (a[i].w * inv));
  }
}

// Any D: one element at a time.
__global__ void rmsnorm_any_kernel(const float* x, const float* w, float eps, int64_t D, float* out) {
  __shared__ float red[32];
  pdl_launch_dependents();
  pdl_wait();
  const float* xr = x + blockIdx.x * D;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(D) + eps);
  float* o = out + blockIdx.x * D;
  for (int64_t i = threadIdx.x; i < D; i += blockDim.x) o[i] = w[i] * (xr[i] * inv);
}

// One thread per (token, head, rotated pair).
__global__ void rope_kernel(float* x, const int32_t* pos, int64_t T, int n_heads, int head_dim, int rotary_dim,
                            const float* inv_freq) {
  const int half = rotary_dim / 2;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= T * n_heads * half) return;
  const int d = int(i % half);
  const int64_t th = i / half;
  const int64_t t = th / n_heads;
  const float f = float(pos[t]) * inv_freq[d];
  float sn, cs;
  sincosf(f, &sn, &cs);
  float* v = x + th * head_dim;
  const float a = v[d], b = v[d + half];
  v[d] = a * cs - b * sn;
  v[d + half] = b * cs + a * sn;
}

// One block per token for q (blockIdx.y 0) and one for k (1), the row in registers (at most
// kNormPerThread elements per thread): each thread loads its elements and their RoPE partners
// (weights before waiting for the producer of q and k), the block sums the squares, and only
// then (block_sum synchronises) does anyone write, so the in-place update reads no rewritten
// value. The angles depend on position and frequency only: one sincos per frequency.
__global__ void qk_norm_rope_reg_kernel(float* q, float* k, const float* qw, const float* kw, float eps,
                                        const int32_t* pos, int n_heads, int n_kv, int head_dim, int rotary_dim,
                                        const float* inv_freq) {
  __shared__ float red[32];
  __shared__ float sn_s[kMaxRotaryHalf], cs_s[kMaxRotaryHalf];
  pdl_launch_dependents();
  const int64_t t = blockIdx.x;
  const bool is_q = blockIdx.y == 0;
  const int dim = (is_q ? n_heads : n_kv) * head_dim;
  const float* w = is_q ? qw : kw;
  const int half = rotary_dim / 2;
  // partner of element i: +half for the first half of the rotated dims, -half for the second
  auto partner = [&](int i) {
    const int d = i % head_dim;
    return d < half ? i + half : d < rotary_dim ? i - half : i;
  };
  // Indices first (clamped into the row), then every load at once: with the loads guarded and
  // the partner's index (an integer division) computed between them, the compiler issued them one
  // round trip after another (4.8 us per launch; bench/probes/chain_latency.cu). Coherent loads
  // kept in order (cache_policy.cuh): ptxas moved the wait above __ldg's of the weights.
  int ii[kNormPerThread], pi[kNormPerThread];
#pragma unroll
  for (int j = 0; j < kNormPerThread; ++j) {
    ii[j] = min(int(threadIdx.x) + j * int(blockDim.x), dim - 1);
    pi[j] = partner(ii[j]);
  }
  float wv[kNormPerThread], wp[kNormPerThread], xv[kNormPerThread], xp[kNormPerThread];
#pragma unroll
  for (int j = 0; j < kNormPerThread; ++j) wv[j] = ld_cg_ordered(w + ii[j]), wp[j] = ld_cg_ordered(w + pi[j]);
  // The angles before the wait too: positions come from the host (a copy, which every kernel in
  // flight precedes; no kernel writes them) and the frequencies are a constant table.
  const float p = float(__float_as_int(ld_cg_ordered(reinterpret_cast<const float*>(pos + t))));
  for (int d = threadIdx.x; d < half; d += blockDim.x) sincosf(p * ld_cg_ordered(inv_freq + d), &sn_s[d], &cs_s[d]);
  pdl_wait();
  float* row = (is_q ? q : k) + t * dim;
#pragma unroll
  for (int j = 0; j < kNormPerThread; ++j) xv[j] = ld_cg_ordered(row + ii[j]), xp[j] = ld_cg_ordered(row + pi[j]);
  float ss = 0;
#pragma unroll
  for (int j = 0; j < kNormPerThread; ++j)
    if (int(threadIdx.x) + j * int(blockDim.x) < dim) ss += xv[j] * xv[j];
  ss = block_sum(ss, red);  // synchronises: every read above is done, the angles are visible
  const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
#pragma unroll
  for (int j = 0; j < kNormPerThread; ++j) {
    const int i = threadIdx.x + j * blockDim.x;
    if (i >= dim) continue;
    const int d = i % head_dim;
    const float self = xv[j] * inv * wv[j];
    if (d >= rotary_dim) {
      row[i] = self;
    } else if (d < half) {  // x[d] = a cos - b sin, a = self, b = partner
      const float b = xp[j] * inv * wp[j];
      row[i] = self * cs_s[d] - b * sn_s[d];
    } else {  // x[d + half] = b cos + a sin, b = self, a = partner
      const float a = xp[j] * inv * wp[j];
      row[i] = self * cs_s[d - half] + a * sn_s[d - half];
    }
  }
}

// One block per token for q (blockIdx.y 0) and one for k (1): the block sums the squares of the
// whole row (the norm is over all heads), and only after that sum is complete (block_sum
// synchronises) normalises and rotates the row in place, so no thread reads a value another one
// has already rewritten.
__global__ void qk_norm_rope_kernel(float* q, float* k, const float* qw, const float* kw, float eps,
                                    const int32_t* pos, int n_heads, int n_kv, int head_dim, int rotary_dim,
                                    const float* inv_freq) {
  __shared__ float red[32];
  pdl_launch_dependents();
  pdl_wait();
  const int64_t t = blockIdx.x;
  const bool is_q = blockIdx.y == 0;
  const int dim = (is_q ? n_heads : n_kv) * head_dim;
  float* row = (is_q ? q : k) + t * dim;
  const float* w = is_q ? qw : kw;
  // The rotation angles depend on the position and the frequency only: one sincos per frequency
  // (shared by all heads) instead of one per element.
  __shared__ float sn_s[kMaxRotaryHalf], cs_s[kMaxRotaryHalf];
  const int half = rotary_dim / 2;
  const float p = float(pos[t]);
  for (int d = threadIdx.x; d < half; d += blockDim.x) sincosf(p * inv_freq[d], &sn_s[d], &cs_s[d]);
  const float ss = block_sum(row_sum_sq(reinterpret_cast<const float4*>(row), dim / 4), red);  // synchronises
  const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    const int d = i % head_dim;
    if (d >= half && d < rotary_dim) continue;  // written with its partner d - half
    const float a = row[i] * inv * w[i];
    if (d >= rotary_dim) {
      row[i] = a;
      continue;
    }
    const float b = row[i + half] * inv * w[i + half];
    const float sn = sn_s[d], cs = cs_s[d];
    row[i] = a * cs - b * sn;
    row[i + half] = b * cs + a * sn;
  }
}

__global__ void add_kernel(const float* a, const float* b, float* out, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

__global__ void gather_kernel(const float* x, const int32_t* rows, int64_t D, float* out) {
  const int64_t r = rows[blockIdx.x];
  for (int64_t j = threadIdx.x; j < D; j += blockDim.x) out[blockIdx.x * D + j] = x[r * D + j];
}

__global__ void fill_kernel(float* p, float v, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = v;
}

unsigned blocks(int64_t n, int threads) { return unsigned((n + threads - 1) / threads); }

}  // namespace

void embedding(const DevWeight& table, const int32_t* ids, int64_t T, float* out, int32_t* bad_id, cudaStream_t s) {
  if (T == 0) return;
  dispatch_format(table, [&](auto f) {
    launch(embedding_kernel<decltype(f)::value>, dim3(unsigned(T)), dim3(128), 0, s, table, ids, out, bad_id);
  });
}

void rmsnorm(const float* x, const float* w, float eps, int64_t T, int64_t D, float* out, cudaStream_t s) {
  if (T == 0) return;
  const dim3 threads(D >= 2048 ? 384 : 128);
  if (D % 4 == 0 && D / 4 <= int64_t(kNormPerThread) * threads.x) launch(rmsnorm_kernel, dim3(unsigned(T)), threads, 0, s, x, w, eps, D, out);
  else launch(rmsnorm_any_kernel, dim3(unsigned(T)), threads, 0, s, x, w, eps, D, out);
}

void rope(float* x, const int32_t* pos, int64_t T, int n_heads, int head_dim, int rotary_dim, const float* inv_freq,
          cudaStream_t s) {
  const int64_t n = T * n_heads * (rotary_dim / 2);
  if (n == 0) return;
  rope_kernel<<<blocks(n, 256), 256, 0, s>>>(x, pos, T, n_heads, head_dim, rotary_dim, inv_freq);
  CUDA_LAUNCH_CHECK();
}

void qk_norm_rope(float* q, float* k, const float* qw, const float* kw, float eps, const int32_t* pos, int64_t T,
                  int n_heads, int n_kv, int head_dim, int rotary_dim, const float* inv_freq, cudaStream_t s) {
  if (T == 0) return;
  if (head_dim % 4 != 0 || rotary_dim / 2 > kMaxRotaryHalf)
    fail_cuda(cudaErrorInvalidValue, "qk_norm_rope: head_dim not a multiple of 4 or rotary_dim too large", __FILE__,
              __LINE__);
  const int widest = std::max(n_heads, n_kv) * head_dim;
  if (widest <= kNormPerThread * 1024) {
    const unsigned threads = unsigned(std::min(1024, std::max(128, (widest / kNormPerThread + 31) / 32 * 32)));
    launch(qk_norm_rope_reg_kernel, dim3(unsigned(T), 2u), dim3(threads), 0, s, q, k, qw, kw, eps, pos, n_heads, n_kv,
           head_dim, rotary_dim, inv_freq);
    return;
  }
  launch(qk_norm_rope_kernel, dim3(unsigned(T), 2u), dim3(512), 0, s, q, k, qw, kw, eps, pos,
         n_heads, n_kv, head_dim, rotary_dim, inv_freq);
}

void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  add_kernel<<<blocks(n, 256), 256, 0, s>>>(a, b, out, n);
  CUDA_LAUNCH_CHECK();
}

void gather_rows(const float* x, const int32_t* rows, int64_t n, int64_t D, float* out, cudaStream_t s) {
  if (n == 0) return;
  gather_kernel<<<unsigned(n), 256, 0, s>>>(x, rows, D, out);
  CUDA_LAUNCH_CHECK();
}

void fill_f32(float* p, float v, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  fill_kernel<<<blocks(n, 256), 256, 0, s>>>(p, v, n);
  CUDA_LAUNCH_CHECK();
}

}  // namespace moeq::cuda
