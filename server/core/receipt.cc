#include "server/core/receipt.h"

#include "absl/strings/str_cat.h"
#include "comity/v1/request.pb.h"
#include "server/crypto/ed25519.h"
#include "server/util/status_macros.h"

namespace comity {

absl::StatusOr<v1::Receipt> VerifyReceipt(const v1::SignedEnvelope& request,
                                          const v1::SignedEnvelope& receipt,
                                          absl::string_view receiver, const KeyRing& ring) {
  if (receipt.signer_party() != receiver) {
    return absl::UnauthenticatedError(absl::StrCat(
        "receipt is signed by '", receipt.signer_party(), "', expected ", receiver));
  }
  COMITY_RETURN_IF_ERROR(VerifyEnvelope(receipt, kReceiptPayloadType, ring));
  v1::Receipt r;
  if (!r.ParseFromString(receipt.payload())) {
    return absl::InvalidArgumentError("receipt payload is not a comity.v1.Receipt");
  }
  v1::RequestBody body;
  if (!body.ParseFromString(request.payload())) {
    return absl::InvalidArgumentError("request payload is not a comity.v1.RequestBody");
  }
  if (r.request_id() != body.id() || r.requesting_party() != body.requesting_party() ||
      r.receiving_party() != receiver) {
    return absl::InvalidArgumentError(absl::StrCat(
        "receipt is for request ", r.request_id(), " from ", r.requesting_party(), " to ",
        r.receiving_party(), ", not for request ", body.id()));
  }
  if (r.request_payload_sha256() != Sha256(request.payload())) {
    return absl::InvalidArgumentError(
        "receipt acknowledges different request bytes (payload SHA-256 hash mismatch)");
  }
  return r;
}

}  // namespace comity
