#include "server/crypto/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

namespace comity {
namespace {

// Only on memory exhaustion or a broken OpenSSL: nothing sane to return.
[[noreturn]] void DieOnDigestFailure(const char* what) {
  std::fprintf(stderr, "fatal: %s(SHA-256) failed\n", what);
  std::abort();
}

}  // namespace

std::string Sha256(absl::string_view data) {
  std::string digest(kSha256Size, '\0');
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(),
                 reinterpret_cast<unsigned char*>(digest.data()), &len, EVP_sha256(),
                 nullptr) != 1 ||
      len != kSha256Size) {
    DieOnDigestFailure("EVP_Digest");
  }
  return digest;
}

Sha256Stream::Sha256Stream() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) DieOnDigestFailure("EVP_MD_CTX_new");
  if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    DieOnDigestFailure("EVP_DigestInit_ex");
  }
}

Sha256Stream::~Sha256Stream() { EVP_MD_CTX_free(ctx_); }

void Sha256Stream::Update(absl::string_view data) {
  if (data.empty()) return;
  if (EVP_DigestUpdate(ctx_, data.data(), data.size()) != 1) {
    DieOnDigestFailure("EVP_DigestUpdate");
  }
}

std::string Sha256Stream::Finish() {
  std::string digest(kSha256Size, '\0');
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx_, reinterpret_cast<unsigned char*>(digest.data()), &len) !=
          1 ||
      len != kSha256Size) {
    DieOnDigestFailure("EVP_DigestFinal_ex");
  }
  if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    DieOnDigestFailure("EVP_DigestInit_ex");
  }
  return digest;
}

}  // namespace comity
