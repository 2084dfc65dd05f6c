#include "client/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace comity {
namespace {

constexpr size_t kMaxTargetBytes = 4096;
constexpr int kMaxHeaders = 100;

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Header values reach the wire verbatim: no CR or LF may split the response.
std::string HeaderSafe(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '\r' && c != '\n' && c != '\0') out.push_back(c);
  }
  return out;
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Serialize(const HttpResponse& r, bool head_only) {
  std::string out =
      absl::StrCat("HTTP/1.1 ", r.status, " ", HttpReason(r.status), "\r\n",
                   "Content-Type: ", HeaderSafe(r.content_type), "\r\n",
                   "Content-Length: ", r.body.size(), "\r\n", "Connection: close\r\n");
  for (const auto& [name, value] : r.headers) {
    absl::StrAppend(&out, HeaderSafe(name), ": ", HeaderSafe(value), "\r\n");
  }
  absl::StrAppend(&out, "\r\n");
  if (!head_only) absl::StrAppend(&out, r.body);
  return out;
}

HttpResponse PlainError(int status, absl::string_view text) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = absl::StrCat(status, " ", HttpReason(status), ": ", text, "\n");
  return r;
}

// "HOST:PORT", "[V6]:PORT", ":PORT" or "PORT" (host 127.0.0.1).
absl::Status SplitHostPort(const std::string& listen, std::string* host,
                           std::string* port) {
  absl::string_view s = listen;
  if (absl::ConsumePrefix(&s, "[")) {
    size_t close = s.find("]:");
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--listen '", listen, "' is not [IPV6]:PORT"));
    }
    *host = std::string(s.substr(0, close));
    *port = std::string(s.substr(close + 2));
  } else if (size_t colon = s.rfind(':'); colon != absl::string_view::npos) {
    *host = std::string(s.substr(0, colon));
    *port = std::string(s.substr(colon + 1));
  } else {
    *port = std::string(s);
  }
  if (host->empty()) *host = "127.0.0.1";
  int n = 0;
  if (!absl::SimpleAtoi(*port, &n) || n < 0 || n > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen '", listen, "': the port must be a number 0..65535 (0: any free)"));
  }
  return absl::OkStatus();
}

}  // namespace

const char* HttpReason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 303:
      return "See Other";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 414:
      return "URI Too Long";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

absl::StatusOr<std::string> PercentDecode(absl::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%') {
      if (i + 2 >= s.size() || HexDigit(s[i + 1]) < 0 || HexDigit(s[i + 2]) < 0) {
        return absl::InvalidArgumentError("malformed percent escape");
      }
      const int hi = HexDigit(s[i + 1]), lo = HexDigit(s[i + 2]);
      c = static_cast<char>(hi * 16 + lo);
      if (c == '\0') return absl::InvalidArgumentError("encoded NUL");
      i += 2;
    } else if (c == '+' && plus_is_space) {
      c = ' ';
    }
    out.push_back(c);
  }
  return out;
}

std::string PercentEncode(absl::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

absl::StatusOr<HttpRequest> ParseHttpRequestHead(absl::string_view head) {
  std::vector<absl::string_view> lines = absl::StrSplit(head, "\r\n");
  std::vector<absl::string_view> parts = absl::StrSplit(lines[0], ' ');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty()) {
    return absl::InvalidArgumentError("the request line is not METHOD TARGET HTTP/1.x");
  }
  if (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0") {
    return absl::InvalidArgumentError("only HTTP/1.0 and HTTP/1.1 are spoken here");
  }
  HttpRequest r;
  r.method = std::string(parts[0]);
  r.target = std::string(parts[1]);
  if (r.target.size() > kMaxTargetBytes)
    return absl::InvalidArgumentError("target too long");
  if (r.target[0] != '/') return absl::InvalidArgumentError("the target must be a path");
  absl::string_view target = r.target;
  absl::string_view query;
  if (size_t q = target.find('?'); q != absl::string_view::npos) {
    query = target.substr(q + 1);
    target = target.substr(0, q);
  }
  if (size_t f = query.find('#'); f != absl::string_view::npos)
    query = query.substr(0, f);
  auto path = PercentDecode(target, false);
  if (!path.ok()) return absl::InvalidArgumentError("malformed path");
  for (char c : *path) {
    // CR, LF and the like are never part of a page's path; refused here so
    // that no handler can put them in a header.
    if (absl::ascii_iscntrl(c)) {
      return absl::InvalidArgumentError("a control character in the path");
    }
  }
  r.path = *std::move(path);
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    auto key = PercentDecode(kv.first, true);
    auto value = PercentDecode(kv.second, true);
    if (!key.ok() || !value.ok()) return absl::InvalidArgumentError("malformed query");
    r.query[*key] = *value;
  }
  if (lines.size() - 1 > kMaxHeaders)
    return absl::InvalidArgumentError("too many headers");
  for (size_t i = 1; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    size_t colon = lines[i].find(':');
    if (colon == 0 || colon == absl::string_view::npos) {
      return absl::InvalidArgumentError("malformed header line");
    }
    std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
    if (name.find_first_of(" \t") != std::string::npos) {
      return absl::InvalidArgumentError("whitespace in a header name");
    }
    r.headers[name] = std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  return r;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const std::string& listen,
                                                               HttpHandler handler) {
  return Create(listen, std::move(handler), Options());
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const std::string& listen,
                                                               HttpHandler handler,
                                                               const Options& options) {
  std::string host, port;
  if (absl::Status st = SplitHostPort(listen, &host, &port); !st.ok()) return st;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen '", listen, "': cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  int fd = -1;
  std::string error;
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
      error = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen, ": ", error,
                     "; pick another --listen address or port"));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = bound.ss_family == AF_INET6
                             ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  int wake[2];
  if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  return std::unique_ptr<HttpServer>(
      new HttpServer(fd, wake[0], wake[1], bound_port, std::move(handler), options));
}

