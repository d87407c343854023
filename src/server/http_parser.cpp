#include "server/http_parser.h"

#include <algorithm>
#include <cstdint>
#include <cctype>

namespace moeq::server {
namespace {

// RFC 9110 tchar: the characters of method names and field names.
bool is_tchar(unsigned char c) {
  if (std::isalnum(c)) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-': case '.':
    case '^': case '_': case '`': case '|': case '~':
      return true;
    default:
      return false;
  }
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_tchar(static_cast<unsigned char>(c)); });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(element) for each trimmed, non-empty element of a comma-separated field value.
template <typename Fn>
void for_each_element(std::string_view v, Fn&& fn) {
  while (!v.empty()) {
    const size_t comma = v.find(',');
    const std::string_view el = trim_ows(v.substr(0, comma));
    if (!el.empty()) fn(el);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
}

bool method_has_body(std::string_view m) { return m == "POST" || m == "PUT" || m == "PATCH"; }

}  // namespace

void HttpRequestParser::reset() {
  state_ = State::RequestLine;
  req_ = HttpRequest{};
  line_.clear();
  line_done_ = false;
  header_bytes_ = 0;
  body_left_ = 0;
  started_ = false;
  error_status_ = 0;
  error_message_.clear();
}

bool HttpRequestParser::awaiting_body() const {
  return state_ == State::Body || state_ == State::ChunkSize || state_ == State::ChunkData ||
         state_ == State::ChunkDataEnd || state_ == State::Trailers;
}

void HttpRequestParser::fail(int status, std::string message) {
  state_ = State::Error;
  error_status_ = status;
  error_message_ = std::move(message);
}

// Appends bytes up to and including the next LF to line_; true once a whole line is there (its
// CR LF or bare LF removed). A line longer than `limit` fails with `over_status`.
bool HttpRequestParser::take_line(std::string_view data, size_t& i, size_t limit, int over_status,
                                  const char* over_what) {
  const size_t lf = data.find('\n', i);
  const size_t end = lf == std::string_view::npos ? data.size() : lf;
  line_.append(data.substr(i, end - i));
  i = lf == std::string_view::npos ? data.size() : lf + 1;
  if (line_.size() > limit + 1) {  // +1: the CR not yet stripped
    fail(over_status, over_what);
    return false;
  }
  if (lf == std::string_view::npos) return false;
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  if (line_.find('\r') != std::string::npos) {
    fail(400, "bare CR in the request header");
    return false;
  }
  return true;
}

size_t HttpRequestParser::feed(std::string_view data) {
  size_t i = 0;
  while (i < data.size() && state_ != State::Complete && state_ != State::Error) {
    switch (state_) {
      case State::RequestLine: {
        // Empty lines before a request are ignored (RFC 9112 §2.2), but count towards the limit.
        const size_t before = i;
        const bool whole = take_line(data, i, limits_.max_request_line, 414, "request line too long");
        header_bytes_ += i - before;
        started_ = true;
        if (header_bytes_ > limits_.max_header_bytes) return fail(431, "request header too large"), i;
        if (!whole) break;
        if (line_.empty()) break;
        on_request_line();
        line_.clear();
        break;
      }
      case State::Headers:
      case State::Trailers: {
        const size_t before = i;
        const bool whole = take_line(data, i, limits_.max_header_bytes, 431, "request header too large");
        header_bytes_ += i - before;
        if (state_ == State::Error) break;
        if (header_bytes_ > limits_.max_header_bytes) return fail(431, "request header too large"), i;
        if (!whole) break;
        if (state_ == State::Headers)
          on_header_line();
        else
          on_trailer_line();
        line_.clear();
        break;
      }
      case State::Body:
      case State::ChunkData: {
        const size_t n = std::min(body_left_, data.size() - i);
        req_.body.append(data.substr(i, n));
        i += n;
        body_left_ -= n;
        if (body_left_ == 0) state_ = state_ == State::Body ? State::Complete : State::ChunkDataEnd;
        break;
      }
      case State::ChunkDataEnd: {
        // Exactly CRLF (or LF) after each chunk's data.
        if (!take_line(data, i, 0, 400, "chunk data longer than its size")) break;
        if (!line_.empty()) return fail(400, "chunk data longer than its size"), i;
        line_.clear();
        state_ = State::ChunkSize;
        break;
      }
      case State::ChunkSize: {
        if (!take_line(data, i, 1024, 400, "chunk size line too long")) break;
        on_chunk_size_line();
        line_.clear();
        break;
      }
      case State::Complete:
      case State::Error:
        break;
    }
  }
  return i;
}

void HttpRequestParser::on_request_line() {
  const std::string_view l = line_;
  const size_t sp1 = l.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : l.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || l.find(' ', sp2 + 1) != std::string_view::npos)
    return fail(400, "malformed request line");
  const std::string_view method = l.substr(0, sp1), target = l.substr(sp1 + 1, sp2 - sp1 - 1),
                         version = l.substr(sp2 + 1);
  if (!is_token(method)) return fail(400, "malformed request method");
  if (target.empty()) return fail(400, "empty request target");
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return fail(400, "invalid character in the request target");
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(static_cast<unsigned char>(version[5])) ||
      version[6] != '.' || !std::isdigit(static_cast<unsigned char>(version[7])))
    return fail(400, "malformed HTTP version");
  if (version[5] != '1') return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  req_.method = std::string(method);
  req_.target = std::string(target);
  const size_t q = target.find('?');
  req_.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) req_.query = std::string(target.substr(q + 1));
  req_.version_minor = version[7] - '0';
  req_.keep_alive = req_.version_minor >= 1;
  state_ = State::Headers;
}

