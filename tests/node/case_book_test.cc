// CaseBook, between two in-process nodes (FR requests, JP is requested)
// joined by LoopbackTransport: JP decides and numbers every step, FR
// proposes its own and applies what it receives, each step checked before
// it is stored. No threads: the tests drive the outbox lanes themselves.
#include "server/node/case_book.h"

#include <algorithm>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/sha256.h"
#include "server/util/clock.h"
#include "server/util/time_proto.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::AuditEntriesOf;
using ::comity::testing::IsOk;
using ::comity::testing::LoopbackTransport;
using ::comity::testing::NodeHarness;
using ::comity::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::StartsWith;

bool NeverStop() { return false; }

CaseBook::Decision Step(v1::CaseAction action, std::string text = "") {
  CaseBook::Decision d;
  d.action = action;
  d.text = std::move(text);
  return d;
}

class CaseBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fr_transport_ = harness_.Loopback("FR");
    jp_transport_ = harness_.Loopback("JP");
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", fr_transport_.get()));
    COMITY_ASSERT_OK_AND_ASSIGN(jp_, harness_.MakeNode("JP", jp_transport_.get()));
    fr_transport_->Connect("JP", jp_.get());
    jp_transport_->Connect("FR", fr_.get());
  }

  // A request of FR's, delivered to JP; its id in *id.
  void DeliveredRequest(std::string* id) {
    COMITY_ASSERT_OK_AND_ASSIGN(
        v1::RequestRecord stored,
        fr_->submission().Submit("alice", NodeHarness::Draft("JP")));
    v1::RequestBody body;
    ASSERT_TRUE(body.ParseFromString(stored.request().payload()));
    *id = body.id();
    FrLane();
    ASSERT_EQ(Sent(*id).state(), v1::DELIVERED);
    ASSERT_EQ(Received(*id).case_state(), v1::CASE_DELIVERED);
  }
  // One round of each node's lane to the other.
  void FrLane() { fr_->outbox().lane("JP")->RunRound(NeverStop); }
  void JpLane() { jp_->outbox().lane("FR")->RunRound(NeverStop); }

  // JP's bob decides; the step then reaches FR.
  void JpDecides(const std::string& id, const CaseBook::Decision& d) {
    ASSERT_THAT(jp_->cases().Decide("bob", id, d), IsOk());
    JpLane();
  }

  v1::RequestRecord Record(Node& node, const std::string& id, v1::Direction direction) {
    absl::StatusOr<std::vector<v1::RequestRecord>> records = node.Get(id);
    EXPECT_THAT(records, IsOk());
    if (records.ok()) {
      for (const v1::RequestRecord& r : *records) {
        if (r.direction() == direction) return r;
      }
    }
    ADD_FAILURE() << node.party() << " holds no such record of " << id;
    return v1::RequestRecord();
  }
  v1::RequestRecord Sent(const std::string& id) { return Record(*fr_, id, v1::OUTGOING); }
  v1::RequestRecord Received(const std::string& id) {
    return Record(*jp_, id, v1::INCOMING);
  }

  std::vector<v1::AuditEntry> Audit(Node& node, v1::AuditEventType type,
                                    const std::string& id) {
    absl::StatusOr<std::vector<v1::AuditEntry>> entries = AuditEntriesOf(node, type, id);
    EXPECT_THAT(entries, IsOk());
    return entries.ok() ? *std::move(entries) : std::vector<v1::AuditEntry>{};
  }
  static v1::Transition TransitionOf(const v1::SignedEnvelope& env) {
    v1::Transition t;
    EXPECT_TRUE(t.ParseFromString(env.payload()));
    return t;
  }
  // `t`, signed by JP.
  absl::StatusOr<v1::SignedEnvelope> SignedByJp(const v1::Transition& t) {
    return jp_->context().Sign(kTransitionPayloadType, t);
  }
  // JP's receiver assessment of the request.
  v1::Assessment JpAssessment(const std::string& id) {
    v1::Receipt receipt;
    EXPECT_TRUE(ParseReceipt(Received(id).receipt(), &receipt));
    return receipt.receiver_assessment();
  }

  NodeHarness harness_;
  // Declared before the nodes: they outlive them.
  FakeClock fr_clock_{absl::UnixEpoch()};  // For a test that gives FR a clock of its own.
  std::unique_ptr<LoopbackTransport> fr_transport_;
  std::unique_ptr<LoopbackTransport> jp_transport_;
  std::unique_ptr<Node> fr_;
  std::unique_ptr<Node> jp_;
};

