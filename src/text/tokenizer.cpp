#include "text/tokenizer.h"

#include <algorithm>
#include <array>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "core/error.h"
#include "io/json_file.h"
#include "text/bpe_model.h"
#include "text/bpe_regex.h"
#include "text/byte_level.h"
#include "text/utf8.h"

namespace moeq::text {
namespace {

using nlohmann::json;

// GPT-2's pattern, used by a ByteLevel pre-tokenizer with use_regex.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Ids beyond this are refused: arrays are sized by the largest id (real vocabularies: ~200k).
constexpr int64_t kMaxId = int64_t(1) << 22;
// Pieces longer than this are not cached (long runs are rare and would crowd the cache out).
constexpr size_t kMaxCachedPiece = 96;
constexpr size_t kCacheShards = 16;
constexpr size_t kCacheEntriesPerShard = 4096;

bool is_white_space(char32_t c) {  // Unicode White_Space, what Rust's char::is_whitespace tests
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Start of the character that ends at `end` (end > 0); ill-formed bytes count as characters.
size_t prev_char_start(std::string_view s, size_t end) {
  size_t b = end - 1;
  for (size_t k = 0; k < 3 && b > 0 && (uint8_t(s[b]) & 0xC0) == 0x80; ++k) --b;
  char32_t cp;
  return utf8::decode(s.substr(b, end - b), &cp) == end - b ? b : end - 1;
}

struct StringHash {  // transparent, so that lookups take string_view without a copy
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = false;
};

// Leftmost-longest matching of a set of literal strings (the added tokens): at each position the
// candidates sharing its first byte are tried longest first.
class AddedMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens, bool normalized) {
    for (size_t i = 0; i < tokens.size(); ++i)
      if (tokens[i].normalized == normalized)
        by_byte_[uint8_t(tokens[i].content[0])].push_back(uint32_t(i));
    for (auto& v : by_byte_)
      std::stable_sort(v.begin(), v.end(), [&](uint32_t a, uint32_t b) {
        return tokens[a].content.size() > tokens[b].content.size();
      });
    for (size_t b = 0; b < 256; ++b) empty_ &= by_byte_[b].empty();
  }
  bool empty() const { return empty_; }
  // Next match at or after `from`: sets *pos and returns the token index, or -1.
  int next(std::string_view text, size_t from, const std::vector<AddedToken>& tokens,
           size_t* pos) const {
    for (size_t i = from; i < text.size(); ++i) {
      const auto& cands = by_byte_[uint8_t(text[i])];
      for (uint32_t t : cands) {
        const std::string& c = tokens[t].content;
        if (text.size() - i >= c.size() && text.compare(i, c.size(), c) == 0) {
          *pos = i;
          return int(t);
        }
      }
    }
    return -1;
  }

 private:
  std::array<std::vector<uint32_t>, 256> by_byte_;
  bool empty_ = true;
};

// Bounded, sharded cache of BPE results per pre-token; a full shard is simply cleared.
class PieceCache {
 public:
  bool get(std::string_view key, size_t h, std::vector<int32_t>& out) const {
    Shard& s = shards_[h % kCacheShards];
    std::lock_guard lock(s.mu);
    auto it = s.map.find(key);
    if (it == s.map.end()) return false;
    out.insert(out.end(), it->second.begin(), it->second.end());
    return true;
  }
  void put(std::string_view key, size_t h, std::span<const int32_t> ids) const {
    Shard& s = shards_[h % kCacheShards];
    std::lock_guard lock(s.mu);
    if (s.map.size() >= kCacheEntriesPerShard) s.map.clear();
    s.map.try_emplace(std::string(key), ids.begin(), ids.end());
  }

 private:
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  mutable std::array<Shard, kCacheShards> shards_;
};

}  // namespace

struct Tokenizer::Impl {
  std::string file;  // for messages

  // Tokens, by id.
  std::vector<std::string> bytes;  // what each id decodes to
  std::vector<uint8_t> kind;       // 0 none, 1 vocab, 2 added, 3 added special
  StringMap by_content;            // vocab strings (byte-level) and added contents
  int32_t size = 0;

  // BPE.
  std::array<int32_t, 256> byte_id{};  // -1: the byte has no token and is dropped (as HF does)
  BpeMerges merges;
  bool ignore_merges = false;
  StringMap raw_vocab;  // raw bytes -> id, only with ignore_merges

  // Pre-tokenizer: regex splits applied in turn, then the byte-level mapping.
  std::vector<SplitRegex> splits;
  bool add_prefix_space = false;

