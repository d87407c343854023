// End-to-end: tests/server/e2e.py starts `moeq serve` on tiny-m2 and talks to it with the official
// `openai` Python client (models, chat and completions with and without streaming, reasoning,
// errors, API key, overload 503, disconnects, concurrency, shutdown). Its report is printed
// when it fails. The openai package is a test requirement (scripts/requirements-test.txt).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>

#include "support/test_support.h"

namespace moeq::test {
namespace {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

TEST(ServerE2E, OpenAIClientAgainstTinyM2) {
  const std::string cmd = "python3 " + shell_quote((source_dir() / "tests" / "server" / "e2e.py").string()) +
                          " --moeq " + shell_quote(MOEQ_BIN) + " --model " + shell_quote(tiny_model_dir().string()) +
                          " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, n);
  const int st = pclose(p);
  const int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  ASSERT_NE(code, 127) << "python3 was not found on PATH\n" << output;
  ASSERT_NE(code, 3) << "the Python package openai is missing: pip install -r scripts/requirements-test.txt\n" << output;
  EXPECT_EQ(code, 0) << "tests/server/e2e.py failed:\n" << output;
}

}  // namespace
}  // namespace moeq::test
