// `comity audit verify` and `comity audit export` at constant memory (issue
// 16): a log the size of 300,000 requests' (4 entries and one signed tree
// head each: 1,200,000 entries, 300,000 heads) is written into FR's SQLite
// file through the Store API, a real comityd child process starts on it,
// and the real `comity` CLI verifies the log on the node, exports it and
// verifies the bundle (as `audit verify --bundle` does), over TLS as an
// auditor. The node's peak
// resident memory (VmHWM from /proc) and each CLI run's (wait4's
// ru_maxrss) must stay under kBoundKb; before the fix, verify held every
// node hash and every head (+257 MB at 300,000 requests), and the CLI the
// whole bundle.
//
// Filling 300,000 requests over gRPC would take hours: the entries are
// appended a thousand requests per transaction, of types that do not name
// a stored item (ASSESSMENT_MADE, DELIVERY_ATTEMPTED, DELIVERY_FAILED), so
// the log verifies without storing the requests themselves.
//
// As a bench (figures for docs/performance.md, bench/run.sh):
//   COMITY_AUDIT_MEMORY_REQUESTS=1000000 build/bin/audit_memory_e2e_test
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config/node_config.h"
#include "server/core/envelope.h"
#include "server/crypto/sha256.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"
#include "tests/testing/comityd_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

extern char** environ;

namespace comity {
namespace {

using ::comity::testing::ComitydProcess;
using ::comity::testing::IsOk;
using ::testing::HasSubstr;

// What the node and each CLI run may hold at their peak, whatever the size
// of the log: the node starts at about 60 MB (SQLite's page cache is 32 MiB).
constexpr int64_t kBoundKb = 150 * 1024;
constexpr int64_t kEntriesPerRequest = 4;
constexpr int64_t kRequestsPerTransaction = 1000;

int64_t Requests() {
  const char* n = std::getenv("COMITY_AUDIT_MEMORY_REQUESTS");
  int64_t v = 0;
  return n != nullptr && absl::SimpleAtoi(n, &v) && v > 0 ? v : 300000;
}

// Appends `n` requests' entries and heads to the log at `path`, each head
// signed by FR's key.
absl::Status FillLog(const std::string& path, const NodeSetup& fr, int64_t n) {
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenSqliteStore(path));
  const absl::Time first = absl::Now() - absl::Hours(24 * 30);
  const v1::AuditEventType kTypes[kEntriesPerRequest] = {
      v1::ASSESSMENT_MADE, v1::DELIVERY_ATTEMPTED, v1::DELIVERY_FAILED,
      v1::ASSESSMENT_MADE};
  for (int64_t from = 0; from < n; from += kRequestsPerTransaction) {
    COMITY_RETURN_IF_ERROR(store->audit().Append([&](AuditWriter& w) -> absl::Status {
      for (int64_t i = from; i < std::min(n, from + kRequestsPerTransaction); ++i) {
        const absl::Time at = first + absl::Seconds(i);
        const std::string id =
            absl::StrCat("00000000-0000-4000-8000-", absl::Hex(i, absl::kZeroPad12));
        for (v1::AuditEventType type : kTypes) {
          v1::AuditEntry e;
          e.set_time_unix_micros(absl::ToUnixMicros(at));
          e.set_type(type);
          e.set_actor("node");
          e.set_request_id(id);
          e.set_party("JP");
          e.add_hashes(Sha256(id));
          e.set_detail(type == v1::DELIVERY_FAILED ? "UNAVAILABLE: JP did not answer"
                                                   : "library 2026.11");
          COMITY_RETURN_IF_ERROR(w.Append(&e).status());
        }
        v1::TreeHead head;
        head.set_party("FR");
        head.set_tree_size(w.size());
        head.set_root_hash(w.Root());
        head.set_timestamp_unix_micros(absl::ToUnixMicros(at));
        COMITY_ASSIGN_OR_RETURN(
            v1::SignedEnvelope signed_head,
            SignEnvelope(kTreeHeadPayloadType, SerializeDeterministic(head), "FR",
                         fr.config.signing_key().key_id(), *fr.signing_key));
        COMITY_RETURN_IF_ERROR(w.PutTreeHead(head, signed_head));
      }
      return absl::OkStatus();
    }));
  }
  return absl::OkStatus();
}

struct CliRun {
  int exit_code = -1;
  int64_t max_rss_kb = 0;
  double seconds = 0;
  std::string out;
  std::string err;
};

// Runs the comity CLI as a child process; its output and peak RSS.
CliRun RunCli(const std::vector<std::string>& args, const std::string& dir) {
  CliRun run;
  const std::string out = dir + "/cli.out", err = dir + "/cli.err";
  std::vector<std::string> argv = {COMITY_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0600);
  const absl::Time start = absl::Now();
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, cargv[0], &actions, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    run.err = absl::StrCat("posix_spawn: ", rc);
    return run;
  }
  int status = 0;
  rusage usage{};
  if (::wait4(pid, &status, 0, &usage) == pid && WIFEXITED(status)) {
    run.exit_code = WEXITSTATUS(status);
  }
  run.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  run.max_rss_kb = usage.ru_maxrss;
  run.out = ReadFile(out).value_or("");
  run.err = ReadFile(err).value_or("");
  return run;
}

double Mb(int64_t kb) { return static_cast<double>(kb) / 1024; }

