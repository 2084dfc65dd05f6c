// Fuzzes receipt verification (server/audit/receipt.h: VerifyReceipt), which
// a node runs on what a peer answers to a delivered request: the receipt
// envelope, its payload, the embedded signed tree head, the log entry and
// its Merkle inclusion proof. Also fuzzes merkle::VerifyConsistency, which
// checks the consistency proofs peers send during tree head gossip.
//
// Input: one flags byte, then the wire bytes of a comity.v1.RequestRecord
// whose `request` and `receipt` fields are the pair to verify (the receiver
// is always FR). Flags let mutated inputs get past what a fuzzer cannot
// forge (a signature, a SHA-256), so that the parsers behind them are
// reached:
//   1  set the receipt's request_payload_sha256 to that of the request
//   2  re-sign the receipt's tree head
//   4  re-sign the receipt (a version 3 receipt then has a signature, which
//      it may not)
//   8  also check the proof hashes as a consistency proof between the
//      proof's leaf_index and tree_size, from the head's root
// Re-signing uses the ring's key of the envelope's signer and key id (FR's
// key for anyone else, so that it does not verify).
#include <cstddef>
#include <cstdint>

#include "comity/v1/audit.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "comity/v1/request.pb.h"
#include "server/audit/merkle.h"
#include "server/core/envelope.h"
#include "server/audit/receipt.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "tests/fuzz/fuzz_common.h"

