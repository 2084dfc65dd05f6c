// Checking that a signed receipt acknowledges a given signed request.
#ifndef COMITY_SERVER_AUDIT_RECEIPT_H_
#define COMITY_SERVER_AUDIT_RECEIPT_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "comity/v1/envelope.pb.h"
#include "server/core/envelope.h"

namespace comity {

// Verifies that `receipt` is signed by `receiver` with a key in `ring` and
// acknowledges exactly `request` (id, requesting party, receiving party and
// SHA-256 of the payload bytes), and that it carries the receiver's signed
// tree head with the REQUEST_RECEIVED entry of this request and its
// inclusion proof (docs/audit_log.md). Returns the parsed receipt.
// Errors: Unauthenticated (signer or signature), InvalidArgument (the
// receipt is for something else, or does not parse).
absl::StatusOr<v1::Receipt> VerifyReceipt(const v1::SignedEnvelope& request,
                                          const v1::SignedEnvelope& receipt,
                                          absl::string_view receiver, const KeyRing& ring);

}  // namespace comity

#endif  // COMITY_SERVER_AUDIT_RECEIPT_H_
