#include "client/worklist.h"

#include <algorithm>
#include <set>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/request.pb.h"
#include "server/core/case_rules.h"
#include "server/util/time_proto.h"

namespace comity {
namespace {

// Release conditions of RESPOND steps no ACCEPT_CONDITIONS step accepted.
std::vector<std::string> PendingConditions(const v1::RequestRecord& r) {
  std::vector<std::string> offered;
  std::set<std::string> accepted;
  for (const v1::SignedEnvelope& env : r.transitions()) {
    v1::Transition t;
    if (!t.ParseFromString(env.payload())) continue;
    for (const std::string& c : t.release_conditions()) offered.push_back(c);
    for (const std::string& c : t.accepted_conditions()) accepted.insert(c);
  }
  std::vector<std::string> pending;
  for (const std::string& c : offered) {
    if (accepted.count(c) == 0 &&
        std::find(pending.begin(), pending.end(), c) == pending.end()) {
      pending.push_back(c);
    }
  }
  return pending;
}

// Whose move it is in `state`: the requested party decides and executes;
// the requesting party answers questions and closes what is finished.
bool RequestedPartysTurn(v1::CaseState state) {
  switch (state) {
    case v1::CASE_DELIVERED:
    case v1::CASE_ACKNOWLEDGED:
    case v1::CASE_UNDER_REVIEW:
    case v1::CASE_ACCEPTED:
    case v1::CASE_PARTLY_EXECUTED:
    case v1::CASE_POSTPONED:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::vector<WorkItem> BuildWorklist(const std::vector<v1::RequestRecord>& records) {
  std::vector<std::pair<WorkItem, absl::Time>> items;  // With stored_at.
  for (const v1::RequestRecord& r : records) {
    v1::RequestBody body;
    if (!body.ParseFromString(r.request().payload())) continue;
    const bool received = r.direction() == v1::INCOMING;
    WorkItem w;
    w.id = body.id();
    w.direction = received ? "received" : "sent";
    w.partner = received ? body.requesting_party() : body.requested_party();
    w.assistance_type = v1::AssistanceType_Name(body.assistance_type());
    w.urgency = body.urgency() == v1::URGENCY_UNSPECIFIED ? "ROUTINE"
                                                          : v1::Urgency_Name(body.urgency());
    if (r.has_next_deadline()) w.deadline = FromProto(r.next_deadline());
    w.pending_conditions = PendingConditions(r);
    const v1::CaseState cs = r.case_state();
    if (r.state() == v1::AWAITING_APPROVAL) {
      w.state = "AWAITING_APPROVAL";
      w.waits_on = "you";
      w.next = {"approve"};
      w.why = "a draft under the two-person rule: a second operator with the approver role";
    } else if (r.state() == v1::DELIVERY_REJECTED) {
      w.state = "DELIVERY_REJECTED";
      w.waits_on = "you";
      w.next = {"submit"};
      w.why = "refused by " + w.partner + " for good: " + r.last_error();
    } else if (cs == v1::CASE_STATE_UNSPECIFIED) {
      w.state = v1::RequestState_Name(r.state());
      w.waits_on = w.partner;
      w.why = "not delivered yet; the node retries until " + w.partner + " acknowledges";
    } else if (cs == v1::CASE_CLOSED && w.pending_conditions.empty()) {
      continue;  // Nothing waits.
    } else {
      w.state = v1::CaseState_Name(cs);
      const bool ours = received ? RequestedPartysTurn(cs)
                                 : (!RequestedPartysTurn(cs) || !w.pending_conditions.empty());
      for (v1::CaseAction a : LegalActions(cs, /*requesting_party=*/!received)) {
        // Withdrawing is always possible but never what a case waits for.
        if (a == v1::WITHDRAW && RequestedPartysTurn(cs)) continue;
        if (a == v1::ACCEPT_CONDITIONS && w.pending_conditions.empty()) continue;
        w.next.emplace_back(VerbOf(a));
      }
      // What the case waits for first; withdrawing last.
      std::stable_partition(w.next.begin(), w.next.end(),
                            [](const std::string& v) { return v != "withdraw"; });
      if (!received && !w.pending_conditions.empty()) {
        w.why = "released evidence is held back until you accept its conditions";
      } else if (cs == v1::CASE_INFO_REQUESTED) {
        w.why = received ? "you asked for information; " + w.partner + " answers"
                         : w.partner + " asked for information: answer it";
      } else if (IsFinalCaseState(cs)) {
        w.why = "finished: the requesting party closes it";
      } else {
        w.why = received ? "your decision or execution" : w.partner + " decides or executes";
      }
      w.waits_on = ours && !w.next.empty() ? "you" : w.partner;
    }
    items.emplace_back(std::move(w), r.has_stored_at() ? FromProto(r.stored_at()) : absl::Time());
  }
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) {
    return std::make_tuple(a.first.waits_on != "you", a.first.deadline, -absl::ToUnixMicros(a.second)) <
           std::make_tuple(b.first.waits_on != "you", b.first.deadline, -absl::ToUnixMicros(b.second));
  });
  std::vector<WorkItem> out;
  out.reserve(items.size());
  for (auto& [w, t] : items) out.push_back(std::move(w));
  return out;
}

absl::StatusOr<std::string> MatchIdPrefix(const std::vector<v1::RequestRecord>& records,
                                          absl::string_view prefix) {
  const std::string p = absl::AsciiStrToLower(prefix);
  if (p.size() < 4 || p.size() > 36 ||
      !std::all_of(p.begin(), p.end(), [](char c) { return absl::ascii_isxdigit(c) || c == '-'; })) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", prefix, "' is not a request id: give the id `comity list` or `comity inbox` shows, "
        "or at least its first 4 characters"));
  }
  std::set<std::string> ids;
  for (const v1::RequestRecord& r : records) {
    v1::RequestBody body;
    if (body.ParseFromString(r.request().payload()) && absl::StartsWith(body.id(), p)) {
      ids.insert(body.id());
    }
  }
  if (ids.empty()) {
    return absl::NotFoundError(absl::StrCat("no request id starts with '", prefix,
                                            "' on this node (comity list shows the ids)"));
  }
  if (ids.size() > 1) {
    std::vector<std::string> some(ids.begin(), ids.end());
    if (some.size() > 5) some.resize(5);
    return absl::InvalidArgumentError(absl::StrCat(
        "'", prefix, "' is ambiguous: ", ids.size(), " request ids start with it (",
        absl::StrJoin(some, ", "), ids.size() > 5 ? ", ..." : "", "); give more characters"));
  }
  return *ids.begin();
}

}  // namespace comity
