#include "server/util/clock.h"

#include <chrono>

#include "absl/time/clock.h"

namespace comity {

absl::Time SystemClock::Now() const { return absl::Now(); }

absl::Duration SystemClock::MonotonicNow() const {
  // steady_clock is CLOCK_MONOTONIC on Linux: never stepped.
  return absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

SystemClock* SystemClock::Get() {
  static SystemClock* const clock = new SystemClock();
  return clock;
}

}  // namespace comity
