// DeadlineWatch: late and expiring deadlines listed, missed deadlines of
// BINDING requests escalated once each, deadlines recomputed after the
// service levels change, a preservation flagged before its term ends.
#include "server/node/deadline_watch.h"

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/node/case_records.h"
#include "server/util/status_macros.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::FakePeerTransport;
using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::LoopbackTransport;
using ::comity::testing::NodeHarness;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

// The audit entries of `type` on `node`, parsed, in log order.
std::vector<v1::AuditEntry> Audit(Node& node, v1::AuditEventType type) {
  AuditFilter f;
  f.type = type;
  absl::StatusOr<std::vector<std::string>> raw = node.store()->audit().Entries(f);
  EXPECT_THAT(raw, IsOk());
  std::vector<v1::AuditEntry> out;
  for (const std::string& bytes : raw.ok() ? *raw : std::vector<std::string>()) {
    v1::AuditEntry e;
    EXPECT_TRUE(e.ParseFromString(bytes));
    out.push_back(std::move(e));
  }
  return out;
}

// Every late and expiring deadline on `node`, page after page.
absl::StatusOr<std::vector<v1::CaseDeadline>> Overdue(Node& node, int limit = 0) {
  std::vector<v1::CaseDeadline> out;
  std::string token;
  do {
    COMITY_ASSIGN_OR_RETURN(OverduePage page, node.deadlines().Overdue(limit, token));
    for (v1::CaseDeadline& d : page.deadlines) out.push_back(std::move(d));
    token = page.next_page_token;
  } while (!token.empty());
  return out;
}

absl::Time DueOf(const v1::CaseDeadline& d) {
  return absl::FromUnixMicros(d.due_unix_micros());
}

// FR sends, JP receives (and runs the watch under test). JP's own transport
// is a fake that answers nothing: its steps are not delivered back.
class DeadlineWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fr_transport_ = harness_.Loopback("FR");
    COMITY_ASSERT_OK_AND_ASSIGN(jp_, harness_.MakeNode("JP", &jp_transport_));
    fr_transport_->Connect("JP", jp_.get());
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", fr_transport_.get()));
  }

  // Submits `draft` on FR and delivers it to JP over FR's lane; returns its
  // id once JP holds the case.
  absl::StatusOr<std::string> SendToJp(const v1::RequestBody& draft) {
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord stored,
                            fr_->submission().Submit("alice", draft));
    COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(stored));
    fr_->outbox().lane("JP")->RunRound([] { return false; });
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord received,
                            LoadRecord(*jp_->store(), body.id(), v1::INCOMING));
    if (received.case_state() != v1::CASE_DELIVERED) {
      return absl::InternalError(absl::StrCat("JP holds request ", body.id(),
                                              " in state ",
                                              v1::CaseState_Name(received.case_state())));
    }
    return body.id();
  }

  // JP takes step `action` on the case of `id`.
  absl::Status JpDecides(const std::string& id, v1::CaseAction action) {
    CaseBook::Decision d;
    d.action = action;
    return jp_->cases().Decide("bob", id, d).status();
  }

  // A JP node made again from its (edited) configuration text.
  absl::Status RemakeJp() {
    fr_transport_->Connect("JP", nullptr);
    jp_.reset();
    COMITY_ASSIGN_OR_RETURN(jp_, harness_.MakeNode("JP", &jp_transport_));
    fr_transport_->Connect("JP", jp_.get());
    return absl::OkStatus();
  }

  NodeHarness harness_;
  FakePeerTransport jp_transport_;
  std::unique_ptr<LoopbackTransport> fr_transport_;
  std::unique_ptr<Node> jp_;
  std::unique_ptr<Node> fr_;
};

