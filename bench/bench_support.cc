#include "bench/bench_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "comity/v1/operator.grpc.pb.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"

namespace comity::bench {

Flags::Flags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      values_["__positional__"] = a;
      continue;
    }
    a = a.substr(2);
    size_t eq = a.find('=');
    if (eq != std::string::npos) {
      values_[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      values_[a] = argv[++i];
    } else {
      values_[a] = "true";
    }
  }
}

std::string Flags::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

namespace {

[[noreturn]] void FlagError(const std::string& name, const std::string& value,
                            const std::string& why) {
  std::fprintf(stderr, "--%s=%s %s\n", name.c_str(), value.c_str(), why.c_str());
  std::exit(2);
}

template <typename T>
void CheckRange(const std::string& name, const std::string& value, T v, T min, T max) {
  if (v < min || v > max) {
    FlagError(name, value, absl::StrCat("is out of range: give a value from ", min, " to ", max));
  }
}

}  // namespace

int64_t Flags::GetInt(const std::string& name, int64_t fallback, int64_t min,
                      int64_t max) const {
  if (!Has(name)) return fallback;
  const std::string text = Get(name, "");
  int64_t v = 0;
  if (!absl::SimpleAtoi(text, &v)) FlagError(name, text, "is not a whole number");
  CheckRange(name, text, v, min, max);
  return v;
}

double Flags::GetDouble(const std::string& name, double fallback, double min,
                        double max) const {
  if (!Has(name)) return fallback;
  const std::string text = Get(name, "");
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !std::isfinite(v)) FlagError(name, text, "is not a number");
  CheckRange(name, text, v, min, max);
  return v;
}

std::vector<int64_t> Flags::GetInts(const std::string& name,
                                    const std::vector<int64_t>& fallback, int64_t min,
                                    int64_t max) const {
  if (!Has(name)) return fallback;
  const std::string text = Get(name, "");
  std::vector<int64_t> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) {
      FlagError(name, text, absl::StrCat("has '", part, "', which is not a whole number"));
    }
    CheckRange(name, text, v, min, max);
    out.push_back(v);
  }
  return out;
}

std::vector<std::string> Flags::Unknown(const std::vector<std::string>& known) const {
  std::vector<std::string> out;
  for (const auto& [name, value] : values_) {
    if (std::find(known.begin(), known.end(), name) == known.end()) out.push_back(name);
  }
  return out;
}

absl::StatusOr<std::string> MakeTempDir(const std::string& prefix, const std::string& base) {
  const char* env = std::getenv("TMPDIR");
  std::string root = !base.empty() ? base : (env != nullptr ? env : "/tmp");
  std::string templ = absl::StrCat(root, "/", prefix, "-XXXXXX");
  if (::mkdtemp(templ.data()) == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create a directory under ", root, "; set TMPDIR or --dir"));
  }
  return templ;
}

int RunShell(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int PickUnusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string BinDir() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

std::string SourceDir() { return COMITY_SOURCE_DIR; }

absl::StatusOr<BenchNetwork> MakeNetwork(const std::string& dir,
                                         const std::vector<std::string>& parties) {
  BenchNetwork net;
  net.dir = dir;
  net.parties = parties;
  std::string cmd = absl::StrCat(SourceDir(), "/certs/make-network.sh '", dir, "'");
  for (const auto& p : parties) absl::StrAppend(&cmd, " ", p);
  absl::StrAppend(&cmd, " --operators alice:submitter+reviewer,carol:auditor >/dev/null");
  if (RunShell(cmd) != 0) {
    return absl::InternalError(absl::StrCat("certs/make-network.sh failed: ", cmd));
  }
  for (const auto& p : parties) {
    net.peer_port[p] = PickUnusedPort();
    net.operator_port[p] = PickUnusedPort();
  }
  for (const auto& p : parties) {
    // As deploy/local-network.sh writes it: the defaults for delivery,
    // audit and limits.
    std::string c = absl::StrCat(
        "party: \"", p, "\"\n", "peer_listen_address: \"127.0.0.1:", net.peer_port[p], "\"\n",
        "operator_listen_address: \"127.0.0.1:", net.operator_port[p], "\"\n",
        "data_dir: \"data\"\n", "treaties_dir: \"", SourceDir(), "/deploy/treaties\"\n",
        "approval { assistance_types: [EXTRADITION, INTERCEPTION] }\n",
        "tls { cert_file: \"node.pem\" key_file: \"node.key\" operator_ca_file: \"ca.pem\" }\n",
        "signing_key { key_id: \"", p, "-1\" private_key_file: \"signing.key\" }\n");
    for (const auto& q : parties) {
      if (q == p) continue;
      COMITY_ASSIGN_OR_RETURN(std::string key, ReadFile(net.PartyDir(q) + "/signing.pub"));
      while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
      absl::StrAppend(&c, "peers {\n  party: \"", q, "\"\n  address: \"127.0.0.1:",
                      net.peer_port[q], "\"\n  ca_file: \"../", q, "/ca.pem\"\n",
                      "  signing_keys { key_id: \"", q, "-1\" ed25519_public_key: \"", key,
                      "\" }\n}\n");
    }
    std::ofstream out(net.ConfigPath(p));
    out << c;
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", net.ConfigPath(p)));
  }
  return net;
}

absl::StatusOr<pid_t> SpawnNode(const BenchNetwork& net, const std::string& party,
                                const std::string& comityd,
                                const std::vector<std::string>& env) {
  const std::string bin = comityd.empty() ? BinDir() + "/comityd" : comityd;
  if (::access(bin.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat(bin, " not found; build it first (cmake --build "
                                            "BUILD --target comityd) or pass --comityd"));
  }
  const std::string conf = net.ConfigPath(party);
  const std::string log = net.PartyDir(party) + "/comityd.log";
  pid_t pid = ::fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    for (const std::string& e : env) ::putenv(const_cast<char*>(e.c_str()));
    ::execl(bin.c_str(), bin.c_str(), "--config", conf.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  return pid;
}

void StopChild(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 1000; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

bool ChildAlive(pid_t pid) {
  int status = 0;
  return ::waitpid(pid, &status, WNOHANG) == 0;
}

int64_t ProcStatusKb(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream fields(line.substr(field.size() + 1));
    int64_t kb = -1;
    fields >> kb;
    return kb;
  }
  return -1;
}

double ProcCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces) in parentheses.
  size_t close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(all.substr(close + 2));
  std::string f;
  double utime = 0, stime = 0;
  // State is field 3; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && (rest >> f); ++i) {
    if (i == 14) utime = std::atof(f.c_str());
    if (i == 15) stime = std::atof(f.c_str());
  }
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

