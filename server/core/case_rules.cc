#include "server/core/case_rules.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace comity {
namespace {

using v1::CaseAction;
using v1::CaseState;

struct Move {
  CaseAction action;
  std::vector<CaseState> from;
  CaseState to;
};

const std::vector<Move>& Moves() {
  static const auto* moves = new std::vector<Move>{
      {v1::ACKNOWLEDGE, {v1::CASE_DELIVERED}, v1::CASE_ACKNOWLEDGED},
      {v1::START_REVIEW,
       {v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, v1::CASE_POSTPONED, v1::CASE_INFO_REQUESTED},
       v1::CASE_UNDER_REVIEW},
      {v1::ACCEPT, {v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, v1::CASE_UNDER_REVIEW},
       v1::CASE_ACCEPTED},
      {v1::REFUSE,
       {v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, v1::CASE_UNDER_REVIEW, v1::CASE_POSTPONED,
        v1::CASE_INFO_REQUESTED},
       v1::CASE_REFUSED},
      {v1::POSTPONE, {v1::CASE_ACKNOWLEDGED, v1::CASE_UNDER_REVIEW, v1::CASE_ACCEPTED},
       v1::CASE_POSTPONED},
      {v1::REQUEST_INFO, {v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, v1::CASE_UNDER_REVIEW},
       v1::CASE_INFO_REQUESTED},
      // RESPOND's target depends on final_response; see NextCaseState.
      {v1::RESPOND, {v1::CASE_ACCEPTED, v1::CASE_PARTLY_EXECUTED}, v1::CASE_EXECUTED},
      {v1::CLOSE, {v1::CASE_EXECUTED, v1::CASE_REFUSED, v1::CASE_WITHDRAWN}, v1::CASE_CLOSED},
      {v1::WITHDRAW,
       {v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, v1::CASE_UNDER_REVIEW, v1::CASE_ACCEPTED,
        v1::CASE_PARTLY_EXECUTED, v1::CASE_POSTPONED, v1::CASE_INFO_REQUESTED},
       v1::CASE_WITHDRAWN},
      {v1::PROVIDE_INFO, {v1::CASE_INFO_REQUESTED}, v1::CASE_UNDER_REVIEW},
      // Keeps the state; see NextCaseState.
      {v1::ACCEPT_CONDITIONS,
       {v1::CASE_PARTLY_EXECUTED, v1::CASE_EXECUTED, v1::CASE_CLOSED},
       v1::CASE_STATE_UNSPECIFIED},
  };
  return *moves;
}

std::string Name(CaseState s) { return v1::CaseState_Name(s); }

}  // namespace

absl::StatusOr<CaseState> NextCaseState(CaseState from, CaseAction action,
                                        bool final_response) {
  for (const Move& m : Moves()) {
    if (m.action != action) continue;
    if (std::find(m.from.begin(), m.from.end(), from) == m.from.end()) break;
    if (action == v1::RESPOND && !final_response) return v1::CASE_PARTLY_EXECUTED;
    if (action == v1::ACCEPT_CONDITIONS) return from;
    return m.to;
  }
  std::vector<std::string> allowed;
  for (const Move& m : Moves()) {
    if (std::find(m.from.begin(), m.from.end(), from) != m.from.end()) {
      allowed.push_back(v1::CaseAction_Name(m.action));
    }
  }
  return absl::FailedPreconditionError(absl::StrCat(
      v1::CaseAction_Name(action), " is not allowed in state ", Name(from), "; allowed: ",
      allowed.empty() ? "none (the case is closed)" : absl::StrJoin(allowed, ", ")));
}

absl::string_view VerbOf(CaseAction action) {
  switch (action) {
    case v1::ACKNOWLEDGE: return "ack";
    case v1::START_REVIEW: return "review";
    case v1::ACCEPT: return "accept";
    case v1::REFUSE: return "refuse";
    case v1::POSTPONE: return "postpone";
    case v1::REQUEST_INFO: return "ask";
    case v1::RESPOND: return "respond";
    case v1::CLOSE: return "close";
    case v1::WITHDRAW: return "withdraw";
    case v1::PROVIDE_INFO: return "answer";
    case v1::ACCEPT_CONDITIONS: return "accept-conditions";
    default: return "";
  }
}

