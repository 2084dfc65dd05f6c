// Durable storage of a node, split by aggregate: requests, cases, the
// outbox and the audit log, each an interface of a few methods, all over one
// database so that one transaction can change a request and append the
// audit entries that document it. The SQL is written once
// (server/store/sql/) for both backends, SQLite (server/store/sqlite/, the
// default) and PostgreSQL (server/store/postgres/, for several replicas);
// the schema is specified in docs/storage.md.
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenStore(config));
//   COMITY_RETURN_IF_ERROR(store->requests().InsertOutgoing(key, record, audit_fn));
//   COMITY_ASSIGN_OR_RETURN(auto due, store->outbox().DueRequests("JP", now, 64, absl::InfiniteFuture()));
//
// Every implementation is thread-safe, and every mutating call is durable
// (fsync'd, or committed with synchronous_commit) when it returns OK,
// together with the audit entries its AuditFn appended.
#ifndef COMITY_SERVER_STORE_STORE_H_
#define COMITY_SERVER_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "server/audit/coverage.h"
#include "server/audit/verifier.h"

namespace comity {

// The fields of a request the store indexes, copied out of its envelope by
// the caller when it is stored (the store never parses a request body).
struct RecordKey {
  std::string request_id;
  std::string requesting_party;
  std::string requested_party;
  // Earlier requests this one follows up (RequestBody.related_request_ids).
  std::vector<std::string> related_request_ids = {};
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
  virtual absl::StatusOr<std::vector<std::string>> InclusionProof(
      uint64_t index, uint64_t size) const = 0;
  // Stores a signed tree head of the current tree.
  virtual absl::Status PutTreeHead(const v1::TreeHead& head,
                                   const v1::SignedEnvelope& signed_head) = 0;
};

// Writes audit entries for a change; nullptr for none.
using AuditFn = std::function<absl::Status(AuditWriter&)>;

// --- Requests. ---

// A page of requests, newest first.
struct RecordPage {
  std::vector<v1::RequestRecord> records;
  // Pass as ListQuery::after for the next page; empty on the last page.
  std::string next_cursor;
};

struct ListQuery {
  v1::Direction direction = v1::DIRECTION_UNSPECIFIED;  // Unspecified: both.
  int limit = 100;                                      // 1..1000.
  std::string after;  // A RecordPage::next_cursor; empty: from the newest.
  // Also ends the page before the record that would take the page's
  // records (serialized) over this many bytes; a page holds at least one
  // record. 0: no bound but `limit`.
  size_t max_bytes = 0;
};

// The requests a node shares with one partner (sent to it or received from
// it) that changed at or after a time: what the partner asks for when it
// recovers from a restore (docs/backup.md).
struct SharedQuery {
  std::string partner;
  absl::Time changed_since = absl::InfinitePast();
  int limit = 100;    // 1..1000.
  std::string after;  // A RecordPage::next_cursor; empty: from the start.
  // As ListQuery::max_bytes, counting the records' transitions.
  size_t max_bytes = 0;
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

// The requests a node sent and received. A record's `transitions` are the
// case's steps (CaseStore), read with it.
class RequestStore {
 public:
  virtual ~RequestStore() = default;

  // Stores a new outgoing request. AlreadyExists if the id is known (an id
  // is one case on a node, whichever direction).
  virtual absl::Status InsertOutgoing(const RecordKey& key,
                                      const v1::RequestRecord& record,
                                      const AuditFn& audit = nullptr) = 0;

  // Unless a request with this id was already received, calls `build`
  // inside the transaction (it may append to the audit log and sign a tree
  // head) and stores the record it returns; else writes nothing and
  // returns the stored record with `*inserted` false. AlreadyExists if a
  // request this node sent has the id.
  virtual absl::StatusOr<v1::RequestRecord> InsertIncomingIfAbsent(
      const RecordKey& key,
      const std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)>& build,
      bool* inserted) = 0;

