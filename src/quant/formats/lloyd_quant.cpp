#include "quant/formats/lloyd_quant.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/formats/codebook_fit.h"
#include "quant/formats/group_common.h"
#include "quant/formats/lloyd_fit.h"
#include "quant/formats/packed_codes.h"

namespace moeq::fmtq {
namespace {

// Normalised weights lie in [-1, 1] for absmax scales and mostly within 1/0.7 of that for refit
// ones; the rare ones beyond clamp into the end bins (whose means stay exact).
constexpr float kHistRange = 1.5f;
constexpr int kHistBins = 12288;  // bin width 2.4e-4 in normalised units, ~1/400 of lloyd4's level gap
constexpr int kHistBlocks = 16;    // fixed row blocks: the merge order does not depend on the thread count

struct Work {
  const LloydSpec& spec;
  const QuantizeInput& in;
  std::vector<float> imp;  // effective importance: given, or ones (also when it is all zero)
  int64_t ng;
  int K;
};

// The f16 scale used to normalise a group: its absmax (the smallest f16 above zero if that
// rounds to zero), or 0 for an all-zero group.
uint16_t absmax_scale(const Work& wk, const float* w) {
  float a = 0;
  for (int64_t j = 0; j < wk.spec.group; ++j) a = std::max(a, std::fabs(w[j]));
  if (a == 0) return 0;
  const uint16_t h = scale_to_f16(wk.spec.name, a);
  return h == 0 ? uint16_t(1) : h;
}

// Adds row r's normalised weights (w / its group's scale) to a set of points.
template <typename Add>
void for_each_normalised(const Work& wk, const uint16_t* scales, int64_t r, Add&& add) {
  const float* wr = wk.in.w + r * wk.in.cols;
  for (int64_t g = 0; g < wk.ng; ++g) {
    const float s = f16_to_f32(scales[r * wk.ng + g]);
    if (s == 0) continue;  // an all-zero group says nothing about the shape of the weights
    for (int64_t j = g * wk.spec.group; j < (g + 1) * wk.spec.group; ++j)
      if (wk.imp[size_t(j)] > 0) add(wr[j] / s, double(wk.imp[size_t(j)]));
  }
}

std::vector<float> learn_tensor_codebook(const Work& wk, const uint16_t* scales, const std::vector<float>* init) {
  const int64_t rows = wk.in.rows, nb = std::min<int64_t>(kHistBlocks, rows);
  std::vector<UnitHistogram> h(static_cast<size_t>(nb), UnitHistogram(kHistBins, kHistRange));
  parallel_for(nb, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      for (int64_t r = b * rows / nb; r < (b + 1) * rows / nb; ++r)
        for_each_normalised(wk, scales, r, [&](float u, double w) { h[size_t(b)].add(u, w); });
  });
  for (int64_t b = 1; b < nb; ++b) h[0].merge(h[size_t(b)]);
  return lloyd_max_1d(h[0].points(), wk.K, 300, init);
}

std::vector<float> learn_row_codebook(const Work& wk, const uint16_t* scales, int64_t r, const std::vector<float>* init) {
  std::vector<std::pair<float, double>> pts;
  pts.reserve(size_t(wk.in.cols));
  for_each_normalised(wk, scales, r, [&](float u, double w) { pts.emplace_back(u, w); });
  std::sort(pts.begin(), pts.end());
  WeightedPoints p;
  for (auto& [u, w] : pts) {
    p.x.push_back(u);
    p.w.push_back(w);
  }
  return lloyd_max_1d(p, wk.K, 300, init);
}

}  // namespace

