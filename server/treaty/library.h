// The treaty library: instruments loaded from protobuf text files
// (deploy/treaties/*.textproto, one comity.v1.Instrument each), validated,
// and indexed for the rules engine (engine.h). docs/treaties.md describes
// the format.
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<TreatyLibrary> lib,
//                           TreatyLibrary::LoadDirectory("deploy/treaties"));
//   std::cout << lib->version();  // Content hash of the files.
#ifndef COMITY_SERVER_TREATY_LIBRARY_H_
#define COMITY_SERVER_TREATY_LIBRARY_H_

#include <array>
#include <climits>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "comity/v1/treaty.pb.h"

namespace comity {

// Days since 1970-01-01; kNever for "no such date".
using Day = int32_t;
inline constexpr Day kNever = INT32_MAX;

// "YYYY-MM-DD" to a Day. InvalidArgument for anything else (including
// dates that do not exist, such as 2023-02-30).
absl::StatusOr<Day> ParseDay(absl::string_view text);
std::string FormatDay(Day day);
Day ToDay(absl::CivilDay day);

// A reservation or declaration held by a party, resolved against the
// instrument's list.
struct HeldReservation {
  const v1::PartyReservation* entry;
  const v1::AllowedReservation* allowed;
  Day from = kNever;
  Day until = kNever;  // Withdrawn from this day on.
};

// A territory's own standing under one instrument (Art 38).
struct TerritoryRecord {
  const v1::TerritorialScope* scope;
  Day from = kNever;   // kNever: from the party's own entry into force.
  Day until = kNever;
};

// One party's standing under one instrument, with dates resolved.
struct PartyRecord {
  const v1::PartyStatus* status;
  Day signed_on = kNever;
  Day consent = kNever;
  Day in_force = kNever;        // Computed or given; kNever if not (yet) in force.
  Day bound_until = kNever;     // Denunciation effective.
  Day party_by = kNever;        // PartyStatus.party_by: listed as a party by then.
  std::vector<HeldReservation> reservations;
  std::vector<HeldReservation> declarations;
  std::vector<TerritoryRecord> territories;
  // Parties on the same side of a bilateral agreement are not bound to each
  // other by it: the EU's member states under EU-US-MLA share the EU's side.
  int side = 0;
  // For a member bound through an organisation ("EU"); empty otherwise.
  std::string via;
  // An ORGANISATION_ACT's opt-out (PartyStatus.not_bound).
  bool not_bound = false;

  // True if the party is bound by the instrument on `day` (for a political
  // declaration: has endorsed it by then). A party known only from a dated
  // list (party_by) is bound from that date.
  bool BoundOn(Day day, bool political) const;
  // True if the library cannot say whether the party is bound on `day`: no
  // consent or entry into force is recorded, and either a list of `party_by`
  // says it became a party at some unknown earlier date, or the entry has no
  // dates at all. A recorded signature without consent and without
  // party_by is a known signatory (not bound), never unknown. Days before
  // the instrument's general entry into force (`general_in_force`; kNever:
  // not in force) or the party's signature are known: not bound.
  bool StandingUnknownOn(Day day, Day general_in_force) const;
};

// AssistanceType values are below this.
inline constexpr int kMaxAssistanceType = 32;

struct InstrumentRecord {
  v1::Instrument proto;
  std::string file;
  Day general_in_force = kNever;
  int consents = 0;
  // Provision per AssistanceType value (nullptr: none).
  std::array<const v1::Provision*, kMaxAssistanceType> provisions{};
  std::array<int, kMaxAssistanceType> provision_index{};  // Index in proto.provisions().
  // Field paths of each provision's required contents, resolved.
  std::vector<std::vector<std::vector<const google::protobuf::FieldDescriptor*>>> content_paths;
  std::vector<PartyRecord> parties;
  // Entries made for the members of `proto.organisation()`, which
  // parties[].status of derived members point to.
  std::deque<v1::PartyStatus> derived_status;
  // The organisation's membership instrument, for acts and agreements.
  const InstrumentRecord* membership = nullptr;
  // parties[party_slot[code]] or -1.
  std::array<int16_t, 26 * 26> party_slot;

  const PartyRecord* Party(absl::string_view code) const;
};

// Immutable after loading; thread-safe.
class TreatyLibrary {
 public:
  // Loads every *.textproto file in `dir`. Errors name the file, the line
  // and the fix: "ets185.textproto:212: parties[3].reservations[0].id: ...".
  static absl::StatusOr<std::unique_ptr<TreatyLibrary>> LoadDirectory(const std::string& dir);
  // The same from (file name, contents) pairs; for tests and tools.
  static absl::StatusOr<std::unique_ptr<TreatyLibrary>> FromFiles(
      std::vector<std::pair<std::string, std::string>> files);

  // SHA-256 (hex) over the files' names and contents, in name order.
  const std::string& version() const { return version_; }
  const std::vector<std::unique_ptr<InstrumentRecord>>& instruments() const {
    return instruments_;
  }
  // nullptr if unknown.
  const InstrumentRecord* Find(absl::string_view id) const;
  // Instruments that list `party`, in library order.
  const std::vector<const InstrumentRecord*>& InstrumentsOf(absl::string_view party) const;
  // Every state code that appears in some instrument, sorted (not
  // organisations such as "EU").
  std::vector<std::string> Parties() const;
  // True if `code` names an organisation (an ORGANISATION_MEMBERSHIP id).
  bool IsOrganisation(absl::string_view code) const;

 private:
  TreatyLibrary() = default;
  absl::Status ResolveOrganisations();
  std::string version_;
  std::vector<std::unique_ptr<InstrumentRecord>> instruments_;
  std::array<std::vector<const InstrumentRecord*>, 26 * 26> by_party_;
};

// The slot of a two-letter upper-case code, or -1.
int PartySlot(absl::string_view code);

}  // namespace comity

#endif  // COMITY_SERVER_TREATY_LIBRARY_H_
