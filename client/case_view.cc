#include "client/case_view.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/time/time.h"
#include "server/core/case_rules.h"
#include "server/util/hex.h"

namespace comity {

void FillRing(const google::protobuf::RepeatedPtrField<v1::PublicKey>& keys, KeyRing* ring) {
  for (const v1::PublicKey& k : keys) {
    ring->Add(k.party(), k.key_id(), k.ed25519_public_key()).IgnoreError();
  }
}

const char* EvidenceStateName(EvidenceState state) {
  switch (state) {
    case EvidenceState::kReleased:
      return "released";
    case EvidenceState::kHeldBack:
      return "held_back";
    case EvidenceState::kVerified:
      return "verified";
    case EvidenceState::kAwaitingConditions:
      return "awaiting_conditions";
    case EvidenceState::kFetching:
      return "fetching";
    case EvidenceState::kGivenUp:
      return "given_up";
  }
  return "unknown";
}

JsonValue EvidenceFileJson(const v1::EvidenceFile& f) {
  return JsonValue::Object()
      .Set("name", f.name())
      .Set("sha256", HexEncode(f.sha256()))
      .Set("size", f.size());
}

std::string DirectionName(v1::Direction d) {
  return d == v1::OUTGOING ? "sent" : d == v1::INCOMING ? "received" : "unknown";
}

JsonValue DeadlineJson(const v1::CaseDeadline& d, absl::Time now) {
  const absl::Time due = absl::FromUnixMicros(d.due_unix_micros());
  return JsonValue::Object()
      .Set("request_id", d.request_id())
      .Set("direction", DirectionName(d.direction()))
      .Set("kind", d.kind())
      .Set("due", FormatMicros(d.due_unix_micros()))
      .Set("seconds_left", static_cast<int64_t>(absl::ToInt64Seconds(due - now)))
      .Set("met", d.met())
      .Set("overdue", d.overdue())
      .Set("expiring", d.expiring())
      .Set("party", d.party())
      .Set("obligation", v1::Obligation_Name(d.obligation()))
      .Set("description", d.description());
}

std::string DeadlineLine(const v1::CaseDeadline& d, absl::Time now) {
  const absl::Duration left = absl::FromUnixMicros(d.due_unix_micros()) - now;
  const absl::Duration whole = absl::Trunc(absl::AbsDuration(left), absl::Minutes(1));
  const std::string span = absl::FormatDuration(whole < absl::Minutes(1) ? absl::Minutes(1) : whole);
  return absl::StrCat(d.met()        ? "MET     "
                      : d.overdue()  ? "LATE    "
                      : d.expiring() ? "EXPIRES "
                                     : "DUE     ",
                      d.kind(), "  due ", FormatMicros(d.due_unix_micros()),
                      d.met() ? ""
                      : left < absl::ZeroDuration() ? absl::StrCat(" (", span, " ago)")
                                                    : absl::StrCat(" (in ", span, ")"),
                      ": ", d.description());
}

std::string FormatMicros(int64_t unix_micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(unix_micros),
                          absl::UTCTimeZone());
}

size_t CaseView::PendingConditions() const {
  return static_cast<size_t>(
      std::count_if(conditions.begin(), conditions.end(),
                    [](const ConditionView& c) { return !c.accepted; }));
}

std::vector<std::string> CaseView::PendingConditionTexts() const {
  std::vector<std::string> texts;
  for (const ConditionView& c : conditions) {
    if (!c.accepted && std::find(texts.begin(), texts.end(), c.text) == texts.end()) {
      texts.push_back(c.text);
    }
  }
  return texts;
}

CaseView BuildCaseView(
    const v1::RequestRecord& r, const KeyRing& ring,
    const google::protobuf::RepeatedPtrField<v1::StoredEvidence>& stored,
    const google::protobuf::RepeatedPtrField<v1::PendingEvidenceStatus>& pending) {
  CaseView view;
  view.direction = r.direction();
  // Accepted conditions, verbatim, and the step that accepted each first.
  std::map<std::string, uint32_t> accepted;
  for (const v1::SignedEnvelope& env : r.transitions()) {
    StepView step;
    step.signer_party = env.signer_party();
    step.key_id = env.key_id();
    step.signature = VerifyEnvelope(env, kTransitionPayloadType, ring);
    if (!step.transition.ParseFromString(env.payload())) {
      step.transition.Clear();
      if (step.signature.ok())
        step.signature = absl::DataLossError("the step does not parse");
    }
    for (const std::string& c : step.transition.accepted_conditions()) {
      accepted.emplace(c, step.transition.sequence());
    }
    view.steps.push_back(std::move(step));
  }
  std::set<std::string> queued_acceptance;
  for (const v1::SignedEnvelope& env : r.queued_proposals()) {
    v1::TransitionProposal p;
    if (!p.ParseFromString(env.payload())) continue;
    for (const std::string& c : p.accepted_conditions()) queued_acceptance.insert(c);
    view.queued.push_back(std::move(p));
  }
  for (const StepView& step : view.steps) {
    const v1::Transition& t = step.transition;
    std::vector<std::string> names;
    for (const v1::EvidenceFile& f : t.evidence()) names.push_back(f.name());
    for (const std::string& text : t.release_conditions()) {
      ConditionView c;
      c.text = text;
      c.step = t.sequence();
      c.party = t.party();
      auto it = accepted.find(text);
      c.accepted = it != accepted.end();
      if (c.accepted) c.accepted_in_step = it->second;
      c.acceptance_queued = !c.accepted && queued_acceptance.count(text) != 0;
      if (!c.accepted) c.blocks = names;
      view.conditions.push_back(std::move(c));
    }
    for (const v1::EvidenceFile& f : t.evidence()) {
      EvidenceView e;
      e.file = f;
      e.step = t.sequence();
      // The node's own rule of release (server/core/case_rules.h).
      e.pending_conditions = UnacceptedConditions(r.transitions(), f.sha256());
      const bool held = !e.pending_conditions.empty();
      if (r.direction() == v1::INCOMING) {
        e.state = held ? EvidenceState::kHeldBack : EvidenceState::kReleased;
      } else {
        e.state = held ? EvidenceState::kAwaitingConditions : EvidenceState::kFetching;
        for (const v1::PendingEvidenceStatus& p : pending) {
          if (p.sha256() != f.sha256()) continue;
          e.attempts = p.attempts();
          e.last_error = p.last_error();
          e.next_attempt_unix_micros = p.next_attempt_unix_micros();
          if (p.gave_up()) e.state = EvidenceState::kGivenUp;
        }
        for (const v1::StoredEvidence& s : stored) {
          if (s.sha256() == f.sha256()) {
            e.state = EvidenceState::kVerified;
            e.path = s.path();
          }
        }
      }
      view.evidence.push_back(std::move(e));
    }
  }
  return view;
}

