// Quantized weight formats (q8_g32, int*_g*, lloyd*_g*): error bounds, fast kernels equal to the
// reference, fused matvec, exact bits per weight, validation messages. Lloyd-specific properties
// are in test_formats_lloyd.cpp, the on-disk round trip in test_formats_io.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/formats/format.h"
#include "quant/formats/lloyd_quant.h"
#include "quant/formats/packed_codes.h"
#include "support/random.h"

using namespace moeq;

namespace {

struct Spec {
  std::string name;
  int bits;       // 8 for q8
  int64_t group;
  bool lloyd;
};

const std::vector<Spec>& all_specs() {
  static const std::vector<Spec> s = {
      {"q8_g32", 8, 32, false},      {"int4_g32", 4, 32, false},    {"int4_g128", 4, 128, false},
      {"int3_g32", 3, 32, false},    {"int2_g32", 2, 32, false},    {"lloyd2_g32", 2, 32, true},
      {"lloyd3_g32", 3, 32, true},   {"lloyd4_g32", 4, 32, true},   {"lloyd2_g128", 2, 128, true},
      {"lloyd3_g128", 3, 128, true}, {"lloyd4_g128", 4, 128, true}};
  return s;
}

enum class Dist { Gauss, StudentT };

std::vector<float> random_weights(std::mt19937_64& rng, int64_t rows, int64_t cols, Dist d) {
  std::vector<float> w(static_cast<size_t>(rows * cols));
  std::uniform_real_distribution<float> df(3.0f, 5.0f);
  std::student_t_distribution<float> t(df(rng));
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (auto& v : w) v = 0.02f * (d == Dist::Gauss ? n(rng) : t(rng));
  return w;
}

std::vector<float> dequant(const QuantizedWeight& q, bool ref) {
  std::vector<float> out(static_cast<size_t>(q.rows * q.cols));
  const FormatOps& ops = format_ops(q.format);
  (ref ? ops.dequantize_rows_ref : ops.dequantize_rows)(q, 0, q.rows, out.data());
  return out;
}

double sq_error(const std::vector<float>& w, const std::vector<float>& dq, int64_t cols, const float* imp) {
  double e = 0;
  for (size_t i = 0; i < w.size(); ++i) {
    const double d = double(w[i]) - double(dq[i]);
    e += (imp ? double(imp[i % size_t(cols)]) : 1.0) * d * d;
  }
  return e;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Shapes: a few rows, cols = 32, 128, 384, 1536 (a group of 128 needs cols % 128 == 0).
std::vector<std::pair<int64_t, int64_t>> shapes_for(const Spec& s) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (auto [r, c] : std::vector<std::pair<int64_t, int64_t>>{{3, 32}, {5, 128}, {17, 384}, {40, 1536}})
    if (c % s.group == 0) out.emplace_back(r, c);
  return out;
}

}  // namespace

// Round to nearest (importance null): every element within half a step of the stored f16 scale.
TEST(Formats, UniformRoundToNearestWithinHalfStep) {
  std::mt19937_64 rng(test::test_seed());
  for (const Spec& s : all_specs()) {
    if (s.lloyd) continue;
    for (auto [rows, cols] : shapes_for(s))
      for (Dist d : {Dist::Gauss, Dist::StudentT}) {
        std::vector<float> w = random_weights(rng, rows, cols, d);
        std::fill(w.begin(), w.begin() + s.group, 0.0f);  // an all-zero group
        const QuantizedWeight q = format_ops(s.name).quantize({w.data(), rows, cols, nullptr});
        ASSERT_NO_THROW(format_ops(s.name).validate(q, "test"));
        const std::vector<float> dq = dequant(q, true);
        const uint16_t* sc = q.part("scales").as<uint16_t>();
        for (int64_t i = 0; i < rows * cols; ++i) {
          const float scale = f16_to_f32(sc[(i / cols) * (cols / s.group) + (i % cols) / s.group]);
          const float err = std::fabs(w[size_t(i)] - dq[size_t(i)]);
          // Half a step, plus the rounding of w/scale and of q*scale (a few ulps).
          ASSERT_LE(err, 0.5f * scale + 1e-6f * std::max(std::fabs(w[size_t(i)]), scale))
              << s.name << " " << rows << "x" << cols << " element " << i << " scale " << scale;
          ASSERT_FALSE(std::isnan(dq[size_t(i)]));
        }
        for (int64_t j = 0; j < s.group; ++j) ASSERT_EQ(dq[size_t(j)], 0.0f) << s.name << ": zero group";
      }
  }
}