TEST(AuditMemoryE2eTest, VerifyAndExportOfALargeLogStayWithinABound) {
  const int64_t n = Requests();
  testing::TestNetwork net({"FR", "JP"});
  const std::string fr = net.PartyDir("FR");
  ASSERT_THAT(WriteFileAtomically(fr + "/node.conf", net.ConfigText("FR"), 0644), IsOk());
  auto setup = LoadNodeConfig(fr + "/node.conf");
  ASSERT_THAT(setup.status(), IsOk());
  const std::string db = net.SqlitePath("FR");
  // The log is written straight into FR's SQLite file; the PostgreSQL
  // pass (COMITY_TEST_POSTGRES) verifies and exports through the same code
  // in AuditVerifyE2eTest and ListsE2eTest.
  if (db.empty()) GTEST_SKIP() << "the large log is filled into a SQLite file";
  ASSERT_EQ(testing::RunShell(absl::StrCat("mkdir -p -m 700 '", fr, "/data'")), 0);
  absl::Time start = absl::Now();
  ASSERT_THAT(FillLog(db, **setup, n), IsOk());
  const double fill_s = absl::ToDoubleSeconds(absl::Now() - start);

  start = absl::Now();
  auto child =
      ComitydProcess::Spawn(COMITYD_PATH, fr + "/node.conf", fr + "/comityd.log");
  ASSERT_THAT(child.status(), IsOk());
  std::unique_ptr<ComitydProcess> node = *std::move(child);
  const std::string carol = net.ClientConfigPath("FR", "carol");
  ASSERT_TRUE(node->WaitServing(carol, absl::Seconds(120))) << node->Log();
  const double start_s = absl::ToDoubleSeconds(absl::Now() - start);
  const int64_t started_kb = node->StatusKb("VmHWM").value_or(0);

  // `comity list` while the node verifies: the verify reads a snapshot of
  // its own and never holds the store's lock.
  std::atomic<bool> verifying{true};
  double slowest_list_s = 0;
  int lists = 0;
  std::thread lister([&] {
    const std::string dir = fr + "/lister";
    testing::RunShell(absl::StrCat("mkdir -p '", dir, "'"));
    const std::string alice = net.ClientConfigPath("FR", "alice");
    while (verifying) {
      CliRun list = RunCli({"--connect", alice, "list"}, dir);
      slowest_list_s = std::max(slowest_list_s, list.seconds);
      ++lists;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  CliRun verify = RunCli({"--connect", carol, "audit", "verify"}, fr);
  verifying = false;
  lister.join();
  const int64_t after_verify_kb = node->StatusKb("VmHWM").value_or(0);
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
  const uint64_t entries = static_cast<uint64_t>(n * kEntriesPerRequest);
  EXPECT_THAT(verify.out,
              HasSubstr(absl::StrCat(entries + 1, " entries")))  // NODE_STARTED.
      << verify.out;
  EXPECT_THAT(verify.out, HasSubstr("consistent")) << verify.out << verify.err;

  CliRun exported =
      RunCli({"--connect", carol, "audit", "export", "--out", fr + "/export"}, fr);
  const int64_t after_export_kb = node->StatusKb("VmHWM").value_or(0);
  EXPECT_EQ(exported.exit_code, 0) << exported.out << exported.err;
  EXPECT_THAT(exported.out, HasSubstr("consistent")) << exported.out << exported.err;

  // The export verified its bundle as `audit verify --bundle` does; the
  // bench runs that too.
  CliRun offline;
  if (std::getenv("COMITY_AUDIT_MEMORY_REQUESTS") != nullptr) {
    offline = RunCli({"audit", "verify", "--bundle", fr + "/export.bundle"}, fr);
    EXPECT_EQ(offline.exit_code, 0) << offline.out << offline.err;
    EXPECT_THAT(offline.out, HasSubstr("consistent")) << offline.out << offline.err;
  }

  std::printf(
      "## audit verify and export at %lld requests (%llu entries, %lld signed heads)\n\n"
      "| figure | measured |\n|---|---|\n"
      "| fill through the Store API | %.1f s |\n"
      "| comityd start until it answers | %.1f s |\n"
      "| node peak RSS after start | %.0f MB |\n"
      "| `audit verify` on the node | %.1f s |\n"
      "| node peak RSS after verify | %.0f MB |\n"
      "| CLI peak RSS, verify | %.0f MB |\n"
      "| `comity list` during the verify: slowest of %d | %.2f s |\n"
      "| `audit export` (stream, write, verify the bundle) | %.1f s |\n"
      "| node peak RSS after export | %.0f MB |\n"
      "| CLI peak RSS, export | %.0f MB |\n"
      "| `audit verify --bundle` offline | %.1f s, peak RSS %.0f MB |\n",
      static_cast<long long>(n), static_cast<unsigned long long>(entries),
      static_cast<long long>(n), fill_s, start_s, Mb(started_kb), verify.seconds,
      Mb(after_verify_kb), Mb(verify.max_rss_kb), lists, slowest_list_s, exported.seconds,
      Mb(after_export_kb), Mb(exported.max_rss_kb), offline.seconds,
      Mb(offline.max_rss_kb));
  std::fflush(stdout);

  EXPECT_LT(after_verify_kb, kBoundKb) << "the node's peak RSS during audit verify";
  EXPECT_LT(after_export_kb, kBoundKb) << "the node's peak RSS during audit export";
  EXPECT_LT(verify.max_rss_kb, kBoundKb) << "the CLI's peak RSS, audit verify";
  EXPECT_LT(exported.max_rss_kb, kBoundKb) << "the CLI's peak RSS, audit export";
  EXPECT_LT(offline.max_rss_kb, kBoundKb) << "the CLI's peak RSS, audit verify --bundle";
}

}  // namespace
}  // namespace comity