// --- Decisions of the requested party. ---

TEST_F(CaseBookTest, JpDecidesAndFrAppliesEachDeliveredStep) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));

  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord decided,
                              jp_->cases().Decide("bob", id, Step(v1::ACKNOWLEDGE)));
  EXPECT_EQ(decided.case_state(), v1::CASE_ACKNOWLEDGED);
  ASSERT_THAT(decided.transitions(), SizeIs(1));
  const v1::Transition t1 = TransitionOf(decided.transitions(0));
  EXPECT_EQ(t1.sequence(), 1u);
  EXPECT_EQ(t1.party(), "JP");
  EXPECT_EQ(t1.operator_name(), "bob");
  EXPECT_EQ(t1.from_state(), v1::CASE_DELIVERED);
  EXPECT_EQ(t1.to_state(), v1::CASE_ACKNOWLEDGED);
  EXPECT_EQ(t1.previous_sha256(), Sha256(Sent(id).request().payload()));
  std::vector<v1::AuditEntry> jp_decided = Audit(*jp_, v1::CASE_DECIDED, id);
  ASSERT_THAT(jp_decided, SizeIs(1));
  EXPECT_EQ(jp_decided[0].actor(), "operator:bob");
  EXPECT_EQ(jp_decided[0].detail(), "1: ACKNOWLEDGE -> CASE_ACKNOWLEDGED");
  EXPECT_THAT(jp_decided[0].hashes(),
              ElementsAre(Sha256(decided.transitions(0).payload())));
  // FR learns of it only from the delivered step.
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_DELIVERED);
  JpLane();
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_ACKNOWLEDGED);
  std::vector<v1::AuditEntry> fr_updated = Audit(*fr_, v1::CASE_UPDATED, id);
  ASSERT_THAT(fr_updated, SizeIs(1));
  EXPECT_EQ(fr_updated[0].actor(), "peer:JP");
  EXPECT_EQ(fr_updated[0].detail(), "1: ACKNOWLEDGE -> CASE_ACKNOWLEDGED");
  std::vector<v1::AuditEntry> jp_delivered = Audit(*jp_, v1::TRANSITION_DELIVERED, id);
  ASSERT_THAT(jp_delivered, SizeIs(1));
  EXPECT_EQ(jp_delivered[0].detail(), "step 1");

  ASSERT_NO_FATAL_FAILURE(JpDecides(id, Step(v1::ACCEPT)));
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_ACCEPTED);
  ASSERT_NO_FATAL_FAILURE(JpDecides(id, Step(v1::RESPOND, "logs preserved until June")));
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_PARTLY_EXECUTED);
  CaseBook::Decision final_response = Step(v1::RESPOND, "the logs, as preserved");
  final_response.final_response = true;
  ASSERT_NO_FATAL_FAILURE(JpDecides(id, final_response));

  // Both hold the same chain.
  const v1::RequestRecord sent = Sent(id);
  const v1::RequestRecord received = Received(id);
  EXPECT_EQ(sent.case_state(), v1::CASE_EXECUTED);
  EXPECT_EQ(received.case_state(), v1::CASE_EXECUTED);
  ASSERT_THAT(sent.transitions(), SizeIs(4));
  ASSERT_THAT(received.transitions(), SizeIs(4));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(sent.transitions(i).SerializeAsString(),
              received.transitions(i).SerializeAsString());
  }
  EXPECT_EQ(TransitionOf(sent.transitions(2)).text(), "logs preserved until June");
  EXPECT_TRUE(TransitionOf(sent.transitions(3)).final_response());
  EXPECT_THAT(Audit(*fr_, v1::CASE_UPDATED, id), SizeIs(4));
  EXPECT_THAT(Audit(*jp_, v1::TRANSITION_DELIVERED, id), SizeIs(4));
}