// Lloyd: each element gets the level nearest to w/scale, so its error is at most half the largest
// gap between levels, or the distance past the outermost level for elements beyond it.
TEST(Formats, LloydNearestLevelWithinHalfGap) {
  std::mt19937_64 rng(test::test_seed());
  for (const Spec& s : all_specs()) {
    if (!s.lloyd) continue;
    for (auto [rows, cols] : shapes_for(s))
      for (Dist d : {Dist::Gauss, Dist::StudentT}) {
        std::vector<float> w = random_weights(rng, rows, cols, d);
        std::fill(w.end() - s.group, w.end(), 0.0f);  // an all-zero group
        const QuantizedWeight q = format_ops(s.name).quantize({w.data(), rows, cols, nullptr});
        ASSERT_NO_THROW(format_ops(s.name).validate(q, "test"));
        const std::vector<float> dq = dequant(q, true);
        const int k = 1 << s.bits;
        const HostArray& cbp = q.part("codebook");
        ASSERT_EQ(cbp.shape, (std::vector<int64_t>{1, k})) << "default: one codebook per tensor";
        std::vector<float> cb(static_cast<size_t>(k));
        for (int i = 0; i < k; ++i) cb[size_t(i)] = f16_to_f32(cbp.as<uint16_t>()[i]);
        float gap = 0;
        for (int i = 0; i + 1 < k; ++i) {
          ASSERT_LE(cb[size_t(i)], cb[size_t(i) + 1]) << s.name << ": codebook sorted";
          gap = std::max(gap, cb[size_t(i) + 1] - cb[size_t(i)]);
        }
        ASSERT_GE(cb.front(), -1.5f);
        ASSERT_LE(cb.back(), 1.5f);
        const uint16_t* sc = q.part("scales").as<uint16_t>();
        for (int64_t i = 0; i < rows * cols; ++i) {
          const float scale = f16_to_f32(sc[(i / cols) * (cols / s.group) + (i % cols) / s.group]);
          const float wv = w[size_t(i)], err = std::fabs(wv - dq[size_t(i)]);
          ASSERT_FALSE(std::isnan(dq[size_t(i)]));
          if (scale == 0) {
            ASSERT_EQ(wv, 0.0f);
            ASSERT_EQ(dq[size_t(i)], 0.0f);
            continue;
          }
          const float u = wv / scale;
          const float beyond = std::max({0.0f, u - cb.back(), cb.front() - u});
          ASSERT_LE(err, scale * std::max(0.5f * gap, beyond) * (1 + 1e-5f) + 1e-9f)
              << s.name << " " << rows << "x" << cols << " element " << i;
          // And it is the nearest level (up to rounding of w/scale).
          float nearest = INFINITY;
          for (float c : cb) nearest = std::min(nearest, std::fabs(u - c));
          ASSERT_LE(std::fabs(u - dq[size_t(i)] / scale), nearest + 1e-5f) << s.name << " element " << i;
        }
        for (int64_t j = rows * cols - s.group; j < rows * cols; ++j) ASSERT_EQ(dq[size_t(j)], 0.0f);
      }
  }
}

