// The HTTP server over real sockets with a small echo handler: keep-alive and pipelining, chunked
// request bodies and streamed responses, 100-continue, the limits (413 readable by a client that
// is still sending), the read deadlines (408 for slow senders, idle close), the connection cap,
// detection of a client that left, handler failures, and a prompt stop().
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "server/http_server.h"

namespace moeq::server {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect failed";
  }
  ~Client() { close(); }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void send(const std::string& s) { ASSERT_EQ(::send(fd_, s.data(), s.size(), MSG_NOSIGNAL), ssize_t(s.size())); }
  // Everything until the server closes (or `limit` passes).
  std::string read_all(std::chrono::milliseconds limit = 5000ms) {
    std::string out;
    const auto until = Clock::now() + limit;
    char buf[4096];
    while (Clock::now() < until) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
    }
    return out;
  }
  // Reads until `needle` has arrived.
  std::string read_until(const std::string& needle, std::chrono::milliseconds limit = 5000ms) {
    std::string out;
    const auto until = Clock::now() + limit;
    char buf[4096];
    while (out.find(needle) == std::string::npos && Clock::now() < until) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, size_t(n));
    }
    return out;
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// Echoes method, path and body; some paths do more.
struct EchoServer {
  std::atomic<bool> saw_client_gone{false};
  std::atomic<int> handled{0};
  std::unique_ptr<HttpServer> server;

  explicit EchoServer(HttpServerOptions opt = {}) {
    opt.port = 0;
    server = std::make_unique<HttpServer>(opt, [this](const HttpRequest& r, ResponseWriter& w) { handle(r, w); });
    server->start();
  }
  int port() const { return server->port(); }

  void handle(const HttpRequest& r, ResponseWriter& w) {
    ++handled;
    if (r.path == "/stream") {
      w.begin_stream(200, "text/event-stream");
      for (const char* piece : {"data: one\n\n", "data: two\n\n", "data: [DONE]\n\n"}) w.write(piece);
      w.end_stream();
      return;
    }
    if (r.path == "/wait") {  // a long job that watches its client
      const auto until = Clock::now() + 5s;
      while (Clock::now() < until) {
        if (w.client_gone()) {
          saw_client_gone = true;
          return;
        }
        std::this_thread::sleep_for(10ms);
      }
      return w.send({200, "text/plain", {}, "done"});
    }
    if (r.path == "/sleep") {
      std::this_thread::sleep_for(300ms);
      return w.send({200, "text/plain", {}, "slept"});
    }
    if (r.path == "/throw") throw std::runtime_error("boom");
    if (r.path == "/silent") return;
    w.send({200, "text/plain", {}, r.method + " " + r.path + " " + r.body});
  }
};

