// A wall clock set off by an offset the test changes: a node whose clock is
// wrong (and later corrected), or nodes that all live days ahead of the real
// clock (a long outage without waiting for it). Time still moves. Set is a
// step of the wall clock only: the monotonic clock is the real one.
//
//   OffsetClock clock;
//   clock.Set(absl::Minutes(-10));   // Ten minutes behind.
//   ASSERT_THAT(net.Start("JP", &clock), IsOk());
#ifndef COMITY_TESTS_TESTING_OFFSET_CLOCK_H_
#define COMITY_TESTS_TESTING_OFFSET_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "server/util/clock.h"

namespace comity::testing {

// Thread-safe.
class OffsetClock final : public Clock {
 public:
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return absl::Now() + offset_;
  }
  absl::Duration MonotonicNow() const override {
    return SystemClock::Get()->MonotonicNow();
  }
  void Set(absl::Duration offset) {
    absl::MutexLock lock(&mu_);
    offset_ = offset;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Duration offset_ ABSL_GUARDED_BY(mu_);
};

}  // namespace comity::testing

#endif  // COMITY_TESTS_TESTING_OFFSET_CLOCK_H_
