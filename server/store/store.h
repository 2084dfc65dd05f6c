// Durable storage of requests, behind an interface so that the node logic
// can be tested against a fake and run on SQLite (here) or, later,
// PostgreSQL. The SQLite schema is specified in docs/storage.md.
#ifndef COMITY_SERVER_STORE_STORE_H_
#define COMITY_SERVER_STORE_STORE_H_

#include <functional>
#include <map>
#include <utility>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "server/audit/verifier.h"

namespace comity {

// The identifying fields of a stored record, copied out of its request
// envelope when it is stored.
struct RecordKey {
  std::string request_id;
  std::string requesting_party;
  std::string requested_party;
};

// Appends to the audit log inside a store transaction: what it appends
// commits or rolls back with the change it documents. Valid only during the
// callback it is passed to; not thread-safe.
class AuditWriter {
 public:
  virtual ~AuditWriter() = default;
  // Sets entry->index to the next position and appends it. Returns the
  // serialized entry exactly as hashed into the tree.
  virtual absl::StatusOr<std::string> Append(v1::AuditEntry* entry) = 0;
  // Size and root including what this transaction appended so far.
  virtual uint64_t size() const = 0;
  virtual std::string Root() const = 0;
  virtual absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index,
                                                                  uint64_t size) const = 0;
  // Stores a signed tree head of the current tree.
  virtual absl::Status PutTreeHead(const v1::TreeHead& head,
                                   const v1::SignedEnvelope& signed_head) = 0;
};

// Writes audit entries for a change; nullptr for none.
using AuditFn = std::function<absl::Status(AuditWriter&)>;

struct PendingTransition {
  std::string request_id;
  uint32_t sequence = 0;
  v1::SignedEnvelope envelope;
  uint32_t attempts = 0;
};

// A requesting party's signed proposal (docs/lifecycle.md) queued for the
// requested party, which numbers it into the case.
struct PendingProposal {
  int64_t id = 0;  // Queue position; proposals to a peer go out in this order.
  std::string request_id;
  std::string peer;
  v1::SignedEnvelope envelope;
  uint32_t attempts = 0;
  std::string last_error;
};

struct StoredTreeHead {
  v1::TreeHead head;
  v1::SignedEnvelope signed_head;
};

// Filters for reading the audit log; empty fields match everything.
struct AuditFilter {
  uint64_t from_index = 0;
  uint64_t limit = 0;  // 0: no limit.
  int64_t from_time_us = 0;
  int64_t to_time_us = 0;  // Exclusive; 0: no bound.
  std::string request_id;
  std::string party;
  std::string actor;
  int type = 0;
};

// How many requests a node holds in one direction and state with one
// other party (`partner`: the requested party of a sent request, the
// requesting party of a received one). For metrics (docs/metrics.md).
struct RequestCount {
  v1::Direction direction = v1::DIRECTION_UNSPECIFIED;
  v1::RequestState state = v1::REQUEST_STATE_UNSPECIFIED;
  std::string partner;
  uint64_t count = 0;
};

// What a database copy made by Store::Backup held when it was taken
// (docs/backup.md). Found in a database restored from such a copy until
// the node has checked it against its peers (ClearBackupOrigin).
struct BackupOrigin {
  int64_t taken_at_us = 0;
  uint64_t audit_size = 0;
};

// Implementations are thread-safe. Every mutating call is durable (fsync'd)
// when it returns OK, with the audit entries its AuditFn appended.
class Store {
 public:
  virtual ~Store() = default;

  // Stores a new outgoing request. AlreadyExists if the id is known.
  virtual absl::Status InsertOutgoing(const RecordKey& key, const v1::RequestRecord& record,
                                      const AuditFn& audit = nullptr) = 0;

