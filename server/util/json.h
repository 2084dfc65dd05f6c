// JSON text: string literals that are valid JSON whatever bytes they hold.
//
//   JsonQuote("a\"b") == "\"a\\\"b\""
#ifndef COMITY_SERVER_UTIL_JSON_H_
#define COMITY_SERVER_UTIL_JSON_H_

#include <string>

#include "absl/strings/string_view.h"

namespace comity {

// Quotes a string as a JSON string literal, escaping as RFC 8259 requires.
// Valid UTF-8 passes through; any other byte becomes U+FFFD, so the result
// is always valid JSON.
std::string JsonQuote(absl::string_view s);

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_JSON_H_
