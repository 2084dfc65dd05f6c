// RequestIntake: peers admitted by their node certificate, under the
// message-size and rate limits; operators admitted by their roles; every
// refusal audited; requests a peer delivers checked, stored and receipted.
#include "server/node/request_intake.h"

#include <cctype>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/audit/receipt.h"
#include "server/core/envelope.h"
#include "server/crypto/sha256.h"
#include "server/util/time_proto.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::AuditEntriesOf;
using ::comity::testing::FakePeerTransport;
using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::NodeHarness;
using ::comity::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

// FR's intake, with a JP node to sign the requests it receives.
class RequestIntakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
    COMITY_ASSERT_OK_AND_ASSIGN(jp_, harness_.MakeNode("JP", &jp_transport_));
  }
  RequestIntake& intake() { return fr_->intake(); }

  // A request an operator of JP submitted to FR, signed by JP now.
  absl::StatusOr<v1::SignedEnvelope> JpRequest() {
    absl::StatusOr<v1::RequestRecord> stored =
        jp_->submission().Submit("alice", NodeHarness::Draft("FR"));
    if (!stored.ok()) return stored.status();
    return stored->request();
  }
  // `body`, signed by `node` as a request.
  static absl::StatusOr<v1::SignedEnvelope> SignedBy(Node& node,
                                                     const v1::RequestBody& body) {
    return node.context().Sign(kRequestPayloadType, body);
  }
  static v1::RequestBody BodyOf(const v1::SignedEnvelope& env) {
    v1::RequestBody body;
    EXPECT_TRUE(body.ParseFromString(env.payload()));
    return body;
  }
  // FR's audit entries of `type`; empty (and a failure) if unreadable.
  std::vector<v1::AuditEntry> FrAudit(v1::AuditEventType type,
                                      const std::string& id = "") {
    absl::StatusOr<std::vector<v1::AuditEntry>> entries = AuditEntriesOf(*fr_, type, id);
    EXPECT_THAT(entries, IsOk());
    return entries.ok() ? *std::move(entries) : std::vector<v1::AuditEntry>{};
  }
  // FR's records of `id`.
  std::vector<v1::RequestRecord> FrRecords(const std::string& id) {
    absl::StatusOr<std::vector<v1::RequestRecord>> records =
        fr_->store()->requests().Get(id);
    EXPECT_THAT(records, IsOk());
    return records.ok() ? *std::move(records) : std::vector<v1::RequestRecord>{};
  }

  NodeHarness harness_;
  FakePeerTransport fr_transport_;
  FakePeerTransport jp_transport_;
  std::unique_ptr<Node> fr_;
  std::unique_ptr<Node> jp_;
};

// --- AdmitPeer. ---

TEST_F(RequestIntakeTest, APeersNodeCertificateIsAdmittedAsThatParty) {
  EXPECT_THAT(intake().AdmitPeer(harness_.PeerCall("JP"), "DeliverRequest"),
              IsOkAndHolds("JP"));
  // Again, from the authentication cache.
  EXPECT_THAT(intake().AdmitPeer(harness_.PeerCall("JP"), "DeliverTransition"),
              IsOkAndHolds("JP"));
  EXPECT_THAT(FrAudit(v1::AUTH_FAILURE), IsEmpty());
  EXPECT_THAT(FrAudit(v1::PEER_REQUEST_REFUSED), IsEmpty());
}

TEST_F(RequestIntakeTest, AnOperatorCertificateIsRefusedOnThePeerListenerAndAudited) {
  CallInfo call = harness_.OperatorCall("FR", "alice");
  call.tls_peer = "ipv4:192.0.2.7:4242";
  EXPECT_THAT(
      intake().AdmitPeer(call, "DeliverRequest"),
      StatusIs(absl::StatusCode::kPermissionDenied,
               HasSubstr("an operator certificate cannot be used on the peer listener")));
  // Also once its identity is cached as an operator's.
  ASSERT_THAT(intake().AdmitOperator(call, "ListRequests", {}), IsOk());
  EXPECT_THAT(
      intake().AdmitPeer(call, "DeliverTransition"),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("operator certificate")));
  std::vector<v1::AuditEntry> failures = FrAudit(v1::AUTH_FAILURE);
  ASSERT_THAT(failures, SizeIs(2));
  EXPECT_EQ(failures[0].actor(), "tls:ipv4:192.0.2.7:4242");
  EXPECT_THAT(failures[0].detail(),
              StartsWith("DeliverRequest: an operator certificate"));
  EXPECT_THAT(failures[1].detail(), StartsWith("DeliverTransition: "));
}

