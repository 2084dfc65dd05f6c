// A party's node, without any transport: receives signed requests from
// peers, takes drafts from operators, signs, stores and delivers them. The
// gRPC services in server/grpc/ are thin adapters over this class.
//
//   COMITY_ASSIGN_OR_RETURN(auto node, Node::Create(setup.get(), std::move(store),
//                                                   transport.get(), SystemClock::Get()));
//   node->Start();  // Background delivery and retries.
//   ...
//   node->Stop();
#ifndef COMITY_SERVER_NODE_NODE_H_
#define COMITY_SERVER_NODE_NODE_H_

#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/record.pb.h"
#include "comity/v1/request.pb.h"
#include "server/config/node_config.h"
#include "server/node/peer_transport.h"
#include "server/store/store.h"
#include "server/util/clock.h"

namespace comity {

// Thread-safe. Call Stop() (or destroy) before destroying the transport.
class Node {
 public:
  using SubmitDone = std::function<void(absl::StatusOr<v1::RequestRecord>)>;

  // `setup`, `transport` and `clock` must outlive the node.
  static absl::StatusOr<std::unique_ptr<Node>> Create(const NodeSetup* setup,
                                                      std::unique_ptr<Store> store,
                                                      PeerTransport* transport,
                                                      const Clock* clock);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Starts the delivery worker, which delivers submitted requests and
  // retries undelivered ones (also those left from before a restart).
  void Start();
  // Stops the worker; queued Submit callbacks get Unavailable. Idempotent.
  void Stop();

  const std::string& party() const { return setup_->config.party(); }

  // --- Authentication (the adapters pass the TLS peer's PEM certificate). ---

  // The party a peer node's certificate speaks for. PermissionDenied unless
  // it names a configured peer party and was issued by that party's CA.
  absl::StatusOr<std::string> AuthenticatePeer(const std::string& cert_pem,
                                               const std::string& chain_pem) const;
  // The operator name ("alice") an operator certificate speaks for.
  // PermissionDenied unless it names this node's party and was issued by the
  // operator CA.
  absl::StatusOr<std::string> AuthenticateOperator(const std::string& cert_pem,
                                                   const std::string& chain_pem) const;

  // --- Peer API. ---

  // Checks and durably stores a request from `peer_party` (already
  // authenticated), then returns the signed receipt. Errors as documented
  // on PeerService.DeliverRequest in proto/comity/v1/peer.proto. Nothing is
  // stored unless OK.
  absl::StatusOr<v1::SignedEnvelope> ReceiveRequest(const std::string& peer_party,
                                                    const v1::SignedEnvelope& envelope);

  // --- Operator API. ---

  // Completes, signs and stores `draft`, then calls `done` (on the delivery
  // worker, or inline on an early error) with the record after the first
  // delivery attempt. InvalidArgument for a bad draft, FailedPrecondition
  // for an unconfigured requested party.
  void Submit(const std::string& operator_name, v1::RequestBody draft, SubmitDone done);

  absl::StatusOr<std::vector<v1::RequestRecord>> List(v1::Direction direction,
                                                      int limit) const;
  // NotFound if this node knows no request with that id.
  absl::StatusOr<std::vector<v1::RequestRecord>> Get(const std::string& request_id) const;
  // The public keys that signed the envelopes of `records`.
  std::vector<v1::PublicKey> SignerKeys(const std::vector<v1::RequestRecord>& records) const;

 private:
  struct Job {
    std::string request_id;
    SubmitDone done;  // May be empty (retries).
  };

  Node(const NodeSetup* setup, std::unique_ptr<Store> store, PeerTransport* transport,
       const Clock* clock)
      : setup_(setup), store_(std::move(store)), transport_(transport), clock_(clock) {}

  void WorkerLoop();
  // One delivery attempt of a stored outgoing request; returns the updated
  // record.
  absl::StatusOr<v1::RequestRecord> Deliver(const v1::RequestRecord& record);
  absl::Duration Backoff(uint32_t attempts) const;

  const NodeSetup* const setup_;
  const std::unique_ptr<Store> store_;
  PeerTransport* const transport_;
  const Clock* const clock_;

  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread worker_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_NODE_H_
