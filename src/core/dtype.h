// Element types as safetensors names them, and exact scalar conversions to and from float.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace moeq {

enum class DType : uint8_t { F32, F16, BF16, F8_E4M3, I8, U8, I32, I64 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);                   // "F32", "BF16", "F8_E4M3", ...
std::optional<DType> dtype_from_name(std::string_view);  // inverse of dtype_name

inline float bits_to_f32(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float bf16_to_f32(uint16_t h) { return bits_to_f32(uint32_t(h) << 16); }
// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, overflow to inf

// float8 e4m3fn (OCP FP8 as used by the MiniMax-M2 release): bias 7, no infinities,
// 0x7f / 0xff are NaN, largest finite 448.
extern const float kFp8E4M3ToF32[256];
inline float fp8e4m3_to_f32(uint8_t v) { return kFp8E4M3ToF32[v]; }
uint8_t f32_to_fp8e4m3(float f);  // round to nearest even, saturating to +-448

// Reads element i of a buffer of type t as float (for F32/F16/BF16/F8_E4M3/I8/U8/I32/I64).
float load_as_f32(DType t, const void* data, size_t i);

}  // namespace moeq
