#include "server/node/outbox.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/audit/receipt.h"
#include "server/core/deadlines.h"
#include "server/core/envelope.h"
#include "server/core/peer_limits.h"
#include "server/crypto/sha256.h"
#include "server/node/assessment_log.h"
#include "server/node/case_records.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"
#include "server/util/time_proto.h"

namespace comity {
namespace {

constexpr int kBatch = 64;
// Requests due at once go in at most this many calls (each up to
// delivery.batch_size): more calls would each cost the receiver a signed
// head and both sides a call, for no gain in parallelism on a few cores.
constexpr size_t kSpreadOver = 2;
// The most requests a round takes from the store at once.
constexpr size_t kMaxDue = 1024;

// The id of an outgoing request (its body's; empty if it does not parse).
std::string IdOf(const v1::RequestRecord& r) {
  v1::RequestBody body;
  return body.ParseFromString(r.request().payload()) ? body.id() : std::string();
}

// The stored state of what a waiter queued.
absl::StatusOr<v1::RequestRecord> Stored(const NodeContext& ctx, const std::string& key) {
  return LoadRecord(ctx.store(), key.substr(2), v1::OUTGOING);
}

}  // namespace

// --- One lane. ---

bool DeliveryLane::reachable() const {
  absl::MutexLock lock(&mu_);
  return ctx_->MonotonicNow() >= retry_at_;
}

uint32_t DeliveryLane::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

absl::Time DeliveryLane::retry_at() const {
  absl::MutexLock lock(&mu_);
  if (retry_at_ == -absl::InfiniteDuration()) return absl::InfinitePast();
  return ctx_->Now() + (retry_at_ - ctx_->MonotonicNow());
}

absl::Duration DeliveryLane::MaxBackoff() const {
  return absl::Milliseconds(ctx_->config().delivery().retry_max_ms());
}

absl::Duration DeliveryLane::RunRound(const std::function<bool()>& stopping) {
  const absl::Duration poll = absl::Milliseconds(
      std::clamp<uint32_t>(ctx_->config().delivery().retry_initial_ms(), 10, 1000));
  absl::Duration retry_at;
  {
    absl::MutexLock lock(&mu_);
    retry_at = retry_at_;
  }
  const absl::Duration now = ctx_->MonotonicNow();
  if (now < retry_at) {
    // Callers waiting for an attempt get the stored state now.
    ResolveStale(false);
    return std::min(poll, retry_at - now);
  }
  bool more = false;
  const bool unreachable = DeliverDue(stopping, &more);
  absl::Duration wait = more ? absl::ZeroDuration() : poll;
  {
    absl::MutexLock lock(&mu_);
    if (unreachable) {
      ++failures_;
      const absl::Duration backoff = ctx_->Backoff(failures_);
      retry_at_ = ctx_->MonotonicNow() + backoff;
      wait = std::min(poll, backoff);
    } else {
      failures_ = 0;
      retry_at_ = -absl::InfiniteDuration();
    }
  }
  ResolveStale(false);
  return wait;
}

void DeliveryLane::BatchRequests(std::vector<v1::RequestRecord> requests, size_t workers,
                                 bool probe, std::deque<Task>* tasks) {
  // Batches (DeliverRequests) of up to delivery.batch_size and within the
  // message limit, spread over the workers free to carry them; a probe is
  // a batch of one.
  const size_t most = std::max<uint32_t>(1, ctx_->config().delivery().batch_size());
  const size_t calls = std::clamp<size_t>(workers, 1, kSpreadOver);
  const size_t even = (requests.size() + calls - 1) / calls;
  const size_t per = std::clamp<size_t>(even, 1, most);
  const size_t bytes = ctx_->config().limits().max_message_bytes() / 4 * 3;
  std::vector<v1::RequestRecord> batch;
  size_t batch_bytes = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    tasks->push_back([this, b = std::move(batch)]() -> absl::StatusOr<bool> {
      // A peer that answers, even with a refusal for now (a request dated
      // ahead of its clock, a key it has not learned), was reached: that
      // request waits for its own retry, the others go on.
      bool reached = true;
      DeliverBatch(b, &reached);
      return reached;
    });
    batch.clear();
    batch_bytes = 0;
  };
  for (v1::RequestRecord& r : requests) {
    const size_t size = r.request().ByteSizeLong() + 16;
    if (!batch.empty() && (batch.size() >= per || batch_bytes + size > bytes)) flush();
    batch_bytes += size;
    batch.push_back(std::move(r));
    if (probe && tasks->empty()) flush();
  }
  flush();
}

