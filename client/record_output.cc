#include "client/record_output.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/time_util.h"
#include "server/audit/receipt.h"
#include "server/core/envelope.h"
#include "server/util/hex.h"

namespace comity {
namespace {

std::string AssessmentLine(const v1::Assessment& a) {
  std::string grounds;
  for (int g : a.refusal_grounds()) {
    absl::StrAppend(&grounds, grounds.empty() ? "" : ",",
                    v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)));
  }
  return absl::StrCat(v1::Obligation_Name(a.obligation()),
                      a.instrument().empty() ? "" : " under " + a.instrument(),
                      a.basis().empty() ? "" : " (" + absl::StrJoin(a.basis(), "; ") + ")",
                      grounds.empty() ? "" : "; open grounds " + grounds,
                      a.deadline_days() ? absl::StrCat("; ", a.deadline_days(), " days") : "",
                      a.deadline_hours() ? absl::StrCat(" (", a.deadline_hours(), " hours if an emergency)") : "",
                      a.channel() != v1::CHANNEL_UNSPECIFIED
                          ? absl::StrCat("; send via ", v1::Channel_Name(a.channel()),
                                         a.channel_basis().empty() ? "" : " (" + a.channel_basis() + ")",
                                         a.authority().empty() ? "" : " to " + a.authority())
                          : "",
                      "; library ", a.library_version().substr(0, 12));
}

bool Agree(const v1::Assessment& a, const v1::Assessment& b) {
  return a.obligation() == b.obligation() && a.instrument() == b.instrument();
}

}  // namespace

std::string FormatTimestamp(const google::protobuf::Timestamp& ts) {
  return google::protobuf::util::TimeUtil::ToString(ts);
}

RecordVerification VerifyRecord(
    const v1::RequestRecord& r, const v1::RequestBody& body,
    const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys) {
  KeyRing ring;
  for (const v1::PublicKey& k : keys) {
    ring.Add(k.party(), k.key_id(), k.ed25519_public_key()).IgnoreError();
  }
  RecordVerification v;
  v.signature = VerifyEnvelope(r.request(), kRequestPayloadType, ring);
  v.has_receipt = r.has_receipt();
  if (v.has_receipt) {
    auto receipt = VerifyReceipt(r.request(), r.receipt(), body.requested_party(), ring);
    v.receipt = receipt.status();
    if (receipt.ok()) v.parsed_receipt = *std::move(receipt);
  }
  return v;
}

void PrintAssessments(std::ostream& out, const v1::RequestBody& body,
                      const RecordVerification& v) {
  if (body.has_requester_assessment()) {
    out << "assessment " << body.requesting_party() << ": "
        << AssessmentLine(body.requester_assessment()) << "\n";
  }
  if (v.has_receipt && v.receipt.ok() && v.parsed_receipt.has_receiver_assessment()) {
    const v1::Assessment& r = v.parsed_receipt.receiver_assessment();
    out << "assessment " << body.requested_party() << ": " << AssessmentLine(r) << "\n";
    if (body.has_requester_assessment() && !Agree(body.requester_assessment(), r)) {
      out << "DISAGREEMENT: " << body.requesting_party() << " and " << body.requested_party()
          << " assess this request differently; compare their treaty libraries and "
             "reasoning (comity show --json)\n";
    }
  }
}