  std::vector<AddedToken> added;
  AddedMatcher raw_matcher, normalized_matcher;
  std::optional<SplitRegex> word_char;  // only when some added token is single_word

  std::optional<int32_t> bos, eos;
  PieceCache cache;

  [[noreturn]] void bad(const std::string& key, const std::string& msg) const {
    fail("{}: {}: {}", file, key, msg);
  }

  void load(const json& j);
  void load_model(const json& m);
  void load_pre_tokenizer(const json& p);
  void load_added(const json& a);
  void set_token(int32_t id, std::string bytes_of, uint8_t k);

  void encode_text(std::string_view text, bool parse_special, std::vector<int32_t>& out) const;
  void encode_added_pass(std::string_view text, const AddedMatcher& m, bool parse_special,
                         const std::function<void(std::string_view)>& gap,
                         std::vector<int32_t>& out) const;
  void encode_plain(std::string_view seg, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  bool word_at(std::string_view s, size_t pos) const { return word_char->matches_at(s, pos); }
};

// ---- loading -----------------------------------------------------------------------------------

namespace {

const json* member(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::string type_of(const json& v) {
  if (v.is_object()) {
    auto it = v.find("type");
    if (it != v.end() && it->is_string()) return it->get<std::string>();
  }
  return {};
}

}  // namespace

void Tokenizer::Impl::set_token(int32_t id, std::string b, uint8_t k) {
  if (size_t(id) >= bytes.size()) {
    bytes.resize(size_t(id) + 1);
    kind.resize(size_t(id) + 1, 0);
  }
  bytes[size_t(id)] = std::move(b);
  kind[size_t(id)] = k;
  size = std::max(size, id + 1);
}

void Tokenizer::Impl::load(const json& j) {
  if (!j.is_object()) bad("(root)", "expected a JSON object");
  if (const json* n = member(j, "normalizer"))
    bad("normalizer", fmt::format("normalizer '{}' is not supported (only null)", type_of(*n)));
  const json* m = member(j, "model");
  if (!m) bad("model", "missing");
  load_model(*m);
  const json* p = member(j, "pre_tokenizer");
  if (!p) bad("pre_tokenizer", "missing (a byte-level BPE needs the ByteLevel pre-tokenizer)");
  load_pre_tokenizer(*p);
  const json* d = member(j, "decoder");
  if (!d) bad("decoder", "missing (only ByteLevel is supported)");
  if (type_of(*d) != "ByteLevel")
    bad("decoder.type", fmt::format("decoder '{}' is not supported (only ByteLevel)", type_of(*d)));
  if (const json* a = member(j, "added_tokens")) load_added(*a);
}

void Tokenizer::Impl::load_model(const json& m) {
  if (!m.is_object()) bad("model", "expected an object");
  const json* type = member(m, "type");
  if (type && (!type->is_string() || type->get<std::string>() != "BPE"))
    bad("model.type", fmt::format("model type {} is not supported (only BPE)", type->dump()));
  if (!type && !m.contains("merges")) bad("model.type", "missing (only BPE is supported)");
  if (const json* d = member(m, "dropout"))
    if (!d->is_number() || d->get<double>() != 0.0) bad("model.dropout", "BPE dropout is not supported");
  if (member(m, "unk_token")) bad("model.unk_token", "an unknown token is not supported (only null)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (const json* v = member(m, k))
      if (!v->is_string() || !v->get<std::string>().empty())
        bad(fmt::format("model.{}", k), "not supported (only null or empty)");
  if (const json* v = member(m, "byte_fallback"))
    if (!v->is_boolean() || v->get<bool>()) bad("model.byte_fallback", "not supported (only false)");
  if (const json* v = member(m, "ignore_merges")) {
    if (!v->is_boolean()) bad("model.ignore_merges", "expected a boolean");
    ignore_merges = v->get<bool>();
  }

  const json* vocab = member(m, "vocab");
  if (!vocab) bad("model.vocab", "missing");
  if (!vocab->is_object()) bad("model.vocab", "expected an object of token -> id");
  by_content.reserve(vocab->size() + 64);
  std::vector<uint8_t> seen;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const json& v = it.value();
    if (!v.is_number_integer()) bad("model.vocab", fmt::format("id of {} is not an integer", json(it.key()).dump()));
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= kMaxId)
      bad("model.vocab", fmt::format("id {} of {} is out of range [0, {})", id, json(it.key()).dump(), kMaxId));
    if (size_t(id) >= seen.size()) seen.resize(size_t(id) + 1, 0);
    if (seen[size_t(id)]) bad("model.vocab", fmt::format("id {} is given to two tokens (one is {})", id, json(it.key()).dump()));
    seen[size_t(id)] = 1;
    std::string b;
    if (!byte_level::decode(it.key(), &b)) b = it.key();  // as HF's ByteLevel decoder: kept as is
    if (ignore_merges) raw_vocab.emplace(b, int32_t(id));
    set_token(int32_t(id), std::move(b), 1);
    by_content.emplace(it.key(), int32_t(id));
  }
  for (unsigned b = 0; b < 256; ++b) {
    auto it = by_content.find(byte_level::encode(std::string(1, char(b))));
    byte_id[b] = it == by_content.end() ? -1 : it->second;
  }

