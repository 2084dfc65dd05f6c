#include "server/util/executor.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace comity {
namespace {

TEST(ExecutorTest, RunsEveryClosureOnItsOwnThreads) {
  std::atomic<int> ran{0};
  std::atomic<bool> on_caller{false};
  const std::thread::id caller = std::this_thread::get_id();
  {
    Executor pool("test", 3);
    for (int i = 0; i < 1000; ++i) {
      pool.Schedule([&] {
        if (std::this_thread::get_id() == caller) on_caller = true;
        ++ran;
      });
    }
  }  // The destructor runs what is queued.
  EXPECT_EQ(ran.load(), 1000);
  EXPECT_FALSE(on_caller.load());
}

TEST(ExecutorTest, OneBlockedClosureDoesNotHoldUpTheOthers) {
  Executor pool("test", 2);
  absl::Notification release, blocked_started, other_ran;
  pool.Schedule([&] {
    blocked_started.Notify();
    release.WaitForNotification();
  });
  blocked_started.WaitForNotification();
  pool.Schedule([&] { other_ran.Notify(); });
  EXPECT_TRUE(other_ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
  release.Notify();
}

TEST(ExecutorTest, AfterStopClosuresRunOnTheCaller) {
  Executor pool("test", 1);
  pool.Stop();
  pool.Stop();  // Idempotent.
  bool ran = false;
  pool.Schedule([&] { ran = true; });
  EXPECT_TRUE(ran);
  EXPECT_EQ(pool.queued(), 0u);
}

}  // namespace
}  // namespace comity
