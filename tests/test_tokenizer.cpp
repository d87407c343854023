// Byte-level BPE tokenizer: parity with Hugging Face `tokenizers` (fixtures made by
// tools/make_token_fixtures.py), round trips, special tokens, streaming, malformed files.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "core/error.h"
#include "io/json_file.h"
#include "io/safetensors.h"
#include "support/test_support.h"
#include "text/tokenizer.h"
#include "text/utf8.h"

using moeq::text::StreamDecoder;
using moeq::text::Tokenizer;
namespace fs = std::filesystem;
namespace mt = moeq::test;

namespace {

const Tokenizer& tiny() {
  static const Tokenizer t = Tokenizer::from_model_dir(mt::tiny_model_dir());
  return t;
}

std::string read_file(const fs::path& p) { return moeq::io::read_text_file(p); }

fs::path fixtures() { return mt::source_dir() / "tests" / "fixtures" / "tokens"; }

std::vector<int32_t> read_u16(const fs::path& p) {
  const std::string b = read_file(p);
  std::vector<int32_t> ids(b.size() / 2);
  for (size_t i = 0; i < ids.size(); ++i)
    ids[i] = int32_t(uint8_t(b[2 * i]) | (uint32_t(uint8_t(b[2 * i + 1])) << 8));
  return ids;
}

std::vector<fs::path> eval_files() {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(mt::data_dir() / "eval"))
    if (e.path().filename().string().rfind("dev_", 0) == 0 && e.path().extension() == ".txt")
      files.push_back(e.path());
  std::sort(files.begin(), files.end());
  return files;
}

// Index of the first difference, for readable failures on 100k-id vectors.
::testing::AssertionResult same_ids(const std::vector<int32_t>& got, const std::vector<int32_t>& want) {
  const size_t n = std::min(got.size(), want.size());
  for (size_t i = 0; i < n; ++i)
    if (got[i] != want[i])
      return ::testing::AssertionFailure() << "first difference at " << i << ": got " << got[i]
                                           << ", want " << want[i] << " (sizes " << got.size()
                                           << " / " << want.size() << ")";
  if (got.size() != want.size())
    return ::testing::AssertionFailure() << "sizes differ: got " << got.size() << ", want " << want.size();
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(Tokenizer, LoadsTinyM2) {
  const Tokenizer& t = tiny();
  EXPECT_EQ(t.vocab_size(), 8192);
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.token_id("<think>"), 3);
  EXPECT_EQ(t.token_id("Ġ"), 237);  // vocab entries are looked up by their byte-level spelling
  EXPECT_FALSE(t.token_id("no such token").has_value());
  EXPECT_TRUE(t.is_special(0));
  EXPECT_FALSE(t.is_special(300));
  EXPECT_FALSE(t.is_special(-1));
  EXPECT_FALSE(t.is_special(1 << 20));
  EXPECT_EQ(t.token_bytes(0), "]~!b[");
  EXPECT_EQ(t.token_bytes(237), " ");
  EXPECT_THROW(t.token_bytes(8192), moeq::Error);
  EXPECT_THROW(t.token_bytes(-1), moeq::Error);
}

TEST(Tokenizer, GoldenInputIds) {
  auto st = moeq::io::SafetensorsFile::open(mt::tiny_model_dir() / "golden.safetensors");
  const moeq::HostArray a = st.get("input_ids");
  ASSERT_EQ(a.shape, (std::vector<int64_t>{2, 48}));
  ASSERT_EQ(a.dtype, moeq::DType::I32);
  const char* names[2] = {"dev_docs.txt", "dev_pycode.txt"};
  for (int s = 0; s < 2; ++s) {
    const auto ids = tiny().encode(read_file(mt::data_dir() / "eval" / names[s]), false);
    ASSERT_GE(ids.size(), 1048u);
    const std::vector<int32_t> got(ids.begin() + 1000, ids.begin() + 1048);
    const std::vector<int32_t> want(a.as<int32_t>() + 48 * s, a.as<int32_t>() + 48 * (s + 1));
    EXPECT_TRUE(same_ids(got, want)) << names[s];
  }
}

