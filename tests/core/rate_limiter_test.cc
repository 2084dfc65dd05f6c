#include "server/node/rate_limiter.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/util/clock.h"

namespace comity {
namespace {

using ::testing::HasSubstr;

TEST(RateLimiterTest, ABurstThenTheRatePerKey) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  RateLimiter limiter(10, 3, &clock);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("JP").ok());
  absl::Status over = limiter.Admit("JP");
  EXPECT_TRUE(absl::IsUnavailable(over));
  EXPECT_THAT(over.message(), HasSubstr("party JP is over its rate limit"));
  EXPECT_THAT(over.message(), HasSubstr("retry in"));
  // Another key has its own bucket.
  EXPECT_TRUE(limiter.Admit("DE").ok());
  // 100 ms at 10/s refills one call, no more.
  clock.Advance(absl::Milliseconds(100));
  EXPECT_TRUE(limiter.Admit("JP").ok());
  EXPECT_FALSE(limiter.Admit("JP").ok());
  // Never beyond the burst, however long the pause.
  clock.Advance(absl::Hours(1));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Admit("JP").ok());
  EXPECT_FALSE(limiter.Admit("JP").ok());
}

// Buckets refill on the monotonic clock: a wall clock stepped forward
// grants no burst, one stepped back stops no refill.
TEST(RateLimiterTest, AWallClockStepNeitherRefillsNorStopsTheBucket) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  RateLimiter limiter(10, 3, &clock);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(limiter.Admit("JP").ok());
  ASSERT_FALSE(limiter.Admit("JP").ok());
  clock.Step(absl::Hours(1));
  EXPECT_FALSE(limiter.Admit("JP").ok());
  clock.Step(-absl::Hours(2));
  clock.Advance(absl::Milliseconds(100));
  EXPECT_TRUE(limiter.Admit("JP").ok());
  EXPECT_FALSE(limiter.Admit("JP").ok());
}

TEST(RateLimiterTest, RefusalsAreCountedPerKeyAndReset) {
  FakeClock clock(absl::FromUnixSeconds(1000));
  RateLimiter limiter(1, 1, &clock);
  ASSERT_TRUE(limiter.Admit("JP").ok());
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(limiter.Admit("JP").ok());
  ASSERT_TRUE(limiter.Admit("DE").ok());
  auto refusals = limiter.TakeRefusals();
  EXPECT_EQ(refusals.size(), 1u);
  EXPECT_EQ(refusals["JP"], 5u);
  EXPECT_TRUE(limiter.TakeRefusals().empty());
}

}  // namespace
}  // namespace comity
