// End-to-end load generator: two real comityd processes (FR and JP) on
// loopback with everything on (mutual TLS gRPC, Ed25519 signatures, treaty
// assessment on both sides, audit log, fsync'd SQLite commits), driven over
// FR's operator API: a request counts when SubmitRequest returns it
// DELIVERED with JP's signed receipt.
//
// Phases: closed loop with K concurrent callers (max throughput), open loop
// at fixed offered rates (latency under load), and a plain gRPC echo over
// the same mutual-TLS credentials and concurrency. Before the first phase
// and after each, a short sample of the Ed25519 bound of the same machine
// (the figures use the median: the machine's speed drifts). Per phase and
// node: CPU, fsyncs (bench/fsync_count.cc, preloaded into the nodes) and
// bytes written (/proc/PID/io) per request. Prints markdown tables (and,
// with --summary, "figure<TAB>value" lines for bench/run.sh --compare);
// asserts nothing.
//
//   build/bin/e2e_bench [--duration-s 10] [--concurrency 1,16,64] [--rates 200,500]
//                       [--poisson] [--channels 4] [--echo-duration-s 5] [--keep]
//                       [--comityd PATH] [--preload /usr/lib/x86_64-linux-gnu/libjemalloc.so.2]
//                       [--no-fsync-count] [--crypto-sample-s 0.6] [--summary FILE]
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "bench/bench_support.h"
#include "comity/v1/operator.grpc.pb.h"
#include "server/crypto/ed25519.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"

namespace comity::bench {
namespace {

constexpr char kEchoMethod[] = "/comity.bench.Echo/Echo";

// --- The echo baseline: a generic callback service returning the bytes it
// got, with the node's certificate, requiring an operator certificate. ---

class EchoReactor : public grpc::ServerGenericBidiReactor {
 public:
  EchoReactor() { StartRead(&buf_); }
  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWriteAndFinish(&buf_, grpc::WriteOptions(), grpc::Status::OK);
  }
  void OnDone() override { delete this; }

 private:
  grpc::ByteBuffer buf_;
};

class EchoService : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    return new EchoReactor;
  }
};

// The child process: serves the echo until SIGTERM.
int ServeEcho(const std::string& party_dir, int port) {
  // Blocked before gRPC starts its threads, so that only sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  grpc::SslServerCredentialsOptions opts(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = ReadFile(party_dir + "/ca.pem").value_or("");
  opts.pem_key_cert_pairs.push_back({ReadFile(party_dir + "/node.key").value_or(""),
                                     ReadFile(party_dir + "/node.pem").value_or("")});
  EchoService service;
  grpc::ServerBuilder builder;
  int bound = 0;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::SslServerCredentials(opts),
                           &bound);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound == 0) {
    std::fprintf(stderr, "echo server: cannot listen on port %d\n", port);
    return 1;
  }
  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown(std::chrono::system_clock::now());
  return 0;
}

// --- Callers: start one asynchronous call, report its outcome. ---

using Done = std::function<void(bool ok, const std::string& error)>;
using Caller = std::function<void(int64_t i, Done done)>;

class SubmitCaller {
 public:
  SubmitCaller(const BenchNetwork& net, int channels) {
    for (int c = 0; c < channels; ++c) {
      stubs_.push_back(v1::OperatorService::NewStub(OperatorChannel(net, "FR", "alice", c)));
    }
  }
  void Call(int64_t i, Done done) {
    struct InFlight {
      grpc::ClientContext ctx;
      v1::SubmitRequestRequest req;
      v1::SubmitRequestResponse resp;
    };
    auto* f = new InFlight;
    f->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    *f->req.mutable_draft() = PreservationDraft("JP", i);
    auto* stub = stubs_[static_cast<size_t>(i) % stubs_.size()].get();
    stub->async()->SubmitRequest(
        &f->ctx, &f->req, &f->resp, [f, done = std::move(done)](grpc::Status s) {
          std::string error;
          if (!s.ok()) {
            error = absl::StrCat("rpc ", s.error_code(), ": ", s.error_message());
          } else if (f->resp.record().state() != v1::DELIVERED ||
                     !f->resp.record().has_receipt()) {
            error = absl::StrCat("not delivered: ", v1::RequestState_Name(f->resp.record().state()),
                                 " ", f->resp.record().last_error());
          }
          delete f;
          done(error.empty(), error);
        });
  }

 private:
  std::vector<std::unique_ptr<v1::OperatorService::Stub>> stubs_;
};

class EchoCaller {
 public:
  EchoCaller(const BenchNetwork& net, int port, int channels, size_t payload_bytes)
      : payload_(payload_bytes, 'x') {
    for (int c = 0; c < channels; ++c) {
      auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                               OperatorCredentials(net, "FR", "alice"),
                                               OwnConnectionArgs(c));
      stubs_.push_back(std::make_unique<grpc::GenericStub>(channel));
    }
  }
  void Call(int64_t i, Done done) {
    struct InFlight {
      grpc::ClientContext ctx;
      grpc::ByteBuffer req;
      grpc::ByteBuffer resp;
    };
    auto* f = new InFlight;
    f->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    grpc::Slice slice(payload_);
    f->req = grpc::ByteBuffer(&slice, 1);
    const size_t expected = payload_.size();
    stubs_[static_cast<size_t>(i) % stubs_.size()]->UnaryCall(
        &f->ctx, kEchoMethod, grpc::StubOptions(), &f->req, &f->resp,
        [f, expected, done = std::move(done)](grpc::Status s) {
          std::string error;
          if (!s.ok()) {
            error = absl::StrCat("rpc ", s.error_code(), ": ", s.error_message());
          } else if (f->resp.Length() != expected) {
            error = absl::StrCat("echo returned ", f->resp.Length(), " bytes, not ", expected);
          }
          delete f;
          done(error.empty(), error);
        });
  }

 private:
  std::string payload_;
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs_;
};