bool DeliveryLane::DeliverDue(const std::function<bool()>& stopping, bool* more) {
  OutboxStore& outbox = ctx_->store().outbox();
  const absl::Time now = ctx_->Now();
  const size_t width = std::max<uint32_t>(1, ctx_->config().delivery().max_in_flight());
  const int request_limit = static_cast<int>(std::min<size_t>(
      kMaxDue, width * std::max<uint32_t>(1, ctx_->config().delivery().batch_size())));
  // Attempts scheduled further off than the longest backoff were scheduled
  // before the clock was stepped back: due now.
  const absl::Time latest = now + MaxBackoff();
  // Anything submitted from here on may join this round (below).
  nudged_.store(false);
  // Steps and proposals first (they move open cases), then requests.
  std::deque<Task> tasks;
  auto transitions = outbox.DueTransitions(peer_, now, kBatch, latest);
  auto proposals = outbox.DueProposals(peer_, now, kBatch, latest);
  auto requests = outbox.DueRequests(peer_, now, request_limit, latest);
  for (const absl::Status* failed :
       {&transitions.status(), &proposals.status(), &requests.status()}) {
    if (!failed->ok())
      LogEvent(LogLevel::kError, "store_error", {{"error", failed->ToString()}});
  }
  if (transitions.ok()) {
    for (PendingTransition& t : *transitions) {
      tasks.push_back([this, t = std::move(t)]() -> absl::StatusOr<bool> {
        return DeliverTransition(t);
      });
    }
  }
  if (proposals.ok()) {
    for (PendingProposal& p : *proposals) {
      tasks.push_back([this, p = std::move(p)]() { return DeliverProposal(p); });
    }
  }
  // A peer not known to answer (the last attempt failed, or none was made
  // yet) gets one probe first; only if it answers does the rest go out.
  // A peer that is down therefore costs one attempt per backoff interval.
  bool probe;
  {
    absl::MutexLock lock(&mu_);
    probe = failures_ > 0;
  }
  if (!probe) probe = !ctx_->contacts().Get(peer_).reachable;
  std::set<std::string> taken;  // Requests attempted in this round.
  if (requests.ok()) {
    for (const v1::RequestRecord& r : *requests) taken.insert(IdOf(r));
    BatchRequests(*std::move(requests), width, probe && tasks.empty(), &tasks);
  }
  if (tasks.empty()) return false;
  *more = (transitions.ok() && transitions->size() == kBatch) ||
          (proposals.ok() && proposals->size() == kBatch) ||
          taken.size() == static_cast<size_t>(request_limit);

  if (probe) {
    if (stopping()) return false;
    absl::StatusOr<bool> reached = tasks.front()();
    tasks.pop_front();
    if (reached.ok() && !*reached) {
      *more = false;
      return true;
    }
  }

  // Up to max_in_flight attempts at once, on the lane's threads and this
  // one. A worker that finds nothing left to do takes the requests that
  // came due since (submitted while the others were in flight), so the
  // lane keeps its calls busy rather than waiting for the slowest of a
  // round. The first attempt that cannot reach the peer stops the round:
  // the rest wait for the lane's next try.
  absl::Mutex round_mu;
  bool unreachable = false;  // Guarded by round_mu.
  size_t live = 1;           // Workers running, this thread included.
  std::function<void()> work;
  // The next task, taking what came due if nothing is left; nullopt: the
  // worker is done.
  auto next = [&]() -> std::optional<Task> {
    absl::MutexLock lock(&round_mu);
    if (unreachable || stopping()) return std::nullopt;
    if (tasks.empty() && nudged_.exchange(false)) {
      auto due = outbox.DueRequests(peer_, ctx_->Now(),
                                    request_limit + static_cast<int>(taken.size()), latest);
      if (due.ok()) {
        std::vector<v1::RequestRecord> fresh;
        for (v1::RequestRecord& r : *due) {
          if (taken.insert(IdOf(r)).second) fresh.push_back(std::move(r));
        }
        if (fresh.size() == static_cast<size_t>(request_limit)) *more = true;
        BatchRequests(std::move(fresh), width - live + 1, false, &tasks);
      }
    }
    if (tasks.empty()) return std::nullopt;
    Task t = std::move(tasks.front());
    tasks.pop_front();
    // More waiting than workers: another one joins.
    while (!tasks.empty() && live < width && live <= tasks.size()) {
      ++live;
      Pool()->Schedule(work);
    }
    return t;
  };
  work = [&] {
    while (std::optional<Task> t = next()) {
      absl::StatusOr<bool> reached = (*t)();
      if (reached.ok() && !*reached) {
        absl::MutexLock lock(&round_mu);
        unreachable = true;
      }
    }
    absl::MutexLock lock(&round_mu);
    --live;
  };
  {
    absl::MutexLock lock(&round_mu);
    while (!tasks.empty() && live < width && live < tasks.size()) {
      ++live;
      Pool()->Schedule(work);
    }
  }
  work();
  absl::MutexLock lock(&round_mu);
  round_mu.Await(absl::Condition(+[](size_t* n) { return *n == 0; }, &live));
  if (unreachable) *more = false;
  return unreachable;
}