TEST_F(RequestIntakeTest, CertificatesOfAnotherNetworkAreRefusedAndAudited) {
  // Another network: its DE is no peer of FR here, and its JP and FR were
  // issued by other CAs than the ones FR trusts.
  NodeHarness other({"FR", "JP", "DE"});
  EXPECT_THAT(intake().AdmitPeer(other.PeerCall("DE"), "DeliverRequest"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("party DE is not a configured peer of FR")));
  EXPECT_THAT(intake().AdmitPeer(other.PeerCall("JP"), "DeliverRequest"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("certificate claiming party JP")));
  EXPECT_THAT(
      intake().AdmitOperator(other.OperatorCall("FR", "alice"), "Submit", {"submitter"}),
      StatusIs(absl::StatusCode::kPermissionDenied));
  std::vector<v1::AuditEntry> failures = FrAudit(v1::AUTH_FAILURE);
  ASSERT_THAT(failures, SizeIs(3));
  EXPECT_THAT(failures[0].detail(), HasSubstr("party DE is not a configured peer of FR"));
  EXPECT_THAT(failures[1].detail(), HasSubstr("certificate claiming party JP"));
  EXPECT_THAT(failures[2].detail(), StartsWith("Submit: "));
  // The real JP is still admitted.
  EXPECT_THAT(intake().AdmitPeer(harness_.PeerCall("JP"), "DeliverRequest"),
              IsOkAndHolds("JP"));
}

