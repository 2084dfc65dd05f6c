// Who a TLS peer is, from its X.509 certificate.
//
// Comity certificates name their holder in a URI subject alternative name:
//   urn:comity:party:FR              a node speaking for party FR
//   urn:comity:operator:FR:alice     operator "alice" of party FR's node
//   urn:comity:role:auditor          a role of that operator (any number)
// The CN is ignored. A certificate must also chain to the CA configured for
// the party it claims (CaVerifier), so one party's CA cannot mint another
// party's identity.
#ifndef COMITY_SERVER_CRYPTO_X509_IDENTITY_H_
#define COMITY_SERVER_CRYPTO_X509_IDENTITY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct x509_store_st X509_STORE;

namespace comity {

struct CertIdentity {
  enum class Kind { kParty, kOperator };
  Kind kind = Kind::kParty;
  std::string party;          // ISO 3166-1 alpha-2 as written in the URI.
  std::string operator_name;  // Only for kOperator.
  std::vector<std::string> roles;  // From urn:comity:role:NAME URIs.

  bool HasRole(absl::string_view role) const;
};

// Parses the first "urn:comity:" URI SAN of a PEM certificate.
// Unauthenticated if the PEM is not a certificate or it has no (or more than
// one, or a malformed) Comity URI.
absl::StatusOr<CertIdentity> IdentityFromCertPem(absl::string_view cert_pem);

// Verifies leaf certificates against a fixed set of trusted CA certificates.
// Immutable; thread-safe.
class CaVerifier {
 public:
  // `ca_pem` holds one or more PEM CA certificates. InvalidArgument if none
  // parses.
  static absl::StatusOr<std::unique_ptr<CaVerifier>> Create(absl::string_view ca_pem);
  ~CaVerifier();
  CaVerifier(const CaVerifier&) = delete;
  CaVerifier& operator=(const CaVerifier&) = delete;

  // OK if `leaf_pem` chains to one of the CAs (with `chain_pem` as
  // untrusted intermediates, may be empty) and is valid now.
  // PermissionDenied otherwise, with OpenSSL's reason.
  absl::Status Verify(absl::string_view leaf_pem, absl::string_view chain_pem) const;

 private:
  explicit CaVerifier(X509_STORE* store) : store_(store) {}
  X509_STORE* store_;  // Owned.
};

}  // namespace comity

#endif  // COMITY_SERVER_CRYPTO_X509_IDENTITY_H_
