// Time as a dependency: production code reads a Clock, tests inject a
// FakeClock and move it by hand.
//
// A Clock has two readings. Now() is the wall clock: it dates things
// (entries, signatures, receipts) and measures the calendar deadlines of
// cases; it may be stepped, back or forward, at any time (NTP, an operator).
// MonotonicNow() never is: it times what the node waits for (backoffs,
// retries, watchdogs, caches), so that a step of the wall clock neither
// stalls those waits for as long as the step nor ends them all at once.
//
//   FakeClock clock(absl::FromUnixSeconds(1700000000));
//   clock.Advance(absl::Hours(25));   // Time passes: both readings move.
//   clock.Step(-absl::Hours(2));      // The wall clock is set back; timers are not.
//   const absl::Duration retry_at = clock.MonotonicNow() + backoff;
#ifndef COMITY_SERVER_UTIL_CLOCK_H_
#define COMITY_SERVER_UTIL_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace comity {

// Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // The wall clock.
  virtual absl::Time Now() const = 0;
  // The monotonic clock: the time since an arbitrary origin, fixed for the
  // process. Only the difference of two readings means anything; never
  // store one or compare it with a wall time.
  virtual absl::Duration MonotonicNow() const = 0;
};

// The real clocks (CLOCK_REALTIME and CLOCK_MONOTONIC). Thread-safe.
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override;
  absl::Duration MonotonicNow() const override;
  // A process-wide instance; never destroyed.
  static SystemClock* Get();
};

// A clock that only moves when told. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  absl::Duration MonotonicNow() const override {
    absl::MutexLock lock(&mu_);
    return monotonic_;
  }
  // Time passes: both readings move by `d` (at least zero).
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
    monotonic_ += d;
  }
  // The wall clock is stepped by `d` (either way); the monotonic clock
  // does not move.
  void Step(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }
  // The wall clock is set to `t`, as Step; the monotonic clock does not move.
  void Set(absl::Time t) {
    absl::MutexLock lock(&mu_);
    now_ = t;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  absl::Duration monotonic_ ABSL_GUARDED_BY(mu_) = absl::Hours(1);
};

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_CLOCK_H_
