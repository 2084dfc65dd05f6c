// Assess: the query checked and its parties resolved, then the steps of the
// decision procedure (engine_internal.h) in order.
#include "server/treaty/engine.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/core/parties.h"
#include "server/treaty/engine_internal.h"
#include "server/treaty/territories.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

using treaty_internal::Parties;

absl::Status ValidateQuery(const TreatyLibrary& library, const AssessmentQuery& q) {
  for (const std::string* code : {&q.requesting_party, &q.requested_party}) {
    if (library.IsOrganisation(*code)) {
      return absl::InvalidArgumentError(absl::StrCat(
          *code,
          " is an organisation, not a state: name the member state that requests or is "
          "requested (its acts and agreements bind each member over its membership)"));
    }
    if (!IsPartyCode(*code)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", *code,
          "' is not an ISO 3166-1 alpha-2 code (e.g. FR, JP, GB); parties are "
          "named by their codes, got '",
          q.requesting_party, "' and '", q.requested_party, "'"));
    }
  }
  if (q.requesting_party == q.requested_party) {
    return absl::InvalidArgumentError("requesting and requested party are the same");
  }
  if (q.assistance_type <= 0 || !v1::AssistanceType_IsValid(q.assistance_type) ||
      q.assistance_type >= kMaxAssistanceType) {
    return absl::InvalidArgumentError("assistance type is missing or unknown");
  }
  if (q.offence <= 0 || !v1::OffenceCategory_IsValid(q.offence)) {
    return absl::InvalidArgumentError("offence category is missing or unknown");
  }
  return absl::OkStatus();
}

// A territory with its own code is assessed as its state, under the
// state's territorial declarations.
absl::StatusOr<Parties> ResolveParties(const AssessmentQuery& q) {
  Parties parties;
  parties.from = q.requesting_party;
  parties.to = q.requested_party;
  if (const Territory* t = FindTerritory(parties.from)) {
    parties.from_territory = parties.from;
    parties.from = t->sovereign;
  }
  if (const Territory* t = FindTerritory(parties.to)) {
    parties.to_territory = parties.to;
    parties.to = t->sovereign;
  }
  if (parties.from == parties.to) {
    return absl::InvalidArgumentError(absl::StrCat(
        q.requesting_party, " and ", q.requested_party, " are the same state (",
        parties.from,
        "): a request between them is domestic, not international cooperation"));
  }
  return parties;
}

}  // namespace

AssessmentQuery QueryForRequest(const v1::RequestBody& body, absl::CivilDay date) {
  AssessmentQuery q;
  q.requesting_party = body.requesting_party();
  q.requested_party = body.requested_party();
  q.date = date;
  q.assistance_type = body.assistance_type();
  q.offence = body.offence().category();
  q.penalty_months = body.offence().max_penalty_months();
  q.requested_penalty_months = body.offence().requested_party_max_penalty_months();
  q.dual_criminality = body.offence().dual_criminality();
  q.urgency = body.urgency();
  q.follows_preservation = !body.related_request_ids().empty();
  q.request = &body;
  return q;
}

absl::StatusOr<v1::Assessment> Assess(const TreatyLibrary& library,
                                      const AssessmentQuery& q) {
  COMITY_RETURN_IF_ERROR(ValidateQuery(library, q));
  COMITY_ASSIGN_OR_RETURN(Parties parties, ResolveParties(q));
  return treaty_internal::Assessor::Run(library, q, std::move(parties));
}

namespace treaty_internal {

std::string Cite(const InstrumentRecord& inst, const std::string& article) {
  return absl::StrCat(inst.proto.id(), " ", article);
}

v1::Assessment Assessor::Run(const TreatyLibrary& library, const AssessmentQuery& query,
                             Parties parties) {
  Assessor s(library, query, std::move(parties));
  s.Start();
  if (!s.PartiesKnown()) return std::move(s.a_);  // Step 0.
  s.FindInForce();                                // Step 1.
  if (!s.FindCandidates()) {                      // Step 2.
    s.PoliticalOnly();
    return std::move(s.a_);
  }
  if (!s.CheckScope()) return std::move(s.a_);  // Step 3.
  s.ApplyPrecedence();                          // Step 4.
  s.ChooseGoverning();                          // Step 5.
  s.CollectGrounds();                           // Step 6.
  s.CheckForm();                                // Step 7.
  s.AddDeadlinesAndDuties();                    // Step 8.
  s.ChooseChannel();                            // Step 9.
  return std::move(s.a_);
}

Assessor::Assessor(const TreatyLibrary& library, const AssessmentQuery& query,
                   Parties parties)
    : library_(library),
      q_(query),
      from_(std::move(parties.from)),
      to_(std::move(parties.to)),
      from_territory_(std::move(parties.from_territory)),
      to_territory_(std::move(parties.to_territory)),
      day_(ToDay(query.date)),
      type_(query.assistance_type),
      type_name_(v1::AssistanceType_Name(query.assistance_type)),
      convention_offence_(query.offence != v1::OTHER) {}

void Assessor::Start() {
  a_.set_library_version(library_.version());
  a_.set_date(absl::FormatCivilTime(q_.date));
  a_.set_requesting_party(q_.requesting_party);
  a_.set_requested_party(q_.requested_party);
  a_.set_territory(!to_territory_.empty() ? to_territory_ : from_territory_);
  for (const std::string* t : {&from_territory_, &to_territory_}) {
    if (t->empty()) continue;
    const Territory* info = FindTerritory(*t);
    Note(absl::StrCat(
        *t, " (", info->name, ") is a territory of ", info->sovereign,
        ": assessed under ", info->sovereign,
        "'s instruments as far as its territorial declarations extend them (ETS185 "
        "Art 38; otherwise a treaty binds a state for its whole territory, VCLT "
        "Art 29)."));
  }
}

void Assessor::Note(std::string text) { a_.add_notes(std::move(text)); }

void Assessor::Consider(const InstrumentRecord& inst, v1::InstrumentRole role,
                        std::string why) {
  for (auto& c : *a_.mutable_considered()) {
    if (c.instrument() == inst.proto.id()) {
      c.set_role(role);
      c.set_reason(std::move(why));
      return;
    }
  }
  v1::ConsideredInstrument* c = a_.add_considered();
  c->set_instrument(inst.proto.id());
  c->set_role(role);
  c->set_reason(std::move(why));
}

}  // namespace treaty_internal
}  // namespace comity
