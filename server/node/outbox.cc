#include "server/node/outbox.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/audit/receipt.h"
#include "server/core/deadlines.h"
#include "server/core/envelope.h"
#include "server/core/peer_limits.h"
#include "server/crypto/sha256.h"
#include "server/node/assessment_log.h"
#include "server/node/case_records.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"
#include "server/util/time_proto.h"

namespace comity {
namespace {

constexpr int kBatch = 64;
// Requests due at once go in at most this many calls (each up to
// delivery.batch_size): more calls would each cost the receiver a signed
// head and both sides a call, for no gain in parallelism on a few cores.
constexpr size_t kSpreadOver = 2;
// The most requests a round takes from the store at once.
constexpr size_t kMaxDue = 1024;

// Tells the requests of a round apart without parsing them: a due request
// is signed, and its signature is one per payload (Ed25519 is
// deterministic); the payload itself if it is not.
const std::string& RoundKey(const v1::RequestRecord& r) {
  return r.request().signature().empty() ? r.request().payload() : r.request().signature();
}

// The stored state of what a waiter queued.
absl::StatusOr<v1::RequestRecord> Stored(const NodeContext& ctx, const std::string& key) {
  return LoadRecord(ctx.store(), key.substr(2), v1::OUTGOING);
}

}  // namespace

// --- One lane. ---

bool DeliveryLane::reachable() const {
  absl::MutexLock lock(&mu_);
  return ctx_->MonotonicNow() >= retry_at_;
}

uint32_t DeliveryLane::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

absl::Time DeliveryLane::retry_at() const {
  absl::MutexLock lock(&mu_);
  if (retry_at_ == -absl::InfiniteDuration()) return absl::InfinitePast();
  return ctx_->Now() + (retry_at_ - ctx_->MonotonicNow());
}

absl::Duration DeliveryLane::MaxBackoff() const {
  return absl::Milliseconds(ctx_->config().delivery().retry_max_ms());
}

absl::Duration DeliveryLane::RunRound(const std::function<bool()>& stopping) {
  const absl::Duration poll = absl::Milliseconds(
      std::clamp<uint32_t>(ctx_->config().delivery().retry_initial_ms(), 10, 1000));
  absl::Duration retry_at;
  {
    absl::MutexLock lock(&mu_);
    retry_at = retry_at_;
  }
  const absl::Duration now = ctx_->MonotonicNow();
  if (now < retry_at) {
    // Callers waiting for an attempt get the stored state now.
    ResolveStale(false);
    return std::min(poll, retry_at - now);
  }
  bool more = false;
  const bool unreachable = DeliverDue(stopping, &more);
  absl::Duration wait = more ? absl::ZeroDuration() : poll;
  {
    absl::MutexLock lock(&mu_);
    if (unreachable) {
      ++failures_;
      const absl::Duration backoff = ctx_->Backoff(failures_);
      retry_at_ = ctx_->MonotonicNow() + backoff;
      wait = std::min(poll, backoff);
    } else {
      failures_ = 0;
      retry_at_ = -absl::InfiniteDuration();
    }
  }
  ResolveStale(false);
  return wait;
}

void DeliveryLane::BatchRequests(std::vector<v1::RequestRecord> requests, size_t workers,
                                 bool probe, std::deque<Task>* tasks) {
  // Batches (DeliverRequests) of up to delivery.batch_size and within the
  // message limit, spread over the workers free to carry them; a probe is
  // a batch of one.
  const size_t most = std::max<uint32_t>(1, ctx_->config().delivery().batch_size());
  const size_t calls = std::clamp<size_t>(workers, 1, kSpreadOver);
  const size_t even = (requests.size() + calls - 1) / calls;
  const size_t per = std::clamp<size_t>(even, 1, most);
  const size_t bytes = ctx_->config().limits().max_message_bytes() / 4 * 3;
  std::vector<v1::RequestRecord> batch;
  size_t batch_bytes = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    tasks->push_back([this, b = std::move(batch)]() -> absl::StatusOr<bool> {
      // A peer that answers, even with a refusal for now (a request dated
      // ahead of its clock, a key it has not learned), was reached: that
      // request waits for its own retry, the others go on.
      bool reached = true;
      DeliverBatch(b, &reached);
      return reached;
    });
    batch.clear();
    batch_bytes = 0;
  };
  for (v1::RequestRecord& r : requests) {
    const size_t size = r.request().ByteSizeLong() + 16;
    if (!batch.empty() && (batch.size() >= per || batch_bytes + size > bytes)) flush();
    batch_bytes += size;
    batch.push_back(std::move(r));
    if (probe && tasks->empty()) flush();
  }
  flush();
}