Executor* DeliveryLane::Pool() {
  absl::MutexLock lock(&mu_);
  if (pool_ == nullptr) {
    pool_ = std::make_unique<Executor>(
        absl::StrCat("lane ", peer_),
        static_cast<int>(std::max<uint32_t>(1, ctx_->config().delivery().max_in_flight())));
  }
  return pool_.get();
}

void DeliveryLane::Nudge() { nudged_.store(true); }

absl::StatusOr<v1::RequestRecord> DeliveryLane::Deliver(const v1::RequestRecord& record,
                                                        bool* reached) {
  std::vector<absl::StatusOr<v1::RequestRecord>> after = DeliverBatch({record}, reached);
  return std::move(after[0]);
}

std::vector<absl::StatusOr<v1::RequestRecord>> DeliveryLane::DeliverBatch(
    const std::vector<v1::RequestRecord>& records, bool* reached) {
  std::vector<absl::StatusOr<v1::RequestRecord>> after(records.size(),
                                                       absl::UnknownError("not delivered"));
  std::vector<v1::RequestBody> bodies(records.size());
  std::vector<const v1::SignedEnvelope*> envelopes;
  std::vector<size_t> sent;  // Positions in `records` of what is sent.
  for (size_t i = 0; i < records.size(); ++i) {
    absl::StatusOr<v1::RequestBody> body = BodyOf(records[i]);
    if (!body.ok()) {
      after[i] = body.status();
      continue;
    }
    bodies[i] = *std::move(body);
    envelopes.push_back(&records[i].request());
    sent.push_back(i);
  }
  if (reached != nullptr) *reached = true;
  if (sent.empty()) return after;

  absl::StatusOr<std::vector<absl::StatusOr<v1::SignedEnvelope>>> answers =
      ctx_->transport().DeliverRequests(peer_, envelopes, ctx_->attempt_timeout());
  ctx_->NoteContact(peer_, answers.status());
  if (!answers.ok() && sent.size() > 1 &&
      (absl::IsResourceExhausted(answers.status()) ||
       absl::IsInvalidArgument(answers.status()))) {
    // The peer refused the batch as a whole (a lower message limit than
    // ours, or a smaller batch): each request goes on its own, so that
    // none is rejected for the others.
    bool any = false;
    for (size_t i : sent) {
      bool r = true;
      after[i] = Deliver(records[i], &r);
      any = any || r;
    }
    if (reached != nullptr) *reached = any;
    return after;
  }
  if (!answers.ok()) {
    if (reached != nullptr) {
      *reached = !absl::IsUnavailable(answers.status()) &&
                 !absl::IsDeadlineExceeded(answers.status());
    }
    answers = std::vector<absl::StatusOr<v1::SignedEnvelope>>(sent.size(), answers.status());
  }

  // Each answer verified; the receipts of a batch share one head, whose
  // signature is checked once.
  VerifiedHeads heads;
  const absl::Time now = ctx_->Now();
  std::vector<OutboxStore::Delivered> delivered;
  std::vector<size_t> delivered_at;  // Positions in `records`.
  std::vector<v1::Receipt> receipts;
  for (size_t j = 0; j < sent.size(); ++j) {
    const size_t i = sent[j];
    const v1::RequestRecord& record = records[i];
    const v1::RequestBody& body = bodies[i];
    absl::StatusOr<v1::SignedEnvelope>& receipt = (*answers)[j];
    absl::Status status = receipt.status();
    absl::StatusOr<v1::Receipt> verified = absl::UnknownError("no receipt");
    if (status.ok()) {
      verified = VerifyReceipt(record.request(), *receipt, peer_, ctx_->key_ring(), &heads);
      if (verified.ok()) {
        // Dated between the request's creation and now: the case's
        // deadlines run from it.
        absl::Status dated = CheckSignedTime(
            "the receipt", FromProto(verified->received_at()), ctx_->Now(),
            ctx_->setup().max_clock_skew(), FromProto(body.created_at()));
        if (!dated.ok()) verified = dated;
      }
      status = verified.status();
    }
    const uint32_t attempt = record.delivery_attempts() + 1;
    if (status.ok()) {
      if (verified->has_receiver_assessment()) {
        LogDisagreement(body.id(), body.requester_assessment(),
                        verified->receiver_assessment());
      }
      v1::RequestRecord& done = *(after[i] = record);
      done.set_state(v1::DELIVERED);
      done.set_case_state(v1::CASE_DELIVERED);
      *done.mutable_receipt() = *receipt;
      done.set_delivery_attempts(attempt);
      done.clear_last_error();
      done.clear_next_attempt_at();
      *done.mutable_updated_at() = ToProto(now);
      const absl::Time next = NextDeadline(done, ctx_->config().service_levels());
      if (next != absl::InfiniteFuture()) {
        *done.mutable_next_deadline() = ToProto(next);
      } else {
        done.clear_next_deadline();
      }
      OutboxStore::Delivered& d = delivered.emplace_back();
      d.request_id = body.id();
      d.receipt = *receipt;
      d.next_deadline = next;
      d.audit = AcknowledgedEntries(body, attempt, *verified, Sha256(receipt->payload()));
      delivered_at.push_back(i);
      receipts.push_back(*std::move(verified));
      continue;
    }
    after[i] = RecordFailure(record, body, receipt.status(), status, now);
  }
  if (!delivered.empty()) {
    // Every acknowledged request of the batch in one transaction.
    absl::StatusOr<std::vector<bool>> marked =
        ctx_->store().outbox().MarkDeliveredBatch(delivered, now);
    for (size_t k = 0; k < delivered.size(); ++k) {
      const size_t i = delivered_at[k];
      if (!marked.ok()) {
        after[i] = marked.status();
        continue;
      }
      if (!(*marked)[k]) {
        // Delivered by another replica meanwhile: as it stands.
        after[i] = LoadRecord(ctx_->store(), bodies[i].id(), v1::OUTGOING);
        continue;
      }
      ctx_->metrics().RequestDelivered(peer_, now - FromProto(bodies[i].created_at()));
      LogEvent(LogLevel::kInfo, "request_delivered",
               {{"request_id", bodies[i].id()}, {"to", peer_}});
    }
    // One head per batch: gossiped once.
    witness_->MaybeCheckPeerHead(peer_, receipts.back().tree_head());
  }
  // Callers waiting for the attempt get the record as it stands now.
  for (size_t i : sent) {
    if (!after[i].ok()) {
      LogEvent(LogLevel::kError, "delivery_error",
               {{"request_id", bodies[i].id()}, {"error", after[i].status().ToString()}});
    }
    Resolve("r:" + bodies[i].id(), after[i]);
  }
  return after;
}