void PrintCase(std::ostream& out, const v1::RequestRecord& r, const CaseView& view) {
  if (r.case_state() == v1::CASE_STATE_UNSPECIFIED) return;
  out << "case:      " << v1::CaseState_Name(r.case_state()) << "\n";
  for (const StepView& step : view.steps) {
    const v1::Transition& t = step.transition;
    out << "  " << t.sequence() << ". " << v1::CaseAction_Name(t.action()) << " -> "
        << v1::CaseState_Name(t.to_state()) << " by " << t.party() << " ("
        << t.operator_name() << ") " << FormatMicros(t.time_unix_micros())
        << (step.signature.ok() ? ", signature verified"
                                : ", signature FAILED: " + step.signature.ToString())
        << "\n";
    std::vector<std::string> grounds;
    for (int g : t.refusal_grounds()) {
      grounds.push_back(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)));
    }
    if (!grounds.empty()) out << "     grounds: " << absl::StrJoin(grounds, ", ") << "\n";
    if (!t.reasons().empty()) out << "     reasons: " << t.reasons() << "\n";
    if (!t.consultation().empty()) out << "     consultation: " << t.consultation() << "\n";
    if (!t.text().empty()) out << "     " << t.text() << "\n";
    for (const auto& d : t.open_duties()) out << "     open duty: " << d << "\n";
    for (const ConditionView& c : view.conditions) {
      if (c.step != t.sequence()) continue;
      out << "     condition: " << c.text << " ("
          << (c.accepted ? absl::StrCat("accepted in step ", c.accepted_in_step)
                         : std::string("PENDING: not accepted yet"))
          << ")\n";
    }
    for (const auto& c : t.accepted_conditions()) out << "     accepted: " << c << "\n";
  }
  for (const v1::TransitionProposal& p : view.queued) {
    out << "  queued: " << v1::CaseAction_Name(p.action()) << " by " << p.operator_name()
        << ", signed, waiting for delivery to the requested party\n";
  }
}

void PrintPendingConditions(std::ostream& out, const v1::RequestRecord& r,
                            const v1::RequestBody& body, const CaseView& view) {
  const std::vector<std::string> pending = view.PendingConditionTexts();
  if (pending.empty()) return;
  std::vector<std::string> held;
  for (const EvidenceView& e : view.evidence) {
    if (!e.pending_conditions.empty()) held.push_back(e.file.name());
  }
  const bool requester = r.direction() == v1::OUTGOING;
  out << "CONDITIONS PENDING (ETS185 Art 28(2)): " << body.requested_party()
      << " releases " << (held.empty() ? std::string("its evidence")
                                       : absl::StrCat("the evidence (", absl::StrJoin(held, ", "),
                                                      ")"))
      << " only once " << body.requesting_party() << " accepts:\n";
  for (const ConditionView& c : view.conditions) {
    if (!c.accepted) {
      out << "  - " << c.text << " (step " << c.step << ")"
          << (c.acceptance_queued ? ": acceptance signed, queued for delivery" : "") << "\n";
    }
  }
  if (requester) {
    out << "  to accept them: comity accept-conditions " << body.id() << "\n";
  } else {
    out << "  waiting for " << body.requesting_party() << " to accept them\n";
  }
}

void PrintEvidence(std::ostream& out, const CaseView& view) {
  for (const EvidenceView& e : view.evidence) {
    std::string where;
    switch (e.state) {
      case EvidenceState::kReleased:
        where = "released by this node";
        break;
      case EvidenceState::kHeldBack:
        where = "held back by this node until the conditions above are accepted";
        break;
      case EvidenceState::kVerified:
        where = "verified, " + e.path;
        break;
      case EvidenceState::kAwaitingConditions:
        where = "not here: held back by the responding party until the conditions above are "
                "accepted";
        break;
      case EvidenceState::kGivenUp:
        where = absl::StrCat("NOT FETCHED: ", e.last_error);
        break;
      case EvidenceState::kFetching:
        where = e.attempts > 0
                    ? absl::StrCat("not here yet: ", e.attempts,
                                   " failed fetch attempts, last: ", e.last_error,
                                   e.next_attempt_unix_micros == 0
                                       ? ""
                                       : "; next try " + FormatMicros(e.next_attempt_unix_micros))
                    : "not here yet (fetched and verified in the background)";
        break;
    }
    out << "evidence:  " << e.file.name() << ", " << e.file.size() << " bytes, sha256 "
        << HexEncode(e.file.sha256()).substr(0, 16) << "...: " << where << "\n";
  }
}

