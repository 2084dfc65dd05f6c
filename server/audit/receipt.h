// Checking that a signed receipt acknowledges a given signed request.
#ifndef COMITY_SERVER_AUDIT_RECEIPT_H_
#define COMITY_SERVER_AUDIT_RECEIPT_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/envelope.pb.h"
#include "server/core/envelope.h"

namespace comity {

// The newest receipt format this node writes and reads (Receipt.version):
// 3, proven by the batch's signed tree head rather than signed on its own
// (docs/envelope.md, "Receipt").
inline constexpr uint32_t kReceiptVersion = 3;
// The most requests one DeliverRequests call carries (and one batch head
// covers).
inline constexpr int kMaxDeliveryBatch = 256;

// Tree heads already verified: the receipts of one batch share a head
// (Receipt.batch_size), whose signature is then checked once. Not
// thread-safe.
class VerifiedHeads {
 public:
  bool Contains(const v1::SignedEnvelope& head) const {
    return seen_.contains(head.SerializeAsString());
  }
  void Add(const v1::SignedEnvelope& head) { seen_.insert(head.SerializeAsString()); }

 private:
  absl::flat_hash_set<std::string> seen_;
};

// Verifies that `receipt` is the receiver's (signed by `receiver` with a key
// in `ring` through version 2; from version 3, its statement hashed into the
// REQUEST_RECEIVED entry that the receiver's signed tree head proves) and
// acknowledges exactly `request` (id, requesting party, receiving party and
// SHA-256 of the payload bytes), and that it carries the receiver's signed
// tree head with the REQUEST_RECEIVED entry of this request and its
// inclusion proof (docs/audit_log.md). Returns the parsed receipt.
// `heads`, if given, skips the signature check of a head it holds and
// adds the head once checked. Errors: Unauthenticated (signer or
// signature), InvalidArgument (the receipt is for something else, does not
// parse, or is of a format version this node does not know).
absl::StatusOr<v1::Receipt> VerifyReceipt(const v1::SignedEnvelope& request,
                                          const v1::SignedEnvelope& receipt,
                                          absl::string_view receiver, const KeyRing& ring,
                                          VerifiedHeads* heads = nullptr);

// Whether a stored receipt is still the one its signer made, without the
// request it acknowledges: its own signature through version 2, its
// statement, entry, inclusion proof and signed head from version 3. A
// version 2 receipt without a head is authentic (it predates the log);
// VerifyReceipt refuses it. Errors as VerifyReceipt's.
absl::Status VerifyReceiptAuthentic(const v1::SignedEnvelope& receipt, const KeyRing& ring);

// The key that vouches for `receipt`: its own key id through version 2, its
// tree head's from version 3 (a version 3 receipt carries no signature).
std::string ReceiptKeyId(const v1::SignedEnvelope& receipt);

// A version 3 receipt is made in two steps. `ReceiptStatement` fills in
// `statement`'s version and batch size and returns its bytes; their SHA-256
// goes into the REQUEST_RECEIVED entry as hashes[1] before the entry is
// appended. `ProvenReceipt` then wraps the statement, the batch's signed
// head, the entry's bytes and its inclusion proof into the receipt envelope
// of `party`: nothing is signed.
std::string ReceiptStatement(v1::Receipt& statement, int batch_size);
v1::SignedEnvelope ProvenReceipt(const v1::Receipt& statement, std::string statement_bytes,
                                 const v1::SignedEnvelope& head, std::string entry_bytes,
                                 v1::InclusionProof proof, absl::string_view party);

}  // namespace comity

#endif  // COMITY_SERVER_AUDIT_RECEIPT_H_