AuditFn DeliveryLane::AcknowledgedEntries(const v1::RequestBody& body, uint32_t attempt,
                                          const v1::Receipt& receipt,
                                          std::string receipt_sha256) const {
  const bool disagree =
      receipt.has_receiver_assessment() &&
      AssessmentsDiffer(body.requester_assessment(), receipt.receiver_assessment());
  std::string detail =
      absl::StrCat(peer_, " log entry ", receipt.received_entry_proof().leaf_index(), " of ",
                   receipt.received_entry_proof().tree_size());
  std::string disagreement;
  if (disagree) {
    disagreement = absl::StrCat(ctx_->party(), ": ",
                                AssessmentSummary(body.requester_assessment()), "; ", peer_,
                                ": ", AssessmentSummary(receipt.receiver_assessment()));
  }
  return [this, id = body.id(), attempt, detail = std::move(detail),
          hash = std::move(receipt_sha256),
          disagreement = std::move(disagreement)](AuditWriter& w) -> absl::Status {
    v1::AuditEntry tried = ctx_->Event(v1::DELIVERY_ATTEMPTED, "node", id, peer_);
    tried.set_detail(absl::StrCat("attempt ", attempt));
    COMITY_RETURN_IF_ERROR(w.Append(&tried).status());
    v1::AuditEntry result = ctx_->Event(v1::DELIVERY_ACKNOWLEDGED, "node", id, peer_);
    result.set_detail(detail);
    result.add_hashes(hash);
    COMITY_RETURN_IF_ERROR(w.Append(&result).status());
    if (disagreement.empty()) return absl::OkStatus();
    v1::AuditEntry d = ctx_->Event(v1::ASSESSMENT_DISAGREEMENT, "node", id, peer_);
    d.set_detail(disagreement);
    return w.Append(&d).status();
  };
}

