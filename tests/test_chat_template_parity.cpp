// Byte-for-byte parity of moeq's chat-template rendering with Python's jinja2 (configured as
// Hugging Face transformers configures it): tests/jinja/render_reference.py renders every
// (template, conversation) pair of the corpus, and moeq must produce the same bytes, or fail
// where jinja2 fails. jinja2 is a test requirement (CI installs it): missing is a failure.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/wait.h>

#include "support/test_support.h"
#include "text/chat_template.h"

namespace moeq::test {
namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct RefRun {
  int status = -1;
  std::string output;
};

RefRun run_reference(const fs::path& out_dir) {
  const fs::path script = source_dir() / "tests" / "jinja" / "render_reference.py";
  const std::string cmd = "python3 " + shell_quote(script.string()) + " " + shell_quote(out_dir.string()) + " 2>&1";
  RefRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// Where two renderings first differ, with some context, for a readable failure.
std::string first_difference(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const size_t from = i > 60 ? i - 60 : 0;
  return "first difference at byte " + std::to_string(i) + "\n  jinja2: " +
         ojson(want.substr(from, 120)).dump(-1, ' ', true, ojson::error_handler_t::replace) + "\n  moeq:   " +
         ojson(got.substr(from, 120)).dump(-1, ' ', true, ojson::error_handler_t::replace);
}

class Templates {
 public:
  Templates() {
    by_name_.emplace("minimax_m2", text::ChatTemplate::from_model_dir(tiny_model_dir()));
    for (const auto& entry : fs::directory_iterator(source_dir() / "tests" / "jinja" / "templates")) {
      if (entry.path().extension() != ".jinja") continue;
      const std::string name = entry.path().stem().string();
      ojson tokens = ojson::object();
      const fs::path tok = entry.path().parent_path() / (name + ".tokens.json");
      if (fs::exists(tok)) tokens = text::ChatTemplate::special_tokens_from_config(ojson::parse(slurp(tok)));
      by_name_.emplace(name, text::ChatTemplate(slurp(entry.path()), tokens));
    }
  }
  const text::ChatTemplate& get(const std::string& name) const { return by_name_.at(name); }
  size_t size() const { return by_name_.size(); }

 private:
  std::map<std::string, text::ChatTemplate> by_name_;
};

TEST(ChatTemplateParity, MatchesJinja2ByteForByte) {
  TempDir tmp;
  const RefRun ref = run_reference(tmp.path());
  ASSERT_NE(ref.status, 127) << "python3 was not found on PATH. The chat-template parity test needs Python 3 "
                                "with jinja2: install python3, then pip install jinja2.\n" << ref.output;
  ASSERT_NE(ref.status, 3) << "the Python package jinja2 is missing: pip install jinja2\n" << ref.output;
  ASSERT_EQ(ref.status, 0) << "render_reference.py failed:\n" << ref.output;

  const Templates templates;
  EXPECT_GE(templates.size(), 3u) << "parity needs MiniMax-M2's template and at least two others";
  std::map<std::string, ojson> conversations;
  for (const auto& entry : fs::directory_iterator(source_dir() / "tests" / "jinja" / "conversations"))
    if (entry.path().extension() == ".json") conversations[entry.path().stem().string()] = ojson::parse(slurp(entry.path()));
  EXPECT_GE(conversations.size(), 30u);

  std::istringstream pairs(slurp(tmp / "pairs.txt"));
  std::string pair;
  size_t checked = 0, rendered = 0;
  while (std::getline(pairs, pair)) {
    if (pair.empty()) continue;
    const size_t sep = pair.find("__");
    ASSERT_NE(sep, std::string::npos) << pair;
    const auto& tmpl = templates.get(pair.substr(0, sep));
    const ojson& conv = conversations.at(pair.substr(sep + 2));
    const ojson tools = conv.contains("tools") ? conv["tools"] : ojson();
    const ojson extra = conv.contains("extra") ? conv["extra"] : ojson::object();
    const bool agp = conv["add_generation_prompt"].get<bool>();
    ++checked;
    if (fs::exists(tmp / (pair + ".out"))) {
      const std::string want = slurp(tmp / (pair + ".out"));
      try {
        const std::string got = tmpl.render(conv["messages"], tools, agp, extra);
        EXPECT_TRUE(got == want) << pair << ": " << first_difference(want, got);
        ++rendered;
      } catch (const std::exception& e) {
        ADD_FAILURE() << pair << ": jinja2 renders it, moeq failed: " << e.what();
      }
    } else {
      const std::string err = slurp(tmp / (pair + ".err"));
      try {
        tmpl.render(conv["messages"], tools, agp, extra);
        ADD_FAILURE() << pair << ": jinja2 failed (" << err << "), moeq rendered it";
      } catch (const text::jinja::TemplateError& e) {
        // A template's own raise_exception() must carry the same message.
        if (err.rfind("TemplateError: ", 0) == 0) {
          EXPECT_TRUE(e.raised_by_template()) << pair << ": " << e.what();
          EXPECT_EQ(std::string(e.what()) + "\n", err.substr(15)) << pair;
        }
      }
    }
  }
  EXPECT_GE(checked, 90u);
  EXPECT_GE(rendered, 90u);
  std::printf("chat template parity: %zu pairs (%zu renderings, %zu expected failures)\n", checked, rendered,
              checked - rendered);
}

}  // namespace
}  // namespace moeq::test
