// Steps 0-2 of the decision procedure: the instruments that bind both
// parties on the date, and which of them provide for this assistance.
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/treaty/engine_internal.h"
#include "server/treaty/standing.h"

namespace comity::treaty_internal {

// Step 0: a state no instrument lists is unknown to the library; saying
// NOT_COVERED would be a legal conclusion the library cannot support.
bool Assessor::PartiesKnown() {
  std::vector<std::string> absent;
  for (const std::string* code : {&from_, &to_}) {
    if (library_.InstrumentsOf(*code).empty()) absent.push_back(*code);
  }
  if (absent.empty()) return true;
  a_.set_obligation(v1::UNKNOWN_PARTY);
  for (const std::string& code : absent) {
    Note(absl::StrCat(
        code, " is not in the treaty library: no instrument in it lists ", code,
        " as a party or signatory, so no conclusion is drawn (not NOT_COVERED). "
        "Add its status to deploy/treaties/ if it is bound by an instrument."));
  }
  return false;
}

// Step 1: instruments both parties are bound by on the date.
void Assessor::FindInForce() {
  for (const InstrumentRecord* inst : library_.InstrumentsOf(from_)) {
    ConsiderInstrument(*inst);
  }
  if (!in_force_.empty()) {
    std::vector<std::string> ids;
    for (const auto* i : in_force_) ids.push_back(i->proto.id());
    Note(absl::StrCat("In force between ", from_, " and ", to_, " on ", a_.date(), ": ",
                      absl::StrJoin(ids, ", "), "."));
  }
}

void Assessor::ConsiderInstrument(const InstrumentRecord& inst) {
  const v1::InstrumentKind kind = inst.proto.kind();
  if (kind == v1::ORGANISATION_MEMBERSHIP) return;
  const PartyRecord* pf = inst.Party(from_);
  const PartyRecord* pt = inst.Party(to_);
  if (pt == nullptr) return;
  // Two members of the EU are not bound to each other by the EU's
  // agreement with a third state.
  if (kind == v1::BILATERAL_TREATY && pf->side == pt->side) return;
  const bool pol = kind == v1::POLITICAL_DECLARATION;
  if (!pol && StandingUnknown(inst, *pf, *pt)) return;
  bool f_bound = pf->BoundOn(day_, pol);
  bool t_bound = pt->BoundOn(day_, pol);
  std::string why_from = f_bound ? "" : NotBoundReason(inst, *pf, day_);
  std::string why_to = t_bound ? "" : NotBoundReason(inst, *pt, day_);
  for (int side = 0; side < 2; ++side) {
    const std::string& territory = side == 0 ? from_territory_ : to_territory_;
    const PartyRecord* p = side == 0 ? pf : pt;
    bool& bound = side == 0 ? f_bound : t_bound;
    if (territory.empty() || !bound || pol) continue;
    TerritoryStanding ts = StandingOfTerritory(inst, *p, territory, day_);
    if (ts.decided) {
      Note(ts.why + ".");
      if (!ts.included) {
        bound = false;
        (side == 0 ? why_from : why_to) = ts.why;
      }
    } else if (!p->territories.empty() || inst.proto.kind() == v1::ORGANISATION_ACT ||
               !p->via.empty()) {
      // A state that made territorial declarations and did not name this
      // territory: it follows the state, said so.
      Note(absl::StrCat(inst.proto.id(), ": no declaration of ", p->status->party(),
                        " names ", territory, "; it follows ", p->status->party(), "."));
    }
  }
  if (f_bound && t_bound) {
    (pol ? political_ : in_force_).push_back(&inst);
    if (pol) {
      Consider(inst, v1::VOLUNTARY_ONLY,
               "a political declaration: creates no obligation");
    }
  } else if (!pol) {
    // Each party that is not bound, once per distinct reason.
    if (!why_from.empty()) Note(why_from);
    if (!why_to.empty() && why_to != why_from) Note(why_to);
    Consider(inst, v1::NOT_IN_FORCE,
             !why_from.empty() && !why_to.empty() && why_from != why_to
                 ? absl::StrCat(why_from, "; ", why_to)
                 : (!why_from.empty() ? why_from : why_to));
  }
}

bool Assessor::StandingUnknown(const InstrumentRecord& inst, const PartyRecord& pf,
                               const PartyRecord& pt) {
  // An instrument that would not provide for the request cannot change
  // the outcome, whatever the parties' standing.
  if (inst.provisions[type_] == nullptr &&
      (pf.StandingUnknownOn(day_, inst.general_in_force) ||
       pt.StandingUnknownOn(day_, inst.general_in_force))) {
    Consider(
        inst, v1::STANDING_UNKNOWN,
        absl::StrCat("the library does not know whether it binds both on ", a_.date(),
                     "; it does not provide for ", type_name_, " in any case"));
    return true;
  }
  bool unknown = false;
  for (const PartyRecord* p : {&pf, &pt}) {
    if (!p->StandingUnknownOn(day_, inst.general_in_force)) continue;
    unknown = true;
    unknown_standing_.push_back(absl::StrCat(inst.proto.id(), ": ", p->status->party()));
    std::string why = absl::StrCat(
        inst.proto.id(), " lists ", p->status->party(),
        p->party_by != kNever
            ? absl::StrCat(" as a party by ", FormatDay(p->party_by),
                           ", but not when it became bound")
            : " without the dates of its signature, consent or entry into force",
        ": the library cannot say whether it is bound on ", a_.date(),
        " (source: ", p->status->source().empty() ? "none given" : p->status->source(),
        ").");
    Note(why);
    Consider(inst, v1::STANDING_UNKNOWN, why);
  }
  return unknown;
}

// Step 2: which of them provide for this assistance. A provision that
// needs a prior preservation (Art 30) gives way to the type a standalone
// request is (Art 31), and a reservation can take a route away.
bool Assessor::FindCandidates() {
  for (const InstrumentRecord* inst : in_force_) AddCandidate(*inst);
  return !candidates_.empty();
}

void Assessor::AddCandidate(const InstrumentRecord& inst) {
  const v1::Provision* p = inst.provisions[type_];
  int index = inst.provision_index[type_];
  if (p != nullptr && p->requires_prior_preservation() && !q_.follows_preservation) {
    const v1::Provision* other = inst.provisions[p->otherwise()];
    Note(
        absl::StrCat(Cite(inst, p->basis(0)),
                     " applies only to traffic data found while executing a preservation "
                     "request; this request follows none, so it is a request under ",
                     Cite(inst, other->basis(0)), " (",
                     v1::AssistanceType_Name(p->otherwise()), ")."));
    index = inst.provision_index[p->otherwise()];
    p = other;
  }
  if (p == nullptr) {
    Note(absl::StrCat(inst.proto.id(), " does not provide for ", type_name_, "."));
    Consider(inst, v1::NOT_APPLICABLE, absl::StrCat("does not provide for ", type_name_));
    return;
  }
  const std::string removed = RemovedRoute(inst, *p);
  if (!removed.empty()) {
    Note(removed + ".");
    Consider(inst, v1::NOT_APPLICABLE, removed);
    return;
  }
  candidates_.push_back({&inst, p, index});
}

std::string Assessor::RemovedRoute(const InstrumentRecord& inst,
                                   const v1::Provision& p) const {
  std::string removed;
  if (const PartyRecord* pt = inst.Party(to_)) {
    for (const HeldReservation& r : pt->reservations) {
      const v1::ReservationEffect& e = r.allowed->effect();
      if (!e.removes_route() || day_ < r.from || day_ >= r.until ||
          std::find(e.assistance_types().begin(), e.assistance_types().end(), type_) ==
              e.assistance_types().end()) {
        continue;
      }
      if (e.only_for_non_convention_offences() && convention_offence_) continue;
      removed = absl::StrCat(
          to_, "'s reservation under ", Cite(inst, r.entry->id()), " (since ",
          FormatDay(r.from), ") excludes ", v1::AssistanceType_Name(p.assistance_type()),
          ": ", r.entry->text().empty() ? r.allowed->summary() : r.entry->text());
    }
  }
  return removed;
}

void Assessor::PoliticalOnly() {
  for (const auto* p : political_) a_.add_also_applicable(p->proto.id());
  if (!unknown_standing_.empty()) {
    UnknownOutcome();
  } else if (!political_.empty()) {
    a_.set_obligation(v1::VOLUNTARY);
    a_.set_instrument(political_[0]->proto.id());
    a_.add_basis(political_[0]->proto.id());
    Note(absl::StrCat("Only political declarations are shared (",
                      absl::StrJoin(a_.also_applicable(), ", "),
                      "): they create no legal obligation; cooperation is voluntary."));
  } else {
    a_.set_obligation(v1::NOT_COVERED);
    Note(absl::StrCat("No instrument in force between ", from_, " and ", to_,
                      " covers this request, and they share no political declaration."));
  }
}

void Assessor::UnknownOutcome() {
  a_.set_obligation(v1::UNKNOWN_PARTY);
  a_.clear_instrument();
  a_.clear_basis();
  a_.clear_refusal_grounds();
  Note(absl::StrCat("No conclusion: the standing of ",
                    absl::StrJoin(unknown_standing_, ", "), " on ", a_.date(),
                    " is not in the treaty library, and nothing else decides the request "
                    "(UNKNOWN_PARTY, not NOT_COVERED)."));
}

}  // namespace comity::treaty_internal