TEST_F(RequestIntakeTest, GarbageInsteadOfACertificateIsRefusedAndAudited) {
  const CallInfo garbage{
      "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", "",
      "ipv4:192.0.2.9:1", 0};
  EXPECT_THAT(intake().AdmitPeer(garbage, "DeliverRequest"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  const CallInfo empty{"", "", "ipv4:192.0.2.9:2", 0};
  EXPECT_THAT(intake().AdmitPeer(empty, "ExchangeTreeHeads"),
              StatusIs(absl::StatusCode::kPermissionDenied));
  std::vector<v1::AuditEntry> failures = FrAudit(v1::AUTH_FAILURE);
  ASSERT_THAT(failures, SizeIs(2));
  EXPECT_EQ(failures[0].actor(), "tls:ipv4:192.0.2.9:1");
  EXPECT_THAT(failures[0].detail(), StartsWith("DeliverRequest: "));
  EXPECT_EQ(failures[1].actor(), "tls:ipv4:192.0.2.9:2");
  EXPECT_THAT(failures[1].detail(), StartsWith("ExchangeTreeHeads: "));
}

TEST_F(RequestIntakeTest, AMessageOverTheSizeLimitIsRefusedAndAudited) {
  const uint64_t limit = fr_->context().config().limits().max_message_bytes();
  ASSERT_GT(limit, 0u);
  CallInfo call = harness_.PeerCall("JP");
  call.message_bytes = limit;
  EXPECT_THAT(intake().AdmitPeer(call, "DeliverRequest"), IsOkAndHolds("JP"));
  EXPECT_THAT(FrAudit(v1::PEER_REQUEST_REFUSED), IsEmpty());
  call.message_bytes = limit + 1;
  EXPECT_THAT(
      intake().AdmitPeer(call, "DeliverRequest"),
      StatusIs(absl::StatusCode::kResourceExhausted,
               HasSubstr(absl::StrCat(limit + 1, " bytes; the limit is ", limit))));
  std::vector<v1::AuditEntry> refused = FrAudit(v1::PEER_REQUEST_REFUSED);
  ASSERT_THAT(refused, SizeIs(1));
  EXPECT_EQ(refused[0].actor(), "peer:JP");
  EXPECT_EQ(refused[0].party(), "JP");
  EXPECT_THAT(refused[0].detail(), StartsWith("DeliverRequest: RESOURCE_EXHAUSTED: "));
  EXPECT_THAT(refused[0].hashes(), IsEmpty());
  // An authenticated peer, not an authentication failure.
  EXPECT_THAT(FrAudit(v1::AUTH_FAILURE), IsEmpty());
}

TEST(RequestIntakeRateLimitTest, APeerOverItsRateLimitIsRefusedAndAuditedOncePerPeer) {
  NodeHarness harness({"FR", "JP", "DE"});
  harness.ConfigText("FR") += "limits { peer_rate_per_second: 1 peer_burst: 2 }\n";
  FakePeerTransport transport;
  COMITY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Node> fr,
                              harness.MakeNode("FR", &transport));
  RequestIntake& intake = fr->intake();
  const CallInfo jp = harness.PeerCall("JP");
  const CallInfo de = harness.PeerCall("DE");

  // JP's burst, then refusals.
  EXPECT_THAT(intake.AdmitPeer(jp, "DeliverRequest"), IsOkAndHolds("JP"));
  EXPECT_THAT(intake.AdmitPeer(jp, "DeliverRequest"), IsOkAndHolds("JP"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(intake.AdmitPeer(jp, "DeliverRequest"),
                StatusIs(absl::StatusCode::kUnavailable,
                         HasSubstr("party JP is over its rate limit on this node")));
  }
  // DE has a bucket of its own.
  EXPECT_THAT(intake.AdmitPeer(de, "DeliverRequest"), IsOkAndHolds("DE"));
  EXPECT_THAT(intake.AdmitPeer(de, "DeliverRequest"), IsOkAndHolds("DE"));
  EXPECT_THAT(intake.AdmitPeer(de, "DeliverRequest"),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(intake.AdmitPeer(de, "DeliverRequest"),
              StatusIs(absl::StatusCode::kUnavailable));

  // Nothing audited per refused call...
  auto audit = [&](v1::AuditEventType type) {
    absl::StatusOr<std::vector<v1::AuditEntry>> entries = AuditEntriesOf(*fr, type);
    EXPECT_THAT(entries, IsOk());
    return entries.ok() ? *std::move(entries) : std::vector<v1::AuditEntry>{};
  };
  EXPECT_THAT(audit(v1::PEER_RATE_LIMITED), IsEmpty());
  EXPECT_THAT(audit(v1::PEER_REQUEST_REFUSED), IsEmpty());
  EXPECT_THAT(audit(v1::AUTH_FAILURE), IsEmpty());
  // ... but one entry per peer by the worker's round.
  intake.AuditRateLimited();
  std::vector<v1::AuditEntry> limited = audit(v1::PEER_RATE_LIMITED);
  ASSERT_THAT(limited, SizeIs(2));
  std::map<std::string, v1::AuditEntry> by_party;
  for (const v1::AuditEntry& e : limited) by_party[e.party()] = e;
  ASSERT_EQ(by_party.count("JP"), 1u);
  ASSERT_EQ(by_party.count("DE"), 1u);
  EXPECT_EQ(by_party["JP"].actor(), "peer:JP");
  EXPECT_EQ(by_party["JP"].detail(),
            "3 calls refused over the rate limit (1 per second, burst 2)");
  EXPECT_EQ(by_party["DE"].actor(), "peer:DE");
  EXPECT_THAT(by_party["DE"].detail(), StartsWith("2 calls refused"));
  // Counted since the last round: nothing new, nothing written.
  intake.AuditRateLimited();
  EXPECT_THAT(audit(v1::PEER_RATE_LIMITED), SizeIs(2));

  // A second refills one call.
  harness.clock().Advance(absl::Seconds(1));
  EXPECT_THAT(intake.AdmitPeer(jp, "DeliverRequest"), IsOkAndHolds("JP"));
  EXPECT_THAT(intake.AdmitPeer(jp, "DeliverRequest"),
              StatusIs(absl::StatusCode::kUnavailable));
  intake.AuditRateLimited();
  limited = audit(v1::PEER_RATE_LIMITED);
  ASSERT_THAT(limited, SizeIs(3));
  EXPECT_EQ(limited[2].party(), "JP");
  EXPECT_THAT(limited[2].detail(), StartsWith("1 calls refused"));
}

// --- AdmitOperator. ---

TEST_F(RequestIntakeTest, OperatorsAreAdmittedByTheirRoles) {
  COMITY_ASSERT_OK_AND_ASSIGN(CertIdentity alice,
                              intake().AdmitOperator(harness_.OperatorCall("FR", "alice"),
                                                     "Submit", {"submitter"}));
  EXPECT_EQ(alice.kind, CertIdentity::Kind::kOperator);
  EXPECT_EQ(alice.party, "FR");
  EXPECT_EQ(alice.operator_name, "alice");
  EXPECT_TRUE(alice.HasRole("reviewer"));
  EXPECT_FALSE(alice.HasRole("approver"));
  // Any one of the roles will do.
  COMITY_ASSERT_OK_AND_ASSIGN(
      CertIdentity bob, intake().AdmitOperator(harness_.OperatorCall("FR", "bob"),
                                               "Approve", {"submitter", "approver"}));
  EXPECT_EQ(bob.operator_name, "bob");
  // No roles asked: any operator, even one without a role.
  COMITY_ASSERT_OK_AND_ASSIGN(
      CertIdentity dave,
      intake().AdmitOperator(harness_.OperatorCall("FR", "dave"), "Get", {}));
  EXPECT_EQ(dave.operator_name, "dave");
  EXPECT_TRUE(dave.roles.empty());
  EXPECT_THAT(FrAudit(v1::AUTH_FAILURE), IsEmpty());

  EXPECT_THAT(
      intake().AdmitOperator(harness_.OperatorCall("FR", "carol"), "Decide",
                             {"reviewer"}),
      StatusIs(absl::StatusCode::kPermissionDenied,
               HasSubstr("operator carol lacks the reviewer role needed for Decide")));
  EXPECT_THAT(
      intake().AdmitOperator(harness_.OperatorCall("FR", "dave"), "Export", {"auditor"}),
      StatusIs(absl::StatusCode::kPermissionDenied,
               HasSubstr("operator dave lacks the auditor role needed for Export")));
  EXPECT_THAT(intake().AdmitOperator(harness_.OperatorCall("FR", "alice"), "Approve",
                                     {"approver", "auditor"}),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("lacks the approver or auditor role")));
  std::vector<v1::AuditEntry> failures = FrAudit(v1::AUTH_FAILURE);
  ASSERT_THAT(failures, SizeIs(3));
  EXPECT_THAT(failures[0].detail(),
              StartsWith("Decide: operator carol lacks the reviewer role"));
  EXPECT_THAT(failures[1].detail(),
              StartsWith("Export: operator dave lacks the auditor role"));
  EXPECT_THAT(failures[2].detail(), StartsWith("Approve: operator alice lacks"));
}

TEST_F(RequestIntakeTest, AnOperatorsMissingRoleIsCountedAsAnOperatorFailure) {
  EXPECT_THAT(intake().AdmitOperator(harness_.OperatorCall("FR", "carol"), "Decide",
                                     {"reviewer"}),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // A certificate not accepted at all is a TLS failure.
  EXPECT_THAT(intake().AdmitOperator(harness_.PeerCall("JP"), "Decide", {"reviewer"}),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // A missing role is the operator's failure, named in the entry.
  const std::string metrics = fr_->metrics().Render();
  EXPECT_THAT(metrics, HasSubstr("comity_auth_failures_total{source=\"operator\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("comity_auth_failures_total{source=\"tls\"} 1"));
  std::vector<v1::AuditEntry> failures = FrAudit(v1::AUTH_FAILURE);
  ASSERT_THAT(failures, SizeIs(2));
  EXPECT_EQ(failures[0].actor(), "operator:carol");
}

TEST_F(RequestIntakeTest, OnlyThisPartysOperatorCertificatesAreOperators) {
  EXPECT_THAT(intake().AdmitOperator(harness_.PeerCall("JP"), "Submit", {}),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("not an operator certificate of party FR")));
  EXPECT_THAT(intake().AdmitOperator(harness_.PeerCall("FR"), "Submit", {}),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("not an operator certificate of party FR")));
  EXPECT_THAT(intake().AdmitOperator(harness_.OperatorCall("JP", "alice"), "Submit", {}),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("not an operator certificate of party FR")));
  std::vector<v1::AuditEntry> failures = FrAudit(v1::AUTH_FAILURE);
  ASSERT_THAT(failures, SizeIs(3));
  for (const v1::AuditEntry& e : failures)
    EXPECT_THAT(e.detail(), StartsWith("Submit: "));
}

// --- RecordRefusal. ---

TEST_F(RequestIntakeTest, RefusalsOfAdmittedCallersAreAuditedByKind) {
  const std::string hash = Sha256("the bytes JP sent");
  intake().RecordRefusal(harness_.PeerCall("JP"), "peer:JP", "DeliverRequest", hash,
                         absl::AlreadyExistsError("request id reused"));
  std::vector<v1::AuditEntry> refused = FrAudit(v1::PEER_REQUEST_REFUSED);
  ASSERT_THAT(refused, SizeIs(1));
  EXPECT_EQ(refused[0].actor(), "peer:JP");
  EXPECT_EQ(refused[0].party(), "JP");
  EXPECT_THAT(refused[0].hashes(), ElementsAre(hash));
  EXPECT_EQ(refused[0].detail(), "DeliverRequest: ALREADY_EXISTS: request id reused");

  intake().RecordRefusal(harness_.OperatorCall("FR", "carol"), "operator:carol", "Decide",
                         "", absl::PermissionDeniedError("carol may not decide"));
  std::vector<v1::AuditEntry> failures = FrAudit(v1::AUTH_FAILURE);
  ASSERT_THAT(failures, SizeIs(1));
  EXPECT_EQ(failures[0].actor(), "operator:carol");
  EXPECT_EQ(failures[0].detail(), "Decide: carol may not decide");
  EXPECT_THAT(FrAudit(v1::PEER_REQUEST_REFUSED), SizeIs(1));
}

// --- ReceiveRequest. ---

TEST_F(RequestIntakeTest, ARequestSignedByThePeerIsStoredWithAReceiptThatVerifies) {
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope request, JpRequest());
  const v1::RequestBody body = BodyOf(request);
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope receipt,
                              intake().ReceiveRequest("JP", request));

  // JP, holding FR's key, accepts it as FR's receipt of these bytes.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::Receipt verified,
                              VerifyReceipt(request, receipt, "FR", jp_->key_ring()));
  EXPECT_EQ(verified.request_id(), body.id());
  EXPECT_EQ(verified.requesting_party(), "JP");
  EXPECT_EQ(verified.receiving_party(), "FR");
  EXPECT_EQ(verified.request_payload_sha256(), Sha256(request.payload()));
  EXPECT_EQ(FromProto(verified.received_at()), harness_.clock().Now());
  EXPECT_TRUE(verified.has_receiver_assessment());
  // Not as anyone else's.
  EXPECT_THAT(VerifyReceipt(request, receipt, "JP", jp_->key_ring()),
              ::testing::Not(IsOk()));

  std::vector<v1::RequestRecord> records = FrRecords(body.id());
  ASSERT_THAT(records, SizeIs(1));
  EXPECT_EQ(records[0].direction(), v1::INCOMING);
  EXPECT_EQ(records[0].state(), v1::RECEIVED);
  EXPECT_EQ(records[0].case_state(), v1::CASE_DELIVERED);
  EXPECT_EQ(records[0].request().SerializeAsString(), request.SerializeAsString());
  EXPECT_EQ(records[0].receipt().SerializeAsString(), receipt.SerializeAsString());

  std::vector<v1::AuditEntry> received = FrAudit(v1::REQUEST_RECEIVED, body.id());
  ASSERT_THAT(received, SizeIs(1));
  EXPECT_EQ(received[0].actor(), "peer:JP");
  EXPECT_EQ(received[0].party(), "JP");
  // The payload's hash, then the receipt statement's (receipt version 3).
  EXPECT_THAT(received[0].hashes(),
              ElementsAre(Sha256(request.payload()), Sha256(verified.statement())));
  // The receipt carries exactly that entry.
  EXPECT_EQ(verified.received_entry_proof().leaf_index(), received[0].index());
}

