#include "server/crypto/x509_identity.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace comity {
namespace {

constexpr absl::string_view kUriPrefix = "urn:comity:";
constexpr absl::string_view kRolePrefix = "urn:comity:role:";

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;

std::vector<X509Ptr> ParseCerts(absl::string_view pem) {
  std::vector<X509Ptr> certs;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return certs;
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  BIO_free(bio);
  ERR_clear_error();  // The loop ends on a "no start line" error.
  return certs;
}

absl::StatusOr<CertIdentity> ParseComityUri(absl::string_view uri) {
  std::vector<absl::string_view> parts =
      absl::StrSplit(uri.substr(kUriPrefix.size()), ':');
  CertIdentity id;
  if (parts.size() == 2 && parts[0] == "party") {
    id.kind = CertIdentity::Kind::kParty;
    id.party = std::string(parts[1]);
  } else if (parts.size() == 3 && parts[0] == "operator" && !parts[2].empty()) {
    id.kind = CertIdentity::Kind::kOperator;
    id.party = std::string(parts[1]);
    id.operator_name = std::string(parts[2]);
  } else {
    return absl::UnauthenticatedError(absl::StrCat(
        "certificate URI '", uri,
        "' is neither urn:comity:party:XX nor urn:comity:operator:XX:NAME"));
  }
  if (id.party.size() != 2) {
    return absl::UnauthenticatedError(
        absl::StrCat("certificate URI '", uri, "' does not name a two-letter party"));
  }
  return id;
}

}  // namespace

absl::StatusOr<CertIdentity> IdentityFromCertPem(absl::string_view cert_pem) {
  std::vector<X509Ptr> certs = ParseCerts(cert_pem);
  if (certs.empty()) return absl::UnauthenticatedError("peer presented no certificate");
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(certs[0].get(), NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) {
    return absl::UnauthenticatedError(
        "peer certificate has no subject alternative name with a urn:comity: URI");
  }
  std::vector<std::string> uris;
  std::vector<std::string> roles;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = name->d.uniformResourceIdentifier;
    std::string uri(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                    static_cast<size_t>(ASN1_STRING_length(s)));
    if (absl::StartsWith(uri, kRolePrefix)) {
      roles.push_back(uri.substr(kRolePrefix.size()));
    } else if (absl::StartsWith(uri, kUriPrefix)) {
      uris.push_back(std::move(uri));
    }
  }
  GENERAL_NAMES_free(names);
  if (uris.empty()) {
    return absl::UnauthenticatedError(
        "peer certificate has no urn:comity: URI subject alternative name");
  }
  if (uris.size() > 1) {
    return absl::UnauthenticatedError(
        "peer certificate has more than one urn:comity: URI; it must name one holder");
  }
  auto id = ParseComityUri(uris[0]);
  if (!id.ok()) return id;
  id->roles = std::move(roles);
  return id;
}

bool CertIdentity::HasRole(absl::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

absl::StatusOr<std::unique_ptr<CaVerifier>> CaVerifier::Create(absl::string_view ca_pem) {
  std::vector<X509Ptr> cas = ParseCerts(ca_pem);
  if (cas.empty()) return absl::InvalidArgumentError("no PEM certificate found");
  X509_STORE* store = X509_STORE_new();
  if (store == nullptr) return absl::InternalError("X509_STORE_new failed");
  for (const X509Ptr& ca : cas) {
    if (X509_STORE_add_cert(store, ca.get()) != 1) {
      ERR_clear_error();  // A duplicate CA is harmless.
    }
  }
  return std::unique_ptr<CaVerifier>(new CaVerifier(store));
}

CaVerifier::~CaVerifier() { X509_STORE_free(store_); }

absl::Status CaVerifier::Verify(absl::string_view leaf_pem,
                                absl::string_view chain_pem) const {
  std::vector<X509Ptr> leaf = ParseCerts(leaf_pem);
  if (leaf.empty()) return absl::PermissionDeniedError("no peer certificate");
  std::vector<X509Ptr> chain = ParseCerts(chain_pem);
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (const X509Ptr& c : chain) sk_X509_push(untrusted, c.get());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  absl::Status status;
  if (ctx == nullptr ||
      X509_STORE_CTX_init(ctx, store_, leaf[0].get(), untrusted) != 1) {
    status = absl::InternalError("X509_STORE_CTX_init failed");
  } else if (X509_verify_cert(ctx) != 1) {
    status = absl::PermissionDeniedError(
        absl::StrCat("certificate not issued by the CA configured for its party: ",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx))));
  }
  X509_STORE_CTX_free(ctx);
  sk_X509_free(untrusted);
  ERR_clear_error();
  return status;
}

}  // namespace comity
