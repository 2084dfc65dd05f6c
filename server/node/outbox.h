// The outbox (docs/delivery.md): one delivery lane per peer takes what is
// due to that peer from the store (case steps and proposals first, then
// requests, each oldest first) and delivers up to delivery.max_in_flight
// items at once. A peer that cannot be reached backs its whole lane off,
// exponentially with jitter, so it costs one probe per interval and never
// delays another peer. Callers may wait for the first attempt of what they
// queued (AwaitAttempt).
//
//   Outbox outbox(&ctx, &cases, &witness);
//   outbox.SetWaker("JP", [&] { jp_worker.Wake(); });
//   outbox.Start();
//   outbox.AwaitAttempt("JP", "r:" + id, done);  // `done` after the attempt.
//   absl::Duration wait = outbox.lane("JP")->RunRound(stopping);  // JP's worker.
#ifndef COMITY_SERVER_NODE_OUTBOX_H_
#define COMITY_SERVER_NODE_OUTBOX_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "comity/v1/request.pb.h"
#include "server/node/case_book.h"
#include "server/node/log_witness.h"
#include "server/node/node_context.h"
#include "server/util/executor.h"

namespace comity {

// Called with the record after the first delivery attempt of what a caller
// queued (or its stored state if no attempt comes in time).
using AttemptDone = std::function<void(absl::StatusOr<v1::RequestRecord>)>;

// Delivery to one peer. Thread-safe; RunRound from one thread at a time.
class DeliveryLane {
 public:
  DeliveryLane(const NodeContext* ctx, std::string peer, CaseBook* cases,
               LogWitness* witness)
      : ctx_(ctx), peer_(std::move(peer)), cases_(cases), witness_(witness) {}

  const std::string& peer() const { return peer_; }
  // One round: everything due to the peer, unless the lane is backing off.
  // Returns how long to wait before the next round unless woken: zero when
  // more is due, the rest of the backoff when the peer could not be reached,
  // the poll interval otherwise.
  absl::Duration RunRound(const std::function<bool()>& stopping);

  // One delivery attempt of each kind of item (public for tests; in
  // lane_attempts.cc). Deliver
  // returns the record after the attempt and sets *reached (if given) to
  // whether the peer answered, even with a refusal; the others return
  // whether the peer was reached.
  absl::StatusOr<v1::RequestRecord> Deliver(const v1::RequestRecord& record,
                                            bool* reached = nullptr);
  // Delivers `records` in one DeliverRequests call and marks what the peer
  // acknowledged in one transaction; returns each record after the attempt
  // (built here, not read back) and calls its waiters.
  std::vector<absl::StatusOr<v1::RequestRecord>> DeliverBatch(
      const std::vector<v1::RequestRecord>& records, bool* reached = nullptr);
  bool DeliverTransition(const PendingTransition& p);
  absl::StatusOr<bool> DeliverProposal(const PendingProposal& p);

  // Whether the lane is not backing off, and its backoff state for
  // `comity peers`: the next try by the wall clock as it reads now
  // (InfinitePast: not backing off). The backoff itself is timed on the
  // monotonic clock, so a step of the wall clock neither ends nor stretches it.
  bool reachable() const;
  uint32_t failures() const;
  absl::Time retry_at() const;

  // Something new is due to the peer: a round under way takes it too.
  void Nudge();

  // Waiters (Outbox::AwaitAttempt): "r:<request id>" or "p:<request id>";
  // `give_up_at` on the monotonic clock (NodeContext::MonotonicNow).
  void AddWaiter(const std::string& key, AttemptDone done, absl::Duration give_up_at);
  // Calls the waiters that cannot expect an attempt soon (the lane is
  // backing off, or they waited long enough; `all`: every one, the node is
  // stopping) with the stored state.
  void ResolveStale(bool all);

 private:
  using Task = std::function<absl::StatusOr<bool>()>;  // Returns whether the peer was reached.

  // Appends to `tasks` the delivery of `requests` in batches, spread over
  // `workers`; with `probe`, the first batch holds one request.
  void BatchRequests(std::vector<v1::RequestRecord> requests, size_t workers, bool probe,
                     std::deque<Task>* tasks);
  // The lane's threads (delivery.max_in_flight), made on first use.
  Executor* Pool();
  // Calls the waiters of `key` with `result`.
  void Resolve(const std::string& key, const absl::StatusOr<v1::RequestRecord>& result);
  // Everything due to the peer, up to max_in_flight at once. Returns whether
  // the peer could not be reached; sets *more if a batch was full.
  bool DeliverDue(const std::function<bool()>& stopping, bool* more);
  // The audit entries of an acknowledged delivery: the attempt, the
  // acknowledgement (with the receipt's SHA-256) and any disagreement of
  // the two assessments.
  AuditFn AcknowledgedEntries(const v1::RequestBody& body, uint32_t attempt,
                              const v1::Receipt& receipt, std::string receipt_sha256) const;
  // Stores a failed attempt (`answer`: the peer's answer; `status`: why it
  // failed, also for an answer that did not verify): rejected for good or
  // retried later. Returns the stored record.
  absl::StatusOr<v1::RequestRecord> RecordFailure(const v1::RequestRecord& record,
                                                  const v1::RequestBody& body,
                                                  const absl::Status& answer,
                                                  const absl::Status& status, absl::Time now);
  // The longest backoff (delivery.retry_max_ms): no stored retry time is
  // ever further off, unless the wall clock was stepped back since.
  absl::Duration MaxBackoff() const;

  const NodeContext* const ctx_;
  const std::string peer_;
  CaseBook* const cases_;
  LogWitness* const witness_;
  mutable absl::Mutex mu_;
  uint32_t failures_ ABSL_GUARDED_BY(mu_) =
      0;  // Rounds in a row the peer was unreachable.
  // The end of the backoff on the monotonic clock; -InfiniteDuration: none.
  absl::Duration retry_at_ ABSL_GUARDED_BY(mu_) = -absl::InfiniteDuration();
  struct Waiter {
    AttemptDone done;
    absl::Duration give_up_at;  // Monotonic.
  };
  std::multimap<std::string, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Executor> pool_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> nudged_{false};  // Set by Nudge, taken by a round.
};

// The lanes of every configured peer. Thread-safe.
class Outbox {
 public:
  Outbox(const NodeContext* ctx, CaseBook* cases, LogWitness* witness);

  // The lane of `peer`; null for a party that is not a peer.
  DeliveryLane* lane(const std::string& peer) const;
  // How to wake `peer`'s lane (its worker's Wake). Before Start.
  void SetWaker(const std::string& peer, std::function<void()> wake);
  // Callers may wait for attempts from now on (until Stop).
  void Start();
  // Wakes the lane of `peer`: something is due to it.
  void Kick(const std::string& peer) const;
  // Calls `done` after the first attempt of `key` on `peer`'s lane, with the
  // record as it stands then, or with the stored state if no attempt comes
  // in time (the peer backing off, the node not started or stopping).
  void AwaitAttempt(const std::string& peer, const std::string& key, AttemptDone done);
  // No more waiting: every waiter gets the stored state (Unavailable for a
  // request still pending: stored, delivered after restart).
  void Stop();

 private:
  const NodeContext* const ctx_;
  std::map<std::string, std::unique_ptr<DeliveryLane>> lanes_;  // Fixed at construction.
  std::map<std::string, std::function<void()>> wakers_;         // Fixed before Start.
  absl::Mutex mu_;
  bool accepting_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_OUTBOX_H_
