// Clock: the monotonic reading moves with time and not with steps of the
// wall clock, on the fake and on the system clock.
#include "server/util/clock.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace comity {
namespace {

TEST(FakeClockTest, AdvanceMovesBothReadingsAndAStepOnlyTheWallClock) {
  FakeClock clock(absl::FromUnixSeconds(1700000000));
  const absl::Duration mono = clock.MonotonicNow();
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1700000005));
  EXPECT_EQ(clock.MonotonicNow() - mono, absl::Seconds(5));
  clock.Step(-absl::Hours(2));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1700000005) - absl::Hours(2));
  EXPECT_EQ(clock.MonotonicNow() - mono, absl::Seconds(5));
  clock.Set(absl::FromUnixSeconds(1800000000));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(1800000000));
  EXPECT_EQ(clock.MonotonicNow() - mono, absl::Seconds(5));
}

TEST(SystemClockTest, TheMonotonicReadingMovesAsRealTimeDoes) {
  const SystemClock& clock = *SystemClock::Get();
  const absl::Duration before = clock.MonotonicNow();
  absl::SleepFor(absl::Milliseconds(20));
  const absl::Duration elapsed = clock.MonotonicNow() - before;
  EXPECT_GE(elapsed, absl::Milliseconds(20));
  EXPECT_LT(elapsed, absl::Seconds(10));
  EXPECT_LE(absl::AbsDuration(clock.Now() - absl::Now()), absl::Seconds(1));
}

}  // namespace
}  // namespace comity