TEST_F(CaseBookTest, ARefusalNeedsAGroundTheInstrumentLeavesOpenAndReasons) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  const v1::Assessment assessment = JpAssessment(id);
  ASSERT_EQ(assessment.obligation(), v1::BINDING);
  ASSERT_THAT(assessment.refusal_grounds(), ::testing::Not(IsEmpty()));
  const auto open = static_cast<v1::RefusalGround>(assessment.refusal_grounds(0));
  v1::RefusalGround closed = v1::REFUSAL_GROUND_UNSPECIFIED;
  for (v1::RefusalGround g : {v1::FISCAL_OFFENCE, v1::NATIONALITY, v1::DOMESTIC_LAW}) {
    if (std::find(assessment.refusal_grounds().begin(),
                  assessment.refusal_grounds().end(),
                  g) == assessment.refusal_grounds().end()) {
      closed = g;
      break;
    }
  }
  ASSERT_NE(closed, v1::REFUSAL_GROUND_UNSPECIFIED);

  CaseBook::Decision refuse = Step(v1::REFUSE);
  refuse.reasons = "the server is a state asset";
  EXPECT_THAT(
      jp_->cases().Decide("bob", id, refuse),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("at least one ground")));
  refuse.refusal_grounds = {closed};
  EXPECT_THAT(jp_->cases().Decide("bob", id, refuse),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr(absl::StrCat(v1::RefusalGround_Name(closed),
                                              " is not a ground it leaves open"))));
  refuse.refusal_grounds = {open};
  refuse.reasons.clear();
  EXPECT_THAT(jp_->cases().Decide("bob", id, refuse),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("must give its reasons")));
  CaseBook::Decision accept_with_grounds = Step(v1::ACCEPT);
  accept_with_grounds.refusal_grounds = {open};
  EXPECT_THAT(jp_->cases().Decide("bob", id, accept_with_grounds),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("refusal grounds go only with REFUSE")));
  EXPECT_THAT(Received(id).transitions(), IsEmpty());
  EXPECT_THAT(Audit(*jp_, v1::CASE_DECIDED, id), IsEmpty());

  refuse.reasons = "the server is a state asset";
  ASSERT_NO_FATAL_FAILURE(JpDecides(id, refuse));
  const v1::RequestRecord sent = Sent(id);
  EXPECT_EQ(sent.case_state(), v1::CASE_REFUSED);
  ASSERT_THAT(sent.transitions(), SizeIs(1));
  const v1::Transition t = TransitionOf(sent.transitions(0));
  EXPECT_THAT(t.refusal_grounds(), ElementsAre(open));
  EXPECT_EQ(t.reasons(), "the server is a state asset");
  std::vector<v1::AuditEntry> fr_updated = Audit(*fr_, v1::CASE_UPDATED, id);
  ASSERT_THAT(fr_updated, SizeIs(1));
  EXPECT_THAT(fr_updated[0].refusal_grounds(), ElementsAre(open));
  std::vector<v1::AuditEntry> jp_decided = Audit(*jp_, v1::CASE_DECIDED, id);
  ASSERT_THAT(jp_decided, SizeIs(1));
  EXPECT_THAT(jp_decided[0].refusal_grounds(), ElementsAre(open));
}

TEST_F(CaseBookTest, ADecisionMissingWhatItNeedsIsRefused) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  ASSERT_NO_FATAL_FAILURE(JpDecides(id, Step(v1::ACCEPT)));
  EXPECT_THAT(
      jp_->cases().Decide("bob", id, Step(v1::RESPOND)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RESPOND needs --text")));
  EXPECT_THAT(
      jp_->cases().Decide("bob", id, Step(v1::POSTPONE)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("POSTPONE needs --text")));
  CaseBook::Decision conditions = Step(v1::POSTPONE, "until the trial");
  conditions.release_conditions = {"use only in case 42"};
  EXPECT_THAT(jp_->cases().Decide("bob", id, conditions),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("release conditions go only with RESPOND")));
  EXPECT_THAT(Received(id).transitions(), SizeIs(1));
}

TEST_F(CaseBookTest, IllegalStepsAreRefusedAndNothingIsAppended) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  EXPECT_THAT(
      jp_->cases().Decide("bob", id, Step(v1::RESPOND, "too early")),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("respond (RESPOND) is not allowed in state CASE_DELIVERED; allowed for the "
                         "requested party in CASE_DELIVERED: ack, review, accept, refuse, ask "
                         "(comity VERB ID)")));
  EXPECT_THAT(jp_->cases().Decide("bob", id, Step(v1::CLOSE)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("close (CLOSE) is not allowed in state CASE_DELIVERED")));
  ASSERT_NO_FATAL_FAILURE(JpDecides(id, Step(v1::ACKNOWLEDGE)));
  EXPECT_THAT(
      jp_->cases().Decide("bob", id, Step(v1::ACKNOWLEDGE)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("ack (ACKNOWLEDGE) is not allowed in state CASE_ACKNOWLEDGED")));
  EXPECT_THAT(Received(id).transitions(), SizeIs(1));
  EXPECT_THAT(Audit(*jp_, v1::CASE_DECIDED, id), SizeIs(1));
  // FR cannot propose what the state does not allow either.
  EXPECT_THAT(fr_->cases().Propose("alice", id, Step(v1::CLOSE)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("close (CLOSE) is not allowed in state CASE_ACKNOWLEDGED")));
  EXPECT_THAT(
      fr_->cases().Propose("alice", id, Step(v1::PROVIDE_INFO, "unasked")),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("answer (PROVIDE_INFO) is not allowed in state CASE_ACKNOWLEDGED")));
  EXPECT_THAT(Sent(id).queued_proposals(), IsEmpty());
  EXPECT_THAT(Audit(*fr_, v1::PROPOSAL_QUEUED, id), IsEmpty());
}