TEST_F(DeadlineWatchTest,
       AMissedAcknowledgementOfABindingRequestIsListedAndEscalatedOnce) {
  const absl::Time received = harness_.clock().Now();
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  COMITY_ASSERT_OK_AND_ASSIGN(auto late, Overdue(*jp_));
  EXPECT_THAT(late, IsEmpty());

  // Not yet: nothing to escalate.
  harness_.clock().Advance(absl::Hours(71));
  jp_->deadlines().Check();
  EXPECT_THAT(Audit(*jp_, v1::CASE_ESCALATED), IsEmpty());

  harness_.clock().Advance(absl::Hours(1) + absl::Seconds(1));
  COMITY_ASSERT_OK_AND_ASSIGN(late, Overdue(*jp_));
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].request_id(), id);
  EXPECT_EQ(late[0].direction(), v1::INCOMING);
  EXPECT_EQ(late[0].kind(), "ACKNOWLEDGE");
  EXPECT_TRUE(late[0].overdue());
  EXPECT_FALSE(late[0].expiring());
  EXPECT_EQ(late[0].party(), "JP");
  EXPECT_EQ(late[0].obligation(), v1::BINDING);
  EXPECT_EQ(DueOf(late[0]), received + absl::Hours(72));
  // The requesting side sees the same deadline on its copy of the case.
  COMITY_ASSERT_OK_AND_ASSIGN(auto fr_late, Overdue(*fr_));
  ASSERT_EQ(fr_late.size(), 1u);
  EXPECT_EQ(fr_late[0].direction(), v1::OUTGOING);
  EXPECT_EQ(fr_late[0].kind(), "ACKNOWLEDGE");

  jp_->deadlines().Check();
  std::vector<v1::AuditEntry> escalated = Audit(*jp_, v1::CASE_ESCALATED);
  ASSERT_EQ(escalated.size(), 1u);
  EXPECT_EQ(escalated[0].request_id(), id);
  EXPECT_EQ(escalated[0].actor(), "node");
  EXPECT_EQ(escalated[0].party(), "JP");
  EXPECT_EQ(escalated[0].obligation(), v1::BINDING);
  EXPECT_THAT(escalated[0].detail(), StartsWith("ACKNOWLEDGE overdue since"));

  // Once per deadline, however often the watch runs.
  jp_->deadlines().Check();
  harness_.clock().Advance(absl::Hours(1));
  jp_->deadlines().Check();
  EXPECT_EQ(Audit(*jp_, v1::CASE_ESCALATED).size(), 1u);
  // Escalated is not met: still listed.
  COMITY_ASSERT_OK_AND_ASSIGN(late, Overdue(*jp_));
  EXPECT_EQ(late.size(), 1u);
}

TEST_F(DeadlineWatchTest, AfterAStepTheDecideDeadlineIsEscalatedWhenItPasses) {
  const absl::Time received = harness_.clock().Now();
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  harness_.clock().Advance(absl::Hours(73));
  jp_->deadlines().Check();
  ASSERT_EQ(Audit(*jp_, v1::CASE_ESCALATED).size(), 1u);

  // Acknowledged late: that deadline is met, DECIDE is not due yet.
  ASSERT_THAT(JpDecides(id, v1::ACKNOWLEDGE), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto late, Overdue(*jp_));
  EXPECT_THAT(late, IsEmpty());
  harness_.clock().Set(received + absl::Hours(24 * 30) - absl::Minutes(1));
  jp_->deadlines().Check();
  EXPECT_EQ(Audit(*jp_, v1::CASE_ESCALATED).size(), 1u);

  harness_.clock().Set(received + absl::Hours(24 * 30) + absl::Seconds(1));
  COMITY_ASSERT_OK_AND_ASSIGN(late, Overdue(*jp_));
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].kind(), "DECIDE");
  EXPECT_TRUE(late[0].overdue());
  EXPECT_EQ(DueOf(late[0]), received + absl::Hours(24 * 30));

  jp_->deadlines().Check();
  jp_->deadlines().Check();
  std::vector<v1::AuditEntry> escalated = Audit(*jp_, v1::CASE_ESCALATED);
  ASSERT_EQ(escalated.size(), 2u);
  EXPECT_EQ(escalated[1].request_id(), id);
  EXPECT_THAT(escalated[1].detail(), StartsWith("DECIDE overdue since"));
}

