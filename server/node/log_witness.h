// This node's log as others see it (docs/audit_log.md): the signed heads it
// makes, the heads its peers make, and the proofs that tie them together.
// It gossips heads with every peer, checks each head it is shown against
// the last one it holds (a consistency proof from the peer), raises a split
// view on a contradiction and reports it; it checks reports of its own
// split views, and it verifies its own log for auditors.
//
//   LogWitness witness(&ctx, [&](const std::string& peer) { return lane_up(peer); });
//   COMITY_RETURN_IF_ERROR(witness.RecordStart());  // NODE_STARTED and a head.
//   witness.GossipWith("JP");                       // Run by JP's gossip worker.
#ifndef COMITY_SERVER_NODE_LOG_WITNESS_H_
#define COMITY_SERVER_NODE_LOG_WITNESS_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/envelope.pb.h"
#include "server/audit/verifier.h"
#include "server/node/node_context.h"

namespace comity {

// Thread-safe.
class LogWitness {
 public:
  // `reachable(peer)`: whether the outbox can reach the peer now (gossip
  // skips one it cannot: the call would only wait for its timeout).
  LogWitness(const NodeContext* ctx, std::function<bool(const std::string&)> reachable)
      : ctx_(ctx), reachable_(std::move(reachable)) {}

  // Appends NODE_STARTED (and KEY_CHANGED if the signing key differs from
  // the previous start's) and signs a head.
  absl::Status RecordStart();
  // A head of the log as it stands: the latest if it covers the whole log,
  // else a new one.
  absl::StatusOr<v1::SignedEnvelope> SignTreeHead();
  // One round with `peer`, if reachable: a new head if the log grew,
  // exchanged with the peer, and its head in return checked. Each peer has
  // its own worker, so that a silent peer delays no other's gossip.
  void GossipWith(const std::string& peer);
  // GossipWith every peer in turn (tests).
  void GossipRound();

  // Peer gossip: checks `their_head` (from the TLS peer `peer_party`) and
  // returns this node's latest head. DataLoss for a split view.
  absl::StatusOr<v1::SignedEnvelope> ExchangeTreeHeads(
      const std::string& peer_party, const v1::SignedEnvelope& their_head);
  // Checks a head of `party`'s log against the last one held, asking the
  // peer for a consistency proof; a contradiction is a split view: logged,
  // audited and reported to the peer (DataLoss). Unavailable /
  // DeadlineExceeded when the peer could not be asked (checked with its next
  // head).
  absl::Status CheckPeerHead(const std::string& party, const v1::SignedEnvelope& head);
  // Like CheckPeerHead, at most once a second per peer (the heads in
  // receipts: each check costs a call and a commit; gossip checks the rest).
  void MaybeCheckPeerHead(const std::string& party, const v1::SignedEnvelope& head);
  // A peer reports two heads this node signed that contradict each other.
  // InvalidArgument unless the evidence holds; if it does, the alert is
  // raised here too.
  absl::Status HandleSplitViewReport(const std::string& peer_party,
                                     const v1::SignedEnvelope& first,
                                     const v1::SignedEnvelope& second);
  absl::StatusOr<std::vector<std::string>> ConsistencyProof(uint64_t old_size,
                                                            uint64_t new_size);
  // The latest head of `peer_party`'s own log this node holds (nullopt if
  // none), so that a peer restored from a backup can check it never signed
  // more than it now holds (docs/backup.md).
  absl::StatusOr<std::optional<v1::SignedEnvelope>> HeldHeadOf(
      const std::string& peer_party);

  // For auditors: verifies this node's whole log on one snapshot.
  absl::StatusOr<VerifyReport> Verify();
  // Records an export (AUDIT_EXPORTED) under a head signed now, so that a
  // copy cannot be changed unseen.
  void RecordAuditExport(const std::string& actor);

 private:
  // Logs, audits and (when `reporter` is empty, i.e. this node found it)
  // reports to `party` a split view of `party`'s log. Returns DataLoss.
  absl::Status RaiseSplitView(const std::string& party, const v1::SignedEnvelope& first,
                              const v1::SignedEnvelope& second, const std::string& why,
                              const std::string& reporter);

  const NodeContext* const ctx_;
  const std::function<bool(const std::string&)> reachable_;
  absl::Mutex mu_;
  // When each peer's receipt head was last checked, on the monotonic clock.
  std::map<std::string, absl::Duration> last_receipt_check_ ABSL_GUARDED_BY(mu_);
  // Held while SignTreeHead looks and signs.
  absl::Mutex sign_mu_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_LOG_WITNESS_H_
