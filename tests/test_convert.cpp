// moeq convert: bad input is refused before any work; a killed conversion resumes to identical
// bytes; --calib-all-experts gives every expert statistics; the output loads and runs.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "io/json_file.h"
#include "support/convert_fixture.h"
#include "support/test_support.h"

using namespace moeq;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> convert_args(const fs::path& out, std::vector<std::string> extra) {
  std::vector<std::string> a = {"convert", "-i", test::tiny_model_dir().string(), "-o", out.string()};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

void expect_refused(const test::CliResult& r, const std::string& needle, const fs::path& out) {
  EXPECT_EQ(r.signal, 0) << r.output;
  EXPECT_EQ(r.exit_code, r.output.find("moeq: error") != std::string::npos ? 1 : 2) << r.output;
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(needle), std::string::npos) << "missing '" << needle << "' in:\n" << r.output;
  EXPECT_FALSE(fs::exists(out)) << "no output may appear";
  EXPECT_FALSE(fs::exists(out.string() + ".work")) << "no work may start";
}

pid_t spawn(const std::vector<std::string>& args) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::vector<std::string> copy = args;
    std::vector<char*> argv;
    std::string bin = MOEQ_BIN;
    argv.push_back(bin.data());
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

}  // namespace

TEST(Convert, RefusesBadInputBeforeAnyWork) {
  test::TempDir tmp;
  const fs::path out = tmp / "q";
  const auto calib = test::quick_calib();
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), calib.begin(), calib.end());
    return convert_args(out, extra);
  };
  expect_refused(test::run_cli(with({"--preset", "mq9"})), "unknown preset 'mq9'", out);
  std::ofstream(tmp / "bad_regex.json") << R"({"rules": [{"match": "experts\\.(", "format": "int4_g32"}]})";
  expect_refused(test::run_cli(with({"--recipe", (tmp / "bad_regex.json").string()})), "bad regular expression", out);
  std::ofstream(tmp / "partial.json") << R"({"name": "partial", "rules": [{"match": "experts", "format": "int4_g32"}]})";
  expect_refused(test::run_cli(with({"--recipe", (tmp / "partial.json").string()})), "assigns no format", out);
  std::ofstream(tmp / "badfmt.json") << R"({"rules": [{"match": ".*", "format": "int5_g32"}]})";
  expect_refused(test::run_cli(with({"--recipe", (tmp / "badfmt.json").string()})), "unknown format 'int5_g32'", out);
  std::ofstream(tmp / "awq_rtn.json") << R"({"rules": [{"match": ".*", "format": "int4_g32", "awq": true, "rtn": true}]})";
  expect_refused(test::run_cli(with({"--recipe", (tmp / "awq_rtn.json").string()})), "'awq' and 'rtn' exclude each other",
                 out);
  std::ofstream(tmp / "notjson.json") << "{rules: ";
  expect_refused(test::run_cli(with({"--recipe", (tmp / "notjson.json").string()})), "notjson.json", out);
  expect_refused(test::run_cli(convert_args(out, {"--preset", "mq4", "--calib", (tmp / "missing.txt").string()})),
                 "missing.txt", out);
  expect_refused(test::run_cli(convert_args(out, {"--preset", "mq4"})), "--calib", out);
  expect_refused(test::run_cli(with({"--preset", "mq4", "--recipe", (tmp / "partial.json").string()})),
                 "exactly one of --preset and --recipe", out);
  // An existing output is never overwritten.
  fs::create_directories(tmp / "exists");
  const auto r = test::run_cli(convert_args(tmp / "exists", {"--preset", "mq4", "--calib", calib[1]}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("already exists"), std::string::npos) << r.output;
}

TEST(Convert, KilledConversionResumesToIdenticalBytes) {
  test::TempDir tmp;
  // Small calibration: this converts twice and a half.
  std::vector<std::string> settings = {"--preset", "awq-w4g32", "--calib-all-experts", "--calib",
                                       (test::data_dir() / "calib" / "calib_mixed.txt").string(), "--calib-tokens",
                                       "1024", "--calib-ctx", "256", "--awq-sample-rows", "64", "-q"};
  // Uninterrupted.
  const auto a = test::run_cli(convert_args(tmp / "a", settings));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  // Killed (SIGKILL) once at least two layers are done, then resumed.
  const fs::path b = tmp / "b", state = tmp / "b.work" / "state.json";
  const pid_t pid = spawn(convert_args(b, settings));
  bool killed = false;
  for (int i = 0; i < 60000 && !killed; ++i) {
    if (fs::exists(state)) {
      try {
        if (io::read_json_file(state).value("next_layer", 0) >= 2) {
          kill(pid, SIGKILL);
          killed = true;
        }
      } catch (...) {  // caught mid-rename: try again
      }
    }
    int status;
    if (!killed && waitpid(pid, &status, WNOHANG) == pid) break;  // finished before we could kill it
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(killed) << "the conversion ended before it could be killed";
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_FALSE(fs::exists(b)) << "a killed conversion leaves no output";
  // Without --resume the work directory is not silently reused.
  const auto refused = test::run_cli(convert_args(b, settings));
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.output.find("--resume"), std::string::npos) << refused.output;
  // Other options: refused.
  std::vector<std::string> other = settings;
  other[1] = "rtn-w4g32";
  other.push_back("--resume");
  const auto mismatch = test::run_cli(convert_args(b, other));
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_NE(mismatch.output.find("other inputs or options"), std::string::npos) << mismatch.output;
  settings.push_back("--resume");
  const auto resumed = test::run_cli(convert_args(b, settings));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resumed after"), std::string::npos) << resumed.output;
  EXPECT_FALSE(fs::exists(tmp / "b.work"));
  // Byte-identical: every file.
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(tmp / "a")) {
    ++files;
    ASSERT_TRUE(fs::exists(b / e.path().filename())) << e.path().filename();
    EXPECT_TRUE(slurp(e.path()) == slurp(b / e.path().filename())) << e.path().filename() << " differs";
  }
  EXPECT_GE(files, 8u);
  // With --calib-all-experts every expert's statistics cover every calibration token.
  const nlohmann::json cfg = io::read_json_file(b / "config.json");
  const auto& cal = cfg["quantization_config"]["calibration"];
  EXPECT_EQ(cal["expert_statistics_tokens_min"].get<int64_t>(), cal["tokens"].get<int64_t>());
  EXPECT_TRUE(cal["all_experts"].get<bool>());
}

