// A minimal, read-only HTTP/1.1 server on plain sockets, for pages that a
// CLI serves on the operator's own machine (comity audit serve). It accepts
// GET and HEAD only (anything else: 405), one request per connection
// (Connection: close), with a bounded request head, read and write
// timeouts and a bounded number of connections, each on its own thread.
// No TLS: bind it to loopback and protect what it serves (AuditPage uses a
// random access token).
//
//   auto server = HttpServer::Create("127.0.0.1:0", [](const HttpRequest& r) {
//     HttpResponse resp;
//     resp.body = "<p>hello</p>";
//     return resp;
//   });
//   if (!server.ok()) return server.status();
//   std::cout << "port " << (*server)->port() << "\n";
//   (*server)->Serve();  // Until Shutdown() from another thread.
#ifndef COMITY_CLIENT_HTTP_SERVER_H_
#define COMITY_CLIENT_HTTP_SERVER_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace comity {

struct HttpRequest {
  std::string method;  // "GET" or "HEAD" (the server answers others itself).
  std::string target;  // As sent: "/case/abc?x=1".
  std::string path;    // Percent-decoded, without the query: "/case/abc".
  // Decoded query parameters ('+' is a space); the last of a repeated name.
  std::map<std::string, std::string> query;
  // Header names in lower case; the last of a repeated header.
  std::map<std::string, std::string> headers;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/html; charset=utf-8";
  // Extra headers (Set-Cookie, Location, ...). Content-Type, Content-Length
  // and Connection are added by the server.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Called on the connection's thread, concurrently for concurrent requests:
// it must be thread-safe.
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// "OK", "Not Found", ... for the codes this server uses; "Status" otherwise.
const char* HttpReason(int status);

// Decodes %XX escapes (and '+' as a space when `plus_is_space`).
// InvalidArgument for a malformed escape or an encoded NUL.
absl::StatusOr<std::string> PercentDecode(absl::string_view s, bool plus_is_space);

// Encodes everything but RFC 3986 unreserved characters.
std::string PercentEncode(absl::string_view s);

// Parses a request head (up to and excluding the blank line). The errors
// are InvalidArgument (400): among them a target that is not a path
// (absolute URLs), and a path that holds a control character (CR, LF, ...)
// once decoded.
absl::StatusOr<HttpRequest> ParseHttpRequestHead(absl::string_view head);

class HttpServer {
 public:
  struct Options {
    size_t max_request_head_bytes = 16 * 1024;  // Else 431.
    int max_connections = 32;                   // Further ones get 503.
    absl::Duration io_timeout = absl::Seconds(10);
  };

  // Binds `listen` ("HOST:PORT", "[::1]:PORT"; port 0: any free port) and
  // listens. InvalidArgument for a malformed address, Unavailable when it
  // cannot be bound (in use, not local).
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(const std::string& listen,
                                                            HttpHandler handler);
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(const std::string& listen,
                                                            HttpHandler handler,
                                                            const Options& options);
  // Shuts down and waits for the connections' threads.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port (the real one when asked for port 0).
  int port() const { return port_; }

  // Accepts and answers connections until Shutdown(). Call once.
  void Serve();
  // Makes Serve() return and waits until every connection is answered.
  // Thread-safe; idempotent.
  void Shutdown();

 private:
  HttpServer(int listen_fd, int wake_read_fd, int wake_write_fd, int port,
             HttpHandler handler, const Options& options);
  void HandleConnection(int fd);
  // The response to a raw request head, by the handler or the server itself.
  HttpResponse Respond(absl::string_view head, HttpRequest* request);

  const int listen_fd_;
  const int wake_read_fd_;
  const int wake_write_fd_;
  const int port_;
  const HttpHandler handler_;
  const Options options_;
  absl::Mutex mu_;
  int active_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace comity

#endif  // COMITY_CLIENT_HTTP_SERVER_H_
