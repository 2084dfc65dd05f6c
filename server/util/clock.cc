#include "server/util/clock.h"

namespace comity {

SystemClock* SystemClock::Get() {
  static SystemClock* const clock = new SystemClock();
  return clock;
}

}  // namespace comity
