// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (the GPT-2 / MiniMax-M2 family):
// added (special) tokens are matched first, the rest is split by the pre-tokenizer's regex,
// mapped to byte-level characters and merged by rank.
//
// Supported tokenizer.json: model BPE (no dropout, unk_token, byte_fallback or subword affixes;
// ignore_merges either way), normalizer null, pre_tokenizer ByteLevel or a Sequence of
// Split(Isolated) steps ending in ByteLevel, decoder ByteLevel. Anything else is refused.
// Results equal Hugging Face `tokenizers` (regex semantics: see text/bpe_regex.h).
//
// Text that is not valid UTF-8 (which HF cannot be given) is encoded without loss: with
// PCRE2_MATCH_INVALID_UTF ill-formed bytes match no regex item, so they fall into pieces of their
// own that are tokenized as raw bytes. Concatenating token_bytes() of the ids gives the input
// back; decode() shows each ill-formed subsequence as U+FFFD.
// Thread-safe: encode/decode may run on several threads at once (the BPE cache is locked).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moeq::text {

class Tokenizer {
 public:
  // Loads tokenizer.json. Throws moeq::Error naming the file and the key at fault.
  static Tokenizer load(const std::filesystem::path& tokenizer_json);
  // Loads DIR/tokenizer.json and, if present, DIR/tokenizer_config.json (bos/eos names).
  static Tokenizer from_model_dir(const std::filesystem::path& dir);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Encodes UTF-8 text. With parse_special, added tokens in the text encode to their ids (as the
  // Hugging Face tokenizer does); without, they are tokenized as plain text. Never adds BOS/EOS.
  std::vector<int32_t> encode(std::string_view text, bool parse_special = true) const;
  // (Exactly: parse_special=false is HF's encode_special_tokens, so added tokens that are not
  // special still match.)
  // Decodes ids to UTF-8 (bytes that do not form valid UTF-8 become U+FFFD).
  // Ids that name no token are skipped, as HF does.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;
  // The raw bytes a token stands for (after byte-level decoding); special tokens give their text.
  // Throws moeq::Error for an id outside [0, vocab_size()); an unused id gives "".
  const std::string& token_bytes(int32_t id) const;
  bool contains(int32_t id) const;  // whether id names a token (vocab or added)

  int32_t vocab_size() const;  // largest id + 1
  std::optional<int32_t> token_id(std::string_view content) const;  // vocab or added token
  bool is_special(int32_t id) const;
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Incremental detokenizer for streaming: push ids one at a time, get back only text that is
// complete UTF-8 (a character split across tokens is held until its last byte arrives).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = false);
  std::string push(int32_t id);
  std::string flush();  // whatever is held back (invalid bytes become U+FFFD)
  void reset();         // drops what is held back

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace moeq::text