bool DeliveryLane::DeliverDue(const std::function<bool()>& stopping, bool* more) {
  OutboxStore& outbox = ctx_->store().outbox();
  const absl::Time now = ctx_->Now();
  const size_t width = std::max<uint32_t>(1, ctx_->config().delivery().max_in_flight());
  const int request_limit = static_cast<int>(std::min<size_t>(
      kMaxDue, width * std::max<uint32_t>(1, ctx_->config().delivery().batch_size())));
  // Attempts scheduled further off than the longest backoff were scheduled
  // before the clock was stepped back: due now.
  const absl::Time latest = now + MaxBackoff();
  // Anything submitted from here on may join this round (below).
  nudged_.store(false);
  // Steps and proposals first (they move open cases), then requests.
  std::deque<Task> tasks;
  auto transitions = outbox.DueTransitions(peer_, now, kBatch, latest);
  auto proposals = outbox.DueProposals(peer_, now, kBatch, latest);
  auto requests = outbox.DueRequests(peer_, now, request_limit, latest);
  for (const absl::Status* failed :
       {&transitions.status(), &proposals.status(), &requests.status()}) {
    if (!failed->ok())
      LogEvent(LogLevel::kError, "store_error", {{"error", failed->ToString()}});
  }
  if (transitions.ok()) {
    for (PendingTransition& t : *transitions) {
      tasks.push_back([this, t = std::move(t)]() -> absl::StatusOr<bool> {
        return DeliverTransition(t);
      });
    }
  }
  if (proposals.ok()) {
    for (PendingProposal& p : *proposals) {
      tasks.push_back([this, p = std::move(p)]() { return DeliverProposal(p); });
    }
  }
  // A peer not known to answer (the last attempt failed, or none was made
  // yet) gets one probe first; only if it answers does the rest go out.
  // A peer that is down therefore costs one attempt per backoff interval.
  bool probe;
  {
    absl::MutexLock lock(&mu_);
    probe = failures_ > 0;
  }
  if (!probe) probe = !ctx_->contacts().Get(peer_).reachable;
  std::set<std::string> taken;  // Requests attempted in this round (RoundKey).
  if (requests.ok()) {
    for (const v1::RequestRecord& r : *requests) taken.insert(RoundKey(r));
    BatchRequests(*std::move(requests), width, probe && tasks.empty(), &tasks);
  }
  if (tasks.empty()) return false;
  *more = (transitions.ok() && transitions->size() == kBatch) ||
          (proposals.ok() && proposals->size() == kBatch) ||
          taken.size() == static_cast<size_t>(request_limit);

  if (probe) {
    if (stopping()) return false;
    absl::StatusOr<bool> reached = tasks.front()();
    tasks.pop_front();
    if (reached.ok() && !*reached) {
      *more = false;
      return true;
    }
  }

  // Up to max_in_flight attempts at once, on the lane's threads and this
  // one. A worker that finds nothing left to do takes the requests that
  // came due since (submitted while the others were in flight), so the
  // lane keeps its calls busy rather than waiting for the slowest of a
  // round. The first attempt that cannot reach the peer stops the round:
  // the rest wait for the lane's next try.
  absl::Mutex round_mu;
  bool unreachable = false;  // Guarded by round_mu.
  size_t live = 1;           // Workers running, this thread included.
  std::function<void()> work;
  // The next task, taking what came due if nothing is left; nullopt: the
  // worker is done.
  auto next = [&]() -> std::optional<Task> {
    absl::MutexLock lock(&round_mu);
    if (unreachable || stopping()) return std::nullopt;
    if (tasks.empty() && nudged_.exchange(false)) {
      auto due = outbox.DueRequests(peer_, ctx_->Now(),
                                    request_limit + static_cast<int>(taken.size()), latest);
      if (due.ok()) {
        std::vector<v1::RequestRecord> fresh;
        for (v1::RequestRecord& r : *due) {
          if (taken.insert(RoundKey(r)).second) fresh.push_back(std::move(r));
        }
        if (fresh.size() == static_cast<size_t>(request_limit)) *more = true;
        BatchRequests(std::move(fresh), width - live + 1, false, &tasks);
      }
    }
    if (tasks.empty()) return std::nullopt;
    Task t = std::move(tasks.front());
    tasks.pop_front();
    // More waiting than workers: another one joins.
    while (!tasks.empty() && live < width && live <= tasks.size()) {
      ++live;
      Pool()->Schedule(work);
    }
    return t;
  };
  work = [&] {
    while (std::optional<Task> t = next()) {
      absl::StatusOr<bool> reached = (*t)();
      if (reached.ok() && !*reached) {
        absl::MutexLock lock(&round_mu);
        unreachable = true;
      }
    }
    absl::MutexLock lock(&round_mu);
    --live;
  };
  {
    absl::MutexLock lock(&round_mu);
    while (!tasks.empty() && live < width && live < tasks.size()) {
      ++live;
      Pool()->Schedule(work);
    }
  }
  work();
  absl::MutexLock lock(&round_mu);
  round_mu.Await(absl::Condition(+[](size_t* n) { return *n == 0; }, &live));
  if (unreachable) *more = false;
  return unreachable;
}

