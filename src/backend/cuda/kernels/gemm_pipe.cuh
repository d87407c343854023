// The pipelined tensor-core product used by prefill (dense linears and the per-expert products):
// C[m][n] = sum_k A[m][k] W[n][k] with f16 operands and f32 accumulation (mma.sync m16n8k16).
// Tile 64 (m) x 256 (n) x 32 (k) for one weight, or 64 x 128 x 32 for two weights sharing A (the
// experts' w1 and w3, SwiGLU fused in the epilogue); 8 warps as 2 x 4. Two shared-memory stages:
// while the tensor cores work on one, every thread has the next step's activations (f32, rounded
// to f16 when stored) and one weight row's packed 32-input group in registers, decoding it only
// when it is stored. No dequantized copy of a weight exists anywhere.
#pragma once
#include <cuda_fp16.h>

#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels/gemm_core.cuh"
#include "backend/cuda/kernels/gemv_core.cuh"

namespace moeq::cuda {

constexpr int kPM = 64, kPK = 32, kPThreads = 256, kPRow = kPK + kPad;

template <bool DUAL>
struct PipeShape {
  static constexpr int kN = DUAL ? 128 : 256;  // weight rows per tile (per weight)
  static constexpr int kWN = kN / 4;           // per warp (4 warps along n)
  static constexpr int kNT = kWN / 8;          // mma n-tiles per warp
  static constexpr size_t smem_bytes() {
    return sizeof(__half) * size_t(2) * (kPM + (DUAL ? 2 : 1) * kN) * kPRow;
  }
};

// One weight row's 32-input group as f16, from its raw bytes (packed formats) or straight from
// memory (f32 / bf16 / fp8, which the pipeline reads at store time).
template <int F>
__device__ __forceinline__ void decode_group_f16(const DevWeight& w, int64_t r, int64_t g, const RawGroup& raw,
                                                 const float* cbs, __half* dst) {
  float v[32];
  if constexpr (F == kQ8) {
    const uint32_t u[8] = {raw.a.x, raw.a.y, raw.a.z, raw.a.w, raw.b.x, raw.b.y, raw.b.z, raw.b.w};
#pragma unroll
    for (int i = 0; i < 32; ++i) v[i] = float(int8_t(u[i / 4] >> (8 * (i % 4)))) * raw.s;
  } else if constexpr (F >= kINT2) {
    constexpr bool lloyd = F >= kL2;
    constexpr int b = code_bits<F>();
    const uint32_t u[4] = {raw.a.x, raw.a.y, raw.a.z, raw.a.w};
    const uint16_t* row_cb = nullptr;
    if constexpr (lloyd)
      if (w.cb_rows != 1) row_cb = w.codebook + r * (1 << b);
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const uint32_t c = packed_code<b>(u, i);
      float level;
      if constexpr (lloyd) level = row_cb ? f16_bits(__ldg(row_cb + c)) : cbs[c];
      else level = float(int(c) - (1 << (b - 1)));
      v[i] = level * raw.s;
    }
  } else if constexpr (F == kFP8) {
    const int64_t bc = (w.cols + w.group - 1) / w.group;
    const float s = static_cast<const float*>(w.scales)[(r / w.block_rows) * bc + g * 32 / w.group];
    const uint32_t u[8] = {raw.a.x, raw.a.y, raw.a.z, raw.a.w, raw.b.x, raw.b.y, raw.b.z, raw.b.w};
#pragma unroll
    for (int i = 0; i < 32; ++i) v[i] = fp8_value(uint8_t(u[i / 4] >> (8 * (i % 4)))) * s;
  } else {
    dequant32<F>(w, r, g, v);
  }
  uint32_t* d = reinterpret_cast<uint32_t*>(dst);
#pragma unroll
  for (int j = 0; j < 16; ++j) d[j] = pack_f16(v[2 * j], v[2 * j + 1]);
}

