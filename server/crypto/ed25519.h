// Ed25519 signing and verification on OpenSSL 3 EVP.
//
//   COMITY_ASSIGN_OR_RETURN(auto key, SigningKey::FromPem(pem));
//   COMITY_ASSIGN_OR_RETURN(std::string sig, key->Sign(message));
//   COMITY_ASSIGN_OR_RETURN(auto pub, VerifyingKey::FromRaw(key->public_key()));
//   COMITY_RETURN_IF_ERROR(pub->Verify(message, sig));
#ifndef COMITY_SERVER_CRYPTO_ED25519_H_
#define COMITY_SERVER_CRYPTO_ED25519_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace comity {

inline constexpr size_t kEd25519PublicKeySize = 32;
inline constexpr size_t kEd25519SignatureSize = 64;

// An Ed25519 private key. Immutable after creation; Sign is thread-safe.
// The key material is never exposed except as the public key.
class SigningKey {
 public:
  // Parses a PEM (PKCS#8) Ed25519 private key. InvalidArgument if it is not
  // one.
  static absl::StatusOr<std::unique_ptr<SigningKey>> FromPem(absl::string_view pem);
  // A fresh random key (tests, key generation).
  static absl::StatusOr<std::unique_ptr<SigningKey>> Generate();
  ~SigningKey();
  SigningKey(const SigningKey&) = delete;
  SigningKey& operator=(const SigningKey&) = delete;

  // The 64-byte signature of `message`.
  absl::StatusOr<std::string> Sign(absl::string_view message) const;
  // The 32 raw bytes of the public key.
  const std::string& public_key() const { return public_key_; }
  // PEM (PKCS#8) of the private key, for writing key files.
  absl::StatusOr<std::string> PrivateKeyPem() const;

 private:
  SigningKey(EVP_PKEY* pkey, std::string public_key)
      : pkey_(pkey), public_key_(std::move(public_key)) {}
  EVP_PKEY* pkey_;  // Owned.
  std::string public_key_;
};

// An Ed25519 public key. Immutable; Verify is thread-safe.
class VerifyingKey {
 public:
  // InvalidArgument unless `raw` is 32 bytes of a valid key.
  static absl::StatusOr<std::unique_ptr<VerifyingKey>> FromRaw(absl::string_view raw);
  ~VerifyingKey();
  VerifyingKey(const VerifyingKey&) = delete;
  VerifyingKey& operator=(const VerifyingKey&) = delete;

  // OK if `signature` is a valid signature of `message`; Unauthenticated
  // otherwise (wrong length included).
  absl::Status Verify(absl::string_view message, absl::string_view signature) const;
  const std::string& raw() const { return raw_; }

 private:
  VerifyingKey(EVP_PKEY* pkey, std::string raw) : pkey_(pkey), raw_(std::move(raw)) {}
  EVP_PKEY* pkey_;  // Owned.
  std::string raw_;
};

// How a public key is shown to people, everywhere (`comity keys`, `comity
// audit verify --bundle`, docs/keys.md): "sha256:" and the SHA-256 of the
// raw 32-byte key in lower-case hex, 71 characters. Thread-safe.
std::string KeyFingerprint(absl::string_view raw_public_key);

}  // namespace comity

#endif  // COMITY_SERVER_CRYPTO_ED25519_H_
