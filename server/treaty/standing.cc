#include "server/treaty/standing.h"

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"

namespace comity {
namespace {

// Consents deposited by `day` (inclusive).
int ConsentsBy(const InstrumentRecord& inst, Day day) {
  int n = 0;
  for (const PartyRecord& p : inst.parties) n += p.consent != kNever && p.consent <= day;
  return n;
}

}  // namespace

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
  if (p.not_bound) {
    return absl::StrCat(id, ": does not bind ", code,
                        p.status->notes().empty() ? "" : " (" + p.status->notes() + ")");
  }
  if (!p.via.empty()) {
    if (p.bound_until != kNever && day >= p.bound_until) {
      return absl::StrCat(id, ": bound ", code, " as a member of ", p.via, " only until ",
                          FormatDay(p.bound_until - 1));
    }
    // Cites no later event: only that it does not apply yet on the date.
    return absl::StrCat(id, ": does not apply to ", code, " (as a member of ", p.via, ") on ",
                        FormatDay(day));
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

// A territory's standing under one party entry (Art 38): `decided` when an
// entry of the party covers the territory on `day`.
TerritoryStanding StandingOfTerritory(const InstrumentRecord& inst, const PartyRecord& p,
                                      absl::string_view territory, Day day) {
  TerritoryStanding out;
  for (const TerritoryRecord& t : p.territories) {
    if (t.scope->territory() != territory) continue;
    const Day from = t.from == kNever ? p.in_force : t.from;
    if ((from != kNever && day < from) || day >= t.until) continue;
    out.decided = true;
    out.included = t.scope->included();
    out.why = absl::StrCat(
        inst.proto.id(), ": ", p.status->party(), "'s ",
        t.scope->basis().empty() ? "territorial declaration" : absl::StrCat(inst.proto.id(), " ", t.scope->basis(), " declaration"),
        out.included ? " extends it to " : " excludes ", territory,
        t.from != kNever ? absl::StrCat(" from ", FormatDay(t.from)) : "",
        t.scope->unverified() ? " (unverified)" : "",
        t.scope->source().empty() ? "" : absl::StrCat(" (source: ", t.scope->source(), ")"));
    return out;
  }
  return out;
}

}  // namespace comity
