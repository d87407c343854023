#include "eval/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "core/error.h"
#include "text/utf8.h"

namespace moeq {

std::string xml_escape(std::string_view s) {
  std::string valid;  // invalid UTF-8 would make the whole document unreadable to XML parsers
  text::utf8::append_lossy(valid, s);
  std::string out;
  out.reserve(valid.size());
  for (const char ch : valid) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') out += "\xEF\xBF\xBD";  // U+FFFD
        else out += ch;
    }
  }
  return out;
}

std::vector<double> linear_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || hi < lo) fail("linear_ticks: bad range [{}, {}]", lo, hi);
  if (hi == lo) lo -= 0.5, hi += 0.5;
  const double raw = (hi - lo) / double(std::max(target, 1));
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  const double step = (norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0) * mag;
  int64_t k0 = int64_t(std::floor(lo / step)), k1 = int64_t(std::ceil(hi / step));
  if (k0 == k1) --k0, ++k1;
  std::vector<double> ticks;
  for (int64_t k = k0; k <= k1; ++k) ticks.push_back(double(k) * step);  // k * step: no drift
  return ticks;
}

std::vector<double> log10_ticks(double lo, double hi) {
  if (!(lo > 0) || !std::isfinite(hi) || hi < lo) fail("log10_ticks: bad range [{}, {}]", lo, hi);
  const int d0 = int(std::floor(std::log10(lo))) - 1, d1 = int(std::ceil(std::log10(hi))) + 1;
  const bool minor = d1 - d0 - 2 < 3;
  std::vector<double> cand;
  for (int d = d0; d <= d1; ++d) {
    const double p = std::pow(10.0, d);
    cand.push_back(p);
    if (minor && d < d1) cand.push_back(2 * p), cand.push_back(5 * p);
  }
  // The tightest run of candidates around [lo, hi], at least two ticks.
  size_t i0 = 0, i1 = cand.size() - 1;
  for (size_t i = 0; i < cand.size(); ++i)
    if (cand[i] <= lo * (1 + 1e-12)) i0 = i;
  for (size_t i = cand.size(); i-- > 0;)
    if (cand[i] >= hi * (1 - 1e-12)) i1 = i;
  if (i0 >= i1) i0 = i0 > 0 ? i0 - 1 : 0, i1 = std::min(cand.size() - 1, i1 + 1);
  return {cand.begin() + std::ptrdiff_t(i0), cand.begin() + std::ptrdiff_t(i1) + 1};
}

namespace {

// Layout, in SVG user units.
constexpr double kWidth = 1000, kHeight = 560, kPanelWidth = 500;
constexpr double kPlotLeft = 80, kPlotRight = 475, kPlotTop = 95, kPlotBottom = 440;
constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"};

std::string num(double v) { return fmt::format("{:.2f}", v); }  // coordinates: fixed, locale-free

// Decimals enough to tell apart ticks `step` apart.
int decimals_for(double step) { return std::max(0, -int(std::floor(std::log10(step) + 1e-9))); }

std::string linear_label(double v, int dec) {
  if (std::fabs(v) < 1e-12) v = 0;  // no "-0.00"
  return fmt::format("{:.{}f}", v, dec);
}

std::string log_label(double v) { return fmt::format("{:g}", v); }

struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  double frac(double v) const {  // 0 at lo, 1 at hi
    return log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo)) : (v - lo) / (hi - lo);
  }
};

