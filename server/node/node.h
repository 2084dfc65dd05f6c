// A party's node, without any transport (docs/architecture.md, "The node"):
// it wires the duties over one shared context and owns their threads.
//
//   RequestIntake    who calls, whether admitted, refusals audited; received requests
//   Submission       drafts of this node's operators, two-person approval
//   Outbox           a DeliveryLane per peer: requests, case steps, proposals
//   CaseBook         the cases: decisions, proposals, transitions
//   DeadlineWatch    late and expiring deadlines, escalation
//   EvidenceExchange evidence served, fetched (per peer), exported
//   EvidenceIntake   evidence from this node's operators, uploaded or imported
//   LogWitness       tree heads, gossip, split views, verification
//   Keys             key announcements, both ways
//   Backup           backup copies and the restore check
//   CustodyExport    custody packages of a case, for court
//
// The gRPC services in server/grpc/ are thin adapters over peer_api() and
// operator_api().
//
//   COMITY_ASSIGN_OR_RETURN(auto node, Node::Create(setup.get(), std::move(store),
//                                                   transport.get(),
//                                                   SystemClock::Get()));
//   node->Start();  // The workers: a lane and an evidence fetcher per peer,
//                   // gossip, deadlines, key announcements, rate-limit audit.
//   ...
//   node->Stop();
#ifndef COMITY_SERVER_NODE_NODE_H_
#define COMITY_SERVER_NODE_NODE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "comity/v1/record.pb.h"
#include "server/config/node_config.h"
#include "server/node/backup.h"
#include "server/node/recovery.h"
#include "server/node/case_book.h"
#include "server/node/custody_export.h"
#include "server/node/deadline_watch.h"
#include "server/node/evidence_exchange.h"
#include "server/node/evidence_intake.h"
#include "server/node/keys.h"
#include "server/node/log_witness.h"
#include "server/node/metrics.h"
#include "server/node/node_context.h"
#include "server/node/operator_api.h"
#include "server/node/outbox.h"
#include "server/node/peer_api.h"
#include "server/node/peer_transport.h"
#include "server/node/request_intake.h"
#include "server/node/submission.h"
#include "server/node/worker.h"
#include "server/store/store.h"
#include "server/util/clock.h"

namespace comity {

// Thread-safe. Call Stop() (or destroy) before destroying the transport.
class Node {
 public:
  // `setup`, `transport` and `clock` must outlive the node.
  static absl::StatusOr<std::unique_ptr<Node>> Create(const NodeSetup* setup,
                                                      std::unique_ptr<Store> store,
                                                      PeerTransport* transport,
                                                      const Clock* clock);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Records the start in the audit log, recomputes open cases' deadlines,
  // and starts the workers. At most once.
  void Start();
  // Stops the workers (each ends its round, whatever its peer does, within
  // one call's timeout); callers waiting for a first delivery attempt get
  // the stored state. Idempotent.
  void Stop();

  const std::string& party() const { return ctx_->party(); }

  // What peers and operators may ask (the adapters' entry points).
  PeerApi& peer_api() { return peer_api_; }
  OperatorApi& operator_api() { return operator_api_; }

  // The duties.
  RequestIntake& intake() { return *intake_; }
  Submission& submission() { return *submission_; }
  Outbox& outbox() { return *outbox_; }
  CaseBook& cases() { return *cases_; }
  DeadlineWatch& deadlines() { return *deadlines_; }
  EvidenceExchange& evidence() { return *evidence_; }
  EvidenceIntake& evidence_intake() { return *evidence_intake_; }
  LogWitness& witness() { return *witness_; }
  Keys& keys() { return *keys_; }
  Backup& backup() { return *backup_; }
  CustodyExport& custody() { return *custody_; }
  Recovery& recovery() { return *recovery_; }

  const NodeContext& context() const { return *ctx_; }
  Store* store() { return store_.get(); }
  Metrics& metrics() { return metrics_; }
  const KeyRing& key_ring() const { return ctx_->key_ring(); }

  // Every record with this id (NotFound if none), with queued proposals.
  absl::StatusOr<std::vector<v1::RequestRecord>> Get(const std::string& request_id) const;
  // `request_id` and every request linked to it through
  // related_request_ids, both ways, as this node knows them; oldest first.
  absl::StatusOr<std::vector<v1::RequestRecord>> Chain(
      const std::string& request_id) const;
  // The newest `limit` records of `direction` (unspecified: both).
  absl::StatusOr<std::vector<v1::RequestRecord>> List(v1::Direction direction,
                                                      int limit) const;
  // Each configured peer's reachability, queue depth and last error.
  absl::StatusOr<std::vector<v1::PeerStatus>> Peers();
  // This node's own signing public keys.
  std::vector<v1::PublicKey> OwnKeys() const;

 private:
  Node(const NodeSetup* setup, std::unique_ptr<Store> store, PeerTransport* transport,
       const Clock* clock);
  absl::Status Init();
  Worker* AddWorker(std::string name, Worker::Round round);

  // Declared first, destroyed last: what the duties point to.
  const std::unique_ptr<Store> store_;
  Metrics metrics_;
  const std::unique_ptr<NodeContext> ctx_;

  std::unique_ptr<RequestIntake> intake_;
  std::unique_ptr<Submission> submission_;
  std::unique_ptr<EvidenceExchange> evidence_;
  std::unique_ptr<EvidenceIntake> evidence_intake_;
  std::unique_ptr<LogWitness> witness_;
  std::unique_ptr<CaseBook> cases_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<DeadlineWatch> deadlines_;
  std::unique_ptr<Keys> keys_;
  std::unique_ptr<Backup> backup_;
  std::unique_ptr<CustodyExport> custody_;
  std::unique_ptr<Recovery> recovery_;
  PeerApi peer_api_;
  OperatorApi operator_api_;

  // The threads: fixed by Init, started by Start. Destroyed first.
  std::vector<std::unique_ptr<Worker>> workers_;
  std::map<std::string, Worker*> lane_workers_;      // By peer.
  std::map<std::string, Worker*> evidence_workers_;  // By peer.
  absl::Mutex stop_mu_;  // Held by Stop throughout.
  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_NODE_H_