absl::StatusOr<v1::RequestRecord> DeliveryLane::RecordFailure(
    const v1::RequestRecord& record, const v1::RequestBody& body,
    const absl::Status& answer, const absl::Status& status, absl::Time now) {
  const uint32_t attempt = record.delivery_attempts() + 1;
  const std::string error = StatusText(status);
  // The attempt and its outcome are logged in the same transaction.
  auto audit = [&](v1::AuditEventType outcome) {
    return [this, &body, attempt, outcome, &error](AuditWriter& w) -> absl::Status {
      v1::AuditEntry tried = ctx_->Event(v1::DELIVERY_ATTEMPTED, "node", body.id(), peer_);
      tried.set_detail(absl::StrCat("attempt ", attempt));
      COMITY_RETURN_IF_ERROR(w.Append(&tried).status());
      v1::AuditEntry result = ctx_->Event(outcome, "node", body.id(), peer_);
      result.set_detail(error);
      return w.Append(&result).status();
    };
  };
  absl::Status marked;
  if (!answer.ok() && IsPermanentRefusal(answer.code())) {
    // The peer refused these bytes for good: retrying cannot help.
    marked = ctx_->store().outbox().MarkRejected(body.id(), error, now,
                                                 audit(v1::DELIVERY_REFUSED));
    LogEvent(LogLevel::kWarning, "delivery_rejected",
             {{"request_id", body.id()}, {"to", peer_}, {"error", error}});
  } else {
    // Unreachable, or an answer that did not verify: try again later.
    marked = ctx_->store().outbox().MarkDeliveryFailed(
        body.id(), error, now, now + ctx_->Backoff(attempt), audit(v1::DELIVERY_FAILED));
  }
  LogEvent(LogLevel::kWarning, "delivery_failed",
           {{"request_id", body.id()},
            {"to", peer_},
            {"attempt", absl::StrCat(attempt)},
            {"error", error}});
  if (!marked.ok()) return marked;
  return LoadRecord(ctx_->store(), body.id(), v1::OUTGOING);
}

