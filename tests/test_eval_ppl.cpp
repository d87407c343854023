// `moeq eval ppl` on the four held-out files matches the Hugging Face reference perplexities in
// models/tiny-m2/golden.json within 0.1% (same protocol: 32 windows of 512 tokens).
#include <gtest/gtest.h>

#include <cmath>

#include "io/json_file.h"
#include "support/test_support.h"

using namespace moeq;

class EvalPpl : public ::testing::TestWithParam<std::string> {};

TEST_P(EvalPpl, MatchesGolden) {
  const std::string name = GetParam();
  const nlohmann::json golden = io::read_json_file(test::tiny_model_dir() / "golden.json");
  const auto file = test::data_dir() / "eval" / (name + ".txt");
  const test::CliResult r =
      test::run_cli({"eval", "ppl", "-m", test::tiny_model_dir().string(), "-f", file.string(), "--ctx", "512",
                     "--chunks", "32", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The last line of stdout is one JSON object (stderr carries the progress lines).
  const auto end = r.output.find_last_of('}');
  ASSERT_NE(end, std::string::npos) << r.output;
  const auto begin = r.output.rfind("\n{", end);
  const nlohmann::json j = nlohmann::json::parse(r.output.substr(begin == std::string::npos ? 0 : begin + 1, end - begin));
  const double ppl = j["ppl"].get<double>(), ref = golden["ppl_" + name].get<double>();
  EXPECT_EQ(j["tokens"].get<int64_t>(), golden["tokens_" + name].get<int64_t>());
  EXPECT_LT(std::fabs(ppl - ref) / ref, 1e-3) << name << ": moeq " << ppl << " vs reference " << ref;
  std::printf("%s: ppl %.4f (reference %.4f)\n", name.c_str(), ppl, ref);
}

INSTANTIATE_TEST_SUITE_P(Golden, EvalPpl, ::testing::Values("dev_docs", "dev_gcide", "dev_pycode", "dev_cheaders"));

TEST(EvalPplErrors, BadArgumentsFailCleanly) {
  const auto m = test::tiny_model_dir().string();
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"eval", "ppl", "-m", m, "-f", "/no/such/file.txt"},
           {"eval", "ppl", "-m", m, "-f", (test::data_dir() / "eval" / "dev_docs.txt").string(), "--ctx", "1"},
           {"eval", "ppl", "-m", m, "-f", (test::tiny_model_dir() / "config.json").string(), "--ctx", "100000"}}) {
    const test::CliResult r = test::run_cli(args);
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.signal, 0) << r.output;
  }
}
