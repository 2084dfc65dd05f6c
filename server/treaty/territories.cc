#include "server/treaty/territories.h"

namespace comity {
namespace {

// ISO 3166-1 entries for dependent territories and constituent countries
// with their own code (ISO 3166-1 "Name" and the "Remarks" column naming
// the sovereign). Only those a treaty in the library can reach.
constexpr Territory kTerritories[] = {
    {"AW", "NL", "Aruba"},
    {"CW", "NL", "Curacao"},
    {"SX", "NL", "Sint Maarten (Dutch part)"},
    {"BQ", "NL", "Bonaire, Sint Eustatius and Saba"},
    {"FO", "DK", "Faroe Islands"},
    {"GL", "DK", "Greenland"},
    {"AX", "FI", "Aland Islands"},
    {"GF", "FR", "French Guiana"},
    {"GP", "FR", "Guadeloupe"},
    {"MQ", "FR", "Martinique"},
    {"RE", "FR", "Reunion"},
    {"YT", "FR", "Mayotte"},
    {"MF", "FR", "Saint Martin (French part)"},
    {"BL", "FR", "Saint Barthelemy"},
    {"PM", "FR", "Saint Pierre and Miquelon"},
    {"PF", "FR", "French Polynesia"},
    {"NC", "FR", "New Caledonia"},
    {"WF", "FR", "Wallis and Futuna"},
    {"GI", "GB", "Gibraltar"},
    {"IM", "GB", "Isle of Man"},
    {"JE", "GB", "Jersey"},
    {"GG", "GB", "Guernsey"},
    {"BM", "GB", "Bermuda"},
    {"KY", "GB", "Cayman Islands"},
    {"VG", "GB", "Virgin Islands (British)"},
    {"PR", "US", "Puerto Rico"},
    {"GU", "US", "Guam"},
    {"VI", "US", "Virgin Islands (U.S.)"},
    {"HK", "CN", "Hong Kong"},
    {"MO", "CN", "Macao"},
};

}  // namespace

const Territory* FindTerritory(absl::string_view code) {
  for (const Territory& t : kTerritories) {
    if (code == t.code) return &t;
  }
  return nullptr;
}

}  // namespace comity
