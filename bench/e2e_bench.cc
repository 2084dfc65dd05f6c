// End-to-end load generator: two real comityd processes (FR and JP) on
// loopback with everything on (mutual TLS gRPC, Ed25519 signatures, treaty
// assessment on both sides, audit log, fsync'd SQLite commits), driven over
// FR's operator API: a request counts when SubmitRequest returns it
// DELIVERED with JP's signed receipt.
//
// Phases: closed loop with K concurrent callers (max throughput), open loop
// at fixed offered rates (latency under load), the Ed25519 bound of the
// same machine, and a plain gRPC echo over the same mutual-TLS credentials
// and concurrency. Prints a markdown table; asserts nothing.
//
//   build/bin/e2e_bench [--duration-s 10] [--concurrency 1,16,64] [--rates 200,500]
//                       [--poisson] [--channels 4] [--echo-duration-s 5] [--keep]
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
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
};

struct CpuSample {
  double fr = 0, jp = 0, self = 0, echo = 0;
};

CpuSample SampleCpu(const Processes& p) {
  CpuSample s;
  if (p.fr > 0) s.fr = ProcCpuSeconds(p.fr);
  if (p.jp > 0) s.jp = ProcCpuSeconds(p.jp);
  if (p.echo > 0) s.echo = ProcCpuSeconds(p.echo);
  s.self = ProcCpuSeconds(::getpid());
  return s;
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
  r.cpu = {cpu1.fr - cpu0.fr, cpu1.jp - cpu0.jp, cpu1.self - cpu0.self, cpu1.echo - cpu0.echo};
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
  r.cpu = {cpu1.fr - cpu0.fr, cpu1.jp - cpu0.jp, cpu1.self - cpu0.self, cpu1.echo - cpu0.echo};
  return r;
}

// --- Ed25519 on this machine. ---

struct CryptoCost {
  double sign_request_us = 0, verify_request_us = 0;
  double sign_receipt_us = 0, verify_receipt_us = 0;
  double sign_head_us = 0, verify_head_us = 0;
};

double TimeUs(const std::function<void()>& op, double seconds) {
  int64_t n = 0;
  const auto start = Steady::now();
  while (SecondsSince(start) < seconds) {
    for (int i = 0; i < 50; ++i) op();
    n += 50;
  }
  return SecondsSince(start) * 1e6 / static_cast<double>(n);
}

absl::StatusOr<CryptoCost> MeasureCrypto(const v1::RequestRecord& sample) {
  COMITY_ASSIGN_OR_RETURN(auto key, SigningKey::Generate());
  COMITY_ASSIGN_OR_RETURN(auto pub, VerifyingKey::FromRaw(key->public_key()));
  const std::string request = sample.request().payload();
  const std::string receipt = sample.receipt().payload();
  v1::Receipt parsed;
  parsed.ParseFromString(receipt);
  const std::string head = parsed.tree_head().payload();
  COMITY_ASSIGN_OR_RETURN(std::string request_sig, key->Sign(request));
  COMITY_ASSIGN_OR_RETURN(std::string receipt_sig, key->Sign(receipt));
  COMITY_ASSIGN_OR_RETURN(std::string head_sig, key->Sign(head));
  CryptoCost c;
  const double t = 0.7;
  c.sign_request_us = TimeUs([&] { (void)key->Sign(request); }, t);
  c.verify_request_us = TimeUs([&] { (void)pub->Verify(request, request_sig); }, t);
  c.sign_receipt_us = TimeUs([&] { (void)key->Sign(receipt); }, t);
  c.verify_receipt_us = TimeUs([&] { (void)pub->Verify(receipt, receipt_sig); }, t);
  c.sign_head_us = TimeUs([&] { (void)key->Sign(head); }, t);
  c.verify_head_us = TimeUs([&] { (void)pub->Verify(head, head_sig); }, t);
  if (!pub->Verify(request, request_sig).ok()) return absl::InternalError("self-check failed");
  return c;
}

