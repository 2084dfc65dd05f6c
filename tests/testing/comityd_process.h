// A real comityd as a child process, for tests of what only the binary
// shows: exit codes, signals, its own sockets and its memory.
//
//   COMITY_ASSERT_OK_AND_ASSIGN(auto node,
//       ComitydProcess::Spawn(COMITYD_PATH, dir + "/node.conf", dir + "/comityd.log"));
//   ASSERT_TRUE(node->WaitServing(client_conf, absl::Seconds(10))) << node->Log();
//   EXPECT_LT(*node->StatusKb("VmHWM"), bound_kb);
#ifndef COMITY_TESTS_TESTING_COMITYD_PROCESS_H_
#define COMITY_TESTS_TESTING_COMITYD_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace comity::testing {

// Thread-compatible. The child does not outlive this object: the destructor
// kills it (SIGKILL) and reaps it unless it was reaped already.
class ComitydProcess {
 public:
  // Starts `binary --config config_path`, stdout to /dev/null, stderr (the
  // JSON-lines log) to `log_path`, truncated first.
  static absl::StatusOr<std::unique_ptr<ComitydProcess>> Spawn(const std::string& binary,
                                                              const std::string& config_path,
                                                              const std::string& log_path);
  ~ComitydProcess();
  ComitydProcess(const ComitydProcess&) = delete;
  ComitydProcess& operator=(const ComitydProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Everything the child wrote to stderr so far.
  std::string Log() const;

  // Waits up to `timeout` for the child to exit and reaps it. Its exit code
  // (128 + N if killed by signal N), or nullopt if it still runs.
  std::optional<int> WaitExit(absl::Duration timeout);
  // Sends `signal` to the child (while it runs).
  void Signal(int signal);

  // Polls `comity --connect client_config health` until it exits 0 (true)
  // or `timeout` passes or the child exits (false).
  bool WaitServing(const std::string& client_config, absl::Duration timeout);

  // A field of /proc/<pid>/status in kB, e.g. "VmRSS" (resident now) or
  // "VmHWM" (the peak resident size). NotFound once the child is gone.
  absl::StatusOr<int64_t> StatusKb(const std::string& field) const;

 private:
  ComitydProcess(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
  std::optional<int> exit_code_;
};

}  // namespace comity::testing

#endif  // COMITY_TESTS_TESTING_COMITYD_PROCESS_H_