HttpServer::HttpServer(int listen_fd, int wake_read_fd, int wake_write_fd, int port,
                       HttpHandler handler, const Options& options)
    : listen_fd_(listen_fd),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd),
      port_(port),
      handler_(std::move(handler)),
      options_(options) {}

HttpServer::~HttpServer() {
  Shutdown();
  ::close(listen_fd_);
  ::close(wake_read_fd_);
  ::close(wake_write_fd_);
}

void HttpServer::Shutdown() {
  absl::MutexLock lock(&mu_);
  if (shut_down_) return;
  shut_down_ = true;
  char b = 1;
  (void)!::write(wake_write_fd_, &b, 1);
}

void HttpServer::Serve() {
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::vector<Worker> workers;
  auto reap = [&workers](bool all) {
    for (auto it = workers.begin(); it != workers.end();) {
      if (all || it->done->load()) {
        it->thread.join();
        it = workers.erase(it);
      } else {
        ++it;
      }
    }
  };
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_fd_, POLLIN, 0}};
    int n = ::poll(fds, 2, 1000);
    reap(false);
    if (n < 0 && errno != EINTR) break;
    if (fds[1].revents != 0) break;
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_) break;
    }
    if (n <= 0 || (fds[0].revents & POLLIN) == 0) continue;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    timeval tv = absl::ToTimeval(options_.io_timeout);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (static_cast<int>(workers.size()) >= options_.max_connections) {
      // Answered here, short and without reading: the workers are busy.
      timeval brief{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &brief, sizeof(brief));
      SendAll(fd, Serialize(PlainError(503, "too many connections; try again"), false));
      ::close(fd);
      continue;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    workers.push_back({std::thread([this, fd, done] {
                         HandleConnection(fd);
                         done->store(true);
                       }),
                       done});
  }
  reap(true);
}

HttpResponse HttpServer::Respond(absl::string_view head, HttpRequest* request) {
  auto parsed = ParseHttpRequestHead(head);
  if (!parsed.ok()) return PlainError(400, parsed.status().message());
  *request = *std::move(parsed);
  if (request->method != "GET" && request->method != "HEAD") {
    HttpResponse r = PlainError(405, "this page is read-only: GET and HEAD only");
    r.headers.push_back({"Allow", "GET, HEAD"});
    return r;
  }
  return handler_(*request);
}

namespace {

// Milliseconds left until `deadline` on the monotonic clock (a step of the
// wall clock neither keeps a slow client for as long as the step nor cuts
// it off at once).
int64_t MillisecondsLeft(std::chrono::steady_clock::time_point deadline) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             deadline - std::chrono::steady_clock::now())
      .count();
}

}  // namespace

void HttpServer::HandleConnection(int fd) {
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(options_.io_timeout);
  std::string buffer;
  size_t end = std::string::npos;
  std::optional<HttpResponse> early;
  char chunk[4096];
  while (end == std::string::npos) {
    const int64_t left_ms = MillisecondsLeft(deadline);
    pollfd p{fd, POLLIN, 0};
    if (left_ms <= 0 || ::poll(&p, 1, static_cast<int>(left_ms)) <= 0) {
      early = PlainError(408, "the request head did not arrive in time");
      break;
    }
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);  // The client went away before asking anything.
      return;
    }
    buffer.append(chunk, static_cast<size_t>(n));
    end = buffer.find("\r\n\r\n");
    if (end == std::string::npos && buffer.size() > options_.max_request_head_bytes) {
      early = PlainError(431, "the request head is too large");
      break;
    }
    if (end != std::string::npos && end > options_.max_request_head_bytes) {
      early = PlainError(431, "the request head is too large");
    }
  }
  HttpRequest request;
  HttpResponse response =
      early.has_value() ? *std::move(early)
                        : Respond(absl::string_view(buffer).substr(0, end), &request);
  SendAll(fd, Serialize(response, request.method == "HEAD"));
  // Let the client read the answer before the close: unread bytes (a body
  // we never asked for) would otherwise reset the connection.
  ::shutdown(fd, SHUT_WR);
  const auto drain_until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (size_t drained = 0; drained < (1 << 20);) {
    const int64_t left_ms = MillisecondsLeft(drain_until);
    pollfd p{fd, POLLIN, 0};
    if (left_ms <= 0 || ::poll(&p, 1, static_cast<int>(left_ms)) <= 0) break;
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) break;
    drained += static_cast<size_t>(n);
  }
  ::close(fd);
}

}  // namespace comity
