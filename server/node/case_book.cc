#include "server/node/case_book.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/audit/receipt.h"
#include "server/core/case_rules.h"
#include "server/core/envelope.h"
#include "server/core/peer_limits.h"
#include "server/crypto/sha256.h"
#include "server/node/case_records.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

absl::Status TooManySteps(const std::string& request_id) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "the case of request ", request_id, " holds ", PeerLimits::kMaxStepsPerCase,
      " steps, the most a case takes; open a new request (--related) to go on"));
}

// What a new step of the case of `row` depends on, checked again before
// this node signs it: the stored request, this node's receipt for it, and
// the last step (the one the new step chains onto). A stored copy changed
// since it was verified (a failing disk, an edit behind the node's back)
// would make the partner refuse the new step for good; DataLoss naming the
// damaged item instead, and nothing is signed.
absl::Status CheckStoredChain(const v1::RequestRecord& row, const std::string& request_id,
                              const KeyRing& keys) {
  auto damaged = [&](const std::string& item, const absl::Status& why) {
    return absl::DataLossError(absl::StrCat(
        "request ", request_id, ": the stored ", item, " does not verify (",
        why.message(),
        "): the stored copy was damaged, so this node signs nothing that depends on it; run "
        "`comity audit verify` and restore the database from a backup (docs/backup.md)"));
  };
  if (absl::Status st = VerifyEnvelope(row.request(), kRequestPayloadType, keys); !st.ok()) {
    return damaged("request", st);
  }
  if (row.direction() == v1::INCOMING && row.has_receipt()) {
    if (absl::Status st = VerifyReceiptAuthentic(row.receipt(), keys); !st.ok()) {
      return damaged("receipt", st);
    }
  }
  if (row.transitions_size() > 0) {
    if (absl::Status st = VerifyEnvelope(row.transitions(row.transitions_size() - 1),
                                         kTransitionPayloadType, keys);
        !st.ok()) {
      return damaged(absl::StrCat("step ", row.transitions_size()), st);
    }
  }
  return absl::OkStatus();
}

// Whether `t`, a step of `proposer` numbered by the other party, carries
// `proposer`'s signed proposal for exactly this step (action, request,
// text, conditions).
bool CarriesMatchingProposal(const v1::Transition& t, const std::string& proposer,
                             const KeyRing& keys) {
  v1::TransitionProposal p;
  return t.party() == proposer && t.has_proposal() &&
         t.proposal().signer_party() == proposer &&
         VerifyEnvelope(t.proposal(), kProposalPayloadType, keys).ok() &&
         p.ParseFromString(t.proposal().payload()) && p.action() == t.action() &&
         p.request_id() == t.request_id() && p.text() == t.text() &&
         std::equal(p.accepted_conditions().begin(), p.accepted_conditions().end(),
                    t.accepted_conditions().begin(), t.accepted_conditions().end());
}

// The request `peer` sent to this node among `records`, with its body and
// this node's receipt; false if there is none.
struct ReceivedRow {
  const v1::RequestRecord* row = nullptr;
  v1::RequestBody body;
  v1::Receipt receipt;
};
bool FindReceived(const std::vector<v1::RequestRecord>& records, const std::string& peer,
                  ReceivedRow* out) {
  out->row = RowOf(records, v1::INCOMING);
  return out->row != nullptr && out->body.ParseFromString(out->row->request().payload()) &&
         out->body.requesting_party() == peer &&
         ParseReceipt(out->row->receipt(), &out->receipt);
}

}  // namespace


absl::StatusOr<CaseBook::Acted> CaseBook::Act(const CertIdentity& op,
                                              const std::string& request_id,
                                              const Decision& d) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          LoadRecords(ctx_->store(), request_id));
  if (RowOf(records, v1::INCOMING) != nullptr) {
    if (!op.HasRole("reviewer")) {
      return absl::PermissionDeniedError(absl::StrCat(
          "operator ", op.operator_name,
          " lacks the reviewer role needed to decide on a received request"));
    }
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord record,
                            Decide(op.operator_name, request_id, d));
    return Acted{std::move(record), ""};
  }
  if (!op.HasRole("submitter")) {
    return absl::PermissionDeniedError(
        absl::StrCat("operator ", op.operator_name,
                     " lacks the submitter role needed to act on a sent request"));
  }
  COMITY_ASSIGN_OR_RETURN(v1::RequestRecord record,
                          Propose(op.operator_name, request_id, d));
  COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(record));
  return Acted{std::move(record), body.requested_party()};
}