// The vector dequantize equals the reference bit for bit, for whole and partial row ranges,
// per-tensor and per-row codebooks.
TEST(Formats, FastDequantEqualsReferenceBitForBit) {
  std::mt19937_64 rng(test::test_seed());
  for (const Spec& s : all_specs())
    for (auto [rows, cols] : shapes_for(s)) {
      const std::vector<float> w = random_weights(rng, rows, cols, Dist::StudentT);
      std::vector<QuantizedWeight> qs = {format_ops(s.name).quantize({w.data(), rows, cols, nullptr})};
      if (s.lloyd)
        qs.push_back(fmtq::lloyd_quantize({s.name, s.bits, s.group}, {w.data(), rows, cols, nullptr},
                                          {fmtq::CodebookMode::PerRow}));
      for (const QuantizedWeight& q : qs) {
        const std::vector<float> ref = dequant(q, true), fast = dequant(q, false);
        ASSERT_EQ(std::memcmp(ref.data(), fast.data(), ref.size() * 4), 0) << s.name << " " << rows << "x" << cols;
        for (auto [r0, n] : std::vector<std::pair<int64_t, int64_t>>{{0, 1}, {rows - 1, 1}, {1, rows - 2}, {rows / 2, rows - rows / 2}}) {
          if (n <= 0) continue;
          std::vector<float> part(static_cast<size_t>(n * cols));
          format_ops(s.name).dequantize_rows(q, r0, n, part.data());
          ASSERT_EQ(std::memcmp(part.data(), ref.data() + r0 * cols, part.size() * 4), 0)
              << s.name << " rows " << r0 << "+" << n;
          format_ops(s.name).dequantize_rows_ref(q, r0, n, part.data());
          ASSERT_EQ(std::memcmp(part.data(), ref.data() + r0 * cols, part.size() * 4), 0);
        }
      }
    }
}

// The fused matvec on packed data equals dequantize-then-matvec to float rounding.
TEST(Formats, PackedMatvecEqualsDequantizedMatvec) {
  std::mt19937_64 rng(test::test_seed());
  std::normal_distribution<float> nd;
  for (const Spec& s : all_specs())
    for (auto [rows, cols] : shapes_for(s)) {
      const std::vector<float> w = random_weights(rng, rows, cols, Dist::Gauss);
      std::vector<QuantizedWeight> qs = {format_ops(s.name).quantize({w.data(), rows, cols, nullptr})};
      if (s.lloyd)
        qs.push_back(fmtq::lloyd_quantize({s.name, s.bits, s.group}, {w.data(), rows, cols, nullptr},
                                          {fmtq::CodebookMode::PerRow}));
      std::vector<float> x(static_cast<size_t>(cols));
      for (auto& v : x) v = nd(rng);
      for (const QuantizedWeight& q : qs) {
        const FormatOps& ops = format_ops(s.name);
        ASSERT_NE(ops.matvec, nullptr) << s.name;
        // Reference in double; the error is measured against sum_j |W_ij x_j| (what float
        // rounding of a dot product is proportional to), so cancellation does not inflate it.
        const std::vector<float> dq = dequant(q, true);
        std::vector<double> ref(static_cast<size_t>(rows)), mag(static_cast<size_t>(rows));
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < cols; ++j) {
            ref[size_t(r)] += double(dq[size_t(r * cols + j)]) * x[size_t(j)];
            mag[size_t(r)] += std::fabs(double(dq[size_t(r * cols + j)]) * x[size_t(j)]);
          }
        for (auto [r0, n] : std::vector<std::pair<int64_t, int64_t>>{{0, rows}, {1, rows - 1}, {rows - 1, 1}}) {
          if (n <= 0) continue;
          std::vector<float> y(static_cast<size_t>(n), NAN);
          ops.matvec(q, x.data(), r0, n, y.data());
          double num = 0, den = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double d = double(y[size_t(i)]) - ref[size_t(r0 + i)];
            num += d * d;
            den += mag[size_t(r0 + i)] * mag[size_t(r0 + i)];
          }
          ASSERT_LT(std::sqrt(num / den), 1e-5) << s.name << " " << rows << "x" << cols << " rows " << r0 << "+" << n;
        }
      }
    }
}

