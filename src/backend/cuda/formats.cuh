// Device-side dequantization: a group of 32 consecutive inputs of one row of a DevWeight, as
// floats, bit-identical to the CPU reference (every weight is one f32 product level * scale).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "backend/cuda/dev_weight.h"

namespace moeq::cuda {

__device__ __forceinline__ float f16_bits(uint16_t h) { return __half2float(__ushort_as_half(h)); }

// e4m3fn -> f32: as f16 bits shifted (one exponent bit fewer), times 2^8. Exact.
__device__ __forceinline__ float fp8_value(uint8_t v) {
  const uint16_t h = uint16_t(((v & 0x80) << 8) | ((v & 0x7f) << 7));
  return f16_bits(h) * 256.0f;
}

// Expert e's view of a stacked weight.
__device__ __forceinline__ DevWeight expert_view(DevWeight w, int e) {
  w.q += int64_t(e) * w.q_stride;
  if (w.fmt == Fmt::FP8_B128) w.scales = static_cast<const float*>(w.scales) + int64_t(e) * w.s_stride;
  else w.scales = static_cast<const uint16_t*>(w.scales) + int64_t(e) * w.s_stride;
  if (w.codebook) w.codebook += int64_t(e) * w.cb_stride;
  return w;
}

// Packed (INT / LLOYD) weights: the byte offset of group g32 (32 inputs, b bits each) of row r,
// and the index of that group's scale, in either layout (DevWeight::panels).
__device__ __forceinline__ int64_t packed_group_offset(const DevWeight& w, int64_t r, int64_t g32, int b) {
  return w.panels ? (g32 * w.rows + r) * 4 * b : r * w.row_bytes + g32 * 4 * b;
}
__device__ __forceinline__ int64_t packed_scale_index(const DevWeight& w, int64_t r, int64_t g32) {
  const int64_t sg = g32 * 32 / w.group;
  return w.panels ? sg * w.rows + r : r * (w.cols / w.group) + sg;
}

// Kernel variants are compiled per format (and code width) so that every bit position below is a
// compile-time constant: a run-time width would put the code words in local memory.
enum FmtCode : int { kF32 = 0, kBF16, kFP8, kQ8, kINT2, kINT3, kINT4, kL2, kL3, kL4, kFmtCount };

// Code width in bits of a packed (int or Lloyd) format.
template <int F>
constexpr int code_bits() {
  static_assert(F >= kINT2 && F <= kL4, "not a packed format");
  return F >= kL2 ? F - kL2 + 2 : F - kINT2 + 2;
}

// Code i (0..31) of a 32-input group packed little-endian at b bits each in u[0..3]; i is a
// compile-time constant in unrolled loops, so the shifts are too.
template <int b>
__device__ __forceinline__ uint32_t packed_code(const uint32_t u[4], int i) {
  const int bit = i * b, word = bit >> 5, off = bit & 31;
  uint32_t c = u[word] >> off;
  if (off + b > 32) c |= u[word + 1] << (32 - off);
  return c & ((1u << b) - 1);
}

// Dequantizes inputs [32*g32, 32*g32 + 32) of row r into out[32].
template <int F>
__device__ __forceinline__ void dequant32(const DevWeight& w, int64_t r, int64_t g32, float out[32]) {
  const int64_t j0 = g32 * 32;
  if constexpr (F == kF32) {
    const float4* p = reinterpret_cast<const float4*>(w.q + r * w.row_bytes + j0 * 4);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float4 v = __ldg(p + i);
      out[4 * i] = v.x, out[4 * i + 1] = v.y, out[4 * i + 2] = v.z, out[4 * i + 3] = v.w;
    }
  } else if constexpr (F == kBF16) {
    const uint4* p = reinterpret_cast<const uint4*>(w.q + r * w.row_bytes + j0 * 2);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 v = __ldg(p + i);
      const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        out[8 * i + 2 * k] = __uint_as_float(u[k] << 16);
        out[8 * i + 2 * k + 1] = __uint_as_float(u[k] & 0xffff0000u);
      }
    }
  } else if constexpr (F == kFP8) {
    const int64_t bc = (w.cols + w.group - 1) / w.group;
    const float s = static_cast<const float*>(w.scales)[(r / w.block_rows) * bc + j0 / w.group];
    const uint4* p = reinterpret_cast<const uint4*>(w.q + r * w.row_bytes + j0);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint4 v = __ldg(p + i);
      const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 16; ++k) out[16 * i + k] = fp8_value(uint8_t(u[k / 4] >> (8 * (k % 4)))) * s;
    }
  } else if constexpr (F == kQ8) {
    const float s = f16_bits(static_cast<const uint16_t*>(w.scales)[r * (w.cols / 32) + g32]);
    const uint4* p = reinterpret_cast<const uint4*>(w.q + r * w.row_bytes + j0);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const uint4 v = __ldg(p + i);
      const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int k = 0; k < 16; ++k) out[16 * i + k] = float(int8_t(u[k / 4] >> (8 * (k % 4)))) * s;
    }
  } else {
    constexpr bool lloyd = F >= kL2;
    constexpr int b = code_bits<F>();
    const float s = f16_bits(static_cast<const uint16_t*>(w.scales)[packed_scale_index(w, r, g32)]);
    const uint8_t* base = w.q + packed_group_offset(w, r, g32, b);
    uint32_t u[4];
    if constexpr (b == 4) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(base));
      u[0] = v.x, u[1] = v.y, u[2] = v.z, u[3] = v.w;
    } else if constexpr (b == 2) {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(base));
      u[0] = v.x, u[1] = v.y, u[2] = u[3] = 0;
    } else {  // 3 bits: 12 bytes, 4-byte aligned (groups start at multiples of 12 bytes)
      const uint32_t* p = reinterpret_cast<const uint32_t*>(base);
      u[0] = __ldg(p), u[1] = __ldg(p + 1), u[2] = __ldg(p + 2), u[3] = 0;
    }
    const uint16_t* cb = nullptr;
    if constexpr (lloyd) cb = w.codebook + (w.cb_rows == 1 ? 0 : r) * (int64_t(1) << b);
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const uint32_t c = packed_code<b>(u, i);
      if constexpr (lloyd) out[i] = f16_bits(__ldg(cb + c)) * s;
      else out[i] = float(int(c) - (1 << (b - 1))) * s;
    }
  }
}

}  // namespace moeq::cuda