absl::StatusOr<v1::RequestRecord> CaseBook::Decide(const std::string& operator_name,
                                                   const std::string& request_id,
                                                   const Decision& d) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          LoadRecords(ctx_->store(), request_id));
  const v1::RequestRecord* row = RowOf(records, v1::INCOMING);
  if (row == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id,
        " was sent by this node: only the requested party decides on a request"));
  }
  if (!IsRequestedAction(d.action)) {
    return absl::FailedPreconditionError(
        absl::StrCat("only the requesting party can ", v1::CaseAction_Name(d.action)));
  }
  v1::RequestBody body;
  v1::Receipt receipt;
  if (!body.ParseFromString(row->request().payload()) ||
      !ParseReceipt(row->receipt(), &receipt)) {
    return absl::DataLossError("the stored request or receipt does not parse");
  }
  std::vector<std::string> duties;
  switch (d.action) {
    case v1::REFUSE:
      COMITY_RETURN_IF_ERROR(CheckRefusal(receipt.receiver_assessment(),
                                          body.assistance_type(), d.refusal_grounds,
                                          d.reasons, &duties));
      break;
    case v1::REQUEST_INFO:
    case v1::POSTPONE:
    case v1::RESPOND:
      if (d.text.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            v1::CaseAction_Name(d.action), " needs --text (",
            d.action == v1::RESPOND    ? "the response"
            : d.action == v1::POSTPONE ? "why, and until when (ETS185 Art 27(5))"
                                       : "what information is needed",
            ")"));
      }
      break;
    default:
      break;
  }
  if (d.action != v1::REFUSE && !d.refusal_grounds.empty()) {
    return absl::InvalidArgumentError("refusal grounds go only with REFUSE");
  }
  if (d.action != v1::RESPOND &&
      (!d.evidence_sha256.empty() || !d.release_conditions.empty())) {
    return absl::InvalidArgumentError(
        "evidence files and release conditions go only with RESPOND");
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::EvidenceFile> evidence,
                          staged_->Staged(request_id, d.evidence_sha256));
  COMITY_RETURN_IF_ERROR(AppendStep(*row, body, receipt, d, ctx_->party(), operator_name,
                                    duties, nullptr, evidence)
                             .status());
  return LoadRecord(ctx_->store(), request_id, v1::INCOMING);
}