TEST_F(CaseBookTest, EachSideTakesOnlyItsOwnSteps) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  EXPECT_THAT(jp_->cases().Decide("bob", id, Step(v1::WITHDRAW)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("only the requesting party can WITHDRAW")));
  EXPECT_THAT(jp_->cases().Decide("bob", id, Step(v1::PROVIDE_INFO, "x")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("only the requesting party can PROVIDE_INFO")));
  EXPECT_THAT(
      fr_->cases().Decide("alice", id, Step(v1::ACCEPT)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("was sent by this node: only the requested party decides")));
  EXPECT_THAT(fr_->cases().Propose("alice", id, Step(v1::ACCEPT)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("only the requested party can ACCEPT")));
  EXPECT_THAT(jp_->cases().Propose("bob", id, Step(v1::WITHDRAW)),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no sent request")));
  EXPECT_THAT(Received(id).transitions(), IsEmpty());
  EXPECT_THAT(Sent(id).queued_proposals(), IsEmpty());

  // Act: by role, on whichever side this node is.
  const CertIdentity jp_carol{CertIdentity::Kind::kOperator, "JP", "carol", {"auditor"}};
  EXPECT_THAT(jp_->cases().Act(jp_carol, id, Step(v1::ACKNOWLEDGE)),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("carol lacks the reviewer role needed to decide")));
  const CertIdentity fr_bob{
      CertIdentity::Kind::kOperator, "FR", "bob", {"reviewer", "approver"}};
  EXPECT_THAT(
      fr_->cases().Act(fr_bob, id, Step(v1::WITHDRAW)),
      StatusIs(
          absl::StatusCode::kPermissionDenied,
          HasSubstr("bob lacks the submitter role needed to act on a sent request")));
  const CertIdentity jp_bob{
      CertIdentity::Kind::kOperator, "JP", "bob", {"reviewer", "approver"}};
  COMITY_ASSERT_OK_AND_ASSIGN(CaseBook::Acted decided,
                              jp_->cases().Act(jp_bob, id, Step(v1::ACKNOWLEDGE)));
  EXPECT_EQ(decided.record.case_state(), v1::CASE_ACKNOWLEDGED);
  EXPECT_EQ(decided.proposal_to, "");
  const CertIdentity fr_alice{
      CertIdentity::Kind::kOperator, "FR", "alice", {"submitter", "reviewer"}};
  COMITY_ASSERT_OK_AND_ASSIGN(CaseBook::Acted proposed,
                              fr_->cases().Act(fr_alice, id, Step(v1::WITHDRAW)));
  EXPECT_EQ(proposed.proposal_to, "JP");
  EXPECT_THAT(proposed.record.queued_proposals(), SizeIs(1));
}

// --- Proposals of the requesting party. ---

