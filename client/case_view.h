// What `comity show` and `comity export` know of a case, as data: its signed
// steps (each verified), the use conditions its responses attach (ETS185
// Art 28(2)), pending or accepted, and its evidence files with their state
// here, including what pending conditions hold back. The text and the JSON
// of a case are both formed from a CaseView (record_output.h, AddCaseJson).
//
//   CaseView view = BuildCaseView(record, ring, response.stored_evidence(),
//                                 response.pending_evidence());
//   if (view.PendingConditions() > 0) ...  // Evidence is held back.
//   out << CaseJson(view).Dump();
#ifndef COMITY_CLIENT_CASE_VIEW_H_
#define COMITY_CLIENT_CASE_VIEW_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "client/output.h"
#include "comity/v1/operator.pb.h"
#include "comity/v1/record.pb.h"
#include "server/core/envelope.h"

namespace comity {

// The keys GetRequest returned, as a ring that verifies envelopes.
void FillRing(const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys, KeyRing* ring);

// One signed step of the case, as held here.
struct StepView {
  v1::Transition transition;  // Empty if the payload does not parse (signature says why).
  std::string signer_party;
  std::string key_id;
  absl::Status signature;  // The envelope verified with the node's keys.
};

// A use condition that a RESPOND step attaches to what it releases.
struct ConditionView {
  std::string text;
  uint32_t step = 0;      // The RESPOND step that attached it.
  std::string party;      // Who attached it (the requested party).
  bool accepted = false;  // An ACCEPT_CONDITIONS step accepted it, verbatim.
  uint32_t accepted_in_step = 0;
  // Accepted in a proposal signed here, not yet numbered by the requested party.
  bool acceptance_queued = false;
  // Names of the evidence files it holds back, while pending.
  std::vector<std::string> blocks;
};

enum class EvidenceState {
  // Requested side: released to the requesting party.
  kReleased,
  // Requested side: held until the requesting party accepts the conditions.
  kHeldBack,
  // Requesting side: held here, SHA-256 verified.
  kVerified,
  // Requesting side: not fetchable until the conditions are accepted.
  kAwaitingConditions,
  // Requesting side: being fetched (maybe after failed attempts).
  kFetching,
  // Requesting side: fetching stopped (comity fetch ID tries again).
  kGivenUp,
};

// "released", "held_back", "verified", "awaiting_conditions", "fetching", "given_up".
const char* EvidenceStateName(EvidenceState state);

struct EvidenceView {
  v1::EvidenceFile file;
  uint32_t step = 0;  // The RESPOND step that lists it.
  EvidenceState state = EvidenceState::kFetching;
  std::string path;  // kVerified: where the node stores it.
  uint32_t attempts = 0;
  std::string last_error;
  int64_t next_attempt_unix_micros = 0;
  std::vector<std::string> pending_conditions;  // What holds it back.
};

struct CaseView {
  v1::Direction direction = v1::DIRECTION_UNSPECIFIED;
  std::vector<StepView> steps;
  std::vector<v1::TransitionProposal> queued;  // Signed proposals not delivered yet.
  std::vector<ConditionView> conditions;       // In the order the steps attach them.
  std::vector<EvidenceView> evidence;

  // Conditions not accepted yet.
  size_t PendingConditions() const;
  // Pending conditions' texts, each once.
  std::vector<std::string> PendingConditionTexts() const;
};

// Builds the view of `r`'s case; `ring` verifies the steps; `stored` and
// `pending` are what GetRequest says of the evidence on this node.
CaseView BuildCaseView(
    const v1::RequestRecord& r, const KeyRing& ring,
    const google::protobuf::RepeatedPtrField<v1::StoredEvidence>& stored,
    const google::protobuf::RepeatedPtrField<v1::PendingEvidenceStatus>& pending);

// Members "steps", "queued_proposals", "conditions", "pending_conditions"
// and "evidence" of a case in `comity show --json` (docs/cli.md), set on
// `object`.
void AddCaseJson(const CaseView& view, JsonValue* object);

// RFC 3339, UTC, seconds: "2026-12-01T19:14:01Z".
std::string FormatMicros(int64_t unix_micros);

// An evidence file as a signed step lists it: name, sha256 (hex), size.
JsonValue EvidenceFileJson(const v1::EvidenceFile& f);

// "sent", "received" or "unknown".
std::string DirectionName(v1::Direction d);

// A deadline as `overdue` and `show` print it: request_id, direction, kind,
// due, seconds_left at `now` (negative once past), met, overdue, expiring, party
// (whose move), obligation, description.
JsonValue DeadlineJson(const v1::CaseDeadline& d, absl::Time now);
// "LATE    KIND  due T (3h12m ago): description", "EXPIRES ...", "MET ...",
// or "DUE     KIND  due T (in 2h): description".
std::string DeadlineLine(const v1::CaseDeadline& d, absl::Time now);

}  // namespace comity

#endif  // COMITY_CLIENT_CASE_VIEW_H_
