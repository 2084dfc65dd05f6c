#include "server/core/deadlines.h"

#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"

namespace comity {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

const absl::Time kReceived = absl::FromUnixSeconds(1790000000);

v1::ServiceLevels Levels() {
  v1::ServiceLevels l;
  l.set_acknowledge_hours(72);
  l.set_urgent_acknowledge_hours(24);
  l.set_emergency_acknowledge_hours(2);
  l.set_decide_days(30);
  l.set_urgent_decide_days(5);
  l.set_preservation_warning_days(7);
  return l;
}

v1::RequestRecord Case(v1::Urgency urgency, v1::CaseState state) {
  v1::RequestBody body;
  body.set_id("r1");
  body.set_requesting_party("FR");
  body.set_requested_party("JP");
  body.set_urgency(urgency);
  body.set_assistance_type(v1::PRESERVATION);
  v1::Receipt receipt;
  receipt.mutable_received_at()->set_seconds(absl::ToUnixSeconds(kReceived));
  receipt.mutable_receiver_assessment()->set_obligation(v1::BINDING);
  receipt.mutable_receiver_assessment()->set_instrument("ETS185");
  receipt.mutable_receiver_assessment()->set_deadline_days(60);
  v1::RequestRecord r;
  r.set_direction(v1::INCOMING);
  r.set_case_state(state);
  r.mutable_request()->set_payload(body.SerializeAsString());
  r.mutable_receipt()->set_payload(receipt.SerializeAsString());
  return r;
}

TEST(DeadlinesTest, AcknowledgementDependsOnUrgency) {
  auto routine = CaseDeadlines(Case(v1::ROUTINE, v1::CASE_DELIVERED), Levels(),
                               kReceived + absl::Hours(30));
  ASSERT_THAT(routine, SizeIs(2));
  EXPECT_EQ(routine[0].kind(), "ACKNOWLEDGE");
  EXPECT_FALSE(routine[0].overdue());
  auto urgent = CaseDeadlines(Case(v1::URGENT, v1::CASE_DELIVERED), Levels(),
                              kReceived + absl::Hours(30));
  EXPECT_TRUE(urgent[0].overdue());
  auto emergency = CaseDeadlines(Case(v1::EMERGENCY, v1::CASE_DELIVERED), Levels(),
                                 kReceived + absl::Hours(3));
  EXPECT_TRUE(emergency[0].overdue());
  EXPECT_EQ(emergency[0].obligation(), v1::BINDING);
}

TEST(DeadlinesTest, MetDeadlinesDisappear) {
  auto acked = CaseDeadlines(Case(v1::ROUTINE, v1::CASE_UNDER_REVIEW), Levels(),
                             kReceived + absl::Hours(24 * 31));
  ASSERT_THAT(acked, SizeIs(1));
  EXPECT_EQ(acked[0].kind(), "DECIDE");
  EXPECT_TRUE(acked[0].overdue());
  EXPECT_THAT(CaseDeadlines(Case(v1::ROUTINE, v1::CASE_REFUSED), Levels(),
                            kReceived + absl::Hours(24 * 100)),
              IsEmpty());
  EXPECT_THAT(CaseDeadlines(Case(v1::ROUTINE, v1::CASE_STATE_UNSPECIFIED), Levels(),
                            kReceived + absl::Hours(24 * 100)),
              IsEmpty());
}

TEST(DeadlinesTest, PreservationTermRunsFromAcceptance) {
  v1::RequestRecord r = Case(v1::ROUTINE, v1::CASE_ACCEPTED);
  v1::Transition t;
  t.set_action(v1::ACCEPT);
  t.set_time_unix_micros(absl::ToUnixMicros(kReceived + absl::Hours(24)));
  r.add_transitions()->set_payload(t.SerializeAsString());
  EXPECT_THAT(CaseDeadlines(r, Levels(), kReceived + absl::Hours(24 * 50)), IsEmpty());
  auto soon = CaseDeadlines(r, Levels(), kReceived + absl::Hours(24 * 55));
  ASSERT_THAT(soon, SizeIs(1));
  EXPECT_EQ(soon[0].kind(), "PRESERVATION_EXPIRY");
  EXPECT_TRUE(soon[0].expiring());
  EXPECT_FALSE(soon[0].overdue());
  EXPECT_EQ(soon[0].due_unix_micros(), absl::ToUnixMicros(kReceived + absl::Hours(24 * 61)));
}

TEST(DeadlinesTest, ParsedBodyAndReceiptGiveTheSameDeadlines) {
  // The delivery and intake paths pass what they already parsed; the
  // answer must not depend on which overload computed it.
  for (v1::CaseState state : {v1::CASE_DELIVERED, v1::CASE_ACCEPTED, v1::CASE_CLOSED}) {
    v1::RequestRecord r = Case(v1::URGENT, state);
    v1::Transition accept;
    accept.set_action(v1::ACCEPT);
    accept.set_time_unix_micros(absl::ToUnixMicros(kReceived + absl::Hours(5)));
    r.add_transitions()->set_payload(accept.SerializeAsString());
    v1::RequestBody body;
    v1::Receipt receipt;
    ASSERT_TRUE(body.ParseFromString(r.request().payload()));
    ASSERT_TRUE(ParseReceipt(r.receipt(), &receipt));
    const absl::Time now = kReceived + absl::Hours(24 * 55);
    auto parsed = EveryDeadline(r, body, receipt, Levels(), now);
    auto reparsed = EveryDeadline(r, Levels(), now);
    ASSERT_EQ(parsed.size(), reparsed.size());
    for (size_t i = 0; i < parsed.size(); ++i) {
      EXPECT_EQ(parsed[i].SerializeAsString(), reparsed[i].SerializeAsString());
    }
    EXPECT_EQ(NextDeadline(r, body, receipt, Levels()), NextDeadline(r, Levels()));
    EXPECT_EQ(NextDeadline(r, body, receipt, Levels(), kReceived + absl::Hours(30)),
              NextDeadline(r, Levels(), kReceived + absl::Hours(30)));
    if (state == v1::CASE_ACCEPTED) {
      EXPECT_THAT(parsed, SizeIs(3));  // Acknowledge, decide, preservation expiry.
    }
    if (state == v1::CASE_CLOSED) {
      EXPECT_THAT(parsed, IsEmpty());
    }
  }
}

}  // namespace
}  // namespace comity