  const json* merges_j = member(m, "merges");
  if (!merges_j) bad("model.merges", "missing");
  if (!merges_j->is_array()) bad("model.merges", "expected an array");
  merges.reserve(merges_j->size());
  uint32_t rank = 0;
  for (const json& e : *merges_j) {
    const std::string key = fmt::format("model.merges[{}]", rank);
    std::string a, b;
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        bad(key, fmt::format("{} is not two tokens separated by one space", e.dump()));
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      bad(key, fmt::format("expected \"a b\" or [\"a\", \"b\"], got {}", e.dump()));
    }
    auto ia = by_content.find(a), ib = by_content.find(b), im = by_content.find(a + b);
    if (ia == by_content.end()) bad(key, fmt::format("token {} is not in the vocab", json(a).dump()));
    if (ib == by_content.end()) bad(key, fmt::format("token {} is not in the vocab", json(b).dump()));
    if (im == by_content.end()) bad(key, fmt::format("merged token {} is not in the vocab", json(a + b).dump()));
    merges.add(ia->second, ib->second, rank, im->second);
    ++rank;
  }
}

void Tokenizer::Impl::load_pre_tokenizer(const json& p) {
  std::vector<std::pair<std::string, const json*>> steps;  // (key, object)
  const std::string t = type_of(p);
  if (t == "Sequence") {
    const json* list = member(p, "pretokenizers");
    if (!list || !list->is_array() || list->empty())
      bad("pre_tokenizer.pretokenizers", "expected a non-empty array");
    for (size_t i = 0; i < list->size(); ++i)
      steps.emplace_back(fmt::format("pre_tokenizer.pretokenizers[{}]", i), &(*list)[i]);
  } else {
    steps.emplace_back("pre_tokenizer", &p);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    const auto& [key, s] = steps[i];
    const std::string st = type_of(*s);
    if (st == "Split") {
      if (i + 1 == steps.size()) bad(key, "a Split must come before the ByteLevel pre-tokenizer");
      const json* behavior = member(*s, "behavior");
      if (!behavior || *behavior != "Isolated")
        bad(key + ".behavior", fmt::format("{} is not supported (only \"Isolated\")", behavior ? behavior->dump() : "null"));
      if (const json* inv = member(*s, "invert"))
        if (*inv != false) bad(key + ".invert", "only false is supported");
      const json* pat = member(*s, "pattern");
      if (!pat || !pat->is_object()) bad(key + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
      const json* re = member(*pat, "Regex");
      const json* lit = member(*pat, "String");
      const json* v = re ? re : lit;
      const std::string pkey = key + (re ? ".pattern.Regex" : ".pattern.String");
      if (!v || !v->is_string()) bad(pkey, "expected a string");
      try {
        splits.emplace_back(v->get<std::string>(),
                            re ? SplitRegex::Syntax::Oniguruma : SplitRegex::Syntax::Literal);
      } catch (const Error& e) {
        bad(pkey, e.what());
      }
    } else if (st == "ByteLevel") {
      if (i + 1 != steps.size()) bad(key, "the ByteLevel pre-tokenizer must come last");
      bool use_regex = true;
      if (const json* v = member(*s, "use_regex")) {
        if (!v->is_boolean()) bad(key + ".use_regex", "expected a boolean");
        use_regex = v->get<bool>();
      }
      if (const json* v = member(*s, "add_prefix_space")) {
        if (!v->is_boolean()) bad(key + ".add_prefix_space", "expected a boolean");
        add_prefix_space = v->get<bool>();
      }
      // HF adds the space to every piece left by earlier splits: supported alone only.
      if (add_prefix_space && steps.size() > 1)
        bad(key + ".add_prefix_space", "true is only supported for a ByteLevel pre-tokenizer on its own");
      if (use_regex) splits.emplace_back(kGpt2Pattern);
    } else {
      bad(key + ".type", fmt::format("pre-tokenizer '{}' is not supported (Split, ByteLevel, Sequence)", st));
    }
  }
  if (type_of(*steps.back().second) != "ByteLevel")
    bad(steps.back().first, "the last pre-tokenizer must be ByteLevel");
}

void Tokenizer::Impl::load_added(const json& a) {
  if (!a.is_array()) bad("added_tokens", "expected an array");
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string key = fmt::format("added_tokens[{}]", i);
    const json& e = a[i];
    if (!e.is_object()) bad(key, "expected an object");
    AddedToken t;
    const json* id = member(e, "id");
    const json* content = member(e, "content");
    if (!id || !id->is_number_integer()) bad(key + ".id", "expected an integer");
    if (!content || !content->is_string()) bad(key + ".content", "expected a string");
    const int64_t v = id->get<int64_t>();
    if (v < 0 || v >= kMaxId) bad(key + ".id", fmt::format("{} is out of range [0, {})", v, kMaxId));
    t.id = int32_t(v);
    t.content = content->get<std::string>();
    auto flag = [&](const char* k, bool dflt) {
      const json* f = member(e, k);
      if (!f) return dflt;
      if (!f->is_boolean()) bad(key + "." + k, "expected a boolean");
      return f->get<bool>();
    };
    t.special = flag("special", false);
    t.single_word = flag("single_word", false);
    t.lstrip = flag("lstrip", false);
    t.rstrip = flag("rstrip", false);
    t.normalized = flag("normalized", !t.special);
    if (t.content.empty()) continue;  // HF ignores empty added tokens
    if (std::any_of(added.begin(), added.end(), [&](const AddedToken& o) { return o.content == t.content; }))
      continue;  // the first one wins
    // As HF's ByteLevel decoder: byte-level text is mapped back, anything else kept as is.
    std::string b;
    if (!byte_level::decode(t.content, &b)) b = t.content;
    set_token(t.id, std::move(b), t.special ? 3 : 2);
    by_content[t.content] = t.id;
    if (t.single_word && !word_char)
      word_char.emplace(R"([\p{Alphabetic}\p{M}\p{Pc}\p{Nd}\p{Join_Control}])", SplitRegex::Syntax::Pcre2);
    added.push_back(std::move(t));
  }
  raw_matcher.build(added, false);
  normalized_matcher.build(added, true);
}

