#include "server/node/assessment_log.h"

#include "absl/strings/str_cat.h"
#include "server/util/log.h"
#include "server/util/time_proto.h"

namespace comity {

std::string AssessmentSummary(const v1::Assessment& a) {
  return absl::StrCat(v1::Obligation_Name(a.obligation()),
                      a.instrument().empty() ? "" : " under " + a.instrument());
}

bool AssessmentsDiffer(const v1::Assessment& a, const v1::Assessment& b) {
  return a.obligation() != b.obligation() || a.instrument() != b.instrument();
}

v1::AuditEntry AssessmentEntry(const NodeContext& ctx, const v1::RequestBody& body,
                               const v1::Assessment& assessment,
                               const std::string& peer) {
  v1::AuditEntry e = ctx.Event(v1::ASSESSMENT_MADE, "node", body.id(), peer);
  e.set_assistance_type(body.assistance_type());
  e.set_instrument(assessment.instrument());
  e.set_obligation(assessment.obligation());
  for (int g : assessment.refusal_grounds()) {
    e.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
  }
  e.set_detail(absl::StrCat("library ", assessment.library_version()));
  return e;
}

void LogDisagreement(const std::string& request_id, const v1::Assessment& requester,
                     const v1::Assessment& receiver) {
  if (!AssessmentsDiffer(requester, receiver)) return;
  LogEvent(LogLevel::kWarning, "assessment_disagreement",
           {{"request_id", request_id},
            {"requester", requester.requesting_party()},
            {"requester_assessment", AssessmentSummary(requester)},
            {"requester_library", requester.library_version().substr(0, 12)},
            {"receiver", receiver.requested_party()},
            {"receiver_assessment", AssessmentSummary(receiver)},
            {"receiver_library", receiver.library_version().substr(0, 12)}});
}

absl::CivilDay AssessmentDay(const v1::RequestBody& body) {
  return absl::ToCivilDay(FromProto(body.created_at()), absl::UTCTimeZone());
}

}  // namespace comity