bool DeliveryLane::DeliverTransition(const PendingTransition& p) {
  absl::StatusOr<v1::SignedEnvelope> ack =
      ctx_->transport().DeliverTransition(peer_, p.envelope, ctx_->attempt_timeout());
  ctx_->NoteContact(peer_, ack.status());
  absl::Status st = ack.status();
  if (st.ok()) {
    // Delivered only with the peer's signed acknowledgement of these bytes.
    st = VerifyEnvelope(*ack, kAckPayloadType, ctx_->key_ring());
    v1::Acknowledgement a;
    if (st.ok() && (ack->signer_party() != peer_ || !a.ParseFromString(ack->payload()) ||
                    a.payload_sha256() != Sha256(p.envelope.payload()) ||
                    a.sequence() != p.sequence || a.request_id() != p.request_id)) {
      st = absl::DataLossError("the acknowledgement does not match the step sent");
    }
    // Dated between the step and now (what a proof of receipt must say).
    v1::Transition sent;
    if (st.ok()) st = CheckAckBounds(a);
    if (st.ok() && sent.ParseFromString(p.envelope.payload())) {
      st = CheckSignedTime("the acknowledgement",
                           absl::FromUnixMicros(a.received_at_unix_micros()), ctx_->Now(),
                           ctx_->setup().max_clock_skew(),
                           absl::FromUnixMicros(sent.time_unix_micros()));
    }
  }
  if (st.ok()) {
    absl::Status marked = ctx_->store().outbox().MarkTransitionDelivered(
        p.request_id, p.sequence, *ack, [&](AuditWriter& w) -> absl::Status {
          v1::AuditEntry e =
              ctx_->Event(v1::TRANSITION_DELIVERED, "node", p.request_id, peer_);
          e.add_hashes(Sha256(p.envelope.payload()));
          e.add_hashes(Sha256(ack->payload()));
          e.set_detail(absl::StrCat("step ", p.sequence));
          return w.Append(&e).status();
        });
    if (!marked.ok())
      LogEvent(LogLevel::kError, "store_error", {{"error", marked.ToString()}});
    return true;
  }
  const std::string error = StatusText(st);
  ctx_->store()
      .outbox()
      .MarkTransitionFailed(p.request_id, p.sequence, error,
                            ctx_->Now() + ctx_->Backoff(p.attempts + 1))
      .IgnoreError();
  if (absl::IsFailedPrecondition(st) && p.sequence > 1 &&
      absl::StrContains(st.message(), "does not follow the case")) {
    // The peer no longer holds steps it acknowledged (restored from a
    // backup, docs/backup.md): send the case again from its first step;
    // what it still holds it acknowledges again. (Its other
    // FAILED_PRECONDITION, a step outside its acceptance window, is not
    // helped by sending older steps.)
    auto rewound =
        ctx_->store().outbox().RewindTransitions(p.request_id, p.sequence, ctx_->Now());
    if (rewound.ok() && *rewound > 0) {
      LogEvent(LogLevel::kWarning, "transitions_rewound",
               {{"request_id", p.request_id},
                {"to", peer_},
                {"steps", absl::StrCat(*rewound)}});
    }
  }
  LogEvent(LogLevel::kWarning, "transition_delivery_failed",
           {{"request_id", p.request_id},
            {"step", absl::StrCat(p.sequence)},
            {"to", peer_},
            {"error", error}});
  return !absl::IsUnavailable(st) && !absl::IsDeadlineExceeded(st);
}

absl::StatusOr<bool> DeliveryLane::DeliverProposal(const PendingProposal& q) {
  absl::StatusOr<v1::SignedEnvelope> transition =
      ctx_->transport().ProposeTransition(q.peer, q.envelope, ctx_->attempt_timeout());
  ctx_->NoteContact(q.peer, transition.status());
  const absl::Status st = transition.status();
  const std::string key = "p:" + q.request_id;
  if (st.ok()) {
    // The peer numbered our proposal into the case: it is off the queue.
    // Apply the step now if it follows what is held here; if earlier steps
    // of the peer are still on their way, its outbox delivers this one after
    // them (applying twice is harmless).
    absl::StatusOr<v1::SignedEnvelope> applied =
        cases_->ReceiveTransition(q.peer, *transition);
    if (!applied.ok() && !absl::IsFailedPrecondition(applied.status())) {
      LogEvent(LogLevel::kWarning, "proposal_step_not_applied",
               {{"request_id", q.request_id},
                {"from", q.peer},
                {"error", applied.status().ToString()}});
    }
    COMITY_RETURN_IF_ERROR(ctx_->store().outbox().FinishProposal(q.id, ""));
    LogEvent(LogLevel::kInfo, "proposal_delivered",
             {{"request_id", q.request_id}, {"to", q.peer}});
    Resolve(key, Stored(*ctx_, key));
    return true;
  }
  const std::string error = StatusText(st);
  const bool transient = absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st) ||
                         absl::IsInternal(st) || absl::IsUnknown(st) ||
                         absl::IsAborted(st) || absl::IsUnauthenticated(st) ||
                         IsLaterThanReceiversClock(st);
  if (transient) {
    COMITY_RETURN_IF_ERROR(ctx_->store().outbox().MarkProposalFailed(
        q.id, error, ctx_->Now() + ctx_->Backoff(q.attempts + 1)));
    LogEvent(LogLevel::kWarning, "proposal_delivery_failed",
             {{"request_id", q.request_id}, {"to", q.peer}, {"error", error}});
    const bool reached = !absl::IsUnavailable(st) && !absl::IsDeadlineExceeded(st);
    if (reached) Resolve(key, Stored(*ctx_, key));
    return reached;
  }
  // Refused for good (the case moved on, an illegal step...): off the queue.
  COMITY_RETURN_IF_ERROR(ctx_->store().outbox().FinishProposal(
      q.id, error, [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry e =
            ctx_->Event(v1::PROPOSAL_REFUSED, "node", q.request_id, q.peer);
        e.add_hashes(Sha256(q.envelope.payload()));
        e.set_detail(error);
        return w.Append(&e).status();
      }));
  LogEvent(LogLevel::kWarning, "proposal_refused",
           {{"request_id", q.request_id}, {"to", q.peer}, {"error", error}});
  Resolve(key,
          absl::Status(st.code(),
                       absl::StrCat(q.peer, " refused the proposal: ", st.message())));
  return true;
}

