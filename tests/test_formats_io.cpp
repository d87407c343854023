// Quantized weights through safetensors: the parts written as <module>.<part>, read back
// (zero-copy, mmapped), validated and dequantized give the same floats bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "quant/formats/format.h"
#include "quant/formats/lloyd_quant.h"
#include "support/random.h"
#include "support/test_support.h"

using namespace moeq;

TEST(FormatsIo, SafetensorsRoundTripIsExact) {
  std::mt19937_64 rng(test::test_seed());
  const int64_t rows = 24, cols = 384;
  const std::vector<float> w = test::randn(size_t(rows * cols), rng, 0.02f);
  std::vector<float> imp = test::randn(size_t(cols), rng);
  for (auto& v : imp) v = v * v;
  const std::vector<std::string> names = {"q8_g32",     "int4_g32",   "int4_g128",   "int3_g32",
                                          "int2_g32",   "lloyd2_g32", "lloyd3_g32",  "lloyd4_g32",
                                          "lloyd2_g128", "lloyd3_g128", "lloyd4_g128"};
  std::vector<QuantizedWeight> qs;
  for (const std::string& n : names) qs.push_back(format_ops(n).quantize({w.data(), rows, cols, imp.data()}));
  qs.push_back(fmtq::lloyd_quantize({"lloyd3_g32", 3, 32}, {w.data(), rows, cols, nullptr},
                                    {fmtq::CodebookMode::PerRow}));

  test::TempDir tmp;
  io::SafetensorsWriter wr;
  for (size_t i = 0; i < qs.size(); ++i)
    for (const auto& [part, a] : qs[i].parts) wr.add("m" + std::to_string(i) + "." + part, a);
  wr.write(tmp / "q.safetensors");

  const auto f = io::SafetensorsFile::open(tmp / "q.safetensors");
  for (size_t i = 0; i < qs.size(); ++i) {
    const QuantizedWeight& orig = qs[i];
    QuantizedWeight back;  // as a loader would build it: tag and shape from the record, parts from the file
    back.format = orig.format;
    back.rows = rows;
    back.cols = cols;
    for (const auto& [part, _] : orig.parts) back.parts[part] = f.get("m" + std::to_string(i) + "." + part);
    ASSERT_NO_THROW(format_ops(back.format).validate(back, "q.safetensors"));
    EXPECT_EQ(back.storage_bytes(), orig.storage_bytes());
    EXPECT_EQ(back.bits_per_weight(), orig.bits_per_weight());
    std::vector<float> a(static_cast<size_t>(rows * cols)), b(static_cast<size_t>(rows * cols));
    format_ops(orig.format).dequantize_rows(orig, 0, rows, a.data());
    format_ops(back.format).dequantize_rows(back, 0, rows, b.data());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << orig.format;
    std::vector<float> x = test::randn(size_t(cols), rng), ya(static_cast<size_t>(rows)), yb(static_cast<size_t>(rows));
    format_ops(orig.format).matvec(orig, x.data(), 0, rows, ya.data());
    format_ops(back.format).matvec(back, x.data(), 0, rows, yb.data());
    EXPECT_EQ(std::memcmp(ya.data(), yb.data(), ya.size() * 4), 0) << orig.format;
  }
}
