#include "server/response_builder.h"

#include <fmt/format.h>

#include <cmath>
#include <random>

namespace moeq::server {
namespace {

using ojson = nlohmann::ordered_json;

// JSON has no -inf; OpenAI-compatible servers report impossible tokens as -9999.
double finite_logprob(float v) { return std::isfinite(v) ? double(v) : -9999.0; }

ojson bytes_of(const std::string& s) {
  ojson a = ojson::array();
  for (unsigned char c : s) a.push_back(int(c));
  return a;
}

}  // namespace

std::string new_response_id(Endpoint e) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{}{:016x}{:016x}", e == Endpoint::Chat ? "chatcmpl-" : "cmpl-", rng(), rng());
}

ResponseBuilder::ResponseBuilder(ResponseContext ctx) : ctx_(std::move(ctx)) {
  if (ctx_.endpoint != Endpoint::Chat) return;  // completions return the raw text
  if (ctx_.reasoning) reasoning_ = std::make_unique<text::ReasoningParser>(*ctx_.reasoning);
  if (ctx_.parse_tool_calls) {
    if (!ctx_.tool_call_ids) ctx_.tool_call_ids = text::random_tool_call_ids(std::random_device{}());
    tools_ = std::make_unique<text::MiniMaxToolParser>(ctx_.tools, ctx_.tool_call_ids);
  }
}

ResponseBuilder::Piece ResponseBuilder::parse(const std::string& text, bool final) {
  Piece p;
  std::string content;
  if (reasoning_) {
    text::ReasoningDelta d = reasoning_->push(text);
    if (final) {
      const text::ReasoningDelta f = reasoning_->finish();
      d.reasoning += f.reasoning;
      d.content += f.content;
    }
    p.reasoning = std::move(d.reasoning);
    content = std::move(d.content);
  } else {
    content = text;
  }
  if (tools_) {
    text::ToolParseDelta d = tools_->push(content);
    if (final) {
      text::ToolParseDelta f = tools_->finish();
      d.content += f.content;
      for (auto& c : f.calls) d.calls.push_back(std::move(c));
    }
    p.content = std::move(d.content);
    p.calls = std::move(d.calls);
  } else {
    p.content = std::move(content);
  }
  return p;
}

ojson ResponseBuilder::chunk(ojson choice) const {
  ojson c = ojson::object();
  c["id"] = ctx_.id;
  c["object"] = ctx_.endpoint == Endpoint::Chat ? "chat.completion.chunk" : "text_completion";
  c["created"] = ctx_.created;
  c["model"] = ctx_.model;
  c["choices"] = ojson::array({std::move(choice)});
  if (ctx_.include_usage) c["usage"] = nullptr;
  return c;
}

ojson ResponseBuilder::usage() const {
  return {{"prompt_tokens", prompt_tokens_},
          {"completion_tokens", completion_tokens_},
          {"total_tokens", prompt_tokens_ + completion_tokens_}};
}

std::string ResponseBuilder::token_text(int32_t id) const {
  if (ctx_.tok && id >= 0 && id < ctx_.tok->vocab_size()) return ctx_.tok->token_bytes(id);
  return std::to_string(id);
}

ojson ResponseBuilder::chat_logprobs(const std::vector<TokenLogprob>& lps) const {
  ojson content = ojson::array();
  for (const auto& lp : lps) {
    const std::string t = token_text(lp.token);
    ojson top = ojson::array();
    for (const auto& alt : lp.top) {
      const std::string at = token_text(alt.token);
      top.push_back({{"token", at}, {"logprob", finite_logprob(alt.logprob)}, {"bytes", bytes_of(at)}});
    }
    content.push_back({{"token", t}, {"logprob", finite_logprob(lp.logprob)}, {"bytes", bytes_of(t)}, {"top_logprobs", top}});
  }
  return {{"content", content}};
}