  // The requests of one delivered batch, in one transaction. For each key,
  // in order: the record already received under its id (`inserted`
  // false), or AlreadyExists if a request this node sent has the id; then
  // `build` is called once, inside the transaction, with the positions of
  // the others (it may append to the audit log and sign one tree head for
  // them all) and returns their records in that order, which are stored.
  // A key repeated in `keys` is built once; its later copies get the
  // record as held (`inserted` false).
  struct IncomingOutcome {
    absl::StatusOr<v1::RequestRecord> record;
    bool inserted = false;
  };
  using BuildBatchFn = std::function<absl::StatusOr<std::vector<v1::RequestRecord>>(
      AuditWriter&, const std::vector<size_t>& fresh)>;
  virtual absl::StatusOr<std::vector<IncomingOutcome>> InsertIncomingBatch(
      const std::vector<RecordKey>& keys, const BuildBatchFn& build) = 0;

  // A draft AWAITING_APPROVAL approved: stores its signed envelope and makes
  // it PENDING_DELIVERY, due now. FailedPrecondition if not awaiting.
  virtual absl::Status MarkApproved(const std::string& request_id,
                                    const v1::SignedEnvelope& signed_request,
                                    const std::string& approver, absl::Time now,
                                    const AuditFn& audit = nullptr) = 0;

  // Every record with this id (at most one per direction), with the case's
  // transitions. Empty if none.
  virtual absl::StatusOr<std::vector<v1::RequestRecord>> Get(
      const std::string& request_id) = 0;

  // One page of requests, newest first (by stored_at, then id). A record
  // in a page carries no transitions. InvalidArgument for a bad cursor.
  virtual absl::StatusOr<RecordPage> List(const ListQuery& query) = 0;

  // One page of the requests shared with `query.partner` changed since
  // `query.changed_since`, in order of their last change (then id and
  // direction), each with its case's transitions. InvalidArgument for a
  // bad cursor.
  virtual absl::StatusOr<RecordPage> SharedWith(const SharedQuery& query) = 0;

  // The ids of the requests linked to `request_id` through
  // related_request_ids, either way (one hop), in id order.
  virtual absl::StatusOr<std::vector<std::string>> Linked(
      const std::string& request_id) = 0;

  // Every (direction, state, partner) with its number of requests: one
  // aggregate query, cheap enough for every metrics scrape.
  virtual absl::StatusOr<std::vector<RequestCount>> Count() = 0;
};

// --- Cases. ---

// A case with deadlines (CaseStore).
struct CaseRef {
  std::string request_id;
  v1::Direction direction = v1::DIRECTION_UNSPECIFIED;
  // Its earliest unmet deadline (InfiniteFuture: none).
  absl::Time next_deadline;
  // Which of its deadlines were escalated already (bits the DeadlineWatch
  // defines), so that each is escalated once.
  uint32_t escalated = 0;
};

// An evidence file listed in a response to a request this node sent, not
// yet held here (docs/lifecycle.md, "Evidence").
struct PendingEvidence {
  std::string request_id;
  std::string peer;  // The requested party, which holds the file.
  std::string sha256;
  std::string name;
  uint64_t size = 0;
  uint32_t attempts = 0;
  std::string last_error;
  // The next fetch attempt (InfiniteFuture: none is scheduled: waiting for
  // release conditions, or given up until an operator asks again).
  absl::Time next_attempt_at = absl::InfiniteFuture();
};

// An evidence file an operator staged for a response (docs/evidence.md).
struct StagedEvidence {
  std::string request_id;
  std::string sha256;
  std::string name;
  uint64_t size = 0;
  std::string staged_by;  // The operator.
};

// The state of each case (RequestRecord.case_state), its signed steps, and
// what the node watches in it: the next deadline and the evidence still to
// fetch.
class CaseStore {
 public:
  virtual ~CaseStore() = default;

  // Appends a signed transition to the case of the request's `row` and
  // moves its state, atomically; FailedPrecondition unless the transition
  // is the next step (sequence) from the stored state. `outbound`: made by
  // this node, to be delivered to the other party. `next_deadline`: its
  // earliest unmet deadline, which is also its next check (InfiniteFuture:
  // none, e.g. once closed). Evidence files the transition lists become
  // PendingEvidence of an OUTGOING row; a transition that accepts release
  // conditions makes that row's pending evidence due again.
  virtual absl::Status AppendTransition(const std::string& request_id, v1::Direction row,
                                        const v1::Transition& transition,
                                        const v1::SignedEnvelope& signed_transition,
                                        bool outbound, absl::Time now,
                                        absl::Time next_deadline,
                                        const AuditFn& audit = nullptr) = 0;