  // Unless a request with this id was already received, calls `build`
  // inside the transaction (it may append to the audit log and sign a tree
  // head) and stores the record it returns; else writes nothing and
  // returns the stored record with `*inserted` false.
  virtual absl::StatusOr<v1::RequestRecord> InsertIncomingIfAbsent(
      const RecordKey& key,
      const std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)>& build,
      bool* inserted) = 0;

  // A draft AWAITING_APPROVAL approved: stores its signed envelope and makes
  // it PENDING_DELIVERY, due now. FailedPrecondition if not awaiting.
  virtual absl::Status MarkApproved(const std::string& request_id,
                                    const v1::SignedEnvelope& signed_request,
                                    const std::string& approver, absl::Time now,
                                    const AuditFn& audit = nullptr) = 0;

  // Outgoing request acknowledged: state DELIVERED with its receipt.
  virtual absl::Status MarkDelivered(const std::string& request_id,
                                     const v1::SignedEnvelope& receipt, absl::Time now,
                                     const AuditFn& audit = nullptr) = 0;

  // A delivery attempt failed: counts it and schedules the next.
  virtual absl::Status MarkDeliveryFailed(const std::string& request_id,
                                          const std::string& error, absl::Time now,
                                          absl::Time next_attempt_at,
                                          const AuditFn& audit = nullptr) = 0;

  // The peer refused the request for good: state DELIVERY_REJECTED, no
  // further attempts.
  virtual absl::Status MarkRejected(const std::string& request_id,
                                    const std::string& error, absl::Time now,
                                    const AuditFn& audit = nullptr) = 0;

  // --- The audit log. ---

  // A transaction that only appends to the audit log (and may sign a head).
  virtual absl::Status Audit(const AuditFn& audit) = 0;
  virtual absl::StatusOr<uint64_t> AuditSize() = 0;
  // Serialized entries (as hashed) matching `filter`, in log order.
  virtual absl::StatusOr<std::vector<std::string>> AuditEntries(const AuditFilter& filter) = 0;
  virtual absl::StatusOr<std::vector<StoredTreeHead>> TreeHeads() = 0;
  virtual absl::StatusOr<std::string> RootAt(uint64_t size) = 0;
  virtual absl::StatusOr<std::vector<std::string>> InclusionProofAt(uint64_t index,
                                                                    uint64_t size) = 0;
  virtual absl::StatusOr<std::vector<std::string>> ConsistencyProofAt(uint64_t old_size,
                                                                      uint64_t new_size) = 0;
  // Every entry in log order: (stored position, bytes).
  virtual absl::Status ForEachAuditEntry(
      const std::function<absl::Status(uint64_t, const std::string&)>& fn) = 0;
  virtual absl::StatusOr<std::optional<StoredTreeHead>> LatestTreeHead() = 0;
  // Every stored node hash, for verification: (level, index, hash) in any
  // order, passed to `fn`.
  virtual absl::Status ForEachAuditNode(
      const std::function<absl::Status(int, uint64_t, const std::string&)>& fn) = 0;

  // The latest tree head seen from each peer (for split-view detection).
  virtual absl::StatusOr<std::optional<StoredTreeHead>> LatestPeerHead(
      const std::string& party) = 0;
  virtual absl::Status PutPeerHead(const std::string& party, const StoredTreeHead& head) = 0;

  // Per peer party: (requests pending delivery to it, case steps and
  // proposals pending delivery to it).
  virtual absl::StatusOr<std::map<std::string, std::pair<uint32_t, uint32_t>>>
  QueueDepths() = 0;

  // --- Operations (docs/metrics.md, docs/backup.md). ---

  // Every (direction, state, partner) with its number of requests: one
  // aggregate query, cheap enough for every metrics scrape.
  virtual absl::StatusOr<std::vector<RequestCount>> CountRequests() = 0;
  // Writes a consistent copy of the whole database to `dest_path` (a new
  // file, mode 0600) while the store stays in use, marked with its
  // BackupOrigin, which it returns. Unimplemented where the database has its own tools
  // (PostgreSQL: pg_dump).
  virtual absl::StatusOr<BackupOrigin> Backup(const std::string& dest_path) = 0;
  // The origin mark of a database restored from a Backup copy; nullopt for
  // one that was not (or was already checked).
  virtual absl::StatusOr<std::optional<BackupOrigin>> RestoredBackupOrigin() = 0;
  virtual absl::Status ClearBackupOrigin() = 0;

  // --- Cases (docs/lifecycle.md). ---

  // Appends a signed transition to the case of the request's `row` and
  // moves its state, atomically; FailedPrecondition unless the transition
  // is the next step (sequence) from the stored state. `outbound`: made by
  // this node, to be delivered to the other party.
  virtual absl::Status AppendTransition(const std::string& request_id, v1::Direction row,
                                        const v1::Transition& transition,
                                        const v1::SignedEnvelope& signed_transition,
                                        bool outbound, absl::Time now,
                                        const AuditFn& audit = nullptr) = 0;
  // This node's transitions to `peer` (the requesting party of their case;
  // empty: any) not yet acknowledged, due at `now`: of each case only the
  // earliest undelivered step, so that no step overtakes an earlier one.
  virtual absl::StatusOr<std::vector<PendingTransition>> DueTransitions(const std::string& peer,
                                                                        absl::Time now,
                                                                        int limit) = 0;
  // The peer acknowledged the step with `ack`, its signed Acknowledgement,
  // which is kept as proof of delivery.
  virtual absl::Status MarkTransitionDelivered(const std::string& request_id,
                                               uint32_t sequence,
                                               const v1::SignedEnvelope& ack,
                                               const AuditFn& audit = nullptr) = 0;
  virtual absl::Status MarkTransitionFailed(const std::string& request_id, uint32_t sequence,
                                            const std::string& error,
                                            absl::Time next_attempt_at) = 0;
  // The peer no longer holds the steps of this case it acknowledged (it
  // was restored from a backup, docs/backup.md): this node's steps before
  // `before_sequence` become undelivered, due at `now`, so that the outbox
  // sends them again in order. Returns how many were rewound.
  virtual absl::StatusOr<int> RewindTransitions(const std::string& request_id,
                                                uint32_t before_sequence, absl::Time now) = 0;

  // Queues a signed proposal for the requested party `peer`, durably.
  // FailedPrecondition if a proposal for this request is already queued
  // (the next one must be based on the step that one becomes).
  virtual absl::StatusOr<int64_t> EnqueueProposal(const std::string& request_id,
                                                  const std::string& peer,
                                                  const v1::SignedEnvelope& proposal,
                                                  absl::Time now,
                                                  const AuditFn& audit = nullptr) = 0;
  // Queued proposals to `peer` (empty: any) due at `now`, in queue order.
  virtual absl::StatusOr<std::vector<PendingProposal>> DueProposals(const std::string& peer,
                                                                    absl::Time now,
                                                                    int limit) = 0;
  // The queued (not yet finished) proposals of one request.
  virtual absl::StatusOr<std::vector<PendingProposal>> QueuedProposals(
      const std::string& request_id) = 0;
  // The proposal left the queue: applied (`outcome` empty) or refused by
  // the peer for good (`outcome` says why).
  virtual absl::Status FinishProposal(int64_t id, const std::string& outcome,
                                      const AuditFn& audit = nullptr) = 0;
  virtual absl::Status MarkProposalFailed(int64_t id, const std::string& error,
                                          absl::Time next_attempt_at) = 0;

  // Every record with this id (at most one per direction), with the case's
  // transitions. Empty if none.
  virtual absl::StatusOr<std::vector<v1::RequestRecord>> Get(
      const std::string& request_id) = 0;

  // Newest first; `direction` DIRECTION_UNSPECIFIED for both.
  virtual absl::StatusOr<std::vector<v1::RequestRecord>> List(v1::Direction direction,
                                                              int limit) = 0;

  // Outgoing requests to `peer` (empty: any) still PENDING_DELIVERY whose
  // next attempt is due at `now`, oldest first.
  virtual absl::StatusOr<std::vector<v1::RequestRecord>> DueForDelivery(const std::string& peer,
                                                                        absl::Time now,
                                                                        int limit) = 0;
};

// Verifies the audit log held by `store`: every entry and stored node hash,
// every signed tree head (signed by `party` with a key in `keys`).
absl::StatusOr<VerifyReport> VerifyStoredLog(Store& store, const std::string& party,
                                             const KeyRing& keys);

}  // namespace comity

#endif  // COMITY_SERVER_STORE_STORE_H_