TEST_F(RequestIntakeTest, TheSameBytesAgainGetTheSameReceiptWheneverTheyCome) {
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope request, JpRequest());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope first,
                              intake().ReceiveRequest("JP", request));
  harness_.clock().Advance(absl::Minutes(10));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope again,
                              intake().ReceiveRequest("JP", request));
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  // A day and more later: the same receipt still.
  harness_.clock().Advance(fr_->context().setup().replay_window() + absl::Hours(1));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope late,
                              intake().ReceiveRequest("JP", request));
  EXPECT_EQ(late.SerializeAsString(), first.SerializeAsString());
  EXPECT_THAT(FrAudit(v1::REQUEST_RECEIVED), SizeIs(1));
}

TEST_F(RequestIntakeTest, OtherBytesUnderTheSameIdAreRefused) {
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope request, JpRequest());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope receipt,
                              intake().ReceiveRequest("JP", request));
  v1::RequestBody changed = BodyOf(request);
  changed.mutable_particulars()->set_facts_summary("another story under the same id");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope forged, SignedBy(*jp_, changed));
  EXPECT_THAT(intake().ReceiveRequest("JP", forged),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("was already received with different content")));
  std::vector<v1::RequestRecord> records = FrRecords(changed.id());
  ASSERT_THAT(records, SizeIs(1));
  EXPECT_EQ(records[0].request().payload(), request.payload());
  EXPECT_THAT(FrAudit(v1::REQUEST_RECEIVED), SizeIs(1));
}

