// How the node records treaty assessments (docs/treaties.md): the
// ASSESSMENT_MADE entry both sides write, and what is logged when the two
// parties' assessments of one request differ.
#ifndef COMITY_SERVER_NODE_ASSESSMENT_LOG_H_
#define COMITY_SERVER_NODE_ASSESSMENT_LOG_H_

#include <string>

#include "absl/time/civil_time.h"
#include "comity/v1/assessment.pb.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/request.pb.h"
#include "server/node/node_context.h"

namespace comity {

// "BINDING under ETS185".
std::string AssessmentSummary(const v1::Assessment& a);
// Whether two assessments reach different conclusions (obligation or
// governing instrument).
bool AssessmentsDiffer(const v1::Assessment& a, const v1::Assessment& b);
// The ASSESSMENT_MADE entry of `assessment` for request `body`, with
// `peer` the other party.
v1::AuditEntry AssessmentEntry(const NodeContext& ctx, const v1::RequestBody& body,
                               const v1::Assessment& assessment, const std::string& peer);
// Logs (assessment_disagreement) when the two assessments differ.
void LogDisagreement(const std::string& request_id, const v1::Assessment& requester,
                     const v1::Assessment& receiver);
// The date a request is assessed on: its created_at, in UTC, so that both
// sides assess the same day.
absl::CivilDay AssessmentDay(const v1::RequestBody& body);

}  // namespace comity

#endif  // COMITY_SERVER_NODE_ASSESSMENT_LOG_H_
