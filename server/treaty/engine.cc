#include "server/treaty/engine.h"

#include <algorithm>
#include <bitset>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "server/core/parties.h"
#include "server/treaty/standing.h"
#include "server/treaty/territories.h"

namespace comity {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

constexpr int kGroundCount = 12;
using Grounds = std::bitset<kGroundCount>;

struct Candidate {
  const InstrumentRecord* inst;
  const v1::Provision* provision;
  int provision_index;
};

int Strength(v1::Obligation o) {
  return o == v1::BINDING ? 2 : o == v1::DISCRETIONARY ? 1 : 0;
}

std::string Cite(const InstrumentRecord& inst, const std::string& article) {
  return absl::StrCat(inst.proto.id(), " ", article);
}

std::string GroundName(int g) { return v1::RefusalGround_Name(static_cast<v1::RefusalGround>(g)); }

// True if the field at `path` of `msg` is present (non-empty, non-zero).
bool HasContent(const Message& msg, const std::vector<const FieldDescriptor*>& path) {
  const Message* m = &msg;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    if (!m->GetReflection()->HasField(*m, path[i])) return false;
    m = &m->GetReflection()->GetMessage(*m, path[i]);
  }
  const FieldDescriptor* f = path.back();
  const auto* r = m->GetReflection();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      return !r->GetString(*m, f).empty();
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(*m, f);
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return r->HasField(*m, f);
    case FieldDescriptor::CPPTYPE_ENUM:
      return r->GetEnumValue(*m, f) != 0;
    default:
      return r->HasField(*m, f);
  }
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

// "Art 27(9)(e)" -> "27".
std::string ArticleOf(absl::string_view ref) {
  absl::ConsumePrefix(&ref, "Art ");
  size_t end = 0;
  while (end < ref.size() && absl::ascii_isalnum(ref[end])) ++end;
  return std::string(ref.substr(0, end));
}


template <typename Types>
bool CoversType(const Types& types, v1::AssistanceType type) {
  return types.empty() || std::find(types.begin(), types.end(), type) != types.end();
}

int Rank(v1::Urgency u) { return u == v1::URGENCY_UNSPECIFIED ? v1::ROUTINE : u; }

// The first rule the request's urgency reaches; nullptr if none.
const v1::ChannelRule* PickChannel(const google::protobuf::RepeatedPtrField<v1::ChannelRule>& rules,
                                   v1::Urgency urgency) {
  for (const v1::ChannelRule& r : rules) {
    if (r.min_urgency() == v1::URGENCY_UNSPECIFIED || Rank(urgency) >= Rank(r.min_urgency())) {
      return &r;
    }
  }
  return nullptr;
}