TEST_F(RequestIntakeTest, TheIdOfARequestThisNodeSentIsRefusedAsAnotherRequestsId) {
  // FR sent request X to JP; JP sends FR a request of its own under X.
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::RequestRecord sent,
      fr_->submission().Submit("alice", NodeHarness::Draft("JP")));
  const std::string id = BodyOf(sent.request()).id();
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope request, JpRequest());
  v1::RequestBody reused = BodyOf(request);
  reused.set_id(id);
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope env, SignedBy(*jp_, reused));
  // An id is one case on a node: JP cannot reuse the id of FR's request.
  EXPECT_THAT(intake().ReceiveRequest("JP", env),
              StatusIs(absl::StatusCode::kAlreadyExists));
  std::vector<v1::RequestRecord> records = FrRecords(id);
  ASSERT_THAT(records, SizeIs(1));
  EXPECT_EQ(records[0].direction(), v1::OUTGOING);
  // Else a decision on the second case shows in the first.
  CaseBook::Decision acknowledge;
  acknowledge.action = v1::ACKNOWLEDGE;
  fr_->cases().Decide("bob", id, acknowledge).IgnoreError();
  for (const v1::RequestRecord& r : FrRecords(id)) {
    if (r.direction() == v1::OUTGOING) {
      EXPECT_THAT(r.transitions(), IsEmpty());
    }
  }
}