  // Cases due to be checked for their deadlines at `before` (the check
  // time is the next deadline whenever the case changes, and what
  // MarkDeadlinesChecked set since), soonest first; at most `limit`.
  virtual absl::StatusOr<std::vector<CaseRef>> Due(absl::Time before, int limit) = 0;
  // Every case with an unmet deadline at or before `before`, escalated or
  // not, soonest first, from `after` (a request id and direction,
  // exclusive; null: the start) so that a caller can page through them.
  virtual absl::StatusOr<std::vector<CaseRef>> WithDeadlineBefore(absl::Time before,
                                                                  const CaseRef* after,
                                                                  int limit) = 0;
  // The case was checked: its next check is at `next_check`
  // (InfiniteFuture: only when it changes) and `escalated` says which
  // deadlines were escalated; with the entries of `audit`, atomically.
  virtual absl::Status MarkDeadlinesChecked(const std::string& request_id,
                                            v1::Direction direction, absl::Time next_check,
                                            uint32_t escalated,
                                            const AuditFn& audit = nullptr) = 0;
  // Open cases (a state that is not final) from `after` (exclusive; empty:
  // the start), in (request id, direction) order: to recompute their
  // deadlines (SetNextDeadline) after a change of service levels.
  virtual absl::StatusOr<std::vector<CaseRef>> Open(const CaseRef* after, int limit) = 0;
  virtual absl::Status SetNextDeadline(const std::string& request_id,
                                       v1::Direction direction,
                                       absl::Time next_deadline) = 0;

  // Evidence files of responses to `peer` (empty: any) this node does not
  // hold, due for a fetch attempt at `now`; at most `limit`, oldest first.
  // An attempt scheduled after `latest` (now + the longest backoff,
  // evidence.retry_max_ms) is due too: it was scheduled before the wall
  // clock was stepped back, and would otherwise wait as long as the step.
  virtual absl::StatusOr<std::vector<PendingEvidence>> DueEvidence(
      const std::string& peer, absl::Time now, int limit, absl::Time latest) = 0;
  // Every evidence file of `request_id` not held here yet.
  virtual absl::StatusOr<std::vector<PendingEvidence>> PendingEvidenceOf(
      const std::string& request_id) = 0;
  // The other party's signed acknowledgements of this node's steps of
  // `request_id` (SignedEnvelope of Acknowledgement), by sequence.
  virtual absl::StatusOr<std::vector<v1::SignedEnvelope>> StepAcknowledgements(
      const std::string& request_id) = 0;
  // The file is held here now (fetched and verified, or already held).
  virtual absl::Status MarkEvidenceHeld(const std::string& request_id,
                                        const std::string& sha256,
                                        const AuditFn& audit = nullptr) = 0;
  // A fetch attempt failed (`count_attempt`) or cannot start yet (release
  // conditions not accepted: `count_attempt` false): next try at
  // `next_attempt_at` (InfiniteFuture: only once conditions are accepted).
  virtual absl::Status MarkEvidenceDeferred(const std::string& request_id,
                                            const std::string& sha256,
                                            const std::string& error, bool count_attempt,
                                            absl::Time next_attempt_at) = 0;
  // How many evidence files each peer holds for this node that it does not
  // hold yet, and how many of those failed `given_up_after` attempts or more.
  virtual absl::StatusOr<std::map<std::string, std::pair<int, int>>> PendingEvidenceCounts(
      uint32_t given_up_after) = 0;
  // An operator asks for the files of `request_id` not held yet to be
  // fetched again now, attempts counted from 0. Returns how many.
  virtual absl::StatusOr<int> RetryEvidence(const std::string& request_id,
                                            absl::Time now) = 0;

