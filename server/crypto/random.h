// Random identifiers from OpenSSL's CSPRNG.
//
//   std::string id = RandomUuid();  // "3f2b...-4...-...", lower case.
#ifndef COMITY_SERVER_CRYPTO_RANDOM_H_
#define COMITY_SERVER_CRYPTO_RANDOM_H_

#include <string>

namespace comity {

// A random (version 4) UUID in lower-case canonical form. Thread-safe;
// aborts only if the CSPRNG fails.
std::string RandomUuid();

}  // namespace comity

#endif  // COMITY_SERVER_CRYPTO_RANDOM_H_