// --- Load phases. ---

struct Processes {
  pid_t fr = 0, jp = 0, echo = 0;
  // The nodes' fsync counts (fsync_count.cc); empty if not counted.
  std::string fr_fsyncs, jp_fsyncs;
};

// fsync + fdatasync calls so far in the file fsync_count.cc maps; -1 if
// not counted.
int64_t ReadFsyncs(const std::string& path) {
  if (path.empty()) return -1;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  uint64_t counts[2] = {0, 0};
  const ssize_t n = ::pread(fd, counts, sizeof(counts), 0);
  ::close(fd);
  if (n != static_cast<ssize_t>(sizeof(counts))) return -1;
  return static_cast<int64_t>(counts[0] + counts[1]);
}

// What the kernel (and fsync_count.cc) say about the processes; over a
// phase, the difference of two samples.
struct NodeDisk {
  int64_t fsyncs = -1, write_bytes = -1, wchar = -1;
};
struct CpuSample {
  double fr = 0, jp = 0, self = 0, echo = 0;
  NodeDisk fr_disk, jp_disk;
};

NodeDisk SampleDisk(pid_t pid, const std::string& fsyncs) {
  NodeDisk d;
  if (pid <= 0) return d;
  const ProcIo io = ReadProcIo(pid);
  d.write_bytes = io.write_bytes;
  d.wchar = io.wchar;
  d.fsyncs = ReadFsyncs(fsyncs);
  return d;
}

CpuSample SampleCpu(const Processes& p) {
  CpuSample s;
  if (p.fr > 0) s.fr = ProcCpuSeconds(p.fr);
  if (p.jp > 0) s.jp = ProcCpuSeconds(p.jp);
  if (p.echo > 0) s.echo = ProcCpuSeconds(p.echo);
  s.self = ProcCpuSeconds(::getpid());
  s.fr_disk = SampleDisk(p.fr, p.fr_fsyncs);
  s.jp_disk = SampleDisk(p.jp, p.jp_fsyncs);
  return s;
}

int64_t Delta(int64_t after, int64_t before) {
  return after < 0 || before < 0 ? -1 : after - before;
}
NodeDisk Delta(const NodeDisk& after, const NodeDisk& before) {
  return {Delta(after.fsyncs, before.fsyncs), Delta(after.write_bytes, before.write_bytes),
          Delta(after.wchar, before.wchar)};
}
CpuSample Delta(const CpuSample& after, const CpuSample& before) {
  return {after.fr - before.fr,           after.jp - before.jp,
          after.self - before.self,       after.echo - before.echo,
          Delta(after.fr_disk, before.fr_disk), Delta(after.jp_disk, before.jp_disk)};
}

struct PhaseResult {
  std::string name;
  int concurrency = 0;     // Closed loop.
  double offered = 0;      // Open loop, req/s.
  double window_s = 0;
  double elapsed_s = 0;    // Until the last call finished (open loop).
  int64_t ok = 0;
  int64_t failed = 0;
  double rate = 0;         // ok per second.
  std::vector<double> latency_ms;  // Sorted.
  CpuSample cpu;           // Seconds used during the phase.
  std::string first_error;
};

class Recorder {
 public:
  void Add(bool ok, double ms, const std::string& error) {
    absl::MutexLock lock(&mu_);
    if (ok) {
      ++ok_;
      latency_ms_.push_back(ms);
    } else {
      ++failed_;
      if (first_error_.empty()) first_error_ = error;
    }
  }
  void Fill(PhaseResult* r) {
    absl::MutexLock lock(&mu_);
    r->ok = ok_;
    r->failed = failed_;
    r->latency_ms = latency_ms_;
    std::sort(r->latency_ms.begin(), r->latency_ms.end());
    r->first_error = first_error_;
  }

 private:
  absl::Mutex mu_;
  int64_t ok_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<double> latency_ms_ ABSL_GUARDED_BY(mu_);
  std::string first_error_ ABSL_GUARDED_BY(mu_);
};