// All parts' bytes * 8 / (rows * cols), exactly the documented figure.
TEST(Formats, BitsPerWeightExact) {
  std::mt19937_64 rng(test::test_seed());
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{64, 384}, {24, 1536}}) {
    const std::vector<float> w = random_weights(rng, rows, cols, Dist::Gauss);
    auto bpw = [&](const std::string& name) { return format_ops(name).quantize({w.data(), rows, cols, nullptr}).bits_per_weight(); };
    EXPECT_EQ(bpw("q8_g32"), 8.5);
    EXPECT_EQ(bpw("int4_g32"), 4.5);
    EXPECT_EQ(bpw("int4_g128"), 4.125);
    EXPECT_EQ(bpw("int3_g32"), 3.5);
    EXPECT_EQ(bpw("int2_g32"), 2.5);
    for (const Spec& s : all_specs()) {
      if (!s.lloyd) continue;
      const QuantizedWeight q = format_ops(s.name).quantize({w.data(), rows, cols, nullptr});
      const int64_t k = int64_t(1) << s.bits;
      // Packed codes + f16 scales + one f16 codebook.
      EXPECT_EQ(q.storage_bytes(), size_t(rows * cols * s.bits / 8 + rows * cols / s.group * 2 + k * 2)) << s.name;
      EXPECT_DOUBLE_EQ(q.bits_per_weight(), s.bits + 16.0 / double(s.group) + double(k * 16) / double(rows * cols))
          << s.name;
      const QuantizedWeight pr = fmtq::lloyd_quantize({s.name, s.bits, s.group}, {w.data(), rows, cols, nullptr},
                                                      {fmtq::CodebookMode::PerRow});
      EXPECT_DOUBLE_EQ(pr.bits_per_weight(), s.bits + 16.0 / double(s.group) + double(k * 16) / double(cols)) << s.name;
    }
  }
}

// The importance-aware quantization has no larger importance-weighted error than the plain one.
TEST(Formats, ImportanceAwareNeverWorseOnWeightedError) {
  std::mt19937_64 rng(test::test_seed());
  const int64_t rows = 48, cols = 1536;
  std::lognormal_distribution<float> ln(0.0f, 1.5f);
  std::vector<float> imp(static_cast<size_t>(cols));
  for (auto& v : imp) v = ln(rng);
  for (int j = 0; j < 16; ++j) imp[size_t(j * 97 % cols)] *= 100.0f;  // a few outlier channels
  for (Dist d : {Dist::Gauss, Dist::StudentT}) {
    const std::vector<float> w = random_weights(rng, rows, cols, d);
    for (const Spec& s : all_specs()) {
      const FormatOps& ops = format_ops(s.name);
      const double plain = sq_error(w, dequant(ops.quantize({w.data(), rows, cols, nullptr}), false), cols, imp.data());
      const double aware = sq_error(w, dequant(ops.quantize({w.data(), rows, cols, imp.data()}), false), cols, imp.data());
      EXPECT_LE(aware, plain) << s.name;
      // Against round to nearest the search must buy something real at low bits.
      if (!s.lloyd && s.bits <= 3) {
        EXPECT_LT(aware, 0.95 * plain) << s.name;
      }
    }
  }
}

