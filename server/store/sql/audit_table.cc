// AuditStore in SQL: audit_entries, audit_nodes, audit_heads, peer_heads
// (docs/audit_log.md, docs/storage.md); and the Store that wires the four
// aggregates over one Database.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "server/store/sql/rows.h"
#include "server/store/sql/schema.h"
#include "server/store/sql/sql_store.h"
#include "server/util/status_macros.h"

namespace comity::sql {
namespace {

// Rows read per statement when walking the whole log, so that a backend
// that materializes results (libpq) never holds more than a page.
constexpr int64_t kPage = 4096;

absl::Status CheckSize(Session& s, uint64_t size) {
  COMITY_ASSIGN_OR_RETURN(uint64_t have, LogSize(s));
  if (size > have) {
    return absl::InvalidArgumentError(
        absl::StrCat("the log has ", have, " entries, not ", size));
  }
  return absl::OkStatus();
}

}  // namespace

// Node hashes and heads read per statement beside the entries.
constexpr int64_t kNodePage = 4096;

namespace {

// Rows of stored data read per statement: envelopes are up to a few MiB.
constexpr int64_t kDataPage = 64;

class SqlSnapshot final : public AuditSnapshot {
 public:
  SqlSnapshot(Database* db, Session* s, uint64_t size) : db_(db), s_(s), size_(size) {}
  uint64_t size() const override { return size_; }

  absl::Status ForEachEntry(
      uint64_t from_index,
      const std::function<absl::Status(uint64_t, const std::string&)>& fn) override {
    int64_t from = static_cast<int64_t>(from_index);
    for (;;) {
      int64_t rows = 0;
      int64_t last = from - 1;
      COMITY_RETURN_IF_ERROR(s_->Query(
          "SELECT idx, entry FROM audit_entries WHERE idx >= $1 ORDER BY idx LIMIT $2",
          Params().Int(from).Int(kPage), [&](const Row& row) {
            ++rows;
            last = row.Int(0);
            return fn(static_cast<uint64_t>(last), row.Bytes(1));
          }));
      if (rows < kPage) return absl::OkStatus();
      from = last + 1;
    }
  }

  absl::Status ForEachNode(
      const std::function<absl::Status(int, uint64_t, const std::string&)>& fn) override {
    int64_t level = 0;
    int64_t from = 0;
    for (;;) {
      int64_t rows = 0;
      COMITY_RETURN_IF_ERROR(s_->Query(
          // A row value: a range seek on the primary key, each page.
          "SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) >= ($1, $2) "
          "ORDER BY level, idx LIMIT $3",
          Params().Int(level).Int(from).Int(kPage), [&](const Row& row) {
            ++rows;
            level = row.Int(0);
            from = row.Int(1) + 1;
            return fn(static_cast<int>(level), static_cast<uint64_t>(row.Int(1)),
                      row.Bytes(2));
          }));
      if (rows < kPage) return absl::OkStatus();
    }
  }

  absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> NodesAt(
      int level, uint64_t from_index, int64_t limit) override {
    std::vector<std::pair<uint64_t, std::string>> out;
    COMITY_RETURN_IF_ERROR(s_->Query(
        "SELECT idx, hash FROM audit_nodes WHERE level = $1 AND idx >= $2 ORDER BY idx LIMIT $3",
        Params().Int(level).Int(static_cast<int64_t>(from_index)).Int(limit),
        [&](const Row& row) {
          out.emplace_back(static_cast<uint64_t>(row.Int(0)), row.Bytes(1));
          return absl::OkStatus();
        }));
    return out;
  }

  absl::StatusOr<std::vector<StoredTreeHead>> TreeHeadsFrom(uint64_t from_size,
                                                           int64_t limit) override {
    std::vector<StoredTreeHead> out;
    COMITY_RETURN_IF_ERROR(s_->Query(
        "SELECT signed_head FROM audit_heads WHERE tree_size >= $1 ORDER BY tree_size LIMIT $2",
        Params().Int(static_cast<int64_t>(from_size)).Int(limit),
        [&](const Row& row) -> absl::Status {
          COMITY_ASSIGN_OR_RETURN(StoredTreeHead h, ReadHead(row, 0, "tree head"));
          out.push_back(std::move(h));
          return absl::OkStatus();
        }));
    return out;
  }