// Waits until `outstanding` reaches zero or `timeout` passes.
bool Drain(std::atomic<int64_t>& outstanding, double timeout_s) {
  const auto start = Steady::now();
  while (outstanding.load() > 0) {
    if (SecondsSince(start) > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::atomic<int64_t> g_next_id{0};

// K callers, each starting its next call when the previous one returns,
// for `seconds`. Counts calls that finished inside the window.
PhaseResult RunClosed(const std::string& name, const Caller& call, int k, double seconds,
                      const Processes& procs) {
  PhaseResult r;
  r.name = name;
  r.concurrency = k;
  r.window_s = seconds;
  Recorder rec;
  std::atomic<int64_t> outstanding{0};
  const CpuSample cpu0 = SampleCpu(procs);
  const auto start = Steady::now();
  const auto end = start + std::chrono::duration_cast<Steady::duration>(
                               std::chrono::duration<double>(seconds));
  std::function<void()> launch = [&]() {
    ++outstanding;
    const auto t0 = Steady::now();
    call(g_next_id++, [&, t0](bool ok, const std::string& error) {
      const auto t1 = Steady::now();
      if (t1 <= end) {
        rec.Add(ok, std::chrono::duration<double, std::milli>(t1 - t0).count(), error);
        launch();  // The same caller goes on.
      }
      --outstanding;
    });
  };
  // A relaunch counts itself before its predecessor is uncounted, so
  // `outstanding` reaches zero only once every caller has stopped.
  for (int i = 0; i < k; ++i) launch();
  while (Steady::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!Drain(outstanding, 90)) std::fprintf(stderr, "%s: calls still outstanding\n", name.c_str());
  const CpuSample cpu1 = SampleCpu(procs);
  rec.Fill(&r);
  r.elapsed_s = seconds;
  r.rate = static_cast<double>(r.ok) / seconds;
  r.cpu = Delta(cpu1, cpu0);
  return r;
}

// Calls started on a schedule (evenly spaced, or Poisson) at `rate` for
// `seconds`, whatever the answers; latency from the scheduled start, so a
// backlog counts against it.
PhaseResult RunOpen(const std::string& name, const Caller& call, double rate, double seconds,
                    bool poisson, const Processes& procs) {
  PhaseResult r;
  r.name = name;
  r.offered = rate;
  r.window_s = seconds;
  Recorder rec;
  std::atomic<int64_t> outstanding{0};
  absl::Mutex last_mu;
  Steady::time_point last_done;
  const CpuSample cpu0 = SampleCpu(procs);
  const auto start = Steady::now();
  std::mt19937_64 rng(42);
  std::exponential_distribution<double> gap(rate);
  double at = 0;
  for (int64_t k = 0;; ++k) {
    at = poisson ? at + gap(rng) : static_cast<double>(k) / rate;
    if (at >= seconds) break;
    const auto when = start + std::chrono::duration_cast<Steady::duration>(
                                  std::chrono::duration<double>(at));
    std::this_thread::sleep_until(when);
    ++outstanding;
    call(g_next_id++, [&, when](bool ok, const std::string& error) {
      const auto t1 = Steady::now();
      rec.Add(ok, std::chrono::duration<double, std::milli>(t1 - when).count(), error);
      {
        absl::MutexLock lock(&last_mu);
        last_done = std::max(last_done, t1);
      }
      --outstanding;
    });
  }
  if (!Drain(outstanding, 120)) std::fprintf(stderr, "%s: calls still outstanding\n", name.c_str());
  const CpuSample cpu1 = SampleCpu(procs);
  rec.Fill(&r);
  {
    absl::MutexLock lock(&last_mu);
    r.elapsed_s = std::max(seconds, std::chrono::duration<double>(last_done - start).count());
  }
  r.rate = static_cast<double>(r.ok) / r.elapsed_s;
  r.cpu = Delta(cpu1, cpu0);
  return r;
}

// --- Ed25519 on this machine, sampled between the load phases. ---

// The operations a delivered request costs in Ed25519, in this order:
// sign + verify the request, sign + verify the receipt (4), then sign +
// verify the receipt's tree head (6).
constexpr int kCryptoOps = 6;
constexpr const char* kCryptoOpNames[kCryptoOps] = {
    "sign request", "verify request", "sign receipt", "verify receipt", "sign head", "verify head"};

// One short sample.
struct CryptoSample {
  double us[kCryptoOps] = {};  // One thread, per operation.
  double parallel4 = 0;        // Sets of the first 4 per second on `threads` threads.
  double parallel6 = 0;        // Sets of all 6 per second on `threads` threads.
};

// Thread-compatible (one Take at a time); Take runs `threads` threads.
class CryptoBench {
 public:
  static absl::StatusOr<std::unique_ptr<CryptoBench>> Create(const v1::RequestRecord& sample,
                                                             int threads) {
    auto b = std::unique_ptr<CryptoBench>(new CryptoBench);
    v1::Receipt parsed;
    if (!parsed.ParseFromString(sample.receipt().payload())) {
      return absl::InternalError("the sample's receipt does not parse");
    }
    const std::string messages[3] = {sample.request().payload(), sample.receipt().payload(),
                                     parsed.tree_head().payload()};
    // A key per thread, as the two nodes have theirs.
    for (int t = 0; t < std::max(threads, 1); ++t) {
      Worker w;
      COMITY_ASSIGN_OR_RETURN(w.key, SigningKey::Generate());
      COMITY_ASSIGN_OR_RETURN(w.pub, VerifyingKey::FromRaw(w.key->public_key()));
      for (int m = 0; m < 3; ++m) {
        w.message[m] = messages[m];
        COMITY_ASSIGN_OR_RETURN(w.signature[m], w.key->Sign(messages[m]));
        COMITY_RETURN_IF_ERROR(w.pub->Verify(w.message[m], w.signature[m]));
      }
      b->workers_.push_back(std::move(w));
    }
    return b;
  }

  int threads() const { return static_cast<int>(workers_.size()); }

  // Each operation alone for `op_s` seconds on one thread, then the sets
  // of 4 and of 6 on every thread at once for `parallel_s` each.
  CryptoSample Take(double op_s, double parallel_s) {
    CryptoSample c;
    Worker& w = workers_[0];
    for (int op = 0; op < kCryptoOps; ++op) {
      int64_t n = 0;
      const auto start = Steady::now();
      while (SecondsSince(start) < op_s) {
        for (int i = 0; i < 20; ++i) w.Run(op);
        n += 20;
      }
      c.us[op] = SecondsSince(start) * 1e6 / static_cast<double>(n);
    }
    c.parallel4 = Parallel(4, parallel_s);
    c.parallel6 = Parallel(6, parallel_s);
    return c;
  }

 private:
  struct Worker {
    std::unique_ptr<SigningKey> key;
    std::unique_ptr<VerifyingKey> pub;
    std::string message[3], signature[3];
    void Run(int op) const {
      const int m = op / 2;
      if (op % 2 == 0) {
        (void)key->Sign(message[m]);
      } else {
        (void)pub->Verify(message[m], signature[m]);
      }
    }
  };

  CryptoBench() = default;

  // Sets of the first `ops` operations per second, all threads together.
  double Parallel(int ops, double seconds) {
    std::atomic<bool> go{false};
    std::vector<int64_t> sets(workers_.size(), 0);
    std::vector<std::thread> threads;
    Steady::time_point stop;
    for (size_t t = 0; t < workers_.size(); ++t) {
      threads.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        int64_t n = 0;
        while (Steady::now() < stop) {
          for (int op = 0; op < ops; ++op) workers_[t].Run(op);
          ++n;
        }
        sets[t] = n;
      });
    }
    const auto start = Steady::now();
    stop = start + std::chrono::duration_cast<Steady::duration>(
                       std::chrono::duration<double>(seconds));
    go = true;
    for (std::thread& th : threads) th.join();
    int64_t total = 0;
    for (int64_t n : sets) total += n;
    return static_cast<double>(total) / SecondsSince(start);
  }

  std::vector<Worker> workers_;
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The median, smallest and largest of one figure over the samples.
struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread SpreadOf(const std::vector<CryptoSample>& samples,
                const std::function<double(const CryptoSample&)>& get) {
  std::vector<double> v;
  for (const CryptoSample& c : samples) v.push_back(get(c));
  if (v.empty()) return {};
  return {Median(v), *std::min_element(v.begin(), v.end()),
          *std::max_element(v.begin(), v.end())};
}

// --- Output. ---

std::string Ms(double v) { return absl::StrFormat("%.1f", v); }
std::string Rate(double v) { return absl::StrFormat("%.0f", v); }

// "a / b" per request, "n/a" for a side not counted.
std::string PerRequest(int64_t fr, int64_t jp, double n, double scale, int decimals) {
  auto one = [&](int64_t v) {
    return v < 0 ? std::string("n/a")
                 : absl::StrFormat("%.*f", decimals, static_cast<double>(v) * scale / n);
  };
  return absl::StrCat(one(fr), " / ", one(jp));
}

std::string PhaseLoad(const PhaseResult& r) {
  return r.concurrency > 0 ? absl::StrCat("closed, K=", r.concurrency)
                           : absl::StrCat("open, ", Rate(r.offered), " req/s");
}

// `nodes`: the phase loads the nodes, so their disk figures are per request.
std::string PhaseRow(const PhaseResult& r, bool nodes) {
  const double n = static_cast<double>(std::max<int64_t>(r.ok, 1));
  std::string row = absl::StrCat(
      "| ", r.name, " | ", PhaseLoad(r), " | ", Rate(r.rate), " | ", r.ok, " | ", r.failed, " | ",
      Ms(Percentile(r.latency_ms, 50)), " | ", Ms(Percentile(r.latency_ms, 99)), " | ",
      Ms(r.latency_ms.empty() ? 0 : r.latency_ms.back()), " | ",
      absl::StrFormat("%.2f / %.2f / %.2f", r.cpu.fr * 1e3 / n, r.cpu.jp * 1e3 / n,
                      (r.cpu.self + r.cpu.echo) * 1e3 / n),
      " | ");
  if (!nodes) return row + " |  |  |";
  const NodeDisk& fr = r.cpu.fr_disk;
  const NodeDisk& jp = r.cpu.jp_disk;
  return absl::StrCat(row, PerRequest(fr.fsyncs, jp.fsyncs, n, 1, 2), " | ",
                      PerRequest(fr.write_bytes, jp.write_bytes, n, 1.0 / 1024, 1), " | ",
                      PerRequest(fr.wchar, jp.wchar, n, 1.0 / 1024, 1), " |");
}

// --summary FILE: "figure<TAB>value" lines, for bench/run.sh --compare.
class Summary {
 public:
  void Add(const std::string& figure, double value) {
    lines_ += absl::StrFormat("%s\t%.6g\n", figure, value);
  }
  bool Write(const std::string& path) const {
    FILE* f = std::fopen(path.c_str(), "w");
    if (f == nullptr) return false;
    const bool ok = std::fwrite(lines_.data(), 1, lines_.size(), f) == lines_.size();
    return std::fclose(f) == 0 && ok;
  }

 private:
  std::string lines_;
};

void SummarisePhase(const PhaseResult& r, Summary* s) {
  const std::string load = PhaseLoad(r);
  const double n = static_cast<double>(std::max<int64_t>(r.ok, 1));
  s->Add(absl::StrCat(load, ": DELIVERED req/s"), r.rate);
  s->Add(absl::StrCat(load, ": p99 ms"), Percentile(r.latency_ms, 99));
  s->Add(absl::StrCat(load, ": CPU ms/req FR"), r.cpu.fr * 1e3 / n);
  s->Add(absl::StrCat(load, ": CPU ms/req JP"), r.cpu.jp * 1e3 / n);
  for (const auto& [party, disk] :
       {std::pair{"FR", r.cpu.fr_disk}, std::pair{"JP", r.cpu.jp_disk}}) {
    if (disk.fsyncs >= 0) {
      s->Add(absl::StrCat(load, ": fsyncs/req ", party), static_cast<double>(disk.fsyncs) / n);
    }
    if (disk.write_bytes >= 0) {
      s->Add(absl::StrCat(load, ": disk KB/req ", party),
             static_cast<double>(disk.write_bytes) / 1024 / n);
    }
  }
}

// Each path of a colon- or space-separated LD_PRELOAD list, readable.
absl::Status CheckPreload(const std::string& list) {
  for (absl::string_view path : absl::StrSplit(list, absl::ByAnyChar(": "), absl::SkipEmpty())) {
    if (::access(std::string(path).c_str(), R_OK) != 0) {
      return absl::NotFoundError(absl::StrCat(
          "--preload: ", path,
          " not found (jemalloc: apt-get install libjemalloc2, "
          "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2; tcmalloc: apt-get install "
          "libtcmalloc-minimal4, /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4)"));
    }
  }
  return absl::OkStatus();
}

// True if every library of the LD_PRELOAD list is mapped in `pid`.
bool PreloadMapped(pid_t pid, const std::string& list) {
  const std::string maps = ReadFile(absl::StrCat("/proc/", pid, "/maps")).value_or("");
  for (absl::string_view path : absl::StrSplit(list, absl::ByAnyChar(": "), absl::SkipEmpty())) {
    const size_t slash = path.rfind('/');
    const absl::string_view name = slash == path.npos ? path : path.substr(slash + 1);
    if (maps.find(std::string(name)) == std::string::npos) return false;
  }
  return true;
}

// The allocator a running node uses: the first malloc library mapped in it
// (linked in, COMITY_TCMALLOC, or preloaded), else glibc's.
std::string NodeAllocator(pid_t pid) {
  const std::string maps = ReadFile(absl::StrCat("/proc/", pid, "/maps")).value_or("");
  for (const char* lib : {"libtcmalloc_minimal", "libtcmalloc", "libjemalloc"}) {
    const size_t at = maps.find(lib);
    if (at == std::string::npos) continue;
    const size_t end = maps.find('\n', at);
    return maps.substr(at, end == std::string::npos ? std::string::npos : end - at);
  }
  return "glibc malloc";
}

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  if (flags.Has("serve-echo")) {
    return ServeEcho(flags.Get("serve-echo", ""), static_cast<int>(flags.GetInt("port", 0, 0, 65535)));
  }
  const std::vector<std::string> known = {
      "duration-s", "concurrency", "rates",   "poisson",        "channels",
      "echo-duration-s", "keep",   "dir",     "comityd",        "warmup",
      "preload",  "no-fsync-count", "summary", "crypto-sample-s", "help"};
  if (!flags.Unknown(known).empty() || flags.Has("help")) {
    std::fprintf(stderr,
                 "usage: e2e_bench [--duration-s 10] [--concurrency 1,16,64] "
                 "[--rates 200,500] [--poisson] [--channels 4] [--echo-duration-s 5 (0: none)] "
                 "[--warmup 300] [--dir DIR] [--keep] [--comityd PATH] "
                 "[--preload LIB[:LIB]] [--no-fsync-count] [--crypto-sample-s 0.6] "
                 "[--summary FILE]\n");
    return 2;
  }
  const double duration = flags.GetDouble("duration-s", 10, 0.1, 86400);
  const double echo_duration = flags.GetDouble("echo-duration-s", 5, 0, 86400);
  const std::vector<int64_t> ks = flags.GetInts("concurrency", {1, 16, 64}, 1, 100000);
  const std::vector<int64_t> rates = flags.GetInts("rates", {200, 500}, 1, 10000000);
  const bool poisson = flags.Has("poisson");
  const int channels = static_cast<int>(flags.GetInt("channels", 4, 1, 1024));
  const int64_t warmup = flags.GetInt("warmup", 300, 0, 100000000);
  const std::string preload = flags.Get("preload", "");
  const bool count_fsyncs = !flags.Has("no-fsync-count");
  const double crypto_sample_s = flags.GetDouble("crypto-sample-s", 0.6, 0.01, 3600);
  const std::string comityd = flags.Get("comityd", BinDir() + "/comityd");
  if (absl::Status p = CheckPreload(preload); !p.ok()) {
    std::fprintf(stderr, "%s\n", p.ToString().c_str());
    return 2;
  }
  const std::string fsync_lib = BinDir() + "/libcomity_fsync_count.so";
  if (count_fsyncs && ::access(fsync_lib.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "%s not found; build the target comity_fsync_count or pass "
                 "--no-fsync-count\n", fsync_lib.c_str());
    return 2;
  }

  auto dir = MakeTempDir("comity-e2e-bench", flags.Get("dir", ""));
  if (!dir.ok()) {
    std::fprintf(stderr, "%s\n", dir.status().ToString().c_str());
    return 1;
  }
  auto net = MakeNetwork(*dir, {"FR", "JP"});
  if (!net.ok()) {
    std::fprintf(stderr, "%s\n", net.status().ToString().c_str());
    return 1;
  }
  Processes procs;
  auto cleanup = [&]() {
    StopChild(procs.echo);
    StopChild(procs.fr);
    StopChild(procs.jp);
    if (!flags.Has("keep")) RunShell(absl::StrCat("rm -rf '", *dir, "'"));
  };
  for (const char* p : {"FR", "JP"}) {
    std::vector<std::string> env;
    std::string libs = preload;
    const std::string counts = net->PartyDir(p) + "/fsync-counts";
    if (count_fsyncs) {
      libs = preload.empty() ? fsync_lib : absl::StrCat(fsync_lib, ":", preload);
      env.push_back("COMITY_FSYNC_COUNT_FILE=" + counts);
    }
    if (!libs.empty()) env.push_back("LD_PRELOAD=" + libs);
    auto pid = SpawnNode(*net, p, comityd, env);
    if (!pid.ok()) {
      std::fprintf(stderr, "%s\n", pid.status().ToString().c_str());
      cleanup();
      return 1;
    }
    if (std::string(p) == "FR") {
      procs.fr = *pid;
      if (count_fsyncs) procs.fr_fsyncs = counts;
    } else {
      procs.jp = *pid;
      if (count_fsyncs) procs.jp_fsyncs = counts;
    }
  }
  for (const char* p : {"FR", "JP"}) {
    absl::Status up = WaitForStarted(*net, p, std::string(p) == "FR" ? procs.fr : procs.jp,
                                     absl::Seconds(60));
    if (up.ok()) up = WaitForNode(OperatorChannel(*net, p, "alice", 99), absl::Seconds(30));
    if (!up.ok()) {
      std::fprintf(stderr, "comityd %s: %s; see %s/comityd.log\n", p, up.ToString().c_str(),
                   net->PartyDir(p).c_str());
      cleanup();
      return 1;
    }
  }
  std::fprintf(stderr, "nodes up in %s (FR pid %d, JP pid %d)\n", dir->c_str(), procs.fr,
               procs.jp);
  for (pid_t pid : {procs.fr, procs.jp}) {
    if (!preload.empty() && !PreloadMapped(pid, preload)) {
      std::fprintf(stderr, "--preload %s is not mapped in comityd pid %d\n", preload.c_str(),
                   pid);
      cleanup();
      return 1;
    }
  }

  const std::string allocator = NodeAllocator(procs.fr);

  // One request first, for the sizes the crypto and echo phases use.
  v1::RequestRecord sample;
  {
    auto stub = v1::OperatorService::NewStub(OperatorChannel(*net, "FR", "alice", 98));
    grpc::ClientContext ctx;
    v1::SubmitRequestRequest req;
    *req.mutable_draft() = PreservationDraft("JP", -1);
    v1::SubmitRequestResponse resp;
    grpc::Status s = stub->SubmitRequest(&ctx, req, &resp);
    if (!s.ok() || resp.record().state() != v1::DELIVERED) {
      std::fprintf(stderr, "first submit failed: %s %s %s\n", s.error_message().c_str(),
                   v1::RequestState_Name(resp.record().state()).c_str(),
                   resp.record().last_error().c_str());
      cleanup();
      return 1;
    }
    sample = resp.record();
  }
  const size_t envelope_bytes = sample.request().ByteSizeLong();
  // As many threads as cores: the bound of this machine, measured rather
  // than one core's figure multiplied.
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto crypto = CryptoBench::Create(sample, cores);
  if (!crypto.ok()) {
    std::fprintf(stderr, "%s\n", crypto.status().ToString().c_str());
    cleanup();
    return 1;
  }
  std::vector<CryptoSample> crypto_samples;
  auto sample_crypto = [&]() {
    crypto_samples.push_back((*crypto)->Take(crypto_sample_s * 0.3 / kCryptoOps,
                                             crypto_sample_s * 0.35));
  };

  SubmitCaller submit(*net, channels);
  Caller comity_call = [&](int64_t i, Done d) { submit.Call(i, std::move(d)); };

  {
    // Warm-up: connections, SQLite pages, allocator.
    Recorder rec;
    std::atomic<int64_t> left{warmup};
    std::atomic<int64_t> outstanding{0};
    std::function<void()> launch = [&]() {
      if (left.fetch_sub(1) <= 0) return;
      ++outstanding;
      comity_call(g_next_id++, [&](bool, const std::string&) {
        launch();
        --outstanding;
      });
    };
    for (int i = 0; i < 16; ++i) launch();
    Drain(outstanding, 120);
  }
  // A node that wrote durably and counted no fsync was not interposed
  // (e.g. a static build): say n/a rather than 0.
  for (std::string* counts : {&procs.fr_fsyncs, &procs.jp_fsyncs}) {
    if (!counts->empty() && ReadFsyncs(*counts) <= 0) {
      std::fprintf(stderr, "fsyncs not counted in %s (LD_PRELOAD ignored?)\n", counts->c_str());
      counts->clear();
    }
  }

  // Phase i runs between crypto samples i and i + 1.
  sample_crypto();
  std::vector<PhaseResult> results;
  for (int64_t k : ks) {
    std::fprintf(stderr, "closed loop K=%lld for %.0f s...\n", static_cast<long long>(k),
                 duration);
    results.push_back(RunClosed("Comity submit", comity_call, static_cast<int>(k), duration, procs));
    sample_crypto();
  }
  for (int64_t rate : rates) {
    std::fprintf(stderr, "open loop %lld req/s for %.0f s...\n", static_cast<long long>(rate),
                 duration);
    results.push_back(RunOpen("Comity submit", comity_call, static_cast<double>(rate), duration,
                              poisson, procs));
    sample_crypto();
  }

  std::vector<PhaseResult> echo_results;
  if (echo_duration > 0) {
    // Echo baseline in its own process, like a node.
    const int echo_port = PickUnusedPort();
    {
      const std::string self = BinDir() + "/e2e_bench";
      const std::string dir_arg = "--serve-echo=" + net->PartyDir("FR");
      const std::string port_arg = absl::StrCat("--port=", echo_port);
      pid_t pid = ::fork();
      if (pid == 0) {
        ::execl("/proc/self/exe", self.c_str(), dir_arg.c_str(), port_arg.c_str(),
                static_cast<char*>(nullptr));
        std::_Exit(127);
      }
      procs.echo = pid;
    }
    EchoCaller echo(*net, echo_port, channels, envelope_bytes);
    Caller echo_call = [&](int64_t i, Done d) { echo.Call(i, std::move(d)); };
    {
      // Until it answers.
      const auto start = Steady::now();
      bool up = false;
      while (!up && SecondsSince(start) < 20) {
        std::atomic<int> state{0};
        echo_call(0, [&](bool ok, const std::string&) { state = ok ? 1 : 2; });
        while (state == 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        up = state == 1;
        if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (!up) {
        std::fprintf(stderr, "echo server does not answer\n");
        cleanup();
        return 1;
      }
    }
    for (int64_t k : ks) {
      std::fprintf(stderr, "echo K=%lld for %.0f s...\n", static_cast<long long>(k),
                   echo_duration);
      echo_results.push_back(
          RunClosed("gRPC echo", echo_call, static_cast<int>(k), echo_duration, procs));
      sample_crypto();
    }
  }

  // Node footprints after the run.
  const int64_t fr_hwm = ProcStatusKb(procs.fr, "VmHWM");
  const int64_t jp_hwm = ProcStatusKb(procs.jp, "VmHWM");
  cleanup();

  // --- The tables. ---
  Summary summary;
  auto op_us = [&](int op) {
    return SpreadOf(crypto_samples, [op](const CryptoSample& c) { return c.us[op]; }).median;
  };
  double four_ops_us = 0, six_ops_us = 0;
  for (int op = 0; op < kCryptoOps; ++op) {
    if (op < 4) four_ops_us += op_us(op);
    six_ops_us += op_us(op);
  }
  const Spread par4 = SpreadOf(crypto_samples, [](const CryptoSample& c) { return c.parallel4; });
  const Spread par6 = SpreadOf(crypto_samples, [](const CryptoSample& c) { return c.parallel6; });
  double best = 0;
  int best_k = 0;
  size_t best_i = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    if (results[i].concurrency > 0 && results[i].rate > best) {
      best = results[i].rate;
      best_k = results[i].concurrency;
      best_i = i;
    }
  }
  std::printf("## End to end (`e2e_bench`)\n\n");
  std::printf("%s, %u cores; FR and JP comityd on loopback, %d operator connections, "
              "request envelope %zu bytes, receipt %zu bytes; %.0f s per phase%s; "
              "nodes' allocator: %s.\n\n",
              CpuModel().c_str(), std::thread::hardware_concurrency(), channels,
              envelope_bytes, sample.receipt().ByteSizeLong(), duration,
              poisson ? ", Poisson arrivals" : ", evenly spaced arrivals",
              preload.empty() ? allocator.c_str()
                              : absl::StrCat(allocator, " (LD_PRELOAD ", preload, ")").c_str());
  std::printf("| phase | load | DELIVERED req/s | ok | failed | p50 ms | p99 ms | max ms | "
              "CPU ms/req FR / JP / client | fsyncs/req FR / JP | disk KB/req FR / JP | "
              "written KB/req FR / JP |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const PhaseResult& r : results) {
    std::printf("%s\n", PhaseRow(r, true).c_str());
    SummarisePhase(r, &summary);
  }
  for (const PhaseResult& r : echo_results) std::printf("%s\n", PhaseRow(r, false).c_str());
  std::printf("\nCPU: user+system time of each process over the phase (/proc/PID/stat); "
              "client is the load generator%s. fsyncs: %s. disk KB: /proc/PID/io write_bytes "
              "(page cache the node dirtied, whether or not yet flushed); written KB: wchar "
              "(bytes the node passed to write calls: database, WAL, log; not gRPC's "
              "sendmsg).\n",
              echo_results.empty() ? "" : " plus the echo server",
              procs.fr_fsyncs.empty() && procs.jp_fsyncs.empty()
                  ? "not counted (n/a)"
                  : "fsync + fdatasync calls of the node, counted by an LD_PRELOAD shim "
                    "(bench/fsync_count.cc: an atomic increment in a shared mapping, the "
                    "node is never stopped)");
  std::printf("\n| figure | target | measured |\n|---|---|---|\n");
  std::printf("| max durable req/s end to end (best closed loop, K=%d) | >= 2000 | %s |\n", best_k,
              Rate(best).c_str());
  summary.Add("best closed loop: DELIVERED req/s", best);
  for (const PhaseResult& r : results) {
    if (r.concurrency > 0) continue;
    std::printf("| p99 latency at %s req/s offered (achieved %s) | %s | %s ms |\n",
                Rate(r.offered).c_str(), Rate(r.rate).c_str(),
                r.offered == 500 ? "< 50 ms" : "", Ms(Percentile(r.latency_ms, 99)).c_str());
  }
  const size_t n_samples = crypto_samples.size();
  std::printf("| Ed25519 per request, 1 thread, median of %zu samples taken between the phases: "
              "sign+verify request, sign+verify receipt (+ sign+verify tree head) | | "
              "%.1f + %.1f + %.1f + %.1f (+ %.1f + %.1f) us |\n",
              n_samples, op_us(0), op_us(1), op_us(2), op_us(3), op_us(4), op_us(5));
  std::printf("| crypto bound, 4 operations: 1 thread / x%d / measured on %d threads "
              "(median, min-max of the samples) | | %s / %s / **%s** (%s-%s) req/s |\n",
              cores, cores, Rate(1e6 / four_ops_us).c_str(),
              Rate(cores * 1e6 / four_ops_us).c_str(), Rate(par4.median).c_str(),
              Rate(par4.min).c_str(), Rate(par4.max).c_str());
  std::printf("| crypto bound, 6 operations (with the receipt's tree head): 1 thread / x%d / "
              "measured on %d threads | | %s / %s / **%s** (%s-%s) req/s |\n",
              cores, cores, Rate(1e6 / six_ops_us).c_str(),
              Rate(cores * 1e6 / six_ops_us).c_str(), Rate(par6.median).c_str(),
              Rate(par6.min).c_str(), Rate(par6.max).c_str());
  summary.Add(absl::StrCat("crypto bound, 4 ops, ", cores, " threads: req/s"), par4.median);
  summary.Add(absl::StrCat("crypto bound, 6 ops, ", cores, " threads: req/s"), par6.median);
  if (best > 0 && par4.median > 0 && par6.median > 0) {
    std::printf("| Comity best / crypto bound measured on %d threads, 4 / 6 operations | | "
                "%.3f / %.3f |\n",
                cores, best / par4.median, best / par6.median);
    summary.Add("Comity best / crypto bound, 4 ops", best / par4.median);
    summary.Add("Comity best / crypto bound, 6 ops", best / par6.median);
    // The drift between samples, taken out: the bound just before and
    // just after the best phase.
    if (best_i + 1 < n_samples) {
      const CryptoSample& a = crypto_samples[best_i];
      const CryptoSample& b = crypto_samples[best_i + 1];
      std::printf("| the same against the samples just before and after that phase "
                  "(%s / %s req/s) | | %.3f / %.3f |\n",
                  Rate((a.parallel4 + b.parallel4) / 2).c_str(),
                  Rate((a.parallel6 + b.parallel6) / 2).c_str(),
                  2 * best / (a.parallel4 + b.parallel4), 2 * best / (a.parallel6 + b.parallel6));
    }
  }
  for (size_t i = 0; i < echo_results.size(); ++i) {
    const PhaseResult* comity = nullptr;
    for (const PhaseResult& r : results) {
      if (r.concurrency == echo_results[i].concurrency) comity = &r;
    }
    if (comity == nullptr || echo_results[i].rate <= 0) continue;
    std::printf("| Comity / gRPC echo at K=%d (%s vs %s req/s) | | %.3f |\n",
                echo_results[i].concurrency, Rate(comity->rate).c_str(),
                Rate(echo_results[i].rate).c_str(), comity->rate / echo_results[i].rate);
  }
  std::printf("| node peak RSS after the run, FR / JP | | %.0f / %.0f MB |\n",
              static_cast<double>(fr_hwm) / 1024, static_cast<double>(jp_hwm) / 1024);
  summary.Add("node peak RSS FR: MB", static_cast<double>(fr_hwm) / 1024);
  summary.Add("node peak RSS JP: MB", static_cast<double>(jp_hwm) / 1024);
  for (const PhaseResult& r : results) {
    if (!r.first_error.empty()) {
      std::printf("\nfirst error (%s, %s): %s\n", r.name.c_str(), PhaseLoad(r).c_str(),
                  r.first_error.c_str());
    }
  }
  if (flags.Has("summary") && !summary.Write(flags.Get("summary", ""))) {
    std::fprintf(stderr, "cannot write --summary %s\n", flags.Get("summary", "").c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace comity::bench

int main(int argc, char** argv) { return comity::bench::Main(argc, argv); }