TEST_F(DeadlineWatchTest, ADecideDeadlineMissedWithoutAnyStepIsEscalatedToo) {
  // A party that never acts: its DECIDE deadline is escalated when it
  // passes, though its ACKNOWLEDGE deadline, escalated before, stays unmet
  // (this was missed once: the watch looked again only when the case moved).
  const absl::Time received = harness_.clock().Now();
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  harness_.clock().Advance(absl::Hours(73));
  jp_->deadlines().Check();
  ASSERT_EQ(Audit(*jp_, v1::CASE_ESCALATED).size(), 1u);

  // JP never acts: thirty days on, both deadlines are missed.
  harness_.clock().Set(received + absl::Hours(24 * 30) + absl::Seconds(1));
  COMITY_ASSERT_OK_AND_ASSIGN(auto late, Overdue(*jp_));
  ASSERT_EQ(late.size(), 2u);
  jp_->deadlines().Check();
  std::vector<v1::AuditEntry> escalated = Audit(*jp_, v1::CASE_ESCALATED);
  ASSERT_EQ(escalated.size(), 2u);
  EXPECT_EQ(escalated[1].request_id(), id);
  EXPECT_THAT(escalated[1].detail(), StartsWith("DECIDE overdue since"));
}

TEST_F(DeadlineWatchTest, LateDeadlinesComeInPagesOfCasesSoonestFirst) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string first, SendToJp(NodeHarness::Draft("JP")));
  harness_.clock().Advance(absl::Minutes(1));
  COMITY_ASSERT_OK_AND_ASSIGN(std::string second, SendToJp(NodeHarness::Draft("JP")));
  harness_.clock().Advance(absl::Hours(73));
  COMITY_ASSERT_OK_AND_ASSIGN(OverduePage page, jp_->deadlines().Overdue(1, ""));
  ASSERT_EQ(page.deadlines.size(), 1u);
  EXPECT_EQ(page.deadlines[0].request_id(), first);
  ASSERT_FALSE(page.next_page_token.empty());
  COMITY_ASSERT_OK_AND_ASSIGN(page, jp_->deadlines().Overdue(1, page.next_page_token));
  ASSERT_EQ(page.deadlines.size(), 1u);
  EXPECT_EQ(page.deadlines[0].request_id(), second);
  EXPECT_TRUE(page.next_page_token.empty());
  // Both in one page of the default size; bounded by bytes, one a page.
  COMITY_ASSERT_OK_AND_ASSIGN(page, jp_->deadlines().Overdue(0, ""));
  EXPECT_EQ(page.deadlines.size(), 2u);
  EXPECT_TRUE(page.next_page_token.empty());
  COMITY_ASSERT_OK_AND_ASSIGN(page, jp_->deadlines().Overdue(0, "", 1));
  EXPECT_EQ(page.deadlines.size(), 1u);
  EXPECT_FALSE(page.next_page_token.empty());
  EXPECT_THAT(jp_->deadlines().Overdue(0, "c1:12:1:x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page token")));
}

TEST_F(DeadlineWatchTest, ANonBindingRequestIsListedButNotEscalated) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string binding, SendToJp(NodeHarness::Draft("JP")));
  v1::RequestBody spontaneous = NodeHarness::Draft("JP");
  spontaneous.set_assistance_type(
      v1::SPONTANEOUS_INFORMATION);  // ETS185 Art 26: DISCRETIONARY.
  COMITY_ASSERT_OK_AND_ASSIGN(std::string discretionary, SendToJp(spontaneous));

  harness_.clock().Advance(absl::Hours(72) + absl::Seconds(1));
  COMITY_ASSERT_OK_AND_ASSIGN(auto late, Overdue(*jp_));
  ASSERT_EQ(late.size(), 2u);
  std::map<std::string, v1::Obligation> listed;
  for (const v1::CaseDeadline& d : late) {
    EXPECT_EQ(d.kind(), "ACKNOWLEDGE");
    EXPECT_TRUE(d.overdue());
    listed[d.request_id()] = d.obligation();
  }
  EXPECT_EQ(listed[binding], v1::BINDING);
  EXPECT_EQ(listed[discretionary], v1::DISCRETIONARY);

  jp_->deadlines().Check();
  std::vector<v1::AuditEntry> escalated = Audit(*jp_, v1::CASE_ESCALATED);
  ASSERT_EQ(escalated.size(), 1u);
  EXPECT_EQ(escalated[0].request_id(), binding);
}

