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

namespace comity {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

constexpr int kGroundCount = 8;
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

// Consents deposited by `day` (inclusive).
int ConsentsBy(const InstrumentRecord& inst, Day day) {
  int n = 0;
  for (const PartyRecord& p : inst.parties) n += p.consent != kNever && p.consent <= day;
  return n;
}

// Why `party` is not bound by `inst` on `day`. Cites only what had happened
// by `day` (and an entry into force that already followed from it under the
// rule): an assessment for 1999 never mentions a 2023 signature.
std::string NotBoundReason(const InstrumentRecord& inst, const PartyRecord& p, Day day) {
  const std::string& id = inst.proto.id();
  const std::string& code = p.status->party();
  const std::string date = FormatDay(day);
  const v1::Instrument& in = inst.proto;
  const std::string& adopted = !in.adopted().empty() ? in.adopted() : in.opened_for_signature();
  if (!adopted.empty()) {
    auto adopted_day = ParseDay(adopted);
    if (adopted_day.ok() && day < *adopted_day) {
      return absl::StrCat(id, ": did not exist yet on ", date, "; it binds no one on that date");
    }
  }
  if (p.bound_until != kNever && day >= p.bound_until) {
    return absl::StrCat(id, ": ", code, "'s denunciation took effect on ",
                        FormatDay(p.bound_until));
  }
  const v1::EntryIntoForceRule& rule = in.entry_into_force_rule();
  const int consents = ConsentsBy(inst, day);
  if (p.consent != kNever && p.consent <= day) {
    const bool settled = inst.general_in_force <= day ||
                         (rule.min_consents() > 0 && consents >= static_cast<int>(rule.min_consents()));
    if (p.in_force != kNever && settled) {
      return absl::StrCat(id, ": ", code, " consented on ", FormatDay(p.consent),
                          "; it enters into force for ", code, " only on ", FormatDay(p.in_force),
                          rule.basis().empty() ? "" : " (" + rule.basis() + ")");
    }
    return absl::StrCat(id, ": not in force on ", date, " (", consents, " of ",
                        rule.min_consents(), " consents needed",
                        rule.basis().empty() ? "" : ", " + rule.basis(), ")");
  }
  if (p.in_force != kNever && p.consent == kNever && p.in_force > day) {
    // A bilateral treaty recorded by signature and entry into force only.
    if (p.signed_on != kNever && p.signed_on <= day) {
      return absl::StrCat(id, ": signed on ", FormatDay(p.signed_on), ", not in force on ", date);
    }
    return absl::StrCat(id, ": not concluded by ", date);
  }
  if (p.signed_on != kNever && p.signed_on <= day) {
    return absl::StrCat(id, ": ", code, " signed on ", FormatDay(p.signed_on),
                        ", not ratified by ", date,
                        "; signature alone does not bind (VCLT Art 18: only the duty not to "
                        "defeat its object)");
  }
  if (inst.general_in_force == kNever || inst.general_in_force > day) {
    return absl::StrCat(id, ": not in force on ", date, " (", consents, " of ",
                        rule.min_consents(), " consents needed",
                        rule.basis().empty() ? "" : ", " + rule.basis(), ")");
  }
  return absl::StrCat(id, ": ", code, " had neither signed nor consented by ", date);
}

// "(unverified: <source>)" for a party entry marked unverified.
std::string UnverifiedNote(const InstrumentRecord& inst, const PartyRecord& p) {
  return absl::StrCat(inst.proto.id(), ": ", p.status->party(),
                      "'s status is unverified (", p.status->source().empty() ? "no source given"
                                                                              : p.status->source(),
                      "); check it before relying on this assessment.");
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
  q.request = &body;
  return q;
}

absl::StatusOr<v1::Assessment> Assess(const TreatyLibrary& library,
                                      const AssessmentQuery& q) {
  for (const std::string* code : {&q.requesting_party, &q.requested_party}) {
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
      q.assistance_type >= 16) {
    return absl::InvalidArgumentError("assistance type is missing or unknown");
  }
  if (q.offence <= 0 || !v1::OffenceCategory_IsValid(q.offence)) {
    return absl::InvalidArgumentError("offence category is missing or unknown");
  }
  const Day day = ToDay(q.date);
  const std::string& from = q.requesting_party;
  const std::string& to = q.requested_party;
  const std::string type_name = v1::AssistanceType_Name(q.assistance_type);
  const bool convention_offence = q.offence != v1::OTHER;

  v1::Assessment a;
  a.set_library_version(library.version());
  a.set_date(absl::FormatCivilTime(q.date));
  a.set_requesting_party(from);
  a.set_requested_party(to);
  auto note = [&a](std::string text) { a.add_notes(std::move(text)); };

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
    const PartyRecord* pf = inst->Party(from);
    const PartyRecord* pt = inst->Party(to);
    if (pt == nullptr) continue;
    const bool pol = inst->proto.kind() == v1::POLITICAL_DECLARATION;
    if (!pol) {
      bool unknown = false;
      for (const PartyRecord* p : {pf, pt}) {
        if (!p->StandingUnknownOn(day, inst->general_in_force)) continue;
        unknown = true;
        unknown_standing.push_back(absl::StrCat(inst->proto.id(), ": ", p->status->party()));
        note(absl::StrCat(
            inst->proto.id(), " lists ", p->status->party(),
            p->party_by != kNever
                ? absl::StrCat(" as a party by ", FormatDay(p->party_by),
                               ", but not when it became bound")
                : " without the dates of its signature, consent or entry into force",
            ": the library cannot say whether it is bound on ", a.date(), " (source: ",
            p->status->source().empty() ? "none given" : p->status->source(), ")."));
      }
      if (unknown) continue;
    }
    const bool f_bound = pf->BoundOn(day, pol);
    const bool t_bound = pt->BoundOn(day, pol);
    if (f_bound && t_bound) {
      (pol ? political : in_force).push_back(inst);
    } else if (!pol) {
      // Each party that is not bound, once per distinct reason.
      const std::string why_from = f_bound ? "" : NotBoundReason(*inst, *pf, day);
      const std::string why_to = t_bound ? "" : NotBoundReason(*inst, *pt, day);
      if (!why_from.empty()) note(why_from);
      if (!why_to.empty() && why_to != why_from) note(why_to);
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

  // Step 2: which of them provide for this assistance.
  std::vector<Candidate> candidates;
  const InstrumentRecord* mlat = nullptr;  // A bilateral treaty that governs procedure.
  for (const InstrumentRecord* inst : in_force) {
    if (inst->proto.governs_procedure() && mlat == nullptr) mlat = inst;
    const v1::Provision* p = inst->provisions[q.assistance_type];
    if (p == nullptr) {
      note(absl::StrCat(inst->proto.id(), " does not provide for ", type_name, "."));
      continue;
    }
    candidates.push_back({inst, p, inst->provision_index[q.assistance_type]});
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
    if (p.scope() == v1::CONVENTION_OFFENCES && !convention_offence) {
      note(absl::StrCat(first_basis, " covers only the offences the instrument establishes (",
                        id == "ETS185" ? "Arts 2-11" : "its own categories",
                        "); an OTHER offence is outside it."));
      exclusion_basis.push_back(first_basis);
      continue;
    }
    if (p.min_penalty_months() > 0) {
      const uint32_t min = p.min_penalty_months();
      const bool both = p.min_penalty_both_parties() || p.scope() != v1::SERIOUS_OFFENCES;
      bool below = false;
      if (q.penalty_months > 0 && q.penalty_months < min) {
        note(absl::StrCat(first_basis, ": the maximum penalty in ", from, " (", q.penalty_months,
                          " months) is below the threshold of ", min, " months."));
        below = true;
      }
      if (p.min_penalty_both_parties() && q.requested_penalty_months > 0 &&
          q.requested_penalty_months < min) {
        note(absl::StrCat(first_basis, ": the maximum penalty in ", to, " (",
                          q.requested_penalty_months, " months) is below the threshold of ", min,
                          " months."));
        below = true;
      }
      if (below) {
        exclusion_basis.push_back(first_basis);
        continue;
      }
      if (q.penalty_months == 0 ||
          (both && p.min_penalty_both_parties() && q.requested_penalty_months == 0)) {
        note(absl::StrCat(first_basis, ": the threshold of ", min, " months",
                          p.min_penalty_both_parties() ? " in both parties" : "",
                          " could not be confirmed (penalty unknown); give the maximum penalties "
                          "to settle it."));
      }
    }
    if (p.dual_criminality_mandatory() && q.dual_criminality == v1::DUAL_CRIMINALITY_NOT_MET) {
      note(absl::StrCat(first_basis, " requires the conduct to be an offence in both parties; "
                                     "it is not one in ", to, "."));
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

  // Step 4: the governing instrument. A bilateral treaty that governs
  // procedure decides, unless the multilateral article is specific (a
  // floor that applies with its own grounds); the strongest multilateral
  // obligation is the floor either way.
  const Candidate* multi = nullptr;
  const Candidate* bilateral_mlat = nullptr;
  const Candidate* bilateral_other = nullptr;
  for (const Candidate& c : viable) {
    if (c.inst->proto.kind() == v1::MULTILATERAL_TREATY) {
      if (multi == nullptr ||
          std::make_tuple(Strength(c.provision->obligation()), c.provision->specific()) >
              std::make_tuple(Strength(multi->provision->obligation()),
                              multi->provision->specific())) {
        multi = &c;
      }
    } else if (c.inst->proto.governs_procedure()) {
      if (bilateral_mlat == nullptr) bilateral_mlat = &c;
    } else if (bilateral_other == nullptr) {
      bilateral_other = &c;
    }
  }
  const Candidate* deciding = nullptr;
  if (multi != nullptr && multi->provision->specific()) {
    deciding = multi;
    if (bilateral_mlat != nullptr) {
      note(absl::StrCat(Cite(*multi->inst, multi->provision->basis(0)),
                        " is a specific article: it applies with its own grounds even though ",
                        bilateral_mlat->inst->proto.id(), " governs other assistance."));
    }
  } else if (bilateral_mlat != nullptr) {
    deciding = bilateral_mlat;
  } else if (multi != nullptr) {
    deciding = multi;
  } else {
    deciding = bilateral_other;
  }
  const InstrumentRecord& inst = *deciding->inst;
  const v1::Provision& p = *deciding->provision;
  a.set_instrument(inst.proto.id());
  a.set_obligation(p.obligation());
  for (const std::string& b : p.basis()) a.add_basis(Cite(inst, b));
  note(absl::StrCat(inst.proto.id(), " (", KindName(inst), ") governs: ",
                    absl::StrJoin(a.basis(), ", "), " makes ", type_name, " ",
                    v1::Obligation_Name(p.obligation()), "."));
  if (deciding == bilateral_mlat && multi != nullptr) {
    note(absl::StrCat(inst.proto.id(), " supplies the procedure and grounds; ",
                      Cite(*multi->inst, multi->provision->basis(0)),
                      " still applies as a floor."));
    if (Strength(multi->provision->obligation()) > Strength(p.obligation())) {
      a.set_obligation(multi->provision->obligation());
      for (const std::string& b : multi->provision->basis()) a.add_basis(Cite(*multi->inst, b));
      note(absl::StrCat("The floor raises the obligation to ",
                        v1::Obligation_Name(multi->provision->obligation()), "."));
    }
  }
  for (const std::string* code : {&from, &to}) {
    const PartyRecord* party = inst.Party(*code);
    if (party != nullptr && party->status->unverified()) note(UnverifiedNote(inst, *party));
  }
  if (!unknown_standing.empty()) {
    note(absl::StrCat("Not considered (standing unknown): ",
                      absl::StrJoin(unknown_standing, ", "), "."));
  }
  for (const InstrumentRecord* other : in_force) {
    if (other != &inst) a.add_also_applicable(other->proto.id());
  }
  for (const InstrumentRecord* pol : political) a.add_also_applicable(pol->proto.id());
  if (deciding != bilateral_other && bilateral_other != nullptr) {
    note(absl::StrCat("Also: ", bilateral_other->inst->proto.id(), " (",
                      absl::StrJoin(bilateral_other->provision->basis(), ", "),
                      ") offers another route."));
  }

  // Step 5: refusal grounds.
  Grounds grounds;
  for (int g : p.refusal_grounds()) grounds.set(g);
  if (p.uses_general_procedure()) {
    if (mlat != nullptr && mlat != &inst) {
      note(absl::StrCat(mlat->proto.id(), " is in force between them, so ", inst.proto.id(),
                        "'s general procedure does not apply; ", mlat->proto.id(),
                        "'s conditions do."));
      const v1::Provision* mp = mlat->provisions[q.assistance_type];
      const auto& extra = mp != nullptr ? mp->refusal_grounds()
                                        : mlat->proto.general_procedure().refusal_grounds();
      for (int g : extra) grounds.set(g);
      grounds.set(v1::DOMESTIC_LAW);
    } else if (mlat == nullptr) {
      const v1::GeneralProcedure& gp = inst.proto.general_procedure();
      for (int g : gp.refusal_grounds()) grounds.set(g);
      for (const std::string& b : gp.basis()) a.add_basis(Cite(inst, b));
      for (const v1::Duty& d : gp.duties()) {
        a.add_duties(absl::StrCat(Cite(inst, d.basis()), ": ", d.text()));
      }
      for (const std::string& n : gp.notes()) note(n);
      if (!gp.basis().empty()) {
        note(absl::StrCat("No mutual legal assistance treaty is in force between ", from,
                          " and ", to, ": ", Cite(inst, gp.basis(0)),
                          " supplies the procedure and grounds."));
        // The requested party's declarations and designations on that
        // procedure (e.g. FR: the diplomatic channel, even when urgent),
        // if held on the date.
        const std::string gp_article = ArticleOf(gp.basis(0));
        if (const PartyRecord* pt = inst.Party(to)) {
          for (const HeldReservation& d : pt->declarations) {
            if (day < d.from || day >= d.until || ArticleOf(d.entry->id()) != gp_article) {
              continue;
            }
            note(absl::StrCat(to, "'s declaration under ", Cite(inst, d.entry->id()), " (since ",
                              FormatDay(d.from), d.entry->unverified() ? ", unverified" : "",
                              "): ", d.entry->text()));
          }
        }
      }
    }
  }
  if (convention_offence && !p.excluded_for_convention_offences().empty()) {
    for (int g : p.excluded_for_convention_offences()) {
      if (grounds.test(g)) {
        grounds.reset(g);
        note(absl::StrCat(v1::OffenceCategory_Name(q.offence), " is an offence of ",
                          inst.proto.id(), "'s own categories: ",
                          p.excluded_basis().empty() ? "the instrument"
                                                     : Cite(inst, p.excluded_basis()),
                          " excludes refusal on ", GroundName(g), "."));
      }
    }
  }
  // Dual criminality.
  if (p.dual_criminality_required()) {
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
  } else if (!grounds.test(v1::DUAL_CRIMINALITY)) {
    note(absl::StrCat("Dual criminality is not a condition of ", a.basis(0), "."));
  }
  // Reservations of the requested party in force on the date.
  if (const PartyRecord* pt = inst.Party(to)) {
    for (const HeldReservation& r : pt->reservations) {
      const v1::ReservationEffect& e = r.allowed->effect();
      if (std::find(e.assistance_types().begin(), e.assistance_types().end(),
                    q.assistance_type) == e.assistance_types().end()) {
        continue;
      }
      const std::string cite = Cite(inst, r.entry->id());
      if (day < r.from) {
        // Made later: not mentioned, an assessment cites nothing after its date.
        continue;
      }
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
  }

  // Step 6: the request's own form.
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
        missing.push_back(Cite(inst, rc.basis()));
        note(absl::StrCat("Missing ", rc.field(), " (", Cite(inst, rc.basis()),
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

  // Step 7: deadlines, duties, the provision's own notes.
  if (p.deadline_days() > 0) {
    a.set_deadline_days(p.deadline_days());
    note(absl::StrCat(p.deadline_basis().empty() ? inst.proto.id()
                                                 : Cite(inst, p.deadline_basis()),
                      ": ", p.deadline_days(), " days."));
  }
  for (const v1::Duty& d : p.duties()) {
    a.add_duties(absl::StrCat(Cite(inst, d.basis()), ": ", d.text()));
  }
  for (const std::string& n : p.notes()) note(n);
  return a;
}

}  // namespace comity
