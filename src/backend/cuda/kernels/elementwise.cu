// Small kernels: embedding lookup, RMSNorm, partial RoPE, add, row gather.
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels.h"

namespace moeq::cuda {
namespace {

template <int F>
__global__ void embedding_kernel(DevWeight table, const int32_t* ids, float* out, int32_t* bad_id) {
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

__device__ __forceinline__ float block_sum(float v, float* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nw = blockDim.x / 32;
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  return v;
}

// One block per row. In place is allowed (the sum is complete before any write).
__global__ void rmsnorm_kernel(const float* x, const float* w, float eps, int64_t D, float* out) {
  __shared__ float red[32];
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

// One block per (token, head) of q and of k: the block sums the squares of its whole row (the
// norm is over all heads; rows are small and stay in L2), then normalises and rotates its head.
__global__ void qk_norm_rope_kernel(float* q, float* k, const float* qw, const float* kw, float eps,
                                    const int32_t* pos, int n_heads, int n_kv, int head_dim, int rotary_dim,
                                    const float* inv_freq) {
  __shared__ float red[32];
  const int64_t t = blockIdx.x;
  const int hh = blockIdx.y;
  const bool is_q = hh < n_heads;
  const int dim = (is_q ? n_heads : n_kv) * head_dim;
  float* row = (is_q ? q : k) + t * dim;
  const float* w = is_q ? qw : kw;
  const int h = is_q ? hh : hh - n_heads;
  float ss = 0;
  for (int i = threadIdx.x * 4; i < dim; i += blockDim.x * 4) {
    const float4 v = *reinterpret_cast<const float4*>(row + i);
    ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  ss = block_sum(ss, red);
  const float inv = 1.0f / sqrtf(ss / float(dim) + eps);
  const int half = rotary_dim / 2;
  const float p = float(pos[t]);
  float* x = row + h * head_dim;
  const float* wh = w + h * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    if (d >= half && d < rotary_dim) continue;  // written with its partner d - half
    const float a = x[d] * inv * wh[d];
    if (d >= rotary_dim) {
      x[d] = a;
      continue;
    }
    const float b = x[d + half] * inv * wh[d + half];
    float sn, cs;
    sincosf(p * inv_freq[d], &sn, &cs);
    x[d] = a * cs - b * sn;
    x[d + half] = b * cs + a * sn;
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
    embedding_kernel<decltype(f)::value><<<unsigned(T), 128, 0, s>>>(table, ids, out, bad_id);
  });
  CUDA_LAUNCH_CHECK();
}

void rmsnorm(const float* x, const float* w, float eps, int64_t T, int64_t D, float* out, cudaStream_t s) {
  if (T == 0) return;
  rmsnorm_kernel<<<unsigned(T), D >= 1024 ? 512 : 128, 0, s>>>(x, w, eps, D, out);
  CUDA_LAUNCH_CHECK();
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
  qk_norm_rope_kernel<<<dim3(unsigned(T), unsigned(n_heads + n_kv)), 128, 0, s>>>(q, k, qw, kw, eps, pos, n_heads,
                                                                                    n_kv, head_dim, rotary_dim, inv_freq);
  CUDA_LAUNCH_CHECK();
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
