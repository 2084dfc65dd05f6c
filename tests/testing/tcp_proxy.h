// A TCP forwarder on loopback that a test can freeze: while frozen, it
// keeps every connection open and reads what the client sends, but passes
// nothing on either way, as a partner that accepted a call and then went
// silent would. TLS passes through untouched (the client still talks to
// the real server's certificate).
//
//   TcpProxy proxy(server_port);
//   ... connect clients to 127.0.0.1:proxy.port() ...
//   proxy.Freeze(true);
#ifndef COMITY_TESTS_TESTING_TCP_PROXY_H_
#define COMITY_TESTS_TESTING_TCP_PROXY_H_

#include <atomic>
#include <cstdint>
#include <thread>

namespace comity::testing {

class TcpProxy {
 public:
  // Listens on a free loopback port and forwards to 127.0.0.1:target_port.
  explicit TcpProxy(int target_port);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  int port() const { return port_; }
  void Freeze(bool frozen) { frozen_ = frozen; }
  // Bytes read from clients while frozen (and never forwarded).
  uint64_t swallowed() const { return swallowed_; }

 private:
  void Run();

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  int wake_[2] = {-1, -1};  // A pipe that ends Run.
  std::atomic<bool> frozen_{false};
  std::atomic<uint64_t> swallowed_{0};
  std::thread thread_;
};

}  // namespace comity::testing

#endif  // COMITY_TESTS_TESTING_TCP_PROXY_H_
