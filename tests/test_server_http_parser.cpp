// The incremental HTTP/1.1 request parser: every request parses the same however its bytes are
// split; pipelined requests stay apart; chunked bodies; every limit and malformation ends in the
// right status; random input never crashes it.
#include <gtest/gtest.h>

#include <random>

#include "server/http_parser.h"

namespace moeq::server {
namespace {

struct Parsed {
  bool complete = false, failed = false;
  int status = 0;
  HttpRequest req;
  size_t consumed = 0;
};

// Feeds `pieces` in order the way the server does: whatever is left of a piece after a request
// ends is not consumed.
Parsed parse_pieces(const std::vector<std::string>& pieces, HttpLimits limits = {}) {
  HttpRequestParser p(limits);
  Parsed out;
  for (const auto& piece : pieces) {
    out.consumed += p.feed(piece);
    if (p.complete() || p.failed()) break;
  }
  out.complete = p.complete();
  out.failed = p.failed();
  out.status = p.error_status();
  out.req = p.request();
  return out;
}

Parsed parse(const std::string& text, HttpLimits limits = {}) { return parse_pieces({text}, limits); }

// Whole, split in two at every byte, and byte by byte.
std::vector<std::vector<std::string>> splits(const std::string& text) {
  std::vector<std::vector<std::string>> out = {{text}};
  for (size_t i = 1; i < text.size(); ++i) out.push_back({text.substr(0, i), text.substr(i)});
  std::vector<std::string> bytes;
  for (char c : text) bytes.emplace_back(1, c);
  out.push_back(bytes);
  return out;
}

void expect_same(const HttpRequest& a, const HttpRequest& b, const std::string& where) {
  EXPECT_EQ(a.method, b.method) << where;
  EXPECT_EQ(a.target, b.target) << where;
  EXPECT_EQ(a.path, b.path) << where;
  EXPECT_EQ(a.query, b.query) << where;
  EXPECT_EQ(a.headers, b.headers) << where;
  EXPECT_EQ(a.body, b.body) << where;
  EXPECT_EQ(a.keep_alive, b.keep_alive) << where;
}

const std::string kPost =
    "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    "Content-Length: 26\r\nX-Spaces:   padded value \t\r\n\r\n{\"messages\": [], \"n\": 1.0}";

TEST(HttpParser, ParsesARequest) {
  const Parsed p = parse(kPost);
  ASSERT_TRUE(p.complete);
  EXPECT_EQ(p.consumed, kPost.size());
  EXPECT_EQ(p.req.method, "POST");
  EXPECT_EQ(p.req.path, "/v1/chat/completions");
  EXPECT_EQ(p.req.query, "x=1");
  EXPECT_EQ(p.req.body, "{\"messages\": [], \"n\": 1.0}");
  EXPECT_EQ(p.req.header("content-type"), "application/json");
  EXPECT_EQ(p.req.header("x-spaces"), "padded value");
  EXPECT_FALSE(p.req.header("missing"));
  EXPECT_TRUE(p.req.keep_alive);
}

TEST(HttpParser, SameResultAtEveryByteBoundary) {
  const std::string chunked =
      "POST /v1/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n1A\r\n, world, in three chunks!!\r\n3\r\nabc\r\n0\r\nTrailer: x\r\n\r\n";
  for (const std::string& text : {kPost, chunked, std::string("GET / HTTP/1.1\nHost: a\n\n")}) {
    const Parsed whole = parse(text);
    ASSERT_TRUE(whole.complete) << text;
    for (const auto& pieces : splits(text)) {
      const Parsed p = parse_pieces(pieces);
      ASSERT_TRUE(p.complete) << pieces.size() << " pieces";
      expect_same(p.req, whole.req, std::to_string(pieces.size()) + " pieces, first " + std::to_string(pieces[0].size()));
    }
  }
  EXPECT_EQ(parse(chunked).req.body, "hello, world, in three chunks!!abc");
}

TEST(HttpParser, PipelinedRequestsStayApart) {
  const std::string two = kPost + "GET /health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /next";
  HttpRequestParser p;
  const size_t used = p.feed(two);
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(used, kPost.size());
  EXPECT_EQ(p.request().path, "/v1/chat/completions");
  p.reset();
  EXPECT_FALSE(p.started());
  const std::string rest = two.substr(used);
  const size_t used2 = p.feed(rest);
  ASSERT_TRUE(p.complete());
  EXPECT_EQ(p.request().path, "/health");
  EXPECT_FALSE(p.request().keep_alive);
  p.reset();
  EXPECT_EQ(p.feed(rest.substr(used2)), rest.size() - used2);
  EXPECT_FALSE(p.complete());
  EXPECT_TRUE(p.started());
}

TEST(HttpParser, KeepAliveRules) {
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").req.keep_alive);
  EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").req.keep_alive);
  EXPECT_TRUE(parse("GET / HTTP/1.1\r\nHost: h\r\n\r\n").req.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n").req.keep_alive);
}

TEST(HttpParser, LeadingEmptyLinesAreIgnored) {
  const Parsed p = parse("\r\n\r\nGET /health HTTP/1.1\r\nHost: h\r\n\r\n");
  ASSERT_TRUE(p.complete);
  EXPECT_EQ(p.req.path, "/health");
}

TEST(HttpParser, ExpectContinue) {
  HttpRequestParser p;
  p.feed("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
  EXPECT_TRUE(p.awaiting_body());
  EXPECT_TRUE(p.request().expect_continue);
  p.feed("ok");
  EXPECT_TRUE(p.complete());
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\nExpect: something\r\nContent-Length: 0\r\n\r\n").status, 417);
}

struct BadCase {
  const char* name;
  std::string text;
  int status;
};

TEST(HttpParser, RefusesMalformedRequests) {
  const std::vector<BadCase> cases = {
      {"no version", "GET /\r\n\r\n", 400},
      {"extra space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"bad method", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400},
      {"http/2", "PRI * HTTP/2.0\r\n\r\n", 505},
      {"garbage version", "GET / HTTX/1.1\r\n\r\n", 400},
      {"control in target", std::string("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400},
      {"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"header without colon", "GET / HTTP/1.1\r\nHost: h\r\nBroken\r\n\r\n", 400},
      {"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400},
      {"bare CR", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400},
      {"NUL in value", std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 33), 400},
      {"bad content-length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400},
      {"negative content-length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400},
      {"conflicting lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400},
      {"huge content-length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
      {"length and chunked", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"gzip coding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"chunked twice", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
      {"chunked not last", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
      {"post without length", "POST / HTTP/1.1\r\nHost: h\r\n\r\n", 411},
      {"bad chunk size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"empty chunk size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", 400},
      {"chunk longer than size", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 400},
      {"bad trailer", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnot a field\r\n\r\n", 400},
  };
  for (const auto& c : cases) {
    for (const auto& pieces : splits(c.text)) {
      const Parsed p = parse_pieces(pieces);
      ASSERT_TRUE(p.failed) << c.name << " (" << pieces.size() << " pieces)";
      ASSERT_EQ(p.status, c.status) << c.name;
    }
  }
}

TEST(HttpParser, EnforcesLimits) {
  HttpLimits lim;
  lim.max_request_line = 64;
  lim.max_header_bytes = 256;
  lim.max_headers = 4;
  lim.max_body_bytes = 100;
  EXPECT_EQ(parse("GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n", lim).status, 414);
  EXPECT_EQ(parse("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'a') + "\r\n\r\n", lim).status, 431);
  std::string many = "GET / HTTP/1.1\r\nHost: h\r\n";
  for (int i = 0; i < 5; ++i) many += "X" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(parse(many + "\r\n", lim).status, 431);
  // Many short header lines add up too; an endless header never completes.
  std::string endless = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 100; ++i) endless += "\r";
  EXPECT_TRUE(parse(endless + std::string(300, 'x'), lim).failed);
  EXPECT_EQ(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 101\r\n\r\n", lim).status, 413);
  EXPECT_TRUE(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'b'), lim).complete);
  const std::string te = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_EQ(parse(te + "65\r\n", lim).status, 413);                          // one chunk of 101
  EXPECT_EQ(parse(te + "32\r\n" + std::string(50, 'c') + "\r\n33\r\n", lim).status, 413);  // 50 + 51
  EXPECT_EQ(parse(te + "ffffffffffffffffffffffff\r\n", lim).status, 413);   // overflowing size
  EXPECT_EQ(parse(te + "1" + std::string(2000, ' ') + "\r\n", lim).status, 400);  // chunk-size line too long
}

TEST(HttpParser, RandomInputNeverCrashes) {
  std::mt19937 rng(7);
  const std::string alphabet = "GETPOST /HTP1.0\r\n:;,-0123456789abcdefHost Content-Length Transfer-Encoding chunked \x01\xff";
  for (int round = 0; round < 3000; ++round) {
    std::string text = round % 2 ? "POST / HTTP/1.1\r\nHost: h\r\n" : "";
    const int n = int(rng() % 200);
    for (int i = 0; i < n; ++i) text += alphabet[rng() % alphabet.size()];
    HttpLimits lim;
    lim.max_header_bytes = 128;
    lim.max_body_bytes = 64;
    HttpRequestParser p(lim);
    size_t at = 0;
    while (at < text.size() && !p.complete() && !p.failed()) {
      const size_t len = 1 + rng() % 17;
      const std::string piece = text.substr(at, len);
      const size_t used = p.feed(piece);
      ASSERT_LE(used, piece.size());
      if (used < piece.size()) {
        ASSERT_TRUE(p.complete() || p.failed());
      }
      at += used;
      if (used == 0 && !p.complete() && !p.failed()) ++at;
    }
    if (p.failed()) {
      EXPECT_GE(p.error_status(), 400);
      EXPECT_LT(p.error_status(), 600);
    }
    if (p.complete()) {
      EXPECT_LE(p.request().body.size(), 64u);
    }
  }
}

}  // namespace
}  // namespace moeq::server
