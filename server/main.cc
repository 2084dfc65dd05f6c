// comityd: a party's Comity node. Only flag parsing and wiring live here;
// see server/grpc/node_server.h.
#include <malloc.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "server/config/node_config.h"
#include "server/grpc/node_server.h"
#include "server/util/clock.h"
#include "server/util/log.h"
#include "server/util/version.h"

namespace {

constexpr char kUsage[] =
    "usage: comityd --config FILE [--check-config]\n"
    "       comityd --version\n"
    "  --config FILE     node configuration (protobuf text format, comity.v1.NodeConfig)\n"
    "  --check-config    check the configuration and its files, then exit\n"
    "  --version         print the version (project version and git describe) and exit\n"
    "On SIGTERM or SIGINT the node stops accepting calls, lets calls in flight\n"
    "finish for up to 10 s, and exits 0.\n";

// How long calls in flight may run on after SIGTERM/SIGINT. Below
// systemd's TimeoutStopSec and Kubernetes' terminationGracePeriodSeconds
// (deploy/), which must leave room for it.
constexpr absl::Duration kDrainGrace = absl::Seconds(10);

// malloc arenas (M_ARENA_MAX), below.
constexpr int kMallocArenas = 4;

}  // namespace

int main(int argc, char** argv) {
  // glibc's malloc gives threads that contend for it arenas of their own,
  // each reserving 64 MiB of address space, up to 8 per core: with the
  // call and lane pools that is most of a node's address space under a
  // limit (`ulimit -v`, tests/e2e/evidence_memory_test.sh) for nothing.
  // A few arenas keep it bounded (MALLOC_ARENA_MAX, if set, still wins).
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, kMallocArenas);
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(9);
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--version") {
      std::printf("comityd %s\n", comity::VersionString());
      return 0;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else {
      std::fprintf(stderr, "comityd: unknown argument '%s'\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "comityd: --config FILE is required\n%s", kUsage);
    return 2;
  }
  auto setup = comity::LoadNodeConfig(config_path);
  if (!setup.ok()) {
    std::fprintf(stderr, "comityd: configuration error: %s\n",
                 std::string(setup.status().message()).c_str());
    return 1;
  }
  if (check_only) {
    std::printf("%s: configuration OK (party %s, %d peers)\n", config_path.c_str(),
                (*setup)->config.party().c_str(), (*setup)->config.peers_size());
    return 0;
  }

  // Block the stop signals in every thread; one thread waits for them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = comity::NodeServer::Start(setup->get(), comity::SystemClock::Get());
  if (!server.ok()) {
    std::fprintf(stderr, "comityd: cannot start: %s\n",
                 std::string(server.status().message()).c_str());
    return 1;
  }
  std::thread stopper([&signals, s = server->get()] {
    int sig = 0;
    sigwait(&signals, &sig);
    comity::LogEvent(comity::LogLevel::kInfo, "signal_received",
                     {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                      {"grace_ms", absl::StrCat(absl::ToInt64Milliseconds(kDrainGrace))}});
    s->Shutdown(kDrainGrace);
  });
  (*server)->Wait();
  stopper.join();
  return 0;
}
