#include "server/util/executor.h"

#include <pthread.h>

#include <algorithm>

namespace comity {

namespace {

// A pool thread's stack: what a call's work needs (protobuf, SQLite,
// OpenSSL, a gRPC client call) with room to spare, rather than the 8 MiB
// default, so that pools stay small in address space (a node run under
// `ulimit -v`, docs/performance.md).
constexpr size_t kStackBytes = 1 << 20;

void* RunThread(void* executor) {
  static_cast<Executor*>(executor)->RunForThread();
  return nullptr;
}

}  // namespace

Executor::Executor(std::string name, int threads) : name_(std::move(name)) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, kStackBytes);
  for (int i = 0; i < std::max(1, threads); ++i) {
    pthread_t t;
    if (pthread_create(&t, &attr, &RunThread, this) != 0) {
      // Out of threads or address space: the pool runs with what it has,
      // and with none, Schedule runs on the caller.
      if (threads_.empty()) {
        absl::MutexLock lock(&mu_);
        stopping_ = true;
      }
      break;
    }
    // Named for `top -H` and perf (at most 15 characters).
    pthread_setname_np(t, name_.substr(0, 15).c_str());
    threads_.push_back(t);
  }
  pthread_attr_destroy(&attr);
}

Executor::~Executor() { Stop(); }

void Executor::Schedule(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(std::move(fn));
      return;
    }
  }
  fn();
}

size_t Executor::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

void Executor::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  for (pthread_t t : threads_) pthread_join(t, nullptr);
  threads_.clear();
}

bool Executor::Ready() const { return stopping_ || !queue_.empty(); }

void Executor::RunForThread() { Run(); }

void Executor::Run() {
  for (;;) {
    std::function<void()> fn;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Executor::Ready));
      if (queue_.empty()) return;  // Stopping, and nothing left.
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    fn();
  }
}

}  // namespace comity