  // Records that `file` (held in the evidence store) is staged for a
  // response to `request_id`, with the entries of `audit`; staging it
  // again keeps one row (the latest name).
  virtual absl::Status StageEvidence(const StagedEvidence& file, absl::Time now,
                                     const AuditFn& audit = nullptr) = 0;
  // The files staged for `request_id`, in the order they were staged.
  virtual absl::StatusOr<std::vector<StagedEvidence>> StagedEvidenceOf(
      const std::string& request_id) = 0;
};

// --- The outbox. ---

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

// What waits for delivery to one peer (docs/delivery.md): outgoing
// requests pending delivery, this node's case steps not yet acknowledged,
// and the requesting party's queued proposals. On a database shared by
// several replicas, the Due* calls claim what they return for a lease, and
// the Mark*/Finish* calls release the claim.
class OutboxStore {
 public:
  virtual ~OutboxStore() = default;

  // Outgoing requests to `peer` (empty: any) still PENDING_DELIVERY whose
  // next attempt is due at `now`, oldest first. An attempt scheduled after
  // `latest` (now + the longest backoff) is due too: it was scheduled
  // before the clock was stepped back, and would otherwise wait as long
  // as the step. The same holds for DueTransitions and DueProposals.
  virtual absl::StatusOr<std::vector<v1::RequestRecord>> DueRequests(
      const std::string& peer, absl::Time now, int limit,
      absl::Time latest) = 0;
  // Outgoing request acknowledged: state DELIVERED with its receipt; the
  // case starts (CASE_DELIVERED) with `next_deadline` (CaseStore).
  virtual absl::Status MarkDelivered(const std::string& request_id,
                                     const v1::SignedEnvelope& receipt, absl::Time now,
                                     absl::Time next_deadline,
                                     const AuditFn& audit = nullptr) = 0;
  // Several outgoing requests acknowledged at `now`, in one transaction:
  // as MarkDelivered each, with each item's audit entries. An item no
  // longer pending delivery (delivered by another replica meanwhile) is
  // skipped, its audit function not called; returns, per item, whether it
  // was marked.
  struct Delivered {
    std::string request_id;
    v1::SignedEnvelope receipt;
    absl::Time next_deadline = absl::InfiniteFuture();
    AuditFn audit;
  };
  virtual absl::StatusOr<std::vector<bool>> MarkDeliveredBatch(
      const std::vector<Delivered>& items, absl::Time now) = 0;
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

  // This node's transitions to `peer` (the requesting party of their case;
  // empty: any) not yet acknowledged, due at `now`: of each case only the
  // earliest undelivered step, so that no step overtakes an earlier one.
  virtual absl::StatusOr<std::vector<PendingTransition>> DueTransitions(
      const std::string& peer, absl::Time now, int limit, absl::Time latest) = 0;
  // The peer acknowledged the step with `ack`, its signed Acknowledgement,
  // which is kept as proof of delivery.
  virtual absl::Status MarkTransitionDelivered(const std::string& request_id,
                                               uint32_t sequence,
                                               const v1::SignedEnvelope& ack,
                                               const AuditFn& audit = nullptr) = 0;
  virtual absl::Status MarkTransitionFailed(const std::string& request_id,
                                            uint32_t sequence, const std::string& error,
                                            absl::Time next_attempt_at) = 0;
  // The peer no longer holds the steps of this case it acknowledged (it
  // was restored from a backup, docs/backup.md): this node's steps before
  // `before_sequence` become undelivered, due at `now`, so that the outbox
  // sends them again in order. Returns how many were rewound.
  virtual absl::StatusOr<int> RewindTransitions(const std::string& request_id,
                                                uint32_t before_sequence,
                                                absl::Time now) = 0;

  // Queues a signed proposal for the requested party `peer`, durably.
  // FailedPrecondition if a proposal for this request is already queued
  // (the next one must be based on the step that one becomes).
  virtual absl::StatusOr<int64_t> EnqueueProposal(const std::string& request_id,
                                                  const std::string& peer,
                                                  const v1::SignedEnvelope& proposal,
                                                  absl::Time now,
                                                  const AuditFn& audit = nullptr) = 0;
  // Queued proposals to `peer` (empty: any) due at `now`, in queue order.
  virtual absl::StatusOr<std::vector<PendingProposal>> DueProposals(
      const std::string& peer, absl::Time now, int limit, absl::Time latest) = 0;
  // The queued (not yet finished) proposals of one request.
  virtual absl::StatusOr<std::vector<PendingProposal>> QueuedProposals(
      const std::string& request_id) = 0;
  // The proposal left the queue: applied (`outcome` empty) or refused by
  // the peer for good (`outcome` says why).
  virtual absl::Status FinishProposal(int64_t id, const std::string& outcome,
                                      const AuditFn& audit = nullptr) = 0;
  virtual absl::Status MarkProposalFailed(int64_t id, const std::string& error,
                                          absl::Time next_attempt_at) = 0;

