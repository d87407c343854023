#include "text/parsers/reasoning_parser.h"

#include "text/parsers/stream_util.h"

namespace moeq::text {

namespace {
constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";
}  // namespace

std::optional<ReasoningMode> reasoning_mode_from_name(std::string_view name) {
  if (name == "minimax" || name == "minimax_m2") return ReasoningMode::MiniMax;
  if (name == "minimax_append_think" || name == "minimax_m2_append_think") return ReasoningMode::MiniMaxAppendThink;
  return std::nullopt;
}

ReasoningDelta ReasoningParser::push(std::string_view text) {
  held_.append(text);
  ReasoningDelta out;
  drain(out, false);
  return out;
}

ReasoningDelta ReasoningParser::finish() {
  ReasoningDelta out;
  drain(out, true);
  return out;
}

ReasoningDelta ReasoningParser::parse(ReasoningMode mode, std::string_view text) {
  ReasoningParser p(mode);
  ReasoningDelta out = p.push(text);
  ReasoningDelta tail = p.finish();
  out.reasoning += tail.reasoning;
  out.content += tail.content;
  return out;
}

// Moves every decided byte of held_ to `out`; with `final`, everything.
void ReasoningParser::drain(ReasoningDelta& out, bool final) {
  while (true) {
    switch (state_) {
      case State::Start: {
        // Decide whether the output opens with an explicit "<think>".
        const bool opens = held_.compare(0, kOpen.size(), kOpen) == 0;
        const bool undecided = !opens && held_.size() < kOpen.size() && kOpen.substr(0, held_.size()) == held_;
        if (undecided && !final) return;
        if (mode_ == ReasoningMode::MiniMaxAppendThink) {
          if (!opens) out.content += kOpen;
          state_ = State::Passthrough;
        } else {
          if (opens) held_.erase(0, kOpen.size());
          state_ = State::Reasoning;
        }
        continue;
      }
      case State::Passthrough:
        out.content += held_;
        held_.clear();
        return;
      case State::Reasoning: {
        const size_t end = held_.find(kClose);
        if (end != std::string::npos) {
          out.reasoning.append(held_, 0, end);
          held_.erase(0, end + kClose.size());
          state_ = State::Content;
          continue;
        }
        const size_t keep = final ? 0 : parsers::partial_tag_suffix(held_, kClose);
        out.reasoning.append(held_, 0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return;
      }
      case State::Content: {
        // vLLM drops any "</think>" the model repeats after the first.
        size_t end;
        while ((end = held_.find(kClose)) != std::string::npos) {
          out.content.append(held_, 0, end);
          held_.erase(0, end + kClose.size());
        }
        const size_t keep = final ? 0 : parsers::partial_tag_suffix(held_, kClose);
        out.content.append(held_, 0, held_.size() - keep);
        held_.erase(0, held_.size() - keep);
        return;
      }
    }
  }
}

}  // namespace moeq::text