TEST_F(DeadlineWatchTest, ReindexAppliesChangedServiceLevelsToOpenCases) {
  const absl::Time received = harness_.clock().Now();
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  EXPECT_THAT(jp_->deadlines().Reindex(), IsOkAndHolds(0));

  // JP restarts with a one-hour acknowledgement level.
  harness_.ConfigText("JP") += "service_levels { acknowledge_hours: 1 }\n";
  ASSERT_THAT(RemakeJp(), IsOk());
  harness_.clock().Advance(absl::Hours(1) + absl::Seconds(1));
  // The store still holds the deadline computed under the old levels.
  COMITY_ASSERT_OK_AND_ASSIGN(auto late, Overdue(*jp_));
  EXPECT_THAT(late, IsEmpty());

  EXPECT_THAT(jp_->deadlines().Reindex(), IsOkAndHolds(1));
  EXPECT_THAT(jp_->deadlines().Reindex(), IsOkAndHolds(0));
  COMITY_ASSERT_OK_AND_ASSIGN(late, Overdue(*jp_));
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].request_id(), id);
  EXPECT_EQ(late[0].kind(), "ACKNOWLEDGE");
  EXPECT_EQ(DueOf(late[0]), received + absl::Hours(1));
  jp_->deadlines().Check();
  EXPECT_EQ(Audit(*jp_, v1::CASE_ESCALATED).size(), 1u);
}

TEST_F(DeadlineWatchTest, AnAcceptedPreservationIsFlaggedBeforeItsSixtyDayTermEnds) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  harness_.clock().Advance(absl::Hours(2));
  const absl::Time accepted = harness_.clock().Now();
  ASSERT_THAT(JpDecides(id, v1::ACCEPT), IsOk());

  // Until the warning period (7 days before the end) nothing is listed.
  harness_.clock().Set(accepted + absl::Hours(24 * 53) - absl::Seconds(1));
  COMITY_ASSERT_OK_AND_ASSIGN(auto late, Overdue(*jp_));
  EXPECT_THAT(late, IsEmpty());

  harness_.clock().Set(accepted + absl::Hours(24 * 53) + absl::Seconds(1));
  COMITY_ASSERT_OK_AND_ASSIGN(late, Overdue(*jp_));
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].request_id(), id);
  EXPECT_EQ(late[0].kind(), "PRESERVATION_EXPIRY");
  EXPECT_TRUE(late[0].expiring());
  EXPECT_FALSE(late[0].overdue());
  EXPECT_EQ(late[0].party(), "FR");  // The requesting party must follow up.
  EXPECT_EQ(DueOf(late[0]), accepted + absl::Hours(24 * 60));
  // A term is not the requested party's deadline: never escalated.
  jp_->deadlines().Check();
  EXPECT_THAT(Audit(*jp_, v1::CASE_ESCALATED), IsEmpty());

  harness_.clock().Set(accepted + absl::Hours(24 * 60) + absl::Seconds(1));
  COMITY_ASSERT_OK_AND_ASSIGN(late, Overdue(*jp_));
  ASSERT_EQ(late.size(), 1u);
  EXPECT_TRUE(late[0].overdue());
  EXPECT_TRUE(late[0].expiring());
  jp_->deadlines().Check();
  EXPECT_THAT(Audit(*jp_, v1::CASE_ESCALATED), IsEmpty());
}

}  // namespace
}  // namespace comity
