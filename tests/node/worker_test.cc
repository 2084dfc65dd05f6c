// Worker: a thread that runs its round when woken or when the wait the last
// round asked for has passed, and stops at once when asked, even asleep.
// These tests involve a real thread: they wait for what it does (WaitFor, a
// notification) and never sleep to let time pass.
#include "server/node/worker.h"

#include <atomic>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/node/node_test_support.h"

namespace comity {
namespace {

using ::comity::testing::WaitFor;

// Long enough that a test waiting for it would time out: a worker that
// sleeps this long has not been woken.
constexpr absl::Duration kForever = absl::Hours(1);

// Counts the rounds of a worker; each round returns `wait`.
class Rounds {
 public:
  explicit Rounds(absl::Duration wait) : wait_(wait) {}
  Worker::Round Round() {
    return [this](const Worker&) {
      absl::MutexLock lock(&mu_);
      ++count_;
      return wait_;
    };
  }
  int count() const {
    absl::MutexLock lock(&mu_);
    return count_;
  }
  // Waits until `n` rounds ran (or 10 s pass); whether they did.
  bool AtLeast(int n) const {
    return WaitFor([&] { return count() >= n; });
  }

 private:
  const absl::Duration wait_;
  mutable absl::Mutex mu_;
  int count_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(WorkerTest, TheFirstRoundRunsAfterTheFirstWaitOrWhenWoken) {
  // No first wait: at once, unasked.
  Rounds at_once(absl::InfiniteDuration());
  Worker now("now", at_once.Round());
  now.Start();
  EXPECT_TRUE(at_once.AtLeast(1));

  // A first wait longer than the test: only a Wake runs it.
  Rounds later(absl::InfiniteDuration());
  Worker waiting("waiting", later.Round(), kForever);
  waiting.Start();
  EXPECT_EQ(later.count(), 0);
  waiting.Wake();
  EXPECT_TRUE(later.AtLeast(1));

  // Woken before it started: the first round does not wait either.
  Rounds early(absl::InfiniteDuration());
  Worker woken("woken", early.Round(), kForever);
  woken.Wake();
  woken.Start();
  EXPECT_TRUE(early.AtLeast(1));

  now.Stop();
  waiting.Stop();
  woken.Stop();
  EXPECT_EQ(at_once.count(), 1);
  EXPECT_EQ(later.count(), 1);
  EXPECT_EQ(early.count(), 1);
}

TEST(WorkerTest, ARoundRunsEachTimeItIsWoken) {
  Rounds rounds(absl::InfiniteDuration());
  Worker w("woken", rounds.Round(), kForever);
  w.Start();
  for (int i = 1; i <= 3; ++i) {
    w.Wake();
    ASSERT_TRUE(rounds.AtLeast(i)) << "round " << i;
  }
  w.Stop();
  EXPECT_EQ(rounds.count(), 3);
}

TEST(WorkerTest, TheNextRoundRunsWhenTheWaitTheRoundAskedForHasPassed) {
  // Each round asks for a short wait: rounds follow one another unwoken.
  Rounds rounds(absl::Milliseconds(1));
  Worker w("polling", rounds.Round());
  w.Start();
  EXPECT_TRUE(rounds.AtLeast(5));
  w.Stop();
}

TEST(WorkerTest, AWakeDuringARoundRunsAnotherRoundAfterIt) {
  absl::Notification in_round, finish_round;
  std::atomic<int> count{0};
  Worker w(
      "busy",
      [&](const Worker&) {
        if (++count == 1) {
          in_round.Notify();
          finish_round.WaitForNotification();
        }
        return absl::InfiniteDuration();
      },
      kForever);
  w.Start();
  w.Wake();
  in_round.WaitForNotification();
  w.Wake();  // While round 1 is under way.
  finish_round.Notify();
  EXPECT_TRUE(WaitFor([&] { return count.load() >= 2; }));
  w.Stop();
  EXPECT_EQ(count.load(), 2);
}

TEST(WorkerTest, StopEndsASleepingWorkerAtOnce) {
  // Asleep for an hour, between rounds.
  Rounds rounds(kForever);
  Worker between("between", rounds.Round());
  between.Start();
  ASSERT_TRUE(rounds.AtLeast(1));
  const absl::Time start = absl::Now();
  between.Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_TRUE(between.stopping());
  EXPECT_EQ(rounds.count(), 1);

  // Asleep for an hour before its first round, which never runs.
  Rounds never(absl::ZeroDuration());
  Worker before("before", never.Round(), kForever);
  before.Start();
  const absl::Time start2 = absl::Now();
  before.Stop();
  EXPECT_LT(absl::Now() - start2, absl::Seconds(10));
  EXPECT_EQ(never.count(), 0);
}

TEST(WorkerTest, ALongRoundSeesStoppingAndEndsEarly) {
  absl::Notification in_round;
  std::atomic<bool> saw_stopping{false};
  std::atomic<int> count{0};
  Worker w(
      "long",
      [&](const Worker& self) {
        ++count;
        EXPECT_FALSE(self.stopping());
        in_round.Notify();
        // A round that would never end on its own.
        while (!self.stopping()) std::this_thread::yield();
        saw_stopping = true;
        return absl::ZeroDuration();
      },
      absl::ZeroDuration());
  EXPECT_EQ(w.name(), "long");
  w.Start();
  in_round.WaitForNotification();
  w.Stop();  // Returns only once the round saw the stop and ended.
  EXPECT_TRUE(saw_stopping.load());
  // No round after a stop, though the last one asked for none to wait.
  EXPECT_EQ(count.load(), 1);
}

TEST(WorkerTest, StopIsIdempotentAndAStoppedWorkerDoesNotStartAgain) {
  Rounds rounds(absl::InfiniteDuration());
  Worker w("once", rounds.Round(), kForever);
  w.Stop();  // Never started: nothing to wait for.
  w.Stop();
  w.Start();  // After a stop: no thread.
  w.Wake();
  w.Stop();
  EXPECT_EQ(rounds.count(), 0);

  // Destroying a running worker stops it.
  Rounds running(kForever);
  {
    Worker scoped("scoped", running.Round());
    scoped.Start();
    ASSERT_TRUE(running.AtLeast(1));
  }
  EXPECT_EQ(running.count(), 1);
}

TEST(WorkerTest, RequestStopThenJoinIsStop) {
  absl::Notification in_round, finish_round;
  std::atomic<bool> ended{false};
  Worker w(
      "split",
      [&](const Worker&) {
        in_round.Notify();
        finish_round.WaitForNotification();
        ended = true;
        return absl::ZeroDuration();
      },
      absl::ZeroDuration());
  w.Start();
  in_round.WaitForNotification();
  w.RequestStop();  // Does not wait for the round.
  EXPECT_TRUE(w.stopping());
  EXPECT_FALSE(ended.load());
  finish_round.Notify();
  w.Join();
  EXPECT_TRUE(ended.load());
}

TEST(WorkerTest, EveryCallerOfStopWaitsForTheRoundUnderWay) {
  // Every caller of Stop waits for the round under way, not only the first.
  absl::Notification in_round, finish_round;
  std::atomic<bool> ended{false};
  Worker w(
      "shared",
      [&](const Worker&) {
        in_round.Notify();
        finish_round.WaitForNotification();  // Ignores stopping().
        ended = true;
        return absl::InfiniteDuration();
      },
      absl::ZeroDuration());
  w.Start();
  in_round.WaitForNotification();
  std::atomic<int> returned{0};
  std::atomic<int> returned_early{0};
  auto stop = [&] {
    w.Stop();
    if (!ended.load()) ++returned_early;
    ++returned;
  };
  std::thread a(stop);
  std::thread b(stop);
  // Neither may return while the round runs; give a wrong one the chance.
  WaitFor([&] { return returned.load() > 0; }, absl::Seconds(1));
  finish_round.Notify();
  a.join();
  b.join();
  EXPECT_EQ(returned.load(), 2);
  EXPECT_EQ(returned_early.load(), 0);
}

}  // namespace
}  // namespace comity
