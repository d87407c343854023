#include "server/http_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "server/connection.h"

namespace moeq::server {

HttpServer::HttpServer(HttpServerOptions opt, HttpHandler handler) : opt_(std::move(opt)), handler_(std::move(handler)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  MOEQ_CHECK(listen_fd_ < 0, "the server is already started");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(opt_.port);
  if (const int rc = getaddrinfo(opt_.host.c_str(), port.c_str(), &hints, &res); rc != 0)
    fail("cannot resolve --host '{}': {}", opt_.host, gai_strerror(rc));
  std::string why = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 128) == 0) {
      listen_fd_ = fd;
      break;
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  freeaddrinfo(res);
  if (listen_fd_ < 0) fail("cannot listen on {}:{}: {}", opt_.host, opt_.port, why);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
  port_ = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (::pipe2(wake_, O_CLOEXEC) != 0) fail("pipe: {}", std::strerror(errno));
  acceptor_ = std::thread([this] { accept_loop(); });
}

void HttpServer::accept_loop() {
  while (!draining_.load()) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const int n = ::poll(p, 2, 1000);  // wakes every second to join finished connections
    reap(false);
    if (n <= 0 || draining_.load()) continue;
    if (!(p[0].revents & POLLIN)) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors: the pending connection stays readable, so wait instead of spinning.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // SSE pieces go out at once
    timeval tv{};
    tv.tv_sec = opt_.send_timeout.count() / 1000;
    tv.tv_usec = (opt_.send_timeout.count() % 1000) * 1000;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    std::lock_guard<std::mutex> lock(mu_);
    if (int(conns_.size()) >= opt_.max_connections) {
      // Over the cap: answer 503 on this thread and close; nothing of the request is read.
      const HttpResponse r = opt_.error_formatter ? opt_.error_formatter(503, "too many connections")
                                                  : HttpResponse{503, "text/plain", {}, "too many connections\n"};
      std::string out = response_head(r.status, r.content_type, r.headers, (long long)r.body.size(), false) + r.body;
      (void)!::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    Conn* raw = c.get();
    conns_.push_back(std::move(c));
    raw->thread = std::thread([this, raw] {
      serve_connection(*raw);
      raw->done.store(true);
    });
  }
}

void HttpServer::serve_connection(Conn& c) {
  Connection conn(c.fd, opt_, handler_, draining_, stopping_, c.busy);
  conn.run();
  // The socket is closed by reap(), after the join: stop() may still shutdown() it meanwhile,
  // and a closed descriptor number could already belong to someone else.
  ::shutdown(c.fd, SHUT_RDWR);
}

void HttpServer::reap(bool all) {
  std::list<std::unique_ptr<Conn>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (all || (*it)->done.load()) {
        finished.push_back(std::move(*it));
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : finished) {
    if (c->thread.joinable()) c->thread.join();
    ::close(c->fd);
  }
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  if (listen_fd_ < 0 || draining_.exchange(true)) return;
  (void)!::write(wake_[1], "x", 1);
  if (acceptor_.joinable()) acceptor_.join();
  {
    // Connections waiting for a request close now; those inside a handler finish it first.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : conns_)
      if (!c->busy.load()) ::shutdown(c->fd, SHUT_RDWR);
  }
  const auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until) {
    reap(false);
    if (open_connections() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stopping_.store(true);
  {
    // Wakes every connection still blocked; handlers see client_gone() from the flag.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : conns_) ::shutdown(c->fd, SHUT_RDWR);
  }
  reap(true);
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

int HttpServer::open_connections() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int(conns_.size());
}

}  // namespace moeq::server
