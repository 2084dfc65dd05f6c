// Runs a Node on gRPC: a peer listener (mutual TLS, peers' CAs) and an
// operator listener (mutual TLS, the operator CA), each its own grpc::Server
// so that neither service is reachable on the other's port, plus the
// gRPC transport the node uses to reach its peers. Both listeners also
// serve the standard health service (grpc.health.v1.Health: the overall
// status "" and each Comity service by name, SERVING once both listeners are
// up, NOT_SERVING from the start of Shutdown) and server reflection
// (grpc.reflection.v1alpha), behind the same mutual TLS.
//
//   COMITY_ASSIGN_OR_RETURN(auto server, NodeServer::Start(setup.get(), SystemClock::Get()));
//   server->Wait();  // Until Shutdown() from another thread.
#ifndef COMITY_SERVER_GRPC_NODE_SERVER_H_
#define COMITY_SERVER_GRPC_NODE_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/config/node_config.h"
#include "server/node/node.h"
#include "server/util/clock.h"

namespace grpc {
class Server;
}

namespace comity {

class GrpcPeerTransport;
class PeerServiceImpl;
class OperatorServiceImpl;
class AuditServiceImpl;
class StartGate;
class Executor;

class NodeServer {
 public:
  // Opens the store in setup->config.data_dir(), binds both listeners (and
  // the metrics endpoint if configured), then starts the node. A listen
  // address that another process holds (a second comityd on the same port,
  // whatever the socket options of the first) is an error naming the field,
  // the address and the command that shows who holds it: kUnavailable
  // "peer_listen_address 127.0.0.1:7443 is in use by another process (is
  // another comityd running? `ss -ltnp 'sport = :7443'`)"; an address not of
  // this machine, or a privileged port, kFailedPrecondition. On any error
  // nothing has started: the node recorded no start and contacted no peer.
  // `setup` and `clock` must outlive the server.
  static absl::StatusOr<std::unique_ptr<NodeServer>> Start(const NodeSetup* setup,
                                                          const Clock* clock);
  ~NodeServer();

  int peer_port() const { return peer_port_; }
  int operator_port() const { return operator_port_; }
  // The Prometheus endpoint's port; 0 without metrics_listen_address.
  int metrics_port() const { return metrics_port_; }
  Node* node() { return node_.get(); }

  // Sets the health status NOT_SERVING, stops accepting calls, lets
  // in-flight ones finish (gRPC cancels those still running `grace` after
  // the call), stops the node. Logs `shutdown_started` and
  // `shutdown_complete` (with its duration). Thread-safe, idempotent: a
  // second call returns at once, possibly before the first has finished.
  void Shutdown(absl::Duration grace = absl::Seconds(5));
  // Blocks until Shutdown() has completed.
  void Wait();

 private:
  NodeServer();
  std::unique_ptr<GrpcPeerTransport> transport_;
  std::unique_ptr<Node> node_;
  // The threads that do the work of each listener's calls (commits,
  // signatures, waits): one pool per listener, so that a flood of peer
  // calls never takes the operators' threads.
  std::unique_ptr<Executor> peer_pool_;
  std::unique_ptr<Executor> operator_pool_;
  std::unique_ptr<PeerServiceImpl> peer_service_;
  std::unique_ptr<OperatorServiceImpl> operator_service_;
  std::unique_ptr<AuditServiceImpl> audit_service_;
  std::unique_ptr<StartGate> gate_;  // Opened once node_ has started.
  std::unique_ptr<grpc::Server> peer_server_;
  std::unique_ptr<grpc::Server> operator_server_;
  int peer_port_ = 0;
  int operator_port_ = 0;
  int metrics_port_ = 0;
  bool started_ = false;  // Set by Start before it returns the server.
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace comity

#endif  // COMITY_SERVER_GRPC_NODE_SERVER_H_