TEST_F(RequestIntakeTest, ARequestNotSignedByTheConnectedPeerIsRefused) {
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope request, JpRequest());
  const v1::RequestBody body = BodyOf(request);
  // Signed by JP, arriving on a connection of DE (say).
  EXPECT_THAT(intake().ReceiveRequest("DE", request),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("signed as party 'JP' but the TLS peer is DE")));
  // Signed by FR's own key, relabelled as JP's: the signature fails.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope by_fr, SignedBy(*fr_, body));
  EXPECT_THAT(
      intake().ReceiveRequest("JP", by_fr),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("signed as party 'FR'")));
  by_fr.set_signer_party("JP");
  EXPECT_THAT(intake().ReceiveRequest("JP", by_fr),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // The payload changed after JP signed.
  v1::SignedEnvelope tampered = request;
  tampered.mutable_payload()->back() ^= 0x01;
  EXPECT_THAT(intake().ReceiveRequest("JP", tampered),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // Signed by JP, claiming to be DE's request.
  v1::RequestBody claims_de = body;
  claims_de.set_requesting_party("DE");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope as_de, SignedBy(*jp_, claims_de));
  EXPECT_THAT(
      intake().ReceiveRequest("JP", as_de),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("requesting_party is 'DE' but the request is signed by JP")));
  EXPECT_THAT(FrRecords(body.id()), IsEmpty());
  EXPECT_THAT(FrAudit(v1::REQUEST_RECEIVED), IsEmpty());
}

