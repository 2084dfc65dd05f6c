// Territories that have their own ISO 3166-1 alpha-2 code but no treaty
// standing of their own: the state that conducts their international
// relations answers for them, and a treaty applies to them as the state's
// declarations say (ETS185 Art 38; otherwise the whole territory, VCLT Art
// 29). docs/treaties.md, "Territories".
#ifndef COMITY_SERVER_TREATY_TERRITORIES_H_
#define COMITY_SERVER_TREATY_TERRITORIES_H_

#include "absl/strings/string_view.h"

namespace comity {

struct Territory {
  const char* code;       // "CW".
  const char* sovereign;  // "NL".
  const char* name;       // "Curacao".
};

// nullptr if `code` is not in the table (a state, or unknown).
const Territory* FindTerritory(absl::string_view code);

}  // namespace comity

#endif  // COMITY_SERVER_TREATY_TERRITORIES_H_