TEST_F(CaseBookTest, FrProposesAndJpNumbersTheStepIntoTheCase) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord queued,
                              fr_->cases().Propose("alice", id, Step(v1::WITHDRAW)));
  ASSERT_THAT(queued.queued_proposals(), SizeIs(1));
  EXPECT_EQ(queued.case_state(), v1::CASE_DELIVERED);
  std::vector<v1::AuditEntry> fr_queued = Audit(*fr_, v1::PROPOSAL_QUEUED, id);
  ASSERT_THAT(fr_queued, SizeIs(1));
  EXPECT_EQ(fr_queued[0].actor(), "operator:alice");
  EXPECT_EQ(fr_queued[0].detail(), "WITHDRAW");
  // One at a time.
  EXPECT_THAT(fr_->cases().Propose("alice", id, Step(v1::WITHDRAW)),
              StatusIs(absl::StatusCode::kFailedPrecondition));

  FrLane();
  const v1::RequestRecord received = Received(id);
  EXPECT_EQ(received.case_state(), v1::CASE_WITHDRAWN);
  ASSERT_THAT(received.transitions(), SizeIs(1));
  const v1::Transition t = TransitionOf(received.transitions(0));
  EXPECT_EQ(t.sequence(), 1u);
  EXPECT_EQ(t.party(), "FR");
  EXPECT_EQ(t.operator_name(), "alice");
  EXPECT_EQ(t.action(), v1::WITHDRAW);
  EXPECT_EQ(t.proposal().SerializeAsString(),
            queued.queued_proposals(0).SerializeAsString());
  EXPECT_EQ(received.transitions(0).signer_party(), "JP");
  std::vector<v1::AuditEntry> jp_updated = Audit(*jp_, v1::CASE_UPDATED, id);
  ASSERT_THAT(jp_updated, SizeIs(1));
  EXPECT_EQ(jp_updated[0].actor(), "peer:FR (alice)");
  // FR applied the step it got back.
  v1::RequestRecord sent = Sent(id);
  EXPECT_EQ(sent.case_state(), v1::CASE_WITHDRAWN);
  EXPECT_THAT(sent.queued_proposals(), IsEmpty());
  ASSERT_THAT(sent.transitions(), SizeIs(1));
  EXPECT_EQ(sent.transitions(0).SerializeAsString(),
            received.transitions(0).SerializeAsString());
  // JP's outbox still delivers the step; FR acknowledges what it holds.
  JpLane();
  EXPECT_THAT(Audit(*jp_, v1::TRANSITION_DELIVERED, id), SizeIs(1));
  EXPECT_THAT(Audit(*fr_, v1::CASE_UPDATED, id), SizeIs(1));

  // The same proposal again: the step it became, not a second one.
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::SignedEnvelope again,
      jp_->cases().SequenceProposal("FR", queued.queued_proposals(0)));
  EXPECT_EQ(again.SerializeAsString(), received.transitions(0).SerializeAsString());

  // Then FR closes the case.
  ASSERT_THAT(fr_->cases().Propose("alice", id, Step(v1::CLOSE)), IsOk());
  FrLane();
  EXPECT_EQ(Received(id).case_state(), v1::CASE_CLOSED);
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_CLOSED);
  EXPECT_EQ(TransitionOf(Sent(id).transitions(1)).sequence(), 2u);
  EXPECT_THAT(fr_->cases().Propose("alice", id, Step(v1::CLOSE)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("close (CLOSE) is not allowed in state CASE_CLOSED")));
}

TEST_F(CaseBookTest, FrProvidesTheInformationJpAskedFor) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  ASSERT_NO_FATAL_FAILURE(
      JpDecides(id, Step(v1::REQUEST_INFO, "which time zone are the logs in?")));
  ASSERT_EQ(Sent(id).case_state(), v1::CASE_INFO_REQUESTED);
  EXPECT_THAT(fr_->cases().Propose("alice", id, Step(v1::PROVIDE_INFO)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("PROVIDE_INFO needs --text")));
  ASSERT_THAT(fr_->cases().Propose("alice", id, Step(v1::PROVIDE_INFO, "UTC")), IsOk());
  FrLane();
  EXPECT_EQ(Received(id).case_state(), v1::CASE_UNDER_REVIEW);
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_UNDER_REVIEW);
  ASSERT_THAT(Sent(id).transitions(), SizeIs(2));
  const v1::Transition t = TransitionOf(Sent(id).transitions(1));
  EXPECT_EQ(t.action(), v1::PROVIDE_INFO);
  EXPECT_EQ(t.text(), "UTC");
  EXPECT_EQ(t.party(), "FR");
}