  // Per peer party: (requests pending delivery to it, case steps and
  // proposals pending delivery to it).
  virtual absl::StatusOr<std::map<std::string, std::pair<uint32_t, uint32_t>>>
  Depths() = 0;
};

// --- The audit log (docs/audit_log.md). ---

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
  // Exactly; without a ':' also the operator of that name ("alice" matches
  // "operator:alice" and "auditor:alice").
  std::string actor;
  int type = 0;
  // EntryPage also ends before the entry that would take the page's entries
  // over this many bytes; a page holds at least one. 0: no bound but `limit`.
  size_t max_bytes = 0;
};

// A page of the log's entries (AuditStore::EntryPage).
struct AuditEntryPage {
  std::vector<std::string> entries;  // Serialized, as hashed, in log order.
  // Where the next page starts (the index after the page's last entry);
  // 0 on the last page.
  uint64_t next_index = 0;
};

// The log as it stood at one moment, for reading it whole (verification,
// export) while the node appends: AuditStore::ReadSnapshot. Valid only
// during the callback it is passed to.
class AuditSnapshot {
 public:
  virtual ~AuditSnapshot() = default;
  // Entries in the snapshot.
  virtual uint64_t size() const = 0;
  // Entries from `from_index`, in log order: (stored index, bytes).
  virtual absl::Status ForEachEntry(
      uint64_t from_index,
      const std::function<absl::Status(uint64_t, const std::string&)>& fn) = 0;
  // Every stored node hash: (level, index, hash), in (level, index) order.
  virtual absl::Status ForEachNode(
      const std::function<absl::Status(int, uint64_t, const std::string&)>& fn) = 0;
  // Pages for a reader that walks them beside the entries: up to `limit`
  // stored node hashes of `level` from index `from_index`, (index, hash) by
  // index; up to `limit` signed heads from tree size `from_size`, by size.
  virtual absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> NodesAt(
      int level, uint64_t from_index, int64_t limit) = 0;
  virtual absl::StatusOr<std::vector<StoredTreeHead>> TreeHeadsFrom(uint64_t from_size,
                                                                   int64_t limit) = 0;
  // Every signed head of this node's log, in tree-size order.
  virtual absl::Status ForEachTreeHead(
      const std::function<absl::Status(StoredTreeHead)>& fn) = 0;
  // The stored data the log covers, read a page at a time: every request
  // row, in (request_id, direction) order; every step, in (request_id,
  // sequence) order; every staged evidence file (request_id, sha256).
  virtual absl::Status ForEachRequest(
      const std::function<absl::Status(const StoredRequestRow&)>& fn) = 0;
  virtual absl::Status ForEachStep(
      const std::function<absl::Status(const StoredStepRow&)>& fn) = 0;
  virtual absl::Status ForEachStagedEvidence(
      const std::function<absl::Status(const std::string&, const std::string&)>& fn) = 0;
  // The database's own check of its files, where it has one that reads
  // within a snapshot (SQLite: PRAGMA quick_check). DataLoss naming the
  // first problem; OK where the database has none (PostgreSQL,
  // docs/storage.md).
  virtual absl::Status CheckStorage() = 0;
};

// The node's tamper-evident log, its signed heads, and the latest heads
// seen from each peer.
class AuditStore {
 public:
  virtual ~AuditStore() = default;

