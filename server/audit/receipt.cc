#include "server/audit/receipt.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/request.pb.h"
#include "server/audit/merkle.h"
#include "server/audit/verifier.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

// Parses `receipt` and checks what vouches for its own bytes: its signature
// through version 2; from version 3, that it carries none and that its
// fields are its statement (the log proof is CheckLogged's).
absl::StatusOr<v1::Receipt> OpenReceipt(const v1::SignedEnvelope& receipt,
                                        const KeyRing& ring) {
  v1::Receipt r;
  const bool parsed = receipt.payload_type() == kReceiptPayloadType &&
                      r.ParseFromString(receipt.payload());
  if (!parsed || r.version() < kProvenReceiptVersion) {
    // Authenticated before anything else is read from it.
    COMITY_RETURN_IF_ERROR(VerifyEnvelope(receipt, kReceiptPayloadType, ring));
    if (!parsed) {
      return absl::InvalidArgumentError("receipt payload is not a comity.v1.Receipt");
    }
  }
  if (r.version() > kReceiptVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the receipt is of format version ", r.version(), "; this node reads versions up to ",
        kReceiptVersion, " (upgrade it to verify it)"));
  }
  if (r.version() >= 2 && (r.batch_size() < 1 || r.batch_size() > kMaxDeliveryBatch)) {
    return absl::InvalidArgumentError(absl::StrCat("the receipt's batch_size ", r.batch_size(),
                                                   " is not within 1..", kMaxDeliveryBatch));
  }
  if (r.version() >= kProvenReceiptVersion) {
    if (!receipt.key_id().empty() || !receipt.signature().empty()) {
      return absl::InvalidArgumentError(
          "a version 3 receipt carries no signature of its own (its tree head proves it), "
          "but this one has a key_id or signature");
    }
    COMITY_RETURN_IF_ERROR(ReadReceiptStatement(r));
  }
  return r;
}

// Checks 6 to 11 of docs/envelope.md: `r`'s REQUEST_RECEIVED entry (and, from
// version 3, its statement) is in a signed head of `receiver`'s log.
absl::Status CheckLogged(const v1::Receipt& r, absl::string_view receiver,
                         const KeyRing& ring, VerifiedHeads* heads) {
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
      entry.request_id() != r.request_id() || entry.hashes_size() < 1 ||
      entry.hashes(0) != r.request_payload_sha256()) {
    return absl::InvalidArgumentError(
        "the receipt's log entry is not the REQUEST_RECEIVED event of this request");
  }
  if (r.version() >= kProvenReceiptVersion &&
      (entry.hashes_size() < 2 || entry.hashes(1) != Sha256(r.statement()))) {
    return absl::InvalidArgumentError(
        "the receipt's log entry does not hold the SHA-256 of its statement (hashes[1])");
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
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::Receipt> VerifyReceipt(const v1::SignedEnvelope& request,
                                          const v1::SignedEnvelope& receipt,
                                          absl::string_view receiver, const KeyRing& ring,
                                          VerifiedHeads* heads) {
  if (receipt.signer_party() != receiver) {
    return absl::UnauthenticatedError(absl::StrCat(
        "receipt is signed by '", receipt.signer_party().substr(0, 8), "', expected ",
        receiver));
  }
  COMITY_ASSIGN_OR_RETURN(v1::Receipt r, OpenReceipt(receipt, ring));
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
  COMITY_RETURN_IF_ERROR(CheckLogged(r, receiver, ring, heads));
  return r;
}

absl::Status VerifyReceiptAuthentic(const v1::SignedEnvelope& receipt, const KeyRing& ring) {
  COMITY_ASSIGN_OR_RETURN(v1::Receipt r, OpenReceipt(receipt, ring));
  if (r.version() < kProvenReceiptVersion) return absl::OkStatus();  // Signed: checked.
  if (r.receiving_party() != receipt.signer_party()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the receipt names ", r.receiving_party().substr(0, 8), " as receiver but is ",
        receipt.signer_party().substr(0, 8), "'s"));
  }
  return CheckLogged(r, receipt.signer_party(), ring, nullptr);
}

std::string ReceiptKeyId(const v1::SignedEnvelope& receipt) {
  if (!receipt.key_id().empty()) return receipt.key_id();
  v1::Receipt r;
  if (!r.ParseFromString(receipt.payload())) return "";
  return r.tree_head().key_id();
}

std::string ReceiptStatement(v1::Receipt& statement, int batch_size) {
  statement.set_version(kReceiptVersion);
  statement.set_batch_size(static_cast<uint32_t>(batch_size));
  return SerializeDeterministic(statement);
}

v1::SignedEnvelope ProvenReceipt(const v1::Receipt& statement, std::string statement_bytes,
                                 const v1::SignedEnvelope& head, std::string entry_bytes,
                                 v1::InclusionProof proof, absl::string_view party) {
  v1::Receipt r;
  r.set_version(statement.version());
  r.set_batch_size(statement.batch_size());
  *r.mutable_tree_head() = head;
  r.set_received_entry(std::move(entry_bytes));
  *r.mutable_received_entry_proof() = std::move(proof);
  r.set_statement(std::move(statement_bytes));
  v1::SignedEnvelope envelope;
  envelope.set_payload_type(std::string(kReceiptPayloadType));
  envelope.set_signer_party(std::string(party));
  envelope.set_payload(SerializeDeterministic(r));
  return envelope;
}

}  // namespace comity