void HttpRequestParser::on_header_line() {
  if (line_.empty()) return on_headers_done();
  if (req_.headers.size() >= limits_.max_headers) return fail(431, "too many header fields");
  if (line_[0] == ' ' || line_[0] == '\t') return fail(400, "obsolete header line folding is not accepted");
  const size_t colon = line_.find(':');
  if (colon == std::string::npos) return fail(400, "header line without a colon");
  const std::string_view name = std::string_view(line_).substr(0, colon);
  if (!is_token(name)) return fail(400, "malformed header field name");
  const std::string_view value = trim_ows(std::string_view(line_).substr(colon + 1));
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return fail(400, "control character in a header value");
  }
  req_.headers.emplace_back(lower(name), std::string(value));
}

void HttpRequestParser::on_headers_done() {
  bool chunked = false, has_length = false, has_te = false;
  size_t length = 0;
  int hosts = 0;
  for (const auto& [name, value] : req_.headers) {
    if (name == "host") {
      ++hosts;
    } else if (name == "content-length") {
      // "n" or a list of identical "n, n" (RFC 9110 §8.6); anything else is an error.
      bool ok = true;
      for_each_element(value, [&](std::string_view el) {
        size_t n = 0;
        for (char c : el) {
          if (!std::isdigit(static_cast<unsigned char>(c)) || n > (SIZE_MAX - 9) / 10) {
            ok = false;
            return;
          }
          n = n * 10 + size_t(c - '0');
        }
        if (has_length && n != length) ok = false;
        length = n;
        has_length = true;
      });
      if (!ok || !has_length) return fail(400, "invalid Content-Length");
    } else if (name == "transfer-encoding") {
      // Only "chunked" is supported, and it may be applied once: any other list is refused.
      has_te = true;
      bool ok = true;
      for_each_element(value, [&](std::string_view el) {
        if (!ok) return;
        if (lower(el) != "chunked") {
          fail(501, "unsupported transfer coding '" + std::string(el) + "'");
          ok = false;
        } else if (chunked) {
          fail(400, "chunked applied more than once");
          ok = false;
        }
        chunked = true;
      });
      if (!ok) return;
    } else if (name == "connection") {
      for_each_element(value, [&](std::string_view el) {
        const std::string t = lower(el);
        if (t == "close") req_.keep_alive = false;
        if (t == "keep-alive" && req_.version_minor == 0) req_.keep_alive = true;
      });
    } else if (name == "expect") {
      if (lower(value) != "100-continue") return fail(417, "unsupported Expect value");
      req_.expect_continue = true;
    }
  }
  if (req_.version_minor >= 1 && hosts != 1) return fail(400, hosts ? "more than one Host header" : "missing Host header");
  if (has_te && has_length) return fail(400, "both Content-Length and Transfer-Encoding");
  if (has_te && !chunked) return fail(501, "the last transfer coding must be chunked");
  if (has_te && req_.version_minor == 0) return fail(400, "Transfer-Encoding in an HTTP/1.0 request");
  if (chunked) {
    state_ = State::ChunkSize;
    return;
  }
  if (!has_length && method_has_body(req_.method)) return fail(411, "a request body needs Content-Length or chunked encoding");
  if (length > limits_.max_body_bytes)
    return fail(413, "request body of " + std::to_string(length) + " bytes exceeds the limit of " +
                         std::to_string(limits_.max_body_bytes));
  body_left_ = length;
  state_ = length == 0 ? State::Complete : State::Body;
  if (length) req_.body.reserve(length);
}

void HttpRequestParser::on_chunk_size_line() {
  std::string_view l = line_;
  l = l.substr(0, l.find(';'));  // chunk extensions are ignored
  l = trim_ows(l);
  if (l.empty()) return fail(400, "malformed chunk size");
  size_t n = 0;
  for (char c : l) {
    const int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                  : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                              : -1;
    if (d < 0) return fail(400, "malformed chunk size");
    if (n > (limits_.max_body_bytes + 1) / 16 + 1) return fail(413, "request body exceeds the limit");
    n = n * 16 + size_t(d);
  }
  if (n == 0) {
    state_ = State::Trailers;
    return;
  }
  if (n > limits_.max_body_bytes || req_.body.size() + n > limits_.max_body_bytes)
    return fail(413, "request body exceeds the limit of " + std::to_string(limits_.max_body_bytes) + " bytes");
  body_left_ = n;
  state_ = State::ChunkData;
}

void HttpRequestParser::on_trailer_line() {
  if (line_.empty()) {
    state_ = State::Complete;
    return;
  }
  // Trailer fields are checked for form and dropped (none of ours needs them).
  const size_t colon = line_.find(':');
  if (colon == std::string::npos || !is_token(std::string_view(line_).substr(0, colon)))
    fail(400, "malformed trailer field");
}

}  // namespace moeq::server
