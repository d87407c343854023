// Shared helpers for the tests: where the fixtures are, running the CLI, temporary directories.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace moeq::test {

std::filesystem::path source_dir();  // the repository root
std::filesystem::path tiny_model_dir();  // models/tiny-m2
std::filesystem::path data_dir();        // data/

struct CliResult {
  int exit_code = -1;      // the process's exit status; -1 if it did not exit normally
  int signal = 0;          // the signal that killed it, if any (a crash)
  std::string output;      // stdout and stderr together
};
// Runs build/moeq with the given arguments (no shell quoting needed).
CliResult run_cli(const std::vector<std::string>& args);

// A fresh temporary directory, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace moeq::test
