// Why a party is or is not bound by an instrument on a day, in the words an
// assessment's notes use: only what had happened by that day is cited
// (docs/treaties.md, "The decision procedure").
#ifndef COMITY_SERVER_TREATY_STANDING_H_
#define COMITY_SERVER_TREATY_STANDING_H_

#include <string>

#include "absl/strings/string_view.h"
#include "server/treaty/library.h"

namespace comity {

// Why `p` is not bound by `inst` on `day`: not yet adopted, denounced, a
// member of an organisation the act does not bind or not yet, consented but
// not yet in force, short of consents, signed only, or neither.
std::string NotBoundReason(const InstrumentRecord& inst, const PartyRecord& p, Day day);

// The note for a party entry marked unverified, with its source.
std::string UnverifiedNote(const InstrumentRecord& inst, const PartyRecord& p);

// A territory's standing under one party entry (ETS185 Art 38): `decided`
// when an entry of the party covers the territory on `day`.
struct TerritoryStanding {
  bool decided = false;
  bool included = true;
  std::string why;
};
TerritoryStanding StandingOfTerritory(const InstrumentRecord& inst, const PartyRecord& p,
                                      absl::string_view territory, Day day);

}  // namespace comity

#endif  // COMITY_SERVER_TREATY_STANDING_H_