  // A transaction that only appends to the audit log (and may sign a head).
  virtual absl::Status Append(const AuditFn& audit) = 0;
  virtual absl::StatusOr<uint64_t> Size() = 0;
  // Serialized entries (as hashed) matching `filter`, in log order.
  virtual absl::StatusOr<std::vector<std::string>> Entries(const AuditFilter& filter) = 0;
  // The same, a page at a time: at most `filter.limit` entries and about
  // `filter.max_bytes` of them, with where the next page starts if more
  // match.
  virtual absl::StatusOr<AuditEntryPage> EntryPage(const AuditFilter& filter) = 0;
  // Signed heads of this node's log with tree_size >= `from_size`, in
  // tree-size order; at most `limit` (0: all).
  virtual absl::StatusOr<std::vector<StoredTreeHead>> TreeHeads(uint64_t from_size = 0,
                                                                uint64_t limit = 0) = 0;
  virtual absl::StatusOr<std::optional<StoredTreeHead>> LatestTreeHead() = 0;
  // InvalidArgument for a size beyond the log.
  virtual absl::StatusOr<std::string> RootAt(uint64_t size) = 0;
  virtual absl::StatusOr<std::vector<std::string>> InclusionProofAt(uint64_t index,
                                                                    uint64_t size) = 0;
  virtual absl::StatusOr<std::vector<std::string>> ConsistencyProofAt(
      uint64_t old_size, uint64_t new_size) = 0;
  // Runs `fn` on one consistent view of the whole log, read apart from
  // the node's writes, so that a log growing meanwhile never looks damaged
  // and the node is not held up.
  virtual absl::Status ReadSnapshot(
      const std::function<absl::Status(AuditSnapshot&)>& fn) = 0;

  // The latest tree head seen from each peer (for split-view detection).
  virtual absl::StatusOr<std::optional<StoredTreeHead>> LatestPeerHead(
      const std::string& party) = 0;
  virtual absl::Status PutPeerHead(const std::string& party, const StoredTreeHead& head,
                                   absl::Time received_at) = 0;
};

// --- The whole store. ---

// What a database copy made by Store::Backup held when it was taken
// (docs/backup.md). Found in a database restored from such a copy until
// the node has checked it against its peers (ClearBackupOrigin).
struct BackupOrigin {
  int64_t taken_at_us = 0;
  uint64_t audit_size = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  virtual RequestStore& requests() = 0;
  virtual CaseStore& cases() = 0;
  virtual OutboxStore& outbox() = 0;
  virtual AuditStore& audit() = 0;

  // The schema version recorded in the database.
  virtual absl::StatusOr<int> SchemaVersion() = 0;

  // Writes a consistent copy of the whole database to `dest_path` (a new
  // file, mode 0600) while the store stays in use, marked with its
  // BackupOrigin, which it returns. Unimplemented where the database has
  // its own tools (PostgreSQL: pg_dump).
  virtual absl::StatusOr<BackupOrigin> Backup(const std::string& dest_path) = 0;
  // The origin mark of a database restored from a Backup copy; nullopt for
  // one that was not (or was already checked).
  virtual absl::StatusOr<std::optional<BackupOrigin>> RestoredBackupOrigin() = 0;
  virtual absl::Status ClearBackupOrigin() = 0;
};

// Verifies the audit log held by `store` on one snapshot: the database's
// own check of its files (CheckStorage), every entry and stored node hash,
// every signed tree head (signed by `party` with a key in `keys`), and the
// stored data against the entries that logged it (CoverageChecker).
// One pass over the entries at constant memory (LogVerifier): the stored
// nodes and heads are read a page at a time beside them. The snapshot is a
// read-only connection of its own (SQLite WAL; PostgreSQL REPEATABLE READ
// READ ONLY): writers and other readers go on meanwhile. `progress`, if
// set, is called with (entries verified, entries in the snapshot) every
// kVerifyProgressEvery entries, on the calling thread.
using VerifyProgressFn = std::function<void(uint64_t done, uint64_t total)>;
inline constexpr uint64_t kVerifyProgressEvery = 100000;
absl::StatusOr<VerifyReport> VerifyStoredLog(AuditStore& store, const std::string& party,
                                             const KeyRing& keys,
                                             const VerifyProgressFn& progress = nullptr);

}  // namespace comity

#endif  // COMITY_SERVER_STORE_STORE_H_