// Quantizing is deterministic whatever the number of threads (resumed conversions depend on it).
TEST(Formats, QuantizeIsIndependentOfThreadCount) {
  std::mt19937_64 rng(test::test_seed());
  const int64_t rows = 67, cols = 384;
  const std::vector<float> w = random_weights(rng, rows, cols, Dist::StudentT);
  std::vector<float> imp(static_cast<size_t>(cols));
  for (auto& v : imp) v = std::uniform_real_distribution<float>(0.1f, 10.0f)(rng);
  for (const Spec& s : all_specs()) {
    std::vector<std::map<std::string, std::vector<std::byte>>> runs;
    for (int threads : {1, 3}) {
      set_num_threads(threads);
      const QuantizedWeight q = format_ops(s.name).quantize({w.data(), rows, cols, imp.data()});
      std::map<std::string, std::vector<std::byte>> bytes;
      for (const auto& [name, a] : q.parts) bytes[name].assign(a.data.get(), a.data.get() + a.nbytes);
      runs.push_back(std::move(bytes));
    }
    set_num_threads(0);
    EXPECT_EQ(runs[0], runs[1]) << s.name;
  }
}

// The packed layout is the documented one (docs/FORMAT.md), read here straight from the bytes.
TEST(Formats, PackedLayoutAsDocumented) {
  // int4: element 2i in the low nibble of byte i, stored q + 8.
  // Round to nearest uses scale = absmax / 7: weights q * 8/7 with q in [-7, 7] come back as q.
  std::vector<float> w(64, 0.0f);
  const float step = 8.0f / 7.0f;
  for (int j = 0; j < 32; ++j) w[size_t(j)] = float(j % 15 - 7) * step;
  for (int j = 32; j < 64; ++j) w[size_t(j)] = float((j * 5) % 15 - 7) * step;
  {
    const QuantizedWeight q = format_ops("int4_g32").quantize({w.data(), 1, 64, nullptr});
    const uint8_t* b = q.part("qweight").as<uint8_t>();
    ASSERT_EQ(q.part("qweight").nbytes, 32u);
    for (int j = 0; j < 64; ++j) {
      const int nib = (b[j / 2] >> (4 * (j % 2))) & 15;
      EXPECT_EQ(nib - 8, int(std::lround(w[size_t(j)] / step))) << "element " << j;
    }
  }
  // int3 / int2: code i of a group at bits [i*b, i*b + b) of the group's 4*b bytes, little-endian.
  for (int bits : {2, 3}) {
    const std::string name = bits == 2 ? "int2_g32" : "int3_g32";
    const int qmax = (1 << (bits - 1)) - 1, qmin = -(1 << (bits - 1));
    std::vector<float> v(64);
    for (int j = 0; j < 64; ++j) v[size_t(j)] = float(qmin + 1 + (j * 5) % (qmax - qmin)) * 0.5f;  // in [qmin+1, qmax]
    v[0] = float(qmax) * 0.5f;  // absmax = qmax * 0.5 in both groups: scale exactly 0.5
    v[32] = float(qmax) * 0.5f;
    const QuantizedWeight q = format_ops(name).quantize({v.data(), 1, 64, nullptr});
    ASSERT_EQ(q.part("qweight").nbytes, size_t(64 * bits / 8));
    const uint8_t* b = q.part("qweight").as<uint8_t>();
    for (int j = 0; j < 64; ++j) {
      const uint8_t* grp = b + (j / 32) * 4 * bits;
      int code = 0;  // bit k of the stream is bit k % 8 of byte k / 8
      for (int k = 0; k < bits; ++k) {
        const int bit = (j % 32) * bits + k;
        code |= ((grp[bit / 8] >> (bit % 8)) & 1) << k;
      }
      EXPECT_EQ(code - (1 << (bits - 1)), int(std::lround(v[size_t(j)] / 0.5f))) << name << " element " << j;
    }
  }
  // pack_codes / code_at agree with the definition for every width.
  std::mt19937_64 rng(test::test_seed());
  for (int bits : {2, 3, 4}) {
    std::vector<uint8_t> codes(128), row(size_t(128 * bits / 8), 0);
    for (auto& c : codes) c = uint8_t(rng() % (1u << bits));
    fmtq::pack_codes(codes.data(), 128, bits, row.data());
    for (int i = 0; i < 128; ++i) {
      int v = 0;
      for (int k = 0; k < bits; ++k) v |= ((row[size_t((i * bits + k) / 8)] >> ((i * bits + k) % 8)) & 1) << k;
      ASSERT_EQ(v, codes[size_t(i)]);
      ASSERT_EQ(fmtq::code_at(row.data(), i, bits), codes[size_t(i)]);
    }
  }
}