ojson ResponseBuilder::completion_logprobs(const std::vector<TokenLogprob>& lps, size_t& text_offset) const {
  ojson tokens = ojson::array(), token_lps = ojson::array(), top = ojson::array(), offsets = ojson::array();
  for (const auto& lp : lps) {
    const std::string t = token_text(lp.token);
    tokens.push_back(t);
    token_lps.push_back(finite_logprob(lp.logprob));
    ojson alts = ojson::object();
    for (const auto& alt : lp.top) alts[token_text(alt.token)] = finite_logprob(alt.logprob);
    top.push_back(std::move(alts));
    offsets.push_back(text_offset);
    text_offset += t.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", top}, {"text_offset", offsets}};
}

std::vector<ojson> ResponseBuilder::start() {
  if (ctx_.endpoint != Endpoint::Chat) return {};
  return {chunk({{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}})};
}

std::vector<ojson> ResponseBuilder::on_event(const GenerationEvent& e) {
  std::vector<ojson> out;
  if (finished_) return out;
  Piece p = parse(e.text, e.finished);
  reasoning_text_ += p.reasoning;
  content_ += p.content;
  for (const auto& c : p.calls) calls_.push_back(c);
  const bool with_lp = ctx_.logprobs && !e.logprobs.empty();
  for (const auto& lp : e.logprobs) logprobs_.push_back(lp);

  if (ctx_.endpoint == Endpoint::Chat) {
    ojson delta = ojson::object();
    if (!p.reasoning.empty()) delta["reasoning_content"] = p.reasoning;
    if (!p.content.empty()) delta["content"] = p.content;
    if (!p.calls.empty()) {
      ojson calls = ojson::array();
      for (const auto& c : p.calls) {
        ojson call = c.to_openai();
        // Stream deltas carry the call's index (the position among this response's calls).
        ojson indexed = {{"index", c.index}};
        for (auto& [k, v] : call.items()) indexed[k] = v;
        calls.push_back(std::move(indexed));
      }
      delta["tool_calls"] = std::move(calls);
    }
    if (!delta.empty() || with_lp)
      out.push_back(chunk({{"index", 0},
                           {"delta", delta},
                           {"logprobs", with_lp ? chat_logprobs(e.logprobs) : ojson()},
                           {"finish_reason", nullptr}}));
  } else if (!p.content.empty() || with_lp) {
    out.push_back(chunk({{"index", 0},
                         {"text", p.content},
                         {"logprobs", with_lp ? completion_logprobs(e.logprobs, stream_text_offset_) : ojson()},
                         {"finish_reason", nullptr}}));
  }

  if (e.finished) {
    finished_ = true;
    // A response that called tools ends with "tool_calls", as vLLM reports it.
    finish_reason_ = calls_.empty() ? e.finish_reason : "tool_calls";
    prompt_tokens_ = e.prompt_tokens;
    completion_tokens_ = e.completion_tokens;
    if (ctx_.endpoint == Endpoint::Chat)
      out.push_back(chunk({{"index", 0}, {"delta", ojson::object()}, {"logprobs", nullptr}, {"finish_reason", finish_reason_}}));
    else
      out.push_back(chunk({{"index", 0}, {"text", ""}, {"logprobs", nullptr}, {"finish_reason", finish_reason_}}));
    if (ctx_.include_usage) {
      ojson u = chunk(ojson());
      u["choices"] = ojson::array();
      u["usage"] = usage();
      out.push_back(std::move(u));
    }
  }
  return out;
}

ojson ResponseBuilder::response() const {
  ojson r = ojson::object();
  r["id"] = ctx_.id;
  r["object"] = ctx_.endpoint == Endpoint::Chat ? "chat.completion" : "text_completion";
  r["created"] = ctx_.created;
  r["model"] = ctx_.model;
  ojson choice = ojson::object();
  choice["index"] = 0;
  if (ctx_.endpoint == Endpoint::Chat) {
    ojson msg = ojson::object();
    msg["role"] = "assistant";
    msg["content"] = content_.empty() && !calls_.empty() ? ojson() : ojson(content_);
    if (ctx_.reasoning) msg["reasoning_content"] = reasoning_text_.empty() ? ojson() : ojson(reasoning_text_);
    if (!calls_.empty()) {
      ojson calls = ojson::array();
      for (const auto& c : calls_) calls.push_back(c.to_openai());
      msg["tool_calls"] = std::move(calls);
    }
    choice["message"] = std::move(msg);
    choice["logprobs"] = ctx_.logprobs ? chat_logprobs(logprobs_) : ojson();
  } else {
    choice["text"] = content_;
    size_t offset = 0;
    choice["logprobs"] = ctx_.logprobs ? completion_logprobs(logprobs_, offset) : ojson();
  }
  choice["finish_reason"] = finish_reason_.empty() ? ojson() : ojson(finish_reason_);
  r["choices"] = ojson::array({std::move(choice)});
  r["usage"] = usage();
  return r;
}

}  // namespace moeq::server
