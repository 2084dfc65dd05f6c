// Checking that a signed receipt acknowledges a given signed request.
#ifndef COMITY_SERVER_AUDIT_RECEIPT_H_
#define COMITY_SERVER_AUDIT_RECEIPT_H_

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "comity/v1/envelope.pb.h"
#include "server/core/envelope.h"

namespace comity {

// The newest receipt format this node writes and reads (Receipt.version).
inline constexpr uint32_t kReceiptVersion = 2;
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

// Verifies that `receipt` is signed by `receiver` with a key in `ring` and
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

}  // namespace comity

#endif  // COMITY_SERVER_AUDIT_RECEIPT_H_