// The main loop. A rows come from a_row(i) (i < rows), the weight(s) from w (and w3 when DUAL);
// acc (and acc3) receive the warp's 32 x kWN results.
template <int F, bool DUAL, typename RowOf>
__device__ __forceinline__ void gemm_pipeline(const float* a, int64_t lda, int rows, RowOf a_row, const DevWeight& w,
                                              const DevWeight& w3, int64_t n0, int64_t K,
                                              float acc[2][PipeShape<DUAL>::kNT][4],
                                              float acc3[2][PipeShape<DUAL>::kNT][4], __half* smem,
                                              const float* cbs, const float* cbs3) {
  using S = PipeShape<DUAL>;
  auto As = [&](int st, int r) { return smem + (size_t(st) * kPM + r) * kPRow; };
  auto Bs = [&](int st, int which, int r) {
    return smem + size_t(2) * kPM * kPRow + ((size_t(st) * (DUAL ? 2 : 1) + which) * S::kN + r) * kPRow;
  };
  // This thread's share of a stage: two float4 of A (rows tid/8 and tid/8 + 32), one weight row.
  const int tid = threadIdx.x;
  const int ar = tid / 8, ac = (tid % 8) * 4;
  const int which = DUAL ? tid / S::kN : 0;
  const int wr = tid % S::kN;
  const bool has_w = DUAL || tid < S::kN;
  const DevWeight& wt = which ? w3 : w;
  const float* cb = which ? cbs3 : cbs;
  const int64_t row = min(n0 + wr, wt.rows - 1);
  const bool row_ok = n0 + wr < wt.rows;
  const int64_t a0 = ar < rows ? a_row(ar) : -1, a1 = ar + 32 < rows ? a_row(ar + 32) : -1;

  float4 ra0, ra1;
  RawGroup rw{};
  auto load = [&](int64_t k0) {
    ra0 = a0 >= 0 ? __ldg(reinterpret_cast<const float4*>(a + a0 * lda + k0 + ac)) : make_float4(0, 0, 0, 0);
    ra1 = a1 >= 0 ? __ldg(reinterpret_cast<const float4*>(a + a1 * lda + k0 + ac)) : make_float4(0, 0, 0, 0);
    if (has_w) rw = load_group<F>(wt, row, k0 / 32, l2_policy(false));  // tiles re-read rows: keep them in L2
  };
  auto store = [&](int st, int64_t k0) {
    uint32_t* d0 = reinterpret_cast<uint32_t*>(As(st, ar) + ac);
    d0[0] = pack_f16(ra0.x, ra0.y), d0[1] = pack_f16(ra0.z, ra0.w);
    uint32_t* d1 = reinterpret_cast<uint32_t*>(As(st, ar + 32) + ac);
    d1[0] = pack_f16(ra1.x, ra1.y), d1[1] = pack_f16(ra1.z, ra1.w);
    if (has_w) {
      __half* dst = Bs(st, which, wr);
      if (row_ok) {
        decode_group_f16<F>(wt, row, k0 / 32, rw, cb, dst);
      } else {
        uint32_t* z = reinterpret_cast<uint32_t*>(dst);
#pragma unroll
        for (int j = 0; j < 16; ++j) z[j] = 0u;
      }
    }
  };

  const int warp = tid / 32, lane = tid % 32;
  const int wm = (warp / 4) * 32, wn = (warp % 4) * S::kWN;
  const int fr = lane / 4, fc = (lane % 4) * 2;
  load(0);
  store(0, 0);
  int st = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kPK) {
    __syncthreads();
    const bool more = k0 + kPK < K;
    if (more) load(k0 + kPK);
#pragma unroll
    for (int kk = 0; kk < kPK; kk += 16) {
      uint32_t af[2][4];
#pragma unroll
      for (int mi = 0; mi < 2; ++mi) {
        const __half* r0 = As(st, wm + mi * 16 + fr);
        const __half* r8 = As(st, wm + mi * 16 + fr + 8);
        af[mi][0] = *reinterpret_cast<const uint32_t*>(r0 + kk + fc);
        af[mi][1] = *reinterpret_cast<const uint32_t*>(r8 + kk + fc);
        af[mi][2] = *reinterpret_cast<const uint32_t*>(r0 + kk + fc + 8);
        af[mi][3] = *reinterpret_cast<const uint32_t*>(r8 + kk + fc + 8);
      }
#pragma unroll
      for (int ni = 0; ni < S::kNT; ++ni) {
        const __half* br = Bs(st, 0, wn + ni * 8 + fr);
        const uint32_t bf[2] = {*reinterpret_cast<const uint32_t*>(br + kk + fc),
                                *reinterpret_cast<const uint32_t*>(br + kk + fc + 8)};
        mma_f16(acc[0][ni], af[0], bf);
        mma_f16(acc[1][ni], af[1], bf);
        if constexpr (DUAL) {
          const __half* b3 = Bs(st, 1, wn + ni * 8 + fr);
          const uint32_t bf3[2] = {*reinterpret_cast<const uint32_t*>(b3 + kk + fc),
                                   *reinterpret_cast<const uint32_t*>(b3 + kk + fc + 8)};
          mma_f16(acc3[0][ni], af[0], bf3);
          mma_f16(acc3[1][ni], af[1], bf3);
        }
      }
    }
    if (more) store(st ^ 1, k0 + kPK);
    st ^= 1;
  }
}

// Calls out(i, n, value[, value3]) for each accumulator element with tile row i < rows, n < n_limit.
template <bool DUAL, typename Out>
__device__ __forceinline__ void pipe_epilogue(const float acc[2][PipeShape<DUAL>::kNT][4],
                                              const float acc3[2][PipeShape<DUAL>::kNT][4], int64_t n0, int rows,
                                              int64_t n_limit, Out out) {
  using S = PipeShape<DUAL>;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / 4) * 32, wn = (warp % 4) * S::kWN;
  const int fr = lane / 4, fc = (lane % 4) * 2;
#pragma unroll
  for (int mi = 0; mi < 2; ++mi)
#pragma unroll
    for (int ni = 0; ni < S::kNT; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = wm + mi * 16 + fr + (e >= 2 ? 8 : 0);
        const int64_t n = n0 + wn + ni * 8 + fc + (e & 1);
        if (i < rows && n < n_limit) out(i, n, acc[mi][ni][e], DUAL ? acc3[mi][ni][e] : 0.0f);
      }
}

}  // namespace moeq::cuda
