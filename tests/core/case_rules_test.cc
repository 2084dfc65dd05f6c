#include "server/core/case_rules.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

TEST(CaseRulesTest, TheOrdinaryPathIsLegal) {
  EXPECT_THAT(NextCaseState(v1::CASE_DELIVERED, v1::ACKNOWLEDGE, false),
              IsOkAndHolds(v1::CASE_ACKNOWLEDGED));
  EXPECT_THAT(NextCaseState(v1::CASE_ACKNOWLEDGED, v1::START_REVIEW, false),
              IsOkAndHolds(v1::CASE_UNDER_REVIEW));
  EXPECT_THAT(NextCaseState(v1::CASE_UNDER_REVIEW, v1::ACCEPT, false),
              IsOkAndHolds(v1::CASE_ACCEPTED));
  EXPECT_THAT(NextCaseState(v1::CASE_ACCEPTED, v1::RESPOND, false),
              IsOkAndHolds(v1::CASE_PARTLY_EXECUTED));
  EXPECT_THAT(NextCaseState(v1::CASE_PARTLY_EXECUTED, v1::RESPOND, true),
              IsOkAndHolds(v1::CASE_EXECUTED));
  EXPECT_THAT(NextCaseState(v1::CASE_EXECUTED, v1::CLOSE, false), IsOkAndHolds(v1::CASE_CLOSED));
  EXPECT_THAT(NextCaseState(v1::CASE_UNDER_REVIEW, v1::POSTPONE, false),
              IsOkAndHolds(v1::CASE_POSTPONED));
  EXPECT_THAT(NextCaseState(v1::CASE_POSTPONED, v1::START_REVIEW, false),
              IsOkAndHolds(v1::CASE_UNDER_REVIEW));
  EXPECT_THAT(NextCaseState(v1::CASE_UNDER_REVIEW, v1::REQUEST_INFO, false),
              IsOkAndHolds(v1::CASE_INFO_REQUESTED));
}

TEST(CaseRulesTest, IllegalMovesNameWhatIsAllowed) {
  EXPECT_THAT(NextCaseState(v1::CASE_DELIVERED, v1::RESPOND, true),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("RESPOND is not allowed in state CASE_DELIVERED; allowed: "
                                 "ACKNOWLEDGE, START_REVIEW, ACCEPT, REFUSE, REQUEST_INFO, "
                                 "WITHDRAW")));
  EXPECT_THAT(NextCaseState(v1::CASE_REFUSED, v1::ACCEPT, false),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("allowed: CLOSE")));
  EXPECT_THAT(NextCaseState(v1::CASE_INFO_REQUESTED, v1::PROVIDE_INFO, false),
              IsOkAndHolds(v1::CASE_UNDER_REVIEW));
  EXPECT_THAT(NextCaseState(v1::CASE_ACCEPTED, v1::WITHDRAW, false),
              IsOkAndHolds(v1::CASE_WITHDRAWN));
  EXPECT_THAT(NextCaseState(v1::CASE_EXECUTED, v1::WITHDRAW, false),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(IsRequesterAction(v1::WITHDRAW));
  EXPECT_FALSE(IsRequesterAction(v1::ACCEPT));
  EXPECT_TRUE(IsRequestedAction(v1::CLOSE));
  EXPECT_FALSE(IsRequestedAction(v1::PROVIDE_INFO));
  // A closed case still lets the requester accept release conditions.
  EXPECT_THAT(NextCaseState(v1::CASE_CLOSED, v1::CLOSE, false),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("allowed: ACCEPT_CONDITIONS")));
  EXPECT_THAT(NextCaseState(v1::CASE_CLOSED, v1::ACCEPT_CONDITIONS, false),
              IsOkAndHolds(v1::CASE_CLOSED));
  EXPECT_THAT(NextCaseState(v1::CASE_WITHDRAWN, v1::ACCEPT, false),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("allowed: CLOSE")));
  EXPECT_TRUE(IsFinalCaseState(v1::CASE_REFUSED));
  EXPECT_FALSE(IsFinalCaseState(v1::CASE_ACCEPTED));
}

