// Building blocks of the decode (few-token) products. Each lane takes one 32-input group of a
// weight row per step (one 16-byte load for 4-bit codes) and needs the matching 32 activations:
// read straight from global memory, the 32 lanes would touch 32 different cache lines per load
// (32 L1 wavefronts). So the block first stages the activations in shared memory, padded to 36
// floats per group: lane i's 16-byte reads then start 144*i bytes apart, which spreads the 8
// lanes of each quarter-warp phase over all 32 banks (conflict-free).
#pragma once
#include "backend/cuda/formats.cuh"
#include "backend/cuda/kernels/cache_policy.cuh"

namespace moeq::cuda {

constexpr int kPadGroup = 36;

__host__ __device__ constexpr int64_t staged_floats(int64_t cols) { return cols / 32 * kPadGroup; }

// xs[t] <- x[t * ldx .. + cols), for t < T, padded.
__device__ __forceinline__ void stage_vectors(float* xs, const float* x, int64_t ldx, int64_t cols, int T) {
  const int64_t per = cols / 4;  // float4 per vector
  for (int64_t i = threadIdx.x; i < T * per; i += blockDim.x) {
    const int64_t t = i / per, c4 = i % per;
    const float4 v = __ldg(reinterpret_cast<const float4*>(x + t * ldx) + c4);
    *reinterpret_cast<float4*>(xs + t * staged_floats(cols) + (c4 / 8) * kPadGroup + (c4 % 8) * 4) = v;
  }
}

// sum_i w[i] * xs_group[i] for the staged group g of one vector.
__device__ __forceinline__ float dot_staged(const float w[32], const float* xs, int64_t g) {
  const float4* p = reinterpret_cast<const float4*>(xs + g * kPadGroup);
  float a = 0;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float4 v = p[k];
    a = fmaf(w[4 * k], v.x, a);
    a = fmaf(w[4 * k + 1], v.y, a);
    a = fmaf(w[4 * k + 2], v.z, a);
    a = fmaf(w[4 * k + 3], v.w, a);
  }
  return a;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

}  // namespace moeq::cuda

