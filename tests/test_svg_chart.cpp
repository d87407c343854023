// The compare chart (eval/svg_chart.h): well-formed standalone SVG whatever the labels hold,
// deterministic bytes, one labelled point per model, sensible axis ticks.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <fstream>

#include "eval/svg_chart.h"
#include "support/test_support.h"

using namespace moeq;

namespace {

// Parses the document with Python's XML parser (python3 is on PATH wherever the tests run).
bool well_formed_xml(const std::string& doc) {
  test::TempDir dir;
  const auto path = dir / "chart.svg";
  std::ofstream(path, std::ios::binary) << doc;
  const std::string cmd =
      "python3 -c \"import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])\" '" + path.string() + "'";
  const int st = std::system(cmd.c_str());
  return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

size_t count(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + needle.size())) ++n;
  return n;
}

CompareChart sample() {
  CompareChart c;
  c.ref_label = "tiny-m2";
  c.ref_bpw = 8.0123;
  c.ref_ppl = 12.5;
  c.file = "data/eval/dev_docs.txt";
  c.windows = 4;
  c.ctx = 128;
  c.models = {{"mq4", 4.56, 0.021, 12.9}, {"mq3-lloyd", 3.61, 0.063, 13.8}, {"mq2", 2.7, 0.31, 17.2}};
  return c;
}

}  // namespace

TEST(SvgChart, WellFormedDeterministicOnePointPerModel) {
  const CompareChart c = sample();
  const std::string svg = render_compare_svg(c);
  EXPECT_EQ(svg, render_compare_svg(c));  // same inputs, same bytes
  EXPECT_TRUE(svg.starts_with("<?xml version=\"1.0\""));
  EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("version=\"1.1\""), std::string::npos);
  EXPECT_TRUE(well_formed_xml(svg));
  EXPECT_EQ(count(svg, "<circle"), 6u);  // three models, two panels
  for (const auto& m : c.models) EXPECT_EQ(count(svg, ">" + m.label + "</text>"), 2u) << m.label;
  EXPECT_NE(svg.find("moeq eval compare, data/eval/dev_docs.txt, 4 windows of 128"), std::string::npos);
  EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);  // the reference's PPL line
  EXPECT_NE(svg.find("reference tiny-m2: PPL 12.5000"), std::string::npos);
  EXPECT_NE(svg.find("drawn only in the PPL panel"), std::string::npos);
  // Log axis labels: the KLDs span 0.021..0.31, so ticks run 0.01 .. 0.5 with 2x and 5x steps.
  for (const char* t : {">0.01</text>", ">0.02</text>", ">0.05</text>", ">0.1</text>", ">0.2</text>"})
    EXPECT_NE(svg.find(t), std::string::npos) << t;
}

TEST(SvgChart, EscapesLabelsAndFileNames) {
  CompareChart c = sample();
  c.models[0].label = "a&b<c>\"d'e";
  c.models[1].label = std::string("bad\xff utf8 \x01 ctl");
  c.file = "x&y<z>.txt";
  c.ref_label = "<ref>";
  const std::string svg = render_compare_svg(c);
  EXPECT_TRUE(well_formed_xml(svg)) << svg;
  EXPECT_EQ(svg.find("a&b"), std::string::npos);
  EXPECT_EQ(svg.find("<c>"), std::string::npos);
  EXPECT_EQ(svg.find("<ref>"), std::string::npos);
  EXPECT_EQ(count(svg, "a&amp;b&lt;c&gt;&quot;d&apos;e"), 2u);
  EXPECT_NE(svg.find("x&amp;y&lt;z&gt;.txt"), std::string::npos);
  EXPECT_EQ(xml_escape("\xff"), "\xEF\xBF\xBD");
  EXPECT_EQ(xml_escape("tab\tok"), "tab\tok");
}

TEST(SvgChart, ZeroOrMissingKldIsLeftOutOfTheLogPanelOnly) {
  CompareChart c = sample();
  c.models[0].kld = 0;         // e.g. the reference compared with itself
  c.models[1].ppl = std::nan("");
  const std::string svg = render_compare_svg(c);
  EXPECT_TRUE(well_formed_xml(svg));
  EXPECT_EQ(count(svg, "<circle"), 4u);  // mq4 only in PPL, mq3-lloyd only in KLD, mq2 in both
  EXPECT_NE(svg.find("Not in the KLD panel (KLD 0 or not finite): mq4"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);

  CompareChart one;  // one model, KLD 0: both axes degenerate, still a valid chart
  one.ref_label = "r";
  one.ref_ppl = 10;
  one.models = {{"same", 8.0, 0.0, 10.0}};
  const std::string s1 = render_compare_svg(one);
  EXPECT_TRUE(well_formed_xml(s1));
  EXPECT_NE(s1.find("no positive KLD to draw"), std::string::npos);
  EXPECT_EQ(s1.find("nan"), std::string::npos);
}

void expect_ticks(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12 * std::fabs(want[i]) + 1e-15) << i;
}

TEST(SvgChart, Ticks) {
  expect_ticks(linear_ticks(0.03, 0.97), {0, 0.2, 0.4, 0.6, 0.8, 1});
  expect_ticks(linear_ticks(2.7, 8.1), {2, 3, 4, 5, 6, 7, 8, 9});
  EXPECT_GE(linear_ticks(5, 5).size(), 2u);
  expect_ticks(log10_ticks(0.003, 0.02), {0.002, 0.005, 0.01, 0.02});
  expect_ticks(log10_ticks(1e-5, 0.5), {1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1});
  EXPECT_GE(log10_ticks(0.05, 0.05).size(), 2u);
}