QuantizedWeight lloyd_quantize(const LloydSpec& spec, const QuantizeInput& in, const LloydOptions& opt) {
  check_input(spec.name, in, spec.group);
  if (spec.group > 256 || spec.group % 32 != 0) fail("{}: unsupported group size {}", spec.name, spec.group);
  Work wk{spec, in, std::vector<float>(size_t(in.cols), 1.0f), in.cols / spec.group, 1 << spec.bits};
  if (in.importance && std::any_of(in.importance, in.importance + in.cols, [](float v) { return v > 0; }))
    wk.imp.assign(in.importance, in.importance + in.cols);
  const int64_t rows = in.rows, cols = in.cols, ng = wk.ng, G = spec.group;
  const int64_t grain = std::max<int64_t>(1, 16384 / cols);

  if (opt.mode == CodebookMode::Auto) {
    LloydOptions o = opt;
    o.mode = CodebookMode::PerTensor;
    QuantizedWeight t = lloyd_quantize(spec, in, o);
    o.mode = CodebookMode::PerRow;
    QuantizedWeight r = lloyd_quantize(spec, in, o);
    const double et = weighted_sq_error(t, in.w, wk.imp.data()), er = weighted_sq_error(r, in.w, wk.imp.data());
    // Per-row costs extra bits; at ~6 dB per bit, db extra bits are worth an error factor 4^-db.
    const double extra_bits = 8.0 * double(r.storage_bytes() - t.storage_bytes()) / double(rows * cols);
    return er < et * std::pow(4.0, -extra_bits) ? r : t;
  }
  const bool per_row = opt.mode == CodebookMode::PerRow;

  // One round's result. Rows are independent given the codebook(s), so a row's error is the sum
  // of its groups' in column order: deterministic.
  struct State {
    std::vector<uint16_t> scales;
    std::vector<uint8_t> codes;
    std::vector<Book> books;
    std::vector<double> row_err;
  };
  State cur{std::vector<uint16_t>(static_cast<size_t>(rows * ng)), std::vector<uint8_t>(static_cast<size_t>(rows * cols)),
            std::vector<Book>(per_row ? size_t(rows) : 1), std::vector<double>(static_cast<size_t>(rows))};
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t g = 0; g < ng; ++g) cur.scales[size_t(r * ng + g)] = absmax_scale(wk, in.w + r * cols + g * G);
  });
  const std::vector<uint16_t> absmax = cur.scales;
  State best;

  for (int round = 0; round < std::max(1, opt.rounds); ++round) {
    // Learn the codebook(s) on the groups normalised by the best scales so far (warm start after
    // the first round), then refit every group's scale and codes against it.
    if (per_row) {
      parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const std::vector<float> prev = cur.books[size_t(r)].level;
          cur.books[size_t(r)] = make_book(learn_row_codebook(wk, cur.scales.data(), r, round ? &prev : nullptr));
        }
      });
    } else {
      const std::vector<float> prev = cur.books[0].level;
      cur.books[0] = make_book(learn_tensor_codebook(wk, cur.scales.data(), round ? &prev : nullptr));
    }
    parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const Book& bk = cur.books[per_row ? size_t(r) : 0];
        double e = 0;
        for (int64_t g = 0; g < ng; ++g) {
          const size_t at = size_t(r * ng + g);
          const GroupFit f = fit_group(bk, in.w + r * cols + g * G, wk.imp.data() + g * G, G, absmax[at],
                                       opt.refine_scales, cur.codes.data() + r * cols + g * G);
          cur.scales[at] = f.scale;
          e += f.error;
        }
        cur.row_err[size_t(r)] = e;
      }
    });
    // A later round is kept only where it lowered the error: for the whole tensor when the
    // codebook is shared, row by row when each row has its own.
    if (round == 0) {
      best = cur;
    } else if (!per_row) {
      const double a = std::accumulate(cur.row_err.begin(), cur.row_err.end(), 0.0);
      const double b = std::accumulate(best.row_err.begin(), best.row_err.end(), 0.0);
      if (a < b) best = cur;
    } else {
      for (int64_t r = 0; r < rows; ++r)
        if (cur.row_err[size_t(r)] < best.row_err[size_t(r)]) {
          best.row_err[size_t(r)] = cur.row_err[size_t(r)];
          best.books[size_t(r)] = cur.books[size_t(r)];
          std::copy_n(cur.scales.begin() + r * ng, ng, best.scales.begin() + r * ng);
          std::copy_n(cur.codes.begin() + r * cols, cols, best.codes.begin() + r * cols);
        }
    }
    cur = best;
  }
  const std::vector<uint16_t>& scales = best.scales;
  const std::vector<uint8_t>& codes = best.codes;
  const std::vector<Book>& books = best.books;

  QuantizedWeight out = new_group_weight(spec.name, rows, cols, G);
  const int64_t row_bytes = packed_row_bytes(cols, spec.bits);
  HostArray q = HostArray::owned(DType::U8, {rows, row_bytes});
  HostArray s = HostArray::owned(DType::F16, {rows, ng});
  HostArray cb = HostArray::owned(DType::F16, {int64_t(books.size()), int64_t(wk.K)});
  auto* qd = reinterpret_cast<uint8_t*>(q.mutable_data());
  parallel_for(rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) pack_codes(codes.data() + r * cols, cols, spec.bits, qd + r * row_bytes);
  });
  std::copy(scales.begin(), scales.end(), reinterpret_cast<uint16_t*>(s.mutable_data()));
  auto* cbd = reinterpret_cast<uint16_t*>(cb.mutable_data());
  for (size_t b = 0; b < books.size(); ++b) std::copy(books[b].f16.begin(), books[b].f16.end(), cbd + b * size_t(wk.K));
  out.parts["qweight"] = std::move(q);
  out.parts["scales"] = std::move(s);
  out.parts["codebook"] = std::move(cb);
  return out;
}

double weighted_sq_error(const QuantizedWeight& q, const float* w, const float* importance) {
  const FormatOps& ops = format_ops(q.format);
  std::vector<double> per_row(size_t(q.rows), 0.0);
  parallel_for(q.rows, std::max<int64_t>(1, 16384 / q.cols), [&](int64_t r0, int64_t r1) {
    std::vector<float> buf(static_cast<size_t>(q.cols));
    for (int64_t r = r0; r < r1; ++r) {
      ops.dequantize_rows(q, r, 1, buf.data());
      double e = 0;
      for (int64_t j = 0; j < q.cols; ++j) {
        const double d = double(w[r * q.cols + j]) - double(buf[size_t(j)]);
        e += (importance ? double(importance[j]) : 1.0) * d * d;
      }
      per_row[size_t(r)] = e;
    }
  });
  return std::accumulate(per_row.begin(), per_row.end(), 0.0);  // in row order: deterministic
}

}  // namespace moeq::fmtq