namespace {

JsonValue Strings(const google::protobuf::RepeatedPtrField<std::string>& items) {
  JsonValue list = JsonValue::Array();
  for (const std::string& s : items) list.Add(s);
  return list;
}

JsonValue Strings(const std::vector<std::string>& items) {
  JsonValue list = JsonValue::Array();
  for (const std::string& s : items) list.Add(s);
  return list;
}

JsonValue StepJson(const StepView& step) {
  const v1::Transition& t = step.transition;
  JsonValue s = JsonValue::Object();
  s.Set("sequence", t.sequence());
  s.Set("action", v1::CaseAction_Name(t.action()));
  s.Set("from_state", v1::CaseState_Name(t.from_state()));
  s.Set("to_state", v1::CaseState_Name(t.to_state()));
  s.Set("party", t.party());
  s.Set("operator", t.operator_name());
  s.Set("time", FormatMicros(t.time_unix_micros()));
  JsonValue sig = JsonValue::Object();
  sig.Set("signer_party", step.signer_party).Set("key_id", step.key_id);
  sig.Set("verified", step.signature.ok());
  if (!step.signature.ok()) sig.Set("error", step.signature.ToString());
  s.Set("signature", std::move(sig));
  if (t.refusal_grounds_size() > 0) {
    JsonValue grounds = JsonValue::Array();
    for (int g : t.refusal_grounds()) {
      grounds.Add(v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)));
    }
    s.Set("refusal_grounds", std::move(grounds));
  }
  if (!t.reasons().empty()) s.Set("reasons", t.reasons());
  if (!t.consultation().empty()) s.Set("consultation", t.consultation());
  if (!t.text().empty()) s.Set("text", t.text());
  if (t.action() == v1::RESPOND) s.Set("final_response", t.final_response());
  if (t.open_duties_size() > 0) s.Set("open_duties", Strings(t.open_duties()));
  if (t.evidence_size() > 0) {
    JsonValue files = JsonValue::Array();
    for (const v1::EvidenceFile& f : t.evidence()) files.Add(EvidenceFileJson(f));
    s.Set("evidence", std::move(files));
  }
  if (t.release_conditions_size() > 0) {
    s.Set("release_conditions", Strings(t.release_conditions()));
  }
  if (t.accepted_conditions_size() > 0) {
    s.Set("accepted_conditions", Strings(t.accepted_conditions()));
  }
  return s;
}

}  // namespace

void AddCaseJson(const CaseView& view, JsonValue* object) {
  JsonValue steps = JsonValue::Array();
  for (const StepView& step : view.steps) steps.Add(StepJson(step));
  object->Set("steps", std::move(steps));
  object->Set("step_count", view.steps.size());
  JsonValue queued = JsonValue::Array();
  for (const v1::TransitionProposal& p : view.queued) {
    queued.Add(JsonValue::Object()
                   .Set("action", v1::CaseAction_Name(p.action()))
                   .Set("operator", p.operator_name())
                   .Set("time", FormatMicros(p.time_unix_micros()))
                   .Set("based_on_sequence", p.based_on_sequence()));
  }
  object->Set("queued_proposals", std::move(queued));
  JsonValue conditions = JsonValue::Array();
  for (const ConditionView& c : view.conditions) {
    JsonValue j = JsonValue::Object();
    j.Set("text", c.text).Set("step", c.step).Set("party", c.party);
    j.Set("state", c.accepted ? "accepted" : "pending");
    if (c.accepted) j.Set("accepted_in_step", c.accepted_in_step);
    if (c.acceptance_queued) j.Set("acceptance_queued", true);
    j.Set("blocks", Strings(c.blocks));
    conditions.Add(std::move(j));
  }
  object->Set("conditions", std::move(conditions));
  object->Set("pending_conditions", view.PendingConditions());
  JsonValue evidence = JsonValue::Array();
  for (const EvidenceView& e : view.evidence) {
    JsonValue j = JsonValue::Object();
    j.Set("name", e.file.name())
        .Set("sha256", HexEncode(e.file.sha256()))
        .Set("size", e.file.size())
        .Set("step", e.step)
        .Set("state", EvidenceStateName(e.state));
    if (!e.path.empty()) j.Set("path", e.path);
    if (e.attempts > 0) j.Set("failed_attempts", e.attempts);
    if (!e.last_error.empty()) j.Set("last_error", e.last_error);
    if (e.next_attempt_unix_micros != 0) {
      j.Set("next_attempt", FormatMicros(e.next_attempt_unix_micros));
    }
    j.Set("pending_conditions", Strings(e.pending_conditions));
    evidence.Add(std::move(j));
  }
  object->Set("evidence", std::move(evidence));
}

}  // namespace comity