absl::StatusOr<v1::SignedEnvelope> CaseBook::AppendStep(
    const v1::RequestRecord& row, const v1::RequestBody& body, const v1::Receipt& receipt,
    const Decision& d, const std::string& decided_by, const std::string& operator_name,
    const std::vector<std::string>& duties, const v1::SignedEnvelope* proposal,
    const std::vector<v1::EvidenceFile>& evidence) {
  COMITY_RETURN_IF_ERROR(CheckStoredChain(row, body.id(), ctx_->key_ring()));
  auto next = NextCaseState(row.case_state(), d.action, d.final_response);
  if (!next.ok()) {
    // In the operator's words: the verbs this party may use now.
    return absl::FailedPreconditionError(absl::StrCat(
        VerbOf(d.action), " (", v1::CaseAction_Name(d.action), ") is not allowed in state ",
        v1::CaseState_Name(row.case_state()), "; ",
        AllowedStepsMessage(row.case_state(), /*requesting_party=*/decided_by != ctx_->party())));
  }
  const v1::CaseState to = *next;
  // Steps never go back in time, even on a clock stepped back since the
  // last one (the partner checks, core/peer_limits.h).
  const absl::Time now = std::max(ctx_->Now(), LastStepTime(row));
  v1::Transition t;
  t.set_request_id(body.id());
  t.set_sequence(static_cast<uint32_t>(row.transitions_size()) + 1);
  t.set_previous_sha256(ChainHead(row));
  t.set_action(d.action);
  t.set_from_state(row.case_state());
  t.set_to_state(to);
  t.set_party(decided_by);
  t.set_operator_name(operator_name);
  t.set_time_unix_micros(absl::ToUnixMicros(now));
  for (v1::RefusalGround g : d.refusal_grounds) t.add_refusal_grounds(g);
  t.set_reasons(d.reasons);
  t.set_consultation(d.consultation);
  t.set_text(d.text);
  t.set_final_response(d.final_response);
  for (const auto& duty : duties) t.add_open_duties(duty);
  if (proposal != nullptr) *t.mutable_proposal() = *proposal;
  for (const v1::EvidenceFile& f : evidence) *t.add_evidence() = f;
  for (const std::string& c : d.release_conditions) t.add_release_conditions(c);
  for (const std::string& c : d.accepted_conditions) t.add_accepted_conditions(c);
  // What this node signs, its partner must accept: the same bounds.
  if (row.transitions_size() >= PeerLimits::kMaxStepsPerCase) return TooManySteps(body.id());
  COMITY_RETURN_IF_ERROR(CheckTransitionBounds(t));
  COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope env, ctx_->Sign(kTransitionPayloadType, t));
  const std::string actor =
      decided_by == ctx_->party()
          ? "operator:" + operator_name
          : absl::StrCat("peer:", decided_by, " (", operator_name, ")");
  COMITY_RETURN_IF_ERROR(ctx_->store().cases().AppendTransition(
      body.id(), v1::INCOMING, t, env, /*outbound=*/true, now,
      NextDeadlineAfter(row, t, env, ctx_->config().service_levels()),
      [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry e =
            ctx_->Event(decided_by == ctx_->party() ? v1::CASE_DECIDED : v1::CASE_UPDATED,
                        actor, body.id(), body.requesting_party());
        e.add_hashes(Sha256(env.payload()));
        if (proposal != nullptr) e.add_hashes(Sha256(proposal->payload()));
        e.set_assistance_type(body.assistance_type());
        e.set_instrument(receipt.receiver_assessment().instrument());
        e.set_obligation(receipt.receiver_assessment().obligation());
        for (v1::RefusalGround g : d.refusal_grounds) e.add_refusal_grounds(g);
        e.set_case_action(d.action);
        e.set_case_state(to);
        e.set_detail(absl::StrCat(t.sequence(), ": ", v1::CaseAction_Name(d.action),
                                  " -> ", v1::CaseState_Name(to),
                                  duties.empty() ? "" : "; open duty: " + duties[0]));
        return w.Append(&e).status();
      }));
  LogEvent(LogLevel::kInfo, "case_decided",
           {{"request_id", body.id()},
            {"action", v1::CaseAction_Name(d.action)},
            {"state", v1::CaseState_Name(to)},
            {"by", actor}});
  step_queued_(body.requesting_party());
  return env;
}

