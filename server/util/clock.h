// Time as a dependency: production code reads a Clock, tests inject a
// FakeClock and move it by hand.
//
//   FakeClock clock(absl::FromUnixSeconds(1700000000));
//   clock.Advance(absl::Hours(25));       // Both readings move.
//   clock.Set(clock.Now() - absl::Hours(2));  // The wall clock is stepped back.
//
// Two readings: Now(), the wall clock, for what is dated and signed; and
// Monotonic(), for intervals and retry times, which a wall clock stepped
// back or forward (by an operator, NTP, a wrong time zone) must neither
// stretch nor shorten.
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
  // Time since an arbitrary origin on a clock that is never stepped and
  // moves at the rate of real time. Readings of one clock compare and
  // subtract; they mean nothing as dates, nor across processes.
  virtual absl::Duration Monotonic() const = 0;
};

// The real clocks: the wall clock and CLOCK_MONOTONIC
// (std::chrono::steady_clock). Thread-safe.
class SystemClock final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
  absl::Duration Monotonic() const override;
  // A process-wide instance; never destroyed.
  static SystemClock* Get();
};

// A clock that only moves when told. Advance moves both readings; Set
// steps the wall clock only, as an operator setting the time would.
// Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start) : now_(start) {}
  absl::Time Now() const override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  absl::Duration Monotonic() const override {
    absl::MutexLock lock(&mu_);
    return monotonic_;
  }
  // `d` must not be negative: time does not run backwards (Set steps).
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
    monotonic_ += d;
  }
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
