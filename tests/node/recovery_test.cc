// Recovery from a hostile or broken partner: what a peer returns when a
// node recovers is checked like what it delivers (signatures, parties,
// sequence), nothing is applied that does not verify, every rejection is
// listed in RECORDS_RECOVERED, and a peer whose pages never end cannot
// hold the start for ever. The honest exchange between two real nodes is
// tested end to end in tests/e2e/backup_e2e_test.cc.
#include "server/node/recovery.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/util/status_macros.h"
#include "server/util/time_proto.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::AuditEntriesOf;
using ::comity::testing::FakePeerTransport;
using ::comity::testing::IsOk;
using ::comity::testing::NodeHarness;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr char kId[] = "0b7e1a52-6f0e-4c1e-9a43-3f2d7c9b8e01";

class RecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &to_jp_));
    // JP's node only lends its signing key: what "JP" answers is the test's.
    COMITY_ASSERT_OK_AND_ASSIGN(jp_, harness_.MakeNode("JP", &unused_));
  }

  // A request body from `from` to `to`, created now.
  v1::RequestBody Body(const std::string& from, const std::string& to) {
    v1::RequestBody b = NodeHarness::Draft(to);
    b.set_id(kId);
    b.set_requesting_party(from);
    *b.mutable_created_at() = ToProto(harness_.clock().Now());
    return b;
  }
  v1::SignedEnvelope SignedBy(Node& node, const v1::RequestBody& body) {
    absl::StatusOr<v1::SignedEnvelope> env = node.context().Sign(kRequestPayloadType, body);
    EXPECT_THAT(env.status(), IsOk());
    return env.ok() ? *env : v1::SignedEnvelope();
  }
  // JP answers with one page holding `records`, then `next` (empty: last).
  void JpAnswers(std::vector<v1::SharedRecord> records, std::string next = "") {
    to_jp_.on_shared_records = [records, next](const std::string& party,
                                               const v1::GetSharedRecordsRequest&)
        -> absl::StatusOr<v1::GetSharedRecordsResponse> {
      EXPECT_EQ(party, "JP");
      v1::GetSharedRecordsResponse resp;
      for (const v1::SharedRecord& r : records) *resp.add_records() = r;
      resp.set_next_page_token(next);
      return resp;
    };
  }
  Recovery::Outcome RecoverOnce() {
    absl::StatusOr<std::vector<Recovery::Outcome>> out =
        fr_->recovery().RecoverFromPeers(absl::InfinitePast());
    EXPECT_THAT(out.status(), IsOk());
    EXPECT_THAT(*out, SizeIs(1));
    return out.ok() && !out->empty() ? (*out)[0] : Recovery::Outcome();
  }
  std::string RecoveredDetail() {
    auto entries = AuditEntriesOf(*fr_, v1::RECORDS_RECOVERED);
    EXPECT_THAT(entries.status(), IsOk());
    return entries.ok() && !entries->empty() ? entries->back().detail() : "";
  }
  bool FrHolds() {
    auto records = fr_->store()->requests().Get(kId);
    return records.ok() && !records->empty();
  }

  NodeHarness harness_;
  FakePeerTransport to_jp_;
  FakePeerTransport unused_;
  std::unique_ptr<Node> fr_;
  std::unique_ptr<Node> jp_;
};

TEST_F(RecoveryTest, ARequestJpSignedAsIfFrHadSentItIsNotApplied) {
  v1::SharedRecord forged;
  *forged.mutable_request() = SignedBy(*jp_, Body("FR", "JP"));
  JpAnswers({forged});
  Recovery::Outcome o = RecoverOnce();
  EXPECT_THAT(o.reached, IsOk());
  EXPECT_EQ(o.requests_recovered, 0);
  EXPECT_EQ(o.not_recovered_count, 1);
  EXPECT_THAT(RecoveredDetail(), HasSubstr("not signed by this node"));
  EXPECT_FALSE(FrHolds());
}

TEST_F(RecoveryTest, ARequestBetweenOtherPartiesIsNotApplied) {
  v1::SharedRecord other;
  *other.mutable_request() = SignedBy(*jp_, Body("JP", "DE"));
  JpAnswers({other});
  Recovery::Outcome o = RecoverOnce();
  EXPECT_EQ(o.not_recovered_count, 1);
  EXPECT_THAT(RecoveredDetail(), HasSubstr("not a request between FR and JP"));
  EXPECT_FALSE(FrHolds());
}