TEST_F(RequestIntakeTest, ARequestAddressedToAnotherPartyIsRefused) {
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope request, JpRequest());
  v1::RequestBody to_de = BodyOf(request);
  to_de.set_requested_party("DE");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope env, SignedBy(*jp_, to_de));
  EXPECT_THAT(intake().ReceiveRequest("JP", env),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("request is addressed to 'DE', this node is FR")));
  EXPECT_THAT(FrRecords(to_de.id()), IsEmpty());
}

TEST_F(RequestIntakeTest, ARequestIdThatIsNotACanonicalUuidIsRefused) {
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope request, JpRequest());
  v1::RequestBody upper = BodyOf(request);
  for (char& c : *upper.mutable_id()) c = static_cast<char>(std::toupper(c));
  ASSERT_NE(upper.id(), BodyOf(request).id());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope env, SignedBy(*jp_, upper));
  EXPECT_THAT(
      intake().ReceiveRequest("JP", env),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a lower-case UUID")));
}

TEST_F(RequestIntakeTest, ARequestIsAcceptedHoweverOldButNotAheadOfTheClock) {
  const absl::Duration window = fr_->context().setup().replay_window();
  const absl::Duration skew = fr_->context().setup().max_clock_skew();
  ASSERT_GT(window, absl::ZeroDuration());

  // Older than the replay window (it waited in JP's outbox): accepted,
  // its age recorded.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope stale, JpRequest());
  harness_.clock().Advance(3 * window);
  EXPECT_THAT(intake().ReceiveRequest("JP", stale), IsOk());
  EXPECT_THAT(FrRecords(BodyOf(stale).id()), SizeIs(1));
  std::vector<v1::AuditEntry> received = FrAudit(v1::REQUEST_RECEIVED);
  ASSERT_THAT(received, SizeIs(1));
  EXPECT_THAT(received[0].detail(), HasSubstr("arrived 72h later"));
  // Its bytes again: the same receipt; other bytes under its id: refused.
  EXPECT_THAT(intake().ReceiveRequest("JP", stale), IsOk());

  // Dated ahead of FR's clock: up to the skew allowed.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope a, JpRequest());
  v1::RequestBody ahead = BodyOf(a);
  *ahead.mutable_created_at() = ToProto(harness_.clock().Now() + skew);
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope in_skew, SignedBy(*jp_, ahead));
  EXPECT_THAT(intake().ReceiveRequest("JP", in_skew), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope b, JpRequest());
  v1::RequestBody too_far = BodyOf(b);
  *too_far.mutable_created_at() =
      ToProto(harness_.clock().Now() + skew + absl::Seconds(1));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope future, SignedBy(*jp_, too_far));
  EXPECT_THAT(intake().ReceiveRequest("JP", future),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("later than this node's clock")));
  EXPECT_THAT(FrRecords(too_far.id()), IsEmpty());
  EXPECT_THAT(FrAudit(v1::REQUEST_RECEIVED), SizeIs(2));
}

}  // namespace
}  // namespace comity
