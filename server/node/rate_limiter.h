// Per-caller admission control for the peer listener: a token bucket per
// peer party (calls per second with a burst), so that a flood from one peer
// is refused early and cheaply, before any signature is checked, and never
// starves the others (docs/delivery.md, "Limits").
#ifndef COMITY_SERVER_NODE_RATE_LIMITER_H_
#define COMITY_SERVER_NODE_RATE_LIMITER_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/util/clock.h"

namespace comity {

// Thread-safe.
class RateLimiter {
 public:
  // `rate` calls per second refill a bucket of `burst` calls. `clock` must
  // outlive the limiter.
  RateLimiter(double rate, uint32_t burst, const Clock* clock)
      : rate_(rate), burst_(burst), clock_(clock) {}

  // Admits one call of `key` worth `cost` calls (a batch of requests:
  // their number, at most the burst), or Unavailable saying the limit and
  // when to retry (the caller's outbox retries with backoff). Refusals are
  // counted.
  absl::Status Admit(const std::string& key, uint32_t cost = 1);

  // Refusals per key since the last call, then reset: for one audit entry
  // per key and interval rather than one per refused call.
  std::map<std::string, uint64_t> TakeRefusals();

 private:
  struct Bucket {
    double tokens = 0;
    // When last refilled, on the monotonic clock: a step of the wall clock
    // neither grants a burst nor stops the refill.
    absl::Duration refilled = -absl::InfiniteDuration();
    uint64_t refused = 0;
  };
  const double rate_;
  const uint32_t burst_;
  const Clock* const clock_;
  absl::Mutex mu_;
  std::map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_RATE_LIMITER_H_
