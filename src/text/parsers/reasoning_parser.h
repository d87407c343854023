// Splits MiniMax-M2 output into reasoning and answer, incrementally, like vLLM's
// `--reasoning-parser minimax_m2` and `minimax_m2_append_think`.
//
// MiniMax-M2's generation prompt ends with "<think>\n", so the output starts inside the reasoning
// and "</think>" ends it. Mode MiniMax: text before the first "</think>" is reasoning_content,
// text after it is content, both verbatim (vLLM strips no newlines, so the content usually starts
// with "\n\n"); a "</think>" the model repeats later is removed from the content, and a "<think>"
// at the very start of the output (a model that opens the block itself) is dropped. Mode
// MiniMaxAppendThink: everything is content, with "<think>" put in front (unless the output
// already starts with it), so clients see "<think>...</think>...".
//
// Streaming: push() each new piece of text, finish() at the end. Text that might be the start of
// a tag is held back until it is decided, so no partial tag ever reaches a delta, and the
// concatenated deltas equal the non-streaming result however the text is split. Input split on
// UTF-8 character boundaries gives output split on them too (tags are ASCII).
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace moeq::text {

enum class ReasoningMode { MiniMax, MiniMaxAppendThink };

// "minimax" / "minimax_m2" -> MiniMax; "minimax_append_think" / "minimax_m2_append_think" ->
// MiniMaxAppendThink; anything else -> nullopt.
std::optional<ReasoningMode> reasoning_mode_from_name(std::string_view name);

struct ReasoningDelta {
  std::string reasoning;
  std::string content;
  bool empty() const { return reasoning.empty() && content.empty(); }
};

class ReasoningParser {
 public:
  explicit ReasoningParser(ReasoningMode mode) : mode_(mode) {}

  ReasoningDelta push(std::string_view text);
  ReasoningDelta finish();  // flushes held-back text; the parser is done afterwards

  // True once "</think>" has been seen (always false in append-think mode).
  bool reasoning_ended() const { return state_ == State::Content; }

  // The whole output at once: push(text) + finish().
  static ReasoningDelta parse(ReasoningMode mode, std::string_view text);

 private:
  enum class State { Start, Reasoning, Content, Passthrough };
  void drain(ReasoningDelta& out, bool final);

  ReasoningMode mode_;
  State state_ = State::Start;
  std::string held_;  // undecided text (a possible tag prefix)
};

}  // namespace moeq::text
