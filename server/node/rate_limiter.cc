#include "server/node/rate_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace comity {

absl::Status RateLimiter::Admit(const std::string& key, uint32_t cost) {
  const double need = std::clamp<double>(cost, 1, std::max<uint32_t>(1, burst_));
  absl::MutexLock lock(&mu_);
  Bucket& b = buckets_[key];
  const absl::Duration now = clock_->MonotonicNow();
  if (b.refilled == -absl::InfiniteDuration()) {
    b.tokens = burst_;
  } else if (now > b.refilled) {
    b.tokens = std::min<double>(
        burst_, b.tokens + rate_ * absl::ToDoubleSeconds(now - b.refilled));
  }
  b.refilled = now;
  if (b.tokens < need) {
    ++b.refused;
    const double wait_s = (need - b.tokens) / rate_;
    return absl::UnavailableError(absl::StrCat(
        "party ", key, " is over its rate limit on this node (", rate_,
        " calls per second, burst ", burst_, "; limits.peer_rate_per_second); retry in ",
        absl::FormatDuration(absl::Milliseconds(std::max(1.0, wait_s * 1000)))));
  }
  b.tokens -= need;
  return absl::OkStatus();
}

std::map<std::string, uint64_t> RateLimiter::TakeRefusals() {
  absl::MutexLock lock(&mu_);
  std::map<std::string, uint64_t> out;
  for (auto& [key, b] : buckets_) {
    if (b.refused != 0) out[key] = b.refused;
    b.refused = 0;
  }
  return out;
}

}  // namespace comity