ProcIo ReadProcIo(pid_t pid) {
  ProcIo io;
  std::ifstream in(absl::StrCat("/proc/", pid, "/io"));
  std::string name;
  int64_t value = 0;
  while (in >> name >> value) {
    if (name == "wchar:") io.wchar = value;
    if (name == "write_bytes:") io.write_bytes = value;
    if (name == "syscw:") io.syscw = value;
  }
  return io;
}

std::shared_ptr<grpc::ChannelCredentials> OperatorCredentials(const BenchNetwork& net,
                                                              const std::string& party,
                                                              const std::string& name) {
  const std::string d = net.PartyDir(party);
  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = ReadFile(d + "/ca.pem").value_or("");
  opts.pem_cert_chain = ReadFile(d + "/operators/" + name + ".pem").value_or("");
  opts.pem_private_key = ReadFile(d + "/operators/" + name + ".key").value_or("");
  return grpc::SslCredentials(opts);
}

grpc::ChannelArguments OwnConnectionArgs(int index) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Without a local pool, channels with equal arguments share one
  // connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("comity.bench.channel", index);
  return args;
}

std::shared_ptr<grpc::Channel> OperatorChannel(const BenchNetwork& net, const std::string& party,
                                               const std::string& name, int index) {
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", net.operator_port.at(party)),
                                   OperatorCredentials(net, party, name),
                                   OwnConnectionArgs(index));
}

absl::Status WaitForStarted(const BenchNetwork& net, const std::string& party, pid_t pid,
                            absl::Duration timeout) {
  const std::string log = net.PartyDir(party) + "/comityd.log";
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    auto text = ReadFile(log);
    if (text.ok() && text->find("\"node_started\"") != std::string::npos) {
      return absl::OkStatus();
    }
    if (!ChildAlive(pid)) {
      return absl::FailedPreconditionError(
          absl::StrCat("comityd ", party, " exited; see ", log));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("comityd ", party, " did not log node_started; see ", log));
}

absl::Status WaitForNode(const std::shared_ptr<grpc::Channel>& channel, absl::Duration timeout) {
  auto stub = v1::OperatorService::NewStub(channel);
  const absl::Time until = absl::Now() + timeout;
  grpc::Status last;
  while (absl::Now() < until) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    v1::ListRequestsRequest req;
    req.set_limit(1);
    v1::ListRequestsResponse resp;
    last = stub->ListRequests(&ctx, req, &resp);
    if (last.ok()) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::UnavailableError(absl::StrCat("node does not answer: ", last.error_message()));
}

v1::RequestBody PreservationDraft(const std::string& to, int64_t i) {
  v1::RequestBody d;
  d.set_requested_party(to);
  d.set_assistance_type(v1::PRESERVATION);
  d.mutable_offence()->set_category(v1::DATA_INTERFERENCE);
  d.mutable_offence()->set_max_penalty_months(60);
  d.set_urgency(v1::URGENT);
  v1::Particulars* p = d.mutable_particulars();
  p->set_requesting_authority("Parquet de Paris, section J3 (cybercriminalite)");
  p->set_facts_summary(absl::StrCat(
      "Ransomware deployed on a hospital network on 2024-05-02; the operators used a "
      "command-and-control server hosted in the requested state (case ", i, ")."));
  p->set_data_sought("Connection logs and subscriber information of 203.0.113.7, "
                     "2024-04-25 to 2024-05-03");
  p->set_relation_to_offence("The address served as the C2 server of the attack");
  p->set_custodian_or_location("Example Hosting KK, Tokyo");
  p->set_necessity("The provider rotates connection logs after 14 days");
  p->set_intends_mutual_assistance_request(true);
  d.mutable_handling()->set_tlp(v1::TLP_AMBER);
  return d;
}

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t idx = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  if (idx > 0) --idx;
  return sorted[std::min(idx, sorted.size() - 1)];
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

}  // namespace comity::bench
