// Steps 3-5 of the decision procedure: the scope, thresholds and dual
// criminality of each candidate, precedence between instruments, and the
// instrument that governs.
#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/treaty/engine_internal.h"
#include "server/treaty/standing.h"

namespace comity::treaty_internal {
namespace {

int Strength(v1::Obligation o) {
  return o == v1::BINDING ? 2 : o == v1::DISCRETIONARY ? 1 : 0;
}

const char* KindName(const InstrumentRecord& inst) {
  switch (inst.proto.kind()) {
    case v1::MULTILATERAL_TREATY:
      return "multilateral treaty";
    case v1::BILATERAL_TREATY:
      return "bilateral treaty";
    case v1::ORGANISATION_ACT:
      return "act of an organisation";
    default:
      return "political declaration";
  }
}

template <typename Types>
bool CoversType(const Types& types, v1::AssistanceType type) {
  return types.empty() || std::find(types.begin(), types.end(), type) != types.end();
}

// Procedure instruments first: an organisation's act, then a bilateral
// treaty, then a multilateral convention.
int ProcedureRank(const InstrumentRecord& inst) {
  switch (inst.proto.kind()) {
    case v1::ORGANISATION_ACT:
      return 0;
    case v1::BILATERAL_TREATY:
      return 1;
    default:
      return 2;
  }
}

}  // namespace

// Step 3: scope, thresholds and dual criminality of each candidate.
bool Assessor::CheckScope() {
  std::vector<std::string> exclusion_basis;
  for (const Candidate& c : candidates_) {
    const std::string excluded = ScopeExclusion(c);
    if (!excluded.empty()) {
      Note(excluded);
      Consider(*c.inst, v1::NOT_APPLICABLE, excluded);
      exclusion_basis.push_back(Cite(*c.inst, c.provision->basis(0)));
      continue;
    }
    viable_.push_back(c);
  }
  if (!viable_.empty()) return true;
  a_.set_obligation(v1::NOT_COVERED);
  a_.set_instrument(candidates_[0].inst->proto.id());
  for (auto& b : exclusion_basis) a_.add_basis(b);
  for (const auto* p : political_) a_.add_also_applicable(p->proto.id());
  if (!political_.empty()) {
    Note(absl::StrCat("Shared political declarations (",
                      absl::StrJoin(a_.also_applicable(), ", "),
                      ") allow voluntary cooperation only."));
  }
  return false;
}

std::string Assessor::ScopeExclusion(const Candidate& c) {
  const v1::Provision& p = *c.provision;
  const std::string& id = c.inst->proto.id();
  const std::string first_basis = Cite(*c.inst, p.basis(0));
  std::string excluded;
  if (p.scope() == v1::CONVENTION_OFFENCES && !convention_offence_) {
    excluded = absl::StrCat(first_basis,
                            " covers only the offences the instrument establishes (",
                            id == "ETS185" ? "Arts 2-11" : "its own categories",
                            "); an OTHER offence is outside it.");
  } else if (p.scope() == v1::CONVENTION_OR_SERIOUS_OFFENCES && convention_offence_) {
    Note(absl::StrCat(first_basis,
                      " covers the instrument's own offences whatever their "
                      "penalty."));
  } else if (p.min_penalty_months() > 0) {
    const uint32_t min = p.min_penalty_months();
    const bool both = p.min_penalty_both_parties() || p.scope() != v1::SERIOUS_OFFENCES;
    if (q_.penalty_months > 0 && q_.penalty_months < min) {
      excluded = absl::StrCat(first_basis, ": the maximum penalty in ", from_, " (",
                              q_.penalty_months, " months) is below the threshold of ",
                              min, " months.");
    } else if (p.min_penalty_both_parties() && q_.requested_penalty_months > 0 &&
               q_.requested_penalty_months < min) {
      excluded = absl::StrCat(first_basis, ": the maximum penalty in ", to_, " (",
                              q_.requested_penalty_months,
                              " months) is below the threshold of ", min, " months.");
    } else if (q_.penalty_months == 0 || (both && p.min_penalty_both_parties() &&
                                          q_.requested_penalty_months == 0)) {
      Note(absl::StrCat(
          first_basis, ": the threshold of ", min, " months",
          p.min_penalty_both_parties() ? " in both parties" : "",
          " could not be confirmed (penalty unknown); give the maximum penalties "
          "to settle it."));
    }
  }
  if (excluded.empty() && p.dual_criminality_mandatory() &&
      q_.dual_criminality == v1::DUAL_CRIMINALITY_NOT_MET) {
    excluded = absl::StrCat(first_basis,
                            " requires the conduct to be an offence in both "
                            "parties; it is not one in ",
                            to_, ".");
  }
  return excluded;
}

// Step 4: precedence. An instrument that replaces another between the
// same two parties (EIO Art 34(1), EAW Art 31) takes it out; one that
// supplements another (EU MLA 2000 Art 1, EU-US Art 3) leaves it
// governing.
void Assessor::ApplyPrecedence() {
  for (const Candidate& c : viable_) {
    for (const v1::Precedence& pr : c.inst->proto.precedence()) {
      if (!CoversType(pr.assistance_types(), type_) || !InForceHas(pr.instrument())) {
        continue;
      }
      const InstrumentRecord* other = library_.Find(pr.instrument());
      const std::string why =
          absl::StrCat(Cite(*c.inst, pr.basis()),
                       pr.effect() == v1::REPLACES ? ": replaces " : ": supplements ",
                       pr.instrument(), " between ", from_, " and ", to_);
      if (pr.effect() == v1::REPLACES) {
        replaced_.push_back(other);
        Consider(*other, v1::REPLACED, why);
        Note(why + ".");
      } else {
        supplements_.push_back({c.inst, why});
      }
    }
  }
  for (const Candidate& c : viable_) {
    if (std::find(replaced_.begin(), replaced_.end(), c.inst) == replaced_.end()) {
      kept_.push_back(c);
    }
  }
  if (kept_.empty()) kept_ = viable_;  // Mutual replacement: a library error; keep all.
}

bool Assessor::InForceHas(const std::string& id) const {
  for (const InstrumentRecord* i : in_force_) {
    if (i->proto.id() == id) return true;
  }
  return false;
}

const std::string* Assessor::SupplementReason(const InstrumentRecord* i) const {
  for (const auto& [who, why] : supplements_) {
    if (who == i) return &why;
  }
  return nullptr;
}

// Step 5: the governing instrument. A mutual legal assistance (or
// extradition) instrument in force supplies the procedure and grounds
// (ETS185 Arts 25(4), 27(1), 39); a specific multilateral article (Arts
// 29, 30, 33) applies with its own grounds whatever governs; the
// strongest multilateral provision is a floor.
void Assessor::ChooseGoverning() {
  for (const Candidate& c : kept_) {
    if (c.inst->proto.governs_procedure()) {
      const bool supplementer = SupplementReason(c.inst) != nullptr;
      if (proc_ == nullptr ||
          std::make_tuple(supplementer, ProcedureRank(*c.inst)) <
              std::make_tuple(SupplementReason(proc_->inst) != nullptr,
                              ProcedureRank(*proc_->inst))) {
        proc_ = &c;
      }
    } else if (c.inst->proto.kind() == v1::MULTILATERAL_TREATY) {
      if (floor_ == nullptr ||
          std::make_tuple(Strength(c.provision->obligation()), c.provision->specific()) >
              std::make_tuple(Strength(floor_->provision->obligation()),
                              floor_->provision->specific())) {
        floor_ = &c;
      }
    } else if (other_route_ == nullptr) {
      other_route_ = &c;
    }
  }
  if (floor_ != nullptr && floor_->provision->specific()) {
    deciding_ = floor_;
  } else if (proc_ != nullptr) {
    deciding_ = proc_;
  } else if (floor_ != nullptr) {
    deciding_ = floor_;
  } else {
    deciding_ = other_route_;
  }
  type_ = deciding_->provision->assistance_type();
  RecordGoverning();
  RecordOthers();
}

// What the deciding provision, the procedure instrument and the floor make
// of the request.
void Assessor::RecordGoverning() {
  const InstrumentRecord& inst = *deciding_->inst;
  const v1::Provision& p = *deciding_->provision;
  a_.set_instrument(inst.proto.id());
  a_.set_obligation(p.obligation());
  for (const std::string& b : p.basis()) a_.add_basis(Cite(inst, b));
  const InstrumentRecord* procedure = proc_ != nullptr ? proc_->inst : &inst;
  a_.set_procedure_instrument(procedure->proto.id());
  Note(absl::StrCat(
      inst.proto.id(), " (", KindName(inst),
      ") decides: ", absl::StrJoin(a_.basis(), ", "), " makes ",
      v1::AssistanceType_Name(type_), " ", v1::Obligation_Name(p.obligation()),
      p.addressed_to_provider() ? " for the service provider addressed" : "", "."));
  if (deciding_ == floor_ && proc_ != nullptr) {
    Consider(
        inst, v1::FLOOR,
        absl::StrCat(Cite(inst, p.basis(0)),
                     " is a specific article: it applies with its own grounds whatever "
                     "governs (ETS185 Art 25(4), 'except as otherwise specifically "
                     "provided')"));
    Consider(*proc_->inst, v1::GOVERNS,
             absl::StrCat("a mutual legal assistance instrument in force (",
                          Cite(*proc_->inst, proc_->provision->basis(0)),
                          "): supplies the procedure and the channel"));
    Note(absl::StrCat(Cite(inst, p.basis(0)),
                      " is a specific article: it applies with its own grounds; ",
                      proc_->inst->proto.id(), " supplies the procedure and channel."));
  } else {
    Consider(inst, v1::GOVERNS,
             absl::StrCat(
                 Cite(inst, p.basis(0)),
                 deciding_ == proc_ ? ": the mutual legal assistance instrument in force "
                                      "supplies the procedure, grounds and deadlines"
                 : deciding_ == floor_
                     ? ": no mutual legal assistance instrument covers it, so the "
                       "convention's own procedure applies"
                     : ": the only instrument covering it"));
  }
  if (deciding_ == proc_ && floor_ != nullptr) {
    Consider(
        *floor_->inst, v1::FLOOR,
        absl::StrCat(Cite(*floor_->inst, floor_->provision->basis(0)),
                     " still applies as a floor; its general procedure (ETS185 Art 27) "
                     "does not (Art 27(1))"));
    Note(absl::StrCat(inst.proto.id(), " supplies the procedure and grounds; ",
                      Cite(*floor_->inst, floor_->provision->basis(0)),
                      " still applies as a floor."));
    if (Strength(floor_->provision->obligation()) > Strength(p.obligation())) {
      a_.set_obligation(floor_->provision->obligation());
      for (const std::string& b : floor_->provision->basis()) {
        a_.add_basis(Cite(*floor_->inst, b));
      }
      Note(absl::StrCat("The floor raises the obligation to ",
                        v1::Obligation_Name(floor_->provision->obligation()), "."));
    }
  }
}

// The other instruments kept, the parties' unverified entries, the
// instruments not considered, and what else applies.
void Assessor::RecordOthers() {
  const InstrumentRecord& inst = *deciding_->inst;
  for (const Candidate& c : kept_) {
    if (&c == deciding_ || &c == proc_ || &c == floor_) continue;
    if (const std::string* why = SupplementReason(c.inst)) {
      Consider(*c.inst, v1::SUPPLEMENTING, *why);
      Note(*why + ".");
    } else if (!c.inst->proto.governs_procedure() &&
               c.inst->proto.kind() != v1::MULTILATERAL_TREATY) {
      Consider(
          *c.inst, v1::OTHER_ROUTE,
          absl::StrCat(Cite(*c.inst, c.provision->basis(0)), " offers another route"));
      Note(absl::StrCat("Also: ", c.inst->proto.id(), " (",
                        absl::StrJoin(c.provision->basis(), ", "),
                        ") offers another route."));
    } else {
      Consider(*c.inst, v1::SUPPLEMENTING,
               absl::StrCat(Cite(*c.inst, c.provision->basis(0)),
                            " also applies between them (no precedence rule recorded)"));
    }
  }
  for (const std::string* code : {&from_, &to_}) {
    const PartyRecord* party = inst.Party(*code);
    if (party != nullptr && party->status->unverified()) {
      Note(UnverifiedNote(inst, *party));
    }
    if (proc_ != nullptr && proc_->inst != &inst) {
      const PartyRecord* pp = proc_->inst->Party(*code);
      if (pp != nullptr && pp->status->unverified()) {
        Note(UnverifiedNote(*proc_->inst, *pp));
      }
    }
  }
  if (!unknown_standing_.empty()) {
    Note(absl::StrCat("Not considered (standing unknown): ",
                      absl::StrJoin(unknown_standing_, ", "), "."));
  }
  for (const InstrumentRecord* other : in_force_) {
    if (other != &inst) a_.add_also_applicable(other->proto.id());
  }
  for (const InstrumentRecord* pol : political_) a_.add_also_applicable(pol->proto.id());
}

}  // namespace comity::treaty_internal