v1::Assessment Binding(std::vector<v1::RefusalGround> open) {
  v1::Assessment a;
  a.set_obligation(v1::BINDING);
  a.set_instrument("ETS185");
  a.add_basis("ETS185 Art 25(1)");
  for (auto g : open) a.add_refusal_grounds(g);
  return a;
}

TEST(CaseRulesTest, BindingRequestsAreRefusedOnlyOnOpenGrounds) {
  std::vector<std::string> duties;
  v1::Assessment a = Binding({v1::ESSENTIAL_INTERESTS, v1::DOMESTIC_LAW});
  EXPECT_THAT(CheckRefusal(a, v1::MUTUAL_ASSISTANCE, {v1::ESSENTIAL_INTERESTS}, "security",
                           &duties),
              IsOk());
  EXPECT_THAT(CheckRefusal(a, v1::MUTUAL_ASSISTANCE, {v1::FISCAL_OFFENCE}, "tax", &duties),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("FISCAL_OFFENCE is not a ground it leaves open for it; open "
                                 "grounds: ESSENTIAL_INTERESTS, DOMESTIC_LAW")));
  EXPECT_THAT(CheckRefusal(a, v1::MUTUAL_ASSISTANCE, {}, "x", &duties),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("at least one ground")));
  EXPECT_THAT(CheckRefusal(a, v1::MUTUAL_ASSISTANCE, {v1::DOMESTIC_LAW}, "", &duties),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Art 27(7)")));
  EXPECT_THAT(duties, IsEmpty());
  // A discretionary request may be declined on any ground.
  v1::Assessment d = a;
  d.set_obligation(v1::DISCRETIONARY);
  EXPECT_THAT(CheckRefusal(d, v1::INTERCEPTION, {v1::FISCAL_OFFENCE}, "policy", &duties), IsOk());
}

TEST(CaseRulesTest, ExtraditionRefusedOnNationalityAloneOpensTheDutyToProsecute) {
  std::vector<std::string> duties;
  v1::Assessment a = Binding({v1::NATIONALITY, v1::DOMESTIC_LAW, v1::DUAL_CRIMINALITY});
  ASSERT_THAT(CheckRefusal(a, v1::EXTRADITION, {v1::NATIONALITY}, "own national", &duties),
              IsOk());
  ASSERT_EQ(duties.size(), 1u);
  EXPECT_THAT(duties[0], HasSubstr("Art 24(6)"));
  duties.clear();
  ASSERT_THAT(CheckRefusal(a, v1::EXTRADITION, {v1::NATIONALITY, v1::DOMESTIC_LAW}, "both",
                           &duties),
              IsOk());
  EXPECT_THAT(duties, IsEmpty());
}

}  // namespace
}  // namespace comity

namespace comity {
namespace {

// The verbs each side may use, for the worklist and for errors (issue 15).
TEST(CaseRulesVerbsTest, EachSideGetsItsOwnVerbs) {
  std::vector<std::string> requested, requesting;
  for (v1::CaseAction a : LegalActions(v1::CASE_DELIVERED, false)) {
    requested.emplace_back(VerbOf(a));
  }
  for (v1::CaseAction a : LegalActions(v1::CASE_DELIVERED, true)) {
    requesting.emplace_back(VerbOf(a));
  }
  EXPECT_EQ(requested, (std::vector<std::string>{"ack", "review", "accept", "refuse", "ask"}));
  EXPECT_EQ(requesting, (std::vector<std::string>{"withdraw"}));
  EXPECT_EQ(AllowedStepsMessage(v1::CASE_INFO_REQUESTED, true),
            "allowed for the requesting party in CASE_INFO_REQUESTED: withdraw, answer "
            "(comity VERB ID)");
  EXPECT_EQ(AllowedStepsMessage(v1::CASE_REFUSED, false),
            "allowed for the requested party in CASE_REFUSED: close (comity VERB ID)");
  EXPECT_EQ(AllowedStepsMessage(v1::CASE_CLOSED, false), "the case is closed");
  for (int a = 1; a <= 11; ++a) {
    EXPECT_FALSE(VerbOf(static_cast<v1::CaseAction>(a)).empty()) << a;
  }
}

}  // namespace
}  // namespace comity