absl::StatusOr<v1::RequestRecord> CaseBook::Propose(const std::string& operator_name,
                                                    const std::string& request_id,
                                                    const Decision& d) {
  COMITY_ASSIGN_OR_RETURN(v1::RequestRecord row,
                          LoadRecord(ctx_->store(), request_id, v1::OUTGOING));
  if (!IsRequesterAction(d.action)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id, " was sent by this node: only the requested party can ",
        v1::CaseAction_Name(d.action)));
  }
  if (row.case_state() == v1::CASE_STATE_UNSPECIFIED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id, " has not been delivered yet (",
        v1::RequestState_Name(row.state()), "); a case starts with its receipt"));
  }
  if (!NextCaseState(row.case_state(), d.action, false).ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        VerbOf(d.action), " (", v1::CaseAction_Name(d.action), ") is not allowed in state ",
        v1::CaseState_Name(row.case_state()), "; ",
        AllowedStepsMessage(row.case_state(), /*requesting_party=*/true)));
  }
  if (d.action == v1::PROVIDE_INFO && d.text.empty()) {
    return absl::InvalidArgumentError(
        "PROVIDE_INFO needs --text (the information asked for)");
  }
  std::vector<std::string> accepting;
  if (d.action == v1::ACCEPT_CONDITIONS) {
    accepting = PendingConditions(row.transitions());
    if (accepting.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "request ", request_id, " has no release conditions waiting for acceptance"));
    }
  }
  COMITY_RETURN_IF_ERROR(CheckStoredChain(row, request_id, ctx_->key_ring()));
  COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(row));
  v1::TransitionProposal p;
  p.set_request_id(request_id);
  p.set_action(d.action);
  p.set_party(ctx_->party());
  p.set_operator_name(operator_name);
  // Dated no earlier than the step it follows, as this node's own steps are
  // (AppendStep): the peer refuses for good a proposal dated before the last
  // step it holds, and a clock set back must not make it do so.
  p.set_time_unix_micros(absl::ToUnixMicros(std::max(ctx_->Now(), LastStepTime(row))));
  p.set_text(d.text);
  p.set_based_on_sequence(static_cast<uint32_t>(row.transitions_size()));
  for (const std::string& c : accepting) p.add_accepted_conditions(c);
  COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope env, ctx_->Sign(kProposalPayloadType, p));
  const std::string& peer = body.requested_party();
  COMITY_RETURN_IF_ERROR(
      ctx_->store()
          .outbox()
          .EnqueueProposal(request_id, peer, env, ctx_->Now(),
                           [&](AuditWriter& w) -> absl::Status {
                             v1::AuditEntry e = ctx_->Event(v1::PROPOSAL_QUEUED,
                                                            "operator:" + operator_name,
                                                            request_id, peer);
                             e.add_hashes(Sha256(env.payload()));
                             e.set_assistance_type(body.assistance_type());
                             e.set_detail(v1::CaseAction_Name(d.action));
                             return w.Append(&e).status();
                           })
          .status());
  LogEvent(LogLevel::kInfo, "proposal_queued",
           {{"request_id", request_id},
            {"to", peer},
            {"action", v1::CaseAction_Name(d.action)}});
  step_queued_(peer);
  return LoadRecord(ctx_->store(), request_id, v1::OUTGOING);
}

absl::StatusOr<v1::SignedEnvelope> CaseBook::SequenceProposal(
    const std::string& peer_party, const v1::SignedEnvelope& envelope) {
  if (envelope.signer_party() != peer_party) {
    return absl::PermissionDeniedError(absl::StrCat(
        "proposal is signed as party '", envelope.signer_party().substr(0, 8),
        "' but the TLS peer is ", peer_party));
  }
  COMITY_RETURN_IF_ERROR(
      VerifyEnvelope(envelope, kProposalPayloadType, ctx_->key_ring(),
                     ArrivingNow(ctx_->Now(), ctx_->setup().replay_window())));
  v1::TransitionProposal p;
  if (!p.ParseFromString(envelope.payload()) || p.party() != peer_party) {
    return absl::InvalidArgumentError(
        "not a comity.v1.TransitionProposal of the TLS peer");
  }
  COMITY_RETURN_IF_ERROR(CheckProposalBounds(p));
  if (!IsRequesterAction(p.action())) {
    return absl::InvalidArgumentError(
        absl::StrCat("the requesting party cannot ", v1::CaseAction_Name(p.action())));
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          ctx_->store().requests().Get(p.request_id()));
  ReceivedRow received;
  if (!FindReceived(records, peer_party, &received)) {
    return absl::PermissionDeniedError(
        absl::StrCat("request ", p.request_id().substr(0, 64), " is not a request ",
                     peer_party, " sent to this node"));
  }
  const v1::RequestRecord* row = received.row;
  const v1::RequestBody& body = received.body;
  const v1::Receipt& receipt = received.receipt;
  // The same proposal again: the step it became.
  for (const v1::SignedEnvelope& existing : row->transitions()) {
    v1::Transition t;
    if (t.ParseFromString(existing.payload()) && t.has_proposal() &&
        t.proposal().payload() == envelope.payload()) {
      return existing;
    }
  }
  COMITY_RETURN_IF_ERROR(CheckSignedTime("the proposal",
                                         absl::FromUnixMicros(p.time_unix_micros()),
                                         ctx_->Now(), ctx_->setup().max_clock_skew(),
                                         LastStepTime(*row)));
  Decision d;
  d.action = p.action();
  d.text = p.text();
  if (p.action() == v1::ACCEPT_CONDITIONS) {
    std::vector<std::string> pending = PendingConditions(row->transitions());
    if (p.accepted_conditions().empty()) {
      return absl::InvalidArgumentError("ACCEPT_CONDITIONS names no conditions");
    }
    for (const std::string& c : p.accepted_conditions()) {
      if (std::find(pending.begin(), pending.end(), c) == pending.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "condition '", c.substr(0, 200),
            "' is not a pending release condition of request ", p.request_id()));
      }
      d.accepted_conditions.push_back(c);
    }
  }
  return AppendStep(*row, body, receipt, d, peer_party, p.operator_name(), {}, &envelope,
                    {});
}

