// What one delivery attempt does (docs/delivery.md): a batch of requests,
// a case step, a proposal; each answer verified and its outcome stored with
// its audit entries. When attempts are made, how many at once and the
// backoff are the lane's rounds (outbox.cc).
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
      const absl::Time next =
          NextDeadline(done, body, *verified, ctx_->config().service_levels());
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
    Resolve(key, LoadRecord(ctx_->store(), q.request_id, v1::OUTGOING));
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
    if (reached) Resolve(key, LoadRecord(ctx_->store(), q.request_id, v1::OUTGOING));
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

}  // namespace comity