// ---- encoding ----------------------------------------------------------------------------------

void Tokenizer::Impl::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {  // nothing to merge
    if (const int32_t id = byte_id[uint8_t(piece[0])]; id >= 0) out.push_back(id);
    return;
  }
  if (ignore_merges) {
    auto it = raw_vocab.find(piece);
    if (it != raw_vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() <= kMaxCachedPiece;
  size_t h = 0;
  if (cacheable) {
    h = StringHash{}(piece);
    if (cache.get(piece, h, out)) return;
  }
  const size_t start = out.size();
  for (char c : piece)
    if (const int32_t id = byte_id[uint8_t(c)]; id >= 0) out.push_back(id);
  if (out.size() - start >= 2) {
    std::vector<int32_t> word(out.begin() + std::ptrdiff_t(start), out.end());
    merges.apply(word);
    out.resize(start);
    out.insert(out.end(), word.begin(), word.end());
  }
  if (cacheable) cache.put(piece, h, std::span<const int32_t>(out).subspan(start));
}

void Tokenizer::Impl::encode_plain(std::string_view seg, std::vector<int32_t>& out) const {
  std::string prefixed;
  if (add_prefix_space && (seg.empty() || seg[0] != ' ')) {
    prefixed = " ";
    prefixed += seg;
    seg = prefixed;
  }
  std::vector<std::string_view> pieces{seg}, next;
  for (const SplitRegex& re : splits) {
    next.clear();
    for (std::string_view p : pieces) re.split(p, next);
    pieces.swap(next);
  }
  for (std::string_view p : pieces) encode_piece(p, out);
}

// One pass of HF's AddedVocabulary::find_matches: matches become ids, `gap` gets the rest.
void Tokenizer::Impl::encode_added_pass(std::string_view text, const AddedMatcher& m,
                                        bool parse_special,
                                        const std::function<void(std::string_view)>& gap,
                                        std::vector<int32_t>& out) const {
  if (m.empty()) {
    if (!text.empty()) gap(text);
    return;
  }
  size_t cursor = 0, from = 0, pos = 0;
  int ti;
  while ((ti = m.next(text, from, added, &pos)) >= 0) {
    const AddedToken& t = added[size_t(ti)];
    size_t start = pos, stop = pos + t.content.size();
    from = stop;  // matches never overlap, whatever is done with this one
    if (!parse_special && t.special) continue;
    if (t.single_word) {
      const bool left_ok = start == 0 || !word_at(text.substr(0, start), prev_char_start(text, start));
      const bool right_ok = stop == text.size() || !word_at(text, stop);
      if (!left_ok || !right_ok) continue;
    }
    if (t.lstrip) {
      size_t s = start;
      while (s > 0) {
        const size_t b = prev_char_start(text, s);
        char32_t cp;
        if (utf8::decode(text.substr(b, s - b), &cp) != s - b || !is_white_space(cp)) break;
        s = b;
      }
      start = std::max(s, cursor);
    }
    if (t.rstrip) {
      char32_t cp;
      size_t n;
      while (stop < text.size() && (n = utf8::decode(text.substr(stop), &cp)) && is_white_space(cp))
        stop += n;
    }
    start = std::max(start, cursor);
    if (cursor < start) gap(text.substr(cursor, start - cursor));
    out.push_back(t.id);
    cursor = stop;
  }
  if (cursor < text.size()) gap(text.substr(cursor));
}

void Tokenizer::Impl::encode_text(std::string_view text, bool parse_special,
                                  std::vector<int32_t>& out) const {
  if (added.empty()) {
    encode_plain(text, out);
    return;
  }
  // Non-normalized added tokens are matched first, then normalized ones in what is left (with no
  // normalizer both see the same text, but the order decides which token wins).
  const std::function<void(std::string_view)> plain = [&](std::string_view s) { encode_plain(s, out); };
  const std::function<void(std::string_view)> second = [&](std::string_view s) {
    encode_added_pass(s, normalized_matcher, parse_special, plain, out);
  };
  encode_added_pass(text, raw_matcher, parse_special, second, out);
}

// ---- Tokenizer -----------------------------------------------------------------------------------

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::filesystem::path& tokenizer_json) {
  const json j = io::read_json_file(tokenizer_json);
  Tokenizer t;
  t.impl_->file = tokenizer_json.string();
  try {
    t.impl_->load(j);
  } catch (const json::exception& e) {  // a value of the wrong type somewhere we did not check
    fail("{}: {}", tokenizer_json.string(), e.what());
  }
  return t;
}