TEST_F(CaseBookTest, FrAcceptsTheReleaseConditionsOfAResponse) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  ASSERT_NO_FATAL_FAILURE(JpDecides(id, Step(v1::ACCEPT)));
  EXPECT_THAT(
      fr_->cases().Propose("alice", id, Step(v1::ACCEPT_CONDITIONS)),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("accept-conditions (ACCEPT_CONDITIONS) is not allowed in state CASE_ACCEPTED")));
  CaseBook::Decision respond = Step(v1::RESPOND, "first part of the logs");
  respond.release_conditions = {"use only in case 42", "do not pass on"};
  ASSERT_NO_FATAL_FAILURE(JpDecides(id, respond));
  ASSERT_EQ(Sent(id).case_state(), v1::CASE_PARTLY_EXECUTED);

  // What JP refuses to number.
  auto proposal = [&](std::vector<std::string> conditions) {
    v1::TransitionProposal p;
    p.set_request_id(id);
    p.set_action(v1::ACCEPT_CONDITIONS);
    p.set_party("FR");
    p.set_operator_name("alice");
    p.set_time_unix_micros(absl::ToUnixMicros(harness_.clock().Now()));
    for (const std::string& c : conditions) p.add_accepted_conditions(c);
    return fr_->context().Sign(kProposalPayloadType, p);
  };
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope none, proposal({}));
  EXPECT_THAT(
      jp_->cases().SequenceProposal("FR", none),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names no conditions")));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope other, proposal({"use as you like"}));
  EXPECT_THAT(
      jp_->cases().SequenceProposal("FR", other),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("'use as you like' is not a pending release condition")));
  EXPECT_THAT(Received(id).transitions(), SizeIs(2));

  // FR accepts what is pending, in the order given.
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::RequestRecord queued,
      fr_->cases().Propose("alice", id, Step(v1::ACCEPT_CONDITIONS)));
  ASSERT_THAT(queued.queued_proposals(), SizeIs(1));
  FrLane();
  const v1::RequestRecord sent = Sent(id);
  EXPECT_EQ(sent.case_state(), v1::CASE_PARTLY_EXECUTED);  // The state stays.
  ASSERT_THAT(sent.transitions(), SizeIs(3));
  const v1::Transition t = TransitionOf(sent.transitions(2));
  EXPECT_EQ(t.action(), v1::ACCEPT_CONDITIONS);
  EXPECT_THAT(t.accepted_conditions(),
              ElementsAre("use only in case 42", "do not pass on"));
  EXPECT_EQ(Received(id).transitions(2).SerializeAsString(),
            sent.transitions(2).SerializeAsString());
  EXPECT_THAT(fr_->cases().Propose("alice", id, Step(v1::ACCEPT_CONDITIONS)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no release conditions waiting for acceptance")));
}

TEST_F(CaseBookTest, AProposalWaitsForTheReceiptThatStartsTheCase) {
  fr_transport_->SetDown("JP", true);
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::RequestRecord stored,
      fr_->submission().Submit("alice", NodeHarness::Draft("JP")));
  v1::RequestBody body;
  ASSERT_TRUE(body.ParseFromString(stored.request().payload()));
  FrLane();
  ASSERT_EQ(Sent(body.id()).state(), v1::PENDING_DELIVERY);
  EXPECT_THAT(fr_->cases().Propose("alice", body.id(), Step(v1::WITHDRAW)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("has not been delivered yet")));
}

TEST_F(CaseBookTest, AProposalNumberedAfterAStepFrHasNotSeenIsAppliedInOrder) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  // JP acknowledges; the step has not reached FR when FR withdraws.
  ASSERT_THAT(jp_->cases().Decide("bob", id, Step(v1::ACKNOWLEDGE)), IsOk());
  ASSERT_THAT(fr_->cases().Propose("alice", id, Step(v1::WITHDRAW)), IsOk());
  FrLane();
  EXPECT_EQ(Received(id).case_state(), v1::CASE_WITHDRAWN);
  EXPECT_THAT(Received(id).transitions(), SizeIs(2));
  // Off FR's queue, but not applied before step 1.
  EXPECT_THAT(Sent(id).queued_proposals(), IsEmpty());
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_DELIVERED);
  // JP's lane brings both, in order.
  JpLane();
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_ACKNOWLEDGED);
  harness_.clock().Advance(absl::Seconds(1));
  JpLane();
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_WITHDRAWN);
  EXPECT_THAT(Audit(*jp_, v1::TRANSITION_DELIVERED, id), SizeIs(2));
}

TEST_F(CaseBookTest, AProposalFromAClockBehindIsDatedNoEarlierThanTheStepItFollows) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  // FR restarts with its wall clock two hours behind; JP's is right.
  fr_clock_.Set(harness_.clock().Now() - absl::Hours(2));
  fr_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(fr_,
                              harness_.MakeNode("FR", fr_transport_.get(), &fr_clock_));
  jp_transport_->Connect("FR", fr_.get());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord queued,
                              fr_->cases().Propose("alice", id, Step(v1::WITHDRAW)));
  ASSERT_THAT(queued.queued_proposals(), SizeIs(1));
  // Dated as the receipt that starts the case, not two hours before it (JP
  // would refuse that for good: "a party's steps never go back in time").
  v1::TransitionProposal p;
  ASSERT_TRUE(p.ParseFromString(queued.queued_proposals(0).payload()));
  v1::Receipt receipt;
  ASSERT_TRUE(ParseReceipt(Sent(id).receipt(), &receipt));
  EXPECT_EQ(p.time_unix_micros(), absl::ToUnixMicros(FromProto(receipt.received_at())));
  FrLane();
  EXPECT_EQ(Received(id).case_state(), v1::CASE_WITHDRAWN);
  EXPECT_THAT(Audit(*fr_, v1::PROPOSAL_REFUSED, id), IsEmpty());
  EXPECT_THAT(Sent(id).queued_proposals(), IsEmpty());
}