TEST_F(RecoveryTest, AStepOfFrSignedByJpIsNotAppliedButTheRequestIs) {
  // JP's request to FR, genuine, with a "step" FR would have signed, signed
  // by JP instead.
  const v1::RequestBody body = Body("JP", "FR");
  v1::SharedRecord record;
  *record.mutable_request() = SignedBy(*jp_, body);
  v1::Transition t;
  t.set_request_id(kId);
  t.set_sequence(1);
  t.set_action(v1::ACKNOWLEDGE);
  t.set_from_state(v1::CASE_DELIVERED);
  t.set_to_state(v1::CASE_ACKNOWLEDGED);
  t.set_party("FR");
  t.set_time_unix_micros(absl::ToUnixMicros(harness_.clock().Now()));
  absl::StatusOr<v1::SignedEnvelope> step = jp_->context().Sign(kTransitionPayloadType, t);
  ASSERT_THAT(step.status(), IsOk());
  *record.add_transitions() = *step;
  JpAnswers({record});
  Recovery::Outcome o = RecoverOnce();
  EXPECT_EQ(o.requests_recovered, 1);
  EXPECT_EQ(o.steps_recovered, 0);
  EXPECT_EQ(o.not_recovered_count, 1);
  EXPECT_THAT(RecoveredDetail(), HasSubstr("must be signed by FR"));
  auto records = fr_->store()->requests().Get(kId);
  ASSERT_THAT(records.status(), IsOk());
  ASSERT_THAT(*records, SizeIs(1));
  EXPECT_EQ((*records)[0].direction(), v1::INCOMING);
  EXPECT_EQ((*records)[0].transitions_size(), 0);
  auto received = AuditEntriesOf(*fr_, v1::REQUEST_RECEIVED, kId);
  ASSERT_THAT(received.status(), IsOk());
  ASSERT_THAT(*received, SizeIs(1));
  EXPECT_THAT((*received)[0].detail(), HasSubstr("recovered from JP"));
}

TEST_F(RecoveryTest, PagesThatNeverEndStopTheRecoveryFromThatPeer) {
  int pages = 0;
  to_jp_.on_shared_records = [&](const std::string&, const v1::GetSharedRecordsRequest& r)
      -> absl::StatusOr<v1::GetSharedRecordsResponse> {
    ++pages;
    v1::GetSharedRecordsResponse resp;
    // A token already given: a loop.
    resp.set_next_page_token(r.page_token().empty() ? "a" : "a");
    return resp;
  };
  Recovery::Outcome o = RecoverOnce();
  EXPECT_FALSE(o.reached.ok());
  EXPECT_EQ(pages, 2);
  EXPECT_THAT(RecoveredDetail(), HasSubstr("could not be asked to the end"));
}

TEST_F(RecoveryTest, AnUnreachablePeerIsAuditedNotFatal) {
  to_jp_.on_shared_records = [](const std::string&, const v1::GetSharedRecordsRequest&)
      -> absl::StatusOr<v1::GetSharedRecordsResponse> {
    return absl::UnavailableError("connection refused");
  };
  Recovery::Outcome o = RecoverOnce();
  EXPECT_TRUE(absl::IsUnavailable(o.reached));
  EXPECT_THAT(RecoveredDetail(), HasSubstr("connection refused"));
}

TEST_F(RecoveryTest, TheAskedTimeIsTheLossLessTheClockMargin) {
  int64_t asked = -1;
  to_jp_.on_shared_records = [&](const std::string&, const v1::GetSharedRecordsRequest& r)
      -> absl::StatusOr<v1::GetSharedRecordsResponse> {
    asked = r.changed_since_unix_micros();
    return v1::GetSharedRecordsResponse();
  };
  const absl::Time lost = harness_.clock().Now();
  ASSERT_THAT(fr_->recovery().RecoverFromPeers(lost).status(), IsOk());
  EXPECT_EQ(asked, absl::ToUnixMicros(lost - Recovery::kClockMargin));
}

}  // namespace
}  // namespace comity
