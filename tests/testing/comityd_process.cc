#include "tests/testing/comityd_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "server/util/files.h"
#include "tests/testing/e2e_helpers.h"

extern char** environ;

namespace comity::testing {

absl::StatusOr<std::unique_ptr<ComitydProcess>> ComitydProcess::Spawn(
    const std::string& binary, const std::string& config_path, const std::string& log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  std::string bin = binary;
  std::string flag = "--config";
  std::string conf = config_path;
  std::vector<char*> argv = {bin.data(), flag.data(), conf.data(), nullptr};
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("posix_spawn ", binary, ": ", std::strerror(rc)));
  }
  return std::unique_ptr<ComitydProcess>(new ComitydProcess(pid, log_path));
}

ComitydProcess::~ComitydProcess() {
  if (exit_code_.has_value()) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

std::string ComitydProcess::Log() const { return ReadFile(log_path_).value_or(""); }

std::optional<int> ComitydProcess::WaitExit(absl::Duration timeout) {
  if (exit_code_.has_value()) return exit_code_;
  const absl::Time until = absl::Now() + timeout;
  for (;;) {
    int wstatus = 0;
    const pid_t done = ::waitpid(pid_, &wstatus, WNOHANG);
    if (done == pid_) {
      exit_code_ = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
      return exit_code_;
    }
    if (done < 0 && errno != EINTR) return std::nullopt;
    if (absl::Now() >= until) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void ComitydProcess::Signal(int signal) {
  if (!exit_code_.has_value()) ::kill(pid_, signal);
}

bool ComitydProcess::WaitServing(const std::string& client_config, absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    if (WaitExit(absl::ZeroDuration()).has_value()) return false;
    if (Cli({"--connect", client_config, "health", "--timeout-ms", "500"}).code == 0) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

absl::StatusOr<int64_t> ComitydProcess::StatusKb(const std::string& field) const {
  const std::string path = absl::StrCat("/proc/", pid_, "/status");
  std::ifstream in(path);
  if (!in || exit_code_.has_value()) return absl::NotFoundError(absl::StrCat("no ", path));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, field) || !absl::ConsumePrefix(&rest, ":")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, " kB");
    int64_t kb = 0;
    if (!absl::SimpleAtoi(rest, &kb)) break;
    return kb;
  }
  return absl::NotFoundError(absl::StrCat("no ", field, " in ", path));
}

}  // namespace comity::testing
