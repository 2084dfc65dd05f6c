// A fixed pool of threads that runs closures in the order they were
// scheduled: the node's own threads for the work of a call (commits,
// signatures), so that gRPC's few callback threads only ever hand work
// over and never wait on a disk or a lock.
//
//   Executor pool("peer", 8);
//   pool.Schedule([reactor] { reactor->Finish(DoTheWork()); });
//   pool.Stop();  // Runs what is queued, then joins (also in the destructor).
#ifndef COMITY_SERVER_UTIL_EXECUTOR_H_
#define COMITY_SERVER_UTIL_EXECUTOR_H_

#include <pthread.h>

#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace comity {

// Thread-safe.
class Executor {
 public:
  // `threads` at least 1.
  Executor(std::string name, int threads);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Runs `fn` on one of the pool's threads; after Stop, on the caller's.
  void Schedule(std::function<void()> fn);
  // Closures scheduled and not started yet.
  size_t queued() const;
  // Runs everything queued, then joins the threads. Idempotent.
  void Stop();

  // The loop of a pool thread (internal).
  void RunForThread();

 private:
  void Run();
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string name_;
  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<pthread_t> threads_;
};

}  // namespace comity

#endif  // COMITY_SERVER_UTIL_EXECUTOR_H_
