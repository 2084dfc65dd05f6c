// SHA-256 over OpenSSL 3 EVP: one-shot and incremental.
//
//   std::string digest = Sha256("abc");  // 32 raw bytes.
//
//   Sha256Stream h;
//   h.Update("ab");
//   h.Update("c");
//   assert(h.Finish() == Sha256("abc"));
#ifndef COMITY_SERVER_CRYPTO_SHA256_H_
#define COMITY_SERVER_CRYPTO_SHA256_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace comity {

inline constexpr size_t kSha256Size = 32;

// SHA-256 of `data`, 32 raw bytes. Thread-safe.
std::string Sha256(absl::string_view data);

// Incremental SHA-256. Thread-compatible, not thread-safe. Neither copyable
// nor movable.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;

  // Hashes `data` after everything given so far.
  void Update(absl::string_view data);
  // The 32 raw bytes of the SHA-256 of everything given since construction
  // (or the previous Finish). Resets the stream, which may then be reused.
  std::string Finish();

 private:
  EVP_MD_CTX* ctx_;  // Owned.
};

}  // namespace comity

#endif  // COMITY_SERVER_CRYPTO_SHA256_H_