Executor* DeliveryLane::Pool() {
  absl::MutexLock lock(&mu_);
  if (pool_ == nullptr) {
    pool_ = std::make_unique<Executor>(
        absl::StrCat("lane ", peer_),
        static_cast<int>(std::max<uint32_t>(1, ctx_->config().delivery().max_in_flight())));
  }
  return pool_.get();
}

void DeliveryLane::Nudge() { nudged_.store(true); }

void DeliveryLane::AddWaiter(const std::string& key, AttemptDone done,
                             absl::Duration give_up_at) {
  absl::MutexLock lock(&mu_);
  waiters_.emplace(key, Waiter{std::move(done), give_up_at});
}

void DeliveryLane::Resolve(const std::string& key,
                           const absl::StatusOr<v1::RequestRecord>& result) {
  std::vector<AttemptDone> ready;
  {
    absl::MutexLock lock(&mu_);
    auto range = waiters_.equal_range(key);
    for (auto it = range.first; it != range.second; ++it)
      ready.push_back(std::move(it->second.done));
    waiters_.erase(range.first, range.second);
  }
  for (AttemptDone& done : ready) done(result);
}

void DeliveryLane::ResolveStale(bool all) {
  std::vector<std::pair<std::string, AttemptDone>> ready;
  {
    absl::MutexLock lock(&mu_);
    const absl::Duration now = ctx_->MonotonicNow();
    const bool backing_off = now < retry_at_;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (all || backing_off || it->second.give_up_at <= now) {
        ready.emplace_back(it->first, std::move(it->second.done));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [key, done] : ready) {
    absl::StatusOr<v1::RequestRecord> stored = Stored(*ctx_, key);
    if (all && stored.ok() && key[0] == 'r' && stored->state() == v1::PENDING_DELIVERY) {
      done(
          absl::UnavailableError("node is shutting down; the request is stored and will "
                                 "be delivered after restart"));
    } else {
      done(std::move(stored));
    }
  }
}

// --- The lanes. ---

Outbox::Outbox(const NodeContext* ctx, CaseBook* cases, LogWitness* witness) : ctx_(ctx) {
  for (const auto& [peer, unused] : ctx->setup().peers) {
    lanes_.emplace(peer, std::make_unique<DeliveryLane>(ctx, peer, cases, witness));
  }
}

DeliveryLane* Outbox::lane(const std::string& peer) const {
  auto it = lanes_.find(peer);
  return it == lanes_.end() ? nullptr : it->second.get();
}

void Outbox::SetWaker(const std::string& peer, std::function<void()> wake) {
  wakers_[peer] = std::move(wake);
}

void Outbox::Start() {
  absl::MutexLock lock(&mu_);
  accepting_ = true;
}

void Outbox::Kick(const std::string& peer) const {
  if (DeliveryLane* l = lane(peer); l != nullptr) l->Nudge();
  auto it = wakers_.find(peer);
  if (it != wakers_.end() && it->second) it->second();
}

void Outbox::AwaitAttempt(const std::string& peer, const std::string& key,
                          AttemptDone done) {
  DeliveryLane* l = lane(peer);
  {
    absl::MutexLock lock(&mu_);
    if (l != nullptr && accepting_) {
      // Long enough for a round already under way and then this attempt.
      l->AddWaiter(key, std::move(done),
                   ctx_->MonotonicNow() + 2 * ctx_->attempt_timeout() + absl::Seconds(1));
      Kick(peer);
      return;
    }
  }
  // Not delivering now (stopped, or not started yet): the stored state.
  done(Stored(*ctx_, key));
}

void Outbox::Stop() {
  {
    absl::MutexLock lock(&mu_);
    accepting_ = false;
  }
  for (auto& [peer, l] : lanes_) l->ResolveStale(/*all=*/true);
}

}  // namespace comity
