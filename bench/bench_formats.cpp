// Weight formats on the CPU: for each format at 3072x1536 and 1536x3072, the quantize time, the
// dequantize_rows rate and the decode matvec rate (GFLOP/s, and GB/s of packed bytes read), with
// bf16 and fp8_b128 for comparison (they have no fused matvec: dequantize a panel + dot, as the
// CPU backend does). Then the lloyd codebook study: per-tensor vs per-row codebooks, measured as
// importance-weighted error on Gaussian and Student-t matrices (the numbers behind FORMAT.md).
//   bench_formats [--threads 1] [--reps 5] [--only FORMAT] [--no-speed] [--no-study]
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/gemm.h"
#include "core/thread_pool.h"
#include "quant/formats/format.h"
#include "quant/formats/lloyd_quant.h"

using namespace moeq;
using clk = std::chrono::steady_clock;

namespace {

double seconds_since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

std::vector<float> random_matrix(int64_t rows, int64_t cols, bool heavy, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  if (heavy) {
    std::student_t_distribution<float> t(4.0f);
    for (auto& v : w) v = 0.02f * t(rng);
  } else {
    std::normal_distribution<float> n(0.0f, 0.02f);
    for (auto& v : w) v = n(rng);
  }
  return w;
}

// A skewed per-input importance like calibration mean squares: log-normal, a few channels 100x.
std::vector<float> skewed_importance(int64_t cols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<float> d(0.0f, 1.5f);
  std::vector<float> imp(static_cast<size_t>(cols));
  for (auto& v : imp) v = d(rng);
  return imp;
}

template <typename Fn>
double best_time(int reps, Fn&& fn) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = clk::now();
    fn();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

void speed(const std::string& only, int reps) {
  const std::vector<std::string> names = {"bf16",      "fp8_b128",   "q8_g32",      "int4_g32",    "int4_g128",
                                          "int3_g32",  "int2_g32",   "lloyd2_g32",  "lloyd3_g32",  "lloyd4_g32",
                                          "lloyd2_g128", "lloyd3_g128", "lloyd4_g128"};
  fmt::print("{:<12} {:>11} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8}\n", "format", "shape", "bpw",
             "quant ms", "deq Gw/s", "deq GB/s", "mv GFLOP/s", "mv GB/s", "err rtn", "err srch");
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{3072, 1536}, {1536, 3072}}) {
    const std::vector<float> w = random_matrix(rows, cols, false, 1);
    std::vector<float> x(static_cast<size_t>(cols)), y(static_cast<size_t>(rows)), buf(static_cast<size_t>(64 * cols));
    std::mt19937 rng(2);
    std::normal_distribution<float> d;
    for (auto& v : x) v = d(rng);
    for (const std::string& name : names) {
      if (!only.empty() && name != only) continue;
      const FormatOps& ops = format_ops(name);
      QuantizedWeight q;
      const QuantizeInput in{w.data(), rows, cols, nullptr};
      const double tq = best_time(name.rfind("lloyd", 0) == 0 ? 1 : 2, [&] { q = ops.quantize(in); });
      // dequantize_rows over the whole matrix, 64-row panels (the CPU backend's panel size).
      const double td = best_time(reps, [&] {
        for (int64_t r = 0; r < rows; r += 64) ops.dequantize_rows(q, r, std::min<int64_t>(64, rows - r), buf.data());
      });
      // Decode's matvec: the fused one where the format has it, else dequantize + dot per panel.
      const double tm = best_time(reps, [&] {
        if (ops.matvec) ops.matvec(q, x.data(), 0, rows, y.data());
        else cpu::linear(x.data(), 1, q, y.data());
      });
      // Relative RMS error: as quantized above (importance null: round to nearest for the
      // uniform formats), and with unit importance (their scale search on; lloyd: the same).
      auto rel_err = [&](const QuantizedWeight& qq) {
        double num = 0, den = 0;
        for (int64_t r = 0; r < rows; r += 64) {
          const int64_t n = std::min<int64_t>(64, rows - r);
          ops.dequantize_rows(qq, r, n, buf.data());
          for (int64_t i = 0; i < n * cols; ++i) {
            const double e = double(buf[size_t(i)]) - double(w[size_t(r * cols + i)]);
            num += e * e;
            den += double(w[size_t(r * cols + i)]) * w[size_t(r * cols + i)];
          }
        }
        return std::sqrt(num / den);
      };
      const std::vector<float> ones(static_cast<size_t>(cols), 1.0f);
      const double err_plain = rel_err(q);
      const double err_search = name.find("_g") != std::string::npos && name.rfind("lloyd", 0) != 0
                                    ? rel_err(ops.quantize({w.data(), rows, cols, ones.data()}))
                                    : err_plain;
      const double n = double(rows * cols), bytes = double(q.storage_bytes());
      fmt::print("{:<12} {:>5}x{:<5} {:>6.3f} {:>10.1f} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f} {:>8.4f} {:>8.4f}\n", name,
                 rows, cols, q.bits_per_weight(), tq * 1e3, n / td / 1e9, 4 * n / td / 1e9, 2 * n / tm / 1e9,
                 bytes / tm / 1e9, err_plain, err_search);
    }
  }
  fmt::print("deq GB/s counts f32 written; mv GB/s counts the packed bytes read (all parts). err: relative RMS\n"
             "error on N(0, 0.02) weights; rtn = importance null (round to nearest for q8/int), srch = unit\n"
             "importance (the scale search; the same for lloyd, whose quantizer always searches).\n\n");
}

