// TreatyLibrary::ResolveOrganisations: the members of an organisation
// (ORGANISATION_MEMBERSHIP) bound by its acts and agreements.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/treaty/library.h"

namespace comity {

// Members of an organisation are bound by its acts and agreements over the
// dates of their membership: each gets a derived entry (in force from the
// later of the act's application and its accession, until it left),
// unless the file lists it itself (an opt-out, or its own dates).
absl::Status TreatyLibrary::ResolveOrganisations() {
  for (const auto& rec : instruments_) {
    for (const v1::Precedence& pr : rec->proto.precedence()) {
      if (Find(pr.instrument()) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            rec->file, ": precedence names ", pr.instrument(),
            ", which is not in the library; add it or remove the precedence"));
      }
    }
    const std::string& org = rec->proto.organisation();
    if (org.empty()) continue;
    const InstrumentRecord* membership = Find(org);
    if (membership == nullptr || membership->proto.kind() != v1::ORGANISATION_MEMBERSHIP) {
      return absl::InvalidArgumentError(absl::StrCat(
          rec->file, ": organisation ", org, " is not an ORGANISATION_MEMBERSHIP instrument of the "
          "library; add its members (e.g. deploy/treaties/eu-membership.textproto)"));
    }
    const PartyRecord* org_row = rec->Party(org);
    if (org_row == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          rec->file, ": ", rec->proto.id(), " names organisation ", org,
          " but does not list it among its parties, with the date from which the ",
          rec->proto.kind() == v1::ORGANISATION_ACT ? "act applies" : "agreement binds it"));
    }
    rec->membership = membership;
    const int org_side = org_row->side;
    const Day org_from = org_row->in_force;
    const Day org_until = org_row->bound_until;
    const bool org_unverified = org_row->status->unverified();
    const std::string org_source = org_row->status->source();
    for (const PartyRecord& member : membership->parties) {
      const std::string& code = member.status->party();
      if (PartySlot(code) < 0 || rec->Party(code) != nullptr) continue;
      const Day from = std::max(org_from, member.in_force);
      const Day until = std::min(org_until, member.bound_until);
      if (member.in_force == kNever || (org_from != kNever && from >= until)) continue;
      v1::PartyStatus& status = rec->derived_status.emplace_back();
      status.set_party(code);
      if (org_from != kNever) status.set_entry_into_force(FormatDay(from));
      if (until != kNever) status.set_denunciation_effective(FormatDay(until));
      status.set_unverified(org_unverified || member.status->unverified());
      status.set_source(absl::StrCat(org, " membership (", membership->proto.id(), ": ",
                                     member.status->source(), "); ", rec->proto.id(), " for ", org,
                                     ": ", org_source));
      status.set_notes(absl::StrCat("bound as a member of ", org, " (member from ",
                                    FormatDay(member.in_force),
                                    member.bound_until != kNever
                                        ? absl::StrCat(" until ", FormatDay(member.bound_until))
                                        : "",
                                    ")"));
      PartyRecord pr;
      pr.status = &status;
      pr.in_force = org_from == kNever ? kNever : from;
      pr.bound_until = until;
      pr.side = org_side;
      pr.via = org;
      pr.territories = member.territories;
      rec->party_slot[PartySlot(code)] = static_cast<int16_t>(rec->parties.size());
      rec->parties.push_back(std::move(pr));
    }
  }
  return absl::OkStatus();
}

}  // namespace comity
