// Hexadecimal text of bytes.
//
//   HexEncode("\x01\xab") == "01ab"
#ifndef COMITY_SERVER_UTIL_HEX_H_
#define COMITY_SERVER_UTIL_HEX_H_

#include <string>

#include "absl/strings/string_view.h"

namespace comity {

// Lower-case hex of `bytes`, two digits a byte.
std::string HexEncode(absl::string_view bytes);

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_HEX_H_
