// Faults that are not crashes, end to end on real nodes over real TLS: a
// partner down for longer than the replay window, clocks that are wrong and
// then corrected. Nothing may be lost: what waited is delivered once the
// fault clears, and a replay is still recognised.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/offset_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::OffsetClock;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;

class FaultsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
  }
  std::string Submit() {
    CliResult r = Cli(testing::SubmitPreservationArgs(net_->ClientConfigPath("FR", "alice"), "JP"));
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  }
  v1::RequestRecord Sent(const std::string& id) {
    auto r = net_->server("FR")->node()->Get(id);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? (*r)[0] : v1::RequestRecord();
  }
  bool DeliveredWithin(const std::string& id, absl::Duration d) {
    const absl::Time end = absl::Now() + d;
    while (absl::Now() < end) {
      if (Sent(id).state() == v1::DELIVERED) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  std::string Audit(const std::string& party, const std::string& type) {
    CliResult r = Cli({"--connect", net_->ClientConfigPath(party, "carol"), "audit", "log",
                       "--type", type});
    EXPECT_EQ(r.code, 0) << r.err;
    return r.out;
  }

  // Before net_: the nodes read them until they stop.
  OffsetClock clock_;
  OffsetClock jp_clock_;
  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(FaultsE2eTest, AnOutageLongerThanTheReplayWindowLosesNothing) {
  // Both clocks jump three days while JP is down: FR's request waited in
  // its outbox three times JP's replay window (one day).
  OffsetClock& clock = clock_;
  ASSERT_THAT(net_->Start("FR", &clock), IsOk());
  ASSERT_THAT(net_->Start("JP", &clock), IsOk());
  net_->Stop("JP");
  const std::string id = Submit();
  EXPECT_EQ(Sent(id).state(), v1::PENDING_DELIVERY);
  clock.Set(absl::Hours(72));
  ASSERT_THAT(net_->Start("JP", &clock), IsOk());

  ASSERT_TRUE(DeliveredWithin(id, absl::Seconds(20))) << Sent(id).last_error();
  EXPECT_THAT(Audit("JP", "REQUEST_RECEIVED"), HasSubstr("arrived 72h"));
  EXPECT_THAT(Audit("FR", "DELIVERY_REFUSED"), ::testing::Not(HasSubstr(id)));
}

TEST_F(FaultsE2eTest, AClockOffByMoreThanTheSkewIsRetriedUntilFixed) {
  // JP's clock is ten minutes behind: FR's requests are dated ahead of it.
  OffsetClock& jp_clock = jp_clock_;
  jp_clock.Set(absl::Minutes(-10));
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_THAT(net_->Start("JP", &jp_clock), IsOk());
  const std::string id = Submit();
  // Refused for now, not for good: still queued, the reason shown.
  absl::SleepFor(absl::Seconds(1));
  v1::RequestRecord waiting = Sent(id);
  EXPECT_EQ(waiting.state(), v1::PENDING_DELIVERY);
  EXPECT_THAT(waiting.last_error(), HasSubstr("later than this node's clock"));
  CliResult show = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "show", id});
  EXPECT_THAT(show.out, HasSubstr("later than this node's clock"));
  EXPECT_THAT(Audit("JP", "PEER_REQUEST_REFUSED"), HasSubstr("later than this node's clock"));

  // JP's clock is corrected: the same request goes through.
  jp_clock.Set(absl::ZeroDuration());
  ASSERT_TRUE(DeliveredWithin(id, absl::Seconds(20))) << Sent(id).last_error();
  EXPECT_THAT(Audit("FR", "DELIVERY_REFUSED"), ::testing::Not(HasSubstr(id)));
}

}  // namespace
}  // namespace comity
