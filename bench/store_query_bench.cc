// What the node's background duties and operators ask of a store that holds
// many requests, timed: the queries that replaced scans of the newest 1,000
// requests (docs/storage.md, "What the node watches"). Fills a SQLite store
// with N records through the Store API (synthetic, unsigned payloads: the
// store never parses them), of which a few have a deadline due, a few a
// response listing evidence, a few links; then times each query (median of
// repeated runs) and, for comparison, the scan the node made before.
//
//   build/bin/store_query_bench [--requests 1000000] [--dir /dev/shm] [--runs 50]
//
// The fill runs on tmpfs by default (one fsync'd transaction per call); the
// queries then run on the page cache, as on a node that has been running.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "bench/bench_support.h"
#include "google/protobuf/util/time_util.h"
#include "server/crypto/sha256.h"
#include "server/store/sqlite/sqlite_store.h"

namespace comity::bench {
namespace {

using google::protobuf::util::TimeUtil;
using Steady = std::chrono::steady_clock;

// Every kSparse-th record has something the duties look for.
constexpr int64_t kSparse = 1000;

std::string IdOf(int64_t i) { return absl::StrFormat("%08x-0000-4000-8000-%012x", i, i); }

v1::RequestRecord Record(v1::Direction dir, int64_t i, absl::Time at) {
  v1::RequestRecord r;
  r.set_direction(dir);
  r.set_state(dir == v1::OUTGOING ? v1::DELIVERED : v1::RECEIVED);
  r.set_case_state(v1::CASE_DELIVERED);
  r.mutable_request()->set_payload_type("comity.v1.RequestBody");
  r.mutable_request()->set_payload(absl::StrCat("request ", i, std::string(300, 'x')));
  r.mutable_request()->set_signer_party(dir == v1::OUTGOING ? "FR" : "JP");
  r.mutable_request()->set_signature(std::string(64, 's'));
  r.mutable_receipt()->set_payload(std::string(400, 'r'));
  *r.mutable_stored_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(at));
  *r.mutable_updated_at() = r.stored_at();
  return r;
}

int Fail(const absl::Status& st) {
  std::fprintf(stderr, "store_query_bench: %s\n", st.ToString().c_str());
  return 1;
}

template <typename Fn>
double MedianMs(int runs, Fn fn) {
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const auto start = Steady::now();
    fn();
    ms.push_back(
        std::chrono::duration<double, std::milli>(Steady::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

int Run(int argc, char** argv) {
  Flags flags(argc, argv);
  if (!flags.Unknown({"requests", "dir", "runs"}).empty() || flags.Has("help")) {
    std::fprintf(
        stderr,
        "usage: store_query_bench [--requests 1000000] [--dir /dev/shm] [--runs 50]\n");
    return 2;
  }
  const int64_t n = flags.GetInt("requests", 1000000, 1, 1000000000);
  const int runs = static_cast<int>(flags.GetInt("runs", 50, 1, 1000000));
  auto dir = MakeTempDir("comity-query-bench", flags.Get("dir", "/dev/shm"));
  if (!dir.ok()) return Fail(dir.status());
  const std::string path = *dir + "/comity.db";
  auto store = OpenSqliteStore(path);
  if (!store.ok()) return Fail(store.status());
  Store& s = **store;

  const absl::Time now = absl::Now();
  const absl::Time first = now - absl::Hours(24 * 30);
  std::fprintf(stderr, "filling %lld requests into %s...\n", static_cast<long long>(n),
               path.c_str());
  const auto fill_start = Steady::now();
  for (int64_t i = 0; i < n; ++i) {
    const absl::Time at = first + (now - first) * (static_cast<double>(i) / n);
    // Every kSparse-th received request, every kSparse-th sent one.
    const bool sparse = i % (2 * kSparse) == 0 || i % (2 * kSparse) == 1;
    absl::Status st;
    if (i % 2 == 0) {
      // Received: its case has a deadline; a few are due, most far ahead.
      v1::RequestRecord r = Record(v1::INCOMING, i, at);
      const absl::Time due = sparse ? now - absl::Hours(1) : now + absl::Hours(24 * 365);
      *r.mutable_next_deadline() =
          TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(due));
      bool inserted = false;
      st = s.requests()
               .InsertIncomingIfAbsent(
                   {IdOf(i), "JP", "FR"},
                   [&](AuditWriter&) -> absl::StatusOr<v1::RequestRecord> { return r; },
                   &inserted)
               .status();
    } else {
      // Sent: a few follow up an earlier one and got a response with a file.
      RecordKey key{IdOf(i), "FR", "JP"};
      if (sparse && i > 2) key.related_request_ids.push_back(IdOf(i - 2));
      st = s.requests().InsertOutgoing(key, Record(v1::OUTGOING, i, at));
      if (st.ok() && sparse) {
        v1::Transition t;
        t.set_request_id(IdOf(i));
        t.set_sequence(1);
        t.set_from_state(v1::CASE_DELIVERED);
        t.set_to_state(v1::CASE_EXECUTED);
        v1::EvidenceFile* f = t.add_evidence();
        f->set_name("logs.tar");
        f->set_sha256(Sha256(IdOf(i)));
        f->set_size(1000);
        v1::SignedEnvelope env;
        env.set_payload(t.SerializeAsString());
        st = s.cases().AppendTransition(IdOf(i), v1::OUTGOING, t, env, false, at,
                                        absl::InfiniteFuture());
      }
    }
    if (!st.ok()) return Fail(st);
    if ((i + 1) % 100000 == 0)
      std::fprintf(stderr, "  %lld\n", static_cast<long long>(i + 1));
  }
  const double fill_s = std::chrono::duration<double>(Steady::now() - fill_start).count();

  struct Row {
    std::string what;
    double ms;
    std::string result;
  };
  std::vector<Row> rows;
  auto time = [&](std::string what, auto fn) {
    std::string result;
    const double ms = MedianMs(runs, [&] { result = fn(); });
    rows.push_back({std::move(what), ms, std::move(result)});
  };
  time("deadline watch: cases due now (CaseStore::Due, 64)", [&] {
    auto due = s.cases().Due(now, 64);
    return due.ok() ? absl::StrCat(due->size(), " cases") : due.status().ToString();
  });
  time("overdue: every case with a deadline passed (WithDeadlineBefore, pages of 64)",
       [&] {
         size_t total = 0;
         std::optional<CaseRef> after;
         for (;;) {
           auto page = s.cases().WithDeadlineBefore(now, after ? &*after : nullptr, 64);
           if (!page.ok()) return page.status().ToString();
           total += page->size();
           if (page->size() < 64) break;
           after = page->back();
         }
         return absl::StrCat(total, " cases");
       });
  time("evidence fetcher: files due from JP (DueEvidence, 64)", [&] {
    auto due = s.cases().DueEvidence("JP", now, 64, absl::InfiniteFuture());
    return due.ok() ? absl::StrCat(due->size(), " files") : due.status().ToString();
  });
  time("chain: links of one request (Linked)", [&] {
    auto linked = s.requests().Linked(IdOf(2 * kSparse + 1));
    return linked.ok() ? absl::StrCat(linked->size(), " linked")
                       : linked.status().ToString();
  });
  time("list: the newest 100 (List)", [&] {
    ListQuery q;
    q.limit = 100;
    auto page = s.requests().List(q);
    return page.ok() ? absl::StrCat(page->records.size(), " records")
                     : page.status().ToString();
  });
  std::string deep_cursor;
  {
    ListQuery q;
    q.limit = 1000;
    for (int i = 0; i < 100; ++i) {
      auto page = s.requests().List(q);
      if (!page.ok()) return Fail(page.status());
      if (page->next_cursor.empty()) break;
      q.after = deep_cursor = page->next_cursor;
    }
  }
  time("list: 100 more from a cursor 100,000 deep (List)", [&] {
    ListQuery q;
    q.limit = 100;
    q.after = deep_cursor;
    auto page = s.requests().List(q);
    return page.ok() ? absl::StrCat(page->records.size(), " records")
                     : page.status().ToString();
  });
  time("get one request by id (Get)", [&] {
    auto got = s.requests().Get(IdOf(n / 2));
    return got.ok() ? absl::StrCat(got->size(), " records") : got.status().ToString();
  });
  time("before: the scan the duties made (newest 1,000 full rows)", [&] {
    ListQuery q;
    q.limit = 1000;
    auto page = s.requests().List(q);
    return page.ok() ? absl::StrCat(page->records.size(), " records")
                     : page.status().ToString();
  });

  std::printf("## Store queries at %lld stored requests (`store_query_bench`)\n\n",
              static_cast<long long>(n));
  std::printf(
      "%s, %u cores; SQLite on %s, filled in %.0f s (%.0f requests/s); median of %d "
      "runs. One received request in %lld has a deadline due, one sent request in %lld "
      "a file to fetch and a link.\n\n",
      CpuModel().c_str(), std::thread::hardware_concurrency(),
      flags.Get("dir", "/dev/shm").c_str(), fill_s, static_cast<double>(n) / fill_s, runs,
      static_cast<long long>(kSparse), static_cast<long long>(kSparse));
  std::printf("| query | result | median ms |\n|---|---|---|\n");
  for (const Row& r : rows)
    std::printf("| %s | %s | %.3f |\n", r.what.c_str(), r.result.c_str(), r.ms);
  store->reset();
  RunShell(absl::StrCat("rm -rf '", *dir, "'"));
  return 0;
}

}  // namespace
}  // namespace comity::bench

int main(int argc, char** argv) { return comity::bench::Run(argc, argv); }