JsonValue RecordSummaryJson(const v1::RequestRecord& r, const v1::RequestBody& body) {
  JsonValue f = JsonValue::Object();
  f.Set("id", body.id());
  f.Set("direction", DirectionName(r.direction()));
  f.Set("state", v1::RequestState_Name(r.state()));
  f.Set("requesting_party", body.requesting_party());
  f.Set("requested_party", body.requested_party());
  f.Set("assistance_type", v1::AssistanceType_Name(body.assistance_type()));
  f.Set("offence", v1::OffenceCategory_Name(body.offence().category()));
  f.Set("urgency", v1::Urgency_Name(body.urgency()));
  f.Set("created_at", FormatTimestamp(body.created_at()));
  f.Set("stored_at", FormatTimestamp(r.stored_at()));
  f.Set("updated_at", FormatTimestamp(r.updated_at()));
  f.Set("delivery_attempts", r.delivery_attempts());
  if (!r.last_error().empty()) f.Set("last_error", r.last_error());
  if (r.case_state() != v1::CASE_STATE_UNSPECIFIED) {
    f.Set("case_state", v1::CaseState_Name(r.case_state()));
  }
  if (r.has_next_attempt_at()) f.Set("next_attempt_at", FormatTimestamp(r.next_attempt_at()));
  if (!r.submitted_by().empty()) f.Set("submitted_by", r.submitted_by());
  if (body.has_requester_assessment()) {
    f.Set("obligation", v1::Obligation_Name(body.requester_assessment().obligation()));
    f.Set("instrument", body.requester_assessment().instrument());
  }
  return f;
}

JsonValue VerificationJson(const v1::RequestRecord& r, const RecordVerification& v) {
  JsonValue f = JsonValue::Object();
  JsonValue sig = JsonValue::Object();
  sig.Set("signer_party", r.request().signer_party());
  sig.Set("key_id", r.request().key_id());
  sig.Set("verified", v.signature.ok());
  if (!v.signature.ok()) sig.Set("error", v.signature.ToString());
  f.Set("signature", std::move(sig));
  if (!v.has_receipt) {
    f.Set("receipt", nullptr);
    return f;
  }
  JsonValue rc = JsonValue::Object();
  rc.Set("signer_party", r.receipt().signer_party());
  rc.Set("key_id", ReceiptKeyId(r.receipt()));
  rc.Set("verified", v.receipt.ok());
  if (v.receipt.ok()) {
    if (v.parsed_receipt.has_receiver_assessment()) {
      rc.Set("receiver_assessment",
             JsonValue::FromProto(v.parsed_receipt.receiver_assessment()));
    }
    v1::RequestBody body;
    if (body.ParseFromString(r.request().payload()) && body.has_requester_assessment() &&
        v.parsed_receipt.has_receiver_assessment()) {
      f.Set("assessments_agree",
            Agree(body.requester_assessment(), v.parsed_receipt.receiver_assessment()));
    }
    rc.Set("received_at", FormatTimestamp(v.parsed_receipt.received_at()));
    rc.Set("request_payload_sha256", HexEncode(v.parsed_receipt.request_payload_sha256()));
  } else {
    rc.Set("error", v.receipt.ToString());
  }
  f.Set("receipt", std::move(rc));
  return f;
}

void PrintVerification(std::ostream& out, const v1::RequestRecord& r,
                       const RecordVerification& v, const std::string& peer) {
  out << "signature: " << r.request().signer_party() << " key " << r.request().key_id()
      << ": " << (v.signature.ok() ? "verified" : "FAILED: " + v.signature.ToString())
      << "\n";
  if (r.state() == v1::AWAITING_APPROVAL) {
    out << "signature: none yet: awaiting approval by a second operator (comity approve)\n";
    return;
  }
  if (r.state() == v1::DELIVERY_REJECTED) {
    out << "receipt:   none: " << peer << " refused the request for good (" << r.last_error()
        << "); it is not retried, submit a corrected request\n";
    return;
  }
  if (!v.has_receipt) {
    out << "receipt:   none yet";
    if (r.direction() == v1::OUTGOING) {
      out << " (" << peer << " has not acknowledged; attempts " << r.delivery_attempts();
      if (!r.last_error().empty()) out << ", last error: " << r.last_error();
      if (r.has_next_attempt_at()) out << "; next attempt " << FormatTimestamp(r.next_attempt_at());
      out << ")";
    }
    out << "\n";
    return;
  }
  out << "receipt:   " << r.receipt().signer_party() << " key " << ReceiptKeyId(r.receipt())
      << ": ";
  if (v.receipt.ok()) {
    out << "verified; received at " << FormatTimestamp(v.parsed_receipt.received_at())
        << ", request sha256 " << HexEncode(v.parsed_receipt.request_payload_sha256())
        << "\n";
  } else {
    out << "FAILED: " << v.receipt.ToString() << "\n";
  }
}

}  // namespace comity