TEST(Tokenizer, HuggingFaceParityEvalFiles) {
  const auto files = eval_files();
  ASSERT_EQ(files.size(), 4u);
  for (const fs::path& f : files) {
    const auto want = read_u16(fixtures() / (f.stem().string() + ".u16"));
    EXPECT_TRUE(same_ids(tiny().encode(read_file(f)), want)) << f;
  }
}

TEST(Tokenizer, HuggingFaceParityCalibPrefix) {
  std::string text = read_file(mt::data_dir() / "calib" / "calib_mixed.txt").substr(0, 256 * 1024);
  text.resize(text.rfind('\n') + 1);  // the cut tools/make_token_fixtures.py makes
  EXPECT_TRUE(same_ids(tiny().encode(text), read_u16(fixtures() / "calib_256k.u16")));
}

TEST(Tokenizer, HuggingFaceParityTrickyStrings) {
  const auto doc = moeq::io::read_json_file(fixtures() / "tricky.json");
  ASSERT_GE(doc["cases"].size(), 20u);
  for (const auto& c : doc["cases"]) {
    const std::string text = c["text"];
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const std::string label = text.substr(0, 60);
    EXPECT_TRUE(same_ids(tiny().encode(text), ids)) << label;
    EXPECT_TRUE(same_ids(tiny().encode(text, false), c["ids_no_special"].get<std::vector<int32_t>>())) << label;
    EXPECT_EQ(tiny().decode(ids), c["decoded"].get<std::string>()) << label;
    EXPECT_EQ(tiny().decode(ids, true), c["decoded_skip"].get<std::string>()) << label;
  }
}

TEST(Tokenizer, RoundTripEvalFiles) {
  for (const fs::path& f : eval_files()) {
    const std::string text = read_file(f);
    EXPECT_TRUE(tiny().decode(tiny().encode(text)) == text) << f;
    EXPECT_TRUE(tiny().decode(tiny().encode(text, false)) == text) << f;
  }
}

TEST(Tokenizer, SpecialTokens) {
  const Tokenizer& t = tiny();
  EXPECT_EQ(t.encode("]~!b["), std::vector<int32_t>{0});
  EXPECT_EQ(t.encode("[e~["), std::vector<int32_t>{2});
  EXPECT_EQ(t.encode("<think>"), std::vector<int32_t>{3});
  const std::string chat = "]~!b[]~b]user\nhi[e~[\n]~b]ai\n<think>\n";
  const auto ids = t.encode(chat);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 2), 1);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 3), 1);
  EXPECT_EQ(t.decode(ids), chat);
  EXPECT_EQ(t.decode(ids, true), "user\nhi\nai\n\n");
  // As plain text no added token may appear, and the text still comes back.
  const auto plain = t.encode(chat, false);
  for (int32_t id : plain) EXPECT_FALSE(t.is_special(id)) << id;
  EXPECT_EQ(t.decode(plain), chat);
  EXPECT_NE(t.encode("<think>", false), std::vector<int32_t>{3});
}

TEST(Tokenizer, DecodeIgnoresUnknownIdsAndReplacesBadUtf8) {
  const Tokenizer& t = tiny();
  const std::vector<int32_t> ids = {-5, 300, 1 << 20, 8192};
  EXPECT_EQ(t.decode(ids), t.token_bytes(300));
  // A lone first byte of a multi-byte character decodes to U+FFFD.
  const auto e = t.encode("é");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(t.decode(std::vector<int32_t>{e[0]}), "\xEF\xBF\xBD");
  EXPECT_EQ(t.decode(e), "é");
}

TEST(Tokenizer, InvalidUtf8IsEncodedWithoutLoss) {
  std::mt19937 rng(7);
  const Tokenizer& t = tiny();
  std::vector<std::string> inputs = {"\xFF", "abc\xC3", "\xE2\x82", "a\x80\x80 b", "\xF0\x9F\x98",
                                     "x\xED\xA0\x80y", "\xC0\xAF", std::string("nul\0in", 6)};
  for (int i = 0; i < 200; ++i) {
    std::string s(size_t(rng() % 64), '\0');
    for (char& c : s) c = char(rng() % 4 == 0 ? rng() % 256 : "ab \n'1\xC3\xA9\xE2"[rng() % 9]);
    inputs.push_back(s);
  }
  for (const std::string& s : inputs) {
    std::string back;
    for (int32_t id : t.encode(s)) back += t.token_bytes(id);
    EXPECT_EQ(back, s);
    std::string lossy;
    moeq::text::utf8::append_lossy(lossy, s);
    EXPECT_EQ(t.decode(t.encode(s)), lossy);
  }
}

