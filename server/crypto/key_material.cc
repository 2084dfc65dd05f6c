#include "server/crypto/key_material.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>


namespace comity {
namespace {

// A PEM begin line "-----BEGIN <label>-----" whose label ends in
// "PRIVATE KEY".
bool HasPemPrivateKey(absl::string_view bytes) {
  constexpr absl::string_view kBegin = "-----BEGIN ";
  constexpr absl::string_view kSuffix = "PRIVATE KEY-----";
  for (size_t at = bytes.find(kBegin); at != absl::string_view::npos;
       at = bytes.find(kBegin, at + 1)) {
    absl::string_view rest = bytes.substr(at + kBegin.size(), 80);
    size_t end = rest.find("-----");
    if (end == absl::string_view::npos) continue;
    absl::string_view line = rest.substr(0, end + 5);
    if (line.size() >= kSuffix.size() &&
        line.substr(line.size() - kSuffix.size()) == kSuffix) {
      return true;
    }
  }
  return false;
}

// The whole of `bytes` is one DER structure of a private key.
bool ParsesAsDerPrivateKey(absl::string_view bytes) {
  const unsigned char* begin = reinterpret_cast<const unsigned char*>(bytes.data());
  const unsigned char* end = begin + bytes.size();
  const long len = static_cast<long>(bytes.size());
  const unsigned char* p = begin;
  EVP_PKEY* key = d2i_AutoPrivateKey(nullptr, &p, len);
  bool found = key != nullptr && p == end;
  EVP_PKEY_free(key);
  if (!found) {  // EncryptedPrivateKeyInfo (PKCS#8 with a password).
    p = begin;
    X509_SIG* encrypted = d2i_X509_SIG(nullptr, &p, len);
    found = encrypted != nullptr && p == end;
    X509_SIG_free(encrypted);
  }
  ERR_clear_error();
  return found;
}

}  // namespace

bool HoldsPrivateKey(absl::string_view bytes) {
  if (HasPemPrivateKey(bytes)) return true;
  return !bytes.empty() && bytes.size() <= kMaxDerKeyBytes && ParsesAsDerPrivateKey(bytes);
}

}  // namespace comity
