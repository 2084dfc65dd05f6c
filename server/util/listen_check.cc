#include "server/util/listen_check.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "server/util/posix_file.h"

namespace comity {
namespace {

bool IsWildcard(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (sa->sa_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    return IN6_IS_ADDR_UNSPECIFIED(&a);
  }
  return false;
}

std::string Numeric(const sockaddr* sa, socklen_t len) {
  char host[NI_MAXHOST] = "";
  char port[NI_MAXSERV] = "";
  if (::getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  return sa->sa_family == AF_INET6 ? absl::StrCat("[", host, "]:", port)
                                   : absl::StrCat(host, ":", port);
}

// 0, or the errno of the first call that failed.
int TryBind(const sockaddr* sa, socklen_t len, bool dual_stack) {
  const int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  ScopedFd closer(fd);
  const int one = 1;
  const int zero = 0;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) return errno;
  if (dual_stack && ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0) {
    return errno;
  }
  if (::bind(fd, sa, len) != 0) return errno;
  return 0;
}

// Binds the wildcard of `port` as gRPC does: [::] dual-stack where the
// machine has IPv6, else 0.0.0.0. Sets *bound to what was tried.
int TryBindWildcard(uint16_t port, std::string* bound) {
  sockaddr_in6 six{};
  six.sin6_family = AF_INET6;
  six.sin6_addr = in6addr_any;
  six.sin6_port = htons(port);
  *bound = absl::StrCat("[::]:", port);
  const int err = TryBind(reinterpret_cast<const sockaddr*>(&six), sizeof(six), true);
  if (err != EAFNOSUPPORT) return err;
  sockaddr_in four{};
  four.sin_family = AF_INET;
  four.sin_addr.s_addr = htonl(INADDR_ANY);
  four.sin_port = htons(port);
  *bound = absl::StrCat("0.0.0.0:", port);
  return TryBind(reinterpret_cast<const sockaddr*>(&four), sizeof(four), false);
}

absl::Status BindError(const std::string& address, const std::string& bound, int err) {
  const std::string on = bound == address ? "" : absl::StrCat(" (", bound, ")");
  switch (err) {
    case EADDRINUSE:
      return absl::UnavailableError(
          absl::StrCat(address, " is in use by another process", on));
    case EADDRNOTAVAIL:
      return absl::FailedPreconditionError(
          absl::StrCat(address, on, " is not an address of this machine"));
    case EACCES:
      return absl::FailedPreconditionError(absl::StrCat(
          address, on, ": permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE)"));
    default:
      return absl::FailedPreconditionError(
          absl::StrCat(address, on, ": cannot bind: ", std::strerror(err)));
  }
}

}  // namespace

absl::string_view PortOf(absl::string_view address) {
  const size_t colon = address.rfind(':');
  return colon == absl::string_view::npos ? "" : address.substr(colon + 1);
}

absl::Status CheckCanListen(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat(address, " is not host:port"));
  }
  absl::string_view host = absl::string_view(address).substr(0, colon);
  if (absl::ConsumePrefix(&host, "[") && !absl::ConsumeSuffix(&host, "]")) {
    return absl::InvalidArgumentError(absl::StrCat(address, " is not host:port"));
  }
  const std::string host_str(host);
  const std::string port_str(PortOf(address));
  if (port_str == "0") return absl::OkStatus();

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* resolved = nullptr;
  const int gai = ::getaddrinfo(host_str.c_str(), port_str.c_str(), &hints, &resolved);
  if (gai != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(address, ": cannot resolve ", host_str, ": ", ::gai_strerror(gai)));
  }
  absl::Status result = absl::OkStatus();
  for (const addrinfo* a = resolved; a != nullptr && result.ok(); a = a->ai_next) {
    std::string bound;
    int err = 0;
    if (IsWildcard(a->ai_addr)) {
      const uint16_t port =
          ntohs(a->ai_family == AF_INET
                    ? reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_port
                    : reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_port);
      err = TryBindWildcard(port, &bound);
    } else {
      bound = Numeric(a->ai_addr, a->ai_addrlen);
      err = TryBind(a->ai_addr, a->ai_addrlen, false);
    }
    if (err != 0) result = BindError(address, bound, err);
  }
  ::freeaddrinfo(resolved);
  return result;
}

}  // namespace comity
