#include "tests/testing/tcp_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace comity::testing {
namespace {

struct Pair {
  int client = -1;
  int server = -1;
};

int ConnectTo(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Copies what `from` has to `to`; false once either side closed.
bool Forward(int from, int to) {
  char buf[64 << 10];
  ssize_t n = ::read(from, buf, sizeof(buf));
  if (n <= 0) return false;
  for (ssize_t done = 0; done < n;) {
    ssize_t w = ::write(to, buf + done, static_cast<size_t>(n - done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    done += w;
  }
  return true;
}

}  // namespace

TcpProxy::TcpProxy(int target_port) : target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::listen(listen_fd_, 64);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  if (::pipe(wake_) != 0) wake_[0] = wake_[1] = -1;
  thread_ = std::thread([this] { Run(); });
}

TcpProxy::~TcpProxy() {
  if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void TcpProxy::Run() {
  std::vector<Pair> pairs;
  for (;;) {
    std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    for (const Pair& p : pairs) {
      fds.push_back({p.client, POLLIN, 0});
      fds.push_back({p.server, POLLIN, 0});
    }
    if (::poll(fds.data(), fds.size(), 100) < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) break;
    if (fds[1].revents & POLLIN) {
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) {
        int s = ConnectTo(target_port_);
        if (s < 0) {
          ::close(c);
        } else {
          pairs.push_back({c, s});
        }
      }
    }
    std::vector<Pair> alive;
    for (size_t i = 0; i < pairs.size(); ++i) {
      const pollfd& from_client = fds[2 + 2 * i];
      const pollfd& from_server = fds[3 + 2 * i];
      bool open = true;
      if (from_client.revents & (POLLIN | POLLHUP | POLLERR)) {
        if (frozen_) {
          char buf[64 << 10];
          ssize_t n = ::read(pairs[i].client, buf, sizeof(buf));
          if (n > 0) swallowed_ += static_cast<uint64_t>(n);
          open = n > 0;
        } else {
          open = Forward(pairs[i].client, pairs[i].server);
        }
      }
      if (open && (from_server.revents & (POLLIN | POLLHUP | POLLERR))) {
        if (frozen_) {
          char buf[64 << 10];
          open = ::read(pairs[i].server, buf, sizeof(buf)) > 0;  // Dropped.
        } else {
          open = Forward(pairs[i].server, pairs[i].client);
        }
      }
      if (open) {
        alive.push_back(pairs[i]);
      } else {
        ::close(pairs[i].client);
        ::close(pairs[i].server);
      }
    }
    pairs = std::move(alive);
  }
  for (const Pair& p : pairs) {
    ::close(p.client);
    ::close(p.server);
  }
}

}  // namespace comity::testing
