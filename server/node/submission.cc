#include "server/node/submission.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/envelope.h"
#include "server/core/request_fields.h"
#include "server/core/request_validation.h"
#include "server/crypto/random.h"
#include "server/crypto/sha256.h"
#include "server/node/assessment_log.h"
#include "server/node/case_records.h"
#include "server/treaty/engine.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"
#include "server/util/time_proto.h"

namespace comity {
namespace {

// Room left in a message for the envelope around the signed payload.
constexpr size_t kEnvelopeOverhead = 512;

}  // namespace

bool Submission::NeedsApproval(v1::AssistanceType type) const {
  const auto& types = ctx_->config().approval().assistance_types();
  return std::find(types.begin(), types.end(), type) != types.end();
}

absl::StatusOr<v1::SignedEnvelope> Submission::DateAssessAndSign(
    v1::RequestBody* body) const {
  *body->mutable_created_at() = ToProto(ctx_->Now());
  body->clear_requester_assessment();
  COMITY_RETURN_IF_ERROR(ValidateRequestBody(*body));
  COMITY_ASSIGN_OR_RETURN(
      v1::Assessment assessment,
      Assess(*ctx_->setup().treaties, QueryForRequest(*body, AssessmentDay(*body))));
  if (assessment.obligation() == v1::INVALID) {
    // Each missing content once, by the flag that sets it and its article.
    return absl::FailedPreconditionError(absl::StrCat(
        "the request is INVALID under ", assessment.instrument(), " (",
        absl::StrJoin(assessment.basis(), ", "), "): missing ", DescribeMissing(assessment),
        ". Complete it and submit again; nothing was sent."));
  }
  *body->mutable_requester_assessment() = std::move(assessment);
  const uint64_t limit = ctx_->config().limits().max_message_bytes();
  const size_t size = body->ByteSizeLong();
  if (size + kEnvelopeOverhead > limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request is ", size, " bytes, over the ", limit,
                     "-byte message limit; shorten its texts"));
  }
  return ctx_->Sign(kRequestPayloadType, *body);
}

absl::StatusOr<v1::RequestRecord> Submission::Submit(const std::string& operator_name,
                                                     v1::RequestBody draft,
                                                     RecordKey* key) {
  const bool needs_approval = NeedsApproval(draft.assistance_type());
  COMITY_RETURN_IF_ERROR(ValidateDraft(draft));
  if (draft.requested_party() == ctx_->party()) {
    return absl::InvalidArgumentError(
        absl::StrCat("requested_party is this node's own party ", ctx_->party()));
  }
  if (ctx_->setup().peers.count(draft.requested_party()) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "party ", draft.requested_party(), " is not a configured peer of this node; ",
        "add it to the node's configuration (peers { party: \"", draft.requested_party(),
        "\" ... })"));
  }
  for (const std::string& related : draft.related_request_ids()) {
    COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> known,
                            ctx_->store().requests().Get(related));
    if (known.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("related request ", related.substr(0, 64),
                       " is unknown to this node; a follow-up "
                       "links to a request this node sent or received"));
    }
  }
  const absl::Time now = ctx_->Now();
  draft.set_id(RandomUuid());
  draft.set_requesting_party(ctx_->party());
  if (draft.urgency() == v1::URGENCY_UNSPECIFIED) draft.set_urgency(v1::ROUTINE);
  // Assessed (and refused if INVALID) now; a draft awaiting approval is
  // dated, assessed again and signed when it is approved.
  COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope env, DateAssessAndSign(&draft));
  v1::RequestRecord record;
  record.set_direction(v1::OUTGOING);
  record.set_submitted_by(operator_name);
  *record.mutable_stored_at() = ToProto(now);
  *record.mutable_updated_at() = ToProto(now);
  if (needs_approval) {
    record.set_state(v1::AWAITING_APPROVAL);
    env.clear_signature();  // Not signed until approved.
  } else {
    record.set_state(v1::PENDING_DELIVERY);
    *record.mutable_next_attempt_at() = ToProto(now);
  }
  *record.mutable_request() = std::move(env);
  const v1::Assessment& assessed = draft.requester_assessment();
  COMITY_RETURN_IF_ERROR(ctx_->store().requests().InsertOutgoing(
      KeyOf(draft), record, [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry submitted =
            ctx_->Event(v1::REQUEST_SUBMITTED, "operator:" + operator_name, draft.id(),
                        draft.requested_party());
        submitted.add_hashes(Sha256(record.request().payload()));
        submitted.set_assistance_type(draft.assistance_type());
        if (needs_approval) submitted.set_detail("awaiting two-person approval");
        COMITY_RETURN_IF_ERROR(w.Append(&submitted).status());
        v1::AuditEntry a =
            AssessmentEntry(*ctx_, draft, assessed, draft.requested_party());
        return w.Append(&a).status();
      }));
  LogEvent(LogLevel::kInfo, "request_submitted",
           {{"request_id", draft.id()},
            {"to", draft.requested_party()},
            {"operator", operator_name},
            {"type", v1::AssistanceType_Name(draft.assistance_type())},
            {"awaiting_approval", needs_approval ? "true" : "false"}});
  ctx_->metrics().RequestAssessed("sent", draft.requested_party(), assessed.obligation());
  if (key != nullptr) *key = KeyOf(draft);
  return record;
}

absl::StatusOr<v1::RequestRecord> Submission::Approve(const std::string& approver,
                                                      const std::string& request_id,
                                                      RecordKey* key) {
  absl::StatusOr<v1::RequestRecord> draft_record =
      LoadRecord(ctx_->store(), request_id, v1::OUTGOING);
  if (!draft_record.ok() && !absl::IsNotFound(draft_record.status())) {
    return draft_record.status();
  }
  if (!draft_record.ok() || draft_record->state() != v1::AWAITING_APPROVAL) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id.substr(0, 64), " is not a draft awaiting approval",
        draft_record.ok()
            ? absl::StrCat(" (it is ", v1::RequestState_Name(draft_record->state()), ")")
            : ""));
  }
  if (draft_record->submitted_by() == approver) {
    return absl::PermissionDeniedError(
        absl::StrCat("operator ", approver,
                     " submitted this draft and cannot also approve it: a second "
                     "operator with the approver role must"));
  }
  COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(*draft_record));
  COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope env, DateAssessAndSign(&body));
  const std::string submitter = draft_record->submitted_by();
  COMITY_RETURN_IF_ERROR(ctx_->store().requests().MarkApproved(
      request_id, env, approver, ctx_->Now(), [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry e = ctx_->Event(v1::REQUEST_APPROVED, "operator:" + approver,
                                       request_id, body.requested_party());
        e.add_hashes(Sha256(env.payload()));
        e.set_assistance_type(body.assistance_type());
        e.set_detail(
            absl::StrCat("submitted by ", submitter, ", approved by ", approver));
        return w.Append(&e).status();
      }));
  LogEvent(
      LogLevel::kInfo, "request_approved",
      {{"request_id", request_id}, {"submitter", submitter}, {"approver", approver}});
  if (key != nullptr) *key = KeyOf(body);
  return LoadRecord(ctx_->store(), request_id, v1::OUTGOING);
}

}  // namespace comity