  absl::Status ForEachTreeHead(
      const std::function<absl::Status(StoredTreeHead)>& fn) override {
    int64_t from = 0;
    for (;;) {
      int64_t rows = 0;
      COMITY_RETURN_IF_ERROR(s_->Query(
          "SELECT signed_head, tree_size FROM audit_heads WHERE tree_size >= $1 ORDER BY "
          "tree_size LIMIT $2",
          Params().Int(from).Int(kPage), [&](const Row& row) -> absl::Status {
            ++rows;
            from = row.Int(1) + 1;
            COMITY_ASSIGN_OR_RETURN(StoredTreeHead h, ReadHead(row, 0, "tree head"));
            return fn(std::move(h));
          }));
      if (rows < kPage) return absl::OkStatus();
    }
  }

  absl::Status ForEachRequest(
      const std::function<absl::Status(const StoredRequestRow&)>& fn) override {
    std::string id;
    int64_t direction = -1;
    for (;;) {
      int64_t rows = 0;
      COMITY_RETURN_IF_ERROR(s_->Query(
          "SELECT request_id, direction, state, stored_at_us, request_envelope, "
          "payload_sha256, receipt_envelope FROM requests WHERE (request_id, direction) > "
          "($1, $2) ORDER BY request_id, direction LIMIT $3",
          Params().Text(id).Int(direction).Int(kDataPage), [&](const Row& row) {
            ++rows;
            StoredRequestRow r;
            r.request_id = row.Bytes(0);
            r.direction = static_cast<int>(row.Int(1));
            r.state = static_cast<int>(row.Int(2));
            r.stored_at_us = row.Int(3);
            r.request_envelope = row.Bytes(4);
            r.payload_sha256 = row.Bytes(5);
            r.receipt_envelope = row.Bytes(6);
            id = r.request_id;
            direction = r.direction;
            return fn(r);
          }));
      if (rows < kDataPage) return absl::OkStatus();
    }
  }

  absl::Status ForEachStep(
      const std::function<absl::Status(const StoredStepRow&)>& fn) override {
    std::string id;
    int64_t sequence = -1;
    for (;;) {
      int64_t rows = 0;
      COMITY_RETURN_IF_ERROR(s_->Query(
          "SELECT request_id, sequence, envelope, ack FROM transitions WHERE (request_id, "
          "sequence) > ($1, $2) ORDER BY request_id, sequence LIMIT $3",
          Params().Text(id).Int(sequence).Int(kDataPage), [&](const Row& row) {
            ++rows;
            StoredStepRow r;
            r.request_id = row.Bytes(0);
            r.sequence = row.Int(1);
            r.envelope = row.Bytes(2);
            r.ack = row.Bytes(3);
            id = r.request_id;
            sequence = r.sequence;
            return fn(r);
          }));
      if (rows < kDataPage) return absl::OkStatus();
    }
  }

  absl::Status ForEachStagedEvidence(
      const std::function<absl::Status(const std::string&, const std::string&)>& fn)
      override {
    std::string id;
    std::string sha256;
    for (;;) {
      int64_t rows = 0;
      COMITY_RETURN_IF_ERROR(s_->Query(
          "SELECT request_id, sha256 FROM staged_evidence WHERE (request_id, sha256) > ($1, "
          "$2) ORDER BY request_id, sha256 LIMIT $3",
          Params().Text(id).Blob(sha256).Int(kPage), [&](const Row& row) {
            ++rows;
            id = row.Bytes(0);
            sha256 = row.Bytes(1);
            return fn(id, sha256);
          }));
      if (rows < kPage) return absl::OkStatus();
    }
  }

  absl::Status CheckStorage() override { return db_->CheckIntegrity(*s_); }

 private:
  Database* db_;
  Session* s_;
  const uint64_t size_;
};

class SqlStore final : public Store {
 public:
  explicit SqlStore(std::unique_ptr<Database> db)
      : db_(std::move(db)),
        requests_(db_.get()),
        cases_(db_.get()),
        outbox_(db_.get()),
        audit_(db_.get()) {}

  RequestStore& requests() override { return requests_; }
  CaseStore& cases() override { return cases_; }
  OutboxStore& outbox() override { return outbox_; }
  AuditStore& audit() override { return audit_; }