class Svg {
 public:
  void line(double x1, double y1, double x2, double y2, const std::string& style) {
    s_ += fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {}/>\n", num(x1), num(y1), num(x2), num(y2), style);
  }
  void text(double x, double y, std::string_view content, const std::string& attrs) {
    s_ += fmt::format("<text x=\"{}\" y=\"{}\" {}>{}</text>\n", num(x), num(y), attrs, xml_escape(content));
  }
  void raw(const std::string& s) { s_ += s; }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

// One panel: frame, grid, ticks and labels; returns the mapping from data to SVG coordinates.
struct Panel {
  double x0;  // left edge of the panel
  Axis x, y;
  double px(double v) const { return x0 + kPlotLeft + x.frac(v) * (kPlotRight - kPlotLeft); }
  double py(double v) const { return kPlotBottom - y.frac(v) * (kPlotBottom - kPlotTop); }
};

void draw_frame(Svg& svg, const Panel& p, const std::string& title, const std::string& ylabel,
                const std::vector<double>& xt, const std::vector<double>& yt) {
  const double l = p.x0 + kPlotLeft, r = p.x0 + kPlotRight;
  svg.text((l + r) / 2, kPlotTop - 15, title, "text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\"");
  const int xdec = xt.size() > 1 ? decimals_for(xt[1] - xt[0]) : 1;
  for (double t : xt) {
    const double x = p.px(t);
    svg.line(x, kPlotTop, x, kPlotBottom, "stroke=\"#e4e4e4\"");
    svg.line(x, kPlotBottom, x, kPlotBottom + 5, "stroke=\"#333\"");
    svg.text(x, kPlotBottom + 20, linear_label(t, xdec), "text-anchor=\"middle\" font-size=\"12\"");
  }
  const int ydec = yt.size() > 1 && !p.y.log ? decimals_for(yt[1] - yt[0]) : 0;
  for (double t : yt) {
    const double y = p.py(t);
    svg.line(l, y, r, y, "stroke=\"#e4e4e4\"");
    svg.line(l - 5, y, l, y, "stroke=\"#333\"");
    svg.text(l - 8, y + 4, p.y.log ? log_label(t) : linear_label(t, ydec), "text-anchor=\"end\" font-size=\"12\"");
  }
  svg.raw(fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#333\"/>\n", num(l),
                      num(kPlotTop), num(r - l), num(kPlotBottom - kPlotTop)));
  svg.text((l + r) / 2, kPlotBottom + 42, "bits per weight", "text-anchor=\"middle\" font-size=\"13\"");
  const double yl = p.x0 + 22, ym = (kPlotTop + kPlotBottom) / 2;
  svg.text(yl, ym, ylabel,
           fmt::format("text-anchor=\"middle\" font-size=\"13\" transform=\"rotate(-90 {} {})\"", num(yl), num(ym)));
}

void draw_point(Svg& svg, const Panel& p, double xv, double yv, const std::string& label, const char* color) {
  const double x = p.px(xv), y = p.py(yv);
  svg.raw(fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"5\" fill=\"{}\" stroke=\"#222\" stroke-width=\"0.8\"/>\n",
                      num(x), num(y), color));
  // Labels go right of the point, or left of it in the right quarter so they stay in the panel.
  const bool left = x > p.x0 + kPlotLeft + 0.72 * (kPlotRight - kPlotLeft);
  svg.text(left ? x - 8 : x + 8, y - 8, label,
           fmt::format("font-size=\"12\" fill=\"{}\"{}", color, left ? " text-anchor=\"end\"" : ""));
}

// Axis range from the finite values (plus padding), never empty.
Axis linear_axis(std::vector<double> v, std::vector<double>* ticks) {
  v.erase(std::remove_if(v.begin(), v.end(), [](double d) { return !std::isfinite(d); }), v.end());
  double lo = v.empty() ? 0 : *std::min_element(v.begin(), v.end());
  double hi = v.empty() ? 1 : *std::max_element(v.begin(), v.end());
  const double pad = hi > lo ? 0.06 * (hi - lo) : std::max(0.05 * std::fabs(lo), 0.5);
  *ticks = linear_ticks(lo - pad, hi + pad);
  return {ticks->front(), ticks->back(), false};
}

}  // namespace

