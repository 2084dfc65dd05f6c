#include "server/crypto/random.h"

#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/util/hex.h"

namespace comity {

std::string RandomUuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof(b)) != 1) {
    std::fprintf(stderr, "fatal: RAND_bytes failed\n");
    std::abort();
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // Version 4.
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // RFC 9562 variant.
  std::string hex = HexEncode(absl::string_view(reinterpret_cast<char*>(b), sizeof(b)));
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4),
                      "-", hex.substr(16, 4), "-", hex.substr(20));
}

}  // namespace comity
