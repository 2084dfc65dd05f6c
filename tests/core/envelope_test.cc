#include "server/core/envelope.h"

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "comity/v1/request.pb.h"
#include "server/audit/merkle.h"
#include "server/audit/receipt.h"
#include "server/crypto/sha256.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;

class EnvelopeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto fr = SigningKey::Generate();
    auto jp = SigningKey::Generate();
    ASSERT_TRUE(fr.ok() && jp.ok());
    fr_ = *std::move(fr);
    jp_ = *std::move(jp);
    ASSERT_THAT(ring_.Add("FR", "FR-1", fr_->public_key()), IsOk());
    ASSERT_THAT(ring_.Add("JP", "JP-1", jp_->public_key()), IsOk());
    body_ = FrToJp();
    COMITY_ASSERT_OK_AND_ASSIGN(
        request_,
        SignEnvelope(kRequestPayloadType, body_.SerializeAsString(), "FR", "FR-1", *fr_));
  }
  // The body of a request FR sends JP.
  static v1::RequestBody FrToJp() {
    v1::RequestBody body;
    body.set_id("0f8fad5b-d9cb-469f-a165-70867728950e");
    body.set_requesting_party("FR");
    body.set_requested_party("JP");
    return body;
  }
  // What JP's receipt of `request` states: id, parties, payload hash.
  static v1::Receipt JpReceiptOf(const v1::RequestBody& body, const v1::SignedEnvelope& request) {
    v1::Receipt r;
    r.set_request_id(body.id());
    r.set_requesting_party(body.requesting_party());
    r.set_receiving_party("JP");
    r.set_request_payload_sha256(Sha256(request.payload()));
    return r;
  }
  std::unique_ptr<SigningKey> fr_, jp_;
  KeyRing ring_;
  v1::RequestBody body_;        // FrToJp().
  v1::SignedEnvelope request_;  // body_, signed by FR.
};

TEST(SigningInputTest, LayoutIsAsSpecified) {
  // docs/envelope.md: "comity-sig-v1" 0x00, then u32 length-prefixed type,
  // signer and key id, then the u64 length-prefixed payload.
  std::string expected = std::string("comity-sig-v1") + '\0' +
                         absl::HexStringToBytes("00000001") + "T" +
                         absl::HexStringToBytes("00000002") + "FR" +
                         absl::HexStringToBytes("00000004") + "FR-1" +
                         absl::HexStringToBytes("0000000000000003") + "abc";
  EXPECT_EQ(SigningInput("T", "FR", "FR-1", "abc"), expected);
}

TEST(SigningInputTest, FieldBoundariesCannotBeShifted) {
  EXPECT_NE(SigningInput("ab", "c", "k", "p"), SigningInput("a", "bc", "k", "p"));
  EXPECT_NE(SigningInput("t", "FR", "k1", "p"), SigningInput("t", "FRk", "1", "p"));
}

TEST_F(EnvelopeTest, SignedEnvelopeVerifies) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto env,
                              SignEnvelope(kRequestPayloadType, "payload", "FR", "FR-1", *fr_));
  EXPECT_EQ(env.payload(), "payload");
  EXPECT_EQ(env.signer_party(), "FR");
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_), IsOk());
}

