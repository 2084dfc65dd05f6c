#include "server/audit/receipt.h"

#include "absl/strings/str_cat.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/request.pb.h"
#include "server/audit/merkle.h"
#include "server/audit/verifier.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/status_macros.h"

namespace comity {

absl::StatusOr<v1::Receipt> VerifyReceipt(const v1::SignedEnvelope& request,
                                          const v1::SignedEnvelope& receipt,
                                          absl::string_view receiver, const KeyRing& ring,
                                          VerifiedHeads* heads) {
  if (receipt.signer_party() != receiver) {
    return absl::UnauthenticatedError(absl::StrCat(
        "receipt is signed by '", receipt.signer_party(), "', expected ", receiver));
  }
  COMITY_RETURN_IF_ERROR(VerifyEnvelope(receipt, kReceiptPayloadType, ring));
  v1::Receipt r;
  if (!r.ParseFromString(receipt.payload())) {
    return absl::InvalidArgumentError("receipt payload is not a comity.v1.Receipt");
  }
  if (r.version() > kReceiptVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the receipt is of format version ", r.version(), "; this node reads versions up to ",
        kReceiptVersion, " (upgrade it to verify it)"));
  }
  if (r.version() == 2 && (r.batch_size() < 1 || r.batch_size() > kMaxDeliveryBatch)) {
    return absl::InvalidArgumentError(absl::StrCat("the receipt's batch_size ", r.batch_size(),
                                                   " is not within 1..", kMaxDeliveryBatch));
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
  // The receiver's log: a signed head, the "received" entry and its proof.
  if (!r.has_tree_head()) {
    return absl::InvalidArgumentError("receipt carries no tree head of the receiver's log");
  }
  if (heads == nullptr || !heads->Contains(r.tree_head())) {
    COMITY_RETURN_IF_ERROR(VerifyEnvelope(r.tree_head(), kTreeHeadPayloadType, ring));
  }
  v1::TreeHead head;
  if (r.tree_head().signer_party() != receiver || !head.ParseFromString(r.tree_head().payload()) ||
      head.party() != receiver) {
    return absl::InvalidArgumentError(
        absl::StrCat("the receipt's tree head is not a head of ", receiver, "'s log"));
  }
  v1::AuditEntry entry;
  if (!entry.ParseFromString(r.received_entry()) || entry.type() != v1::REQUEST_RECEIVED ||
      entry.request_id() != body.id() || entry.hashes_size() < 1 ||
      entry.hashes(0) != r.request_payload_sha256()) {
    return absl::InvalidArgumentError(
        "the receipt's log entry is not the REQUEST_RECEIVED event of this request");
  }
  const v1::InclusionProof& proof = r.received_entry_proof();
  if (proof.leaf_index() != entry.index() || proof.tree_size() != head.tree_size()) {
    return absl::InvalidArgumentError(
        "the receipt's inclusion proof is not for its entry and tree head");
  }
  std::vector<std::string> hashes(proof.hashes().begin(), proof.hashes().end());
  absl::Status included = merkle::VerifyInclusion(proof.leaf_index(), proof.tree_size(),
                                                  merkle::LeafHash(r.received_entry()), hashes,
                                                  head.root_hash());
  if (!included.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the receipt's log entry is not in the receiver's signed tree head: ",
        included.message()));
  }
  if (heads != nullptr) heads->Add(r.tree_head());
  return r;
}

}  // namespace comity