TEST(HttpServer, KeepAliveAndPipelining) {
  EchoServer s;
  Client c(s.port());
  // Two requests in one write, then a third after the first two answers.
  c.send("GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz");
  const std::string first = c.read_until("POST /b xyz");
  EXPECT_LT(first.find("GET /a "), first.find("POST /b xyz")) << first;
  EXPECT_EQ(count(first, "HTTP/1.1 200 OK"), 2);
  c.send("GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  const std::string last = c.read_all();
  EXPECT_NE(last.find("GET /c "), std::string::npos);
  EXPECT_NE(last.find("Connection: close"), std::string::npos);
  EXPECT_EQ(s.handled.load(), 3);
}

TEST(HttpServer, ChunkedRequestBody) {
  EchoServer s;
  Client c(s.port());
  c.send("POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n");
  EXPECT_NE(c.read_all().find("POST /x wikipedia"), std::string::npos);
}

TEST(HttpServer, ExpectContinue) {
  EchoServer s;
  Client c(s.port());
  c.send("POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\n");
  EXPECT_NE(c.read_until("\r\n\r\n").find("HTTP/1.1 100 Continue"), std::string::npos);
  c.send("body");
  EXPECT_NE(c.read_all().find("POST /x body"), std::string::npos);
}

TEST(HttpServer, StreamedResponseIsChunked) {
  EchoServer s;
  Client c(s.port());
  c.send("GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  const std::string r = c.read_all();
  EXPECT_NE(r.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_NE(r.find("b\r\ndata: one\n\n\r\n"), std::string::npos) << r;
  EXPECT_NE(r.find("e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"), std::string::npos) << r;
}

TEST(HttpServer, StreamsToHttp10ClientsEndWithTheConnection) {
  EchoServer s;
  Client c(s.port());
  c.send("GET /stream HTTP/1.0\r\n\r\n");
  const std::string r = c.read_all();
  EXPECT_EQ(r.find("Transfer-Encoding"), std::string::npos) << r;
  EXPECT_NE(r.find("Connection: close\r\n\r\ndata: one\n\ndata: two\n\ndata: [DONE]\n\n"), std::string::npos) << r;
}

TEST(HttpServer, TooLargeBodyGets413WhileTheClientIsStillSending) {
  HttpServerOptions opt;
  opt.limits.max_body_bytes = 1000;
  EchoServer s(opt);
  Client c(s.port());
  c.send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 200000\r\n\r\n");
  for (int i = 0; i < 20; ++i) c.send(std::string(10000, 'a'));
  const std::string r = c.read_all();
  EXPECT_EQ(r.rfind("HTTP/1.1 413", 0), 0u) << r.substr(0, 200);
  EXPECT_NE(r.find("exceeds the limit of 1000"), std::string::npos);
  EXPECT_EQ(s.handled.load(), 0);
}

TEST(HttpServer, MalformedRequestGets400AndClose) {
  EchoServer s;
  Client c(s.port());
  c.send("GARBAGE\r\n\r\n");
  EXPECT_EQ(c.read_all().rfind("HTTP/1.1 400", 0), 0u);
  Client big(s.port());
  big.send("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(20000, 'x') + "\r\n\r\n");
  EXPECT_EQ(big.read_all().rfind("HTTP/1.1 431", 0), 0u);
}

TEST(HttpServer, SlowSenderTimesOut) {
  HttpServerOptions opt;
  opt.request_timeout = 300ms;
  EchoServer s(opt);
  Client c(s.port());
  // One byte every 50 ms: each read is quick, but the request as a whole is too slow.
  const std::string req = "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n";
  const auto t0 = Clock::now();
  std::string got;
  for (char ch : req) {
    if (::send(c.fd(), &ch, 1, MSG_NOSIGNAL) != 1) break;
    pollfd p{c.fd(), POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) break;  // the server answered (and closes)
  }
  got = c.read_all(2000ms);
  EXPECT_EQ(got.rfind("HTTP/1.1 408", 0), 0u) << got;
  EXPECT_LT(Clock::now() - t0, 1500ms);
  EXPECT_EQ(s.handled.load(), 0);
}

TEST(HttpServer, IdleConnectionIsClosedQuietly) {
  HttpServerOptions opt;
  opt.idle_timeout = 200ms;
  EchoServer s(opt);
  Client c(s.port());
  const auto t0 = Clock::now();
  EXPECT_EQ(c.read_all(3000ms), "");
  EXPECT_LT(Clock::now() - t0, 2000ms);
}

TEST(HttpServer, NoticesAClientThatLeft) {
  EchoServer s;
  Client c(s.port());
  c.send("GET /wait HTTP/1.1\r\nHost: h\r\n\r\n");
  std::this_thread::sleep_for(100ms);
  c.close();
  const auto until = Clock::now() + 3s;
  while (!s.saw_client_gone && Clock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(s.saw_client_gone.load());
}

TEST(HttpServer, PipelinedDataIsNotMistakenForALeavingClient) {
  EchoServer s;
  Client c(s.port());
  c.send("GET /wait HTTP/1.1\r\nHost: h\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(s.saw_client_gone.load());
  c.close();
}

TEST(HttpServer, HandlerFailuresGet500AndTheServerCarriesOn) {
  EchoServer s;
  Client c(s.port());
  c.send("GET /throw HTTP/1.1\r\nHost: h\r\n\r\nGET /silent HTTP/1.1\r\nHost: h\r\n\r\nGET /ok HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
  const std::string r = c.read_all();
  EXPECT_EQ(count(r, "HTTP/1.1 500"), 2) << r;
  EXPECT_NE(r.find("boom"), std::string::npos);
  EXPECT_NE(r.find("GET /ok "), std::string::npos);
}

TEST(HttpServer, ConnectionCap) {
  HttpServerOptions opt;
  opt.max_connections = 1;
  EchoServer s(opt);
  Client first(s.port());
  first.send("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
  EXPECT_NE(first.read_until("GET /a").find("200 OK"), std::string::npos);
  Client second(s.port());
  EXPECT_EQ(second.read_all(2000ms).rfind("HTTP/1.1 503", 0), 0u);
}

TEST(HttpServer, StopLetsRunningRequestsFinishThenClosesTheRest) {
  EchoServer s;
  Client idle(s.port());
  Client slow(s.port());
  slow.send("GET /sleep HTTP/1.1\r\nHost: h\r\n\r\n");
  std::this_thread::sleep_for(50ms);
  const auto t0 = Clock::now();
  std::thread stopper([&] { s.server->stop(2000ms); });
  // The request in progress gets its answer, told to close; the idle connection just closes.
  const std::string r = slow.read_until("slept");
  slow.close();
  EXPECT_NE(r.find("slept"), std::string::npos) << r;
  EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
  EXPECT_EQ(idle.read_all(1000ms), "");
  stopper.join();
  EXPECT_LT(Clock::now() - t0, 1500ms);
  EXPECT_EQ(s.server->open_connections(), 0);
}

TEST(HttpServer, StopEndsRequestsThatOutliveTheGracePeriod) {
  EchoServer s;
  Client waiting(s.port());
  waiting.send("GET /wait HTTP/1.1\r\nHost: h\r\n\r\n");
  std::this_thread::sleep_for(100ms);
  const auto t0 = Clock::now();
  s.server->stop(100ms);
  EXPECT_LT(Clock::now() - t0, 2s);
  EXPECT_TRUE(s.saw_client_gone.load());
  EXPECT_EQ(s.server->open_connections(), 0);
}

TEST(HttpServer, RefusesAnAddressInUse) {
  EchoServer s;
  HttpServerOptions opt;
  opt.port = s.port();
  HttpServer again(opt, [](const HttpRequest&, ResponseWriter&) {});
  EXPECT_ANY_THROW(again.start());
}

}  // namespace
}  // namespace moeq::server