TEST_F(EnvelopeTest, TamperingIsRejected) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto env,
                              SignEnvelope(kRequestPayloadType, "payload", "FR", "FR-1", *fr_));
  auto flipped_payload = env;
  flipped_payload.mutable_payload()->at(0) ^= 1;
  EXPECT_THAT(VerifyEnvelope(flipped_payload, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")));
  auto flipped_sig = env;
  flipped_sig.mutable_signature()->at(10) ^= 0x80;
  EXPECT_THAT(VerifyEnvelope(flipped_sig, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(EnvelopeTest, WrongKeyIsRejected) {
  // Signed by JP's key but claiming to be FR's key FR-1.
  COMITY_ASSERT_OK_AND_ASSIGN(auto env,
                              SignEnvelope(kRequestPayloadType, "payload", "FR", "FR-1", *jp_));
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // A claimed signer swapped after signing.
  COMITY_ASSERT_OK_AND_ASSIGN(auto jp_env,
                              SignEnvelope(kRequestPayloadType, "payload", "JP", "JP-1", *jp_));
  jp_env.set_signer_party("FR");
  jp_env.set_key_id("FR-1");
  EXPECT_THAT(VerifyEnvelope(jp_env, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(EnvelopeTest, UnknownSignerOrKeyIdIsRejected) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto env,
                              SignEnvelope(kRequestPayloadType, "p", "FR", "FR-2", *fr_));
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("FR-2")));
  COMITY_ASSERT_OK_AND_ASSIGN(auto de, SignEnvelope(kRequestPayloadType, "p", "DE", "DE-1", *fr_));
  EXPECT_THAT(VerifyEnvelope(de, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("party DE")));
}

TEST_F(EnvelopeTest, SignatureForOnePurposeCannotServeAnother) {
  // A receipt signature replayed as a request: the type is part of what is
  // signed, so relabelling breaks the signature.
  COMITY_ASSERT_OK_AND_ASSIGN(auto env,
                              SignEnvelope(kReceiptPayloadType, "p", "FR", "FR-1", *fr_));
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("payload_type")));
  env.set_payload_type(std::string(kRequestPayloadType));
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(EnvelopeTest, KeyRingRejectsConflictingKeyIds) {
  EXPECT_THAT(ring_.Add("FR", "FR-1", fr_->public_key()), IsOk());  // Same key again.
  EXPECT_THAT(ring_.Add("FR", "FR-1", jp_->public_key()),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_TRUE(ring_.HasParty("JP"));
  EXPECT_FALSE(ring_.HasParty("DE"));
}

TEST_F(EnvelopeTest, ReceiptMustMatchTheRequest) {
  const v1::RequestBody& body = body_;
  const v1::SignedEnvelope& request = request_;
  v1::Receipt r = JpReceiptOf(body, request);
  // JP's log: one REQUEST_RECEIVED entry, and a signed head over it.
  v1::AuditEntry entry;
  entry.set_type(v1::REQUEST_RECEIVED);
  entry.set_request_id(body.id());
  entry.add_hashes(r.request_payload_sha256());
  r.set_received_entry(entry.SerializeAsString());
  v1::TreeHead head;
  head.set_party("JP");
  head.set_tree_size(1);
  head.set_root_hash(merkle::LeafHash(r.received_entry()));
  COMITY_ASSERT_OK_AND_ASSIGN(
      *r.mutable_tree_head(),
      SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "JP", "JP-1", *jp_));
  r.mutable_received_entry_proof()->set_tree_size(1);
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto receipt, SignEnvelope(kReceiptPayloadType, r.SerializeAsString(), "JP", "JP-1", *jp_));
  EXPECT_THAT(VerifyReceipt(request, receipt, "JP", ring_), IsOk());
  EXPECT_THAT(VerifyReceipt(request, receipt, "DE", ring_),
              StatusIs(absl::StatusCode::kUnauthenticated));

  v1::Receipt wrong_hash = r;
  wrong_hash.set_request_payload_sha256(Sha256("other"));
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto bad, SignEnvelope(kReceiptPayloadType, wrong_hash.SerializeAsString(), "JP", "JP-1",
                             *jp_));
  EXPECT_THAT(VerifyReceipt(request, bad, "JP", ring_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hash")));

  v1::Receipt no_head = r;
  no_head.clear_tree_head();
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto headless, SignEnvelope(kReceiptPayloadType, no_head.SerializeAsString(), "JP", "JP-1",
                                  *jp_));
  EXPECT_THAT(VerifyReceipt(request, headless, "JP", ring_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no tree head")));

  v1::Receipt wrong_root = r;
  head.set_root_hash(Sha256("another log"));
  COMITY_ASSERT_OK_AND_ASSIGN(
      *wrong_root.mutable_tree_head(),
      SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "JP", "JP-1", *jp_));
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto bad_root, SignEnvelope(kReceiptPayloadType, wrong_root.SerializeAsString(), "JP",
                                  "JP-1", *jp_));
  EXPECT_THAT(VerifyReceipt(request, bad_root, "JP", ring_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not in the receiver's signed tree head")));

  v1::Receipt wrong_id = r;
  wrong_id.set_request_id("11111111-d9cb-469f-a165-70867728950e");
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto bad_id, SignEnvelope(kReceiptPayloadType, wrong_id.SerializeAsString(), "JP",
                                "JP-1", *jp_));
  EXPECT_THAT(VerifyReceipt(request, bad_id, "JP", ring_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not for request")));
}

// Version 3: no signature of its own; its statement's hash is in the entry
// the signed head proves, and a reader sees the statement's fields.
TEST_F(EnvelopeTest, AProvenReceiptVerifiesThroughItsLog) {
  const v1::RequestBody& body = body_;
  const v1::SignedEnvelope& request = request_;
  v1::Receipt statement = JpReceiptOf(body, request);
  statement.mutable_received_at()->set_seconds(1700000000);
  const std::string statement_bytes = ReceiptStatement(statement, 1);
  v1::AuditEntry entry;
  entry.set_type(v1::REQUEST_RECEIVED);
  entry.set_request_id(body.id());
  entry.add_hashes(statement.request_payload_sha256());
  entry.add_hashes(Sha256(statement_bytes));
  const std::string entry_bytes = entry.SerializeAsString();
  v1::TreeHead head;
  head.set_party("JP");
  head.set_tree_size(1);
  head.set_root_hash(merkle::LeafHash(entry_bytes));
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto signed_head,
      SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "JP", "JP-1", *jp_));
  v1::InclusionProof proof;
  proof.set_tree_size(1);
  v1::SignedEnvelope receipt =
      ProvenReceipt(statement, statement_bytes, signed_head, entry_bytes, proof, "JP");
  EXPECT_TRUE(receipt.signature().empty());
  EXPECT_EQ(ReceiptKeyId(receipt), "JP-1");

  COMITY_ASSERT_OK_AND_ASSIGN(v1::Receipt verified, VerifyReceipt(request, receipt, "JP", ring_));
  EXPECT_EQ(verified.request_id(), body.id());
  EXPECT_EQ(verified.received_at().seconds(), 1700000000);
  EXPECT_EQ(verified.version(), kReceiptVersion);
  EXPECT_EQ(verified.statement(), statement_bytes);
  EXPECT_THAT(VerifyReceiptAuthentic(receipt, ring_), IsOk());
  v1::Receipt read;
  ASSERT_TRUE(ParseReceipt(receipt, &read));
  EXPECT_EQ(read.SerializeAsString(), verified.SerializeAsString());

  // A head signed by someone else proves nothing.
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto fr_head,
      SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "JP", "FR-1", *fr_));
  v1::SignedEnvelope forged =
      ProvenReceipt(statement, statement_bytes, fr_head, entry_bytes, proof, "JP");
  EXPECT_FALSE(VerifyReceipt(request, forged, "JP", ring_).ok());
  EXPECT_FALSE(VerifyReceiptAuthentic(forged, ring_).ok());
  // Nor does an entry without the statement's hash.
  entry.mutable_hashes()->RemoveLast();
  head.set_root_hash(merkle::LeafHash(entry.SerializeAsString()));
  COMITY_ASSERT_OK_AND_ASSIGN(
      signed_head,
      SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "JP", "JP-1", *jp_));
  v1::SignedEnvelope unhashed = ProvenReceipt(statement, statement_bytes, signed_head,
                                              entry.SerializeAsString(), proof, "JP");
  EXPECT_THAT(VerifyReceipt(request, unhashed, "JP", ring_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hashes[1]")));
}

}  // namespace
}  // namespace comity
