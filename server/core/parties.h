// Party codes: ISO 3166-1 alpha-2, upper case ("FR", "JP", "GB").
#ifndef COMITY_SERVER_CORE_PARTIES_H_
#define COMITY_SERVER_CORE_PARTIES_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace comity {

// True if `code` is an officially assigned ISO 3166-1 alpha-2 code.
bool IsPartyCode(absl::string_view code);

// OK, or InvalidArgument naming `what` (e.g. "requested_party") and the bad
// value.
absl::Status CheckPartyCode(absl::string_view what, absl::string_view code);

// True for a canonical lower-case RFC 9562 UUID string.
bool IsCanonicalUuid(absl::string_view s);

}  // namespace comity

#endif  // COMITY_SERVER_CORE_PARTIES_H_
