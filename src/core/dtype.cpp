#include "core/dtype.h"

#include <array>
#include <cmath>

namespace moeq {

namespace {
struct DTypeInfo {
  DType type;
  std::string_view name;
  size_t size;
};
constexpr std::array<DTypeInfo, 8> kInfo = {{{DType::F32, "F32", 4},
                                             {DType::F16, "F16", 2},
                                             {DType::BF16, "BF16", 2},
                                             {DType::F8_E4M3, "F8_E4M3", 1},
                                             {DType::I8, "I8", 1},
                                             {DType::U8, "U8", 1},
                                             {DType::I32, "I32", 4},
                                             {DType::I64, "I64", 8}}};

float fp8_decode(uint8_t v) {
  const int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
  float mag;
  if (exp == 15 && man == 7) {
    mag = NAN;
  } else if (exp == 0) {
    mag = std::ldexp(float(man) / 8.0f, -6);
  } else {
    mag = std::ldexp(1.0f + float(man) / 8.0f, exp - 7);
  }
  return sign ? -mag : mag;
}
}  // namespace

size_t dtype_size(DType t) { return kInfo[size_t(t)].size; }
std::string_view dtype_name(DType t) { return kInfo[size_t(t)].name; }
std::optional<DType> dtype_from_name(std::string_view n) {
  for (const auto& i : kInfo)
    if (i.name == n) return i.type;
  return std::nullopt;
}

const float kFp8E4M3ToF32[256] = {
#define R(i) fp8_decode(i)
#define R8(i) R(i), R(i + 1), R(i + 2), R(i + 3), R(i + 4), R(i + 5), R(i + 6), R(i + 7)
#define R64(i) R8(i), R8(i + 8), R8(i + 16), R8(i + 24), R8(i + 32), R8(i + 40), R8(i + 48), R8(i + 56)
    R64(0), R64(64), R64(128), R64(192)
#undef R64
#undef R8
#undef R
};

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0) {
    const float mag = std::ldexp(float(man), -24);  // zero and subnormals
    return sign ? -mag : mag;
  }
  if (exp == 31) return bits_to_f32(sign | 0x7f800000u | (man << 13));
  return bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00;                 // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00;                // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                     // below the smallest normal 2^-14
    const float mag = bits_to_f32(abs);
    return sign | uint16_t(std::nearbyint(mag * 16777216.0f));  // multiples of 2^-24, ties even
  }
  uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);  // round mantissa to 10 bits, ties even
  return sign | uint16_t(((r >> 13) - (112u << 10)) & 0x7fff);
}

uint8_t f32_to_fp8e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  const uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  // Search the 127 non-negative finite codes for the nearest, ties to the even code.
  int lo = 0, hi = 126;
  while (lo < hi) {  // first code with value >= a
    const int mid = (lo + hi) / 2;
    if (kFp8E4M3ToF32[mid] < a) lo = mid + 1; else hi = mid;
  }
  if (lo == 0) return sign;
  const float up = kFp8E4M3ToF32[lo], down = kFp8E4M3ToF32[lo - 1];
  int code;
  if (a - down < up - a) code = lo - 1;
  else if (up - a < a - down) code = lo;
  else code = (lo % 2 == 0) ? lo : lo - 1;
  return sign | uint8_t(code);
}

float load_as_f32(DType t, const void* data, size_t i) {
  const auto* b = static_cast<const uint8_t*>(data);
  switch (t) {
    case DType::F32: { float v; std::memcpy(&v, b + 4 * i, 4); return v; }
    case DType::F16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return f16_to_f32(v); }
    case DType::BF16: { uint16_t v; std::memcpy(&v, b + 2 * i, 2); return bf16_to_f32(v); }
    case DType::F8_E4M3: return fp8e4m3_to_f32(b[i]);
    case DType::I8: return float(int8_t(b[i]));
    case DType::U8: return float(b[i]);
    case DType::I32: { int32_t v; std::memcpy(&v, b + 4 * i, 4); return float(v); }
    case DType::I64: { int64_t v; std::memcpy(&v, b + 8 * i, 8); return float(v); }
  }
  return 0.0f;
}

}  // namespace moeq
