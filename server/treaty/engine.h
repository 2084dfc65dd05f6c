// The treaty rules engine: which instrument governs a request between two
// parties on a date, and what it obliges the requested party to do. No
// gRPC, no I/O: a pure function of the library and the query. The decision
// procedure is documented in docs/treaties.md.
//
//   AssessmentQuery q;
//   q.requesting_party = "FR";
//   q.requested_party = "JP";
//   q.date = absl::CivilDay(2024, 5, 1);
//   q.assistance_type = v1::PRESERVATION;
//   q.offence = v1::DATA_INTERFERENCE;
//   COMITY_ASSIGN_OR_RETURN(v1::Assessment a, Assess(*library, q));
//   // a.obligation() == v1::BINDING, a.instrument() == "ETS185"
#ifndef COMITY_SERVER_TREATY_ENGINE_H_
#define COMITY_SERVER_TREATY_ENGINE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/civil_time.h"
#include "comity/v1/assessment.pb.h"
#include "comity/v1/request.pb.h"
#include "server/treaty/library.h"

namespace comity {

struct AssessmentQuery {
  std::string requesting_party;
  std::string requested_party;
  absl::CivilDay date;
  v1::AssistanceType assistance_type = v1::ASSISTANCE_TYPE_UNSPECIFIED;
  v1::OffenceCategory offence = v1::OFFENCE_CATEGORY_UNSPECIFIED;
  uint32_t penalty_months = 0;            // Requesting party; 0 unknown.
  uint32_t requested_penalty_months = 0;  // Requested party; 0 unknown.
  v1::DualCriminality dual_criminality = v1::DUAL_CRIMINALITY_UNKNOWN;
  v1::Urgency urgency = v1::URGENCY_UNSPECIFIED;  // Chooses the channel and emergency deadlines.
  // The request follows a preservation (RequestBody.related_request_ids):
  // ETS185 Art 30 applies only then.
  bool follows_preservation = false;
  // The request itself, for the contents an instrument requires (Art
  // 29(2)); nullptr: contents are not checked (and a note says so).
  const v1::RequestBody* request = nullptr;
};

// The query for a request body, assessed on `date`.
AssessmentQuery QueryForRequest(const v1::RequestBody& body, absl::CivilDay date);

// InvalidArgument for a malformed query (unknown party code, same party on
// both sides, an organisation instead of a state, unspecified type or
// offence). A party may be a territory with its own ISO code (CW, FO): it is
// assessed as its state, under the state's territorial declarations.
// Thread-safe.
absl::StatusOr<v1::Assessment> Assess(const TreatyLibrary& library,
                                      const AssessmentQuery& query);

}  // namespace comity

#endif  // COMITY_SERVER_TREATY_ENGINE_H_
