// Shared by the end-to-end benchmarks (e2e_bench, store_rss_bench): a test
// network of real comityd processes on loopback, made like
// deploy/local-network.sh (certs/make-network.sh, one node.conf per party),
// operator channels with the operators' mutual-TLS credentials, and what
// the kernel says about a process (peak RSS, CPU time).
//
//   COMITY_ASSIGN_OR_RETURN(BenchNetwork net, MakeNetwork(dir, {"FR", "JP"}));
//   COMITY_ASSIGN_OR_RETURN(pid_t fr, SpawnNode(net, "FR"));
//   auto channel = OperatorChannel(net, "FR", "alice", 0);
//   COMITY_RETURN_IF_ERROR(WaitForNode(channel, absl::Seconds(20)));
#ifndef COMITY_BENCH_BENCH_SUPPORT_H_
#define COMITY_BENCH_BENCH_SUPPORT_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "comity/v1/request.pb.h"

namespace comity::bench {

using Steady = std::chrono::steady_clock;

inline double SecondsSince(Steady::time_point t) {
  return std::chrono::duration<double>(Steady::now() - t).count();
}

// --name=value or --name value; a bare --name is "true".
class Flags {
 public:
  Flags(int argc, char** argv);
  bool Has(const std::string& name) const { return values_.count(name) != 0; }
  std::string Get(const std::string& name, const std::string& fallback) const;
  // The numeric getters exit with status 2 and a message naming the flag
  // when the value is not a number or lies outside [min, max].
  int64_t GetInt(const std::string& name, int64_t fallback,
                 int64_t min = std::numeric_limits<int64_t>::min(),
                 int64_t max = std::numeric_limits<int64_t>::max()) const;
  double GetDouble(const std::string& name, double fallback,
                   double min = -std::numeric_limits<double>::max(),
                   double max = std::numeric_limits<double>::max()) const;
  // A comma-separated list of integers ("16,64"), each in [min, max].
  std::vector<int64_t> GetInts(const std::string& name, const std::vector<int64_t>& fallback,
                               int64_t min = std::numeric_limits<int64_t>::min(),
                               int64_t max = std::numeric_limits<int64_t>::max()) const;
  // Names given that are not in `known`, for a usage error.
  std::vector<std::string> Unknown(const std::vector<std::string>& known) const;

 private:
  std::map<std::string, std::string> values_;
};

// A fresh directory under $TMPDIR (or `base` if not empty).
absl::StatusOr<std::string> MakeTempDir(const std::string& prefix, const std::string& base = "");
int RunShell(const std::string& command);
// A free TCP port on 127.0.0.1.
int PickUnusedPort();
// The directory of the running binary (build/bin), where comityd is.
std::string BinDir();
// The repository's root (compiled in).
std::string SourceDir();

// Keys, certificates and node configurations of `parties` in `dir`, each
// node listing every other as a peer, on free loopback ports. Operators:
// alice (submitter+reviewer), carol (auditor).
struct BenchNetwork {
  std::string dir;
  std::vector<std::string> parties;
  std::map<std::string, int> peer_port;
  std::map<std::string, int> operator_port;

  std::string PartyDir(const std::string& party) const { return dir + "/" + party; }
  std::string ConfigPath(const std::string& party) const {
    return PartyDir(party) + "/node.conf";
  }
};
absl::StatusOr<BenchNetwork> MakeNetwork(const std::string& dir,
                                         const std::vector<std::string>& parties);

// Starts build/bin/comityd (or `comityd`) for `party`, stderr (its JSON
// event lines) to PARTY/comityd.log, with `env` ("NAME=value", e.g.
// LD_PRELOAD) added to its environment.
absl::StatusOr<pid_t> SpawnNode(const BenchNetwork& net, const std::string& party,
                                const std::string& comityd = "",
                                const std::vector<std::string>& env = {});
// SIGTERM, then waits (SIGKILL after 10 s).
void StopChild(pid_t pid);
// True while `pid` (a child) has not exited.
bool ChildAlive(pid_t pid);

// A field of /proc/PID/status in kB (e.g. "VmHWM", "VmRSS"); -1 if absent.
int64_t ProcStatusKb(pid_t pid, const std::string& field);
// User + system CPU seconds of a process (all its threads).
double ProcCpuSeconds(pid_t pid);
// /proc/PID/io: bytes passed to write-like calls (wchar), bytes the process
// caused to be sent to the block layer (write_bytes: page cache pages it
// dirtied, counted when dirtied), write-like calls (syscw). -1 if unreadable.
struct ProcIo {
  int64_t wchar = -1, write_bytes = -1, syscw = -1;
};
ProcIo ReadProcIo(pid_t pid);

// A channel to `party`'s operator listener as operator `name`, with its
// certificate. Channels with different `index` get their own TCP
// connection, as separate operators' CLIs would.
std::shared_ptr<grpc::Channel> OperatorChannel(const BenchNetwork& net, const std::string& party,
                                               const std::string& name, int index);
// The same credentials for any server name (the echo baseline).
std::shared_ptr<grpc::ChannelCredentials> OperatorCredentials(const BenchNetwork& net,
                                                              const std::string& party,
                                                              const std::string& name);
grpc::ChannelArguments OwnConnectionArgs(int index);
// Waits until PARTY/comityd.log has the node's "node_started" line (both
// listeners up), or the child exits. Polling a channel instead would wait
// out gRPC's reconnect backoff and overstate the start time.
absl::Status WaitForStarted(const BenchNetwork& net, const std::string& party, pid_t pid,
                            absl::Duration timeout);
// Waits until the node answers ListRequests; its last error otherwise.
absl::Status WaitForNode(const std::shared_ptr<grpc::Channel>& channel, absl::Duration timeout);

// A preservation request draft as the CLI builds it in deploy/quickstart.sh
// (PRESERVATION needs no two-person approval); `i` varies the facts.
v1::RequestBody PreservationDraft(const std::string& to, int64_t i);

// Percentile (0..100) of sorted values; 0 if empty.
double Percentile(const std::vector<double>& sorted, double p);

// "Intel(R) Xeon(R) ..." from /proc/cpuinfo, and the number of cores.
std::string CpuModel();

}  // namespace comity::bench

#endif  // COMITY_BENCH_BENCH_SUPPORT_H_
