// Recognising private keys, so that the node never releases one as
// evidence (docs/evidence.md, "Files from the operator").
#ifndef COMITY_SERVER_CRYPTO_KEY_MATERIAL_H_
#define COMITY_SERVER_CRYPTO_KEY_MATERIAL_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace comity {

// Files at most this large are also tried as a DER private key.
inline constexpr size_t kMaxDerKeyBytes = 16 << 10;

// Whether `bytes` hold a private key: a PEM block whose label ends in
// "PRIVATE KEY" (PKCS#8, encrypted PKCS#8, RSA, EC, DSA, OpenSSH) anywhere
// in them, or, for at most kMaxDerKeyBytes, the whole of them parses as a
// DER private key (PKCS#8 or a traditional format) without a password.
bool HoldsPrivateKey(absl::string_view bytes);

}  // namespace comity

#endif  // COMITY_SERVER_CRYPTO_KEY_MATERIAL_H_