absl::StatusOr<v1::SignedEnvelope> CaseBook::ReceiveTransition(
    const std::string& peer_party, const v1::SignedEnvelope& envelope, absl::string_view note) {
  if (envelope.signer_party() != peer_party) {
    return absl::PermissionDeniedError(absl::StrCat(
        "transition is signed as party '", envelope.signer_party().substr(0, 8),
        "' but the TLS peer is ", peer_party));
  }
  COMITY_RETURN_IF_ERROR(
      VerifyEnvelope(envelope, kTransitionPayloadType, ctx_->key_ring(),
                     ArrivingNow(ctx_->Now(), ctx_->setup().replay_window())));
  v1::Transition t;
  if (!t.ParseFromString(envelope.payload())) {
    return absl::InvalidArgumentError("transition payload is not a comity.v1.Transition");
  }
  COMITY_RETURN_IF_ERROR(CheckTransitionBounds(t));
  if (t.party() != peer_party) {
    // A step of ours, numbered by the peer: it must carry our own signed
    // proposal for exactly this action.
    if (!CarriesMatchingProposal(t, ctx_->party(), ctx_->key_ring())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "transition names party '", t.party().substr(0, 8), "' but is signed by ",
          peer_party, " without that party's matching signed proposal"));
    }
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          ctx_->store().requests().Get(t.request_id()));
  const v1::RequestRecord* row = RowOf(records, v1::OUTGOING);
  v1::RequestBody body;
  if (row == nullptr || !body.ParseFromString(row->request().payload()) ||
      body.requested_party() != peer_party) {
    return absl::PermissionDeniedError(
        absl::StrCat("request ", t.request_id().substr(0, 64),
                     " is not a request this node sent to ", peer_party));
  }
  // The receipt of this step: what the sender keeps as proof.
  auto acknowledge = [&]() -> absl::StatusOr<v1::SignedEnvelope> {
    v1::Acknowledgement ack;
    ack.set_request_id(t.request_id());
    ack.set_sequence(t.sequence());
    ack.set_payload_sha256(Sha256(envelope.payload()));
    ack.set_party(ctx_->party());
    ack.set_received_at_unix_micros(absl::ToUnixMicros(ctx_->Now()));
    return ctx_->Sign(kAckPayloadType, ack);
  };
  // Already applied: the same bytes are fine, other bytes are a conflict.
  if (t.sequence() >= 1 && static_cast<int>(t.sequence()) <= row->transitions_size()) {
    if (row->transitions(static_cast<int>(t.sequence()) - 1).payload() ==
        envelope.payload()) {
      return acknowledge();
    }
    return absl::AlreadyExistsError(
        absl::StrCat("step ", t.sequence(), " of request ", t.request_id(),
                     " was already received with other content"));
  }
  if (static_cast<int>(t.sequence()) != row->transitions_size() + 1 ||
      t.previous_sha256() != ChainHead(*row) || t.from_state() != row->case_state()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "step ", t.sequence(), " does not follow the case as held here (step ",
        row->transitions_size(), ", state ", v1::CaseState_Name(row->case_state()),
        "); deliver the earlier steps first"));
  }
  if (row->transitions_size() >= PeerLimits::kMaxStepsPerCase) {
    return TooManySteps(t.request_id());
  }
  COMITY_RETURN_IF_ERROR(CheckSignedTime(absl::StrCat("step ", t.sequence()),
                                         absl::FromUnixMicros(t.time_unix_micros()),
                                         ctx_->Now(), ctx_->setup().max_clock_skew(),
                                         LastStepTime(*row)));
  auto legal = NextCaseState(t.from_state(), t.action(), t.final_response());
  if (!legal.ok() || *legal != t.to_state()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "illegal step: ", legal.ok()
                              ? absl::StrCat(v1::CaseAction_Name(t.action()),
                                             " leads to ", v1::CaseState_Name(*legal),
                                             ", not ", v1::CaseState_Name(t.to_state()))
                              : std::string(legal.status().message())));
  }
  absl::Status appended = ctx_->store().cases().AppendTransition(
      t.request_id(), v1::OUTGOING, t, envelope, /*outbound=*/false, ctx_->Now(),
      NextDeadlineAfter(*row, t, envelope, ctx_->config().service_levels()),
      [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry e = ctx_->Event(v1::CASE_UPDATED, "peer:" + peer_party,
                                       t.request_id(), peer_party);
        e.add_hashes(Sha256(envelope.payload()));
        e.set_assistance_type(body.assistance_type());
        for (int g : t.refusal_grounds()) {
          e.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
        }
        e.set_case_action(t.action());
        e.set_case_state(t.to_state());
        e.set_detail(absl::StrCat(t.sequence(), ": ", v1::CaseAction_Name(t.action()),
                                  " -> ", v1::CaseState_Name(t.to_state()),
                                  note.empty() ? "" : "; ", note));
        return w.Append(&e).status();
      });
  if (absl::IsFailedPrecondition(appended)) {
    // The same step can arrive twice at once (in the answer to this node's
    // proposal and from the peer's outbox): the call that came second
    // finds it stored when it writes. The same bytes are acknowledged,
    // as above; anything else stands refused.
    COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> now,
                            ctx_->store().requests().Get(t.request_id()));
    const v1::RequestRecord* stored = RowOf(now, v1::OUTGOING);
    if (stored != nullptr && static_cast<int>(t.sequence()) <= stored->transitions_size() &&
        stored->transitions(static_cast<int>(t.sequence()) - 1).payload() ==
            envelope.payload()) {
      return acknowledge();
    }
  }
  COMITY_RETURN_IF_ERROR(appended);
  if (t.evidence_size() > 0 || t.accepted_conditions_size() > 0)
    evidence_listed_(peer_party);
  LogEvent(LogLevel::kInfo, "case_updated",
           {{"request_id", t.request_id()},
            {"from", peer_party},
            {"action", v1::CaseAction_Name(t.action())},
            {"state", v1::CaseState_Name(t.to_state())}});
  return acknowledge();
}