Tokenizer Tokenizer::from_model_dir(const std::filesystem::path& dir) {
  Tokenizer t = load(dir / "tokenizer.json");
  const auto cfg_path = dir / "tokenizer_config.json";
  if (!std::filesystem::exists(cfg_path)) return t;
  const json cfg = io::read_json_file(cfg_path);
  if (!cfg.is_object()) fail("{}: expected a JSON object", cfg_path.string());
  auto resolve = [&](const char* key) -> std::optional<int32_t> {
    const json* v = member(cfg, key);
    if (!v) return std::nullopt;
    if (v->is_object()) v = member(*v, "content");
    if (!v || !v->is_string())
      fail("{}: {}: expected a string or {{\"content\": string}}", cfg_path.string(), key);
    const auto id = t.token_id(v->get<std::string>());
    if (!id) fail("{}: {}: {} is not a token of tokenizer.json", cfg_path.string(), key, v->dump());
    return id;
  };
  t.impl_->bos = resolve("bos_token");
  t.impl_->eos = resolve("eos_token");
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  impl_->encode_text(text, parse_special, out);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string raw;
  for (int32_t id : ids) {
    if (!contains(id) || (skip_special && impl_->kind[size_t(id)] == 3)) continue;
    raw += impl_->bytes[size_t(id)];
  }
  std::string out;
  out.reserve(raw.size());
  utf8::append_lossy(out, raw);
  return out;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= impl_->size) fail("token id {} is out of range [0, {})", id, impl_->size);
  return impl_->bytes[size_t(id)];
}

bool Tokenizer::contains(int32_t id) const {
  return id >= 0 && id < impl_->size && impl_->kind[size_t(id)] != 0;
}

int32_t Tokenizer::vocab_size() const { return impl_->size; }

std::optional<int32_t> Tokenizer::token_id(std::string_view content) const {
  auto it = impl_->by_content.find(content);
  if (it == impl_->by_content.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(int32_t id) const { return contains(id) && impl_->kind[size_t(id)] == 3; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }

// ---- StreamDecoder ---------------------------------------------------------------------------------

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(&tok), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
  if (!tok_->contains(id) || (skip_special_ && tok_->is_special(id))) return {};
  pending_ += tok_->token_bytes(id);
  const size_t n = utf8::stable_prefix(pending_);
  std::string out;
  utf8::append_lossy(out, std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  utf8::append_lossy(out, pending_);
  pending_.clear();
  return out;
}

void StreamDecoder::reset() { pending_.clear(); }

}  // namespace moeq::text