void study() {
  using fmtq::CodebookMode;
  const std::vector<fmtq::LloydSpec> specs = {{"lloyd2_g32", 2, 32},   {"lloyd3_g32", 3, 32},
                                              {"lloyd4_g32", 4, 32},   {"lloyd2_g128", 2, 128},
                                              {"lloyd3_g128", 3, 128}, {"lloyd4_g128", 4, 128}};
  struct Row {
    std::string name;
    int64_t cols;
    double tensor, row, fair, extra;
  };
  std::vector<Row> rows_out;
  fmt::print("lloyd codebook study: importance-weighted relative error sum imp (W-Q)^2 / sum imp W^2\n");
  fmt::print("'fair' = per-row error x 4^(extra bpw): per-row wins only if fair < per-tensor\n");
  fmt::print("{:<12} {:>11} {:>6} {:>5} {:>10} {:>10} {:>10} {:>9} {:>10} {:>10}\n", "format", "shape", "data", "imp",
             "tensor", "row", "row fair", "+bpw", "1 round", "no refine");
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1536, 3072}, {3072, 1536}})
    for (bool heavy : {false, true}) {
      const std::vector<float> w = random_matrix(rows, cols, heavy, heavy ? 11 : 12);
      const std::vector<float> skew = skewed_importance(cols, 13);
      for (bool use_imp : {false, true}) {
        const float* imp = use_imp ? skew.data() : nullptr;
        double energy = 0;
        for (int64_t i = 0; i < rows * cols; ++i)
          energy += (imp ? double(imp[i % cols]) : 1.0) * double(w[size_t(i)]) * w[size_t(i)];
        const QuantizeInput in{w.data(), rows, cols, imp};
        for (const auto& s : specs) {
          auto err = [&](fmtq::LloydOptions o, double* bpw) {
            const QuantizedWeight q = fmtq::lloyd_quantize(s, in, o);
            if (bpw) *bpw = q.bits_per_weight();
            return fmtq::weighted_sq_error(q, w.data(), imp) / energy;
          };
          double bt = 0, br = 0;
          const double et = err({CodebookMode::PerTensor, 2, true}, &bt);
          const double er = err({CodebookMode::PerRow, 2, true}, &br);
          const double e1 = err({CodebookMode::PerTensor, 1, true}, nullptr);
          const double en = err({CodebookMode::PerTensor, 1, false}, nullptr);
          const double fair = er * std::pow(4.0, br - bt);
          fmt::print("{:<12} {:>5}x{:<5} {:>6} {:>5} {:>10.6f} {:>10.6f} {:>10.6f} {:>9.4f} {:>10.6f} {:>10.6f}\n",
                     s.name, rows, cols, heavy ? "t(4)" : "gauss", use_imp ? "skew" : "ones", et, er, fair, br - bt,
                     e1, en);
          rows_out.push_back({std::string(s.name), cols, et, er, fair, br - bt});
        }
      }
    }
  // Summary over data (gauss, t) x importance (ones, skew): ratios to the per-tensor error.
  fmt::print("\nsummary (min..max over gauss/t(4) x ones/skew importance)\n");
  fmt::print("{:<12} {:>5} {:>7} {:>18} {:>18} {:>10}\n", "format", "cols", "+bpw", "row/tensor", "row fair/tensor",
             "row wins");
  for (const auto& s : specs)
    for (int64_t cols : {3072, 1536}) {
      double lo = 1e9, hi = 0, flo = 1e9, fhi = 0, extra = 0;
      int wins = 0, n = 0;
      for (const Row& r : rows_out)
        if (r.name == s.name && r.cols == cols) {
          lo = std::min(lo, r.row / r.tensor);
          hi = std::max(hi, r.row / r.tensor);
          flo = std::min(flo, r.fair / r.tensor);
          fhi = std::max(fhi, r.fair / r.tensor);
          extra = r.extra;
          wins += r.fair < r.tensor;
          ++n;
        }
      fmt::print("{:<12} {:>5} {:>7.4f} {:>8.3f}..{:<8.3f} {:>8.3f}..{:<8.3f} {:>6}/{}\n", s.name, cols, extra, lo, hi,
                 flo, fhi, wins, n);
    }
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, reps = 5;
  bool do_speed = true, do_study = true;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--no-speed") do_speed = false;
    else if (a == "--no-study") do_study = false;
    else {
      fmt::print(stderr, "unknown option {}\n", a);
      return 2;
    }
  }
  set_num_threads(threads);
  fmt::print("bench_formats: {} thread(s), best of {}\n", num_threads(), reps);
  if (do_speed) speed(only, reps);
  if (do_study) study();
  return 0;
}