TEST(Tokenizer, LongInputs) {
  const Tokenizer& t = tiny();
  for (const std::string& s : {std::string(300000, 'a'), std::string(300000, ' '), std::string(300000, '\n'),
                               std::string(100000, '!') + "x", std::string(200000, '7')}) {
    const auto ids = t.encode(s);
    EXPECT_EQ(t.decode(ids), s);
  }
}

TEST(Tokenizer, ConcurrentEncodeMatchesSerial) {
  const auto files = eval_files();
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> want;
  for (const auto& f : files) {
    texts.push_back(read_file(f).substr(0, 60000));
    want.push_back(tiny().encode(texts.back()));
  }
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int th = 0; th < 8; ++th)
    threads.emplace_back([&, th] {
      for (int rep = 0; rep < 3; ++rep) {
        const size_t k = size_t(th + rep) % texts.size();
        if (tiny().encode(texts[k]) != want[k]) ++bad;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// ---- streaming ---------------------------------------------------------------------------------

namespace {
bool ends_inside_char(const std::string& s) { return moeq::text::utf8::stable_prefix(s) != s.size(); }
}  // namespace

TEST(StreamDecoder, EqualsDecodeOnEvalFiles) {
  for (const fs::path& f : eval_files()) {
    const auto ids = tiny().encode(read_file(f));
    for (bool skip : {false, true}) {
      StreamDecoder d(tiny(), skip);
      std::string out;
      for (int32_t id : ids) {
        const std::string piece = d.push(id);
        EXPECT_FALSE(ends_inside_char(piece));
        EXPECT_TRUE(moeq::text::utf8::is_valid(piece));
        out += piece;
      }
      out += d.flush();
      EXPECT_TRUE(out == tiny().decode(ids, skip)) << f;
    }
  }
}

TEST(StreamDecoder, EqualsDecodeOnRandomIds) {
  // Random ids hit tokens that are lone lead or continuation bytes in every order.
  std::mt19937 rng(11);
  const Tokenizer& t = tiny();
  for (int round = 0; round < 300; ++round) {
    std::vector<int32_t> ids(rng() % 40);
    for (int32_t& id : ids) id = int32_t(rng() % 400);  // the byte tokens and early merges
    StreamDecoder d(t);
    std::string out;
    for (int32_t id : ids) {
      const std::string piece = d.push(id);
      ASSERT_TRUE(moeq::text::utf8::is_valid(piece));
      out += piece;
    }
    out += d.flush();
    ASSERT_EQ(out, t.decode(ids));
  }
}

TEST(Utf8, LossyReplacesMaximalSubparts) {
  // The example of Unicode 15 section 3.9 (U+FFFD substitution of maximal subparts).
  std::string out;
  moeq::text::utf8::append_lossy(out, "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64");
  EXPECT_EQ(out, "a\uFFFD\uFFFD\uFFFDb\uFFFDc\uFFFD\uFFFDd");
  out.clear();
  moeq::text::utf8::append_lossy(out, "\xED\xA0\x80\xF4\x90\x80\x80\xC0\xAF\xE0\x80\xF0\x9F\x98\x80");
  EXPECT_EQ(out, "\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\uFFFD\U0001F600");
  EXPECT_EQ(moeq::text::utf8::stable_prefix("ab\xF0\x9F\x98"), 2u);
  EXPECT_EQ(moeq::text::utf8::stable_prefix("ab\xF0\x80"), 4u);  // can never complete
  EXPECT_EQ(moeq::text::utf8::stable_prefix("ab\xC3"), 2u);
  EXPECT_EQ(moeq::text::utf8::stable_prefix("ab\xC3\xA9"), 4u);
}

TEST(StreamDecoder, HoldsSplitCharacters) {
  const Tokenizer& t = tiny();
  const std::string text = "héllo 👍🏽 wörld — 你好 ∑x²]~!b[ end 😀";
  const auto ids = t.encode(text);
  StreamDecoder d(t);
  std::string out;
  int held = 0;
  for (int32_t id : ids) {
    const std::string piece = d.push(id);
    held += piece.size() < t.token_bytes(id).size();
    EXPECT_FALSE(ends_inside_char(piece));
    EXPECT_EQ(piece.find("\xEF\xBF\xBD"), std::string::npos);
    out += piece;
  }
  out += d.flush();
  EXPECT_EQ(out, text);
  EXPECT_GT(held, 2);  // the emoji and the accents really were split across tokens
}

TEST(StreamDecoder, FlushReplacesIncompleteBytes) {
  const Tokenizer& t = tiny();
  const auto e = t.encode("😀");
  ASSERT_GE(e.size(), 2u);
  StreamDecoder d(t);
  EXPECT_EQ(d.push(e[0]), "");
  EXPECT_EQ(d.flush(), t.decode(std::vector<int32_t>{e[0]}));
  EXPECT_EQ(d.flush(), "");
  // Invalid bytes followed by text come out at once, replaced.
  std::string ff;
  for (int32_t id : t.encode("\xFF" "a")) ff += d.push(id);
  EXPECT_EQ(ff, "\xEF\xBF\xBD" "a");
  EXPECT_EQ(d.push(-1), "");
  d.push(e[0]);
  d.reset();
  EXPECT_EQ(d.flush(), "");
}

// ---- malformed files ---------------------------------------------------------------------------

namespace {

nlohmann::json tiny_json() {
  static const nlohmann::json j = moeq::io::read_json_file(mt::tiny_model_dir() / "tokenizer.json");
  return j;
}

// Writes `text` as tokenizer.json in a fresh directory, loads it, and returns the error message.
std::string load_error(const mt::TempDir& dir, const std::string& text) {
  const fs::path p = dir / "tokenizer.json";
  std::ofstream(p, std::ios::binary) << text;
  try {
    Tokenizer::load(p);
  } catch (const moeq::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Tokenizer, MalformedFilesNameFileAndKey) {
  mt::TempDir dir;
  const std::string path = (dir / "tokenizer.json").string();
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    const char* key;
  };
  const std::vector<Case> cases = {
      {"missing model", [](auto& j) { j.erase("model"); }, "model"},
      {"unknown model type", [](auto& j) { j["model"]["type"] = "Unigram"; }, "model.type"},
      {"vocab not an object", [](auto& j) { j["model"]["vocab"] = nlohmann::json::array({1, 2}); }, "model.vocab"},
      {"vocab missing", [](auto& j) { j["model"].erase("vocab"); }, "model.vocab"},
      {"vocab id negative", [](auto& j) { j["model"]["vocab"]["Ġthe"] = -3; }, "model.vocab"},
      {"vocab id huge", [](auto& j) { j["model"]["vocab"]["Ġthe"] = 1LL << 40; }, "model.vocab"},
      {"vocab id duplicated", [](auto& j) { j["model"]["vocab"]["Ġthe"] = 5; }, "model.vocab"},
      {"vocab id not a number", [](auto& j) { j["model"]["vocab"]["Ġthe"] = "x"; }, "model.vocab"},
      {"merge of unknown token", [](auto& j) { j["model"]["merges"][3] = {"i", "qqqq"}; }, "model.merges[3]"},
      {"merge string malformed", [](auto& j) { j["model"]["merges"][5] = "abc"; }, "model.merges[5]"},
      {"merge not a pair", [](auto& j) { j["model"]["merges"][0] = 7; }, "model.merges[0]"},
      {"merges missing", [](auto& j) { j["model"].erase("merges"); }, "model.merges"},
      {"byte fallback", [](auto& j) { j["model"]["byte_fallback"] = true; }, "model.byte_fallback"},
      {"unk token", [](auto& j) { j["model"]["unk_token"] = "<unk>"; }, "model.unk_token"},
      {"dropout", [](auto& j) { j["model"]["dropout"] = 0.1; }, "model.dropout"},
      {"bad regex",
       [](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(\\p{L}+"; },
       "pre_tokenizer.pretokenizers[0].pattern.Regex"},
      {"split behavior",
       [](auto& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; },
       "pre_tokenizer.pretokenizers[0].behavior"},
      {"unknown pre-tokenizer", [](auto& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; }, "pre_tokenizer.type"},
      {"no pre-tokenizer", [](auto& j) { j["pre_tokenizer"] = nullptr; }, "pre_tokenizer"},
      {"empty sequence", [](auto& j) { j["pre_tokenizer"]["pretokenizers"] = nlohmann::json::array(); },
       "pre_tokenizer.pretokenizers"},
      {"split after byte level",
       [](auto& j) {
         auto& seq = j["pre_tokenizer"]["pretokenizers"];
         std::swap(seq[0], seq[1]);
       },
       "pre_tokenizer.pretokenizers[0]"},
      {"normalizer", [](auto& j) { j["normalizer"] = {{"type", "NFC"}}; }, "normalizer"},
      {"decoder", [](auto& j) { j["decoder"] = {{"type", "WordPiece"}}; }, "decoder.type"},
      {"added token id", [](auto& j) { j["added_tokens"][1]["id"] = "one"; }, "added_tokens[1].id"},
      {"added token content", [](auto& j) { j["added_tokens"][2].erase("content"); }, "added_tokens[2].content"},
      {"added tokens not array", [](auto& j) { j["added_tokens"] = 3; }, "added_tokens"},
      {"model not an object", [](auto& j) { j["model"] = "BPE"; }, "model"},
  };
  for (const Case& c : cases) {
    nlohmann::json j = tiny_json();
    c.edit(j);
    const std::string msg = load_error(dir, j.dump());
    EXPECT_NE(msg.find(path), std::string::npos) << c.what << ": " << msg;
    EXPECT_NE(msg.find(c.key), std::string::npos) << c.what << ": " << msg;
  }
  for (const std::string text : {"", "{", "not json", "[1, 2", "{\"model\": }"}) {
    const std::string msg = load_error(dir, text);
    EXPECT_NE(msg.find(path), std::string::npos) << text << ": " << msg;
  }
  EXPECT_NE(load_error(dir, "[]").find(path), std::string::npos);
  EXPECT_THROW(Tokenizer::load(dir / "missing.json"), moeq::Error);
}

// Random damage to the structure: every outcome must be a loaded tokenizer or a moeq::Error.
TEST(Tokenizer, RandomlyDamagedFilesFailCleanly) {
  mt::TempDir dir;
  std::mt19937 rng(3);
  const std::vector<std::string> paths = {
      "/model", "/model/type", "/model/vocab", "/model/merges", "/model/merges/0", "/model/merges/10/1",
      "/model/ignore_merges", "/model/dropout", "/pre_tokenizer", "/pre_tokenizer/type",
      "/pre_tokenizer/pretokenizers", "/pre_tokenizer/pretokenizers/0", "/pre_tokenizer/pretokenizers/0/pattern",
      "/pre_tokenizer/pretokenizers/0/pattern/Regex", "/pre_tokenizer/pretokenizers/1/use_regex",
      "/pre_tokenizer/pretokenizers/1/add_prefix_space", "/decoder", "/added_tokens", "/added_tokens/0",
      "/added_tokens/0/id", "/added_tokens/3/content", "/added_tokens/5/lstrip", "/normalizer", "/model/vocab/Ġ"};
  const std::vector<nlohmann::json> values = {nullptr, 0, -1, 1LL << 40, 8191, "", "x", "(", "Ġ Ġ", true,
                                              nlohmann::json::array(), nlohmann::json::object(), 1.5,
                                              nlohmann::json::array({"a"}), {{"type", "BPE"}}};
  const std::string text = "Hello <think> wörld 123 \xF0\x9F\x98\x80 [e~[";
  for (int i = 0; i < 60; ++i) {
    nlohmann::json j = tiny_json();
    for (int k = 0; k <= int(rng() % 2); ++k) {
      const nlohmann::json::json_pointer ptr(paths[rng() % paths.size()]);
      try {
        j[ptr] = values[rng() % values.size()];
      } catch (const nlohmann::json::exception&) {  // the parent is no longer a container
      }
    }
    const fs::path p = dir / "tokenizer.json";
    std::ofstream(p, std::ios::binary) << j.dump();
    try {
      const Tokenizer t = Tokenizer::load(p);
      const auto ids = t.encode(text);
      (void)t.decode(ids);
    } catch (const moeq::Error& e) {
      EXPECT_NE(std::string(e.what()).find(p.string()), std::string::npos) << e.what();
    }
  }
}

TEST(Tokenizer, BadTokenizerConfig) {
  mt::TempDir dir;
  fs::copy_file(mt::tiny_model_dir() / "tokenizer.json", dir / "tokenizer.json");
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": "<nope>"})";
  try {
    Tokenizer::from_model_dir(dir.path());
    FAIL() << "no error";
  } catch (const moeq::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer_config.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("bos_token"), std::string::npos);
  }
  std::ofstream(dir / "tokenizer_config.json") << R"({"bos_token": {"content": "]~!b["}, "eos_token": null})";
  const Tokenizer t = Tokenizer::from_model_dir(dir.path());
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_FALSE(t.eos_id().has_value());
  fs::remove(dir / "tokenizer_config.json");
  EXPECT_FALSE(Tokenizer::from_model_dir(dir.path()).bos_id().has_value());
}

// Other accepted shapes of tokenizer.json, against HF on the same edits of tiny-m2's file
// (tools/make_token_fixtures.py, VARIANTS): a lone ByteLevel pre-tokenizer (GPT-2 pattern, with
// and without add_prefix_space), ignore_merges, added tokens with single_word/lstrip/rstrip and
// normalized; and merges written as "a b" strings.
TEST(Tokenizer, HuggingFaceParityVariants) {
  mt::TempDir dir;
  const auto doc = moeq::io::read_json_file(fixtures() / "tricky.json");
  const std::map<std::string, std::function<void(nlohmann::json&)>> edits = {
      {"gpt2_byte_level",
       [](auto& j) { j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}; }},
      {"gpt2_byte_level_prefix",
       [](auto& j) { j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}; }},
      {"ignore_merges", [](auto& j) { j["model"]["ignore_merges"] = true; }},
      {"added_flags",
       [](auto& j) {
         const int n = int(j["model"]["vocab"].size());
         j["added_tokens"].push_back({{"id", n}, {"content", "<mask>"}, {"single_word", true}, {"lstrip", true},
                                      {"rstrip", true}, {"normalized", false}, {"special", false}});
         j["added_tokens"].push_back({{"id", n + 1}, {"content", "<m2>"}, {"single_word", false}, {"lstrip", false},
                                      {"rstrip", false}, {"normalized", true}, {"special", false}});
       }},
  };
  ASSERT_EQ(doc["variants"].size(), edits.size());
  for (const auto& v : doc["variants"]) {
    const std::string name = v["name"];
    ASSERT_TRUE(edits.count(name)) << name;
    nlohmann::json j = tiny_json();
    edits.at(name)(j);
    const fs::path p = dir / (name + ".json");
    std::ofstream(p) << j.dump();
    const Tokenizer t = Tokenizer::load(p);
    for (const auto& c : v["cases"]) {
      const std::string text = c["text"];
      const auto ids = c["ids"].get<std::vector<int32_t>>();
      const std::string label = name + ": " + text.substr(0, 60);
      EXPECT_TRUE(same_ids(t.encode(text), ids)) << label;
      EXPECT_TRUE(same_ids(t.encode(text, false), c["ids_no_special"].get<std::vector<int32_t>>())) << label;
      EXPECT_EQ(t.decode(ids), c["decoded"].get<std::string>()) << label;
      EXPECT_EQ(t.decode(ids, true), c["decoded_skip"].get<std::string>()) << label;
    }
  }

  nlohmann::json j = tiny_json();
  for (auto& m : j["model"]["merges"]) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  std::ofstream(dir / "string_merges.json") << j.dump();
  const std::string text = read_file(mt::data_dir() / "eval" / "dev_docs.txt").substr(0, 20000);
  EXPECT_EQ(Tokenizer::load(dir / "string_merges.json").encode(text), tiny().encode(text));
}
