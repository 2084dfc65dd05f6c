// Submission: drafts completed, assessed, signed and stored; INVALID
// requests refused; two-person approval.
#include "server/node/submission.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::FakePeerTransport;
using ::comity::testing::IsOk;
using ::comity::testing::NodeHarness;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

class SubmissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    COMITY_ASSERT_OK_AND_ASSIGN(node_, harness_.MakeNode("FR", &transport_));
  }
  Submission& submission() { return node_->submission(); }

  NodeHarness harness_;
  FakePeerTransport transport_;
  std::unique_ptr<Node> node_;
};

TEST_F(SubmissionTest, ADraftIsCompletedAssessedSignedAndStoredForTheOutbox) {
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord stored,
                              submission().Submit("alice", NodeHarness::Draft("JP")));
  EXPECT_EQ(stored.state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(stored.submitted_by(), "alice");
  v1::RequestBody body;
  ASSERT_TRUE(body.ParseFromString(stored.request().payload()));
  EXPECT_EQ(body.requesting_party(), "FR");
  EXPECT_EQ(body.urgency(), v1::ROUTINE);
  EXPECT_EQ(absl::FromUnixSeconds(body.created_at().seconds()),
            absl::FromUnixSeconds(absl::ToUnixSeconds(harness_.clock().Now())));
  EXPECT_EQ(body.requester_assessment().obligation(), v1::BINDING);
  EXPECT_THAT(VerifyEnvelope(stored.request(), kRequestPayloadType, node_->key_ring()),
              IsOk());
  // Stored, due now, with its two entries.
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto due, node_->store()->outbox().DueRequests("JP", harness_.clock().Now(), 10, absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 1u);
  AuditFilter f;
  f.request_id = body.id();
  COMITY_ASSERT_OK_AND_ASSIGN(auto entries, node_->store()->audit().Entries(f));
  ASSERT_EQ(entries.size(), 2u);
  v1::AuditEntry first;
  ASSERT_TRUE(first.ParseFromString(entries[0]));
  EXPECT_EQ(first.type(), v1::REQUEST_SUBMITTED);
  EXPECT_EQ(first.actor(), "operator:alice");
  // Nothing went over the transport: delivery is the outbox's duty.
  EXPECT_EQ(transport_.calls("DeliverRequest"), 0);
}

TEST_F(SubmissionTest, BadDraftsAreRefusedAndNothingIsStored) {
  v1::RequestBody self = NodeHarness::Draft("FR");
  EXPECT_THAT(submission().Submit("alice", self),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("own party")));
  v1::RequestBody unknown = NodeHarness::Draft("DE");
  EXPECT_THAT(submission().Submit("alice", unknown),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a configured peer")));
  v1::RequestBody incomplete = NodeHarness::Draft("JP");
  incomplete.mutable_particulars()->clear_data_sought();
  EXPECT_THAT(submission().Submit("alice", incomplete),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("INVALID")));
  v1::RequestBody follow_up = NodeHarness::Draft("JP");
  follow_up.add_related_request_ids("00000000-0000-4000-8000-000000000000");
  EXPECT_THAT(
      submission().Submit("alice", follow_up),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("unknown to this node")));
  ListQuery q;
  COMITY_ASSERT_OK_AND_ASSIGN(RecordPage page, node_->store()->requests().List(q));
  EXPECT_THAT(page.records, IsEmpty());
}

TEST_F(SubmissionTest, ExtraditionWaitsUnsignedForASecondOperator) {
  v1::RequestBody draft = NodeHarness::Draft("JP");
  draft.set_assistance_type(v1::EXTRADITION);
  draft.mutable_offence()->set_max_penalty_months(60);
  draft.mutable_offence()->set_dual_criminality(v1::DUAL_CRIMINALITY_MET);
  draft.mutable_offence()->set_requested_party_max_penalty_months(60);
  absl::StatusOr<v1::RequestRecord> stored = submission().Submit("alice", draft);
  ASSERT_THAT(stored, IsOk());
  EXPECT_EQ(stored->state(), v1::AWAITING_APPROVAL);
  EXPECT_TRUE(stored->request().signature().empty());
  v1::RequestBody body;
  ASSERT_TRUE(body.ParseFromString(stored->request().payload()));
  EXPECT_THAT(
      submission().Approve("alice", body.id()),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("cannot also approve")));
  harness_.clock().Advance(absl::Minutes(5));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord approved,
                              submission().Approve("bob", body.id()));
  EXPECT_EQ(approved.state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(approved.approved_by(), "bob");
  EXPECT_THAT(VerifyEnvelope(approved.request(), kRequestPayloadType, node_->key_ring()),
              IsOk());
  // Dated at approval, not at submission.
  v1::RequestBody signed_body;
  ASSERT_TRUE(signed_body.ParseFromString(approved.request().payload()));
  EXPECT_GT(signed_body.created_at().seconds(), body.created_at().seconds());
  EXPECT_THAT(
      submission().Approve("bob", body.id()),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not a draft awaiting")));
}

}  // namespace
}  // namespace comity
