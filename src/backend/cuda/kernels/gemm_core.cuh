// The tensor-core product used by prefill: C[m][n] = sum_k A[m][k] W[n][k] on bf16 tiles, f32
// accumulation (mma.sync m16n8k16). Activations are f32 in memory and rounded to bf16 as a tile is
// staged; weights are dequantized from their packed format straight into the shared-memory tile
// (one 32-input group per row per step), so no dequantized copy of a weight ever exists.
// Tile: 64 (m) x 64 (n) x 32 (k), 4 warps as 2 x 2, each 32 x 32.
#pragma once
#include <cuda_bf16.h>

#include "backend/cuda/formats.cuh"

namespace moeq::cuda {

constexpr int kBM = 64, kBN = 64, kBK = 32, kGemmThreads = 128;
constexpr int kPad = 8;  // bf16 elements of row padding: conflict-free fragment loads

struct GemmTile {
  // Which rows of A the tile's m-rows are (a_rows null: m0 + i), how many are valid.
  int64_t m0 = 0;
  int rows = 0;
};

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ void mma_bf16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Stages the A tile: rows a_row(i) (i < rows; zeros beyond), inputs [k0, k0 + 32), as bf16.
template <typename RowOf>
__device__ __forceinline__ void stage_a(__nv_bfloat16 (*As)[kBK + kPad], const float* a, int64_t lda, int rows,
                                        int64_t k0, RowOf a_row) {
  // 64 rows x 32 floats = 512 float4: 4 per thread.
#pragma unroll
  for (int it = 0; it < 4; ++it) {
    const int idx = threadIdx.x + it * kGemmThreads;
    const int i = idx / 8, c4 = idx % 8;
    float4 v = make_float4(0, 0, 0, 0);
    if (i < rows) v = __ldg(reinterpret_cast<const float4*>(a + a_row(i) * lda + k0) + c4);
    uint32_t* dst = reinterpret_cast<uint32_t*>(&As[i][c4 * 4]);
    dst[0] = pack_bf16(v.x, v.y);
    dst[1] = pack_bf16(v.z, v.w);
  }
}

// Stages the W tile: weight rows [n0, n0 + 64) (zeros beyond w.rows), group k0/32, as bf16.
// Two threads per row, each dequantizing the whole group and keeping its half (the group's load
// is one 16-byte vector for 4-bit codes, so the duplicate read is cheap and stays in L1).
template <int F>
__device__ __forceinline__ void stage_w(__nv_bfloat16 (*Bs)[kBK + kPad], const DevWeight& w, int64_t n0, int64_t k0) {
  const int i = threadIdx.x / 2, half = threadIdx.x % 2;
  const int64_t r = n0 + i;
  uint32_t* dst = reinterpret_cast<uint32_t*>(&Bs[i][half * 16]);
  if (r < w.rows) {
    float v[32];
    dequant32<F>(w, r, k0 / 32, v);
    // Compile-time indices only (a run-time half * 16 would move v to local memory).
#pragma unroll
    for (int j = 0; j < 8; ++j)
      dst[j] = half ? pack_bf16(v[16 + 2 * j], v[17 + 2 * j]) : pack_bf16(v[2 * j], v[2 * j + 1]);
  } else {
#pragma unroll
    for (int j = 0; j < 8; ++j) dst[j] = 0u;
  }
}

// acc[mi][ni][4] += As (warp's 32 rows) x Bs (warp's 32 rows)^T over the 32 staged inputs.
__device__ __forceinline__ void mma_tile(float acc[2][4][4], const __nv_bfloat16 (*As)[kBK + kPad],
                                         const __nv_bfloat16 (*Bs)[kBK + kPad]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const int r = lane / 4, c = (lane % 4) * 2;
#pragma unroll
  for (int kk = 0; kk < kBK; kk += 16) {
    uint32_t a[2][4], b[4][2];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi) {
      const int m = wm + mi * 16 + r;
      a[mi][0] = *reinterpret_cast<const uint32_t*>(&As[m][kk + c]);
      a[mi][1] = *reinterpret_cast<const uint32_t*>(&As[m + 8][kk + c]);
      a[mi][2] = *reinterpret_cast<const uint32_t*>(&As[m][kk + c + 8]);
      a[mi][3] = *reinterpret_cast<const uint32_t*>(&As[m + 8][kk + c + 8]);
    }
#pragma unroll
    for (int ni = 0; ni < 4; ++ni) {
      const int n = wn + ni * 8 + r;
      b[ni][0] = *reinterpret_cast<const uint32_t*>(&Bs[n][kk + c]);
      b[ni][1] = *reinterpret_cast<const uint32_t*>(&Bs[n][kk + c + 8]);
    }
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) mma_bf16(acc[mi][ni], a[mi], b[ni]);
  }
}

// Calls out(i, n, value) for every accumulator element whose tile row i < rows and n < n_limit.
template <typename Out>
__device__ __forceinline__ void for_each_acc(const float acc[2][4][4], int64_t n0, int rows, int64_t n_limit, Out out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 2) * 32, wn = (warp % 2) * 32;
  const int r = lane / 4, c = (lane % 4) * 2;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = wm + mi * 16 + r + (e >= 2 ? 8 : 0);
        const int64_t n = n0 + wn + ni * 8 + c + (e & 1);
        if (i < rows && n < n_limit) out(i, n, acc[mi][ni][e]);
      }
}

}  // namespace moeq::cuda