// Procedure instruments first: an organisation's act, then a bilateral
// treaty, then a multilateral convention.
int ProcedureRank(const InstrumentRecord& inst) {
  switch (inst.proto.kind()) {
    case v1::ORGANISATION_ACT: return 0;
    case v1::BILATERAL_TREATY: return 1;
    default: return 2;
  }
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
  for (const std::string* code : {&q.requesting_party, &q.requested_party}) {
    if (library.IsOrganisation(*code)) {
      return absl::InvalidArgumentError(absl::StrCat(
          *code, " is an organisation, not a state: name the member state that requests or is "
                 "requested (its acts and agreements bind each member over its membership)"));
    }
    if (!IsPartyCode(*code)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", *code, "' is not an ISO 3166-1 alpha-2 code (e.g. FR, JP, GB); parties are "
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
  // A territory with its own code is assessed as its state, under the
  // state's territorial declarations.
  std::string from = q.requesting_party;
  std::string to = q.requested_party;
  std::string from_territory, to_territory;
  if (const Territory* t = FindTerritory(from)) {
    from_territory = from;
    from = t->sovereign;
  }
  if (const Territory* t = FindTerritory(to)) {
    to_territory = to;
    to = t->sovereign;
  }
  if (from == to) {
    return absl::InvalidArgumentError(absl::StrCat(
        q.requesting_party, " and ", q.requested_party, " are the same state (",
        from, "): a request between them is domestic, not international cooperation"));
  }
  const Day day = ToDay(q.date);
  v1::AssistanceType type = q.assistance_type;  // The deciding provision's, from step 5 on.
  const std::string type_name = v1::AssistanceType_Name(type);
  const bool convention_offence = q.offence != v1::OTHER;

  v1::Assessment a;
  a.set_library_version(library.version());
  a.set_date(absl::FormatCivilTime(q.date));
  a.set_requesting_party(q.requesting_party);
  a.set_requested_party(q.requested_party);
  a.set_territory(!to_territory.empty() ? to_territory : from_territory);
  auto note = [&a](std::string text) { a.add_notes(std::move(text)); };
  auto consider = [&a](const InstrumentRecord& inst, v1::InstrumentRole role, std::string why) {
    for (auto& c : *a.mutable_considered()) {
      if (c.instrument() == inst.proto.id()) {
        c.set_role(role);
        c.set_reason(std::move(why));
        return;
      }
    }
    v1::ConsideredInstrument* c = a.add_considered();
    c->set_instrument(inst.proto.id());
    c->set_role(role);
    c->set_reason(std::move(why));
  };
  for (const std::string* t : {&from_territory, &to_territory}) {
    if (t->empty()) continue;
    const Territory* info = FindTerritory(*t);
    note(absl::StrCat(*t, " (", info->name, ") is a territory of ", info->sovereign,
                      ": assessed under ", info->sovereign,
                      "'s instruments as far as its territorial declarations extend them (ETS185 "
                      "Art 38; otherwise a treaty binds a state for its whole territory, VCLT "
                      "Art 29)."));
  }

  // Step 0: a state no instrument lists is unknown to the library; saying
  // NOT_COVERED would be a legal conclusion the library cannot support.
  std::vector<std::string> absent;
  for (const std::string* code : {&from, &to}) {
    if (library.InstrumentsOf(*code).empty()) absent.push_back(*code);
  }
  if (!absent.empty()) {
    a.set_obligation(v1::UNKNOWN_PARTY);
    for (const std::string& code : absent) {
      note(absl::StrCat(code, " is not in the treaty library: no instrument in it lists ", code,
                        " as a party or signatory, so no conclusion is drawn (not NOT_COVERED). "
                        "Add its status to deploy/treaties/ if it is bound by an instrument."));
    }
    return a;
  }

  // Step 1: instruments both parties are bound by on the date.
  std::vector<const InstrumentRecord*> in_force, political;
  std::vector<std::string> unknown_standing;  // "ETS185: NO".
  for (const InstrumentRecord* inst : library.InstrumentsOf(from)) {
    const v1::InstrumentKind kind = inst->proto.kind();
    if (kind == v1::ORGANISATION_MEMBERSHIP) continue;
    const PartyRecord* pf = inst->Party(from);
    const PartyRecord* pt = inst->Party(to);
    if (pt == nullptr) continue;
    // Two members of the EU are not bound to each other by the EU's
    // agreement with a third state.
    if (kind == v1::BILATERAL_TREATY && pf->side == pt->side) continue;
    const bool pol = kind == v1::POLITICAL_DECLARATION;
    if (!pol) {
      bool unknown = false;
      // An instrument that would not provide for the request cannot change
      // the outcome, whatever the parties' standing.
      if (inst->provisions[type] == nullptr &&
          (pf->StandingUnknownOn(day, inst->general_in_force) ||
           pt->StandingUnknownOn(day, inst->general_in_force))) {
        consider(*inst, v1::STANDING_UNKNOWN,
                 absl::StrCat("the library does not know whether it binds both on ", a.date(),
                              "; it does not provide for ", type_name, " in any case"));
        continue;
      }
      for (const PartyRecord* p : {pf, pt}) {
        if (!p->StandingUnknownOn(day, inst->general_in_force)) continue;
        unknown = true;
        unknown_standing.push_back(absl::StrCat(inst->proto.id(), ": ", p->status->party()));
        std::string why = absl::StrCat(
            inst->proto.id(), " lists ", p->status->party(),
            p->party_by != kNever
                ? absl::StrCat(" as a party by ", FormatDay(p->party_by),
                               ", but not when it became bound")
                : " without the dates of its signature, consent or entry into force",
            ": the library cannot say whether it is bound on ", a.date(), " (source: ",
            p->status->source().empty() ? "none given" : p->status->source(), ").");
        note(why);
        consider(*inst, v1::STANDING_UNKNOWN, why);
      }
      if (unknown) continue;
    }
    bool f_bound = pf->BoundOn(day, pol);
    bool t_bound = pt->BoundOn(day, pol);
    std::string why_from = f_bound ? "" : NotBoundReason(*inst, *pf, day);
    std::string why_to = t_bound ? "" : NotBoundReason(*inst, *pt, day);
    for (int side = 0; side < 2; ++side) {
      const std::string& territory = side == 0 ? from_territory : to_territory;
      const PartyRecord* p = side == 0 ? pf : pt;
      bool& bound = side == 0 ? f_bound : t_bound;
      if (territory.empty() || !bound || pol) continue;
      TerritoryStanding ts = StandingOfTerritory(*inst, *p, territory, day);
      if (ts.decided) {
        note(ts.why + ".");
        if (!ts.included) {
          bound = false;
          (side == 0 ? why_from : why_to) = ts.why;
        }
      } else if (!p->territories.empty() || inst->proto.kind() == v1::ORGANISATION_ACT ||
                 !p->via.empty()) {
        // A state that made territorial declarations and did not name this
        // territory: it follows the state, said so.
        note(absl::StrCat(inst->proto.id(), ": no declaration of ", p->status->party(),
                          " names ", territory, "; it follows ", p->status->party(), "."));
      }
    }
    if (f_bound && t_bound) {
      (pol ? political : in_force).push_back(inst);
      if (pol) consider(*inst, v1::VOLUNTARY_ONLY, "a political declaration: creates no obligation");
    } else if (!pol) {
      // Each party that is not bound, once per distinct reason.
      if (!why_from.empty()) note(why_from);
      if (!why_to.empty() && why_to != why_from) note(why_to);
      consider(*inst, v1::NOT_IN_FORCE,
               !why_from.empty() && !why_to.empty() && why_from != why_to
                   ? absl::StrCat(why_from, "; ", why_to)
                   : (!why_from.empty() ? why_from : why_to));
    }
  }
  // No conclusion where the outcome could depend on a standing the library
  // does not know.
  auto unknown_outcome = [&]() {
    a.set_obligation(v1::UNKNOWN_PARTY);
    a.clear_instrument();
    a.clear_basis();
    a.clear_refusal_grounds();
    note(absl::StrCat("No conclusion: the standing of ", absl::StrJoin(unknown_standing, ", "),
                      " on ", a.date(),
                      " is not in the treaty library, and nothing else decides the request "
                      "(UNKNOWN_PARTY, not NOT_COVERED)."));
  };
  if (!in_force.empty()) {
    std::vector<std::string> ids;
    for (const auto* i : in_force) ids.push_back(i->proto.id());
    note(absl::StrCat("In force between ", from, " and ", to, " on ", a.date(), ": ",
                      absl::StrJoin(ids, ", "), "."));
  }

  // Step 2: which of them provide for this assistance. A provision that
  // needs a prior preservation (Art 30) gives way to the type a standalone
  // request is (Art 31), and a reservation can take a route away.
  std::vector<Candidate> candidates;
  for (const InstrumentRecord* inst : in_force) {
    const v1::Provision* p = inst->provisions[type];
    int index = inst->provision_index[type];
    if (p != nullptr && p->requires_prior_preservation() && !q.follows_preservation) {
      const v1::Provision* other = inst->provisions[p->otherwise()];
      note(absl::StrCat(Cite(*inst, p->basis(0)),
                        " applies only to traffic data found while executing a preservation "
                        "request; this request follows none, so it is a request under ",
                        Cite(*inst, other->basis(0)),
                        " (", v1::AssistanceType_Name(p->otherwise()), ")."));
      index = inst->provision_index[p->otherwise()];
      p = other;
    }
    if (p == nullptr) {
      note(absl::StrCat(inst->proto.id(), " does not provide for ", type_name, "."));
      consider(*inst, v1::NOT_APPLICABLE, absl::StrCat("does not provide for ", type_name));
      continue;
    }
    std::string removed;
    if (const PartyRecord* pt = inst->Party(to)) {
      for (const HeldReservation& r : pt->reservations) {
        const v1::ReservationEffect& e = r.allowed->effect();
        if (!e.removes_route() || day < r.from || day >= r.until ||
            std::find(e.assistance_types().begin(), e.assistance_types().end(), type) ==
                e.assistance_types().end()) {
          continue;
        }
        if (e.only_for_non_convention_offences() && convention_offence) continue;
        removed = absl::StrCat(to, "'s reservation under ", Cite(*inst, r.entry->id()),
                               " (since ", FormatDay(r.from), ") excludes ",
                               v1::AssistanceType_Name(p->assistance_type()), ": ",
                               r.entry->text().empty() ? r.allowed->summary() : r.entry->text());
      }
    }
    if (!removed.empty()) {
      note(removed + ".");
      consider(*inst, v1::NOT_APPLICABLE, removed);
      continue;
    }
    candidates.push_back({inst, p, index});
  }
  auto political_only = [&]() {
    for (const auto* p : political) a.add_also_applicable(p->proto.id());
    if (!unknown_standing.empty()) {
      unknown_outcome();
    } else if (!political.empty()) {
      a.set_obligation(v1::VOLUNTARY);
      a.set_instrument(political[0]->proto.id());
      a.add_basis(political[0]->proto.id());
      note(absl::StrCat("Only political declarations are shared (",
                        absl::StrJoin(a.also_applicable(), ", "),
                        "): they create no legal obligation; cooperation is voluntary."));
    } else {
      a.set_obligation(v1::NOT_COVERED);
      note(absl::StrCat("No instrument in force between ", from, " and ", to,
                        " covers this request, and they share no political declaration."));
    }
  };
  if (candidates.empty()) {
    political_only();
    return a;
  }

  // Step 3: scope, thresholds and dual criminality of each candidate.
  std::vector<Candidate> viable;
  std::vector<std::string> exclusion_basis;
  for (const Candidate& c : candidates) {
    const v1::Provision& p = *c.provision;
    const std::string& id = c.inst->proto.id();
    const std::string first_basis = Cite(*c.inst, p.basis(0));
    std::string excluded;
    if (p.scope() == v1::CONVENTION_OFFENCES && !convention_offence) {
      excluded = absl::StrCat(first_basis, " covers only the offences the instrument establishes (",
                              id == "ETS185" ? "Arts 2-11" : "its own categories",
                              "); an OTHER offence is outside it.");
    } else if (p.scope() == v1::CONVENTION_OR_SERIOUS_OFFENCES && convention_offence) {
      note(absl::StrCat(first_basis, " covers the instrument's own offences whatever their "
                                     "penalty."));
    } else if (p.min_penalty_months() > 0) {
      const uint32_t min = p.min_penalty_months();
      const bool both = p.min_penalty_both_parties() || p.scope() != v1::SERIOUS_OFFENCES;
      if (q.penalty_months > 0 && q.penalty_months < min) {
        excluded = absl::StrCat(first_basis, ": the maximum penalty in ", from, " (",
                                q.penalty_months, " months) is below the threshold of ", min,
                                " months.");
      } else if (p.min_penalty_both_parties() && q.requested_penalty_months > 0 &&
                 q.requested_penalty_months < min) {
        excluded = absl::StrCat(first_basis, ": the maximum penalty in ", to, " (",
                                q.requested_penalty_months, " months) is below the threshold of ",
                                min, " months.");
      } else if (q.penalty_months == 0 ||
                 (both && p.min_penalty_both_parties() && q.requested_penalty_months == 0)) {
        note(absl::StrCat(first_basis, ": the threshold of ", min, " months",
                          p.min_penalty_both_parties() ? " in both parties" : "",
                          " could not be confirmed (penalty unknown); give the maximum penalties "
                          "to settle it."));
      }
    }
    if (excluded.empty() && p.dual_criminality_mandatory() &&
        q.dual_criminality == v1::DUAL_CRIMINALITY_NOT_MET) {
      excluded = absl::StrCat(first_basis, " requires the conduct to be an offence in both "
                                           "parties; it is not one in ", to, ".");
    }
    if (!excluded.empty()) {
      note(excluded);
      consider(*c.inst, v1::NOT_APPLICABLE, excluded);
      exclusion_basis.push_back(first_basis);
      continue;
    }
    viable.push_back(c);
  }
  if (viable.empty()) {
    a.set_obligation(v1::NOT_COVERED);
    a.set_instrument(candidates[0].inst->proto.id());
    for (auto& b : exclusion_basis) a.add_basis(b);
    for (const auto* p : political) a.add_also_applicable(p->proto.id());
    if (!political.empty()) {
      note(absl::StrCat("Shared political declarations (",
                        absl::StrJoin(a.also_applicable(), ", "),
                        ") allow voluntary cooperation only."));
    }
    return a;
  }

  // Step 4: precedence. An instrument that replaces another between the
  // same two parties (EIO Art 34(1), EAW Art 31) takes it out; one that
  // supplements another (EU MLA 2000 Art 1, EU-US Art 3) leaves it
  // governing.
  auto in_force_has = [&](const std::string& id) {
    for (const InstrumentRecord* i : in_force) {
      if (i->proto.id() == id) return true;
    }
    return false;
  };
  std::vector<std::pair<const InstrumentRecord*, std::string>> supplements;  // (who, why)
  std::vector<const InstrumentRecord*> replaced;
  for (const Candidate& c : viable) {
    for (const v1::Precedence& pr : c.inst->proto.precedence()) {
      if (!CoversType(pr.assistance_types(), type) || !in_force_has(pr.instrument())) continue;
      const InstrumentRecord* other = library.Find(pr.instrument());
      const std::string why = absl::StrCat(
          Cite(*c.inst, pr.basis()), pr.effect() == v1::REPLACES ? ": replaces " : ": supplements ",
          pr.instrument(), " between ", from, " and ", to);
      if (pr.effect() == v1::REPLACES) {
        replaced.push_back(other);
        consider(*other, v1::REPLACED, why);
        note(why + ".");
      } else {
        supplements.push_back({c.inst, why});
      }
    }
  }
  auto is_replaced = [&](const InstrumentRecord* i) {
    return std::find(replaced.begin(), replaced.end(), i) != replaced.end();
  };
  auto supplement_reason = [&](const InstrumentRecord* i) -> const std::string* {
    for (const auto& [who, why] : supplements) {
      if (who == i) return &why;
    }
    return nullptr;
  };
  std::vector<Candidate> kept;
  for (const Candidate& c : viable) {
    if (!is_replaced(c.inst)) kept.push_back(c);
  }
  if (kept.empty()) kept = viable;  // Mutual replacement: a library error; keep all.

  // Step 5: the governing instrument. A mutual legal assistance (or
  // extradition) instrument in force supplies the procedure and grounds
  // (ETS185 Arts 25(4), 27(1), 39); a specific multilateral article (Arts
  // 29, 30, 33) applies with its own grounds whatever governs; the
  // strongest multilateral provision is a floor.
  const Candidate* proc = nullptr;   // Supplies procedure.
  const Candidate* floor = nullptr;  // A multilateral convention's own article.
  const Candidate* other_route = nullptr;
  for (const Candidate& c : kept) {
    if (c.inst->proto.governs_procedure()) {
      const bool supplementer = supplement_reason(c.inst) != nullptr;
      if (proc == nullptr ||
          std::make_tuple(supplementer, ProcedureRank(*c.inst)) <
              std::make_tuple(supplement_reason(proc->inst) != nullptr, ProcedureRank(*proc->inst))) {
        proc = &c;
      }
    } else if (c.inst->proto.kind() == v1::MULTILATERAL_TREATY) {
      if (floor == nullptr ||
          std::make_tuple(Strength(c.provision->obligation()), c.provision->specific()) >
              std::make_tuple(Strength(floor->provision->obligation()),
                              floor->provision->specific())) {
        floor = &c;
      }
    } else if (other_route == nullptr) {
      other_route = &c;
    }
  }
  const Candidate* deciding = nullptr;
  if (floor != nullptr && floor->provision->specific()) {
    deciding = floor;
  } else if (proc != nullptr) {
    deciding = proc;
  } else if (floor != nullptr) {
    deciding = floor;
  } else {
    deciding = other_route;
  }
  const InstrumentRecord& inst = *deciding->inst;
  const v1::Provision& p = *deciding->provision;
  type = p.assistance_type();
  a.set_instrument(inst.proto.id());
  a.set_obligation(p.obligation());
  for (const std::string& b : p.basis()) a.add_basis(Cite(inst, b));
  const InstrumentRecord* procedure = proc != nullptr ? proc->inst : &inst;
  a.set_procedure_instrument(procedure->proto.id());
  note(absl::StrCat(inst.proto.id(), " (", KindName(inst), ") decides: ",
                    absl::StrJoin(a.basis(), ", "), " makes ", v1::AssistanceType_Name(type), " ",
                    v1::Obligation_Name(p.obligation()),
                    p.addressed_to_provider() ? " for the service provider addressed" : "", "."));
  if (deciding == floor && proc != nullptr) {
    consider(inst, v1::FLOOR,
             absl::StrCat(Cite(inst, p.basis(0)),
                          " is a specific article: it applies with its own grounds whatever "
                          "governs (ETS185 Art 25(4), 'except as otherwise specifically "
                          "provided')"));
    consider(*proc->inst, v1::GOVERNS,
             absl::StrCat("a mutual legal assistance instrument in force (",
                          Cite(*proc->inst, proc->provision->basis(0)),
                          "): supplies the procedure and the channel"));
    note(absl::StrCat(Cite(inst, p.basis(0)),
                      " is a specific article: it applies with its own grounds; ",
                      proc->inst->proto.id(), " supplies the procedure and channel."));
  } else {
    consider(inst, v1::GOVERNS,
             absl::StrCat(Cite(inst, p.basis(0)),
                          deciding == proc ? ": the mutual legal assistance instrument in force "
                                             "supplies the procedure, grounds and deadlines"
                          : deciding == floor
                              ? ": no mutual legal assistance instrument covers it, so the "
                                "convention's own procedure applies"
                              : ": the only instrument covering it"));
  }
  if (deciding == proc && floor != nullptr) {
    consider(*floor->inst, v1::FLOOR,
             absl::StrCat(Cite(*floor->inst, floor->provision->basis(0)),
                          " still applies as a floor; its general procedure (ETS185 Art 27) "
                          "does not (Art 27(1))"));
    note(absl::StrCat(inst.proto.id(), " supplies the procedure and grounds; ",
                      Cite(*floor->inst, floor->provision->basis(0)), " still applies as a floor."));
    if (Strength(floor->provision->obligation()) > Strength(p.obligation())) {
      a.set_obligation(floor->provision->obligation());
      for (const std::string& b : floor->provision->basis()) a.add_basis(Cite(*floor->inst, b));
      note(absl::StrCat("The floor raises the obligation to ",
                        v1::Obligation_Name(floor->provision->obligation()), "."));
    }
  }
  for (const Candidate& c : kept) {
    if (&c == deciding || &c == proc || &c == floor) continue;
    if (const std::string* why = supplement_reason(c.inst)) {
      consider(*c.inst, v1::SUPPLEMENTING, *why);
      note(*why + ".");
    } else if (!c.inst->proto.governs_procedure() &&
               c.inst->proto.kind() != v1::MULTILATERAL_TREATY) {
      consider(*c.inst, v1::OTHER_ROUTE,
               absl::StrCat(Cite(*c.inst, c.provision->basis(0)), " offers another route"));
      note(absl::StrCat("Also: ", c.inst->proto.id(), " (",
                        absl::StrJoin(c.provision->basis(), ", "), ") offers another route."));
    } else {
      consider(*c.inst, v1::SUPPLEMENTING,
               absl::StrCat(Cite(*c.inst, c.provision->basis(0)),
                            " also applies between them (no precedence rule recorded)"));
    }
  }
  for (const std::string* code : {&from, &to}) {
    const PartyRecord* party = inst.Party(*code);
    if (party != nullptr && party->status->unverified()) note(UnverifiedNote(inst, *party));
    if (proc != nullptr && proc->inst != &inst) {
      const PartyRecord* pp = proc->inst->Party(*code);
      if (pp != nullptr && pp->status->unverified()) note(UnverifiedNote(*proc->inst, *pp));
    }
  }
  if (!unknown_standing.empty()) {
    note(absl::StrCat("Not considered (standing unknown): ",
                      absl::StrJoin(unknown_standing, ", "), "."));
  }
  for (const InstrumentRecord* other : in_force) {
    if (other != &inst) a.add_also_applicable(other->proto.id());
  }
  for (const InstrumentRecord* pol : political) a.add_also_applicable(pol->proto.id());

  // Step 6: refusal and postponement grounds.
  Grounds grounds, postpone;
  for (int g : p.refusal_grounds()) grounds.set(g);
  for (int g : p.postponement_grounds()) postpone.set(g);
  const v1::GeneralProcedure* general = nullptr;  // Art 27, where it applies.
  if (p.uses_general_procedure()) {
    if (proc != nullptr && proc->inst != &inst) {
      note(absl::StrCat(proc->inst->proto.id(), " is in force between them, so ", inst.proto.id(),
                        "'s general procedure does not apply; ", proc->inst->proto.id(),
                        "'s conditions do."));
      for (int g : proc->provision->refusal_grounds()) grounds.set(g);
      for (int g : proc->provision->postponement_grounds()) postpone.set(g);
      grounds.set(v1::DOMESTIC_LAW);
    } else if (proc == nullptr) {
      general = &inst.proto.general_procedure();
      for (int g : general->refusal_grounds()) grounds.set(g);
      for (int g : general->postponement_grounds()) postpone.set(g);
      for (const std::string& b : general->basis()) a.add_basis(Cite(inst, b));
      for (const v1::Duty& d : general->duties()) {
        a.add_duties(absl::StrCat(Cite(inst, d.basis()), ": ", d.text()));
      }
      for (const std::string& n : general->notes()) note(n);
      if (!general->basis().empty()) {
        note(absl::StrCat("No mutual legal assistance instrument is in force between ", from,
                          " and ", to, ": ", Cite(inst, general->basis(0)),
                          " supplies the procedure and grounds."));
      }
    }
  }
  // Art 25(4)-style exclusions hold whatever governs: the floor's too.
  for (const Candidate* c : {deciding, floor}) {
    if (c == nullptr || !convention_offence) continue;
    if (c != deciding && c->inst == &inst) continue;
    const v1::Provision& cp = *c->provision;
    for (int g : cp.excluded_for_convention_offences()) {
      if (!grounds.test(g)) continue;
      grounds.reset(g);
      note(absl::StrCat(v1::OffenceCategory_Name(q.offence), " is an offence of ",
                        c->inst->proto.id(), "'s own categories: ",
                        cp.excluded_basis().empty() ? c->inst->proto.id()
                                                    : Cite(*c->inst, cp.excluded_basis()),
                        " excludes refusal on ", GroundName(g), "."));
    }
  }
  // A ground of postponement is never one of refusal (Art 27(5)).
  for (int g = 1; g < kGroundCount; ++g) {
    if (postpone.test(g) && grounds.test(g)) grounds.reset(g);
  }
  // Dual criminality: the deciding provision's rule, or the procedure
  // instrument's where the convention defers to it (Art 25(5)).
  const v1::Provision* dc_rule = &p;
  const InstrumentRecord* dc_inst = &inst;
  if (p.uses_general_procedure() && proc != nullptr && proc->inst != &inst) {
    dc_rule = proc->provision;
    dc_inst = proc->inst;
  }
  bool dc_required = dc_rule->dual_criminality_required() || p.dual_criminality_required();
  if (dc_required && !dc_rule->dual_criminality_waived_for().empty() &&
      std::find(dc_rule->dual_criminality_waived_for().begin(),
                dc_rule->dual_criminality_waived_for().end(),
                q.offence) != dc_rule->dual_criminality_waived_for().end()) {
    const uint32_t min = dc_rule->dual_criminality_waiver_min_months();
    const std::string cite = dc_rule->dual_criminality_waiver_basis().empty()
                                 ? dc_inst->proto.id()
                                 : Cite(*dc_inst, dc_rule->dual_criminality_waiver_basis());
    if (min == 0 || q.penalty_months >= min) {
      dc_required = false;
      grounds.reset(v1::DUAL_CRIMINALITY);
      note(absl::StrCat(cite, ": dual criminality is not verified for ",
                        v1::OffenceCategory_Name(q.offence),
                        min > 0 ? absl::StrCat(" punishable in ", from, " by at least ", min,
                                               " months")
                                : "",
                        "."));
    } else {
      note(absl::StrCat(cite, ": dual criminality would not be verified if ", from,
                        " punishes the offence by at least ", min, " months (",
                        q.penalty_months == 0 ? "penalty unknown"
                                              : absl::StrCat(q.penalty_months, " months given"),
                        ")."));
    }
  }
  a.set_dual_criminality_required(dc_required);
  if (dc_required) {
    if (q.dual_criminality == v1::DUAL_CRIMINALITY_MET) {
      grounds.reset(v1::DUAL_CRIMINALITY);
      note("Dual criminality is a condition and is stated to be met.");
    } else {
      grounds.set(v1::DUAL_CRIMINALITY);
      note(q.dual_criminality == v1::DUAL_CRIMINALITY_NOT_MET
               ? absl::StrCat("Dual criminality is a condition and is not met: ", to,
                              " may refuse on that ground.")
               : "Dual criminality is a condition and is not known to be met: it stays open.");
    }
  } else {
    if (grounds.test(v1::DUAL_CRIMINALITY) && !dc_rule->dual_criminality_waived_for().empty()) {
      grounds.reset(v1::DUAL_CRIMINALITY);
    }
    if (!grounds.test(v1::DUAL_CRIMINALITY)) {
      note(absl::StrCat("Dual criminality is not a condition of ", a.basis(0), "."));
    }
  }
  // Reservations of the requested party in force on the date.
  if (const PartyRecord* pt = inst.Party(to)) {
    for (const HeldReservation& r : pt->reservations) {
      const v1::ReservationEffect& e = r.allowed->effect();
      if (e.removes_route() ||
          std::find(e.assistance_types().begin(), e.assistance_types().end(), type) ==
              e.assistance_types().end()) {
        continue;
      }
      const std::string cite = Cite(inst, r.entry->id());
      if (day < r.from) continue;  // Made later: an assessment cites nothing after its date.
      if (day >= r.until) {
        note(absl::StrCat(to, "'s reservation under ", cite, " is not in effect on ", a.date(),
                          " (held ", FormatDay(r.from), ", withdrawn ", FormatDay(r.until),
                          ")."));
        continue;
      }
      if (e.only_for_non_convention_offences() && convention_offence) {
        note(absl::StrCat(to, "'s reservation under ", cite, " does not apply: ",
                          v1::OffenceCategory_Name(q.offence), " is an offence of ",
                          inst.proto.id(), "'s own categories."));
        continue;
      }
      a.add_basis(cite);
      for (int g : e.adds_refusal_grounds()) {
        if (g == v1::DUAL_CRIMINALITY && q.dual_criminality == v1::DUAL_CRIMINALITY_MET) {
          note(absl::StrCat(to, "'s reservation under ", cite,
                            " applies, but dual criminality is stated to be met."));
          continue;
        }
        grounds.set(g);
        note(absl::StrCat(to, "'s reservation under ", cite, " (since ", FormatDay(r.from),
                          ") opens the ground ", GroundName(g), "."));
      }
    }
  }
  for (int g = 1; g < kGroundCount; ++g) {
    if (grounds.test(g)) a.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
    if (postpone.test(g)) a.add_postponement_grounds(static_cast<v1::RefusalGround>(g));
  }
  if (postpone.any()) {
    const std::string& pb = !p.postponement_basis().empty() ? p.postponement_basis()
                            : general != nullptr          ? general->postponement_basis()
                                                          : std::string();
    note(absl::StrCat("Execution may be postponed, not refused, on ",
                      absl::StrJoin(a.postponement_grounds(), ", ",
                                    [](std::string* out, int g) { out->append(GroundName(g)); }),
                      pb.empty() ? "" : absl::StrCat(" (", Cite(inst, pb), ")"), "."));
  }

  // Step 7: the request's own form.
  if (q.request == nullptr) {
    if (!p.required_contents().empty()) {
      note(absl::StrCat("The request's contents were not checked against ",
                        Cite(inst, p.required_contents(0).basis()),
                        " (no request given)."));
    }
  } else {
    std::vector<std::string> missing;
    for (int i = 0; i < p.required_contents_size(); ++i) {
      if (!HasContent(*q.request, inst.content_paths[deciding->provision_index][i])) {
        const v1::RequiredContent& rc = p.required_contents(i);
        const std::string cite = Cite(inst, rc.basis());
        if (std::find(missing.begin(), missing.end(), cite) == missing.end()) {
          missing.push_back(cite);
        }
        v1::MissingContent* m = a.add_missing();
        m->set_field(rc.field());
        m->set_basis(cite);
        m->set_description(rc.description());
        note(absl::StrCat("Missing ", rc.field(), " (", cite,
                          rc.description().empty() ? "" : ": " + rc.description(), ")."));
      }
    }
    if (!missing.empty()) {
      a.set_obligation(v1::INVALID);
      a.clear_basis();
      for (auto& m : missing) a.add_basis(m);
      note(absl::StrCat("The request does not meet ", inst.proto.id(),
                        "'s own conditions: INVALID until it is completed."));
    }
  }

  // Step 8: deadlines, duties, the provision's own notes. The deciding
  // article's deadline, else the procedure instrument's.
  const v1::Provision* dl = &p;
  const InstrumentRecord* dl_inst = &inst;
  if (p.deadline_days() == 0 && proc != nullptr && proc->inst != &inst) {
    dl = proc->provision;
    dl_inst = proc->inst;
  }
  if (dl->deadline_days() > 0) {
    a.set_deadline_days(dl->deadline_days());
    note(absl::StrCat(dl->deadline_basis().empty() ? dl_inst->proto.id()
                                                   : Cite(*dl_inst, dl->deadline_basis()),
                      ": ", dl->deadline_days(), " days."));
  }
  if (q.urgency == v1::EMERGENCY && dl->emergency_deadline_hours() > 0) {
    a.set_deadline_hours(dl->emergency_deadline_hours());
    note(absl::StrCat(dl->emergency_deadline_basis().empty()
                          ? dl_inst->proto.id()
                          : Cite(*dl_inst, dl->emergency_deadline_basis()),
                      ": ", dl->emergency_deadline_hours(), " hours in an emergency."));
  }
  for (const v1::Duty& d : p.duties()) {
    a.add_duties(absl::StrCat(Cite(inst, d.basis()), ": ", d.text()));
  }
  for (const std::string& n : p.notes()) note(n);
  if (proc != nullptr && proc->inst != &inst) {
    for (const v1::Duty& d : proc->provision->duties()) {
      a.add_duties(absl::StrCat(Cite(*proc->inst, d.basis()), ": ", d.text()));
    }
  }

  // Step 9: the channel. The deciding article's own (Art 35 for Art 29),
  // else the procedure instrument's, else the general procedure's; the
  // requested party's declaration on that instrument can fix it (FR under
  // Art 27: the diplomatic channel, even when urgent).
  const v1::ChannelRule* channel = PickChannel(p.channels(), q.urgency);
  const InstrumentRecord* channel_inst = &inst;
  if (channel == nullptr && proc != nullptr) {
    // An instrument that supplements the procedure instrument and sets
    // channels amends its channels (ETS 182 Art 4, EU MLA 2000 Art 6).
    for (const Candidate& c : kept) {
      if (channel != nullptr) break;
      const std::string* why = supplement_reason(c.inst);
      if (why == nullptr || &c == proc) continue;
      bool of_proc = false;
      for (const v1::Precedence& pr : c.inst->proto.precedence()) {
        of_proc |= pr.effect() == v1::SUPPLEMENTS && pr.instrument() == proc->inst->proto.id();
      }
      if (!of_proc) continue;
      channel = PickChannel(c.provision->channels(), q.urgency);
      if (channel == nullptr) channel = PickChannel(c.inst->proto.channels(), q.urgency);
      if (channel != nullptr) channel_inst = c.inst;
    }
    if (channel == nullptr) {
      channel_inst = proc->inst;
      channel = PickChannel(proc->provision->channels(), q.urgency);
      if (channel == nullptr) channel = PickChannel(proc->inst->proto.channels(), q.urgency);
    }
  }
  if (channel == nullptr && general != nullptr) {
    channel = PickChannel(general->channels(), q.urgency);
  }
  if (channel == nullptr && channel_inst == &inst) {
    channel = PickChannel(inst.proto.channels(), q.urgency);
  }
  if (channel != nullptr) {
    a.set_channel(channel->channel());
    if (!channel->basis().empty()) a.set_channel_basis(Cite(*channel_inst, channel->basis()));
    a.set_authority(channel->authority());
  }
  if (const PartyRecord* pt = channel_inst->Party(to); pt != nullptr && channel != nullptr) {
    const std::string channel_article = ArticleOf(channel->basis());
    for (const HeldReservation& d : pt->declarations) {
      if (day < d.from || day >= d.until) continue;
      const v1::Channel fixed = d.entry->channel() != v1::CHANNEL_UNSPECIFIED
                                    ? d.entry->channel()
                                    : d.allowed->effect().channel();
      const std::string article = ArticleOf(d.entry->id());
      if (fixed == v1::CHANNEL_UNSPECIFIED ||
          (article != channel_article && (general == nullptr || article != ArticleOf(general->basis(0))))) {
        continue;
      }
      // 27(9)(e) concerns the urgent and direct channels only.
      if (fixed == v1::CENTRAL_AUTHORITY && channel->channel() != v1::DIRECT_JUDICIAL) {
        continue;
      }
      a.set_channel(fixed);
      a.set_channel_basis(Cite(*channel_inst, d.entry->id()));
      a.set_authority(d.entry->text());
      note(absl::StrCat(to, "'s declaration under ", Cite(*channel_inst, d.entry->id()), " (since ",
                        FormatDay(d.from), d.entry->unverified() ? ", unverified" : "",
                        "): ", d.entry->text()));
    }
  }
  if (a.channel() != v1::CHANNEL_UNSPECIFIED) {
    note(absl::StrCat("Channel: ", v1::Channel_Name(a.channel()),
                      a.channel_basis().empty() ? "" : " (" + a.channel_basis() + ")",
                      a.authority().empty() ? "" : ": " + a.authority(), "."));
  }
  return a;
}

}  // namespace comity