  absl::StatusOr<int> SchemaVersion() override {
    int version = 0;
    COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
      COMITY_ASSIGN_OR_RETURN(version, sql::SchemaVersion(s));
      return absl::OkStatus();
    }));
    return version;
  }

  absl::StatusOr<BackupOrigin> Backup(const std::string& dest_path) override {
    BackupOrigin origin;
    origin.taken_at_us = ToMicros(absl::Now());
    COMITY_RETURN_IF_ERROR(
        db_->Backup(dest_path, origin.taken_at_us, &origin.audit_size));
    return origin;
  }

  absl::StatusOr<std::optional<BackupOrigin>> RestoredBackupOrigin() override {
    std::optional<BackupOrigin> origin;
    COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
      return s.Query(
          "SELECT taken_at_us, audit_size FROM backup_origin LIMIT 1", Params(),
          [&](const Row& row) {
            origin = BackupOrigin{row.Int(0), static_cast<uint64_t>(row.Int(1))};
            return absl::OkStatus();
          });
    }));
    return origin;
  }

  absl::Status ClearBackupOrigin() override {
    return db_->Write(false, [](Session& s, AuditWriter&) {
      return s.Exec("DELETE FROM backup_origin", Params()).status();
    });
  }

 private:
  std::unique_ptr<Database> db_;
  SqlRequestStore requests_;
  SqlCaseStore cases_;
  SqlOutboxStore outbox_;
  SqlAuditStore audit_;
};

}  // namespace

absl::Status SqlAuditStore::Append(const AuditFn& audit) {
  return db_->Write(true, [&](Session&, AuditWriter& w) { return audit(w); });
}

absl::StatusOr<uint64_t> SqlAuditStore::Size() {
  uint64_t size = 0;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(size, LogSize(s));
    return absl::OkStatus();
  }));
  return size;
}

absl::StatusOr<AuditEntryPage> SqlAuditStore::EntryPage(const AuditFilter& f) {
  Params p;
  p.Int(static_cast<int64_t>(f.from_index));
  std::string sql = "SELECT idx, entry FROM audit_entries WHERE idx >= $1";
  auto add = [&](const char* clause) { absl::StrAppend(&sql, clause, p.size()); };
  if (f.from_time_us != 0) {
    p.Int(f.from_time_us);
    add(" AND time_us >= $");
  }
  if (f.to_time_us != 0) {
    p.Int(f.to_time_us);
    add(" AND time_us < $");
  }
  if (!f.request_id.empty()) {
    p.Text(f.request_id);
    add(" AND request_id = $");
  }
  if (!f.party.empty()) {
    p.Text(f.party);
    add(" AND party = $");
  }
  if (!f.actor.empty()) {
    p.Text(f.actor);
    if (f.actor.find(':') == std::string::npos) {
      // A bare name ("alice") is also the operator's: as operator or as
      // auditor ("operator:alice", "auditor:alice").
      add(" AND (actor = $");
      p.Text("operator:" + f.actor);
      add(" OR actor = $");
      p.Text("auditor:" + f.actor);
      add(" OR actor = $");
      sql += ")";
    } else {
      add(" AND actor = $");
    }
  }
  if (f.type != 0) {
    p.Int(f.type);
    add(" AND type = $");
  }
  sql += " ORDER BY idx";
  if (f.limit != 0) {
    // One more than the page: whether another page follows.
    p.Int(static_cast<int64_t>(std::min<uint64_t>(f.limit, INT64_MAX - 1) + 1));
    add(" LIMIT $");
  }
  AuditEntryPage page;
  size_t bytes = 0;
  int64_t last = -1;
  bool full = false;
  const absl::Status kFull = absl::CancelledError("page full");
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
    absl::Status st = s.Query(sql, p, [&](const Row& row) -> absl::Status {
      std::string entry = row.Bytes(1);
      if ((f.limit != 0 && page.entries.size() == f.limit) ||
          (f.max_bytes != 0 && !page.entries.empty() &&
           bytes + entry.size() > f.max_bytes)) {
        full = true;
        return kFull;  // Stops the query: the rest is the next page's.
      }
      bytes += entry.size();
      last = row.Int(0);
      page.entries.push_back(std::move(entry));
      return absl::OkStatus();
    });
    return full ? absl::OkStatus() : st;
  }));
  if (full) page.next_index = static_cast<uint64_t>(last) + 1;
  return page;
}

absl::StatusOr<std::vector<std::string>> SqlAuditStore::Entries(const AuditFilter& f) {
  COMITY_ASSIGN_OR_RETURN(AuditEntryPage page, EntryPage(f));
  return std::move(page.entries);
}

absl::StatusOr<std::vector<StoredTreeHead>> SqlAuditStore::TreeHeads(uint64_t from_size,
                                                                     uint64_t limit) {
  std::vector<StoredTreeHead> out;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query(
        "SELECT signed_head FROM audit_heads WHERE tree_size >= $1 ORDER BY tree_size "
        "LIMIT $2",
        Params()
            .Int(static_cast<int64_t>(from_size))
            .Int(limit == 0 ? INT64_MAX : static_cast<int64_t>(limit)),
        [&](const Row& row) -> absl::Status {
          COMITY_ASSIGN_OR_RETURN(StoredTreeHead h, ReadHead(row, 0, "tree head"));
          out.push_back(std::move(h));
          return absl::OkStatus();
        });
  }));
  return out;
}