TEST(Formats, QuantizeRejectsBadShapesAndValues) {
  std::vector<float> w(4 * 48, 0.01f);
  for (const Spec& s : all_specs()) {
    const std::string msg = error_of([&] { format_ops(s.name).quantize({w.data(), 4, 48, nullptr}); });
    EXPECT_NE(msg.find(s.name), std::string::npos) << msg;
    EXPECT_NE(msg.find("[4, 48]"), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::to_string(s.group)), std::string::npos) << msg;
  }
  std::vector<float> nan(2 * 32, 0.01f);
  nan[37] = NAN;
  EXPECT_NE(error_of([&] { format_ops("int4_g32").quantize({nan.data(), 2, 32, nullptr}); }).find("[1, 5]"),
            std::string::npos);
  std::vector<float> ok(2 * 32, 0.01f), bad_imp(32, 1.0f);
  bad_imp[3] = -1.0f;
  EXPECT_NE(error_of([&] { format_ops("lloyd3_g32").quantize({ok.data(), 2, 32, bad_imp.data()}); }).find("importance"),
            std::string::npos);
}

TEST(Formats, ValidateRejectsBadPartsNamingThem) {
  std::mt19937_64 rng(test::test_seed());
  const std::vector<float> w = random_weights(rng, 4, 256, Dist::Gauss);
  for (const Spec& s : all_specs()) {
    const FormatOps& ops = format_ops(s.name);
    const QuantizedWeight good = ops.quantize({w.data(), 4, 256, nullptr});
    ASSERT_NO_THROW(ops.validate(good, "where.safetensors"));
    std::vector<std::string> names = {"qweight", "scales"};
    if (s.lloyd) names.push_back("codebook");
    for (const std::string& part : names) {
      auto expect_error = [&](QuantizedWeight q, const std::string& what) {
        const std::string msg = error_of([&] { ops.validate(q, "where.safetensors"); });
        EXPECT_NE(msg.find("where.safetensors"), std::string::npos) << s.name << " " << what << ": " << msg;
        EXPECT_NE(msg.find("'" + part + "'"), std::string::npos) << s.name << " " << what << ": " << msg;
      };
      QuantizedWeight missing = good;
      missing.parts.erase(part);
      expect_error(missing, "missing");
      QuantizedWeight dtype = good;
      dtype.parts[part].dtype = dtype.parts[part].dtype == DType::F16 ? DType::BF16 : DType::F16;
      expect_error(dtype, "dtype");
      QuantizedWeight shape = good;
      shape.parts[part].shape[1] += 1;
      expect_error(shape, "shape");
      QuantizedWeight rows = good;
      rows.parts[part].shape[0] = 2;
      expect_error(rows, "rows");
    }
    QuantizedWeight extra = good;
    extra.parts["bias"] = good.part("scales");
    EXPECT_NE(error_of([&] { ops.validate(extra, "w"); }).find("'bias'"), std::string::npos);
    QuantizedWeight cols = good;
    cols.cols = 200;
    EXPECT_NE(error_of([&] { ops.validate(cols, "w"); }).find("[4, 200]"), std::string::npos);
    QuantizedWeight block = good;
    block.block_cols = s.group == 32 ? 128 : 32;
    EXPECT_NE(error_of([&] { ops.validate(block, "w"); }).find("block"), std::string::npos);
    QuantizedWeight unset = good;  // a record without block sizes is fine: the tag says the group
    unset.block_rows = unset.block_cols = 0;
    EXPECT_NO_THROW(ops.validate(unset, "w"));
  }
}
