#include "quant/formats/synthetic.h"

#include <cmath>
#include <cstdio>
#include <random>

#include "core/error.h"

namespace moeq {

SyntheticLayout synthetic_layout(const std::string& f, int64_t rows, int64_t cols) {
  format_ops(f);  // unknown formats fail here
  SyntheticLayout l;
  const float target = 1.0f / std::sqrt(float(cols));  // weight std for unit-variance outputs
  int bits = 0, group = 0;
  if (f == "f32" || f == "bf16") {
    l.parts.push_back({"qweight", f == "f32" ? DType::F32 : DType::BF16, {rows, cols}, SyntheticFill::Normal, target});
  } else if (f == "fp8_b128") {
    l.block_rows = l.block_cols = 128;
    // Random e4m3 codes have magnitudes up to 448 (rms ~ 90): scale them down.
    l.parts.push_back({"qweight", DType::F8_E4M3, {rows, cols}, SyntheticFill::Fp8Codes, 1.0f});
    l.parts.push_back({"scales", DType::F32, {(rows + 127) / 128, (cols + 127) / 128}, SyntheticFill::Scale, target / 90});
  } else if (f == "q8_g32") {
    l.block_rows = 1, l.block_cols = 32;
    l.parts.push_back({"qweight", DType::I8, {rows, cols}, SyntheticFill::RandomBytes, 1.0f});
    l.parts.push_back({"scales", DType::F16, {rows, cols / 32}, SyntheticFill::Scale, target / 74});
  } else if (std::sscanf(f.c_str(), "int%d_g%d", &bits, &group) == 2 ||
             std::sscanf(f.c_str(), "lloyd%d_g%d", &bits, &group) == 2) {
    l.block_rows = 1, l.block_cols = group;
    const bool lloyd = f[0] == 'l';
    const float level_std = lloyd ? 0.58f : float(1 << bits) / std::sqrt(12.0f);
    l.parts.push_back({"qweight", DType::U8, {rows, cols * bits / 8}, SyntheticFill::RandomBytes, 1.0f});
    l.parts.push_back({"scales", DType::F16, {rows, cols / group}, SyntheticFill::Scale, target / level_std});
    if (lloyd) l.parts.push_back({"codebook", DType::F16, {1, int64_t(1) << bits}, SyntheticFill::Codebook, 1.0f});
  } else {
    fail("no synthetic layout for format '{}'", f);
  }
  return l;
}

QuantizedWeight synthetic_host_weight(const std::string& format, int64_t rows, int64_t cols, uint64_t seed) {
  const SyntheticLayout l = synthetic_layout(format, rows, cols);
  QuantizedWeight w;
  w.format = format;
  w.rows = rows;
  w.cols = cols;
  w.block_rows = l.block_rows;
  w.block_cols = l.block_cols;
  std::mt19937_64 rng(seed);
  for (const SyntheticPart& p : l.parts) {
    HostArray a = HostArray::owned(p.dtype, p.shape);
    const int64_t n = a.numel();
    auto* b = reinterpret_cast<uint8_t*>(a.mutable_data());
    std::normal_distribution<float> normal(0.0f, p.scale);
    std::uniform_real_distribution<float> around(0.5f * p.scale, 1.5f * p.scale);
    switch (p.fill) {
      case SyntheticFill::RandomBytes:
        for (size_t i = 0; i < a.nbytes; ++i) b[i] = uint8_t(rng());
        break;
      case SyntheticFill::Fp8Codes:
        for (size_t i = 0; i < a.nbytes; ++i) {
          uint8_t v = uint8_t(rng());
          if ((v & 0x7f) == 0x7f) v ^= 1;  // the NaN codes
          b[i] = v;
        }
        break;
      case SyntheticFill::Normal:
        for (int64_t i = 0; i < n; ++i) {
          const float v = normal(rng);
          if (p.dtype == DType::F32) reinterpret_cast<float*>(b)[i] = v;
          else reinterpret_cast<uint16_t*>(b)[i] = f32_to_bf16(v);
        }
        break;
      case SyntheticFill::Scale:
        for (int64_t i = 0; i < n; ++i) {
          const float v = around(rng);
          if (p.dtype == DType::F32) reinterpret_cast<float*>(b)[i] = v;
          else reinterpret_cast<uint16_t*>(b)[i] = f32_to_f16(v);
        }
        break;
      case SyntheticFill::Codebook:
        for (int64_t i = 0; i < n; ++i)
          reinterpret_cast<uint16_t*>(b)[i] = f32_to_f16(-1.0f + 2.0f * float(i) / float(n - 1));
        break;
    }
    w.parts[p.name] = std::move(a);
  }
  format_ops(format).validate(w, "synthetic weight");
  return w;
}

}  // namespace moeq