absl::StatusOr<std::optional<StoredTreeHead>> SqlAuditStore::LatestTreeHead() {
  std::optional<StoredTreeHead> out;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query("SELECT signed_head FROM audit_heads ORDER BY tree_size DESC LIMIT 1",
                   Params(), [&](const Row& row) -> absl::Status {
                     COMITY_ASSIGN_OR_RETURN(out, ReadHead(row, 0, "tree head"));
                     return absl::OkStatus();
                   });
  }));
  return out;
}

absl::StatusOr<std::string> SqlAuditStore::RootAt(uint64_t size) {
  std::string root;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
    COMITY_RETURN_IF_ERROR(CheckSize(s, size));
    COMITY_ASSIGN_OR_RETURN(root, merkle::RootHash(SessionNodeSource(&s), size));
    return absl::OkStatus();
  }));
  return root;
}

absl::StatusOr<std::vector<std::string>> SqlAuditStore::InclusionProofAt(uint64_t index,
                                                                         uint64_t size) {
  std::vector<std::string> proof;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
    COMITY_RETURN_IF_ERROR(CheckSize(s, size));
    COMITY_ASSIGN_OR_RETURN(proof,
                            merkle::InclusionProof(SessionNodeSource(&s), index, size));
    return absl::OkStatus();
  }));
  return proof;
}

absl::StatusOr<std::vector<std::string>> SqlAuditStore::ConsistencyProofAt(
    uint64_t old_size, uint64_t new_size) {
  std::vector<std::string> proof;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) -> absl::Status {
    COMITY_RETURN_IF_ERROR(CheckSize(s, new_size));
    COMITY_ASSIGN_OR_RETURN(
        proof, merkle::ConsistencyProof(SessionNodeSource(&s), old_size, new_size));
    return absl::OkStatus();
  }));
  return proof;
}

absl::Status SqlAuditStore::ReadSnapshot(
    const std::function<absl::Status(AuditSnapshot&)>& fn) {
  return db_->Snapshot([&](Session& s) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(uint64_t size, LogSize(s));
    SqlSnapshot snapshot(db_, &s, size);
    return fn(snapshot);
  });
}

absl::StatusOr<std::optional<StoredTreeHead>> SqlAuditStore::LatestPeerHead(
    const std::string& party) {
  std::optional<StoredTreeHead> out;
  COMITY_RETURN_IF_ERROR(db_->Read([&](Session& s) {
    return s.Query(
        "SELECT signed_head FROM peer_heads WHERE party = $1 ORDER BY tree_size DESC "
        "LIMIT 1",
        Params().Text(party), [&](const Row& row) -> absl::Status {
          COMITY_ASSIGN_OR_RETURN(out, ReadHead(row, 0, "peer tree head"));
          return absl::OkStatus();
        });
  }));
  return out;
}

absl::Status SqlAuditStore::PutPeerHead(const std::string& party, const StoredTreeHead& h,
                                        absl::Time received_at) {
  return db_->Write(false, [&](Session& s, AuditWriter&) {
    return s
        .Exec(
            "INSERT INTO peer_heads (party, tree_size, root, timestamp_us, signed_head, "
            "received_us) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            Params()
                .Text(party)
                .Int(static_cast<int64_t>(h.head.tree_size()))
                .Blob(h.head.root_hash())
                .Int(h.head.timestamp_unix_micros())
                .Blob(h.signed_head.SerializeAsString())
                .Int(ToMicros(received_at)))
        .status();
  });
}

std::unique_ptr<Store> NewSqlStore(std::unique_ptr<Database> db) {
  return std::make_unique<SqlStore>(std::move(db));
}

}  // namespace comity::sql

namespace comity {

namespace {

// The stored nodes of one level, a page at a time, walked beside the
// entries that complete them.
class NodeLevel {
 public:
  NodeLevel(AuditSnapshot* snap, int level) : snap_(snap), level_(level) {}
  // Checks the stored nodes up to `index` (completed by the last entry);
  // every one if `index` is UINT64_MAX (after the last entry).
  absl::Status CheckUpTo(uint64_t index, LogVerifier& verifier) {
    for (;;) {
      if (next_ == page_.size()) {
        if (done_) return absl::OkStatus();
        COMITY_ASSIGN_OR_RETURN(page_, snap_->NodesAt(level_, from_, sql::kNodePage));
        next_ = 0;
        done_ = static_cast<int64_t>(page_.size()) < sql::kNodePage;
        if (page_.empty()) return absl::OkStatus();
        from_ = page_.back().first + 1;
      }
      const auto& [stored, hash] = page_[next_];
      if (stored > index) return absl::OkStatus();
      verifier.CheckNode(level_, stored, hash);
      ++next_;
    }
  }