TEST(Convert, OutputLoadsRunsAndInspects) {
  std::vector<std::string> args = {"--preset", "mq3-lloyd"};
  const auto calib = test::quick_calib();
  args.insert(args.end(), calib.begin(), calib.end());
  const fs::path m = test::converted_model(args);
  ASSERT_FALSE(m.empty());
  const auto run = test::run_cli({"run", "-m", m.string(), "-p", "The Python", "-n", "8", "--greedy"});
  EXPECT_EQ(run.exit_code, 0) << run.output;
  const auto ins = test::run_cli({"inspect", "-m", m.string()});
  EXPECT_EQ(ins.exit_code, 0) << ins.output;
  EXPECT_NE(ins.output.find("lloyd3_g32"), std::string::npos) << ins.output;
  EXPECT_NE(ins.output.find("q8_g32"), std::string::npos) << ins.output;
  const nlohmann::json cfg = io::read_json_file(m / "config.json");
  const auto& q = cfg["quantization_config"];
  EXPECT_EQ(q["quant_method"], "moeq");
  EXPECT_EQ(q["modules"]["model.layers.0.block_sparse_moe.experts.0.w1"]["format"], "lloyd3_g32");
  EXPECT_EQ(q["modules"]["model.layers.5.block_sparse_moe.experts.31.w2"]["format"], "int4_g32");
  EXPECT_EQ(q["modules"]["lm_head"]["format"], "q8_g32");
  // Without --calib-all-experts the statistics of an expert cover only its routed tokens.
  EXPECT_LT(q["calibration"]["expert_statistics_tokens_min"].get<int64_t>(), q["calibration"]["tokens"].get<int64_t>());
}