namespace comity::fuzz {
namespace {

constexpr uint8_t kSyncHash = 1, kResignHead = 2, kResignReceipt = 4, kConsistency = 8;
constexpr absl::string_view kReceiver = "FR";

void Resign(v1::SignedEnvelope* env) {
  const TwoPartyKeys& k = Keys();
  const SigningKey& key =
      env->signer_party() == "JP" && env->key_id() == "JP-1" ? *k.jp : *k.fr;
  auto signed_env =
      SignEnvelope(env->payload_type(), env->payload(), env->signer_party(), env->key_id(), key);
  Check(signed_env.ok(), "re-signing");
  *env = *std::move(signed_env);
}

// RFC 6962 Merkle tree hash and inclusion path, written out independently
// of server/audit/merkle.cc, to build seeds.
std::string TreeHash(const std::vector<std::string>& leaves, size_t begin, size_t end) {
  if (end - begin == 1) return merkle::LeafHash(leaves[begin]);
  size_t k = 1;
  while (k * 2 < end - begin) k *= 2;
  return merkle::NodeHash(TreeHash(leaves, begin, begin + k), TreeHash(leaves, begin + k, end));
}

void TreePath(const std::vector<std::string>& leaves, size_t m, size_t begin, size_t end,
              std::vector<std::string>* path) {
  if (end - begin == 1) return;
  size_t k = 1;
  while (k * 2 < end - begin) k *= 2;
  if (m < k) {
    TreePath(leaves, m, begin, begin + k, path);
    path->push_back(TreeHash(leaves, begin + k, end));
  } else {
    TreePath(leaves, m - k, begin + k, end, path);
    path->push_back(TreeHash(leaves, begin, begin + k));
  }
}

// A request from JP and FR's valid receipt for it, FR's log holding
// `size` entries of which the REQUEST_RECEIVED one is at `index`: signed
// (version 0), or `proven` (version 3: unsigned, its statement hashed into
// the entry).
std::string SeedRecord(size_t size, size_t index, uint8_t flags, bool proven = false) {
  const TwoPartyKeys& k = Keys();
  v1::RequestBody body;
  body.set_id("0f8fad5b-d9cb-469f-a165-70867728950e");
  body.set_requesting_party("JP");
  body.set_requested_party("FR");
  body.mutable_created_at()->set_seconds(1798000000);
  body.set_assistance_type(v1::PRESERVATION);
  auto request = SignEnvelope(kRequestPayloadType, SerializeDeterministic(body), "JP", "JP-1",
                              *k.jp);
  Check(request.ok(), "seed request");
  const std::string payload_hash = Sha256(request->payload());
  v1::Receipt r;
  r.set_request_id(body.id());
  r.set_requesting_party("JP");
  r.set_receiving_party("FR");
  r.set_request_payload_sha256(payload_hash);
  r.mutable_received_at()->set_seconds(1798000001);
  r.mutable_receiver_assessment()->set_obligation(v1::BINDING);
  r.mutable_receiver_assessment()->set_instrument("ETS185");
  const std::string statement = proven ? ReceiptStatement(r, 1) : "";

  std::vector<std::string> leaves;
  for (size_t i = 0; i < size; ++i) {
    v1::AuditEntry e;
    e.set_index(i);
    e.set_time_unix_micros(1798000000000000 + static_cast<int64_t>(i));
    if (i == index) {
      e.set_type(v1::REQUEST_RECEIVED);
      e.set_actor("peer:JP");
      e.set_request_id(body.id());
      e.set_party("JP");
      e.add_hashes(payload_hash);
      if (proven) e.add_hashes(Sha256(statement));
    } else {
      e.set_type(v1::NODE_STARTED);
      e.set_actor("node");
    }
    leaves.push_back(SerializeDeterministic(e));
  }
  v1::TreeHead head;
  head.set_party("FR");
  head.set_tree_size(size);
  head.set_root_hash(TreeHash(leaves, 0, size));
  head.set_timestamp_unix_micros(1798000000000000);
  auto signed_head =
      SignEnvelope(kTreeHeadPayloadType, SerializeDeterministic(head), "FR", "FR-1", *k.fr);
  Check(signed_head.ok(), "seed head");

  *r.mutable_tree_head() = *signed_head;
  r.set_received_entry(leaves[index]);
  r.mutable_received_entry_proof()->set_leaf_index(index);
  r.mutable_received_entry_proof()->set_tree_size(size);
  std::vector<std::string> path;
  TreePath(leaves, index, 0, size, &path);
  for (const std::string& h : path) r.mutable_received_entry_proof()->add_hashes(h);
  Check(merkle::VerifyInclusion(index, size, merkle::LeafHash(leaves[index]), path,
                                head.root_hash())
            .ok(),
        "seed inclusion proof");
  absl::StatusOr<v1::SignedEnvelope> receipt =
      proven ? ProvenReceipt(r, statement, *signed_head, leaves[index], r.received_entry_proof(),
                             "FR")
             : SignEnvelope(kReceiptPayloadType, SerializeDeterministic(r), "FR", "FR-1", *k.fr);
  Check(receipt.ok(), "seed receipt");
  Check(VerifyReceipt(*request, *receipt, kReceiver, k.ring).ok(), "seed receipt verifies");

  v1::RequestRecord record;
  *record.mutable_request() = *request;
  *record.mutable_receipt() = *receipt;
  return std::string(1, static_cast<char>(flags)) + SerializeDeterministic(record);
}

}  // namespace
}  // namespace comity::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace comity::fuzz;
  InitializeFuzzer([](SeedWriter& seeds) {
    const uint8_t all = kSyncHash | kResignHead | kResignReceipt;
    seeds.Add("size1", SeedRecord(1, 0, all));
    seeds.Add("size5-index2", SeedRecord(5, 2, all));
    seeds.Add("size8-index7", SeedRecord(8, 7, all | kConsistency));
    seeds.Add("size13-index12", SeedRecord(13, 12, all));
    seeds.Add("size6-raw", SeedRecord(6, 3, 0));
    seeds.Add("proven-size5-index2", SeedRecord(5, 2, kResignHead, /*proven=*/true));
    seeds.Add("proven-size1-raw", SeedRecord(1, 0, 0, /*proven=*/true));
  });
  Keys();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace comity;
  using namespace comity::fuzz;
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  v1::RequestRecord record;
  if (!record.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;
  v1::SignedEnvelope receipt = record.receipt();

  v1::Receipt r;
  const bool parsed = r.ParseFromString(receipt.payload());
  if (parsed && (flags & (kSyncHash | kResignHead))) {
    if (flags & kSyncHash) r.set_request_payload_sha256(Sha256(record.request().payload()));
    if (flags & kResignHead) Resign(r.mutable_tree_head());
    receipt.set_payload(SerializeDeterministic(r));
  }
  if (flags & kResignReceipt) Resign(&receipt);
  if (parsed && (flags & kConsistency)) {
    v1::TreeHead head;
    (void)head.ParseFromString(r.tree_head().payload());
    const v1::InclusionProof& p = r.received_entry_proof();
    std::vector<std::string> hashes(p.hashes().begin(), p.hashes().end());
    (void)merkle::VerifyConsistency(p.leaf_index(), p.tree_size(), head.root_hash(),
                                    merkle::LeafHash(r.received_entry()), hashes);
  }

  absl::StatusOr<v1::Receipt> verified =
      VerifyReceipt(record.request(), receipt, kReceiver, Keys().ring);
  if (verified.ok()) {
    v1::RequestBody body;
    if (receipt.signer_party() != kReceiver || !body.ParseFromString(record.request().payload()) ||
        verified->request_id() != body.id() ||
        verified->request_payload_sha256() != Sha256(record.request().payload())) {
      Fail("VerifyReceipt accepted a receipt that is not the receiver's for this request");
    }
  }
  return 0;
}
