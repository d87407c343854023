#include "support/convert_fixture.h"

#include <gtest/gtest.h>

#include <functional>

#include "support/test_support.h"

namespace moeq::test {

std::vector<std::string> quick_calib() {
  return {"--calib", (data_dir() / "calib" / "calib_mixed.txt").string(), "--calib-tokens", "4096", "--calib-ctx", "512",
          "--awq-sample-rows", "128", "-q"};
}

std::filesystem::path converted_model(const std::vector<std::string>& args) {
  std::string key;
  for (const auto& a : args) key += a + "\x1f";
  const auto dir = std::filesystem::path(MOEQ_BIN).parent_path() / "test-models" /
                   ("tiny-" + std::to_string(std::hash<std::string>{}(key)));
  if (std::filesystem::exists(dir / "config.json")) return dir;
  std::filesystem::create_directories(dir.parent_path());
  std::filesystem::remove_all(dir.string() + ".work");
  std::vector<std::string> cmd = {"convert", "-i", tiny_model_dir().string(), "-o", dir.string()};
  cmd.insert(cmd.end(), args.begin(), args.end());
  const CliResult r = run_cli(cmd);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  return r.exit_code == 0 ? dir : std::filesystem::path();
}

}  // namespace moeq::test