std::vector<CaseAction> LegalActions(CaseState state, bool requesting_party) {
  std::vector<CaseAction> out;
  for (const Move& m : Moves()) {
    if (std::find(m.from.begin(), m.from.end(), state) == m.from.end()) continue;
    if (requesting_party ? !IsRequesterAction(m.action) : !IsRequestedAction(m.action)) continue;
    // The requested party closes only what the requester left open: both may.
    out.push_back(m.action);
  }
  return out;
}

std::string AllowedStepsMessage(CaseState state, bool requesting_party) {
  const char* who = requesting_party ? "the requesting party" : "the requested party";
  if (state == v1::CASE_CLOSED && requesting_party) {
    return "the case is closed (accept-conditions is still allowed for a response's conditions)";
  }
  if (state == v1::CASE_CLOSED) return "the case is closed";
  std::vector<std::string> verbs;
  for (CaseAction a : LegalActions(state, requesting_party)) verbs.emplace_back(VerbOf(a));
  if (verbs.empty()) {
    return absl::StrCat("nothing is allowed for ", who, " in ", Name(state),
                        ": the case waits on the other party");
  }
  return absl::StrCat("allowed for ", who, " in ", Name(state), ": ", absl::StrJoin(verbs, ", "),
                      " (comity VERB ID)");
}

bool IsRequesterAction(CaseAction action) {
  return action == v1::WITHDRAW || action == v1::PROVIDE_INFO || action == v1::CLOSE ||
         action == v1::ACCEPT_CONDITIONS;
}

bool IsRequestedAction(CaseAction action) {
  return action != v1::WITHDRAW && action != v1::PROVIDE_INFO &&
         action != v1::ACCEPT_CONDITIONS && action != v1::CASE_ACTION_UNSPECIFIED;
}

std::vector<std::string> UnacceptedConditions(
    const google::protobuf::RepeatedPtrField<v1::SignedEnvelope>& transitions,
    absl::string_view sha256) {
  std::vector<std::string> conditions;
  std::set<std::string> accepted;
  bool listed = false;
  for (const v1::SignedEnvelope& env : transitions) {
    v1::Transition t;
    if (!t.ParseFromString(env.payload())) continue;
    for (const std::string& c : t.accepted_conditions()) accepted.insert(c);
    bool here = false;
    for (const v1::EvidenceFile& f : t.evidence()) here |= f.sha256() == sha256;
    if (here) {
      listed = true;
      for (const std::string& c : t.release_conditions()) conditions.push_back(c);
    }
  }
  std::vector<std::string> open;
  if (!listed) return open;
  for (const std::string& c : conditions) {
    if (accepted.count(c) == 0) open.push_back(c);
  }
  return open;
}

bool IsFinalCaseState(CaseState state) {
  return state == v1::CASE_EXECUTED || state == v1::CASE_REFUSED ||
         state == v1::CASE_WITHDRAWN || state == v1::CASE_CLOSED;
}

absl::Status CheckRefusal(const v1::Assessment& assessment, v1::AssistanceType type,
                          const std::vector<v1::RefusalGround>& grounds,
                          const std::string& reasons, std::vector<std::string>* open_duties) {
  if (grounds.empty()) {
    return absl::FailedPreconditionError(
        "a refusal must cite at least one ground (e.g. --ground ESSENTIAL_INTERESTS)");
  }
  if (reasons.empty()) {
    return absl::FailedPreconditionError(
        "a refusal must give its reasons to the requesting party (ETS185 Art 27(7)); add "
        "--reasons");
  }
  if (assessment.obligation() == v1::BINDING) {
    std::vector<std::string> open;
    for (int g : assessment.refusal_grounds()) {
      open.push_back(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)));
    }
    for (v1::RefusalGround g : grounds) {
      if (std::find(assessment.refusal_grounds().begin(), assessment.refusal_grounds().end(),
                    g) == assessment.refusal_grounds().end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the request is BINDING under ", assessment.instrument(), " (",
            absl::StrJoin(assessment.basis(), "; "), ") and ", v1::RefusalGround_Name(g),
            " is not a ground it leaves open for it; open grounds: ",
            open.empty() ? "none" : absl::StrJoin(open, ", ")));
      }
    }
  }
  if (type == v1::EXTRADITION && grounds.size() == 1 && grounds[0] == v1::NATIONALITY) {
    open_duties->push_back(
        "ETS185 Art 24(6): extradition refused solely on nationality: at the requesting "
        "party's request, submit the case to the competent authorities for prosecution and "
        "report the final outcome");
  }
  return absl::OkStatus();
}

}  // namespace comity
