#include "server/crypto/ed25519.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/crypto/sha256.h"
#include "server/util/hex.h"

namespace comity {
namespace {

std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* ctx) const { EVP_MD_CTX_free(ctx); }
};
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;

absl::StatusOr<std::string> RawPublicKey(EVP_PKEY* pkey) {
  size_t len = kEd25519PublicKeySize;
  std::string raw(len, '\0');
  if (EVP_PKEY_get_raw_public_key(pkey, reinterpret_cast<unsigned char*>(raw.data()),
                                  &len) != 1 ||
      len != kEd25519PublicKeySize) {
    return absl::InternalError(absl::StrCat("cannot read public key: ", OpenSslError()));
  }
  return raw;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::FromPem(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return absl::InternalError("BIO_new_mem_buf failed");
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (pkey == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "not a PEM private key (expected an Ed25519 key in PKCS#8 PEM, as made by "
        "'openssl genpkey -algorithm ed25519')");
  }
  if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(pkey);
    return absl::InvalidArgumentError(
        "the private key is not an Ed25519 key; make one with 'openssl genpkey "
        "-algorithm ed25519'");
  }
  auto raw = RawPublicKey(pkey);
  if (!raw.ok()) {
    EVP_PKEY_free(pkey);
    return raw.status();
  }
  return std::unique_ptr<SigningKey>(new SigningKey(pkey, *std::move(raw)));
}

absl::StatusOr<std::unique_ptr<SigningKey>> SigningKey::Generate() {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (pkey == nullptr) {
    return absl::InternalError(absl::StrCat("key generation failed: ", OpenSslError()));
  }
  auto raw = RawPublicKey(pkey);
  if (!raw.ok()) {
    EVP_PKEY_free(pkey);
    return raw.status();
  }
  return std::unique_ptr<SigningKey>(new SigningKey(pkey, *std::move(raw)));
}

SigningKey::~SigningKey() { EVP_PKEY_free(pkey_); }

absl::StatusOr<std::string> SigningKey::Sign(absl::string_view message) const {
  MdCtx ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return absl::InternalError("EVP_MD_CTX_new failed");
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey_) != 1) {
    return absl::InternalError(absl::StrCat("EVP_DigestSignInit: ", OpenSslError()));
  }
  std::string sig(kEd25519SignatureSize, '\0');
  size_t sig_len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &sig_len,
                     reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1 ||
      sig_len != kEd25519SignatureSize) {
    return absl::InternalError(absl::StrCat("EVP_DigestSign: ", OpenSslError()));
  }
  return sig;
}

absl::StatusOr<std::string> SigningKey::PrivateKeyPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return absl::InternalError("BIO_new failed");
  if (PEM_write_bio_PrivateKey(bio, pkey_, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    BIO_free(bio);
    return absl::InternalError(absl::StrCat("PEM_write_bio_PrivateKey: ", OpenSslError()));
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(len));
  BIO_free(bio);
  return pem;
}

absl::StatusOr<std::unique_ptr<VerifyingKey>> VerifyingKey::FromRaw(
    absl::string_view raw) {
  if (raw.size() != kEd25519PublicKeySize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "an Ed25519 public key is %d bytes, got %d", kEd25519PublicKeySize, raw.size()));
  }
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()),
      raw.size());
  if (pkey == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid Ed25519 public key: ", OpenSslError()));
  }
  return std::unique_ptr<VerifyingKey>(new VerifyingKey(pkey, std::string(raw)));
}

VerifyingKey::~VerifyingKey() { EVP_PKEY_free(pkey_); }

absl::Status VerifyingKey::Verify(absl::string_view message,
                                  absl::string_view signature) const {
  if (signature.size() != kEd25519SignatureSize) {
    return absl::UnauthenticatedError(absl::StrFormat(
        "signature is %d bytes, an Ed25519 signature is %d", signature.size(),
        kEd25519SignatureSize));
  }
  MdCtx ctx(EVP_MD_CTX_new());
  if (ctx == nullptr) return absl::InternalError("EVP_MD_CTX_new failed");
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey_) != 1) {
    return absl::InternalError(absl::StrCat("EVP_DigestVerifyInit: ", OpenSslError()));
  }
  int rc = EVP_DigestVerify(ctx.get(),
                            reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(),
                            reinterpret_cast<const unsigned char*>(message.data()),
                            message.size());
  if (rc != 1) {
    ERR_clear_error();
    return absl::UnauthenticatedError("signature does not verify");
  }
  return absl::OkStatus();
}

std::string KeyFingerprint(absl::string_view raw_public_key) {
  return absl::StrCat("sha256:", HexEncode(Sha256(raw_public_key)));
}

}  // namespace comity
