#include "server/node/worker.h"

#include <chrono>

namespace comity {

Worker::Worker(std::string name, Round round, absl::Duration first_wait)
    : name_(std::move(name)), round_(std::move(round)), first_wait_(first_wait) {}

Worker::~Worker() { Stop(); }

void Worker::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void Worker::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void Worker::RequestStop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
}

void Worker::Join() {
  std::unique_lock<std::mutex> lock(mu_);
  if (joining_) {  // Another caller joins: wait until it is done.
    joined_cv_.wait(lock, [this] { return joined_; });
    return;
  }
  if (!thread_.joinable()) return;
  joining_ = true;
  std::thread t = std::move(thread_);
  lock.unlock();
  t.join();
  lock.lock();
  joined_ = true;
  joined_cv_.notify_all();
}

void Worker::Stop() {
  RequestStop();
  Join();
}

bool Worker::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

bool Worker::WaitFor(absl::Duration wait) {
  std::unique_lock<std::mutex> lock(mu_);
  auto ready = [this] { return stopping_ || woken_; };
  if (wait == absl::InfiniteDuration()) {
    cv_.wait(lock, ready);
  } else if (wait > absl::ZeroDuration()) {
    // wait_for measures on std::chrono::steady_clock.
    cv_.wait_for(lock, absl::ToChronoMicroseconds(wait), ready);
  }
  return !stopping_;
}

void Worker::Loop() {
  if (!WaitFor(first_wait_)) return;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      woken_ = false;
    }
    if (!WaitFor(round_(*this))) return;
  }
}

}  // namespace comity