absl::StatusOr<bool> CaseBook::RestoreStep(const std::string& peer_party,
                                           const v1::SignedEnvelope& envelope,
                                           absl::string_view note) {
  // Signed by this node, at any time: what it signed stays signed.
  if (envelope.signer_party() != ctx_->party()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "a step of a case ", peer_party, " requested must be signed by ", ctx_->party(),
        ", not '", envelope.signer_party().substr(0, 8), "'"));
  }
  COMITY_RETURN_IF_ERROR(VerifyEnvelope(envelope, kTransitionPayloadType, ctx_->key_ring()));
  v1::Transition t;
  if (!t.ParseFromString(envelope.payload())) {
    return absl::InvalidArgumentError("transition payload is not a comity.v1.Transition");
  }
  COMITY_RETURN_IF_ERROR(CheckTransitionBounds(t));
  if (t.party() != ctx_->party()) {
    // The peer's step, numbered here: it carries the peer's signed proposal.
    if (!CarriesMatchingProposal(t, peer_party, ctx_->key_ring())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "step ", t.sequence(), " names party '", t.party().substr(0, 8),
          "' without that party's matching signed proposal"));
    }
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                          ctx_->store().requests().Get(t.request_id()));
  ReceivedRow received;
  if (!FindReceived(records, peer_party, &received)) {
    return absl::FailedPreconditionError(
        absl::StrCat("request ", t.request_id().substr(0, 64), " is not a request ",
                     peer_party, " sent to this node"));
  }
  const v1::RequestRecord* row = received.row;
  const v1::RequestBody& body = received.body;
  const v1::Receipt& receipt = received.receipt;
  if (t.sequence() >= 1 && static_cast<int>(t.sequence()) <= row->transitions_size()) {
    if (row->transitions(static_cast<int>(t.sequence()) - 1).payload() ==
        envelope.payload()) {
      return false;
    }
    return absl::AlreadyExistsError(absl::StrCat(
        "this node holds another step ", t.sequence(), " of request ", t.request_id(),
        " than the one ", peer_party, " holds signed by it"));
  }
  if (static_cast<int>(t.sequence()) != row->transitions_size() + 1 ||
      t.previous_sha256() != ChainHead(*row) || t.from_state() != row->case_state()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "step ", t.sequence(), " does not follow the case as held here (step ",
        row->transitions_size(), ", state ", v1::CaseState_Name(row->case_state()), ")"));
  }
  if (row->transitions_size() >= PeerLimits::kMaxStepsPerCase) {
    return TooManySteps(t.request_id());
  }
  auto legal = NextCaseState(t.from_state(), t.action(), t.final_response());
  if (!legal.ok() || *legal != t.to_state()) {
    return absl::InvalidArgumentError(
        absl::StrCat("step ", t.sequence(), " of request ", t.request_id(),
                     " is not a legal step from ", v1::CaseState_Name(t.from_state())));
  }
  const bool ours = t.party() == ctx_->party();
  const std::string actor =
      ours ? "operator:" + t.operator_name()
           : absl::StrCat("peer:", peer_party, " (", t.operator_name(), ")");
  // Queued again: the peer acknowledges the same bytes again, and this
  // node holds its acknowledgement once more.
  COMITY_RETURN_IF_ERROR(ctx_->store().cases().AppendTransition(
      t.request_id(), v1::INCOMING, t, envelope, /*outbound=*/true, ctx_->Now(),
      NextDeadlineAfter(*row, t, envelope, ctx_->config().service_levels()),
      [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry e = ctx_->Event(ours ? v1::CASE_DECIDED : v1::CASE_UPDATED, actor,
                                       t.request_id(), peer_party);
        e.add_hashes(Sha256(envelope.payload()));
        if (!ours) e.add_hashes(Sha256(t.proposal().payload()));
        e.set_assistance_type(body.assistance_type());
        e.set_instrument(receipt.receiver_assessment().instrument());
        e.set_obligation(receipt.receiver_assessment().obligation());
        for (int g : t.refusal_grounds()) {
          e.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
        }
        e.set_case_action(t.action());
        e.set_case_state(t.to_state());
        e.set_detail(absl::StrCat(t.sequence(), ": ", v1::CaseAction_Name(t.action()), " -> ",
                                  v1::CaseState_Name(t.to_state()),
                                  note.empty() ? "" : "; ", note));
        return w.Append(&e).status();
      }));
  LogEvent(LogLevel::kInfo, "case_step_restored",
           {{"request_id", t.request_id()},
            {"sequence", absl::StrCat(t.sequence())},
            {"action", v1::CaseAction_Name(t.action())},
            {"from", peer_party}});
  step_queued_(peer_party);
  return true;
}

}  // namespace comity