std::string render_compare_svg(const CompareChart& c) {
  Svg svg;
  svg.raw("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n");
  svg.raw(fmt::format("<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{0}\" height=\"{1}\" "
                      "viewBox=\"0 0 {0} {1}\" font-family=\"DejaVu Sans, Arial, Helvetica, sans-serif\">\n",
                      kWidth, kHeight));
  svg.raw(fmt::format("<title>{}</title>\n", xml_escape("moeq eval compare: " + c.file)));
  svg.raw(fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"white\"/>\n", kWidth, kHeight));
  svg.text(kWidth / 2, 28, "Quality vs size: KL divergence and perplexity against bits per weight",
           "text-anchor=\"middle\" font-size=\"18\" font-weight=\"bold\"");
  svg.text(kWidth / 2, 50, "file: " + c.file + ", reference: " + c.ref_label,
           "text-anchor=\"middle\" font-size=\"13\"");

  // x: every model's bpw (the same axis in both panels).
  std::vector<double> xs;
  for (const auto& m : c.models) xs.push_back(m.bpw);
  std::vector<double> xt;
  const Axis xa = linear_axis(xs, &xt);

  // Left: KLD, log10 axis; only positive finite values can be drawn.
  std::vector<std::string> undrawn;
  std::vector<double> klds;
  for (const auto& m : c.models)
    if (std::isfinite(m.kld) && m.kld > 0 && std::isfinite(m.bpw)) klds.push_back(m.kld);
    else undrawn.push_back(m.label);
  {
    Panel p{0, xa, {}};
    std::vector<double> yt;
    if (klds.empty()) {
      yt = {0.001, 0.01, 0.1, 1};
    } else {
      const auto [mn, mx] = std::minmax_element(klds.begin(), klds.end());
      yt = log10_ticks(*mn / 1.25, *mx * 1.25);  // a little room above and below the points
    }
    p.y = {yt.front(), yt.back(), true};
    draw_frame(svg, p, "Mean KL divergence vs reference (log scale)", "mean KLD (nats, log scale)", xt, yt);
    if (klds.empty())
      svg.text(p.x0 + (kPlotLeft + kPlotRight) / 2, (kPlotTop + kPlotBottom) / 2, "no positive KLD to draw",
               "text-anchor=\"middle\" font-size=\"13\" fill=\"#777\"");
    for (size_t i = 0; i < c.models.size(); ++i) {
      const auto& m = c.models[i];
      if (std::isfinite(m.kld) && m.kld > 0 && std::isfinite(m.bpw))
        draw_point(svg, p, m.bpw, m.kld, m.label, kColors[i % std::size(kColors)]);
    }
  }

  // Right: PPL, linear axis including the reference's line.
  {
    std::vector<double> ys;
    for (const auto& m : c.models) ys.push_back(m.ppl);
    ys.push_back(c.ref_ppl);
    Panel p{kPanelWidth, xa, {}};
    std::vector<double> yt;
    p.y = linear_axis(ys, &yt);
    draw_frame(svg, p, "Perplexity (reference: dashed line)", "perplexity", xt, yt);
    if (std::isfinite(c.ref_ppl)) {
      const double y = p.py(c.ref_ppl), l = p.x0 + kPlotLeft, r = p.x0 + kPlotRight;
      svg.line(l, y, r, y, "stroke=\"#444\" stroke-width=\"1.2\" stroke-dasharray=\"6 4\"");
      svg.text(l + 6, y - 6, fmt::format("reference {}: PPL {:.4f} ({:.3f} bpw)", c.ref_label, c.ref_ppl, c.ref_bpw),
               "font-size=\"11\" fill=\"#444\"");
    }
    for (size_t i = 0; i < c.models.size(); ++i) {
      const auto& m = c.models[i];
      if (std::isfinite(m.ppl) && std::isfinite(m.bpw))
        draw_point(svg, p, m.bpw, m.ppl, m.label, kColors[i % std::size(kColors)]);
    }
  }

  std::string note = fmt::format(
      "Note: the reference ({}, {:.3f} bpw) has KLD 0 by definition, which a log axis cannot show: "
      "it is drawn only in the PPL panel (dashed line).",
      c.ref_label, c.ref_bpw);
  svg.text(20, kHeight - 58, note, "font-size=\"12\" fill=\"#333\"");
  if (!undrawn.empty()) {
    std::string names;
    for (const auto& u : undrawn) names += (names.empty() ? "" : ", ") + u;
    svg.text(20, kHeight - 40, "Not in the KLD panel (KLD 0 or not finite): " + names, "font-size=\"12\" fill=\"#333\"");
  }
  svg.text(20, kHeight - 16, fmt::format("moeq eval compare, {}, {} windows of {}", c.file, c.windows, c.ctx),
           "font-size=\"11\" fill=\"#777\"");
  svg.raw("</svg>\n");
  return svg.str();
}

}  // namespace moeq
