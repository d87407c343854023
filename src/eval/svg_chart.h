// The chart of `moeq eval compare` (DESIGN §7): two panels side by side, mean KLD on a log10 axis
// (left) and perplexity (right) against bits per weight, one labelled point per model. Plain SVG 1.1
// written by hand: no library, no dates, fixed number formatting, so the same inputs always give
// the same bytes (charts can be committed and diffed).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moeq {

struct ChartModel {
  std::string label;  // shown next to the point (any text: it is escaped)
  double bpw = 0, kld = 0, ppl = 0;
};

struct CompareChart {
  std::vector<ChartModel> models;
  // The reference has KLD 0 by definition (not drawable on a log axis): it appears only in the
  // PPL panel, as a dashed horizontal line at its perplexity, and a note on the chart says so.
  std::string ref_label;
  double ref_bpw = 0, ref_ppl = 0;
  std::string file;  // the evaluation text, as given on the command line
  int64_t windows = 0;
  int ctx = 0;
};

std::string render_compare_svg(const CompareChart& chart);

// Text for XML content and attribute values: & < > " ' escaped; invalid UTF-8 and the control
// characters XML 1.0 forbids become U+FFFD.
std::string xml_escape(std::string_view s);

// Axis helpers (exposed for the tests).
// Ticks k * step with step in {1, 2, 5} x 10^n, about `target` of them, covering [lo, hi]; the
// first tick <= lo and the last >= hi (the axis is drawn from the first to the last).
std::vector<double> linear_ticks(double lo, double hi, int target = 5);
// Powers of ten from <= lo to >= hi (lo > 0); with fewer than three decades, 2x and 5x too.
std::vector<double> log10_ticks(double lo, double hi);

}  // namespace moeq
