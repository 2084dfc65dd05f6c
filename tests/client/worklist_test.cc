// The worklist and id prefixes, from records built here.
#include "client/worklist.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/util/time_proto.h"

namespace comity {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::RequestRecord Record(const std::string& id, v1::Direction direction, v1::CaseState state,
                         absl::Time deadline = absl::InfiniteFuture()) {
  v1::RequestBody body;
  body.set_id(id);
  body.set_requesting_party(direction == v1::INCOMING ? "JP" : "FR");
  body.set_requested_party(direction == v1::INCOMING ? "FR" : "JP");
  body.set_assistance_type(v1::PRESERVATION);
  v1::RequestRecord r;
  r.set_direction(direction);
  r.set_state(direction == v1::INCOMING ? v1::RECEIVED : v1::DELIVERED);
  r.set_case_state(state);
  r.mutable_request()->set_payload(body.SerializeAsString());
  if (deadline != absl::InfiniteFuture()) *r.mutable_next_deadline() = ToProto(deadline);
  return r;
}

TEST(WorklistTest, OwnWorkFirstThenByDeadlineClosedCasesLeftOut) {
  const absl::Time t = absl::FromUnixSeconds(1800000000);
  std::vector<v1::RequestRecord> records = {
      Record("aaaa0000-0000-4000-8000-000000000001", v1::OUTGOING, v1::CASE_UNDER_REVIEW,
             t + absl::Hours(1)),
      Record("bbbb0000-0000-4000-8000-000000000002", v1::INCOMING, v1::CASE_DELIVERED,
             t + absl::Hours(5)),
      Record("cccc0000-0000-4000-8000-000000000003", v1::INCOMING, v1::CASE_ACCEPTED,
             t + absl::Hours(2)),
      Record("dddd0000-0000-4000-8000-000000000004", v1::INCOMING, v1::CASE_CLOSED),
      Record("eeee0000-0000-4000-8000-000000000005", v1::OUTGOING, v1::CASE_EXECUTED),
  };
  std::vector<WorkItem> items = BuildWorklist(records);
  std::vector<std::string> ids;
  for (const WorkItem& w : items) ids.push_back(w.id.substr(0, 4) + ":" + w.waits_on);
  // Ours by deadline (cccc at +2h, bbbb at +5h), then the executed case we
  // close (no deadline), then what waits on JP.
  EXPECT_THAT(ids, ElementsAre("cccc:you", "bbbb:you", "eeee:you", "aaaa:JP"));
  EXPECT_THAT(items[0].next, ElementsAre("postpone", "respond"));
  EXPECT_THAT(items[2].next, ElementsAre("close"));
  EXPECT_TRUE(items[3].next.empty() || items[3].next == std::vector<std::string>{"withdraw"});
}

TEST(WorklistTest, PendingConditionsMakeTheRequesterAct) {
  v1::RequestRecord r =
      Record("ffff0000-0000-4000-8000-000000000006", v1::OUTGOING, v1::CASE_PARTLY_EXECUTED);
  v1::Transition respond;
  respond.set_action(v1::RESPOND);
  respond.add_release_conditions("use only in case 2026/17");
  r.add_transitions()->set_payload(respond.SerializeAsString());
  std::vector<WorkItem> items = BuildWorklist({r});
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].waits_on, "you");
  EXPECT_THAT(items[0].pending_conditions, ElementsAre("use only in case 2026/17"));
  EXPECT_THAT(items[0].next, ::testing::Contains("accept-conditions"));
  v1::Transition accept;
  accept.set_action(v1::ACCEPT_CONDITIONS);
  accept.add_accepted_conditions("use only in case 2026/17");
  r.add_transitions()->set_payload(accept.SerializeAsString());
  items = BuildWorklist({r});
  EXPECT_TRUE(items[0].pending_conditions.empty());
  EXPECT_EQ(items[0].waits_on, "JP");
}

TEST(WorklistTest, AnIdPrefixNamesOneRequestOrSaysWhy) {
  std::vector<v1::RequestRecord> records = {
      Record("ab120000-0000-4000-8000-000000000001", v1::OUTGOING, v1::CASE_DELIVERED),
      Record("ab340000-0000-4000-8000-000000000002", v1::INCOMING, v1::CASE_DELIVERED),
  };
  EXPECT_EQ(*MatchIdPrefix(records, "AB12"), "ab120000-0000-4000-8000-000000000001");
  auto ambiguous = MatchIdPrefix(records, "ab");
  EXPECT_THAT(std::string(ambiguous.status().message()), HasSubstr("at least its first 4"));
  ambiguous = MatchIdPrefix(records, "ab12ab34");
  EXPECT_TRUE(absl::IsNotFound(ambiguous.status()));
  records.push_back(Record("ab12ffff-0000-4000-8000-000000000003", v1::OUTGOING,
                           v1::CASE_DELIVERED));
  ambiguous = MatchIdPrefix(records, "ab12");
  EXPECT_TRUE(absl::IsInvalidArgument(ambiguous.status()));
  EXPECT_THAT(std::string(ambiguous.status().message()),
              HasSubstr("'ab12' is ambiguous: 2 request ids start with it"));
  EXPECT_TRUE(absl::IsInvalidArgument(MatchIdPrefix(records, "xyz!").status()));
}

}  // namespace
}  // namespace comity