// --- Output. ---

std::string Ms(double v) { return absl::StrFormat("%.1f", v); }
std::string Rate(double v) { return absl::StrFormat("%.0f", v); }

std::string PhaseRow(const PhaseResult& r) {
  const double n = static_cast<double>(std::max<int64_t>(r.ok, 1));
  std::string load = r.concurrency > 0 ? absl::StrCat("closed, K=", r.concurrency)
                                       : absl::StrCat("open, ", Rate(r.offered), " req/s");
  return absl::StrCat("| ", r.name, " | ", load, " | ", Rate(r.rate), " | ", r.ok, " | ",
                      r.failed, " | ", Ms(Percentile(r.latency_ms, 50)), " | ",
                      Ms(Percentile(r.latency_ms, 99)), " | ",
                      Ms(r.latency_ms.empty() ? 0 : r.latency_ms.back()), " | ",
                      absl::StrFormat("%.2f / %.2f / %.2f", r.cpu.fr * 1e3 / n,
                                      r.cpu.jp * 1e3 / n,
                                      (r.cpu.self + r.cpu.echo) * 1e3 / n),
                      " |");
}

int Main(int argc, char** argv) {
  Flags flags(argc, argv);
  if (flags.Has("serve-echo")) {
    return ServeEcho(flags.Get("serve-echo", ""), static_cast<int>(flags.GetInt("port", 0)));
  }
  const std::vector<std::string> known = {"duration-s", "concurrency", "rates", "poisson",
                                          "channels", "echo-duration-s", "keep", "dir",
                                          "comityd", "warmup", "help"};
  if (!flags.Unknown(known).empty() || flags.Has("help")) {
    std::fprintf(stderr,
                 "usage: e2e_bench [--duration-s 10] [--concurrency 1,16,64] "
                 "[--rates 200,500] [--poisson] [--channels 4] [--echo-duration-s 5] "
                 "[--warmup 300] [--dir DIR] [--keep] [--comityd PATH]\n");
    return 2;
  }
  const double duration = flags.GetDouble("duration-s", 10);
  const double echo_duration = flags.GetDouble("echo-duration-s", 5);
  const std::vector<int64_t> ks = flags.GetInts("concurrency", {1, 16, 64});
  const std::vector<int64_t> rates = flags.GetInts("rates", {200, 500});
  const bool poisson = flags.Has("poisson");
  const int channels = static_cast<int>(flags.GetInt("channels", 4));
  const int64_t warmup = flags.GetInt("warmup", 300);

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
    auto pid = SpawnNode(*net, p, flags.Get("comityd", ""));
    if (!pid.ok()) {
      std::fprintf(stderr, "%s\n", pid.status().ToString().c_str());
      cleanup();
      return 1;
    }
    (std::string(p) == "FR" ? procs.fr : procs.jp) = *pid;
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

  std::vector<PhaseResult> results;
  for (int64_t k : ks) {
    std::fprintf(stderr, "closed loop K=%lld for %.0f s...\n", static_cast<long long>(k),
                 duration);
    results.push_back(RunClosed("Comity submit", comity_call, static_cast<int>(k), duration, procs));
  }
  for (int64_t rate : rates) {
    std::fprintf(stderr, "open loop %lld req/s for %.0f s...\n", static_cast<long long>(rate),
                 duration);
    results.push_back(RunOpen("Comity submit", comity_call, static_cast<double>(rate), duration,
                              poisson, procs));
  }

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
  std::vector<PhaseResult> echo_results;
  for (int64_t k : ks) {
    std::fprintf(stderr, "echo K=%lld for %.0f s...\n", static_cast<long long>(k), echo_duration);
    echo_results.push_back(
        RunClosed("gRPC echo", echo_call, static_cast<int>(k), echo_duration, procs));
  }

  std::fprintf(stderr, "Ed25519...\n");
  auto crypto = MeasureCrypto(sample);
  // Node footprints after the run.
  const int64_t fr_hwm = ProcStatusKb(procs.fr, "VmHWM");
  const int64_t jp_hwm = ProcStatusKb(procs.jp, "VmHWM");
  cleanup();
  if (!crypto.ok()) {
    std::fprintf(stderr, "%s\n", crypto.status().ToString().c_str());
    return 1;
  }

  // --- The table. ---
  const double four_ops_us = crypto->sign_request_us + crypto->verify_request_us +
                             crypto->sign_receipt_us + crypto->verify_receipt_us;
  const double six_ops_us = four_ops_us + crypto->sign_head_us + crypto->verify_head_us;
  const double bound1 = 1e6 / four_ops_us;
  const double bound2 = 2 * bound1;
  double best = 0;
  int best_k = 0;
  for (const PhaseResult& r : results) {
    if (r.concurrency > 0 && r.rate > best) {
      best = r.rate;
      best_k = r.concurrency;
    }
  }
  std::printf("## End to end (`e2e_bench`)\n\n");
  std::printf("%s, %u cores; FR and JP comityd on loopback, %d operator connections, "
              "request envelope %zu bytes, receipt %zu bytes; %.0f s per phase%s.\n\n",
              CpuModel().c_str(), std::thread::hardware_concurrency(), channels,
              envelope_bytes, sample.receipt().ByteSizeLong(), duration,
              poisson ? ", Poisson arrivals" : ", evenly spaced arrivals");
  std::printf("| phase | load | DELIVERED req/s | ok | failed | p50 ms | p99 ms | max ms | "
              "CPU ms/req FR / JP / client |\n|---|---|---|---|---|---|---|---|---|\n");
  for (const PhaseResult& r : results) std::printf("%s\n", PhaseRow(r).c_str());
  for (const PhaseResult& r : echo_results) std::printf("%s\n", PhaseRow(r).c_str());
  std::printf("\n| figure | target | measured |\n|---|---|---|\n");
  std::printf("| max durable req/s end to end (best closed loop, K=%d) | >= 2000 | %s |\n", best_k,
              Rate(best).c_str());
  for (const PhaseResult& r : results) {
    if (r.concurrency > 0) continue;
    std::printf("| p99 latency at %s req/s offered (achieved %s) | %s | %s ms |\n",
                Rate(r.offered).c_str(), Rate(r.rate).c_str(),
                r.offered == 500 ? "< 50 ms" : "", Ms(Percentile(r.latency_ms, 99)).c_str());
  }
  std::printf("| Ed25519 per request: sign+verify request, sign+verify receipt | | "
              "%.1f + %.1f + %.1f + %.1f us |\n",
              crypto->sign_request_us, crypto->verify_request_us, crypto->sign_receipt_us,
              crypto->verify_receipt_us);
  std::printf("| crypto bound, 1 core / 2 cores | | %s / %s req/s |\n", Rate(bound1).c_str(),
              Rate(bound2).c_str());
  std::printf("| crypto bound with the receipt's tree head (sign+verify, 6 operations), 2 "
              "cores | | %s req/s |\n",
              Rate(2e6 / six_ops_us).c_str());
  std::printf("| Comity best / crypto bound (2 cores) | | %.2f |\n", best / bound2);
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
  for (const PhaseResult& r : results) {
    if (!r.first_error.empty()) {
      std::printf("\nfirst error (%s, %s): %s\n", r.name.c_str(),
                  r.concurrency > 0 ? absl::StrCat("K=", r.concurrency).c_str()
                                    : absl::StrCat(Rate(r.offered), " req/s").c_str(),
                  r.first_error.c_str());
    }
  }
  return 0;
}

}  // namespace
}  // namespace comity::bench

int main(int argc, char** argv) { return comity::bench::Main(argc, argv); }
