// Audit log load generator: durable appends per second by transaction batch
// size, verify throughput over 1,000,000 entries, and proof times at that
// size. Real SQLite file (WAL, synchronous=FULL) in $TMPDIR.
//
//   build/bin/audit_bench [--entries N]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/audit/merkle.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/store/sqlite/sqlite_store.h"

namespace comity {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

v1::AuditEntry Entry(uint64_t i) {
  v1::AuditEntry e;
  e.set_time_unix_micros(1790000000000000 + static_cast<int64_t>(i));
  e.set_type(i % 2 ? v1::REQUEST_RECEIVED : v1::ASSESSMENT_MADE);
  e.set_actor("peer:JP");
  e.set_request_id("0f8fad5b-d9cb-469f-a165-70867728950e");
  e.set_party("JP");
  e.add_hashes(std::string(32, static_cast<char>(i)));
  e.set_detail("library 839e39fb1c14faa89a341d70f91bf5a0705342d32bca80da693c896d8456df6b");
  return e;
}

absl::Status AppendBatches(Store* store, uint64_t total, uint64_t batch,
                           const SigningKey* key) {
  for (uint64_t done = 0; done < total; done += batch) {
    absl::Status st = store->audit().Append([&](AuditWriter& w) -> absl::Status {
      for (uint64_t i = 0; i < batch; ++i) {
        v1::AuditEntry e = Entry(w.size());
        auto appended = w.Append(&e);
        if (!appended.ok()) return appended.status();
      }
      if (key == nullptr) return absl::OkStatus();
      v1::TreeHead head;
      head.set_party("FR");
      head.set_tree_size(w.size());
      head.set_root_hash(w.Root());
      auto signed_head =
          SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "FR", "FR-1", *key);
      if (!signed_head.ok()) return signed_head.status();
      return w.PutTreeHead(head, *signed_head);
    });
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

std::string TempDb(const char* name) {
  const char* base = std::getenv("TMPDIR");
  std::string dir = absl::StrCat(base ? base : "/tmp", "/comity-audit-bench-", getpid());
  (void)std::system(absl::StrCat("mkdir -p ", dir).c_str());
  std::string path = absl::StrCat(dir, "/", name, ".db");
  (void)std::system(absl::StrCat("rm -f ", path, "*").c_str());
  return path;
}

int Main(int argc, char** argv) {
  uint64_t big = 1000000;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--entries") big = std::strtoull(argv[i + 1], nullptr, 10);
  }
  auto key = SigningKey::Generate();
  if (!key.ok()) return 1;
  KeyRing keys;
  (void)keys.Add("FR", "FR-1", (*key)->public_key());

  std::printf("%-48s %14s\n", "audit log (SQLite WAL, synchronous=FULL)", "figure");
  // 1. Durable appends by batch size (each batch one fsync'd transaction).
  for (uint64_t batch : {1, 10, 100, 1000}) {
    auto store = OpenSqliteStore(TempDb(absl::StrCat("batch", batch).c_str()));
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      return 1;
    }
    const uint64_t total = batch == 1 ? 2000 : 20000;
    auto start = Clock::now();
    absl::Status st = AppendBatches(store->get(), total, batch, nullptr);
    double s = Seconds(start);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      return 1;
    }
    std::printf("%-48s %14.0f\n",
                absl::StrCat("durable appends/s, ", batch, " per transaction").c_str(),
                total / s);
  }
  // 2. A large log, with a signed head every 10,000 entries.
  const std::string path = TempDb("big");
  auto store = OpenSqliteStore(path);
  if (!store.ok()) return 1;
  auto start = Clock::now();
  absl::Status st = AppendBatches(store->get(), big, 10000, key->get());
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("%-48s %14.0f\n",
              absl::StrCat("durable appends/s building ", big, " entries").c_str(),
              big / Seconds(start));
  // 3. Verify everything: entries, stored hashes, heads.
  start = Clock::now();
  auto report = VerifyStoredLog((*store)->audit(), "FR", keys);
  double verify_s = Seconds(start);
  if (!report.ok() || !report->ok) {
    std::fprintf(stderr, "verify failed: %s\n",
                 report.ok() ? report->error.c_str() : report.status().ToString().c_str());
    return 1;
  }
  std::printf("%-48s %14.0f\n", absl::StrCat("verify entries/s over ", big).c_str(),
              big / verify_s);
  // 4. Proofs at that size.
  std::mt19937_64 rng(1);
  const int kProofs = 1000;
  start = Clock::now();
  for (int i = 0; i < kProofs; ++i) {
    auto proof = (*store)->audit().InclusionProofAt(rng() % big, big);
    if (!proof.ok()) return 1;
  }
  std::printf("%-48s %14.1f\n", "inclusion proof, us (mean of 1000)",
              Seconds(start) * 1e6 / kProofs);
  start = Clock::now();
  for (int i = 0; i < kProofs; ++i) {
    uint64_t old_size = 1 + rng() % (big - 1);
    auto proof = (*store)->audit().ConsistencyProofAt(old_size, big);
    if (!proof.ok()) return 1;
  }
  std::printf("%-48s %14.1f\n", "consistency proof, us (mean of 1000)",
              Seconds(start) * 1e6 / kProofs);
  (void)std::system(absl::StrCat("rm -rf $(dirname ", path, ")").c_str());
  return 0;
}

}  // namespace
}  // namespace comity

int main(int argc, char** argv) { return comity::Main(argc, argv); }