TEST_F(CaseBookTest, ProposalsJpCannotNumberAreRefused) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  auto proposal = [&](v1::CaseAction action, const std::string& request_id) {
    v1::TransitionProposal p;
    p.set_request_id(request_id);
    p.set_action(action);
    p.set_party("FR");
    p.set_operator_name("alice");
    p.set_time_unix_micros(absl::ToUnixMicros(harness_.clock().Now()));
    return fr_->context().Sign(kProposalPayloadType, p);
  };
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope accept, proposal(v1::ACCEPT, id));
  EXPECT_THAT(jp_->cases().SequenceProposal("FR", accept),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("the requesting party cannot ACCEPT")));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope withdraw, proposal(v1::WITHDRAW, id));
  EXPECT_THAT(jp_->cases().SequenceProposal("DE", withdraw),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("signed as party 'FR' but the TLS peer is DE")));
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::SignedEnvelope unknown,
      proposal(v1::WITHDRAW, "00000000-0000-4000-8000-000000000000"));
  EXPECT_THAT(jp_->cases().SequenceProposal("FR", unknown),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("is not a request FR sent to this node")));
  v1::SignedEnvelope tampered = withdraw;
  tampered.mutable_signature()->front() ^= 0x01;
  EXPECT_THAT(jp_->cases().SequenceProposal("FR", tampered),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(Received(id).transitions(), IsEmpty());
}

// --- Transitions FR receives. ---

TEST_F(CaseBookTest, AStepThatDoesNotFollowTheCaseIsFailedPrecondition) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord decided,
                              jp_->cases().Decide("bob", id, Step(v1::ACKNOWLEDGE)));
  const v1::SignedEnvelope genuine = decided.transitions(0);
  const v1::Transition t = TransitionOf(genuine);

  v1::Transition skips = t;
  skips.set_sequence(2);
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope skips_env, SignedByJp(skips));
  EXPECT_THAT(fr_->cases().ReceiveTransition("JP", skips_env),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("step 2 does not follow the case as held here (step 0, "
                                 "state CASE_DELIVERED)")));
  v1::Transition broken_chain = t;
  broken_chain.set_previous_sha256(Sha256("not the request"));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope broken_env, SignedByJp(broken_chain));
  EXPECT_THAT(
      fr_->cases().ReceiveTransition("JP", broken_env),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not follow")));
  v1::Transition wrong_from = t;
  wrong_from.set_from_state(v1::CASE_UNDER_REVIEW);
  wrong_from.set_action(v1::ACCEPT);
  wrong_from.set_to_state(v1::CASE_ACCEPTED);
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope wrong_from_env, SignedByJp(wrong_from));
  EXPECT_THAT(
      fr_->cases().ReceiveTransition("JP", wrong_from_env),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not follow")));
  // Following the case, but not a legal step.
  v1::Transition wrong_to = t;
  wrong_to.set_to_state(v1::CASE_ACCEPTED);
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope wrong_to_env, SignedByJp(wrong_to));
  EXPECT_THAT(
      fr_->cases().ReceiveTransition("JP", wrong_to_env),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("illegal step: ACKNOWLEDGE leads to CASE_ACKNOWLEDGED, not "
                         "CASE_ACCEPTED")));
  v1::Transition illegal = t;
  illegal.set_action(v1::RESPOND);
  illegal.set_to_state(v1::CASE_EXECUTED);
  illegal.set_final_response(true);
  illegal.set_text("early");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope illegal_env, SignedByJp(illegal));
  EXPECT_THAT(
      fr_->cases().ReceiveTransition("JP", illegal_env),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("illegal step: RESPOND is not allowed in state CASE_DELIVERED")));
  EXPECT_THAT(Sent(id).transitions(), IsEmpty());
  EXPECT_THAT(Audit(*fr_, v1::CASE_UPDATED, id), IsEmpty());
  // The genuine step still applies.
  EXPECT_THAT(fr_->cases().ReceiveTransition("JP", genuine), IsOk());
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_ACKNOWLEDGED);
}