namespace moeq::cuda {

// Small integers as floats without the quarter-rate I2F: the bits of 2^23 + n, minus 2^23 + bias.
__device__ __forceinline__ float small_int(uint32_t n, float bias_plus_2p23) {
  return __uint_as_float(0x4B000000u | n) - bias_plus_2p23;
}

// Loads the codebook of a LLOYD weight (row 0; per-row codebooks are read per row in group_dot)
// as floats into shared memory.
__device__ __forceinline__ void stage_codebook(float* cbs, const DevWeight& w) {
  if (w.fmt != Fmt::LLOYD) return;
  const int n = 1 << w.bits;
  for (int i = threadIdx.x; i < n; i += blockDim.x) cbs[i] = f16_bits(w.codebook[i]);
}

// The raw bytes of one 32-input group (what a lane loads per step), loaded apart from their use so
// that a warp can put the loads of several rows in flight before the first is needed.
struct RawGroup {
  uint4 a, b;  // up to 32 bytes (q8, fp8); 4-bit codes use a; 2-bit a.x/a.y; 3-bit a.x..a.z
  float s;     // group scale (packed formats); unused otherwise
};

// Weight bytes are loaded with an L2 policy `pol` (cache_policy.cuh): evict-first for a decode's
// single pass over the weights, the default where tiles re-read the same rows (the prefill GEMM).

// The f16 scale of group g (32 inputs) of row r of a packed (int / Lloyd) weight.
__device__ __forceinline__ float group_scale(const DevWeight& w, int64_t r, int64_t g, uint64_t pol) {
  return f16_bits(ld_hint(static_cast<const uint16_t*>(w.scales) + packed_scale_index(w, r, g), pol));
}

template <int F>
__device__ __forceinline__ RawGroup load_group(const DevWeight& w, int64_t r, int64_t g, uint64_t pol) {
  RawGroup raw{};
  if constexpr (F == kFP8) {  // the block scale is read at decode time
    const uint4* p = reinterpret_cast<const uint4*>(w.q + r * w.row_bytes + g * 32);
    raw.a = ld_hint(p, pol);
    raw.b = ld_hint(p + 1, pol);
  } else if constexpr (F == kQ8) {
    const uint4* p = reinterpret_cast<const uint4*>(w.q + r * w.row_bytes + g * 32);
    raw.a = ld_hint(p, pol);
    raw.b = ld_hint(p + 1, pol);
    raw.s = f16_bits(ld_hint(static_cast<const uint16_t*>(w.scales) + r * (w.cols / 32) + g, pol));
  } else if constexpr (F >= kINT2) {
    constexpr int b = code_bits<F>();
    const uint8_t* base = w.q + packed_group_offset(w, r, g, b);
    if constexpr (b == 4) {
      raw.a = ld_hint(reinterpret_cast<const uint4*>(base), pol);
    } else if constexpr (b == 2) {
      const uint2 v = ld_hint(reinterpret_cast<const uint2*>(base), pol);
      raw.a.x = v.x, raw.a.y = v.y;
    } else {
      const uint32_t* p = reinterpret_cast<const uint32_t*>(base);
      raw.a.x = ld_hint(p, pol), raw.a.y = ld_hint(p + 1, pol), raw.a.z = ld_hint(p + 2, pol);
    }
    raw.s = group_scale(w, r, g, pol);
  }
  return raw;
}

// s * sum_i level(code_i) * xg[i] for group g of row r: the decode products' inner step. The
// group scale is applied once per group, integer codes become floats with small_int, and Lloyd
// levels come from the float codebook in shared memory (`cbs`; per-row codebooks are read from
// global memory). Equal to dequant32 + dot up to float rounding.
// A staged group of activations into registers (once per group, for every row that uses it).
__device__ __forceinline__ void load_x32(const float* xg, float xv[32]) {
  const float4* x4 = reinterpret_cast<const float4*>(xg);
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float4 x = x4[k];
    xv[4 * k] = x.x, xv[4 * k + 1] = x.y, xv[4 * k + 2] = x.z, xv[4 * k + 3] = x.w;
  }
}

template <int F>
__device__ __forceinline__ float group_dot(const DevWeight& w, int64_t r, int64_t g, const RawGroup& raw,
                                           const float xv[32], const float* cbs) {
  if constexpr (F == kF32 || F == kBF16 || F == kFP8) {
    float v[32];
    dequant32<F>(w, r, g, v);
    float a = 0;
#pragma unroll
    for (int i = 0; i < 32; ++i) a = fmaf(v[i], xv[i], a);
    return a;
  } else if constexpr (F == kQ8) {
    const uint32_t u[8] = {raw.a.x, raw.a.y, raw.a.z, raw.a.w, raw.b.x, raw.b.y, raw.b.z, raw.b.w};
    float a = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t bb = u[k] ^ 0x80808080u;  // int8 -> biased uint8
#pragma unroll
      for (int j = 0; j < 4; ++j) a = fmaf(small_int((bb >> (8 * j)) & 0xff, 8388608.0f + 128), xv[4 * k + j], a);
    }
    return a * raw.s;
  } else {
    constexpr bool lloyd = F >= kL2;
    constexpr int b = code_bits<F>();
    const uint32_t u[4] = {raw.a.x, raw.a.y, raw.a.z, raw.a.w};
    const uint16_t* row_cb = nullptr;
    if constexpr (lloyd)
      if (w.cb_rows != 1) row_cb = w.codebook + r * (1 << b);
    float a = 0;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const uint32_t c = packed_code<b>(u, i);
      float level;
      if constexpr (lloyd) level = row_cb ? f16_bits(__ldg(row_cb + c)) : cbs[c];
      else level = small_int(c, 8388608.0f + float(1 << (b - 1)));
      a = fmaf(level, xv[i], a);
    }
    return a * raw.s;
  }
}

}  // namespace moeq::cuda