void DeliveryLane::AddWaiter(const std::string& key, AttemptDone done,
                             absl::Duration give_up_at) {
  absl::MutexLock lock(&mu_);
  waiters_.emplace(key, Waiter{std::move(done), give_up_at});
}

void DeliveryLane::Resolve(const std::string& key,
                           const absl::StatusOr<v1::RequestRecord>& result) {
  std::vector<AttemptDone> ready;
  {
    absl::MutexLock lock(&mu_);
    auto range = waiters_.equal_range(key);
    for (auto it = range.first; it != range.second; ++it)
      ready.push_back(std::move(it->second.done));
    waiters_.erase(range.first, range.second);
  }
  for (AttemptDone& done : ready) done(result);
}

void DeliveryLane::ResolveStale(bool all) {
  std::vector<std::pair<std::string, AttemptDone>> ready;
  {
    absl::MutexLock lock(&mu_);
    const absl::Duration now = ctx_->MonotonicNow();
    const bool backing_off = now < retry_at_;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (all || backing_off || it->second.give_up_at <= now) {
        ready.emplace_back(it->first, std::move(it->second.done));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [key, done] : ready) {
    absl::StatusOr<v1::RequestRecord> stored = Stored(*ctx_, key);
    if (all && stored.ok() && key[0] == 'r' && stored->state() == v1::PENDING_DELIVERY) {
      done(
          absl::UnavailableError("node is shutting down; the request is stored and will "
                                 "be delivered after restart"));
    } else {
      done(std::move(stored));
    }
  }
}

// --- The lanes. ---

Outbox::Outbox(const NodeContext* ctx, CaseBook* cases, LogWitness* witness) : ctx_(ctx) {
  for (const auto& [peer, unused] : ctx->setup().peers) {
    lanes_.emplace(peer, std::make_unique<DeliveryLane>(ctx, peer, cases, witness));
  }
}

DeliveryLane* Outbox::lane(const std::string& peer) const {
  auto it = lanes_.find(peer);
  return it == lanes_.end() ? nullptr : it->second.get();
}

void Outbox::SetWaker(const std::string& peer, std::function<void()> wake) {
  wakers_[peer] = std::move(wake);
}

void Outbox::Start() {
  absl::MutexLock lock(&mu_);
  accepting_ = true;
}

void Outbox::Kick(const std::string& peer) const {
  if (DeliveryLane* l = lane(peer); l != nullptr) l->Nudge();
  auto it = wakers_.find(peer);
  if (it != wakers_.end() && it->second) it->second();
}

void Outbox::AwaitAttempt(const std::string& peer, const std::string& key,
                          AttemptDone done) {
  DeliveryLane* l = lane(peer);
  {
    absl::MutexLock lock(&mu_);
    if (l != nullptr && accepting_) {
      // Long enough for a round already under way and then this attempt.
      l->AddWaiter(key, std::move(done),
                   ctx_->MonotonicNow() + 2 * ctx_->attempt_timeout() + absl::Seconds(1));
      Kick(peer);
      return;
    }
  }
  // Not delivering now (stopped, or not started yet): the stored state.
  done(Stored(*ctx_, key));
}

void Outbox::Stop() {
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
  }
  for (auto& [peer, l] : lanes_) l->ResolveStale(/*all=*/true);
}

}  // namespace comity
