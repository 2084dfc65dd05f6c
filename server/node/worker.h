// A thread of the node: runs one duty's round when woken, or when the time
// the last round asked for has passed, until stopped. Timed waits are on the
// monotonic clock (std::condition_variable), so a wall clock stepped back or
// forward neither stalls nor bunches the rounds.
//
//   Worker gossip("gossip", [&](const Worker&) { witness.GossipWith("JP"); return
//   absl::Seconds(60); }); gossip.Start(); gossip.Wake();   // A round now.
//   gossip.Stop();   // Waits for the round under way to end.
#ifndef COMITY_SERVER_NODE_WORKER_H_
#define COMITY_SERVER_NODE_WORKER_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/time/time.h"

namespace comity {

// Thread-safe.
class Worker {
 public:
  // `round` runs on the worker's thread and returns how long to wait before
  // the next round unless woken (InfiniteDuration: until woken). A long
  // round checks the worker's stopping() to end early.
  using Round = std::function<absl::Duration(const Worker& self)>;
  // The first round runs `first_wait` after Start, or when woken.
  Worker(std::string name, Round round, absl::Duration first_wait = absl::ZeroDuration());
  ~Worker();  // Stops.
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Starts the thread. At most once.
  void Start();
  // Asks for a round as soon as the one under way (if any) ends.
  void Wake();
  // Asks the thread to end after the round under way (RequestStop), then
  // waits for it (Join). Idempotent; every caller returns only once the
  // thread has ended.
  void Stop();
  void RequestStop();
  void Join();
  // True once a stop was requested: rounds that loop check it to end early.
  bool stopping() const;
  const std::string& name() const { return name_; }

 private:
  void Loop();
  // Waits up to `wait` for a wake or a stop; returns false on a stop.
  bool WaitFor(absl::Duration wait);

  const std::string name_;
  const Round round_;
  const absl::Duration first_wait_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  bool stopping_ = false;
  bool joining_ = false;
  bool joined_ = false;
  std::condition_variable joined_cv_;
  std::thread thread_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_WORKER_H_
