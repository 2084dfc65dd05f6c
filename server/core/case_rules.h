// The rules of a case (docs/lifecycle.md): which action may follow which
// state, and which refusals the governing instrument allows. Pure functions.
#ifndef COMITY_SERVER_CORE_CASE_RULES_H_
#define COMITY_SERVER_CORE_CASE_RULES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "comity/v1/assessment.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/request.pb.h"

namespace comity {

// The state `action` leads to from `from` (for RESPOND, `final_response`
// chooses PARTLY_EXECUTED or EXECUTED). FailedPrecondition naming the
// actions allowed from `from` if the move is illegal.
absl::StatusOr<v1::CaseState> NextCaseState(v1::CaseState from, v1::CaseAction action,
                                            bool final_response);

// Who may take an action: the requesting party withdraws, provides
// information and closes; the requested party decides everything else (and
// may close too).
bool IsRequesterAction(v1::CaseAction action);
bool IsRequestedAction(v1::CaseAction action);

// The release conditions (ETS185 Art 28(2)) attached to the response that
// listed evidence file `sha256` that no later ACCEPT_CONDITIONS step of the
// requesting party accepted; empty if none (or if no response lists it).
std::vector<std::string> UnacceptedConditions(
    const google::protobuf::RepeatedPtrField<v1::SignedEnvelope>& transitions,
    absl::string_view sha256);

// The operator's verb for an action, as `comity VERB ID` takes it: "ack",
// "review", "accept", "refuse", "postpone", "ask", "respond", "close",
// "withdraw", "answer", "accept-conditions"; empty for none.
absl::string_view VerbOf(v1::CaseAction action);

// The actions one party may take from `state`: the requesting party's
// (withdraw, answer, close, accept-conditions) or the requested party's.
std::vector<v1::CaseAction> LegalActions(v1::CaseState state, bool requesting_party);

// "allowed for the requested party in CASE_DELIVERED: ack, review, accept,
// refuse, ask (comity VERB ID)" or "... nothing: the case waits on the other
// party" / "the case is closed".
std::string AllowedStepsMessage(v1::CaseState state, bool requesting_party);

// True for states no decision leaves but CLOSE (or none, for CLOSED).
bool IsFinalCaseState(v1::CaseState state);

// Checks a refusal against the requested party's own assessment of the
// request: at least one ground; for a BINDING request every ground must be
// one the governing instrument leaves open (e.g. not FISCAL_OFFENCE for an
// Art 2-11 offence, ETS185 Art 25(4)); reasons are required (Art 27(7)).
// Fills `open_duties` with the duties the refusal opens (Art 24(6) when
// extradition is refused on nationality alone). FailedPrecondition with the
// basis otherwise.
absl::Status CheckRefusal(const v1::Assessment& assessment, v1::AssistanceType type,
                          const std::vector<v1::RefusalGround>& grounds,
                          const std::string& reasons, std::vector<std::string>* open_duties);

}  // namespace comity

#endif  // COMITY_SERVER_CORE_CASE_RULES_H_