 private:
  AuditSnapshot* snap_;
  const int level_;
  std::vector<std::pair<uint64_t, std::string>> page_;
  size_t next_ = 0;
  uint64_t from_ = 0;
  bool done_ = false;
};

}  // namespace

absl::StatusOr<VerifyReport> VerifyStoredLog(AuditStore& store, const std::string& party,
                                             const KeyRing& keys,
                                             const VerifyProgressFn& progress) {
  LogVerifier verifier(party, &keys);
  CoverageChecker coverage(&keys);
  VerifyReport damaged;
  absl::Status read = store.ReadSnapshot([&](AuditSnapshot& snap) -> absl::Status {
    absl::Status storage = snap.CheckStorage();
    if (absl::IsDataLoss(storage)) {
      damaged.ok = false;
      damaged.error = std::string(storage.message());
      return absl::OkStatus();
    }
    COMITY_RETURN_IF_ERROR(storage);
    // One pass: the entries in order; beside them the stored nodes each
    // completes and the heads of each size reached, each a page at a time.
    std::vector<NodeLevel> levels;
    for (int level = 0; level < 64; ++level) levels.emplace_back(&snap, level);
    std::vector<StoredTreeHead> heads;
    size_t next_head = 0;
    uint64_t heads_from = 0;
    bool heads_done = false;
    auto check_heads = [&](bool all) -> absl::Status {
      for (;;) {
        if (next_head == heads.size()) {
          if (heads_done) return absl::OkStatus();
          COMITY_ASSIGN_OR_RETURN(heads, snap.TreeHeadsFrom(heads_from, sql::kNodePage));
          next_head = 0;
          heads_done = static_cast<int64_t>(heads.size()) < sql::kNodePage;
          if (heads.empty()) return absl::OkStatus();
          heads_from = heads.back().head.tree_size() + 1;
        }
        if (!all && heads[next_head].head.tree_size() > verifier.size()) return absl::OkStatus();
        verifier.CheckHead(heads[next_head].signed_head);
        ++next_head;
      }
    };
    COMITY_RETURN_IF_ERROR(check_heads(false));
    const uint64_t total = snap.size();
    COMITY_RETURN_IF_ERROR(
        snap.ForEachEntry(0, [&](uint64_t pos, const std::string& bytes) -> absl::Status {
          verifier.AddEntry(pos, bytes);
          coverage.AddEntry(pos, bytes);
          const uint64_t last = verifier.size() - 1;
          for (int level = 0; level < verifier.NodesCompleted(); ++level) {
            COMITY_RETURN_IF_ERROR(levels[level].CheckUpTo(last >> level, verifier));
          }
          if (progress && verifier.size() % kVerifyProgressEvery == 0) {
            progress(verifier.size(), total);
          }
          return check_heads(false);
        }));
    // What covers more than the log holds.
    for (NodeLevel& level : levels) COMITY_RETURN_IF_ERROR(level.CheckUpTo(UINT64_MAX, verifier));
    COMITY_RETURN_IF_ERROR(check_heads(true));
    COMITY_RETURN_IF_ERROR(snap.ForEachRequest([&](const StoredRequestRow& row) {
      coverage.CheckRequest(row);
      return absl::OkStatus();
    }));
    COMITY_RETURN_IF_ERROR(snap.ForEachStep([&](const StoredStepRow& row) {
      coverage.CheckStep(row);
      return absl::OkStatus();
    }));
    return snap.ForEachStagedEvidence([&](const std::string& id, const std::string& sha256) {
      coverage.CheckStagedEvidence(id, sha256);
      return absl::OkStatus();
    });
  });
  // A read the database itself fails (SQLite: "database disk image is
  // malformed") is a finding, not an error of the verification.
  if (absl::IsDataLoss(read)) {
    damaged.ok = false;
    damaged.error = absl::StrCat("the database is damaged: ", read.message());
  } else {
    COMITY_RETURN_IF_ERROR(read);
  }
  if (!damaged.ok) return damaged;
  VerifyReport report = verifier.Finish();
  coverage.Finish(&report);
  return report;
}

}  // namespace comity