#include <type_traits>

namespace moeq::cuda {

// Host side: the format code of a weight, and a switch that calls fn(integral_constant<int, F>).
inline int fmt_code(const DevWeight& w) {
  switch (w.fmt) {
    case Fmt::F32: return kF32;
    case Fmt::BF16: return kBF16;
    case Fmt::FP8_B128: return kFP8;
    case Fmt::Q8: return kQ8;
    case Fmt::INT: return kINT2 + (w.bits - 2);
    case Fmt::LLOYD: return kL2 + (w.bits - 2);
  }
  return -1;
}

template <typename Fn>
void dispatch_format(const DevWeight& w, Fn&& fn) {
  switch (fmt_code(w)) {
    case kF32: fn(std::integral_constant<int, kF32>{}); break;
    case kBF16: fn(std::integral_constant<int, kBF16>{}); break;
    case kFP8: fn(std::integral_constant<int, kFP8>{}); break;
    case kQ8: fn(std::integral_constant<int, kQ8>{}); break;
    case kINT2: fn(std::integral_constant<int, kINT2>{}); break;
    case kINT3: fn(std::integral_constant<int, kINT3>{}); break;
    case kINT4: fn(std::integral_constant<int, kINT4>{}); break;
    case kL2: fn(std::integral_constant<int, kL2>{}); break;
    case kL3: fn(std::integral_constant<int, kL3>{}); break;
    case kL4: fn(std::integral_constant<int, kL4>{}); break;
    default: break;
  }
}

}  // namespace moeq::cuda