TEST_F(CaseBookTest, AStepWhoseSignatureOrSignerIsWrongIsRefused) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord decided,
                              jp_->cases().Decide("bob", id, Step(v1::ACKNOWLEDGE)));
  const v1::SignedEnvelope genuine = decided.transitions(0);

  v1::SignedEnvelope bad_signature = genuine;
  bad_signature.mutable_signature()->front() ^= 0x01;
  EXPECT_THAT(fr_->cases().ReceiveTransition("JP", bad_signature),
              StatusIs(absl::StatusCode::kUnauthenticated));
  v1::Transition changed = TransitionOf(genuine);
  changed.set_operator_name("mallory");
  v1::SignedEnvelope bad_payload = genuine;
  bad_payload.set_payload(changed.SerializeAsString());
  EXPECT_THAT(fr_->cases().ReceiveTransition("JP", bad_payload),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // Signed by JP, arriving from another peer.
  EXPECT_THAT(fr_->cases().ReceiveTransition("DE", genuine),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("signed as party 'JP' but the TLS peer is DE")));
  // Signed by FR's own key, relabelled as JP's.
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::SignedEnvelope by_fr,
      fr_->context().Sign(kTransitionPayloadType, TransitionOf(genuine)));
  by_fr.set_signer_party("JP");
  EXPECT_THAT(fr_->cases().ReceiveTransition("JP", by_fr),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // JP's step in FR's name, without FR's signed proposal.
  v1::Transition in_frs_name = TransitionOf(genuine);
  in_frs_name.set_party("FR");
  in_frs_name.set_action(v1::WITHDRAW);
  in_frs_name.set_to_state(v1::CASE_WITHDRAWN);
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope forged, SignedByJp(in_frs_name));
  EXPECT_THAT(fr_->cases().ReceiveTransition("JP", forged),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("without that party's matching signed proposal")));
  // A step of a request FR never sent.
  v1::Transition unknown = TransitionOf(genuine);
  unknown.set_request_id("00000000-0000-4000-8000-000000000000");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope unknown_env, SignedByJp(unknown));
  EXPECT_THAT(fr_->cases().ReceiveTransition("JP", unknown_env),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("is not a request this node sent to JP")));
  EXPECT_THAT(Sent(id).transitions(), IsEmpty());
  EXPECT_THAT(Audit(*fr_, v1::CASE_UPDATED, id), IsEmpty());
}

TEST_F(CaseBookTest, TheSameStepTwiceIsAcknowledgedTwiceAndAppliedOnce) {
  std::string id;
  ASSERT_NO_FATAL_FAILURE(DeliveredRequest(&id));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord decided,
                              jp_->cases().Decide("bob", id, Step(v1::ACKNOWLEDGE)));
  const v1::SignedEnvelope step = decided.transitions(0);
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope first,
                              fr_->cases().ReceiveTransition("JP", step));
  harness_.clock().Advance(absl::Minutes(1));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope second,
                              fr_->cases().ReceiveTransition("JP", step));
  for (const v1::SignedEnvelope* ack : {&first, &second}) {
    EXPECT_THAT(VerifyEnvelope(*ack, kAckPayloadType, jp_->key_ring()), IsOk());
    EXPECT_EQ(ack->signer_party(), "FR");
    v1::Acknowledgement a;
    ASSERT_TRUE(a.ParseFromString(ack->payload()));
    EXPECT_EQ(a.request_id(), id);
    EXPECT_EQ(a.sequence(), 1u);
    EXPECT_EQ(a.payload_sha256(), Sha256(step.payload()));
    EXPECT_EQ(a.party(), "FR");
  }
  EXPECT_THAT(Sent(id).transitions(), SizeIs(1));
  EXPECT_THAT(Audit(*fr_, v1::CASE_UPDATED, id), SizeIs(1));

  // Other bytes under the same step number conflict.
  v1::Transition other = TransitionOf(step);
  other.set_operator_name("another reviewer");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope other_env, SignedByJp(other));
  EXPECT_THAT(fr_->cases().ReceiveTransition("JP", other_env),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("step 1 of request " + id +
                                 " was already received with other content")));
  EXPECT_THAT(Sent(id).transitions(), SizeIs(1));
}

}  // namespace
}  // namespace comity
