// Test fixtures: a throwaway directory with real keys and certificates made
// by certs/make-network.sh (so the script is tested too), node
// configurations with free loopback ports, and in-process nodes on real
// gRPC with real mutual TLS.
#ifndef COMITY_TESTS_TESTING_TEST_NETWORK_H_
#define COMITY_TESTS_TESTING_TEST_NETWORK_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/config/node_config.h"
#include "server/grpc/node_server.h"
#include "server/util/clock.h"
#include "tests/testing/postgres_test_db.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace comity::testing {

// A fresh directory under $TMPDIR, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The names in directory `dir`, sorted, without "." and ".."; empty if it
// cannot be read.
std::vector<std::string> ListDir(const std::string& dir);

// A free TCP port on 127.0.0.1 (bound to port 0, read back, released); 0
// if none could be had. Another call may return the same port once it is
// released: for several ports at once, use TestNetwork::PickPort.
int PickUnusedPort();

// A TCP socket listening on 127.0.0.1 at a free port, as another program's
// would: it accepts connections into the kernel's backlog but never
// answers, so a TLS handshake to it hangs until the caller's deadline.
// `reuse_port`: with SO_REUSEPORT set, as a gRPC server's or nginx's
// `reuseport` listener has it.
class ListeningSocket {
 public:
  explicit ListeningSocket(bool reuse_port = false);
  ~ListeningSocket();
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A channel to 127.0.0.1:`port` that trusts `ca_file` and, unless
// `cert_file` is empty, presents that certificate and key (files).
std::shared_ptr<grpc::Channel> MtlsChannel(int port, const std::string& ca_file,
                                           const std::string& cert_file = "",
                                           const std::string& key_file = "",
                                           const grpc::ChannelArguments& args = {});

// Runs a shell command; returns its exit status.
int RunShell(const std::string& command);

// Keys, certificates and configurations of parties; nodes started on
// demand.
class TestNetwork {
 public:
  // Makes credentials for `parties` (e.g. {"FR", "JP", "DE"}); each party's
  // node config lists every other party as a peer. When
  // $COMITY_TEST_POSTGRES is set, each node stores in a fresh PostgreSQL
  // database of its own (config field `database`), else in SQLite.
  explicit TestNetwork(const std::vector<std::string>& parties);
  ~TestNetwork();

  const std::string& dir() const { return dir_.path(); }
  std::string PartyDir(const std::string& party) const { return dir() + "/" + party; }
  // The node configuration text of `party` (can be edited before Start).
  std::string& ConfigText(const std::string& party) { return configs_[party]; }
  // A client config for operator `name` ("alice" or "bob") of `party`.
  std::string ClientConfigPath(const std::string& party, const std::string& name = "alice");

  // Starts (or restarts) the node of `party` on its fixed ports.
  absl::Status Start(const std::string& party, const Clock* clock = SystemClock::Get());
  void Stop(const std::string& party);
  NodeServer* server(const std::string& party) { return servers_.at(party).get(); }
  const NodeSetup& setup(const std::string& party) { return *setups_.at(party); }
  int peer_port(const std::string& party) { return peer_ports_.at(party); }
  int operator_port(const std::string& party) { return operator_ports_.at(party); }
  // A free loopback port for another listener of the test (e.g. metrics):
  // like the nodes' ports, distinct from every port picked so far in this
  // process (the kernel hands a released port out again). Thread-safe.
  static int PickPort();

  // A TLS channel to `party`'s operator port as operator `name`, and to its
  // peer port as the node of `as_party` (with that node's certificate), for
  // tests that speak the RPCs directly.
  std::shared_ptr<grpc::Channel> OperatorChannel(const std::string& party,
                                                 const std::string& name);
  std::shared_ptr<grpc::Channel> PeerChannel(const std::string& party,
                                             const std::string& as_party);

  // Behind the store's back, as a failing disk or an intruder would, on
  // the database of a stopped node (its SQLite file, or its PostgreSQL
  // database): flips the low bit of one byte of `column` (a blob) in the
  // rows of `table` matching `where` (SQL, the same in both dialects). The
  // byte is the first of `needle` in the value, or its middle one if
  // `needle` is empty. NotFound if no row matched or no value holds
  // `needle`.
  absl::Status FlipStoredByte(const std::string& party, const std::string& table,
                              const std::string& column, const std::string& where,
                              const std::string& needle = "");
  // Runs `sql` (the same in both dialects) on the database of a stopped
  // node, behind the store's back.
  absl::Status ExecSql(const std::string& party, const std::string& sql);
  // The path of `party`'s SQLite file (empty on PostgreSQL).
  std::string SqlitePath(const std::string& party) const;

 private:
  TempDir dir_;
  std::vector<std::string> parties_;
  std::map<std::string, std::string> configs_;
  std::map<std::string, int> peer_ports_;
  std::map<std::string, int> operator_ports_;
  // Declared before servers_: dropped after the nodes stopped.
  std::map<std::string, std::unique_ptr<PostgresTestDb>> databases_;
  std::map<std::string, std::unique_ptr<NodeSetup>> setups_;
  std::map<std::string, std::unique_ptr<NodeServer>> servers_;
};

// The repository's root directory (compiled in).
std::string SourceDir();

}  // namespace comity::testing

#endif  // COMITY_TESTS_TESTING_TEST_NETWORK_H_
