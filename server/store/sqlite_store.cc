#include "server/store/sqlite_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/util/time_util.h"
#include "server/audit/merkle.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "server/crypto/sha256.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace sqlite_internal {

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  int code = sqlite3_errcode(db);
  std::string msg = absl::StrCat(what, ": ", sqlite3_errmsg(db));
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_IOERR ||
      code == SQLITE_FULL) {
    return absl::UnavailableError(msg);
  }
  int extended = sqlite3_extended_errcode(db);
  if (extended == SQLITE_CONSTRAINT_PRIMARYKEY || extended == SQLITE_CONSTRAINT_UNIQUE) {
    return absl::AlreadyExistsError(msg);
  }
  return absl::InternalError(msg);
}

// A prepared statement, finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) {
      status_ = SqliteError(db, "prepare");
    }
  }
  // A statement from `cache`, prepared once and reset after use.
  Statement(sqlite3* db, std::map<const char*, sqlite3_stmt*>* cache, const char* sql)
      : db_(db), cached_(true) {
    sqlite3_stmt*& slot = (*cache)[sql];
    if (slot == nullptr && sqlite3_prepare_v2(db, sql, -1, &slot, nullptr) != SQLITE_OK) {
      status_ = SqliteError(db, "prepare");
      slot = nullptr;
    }
    stmt_ = slot;
  }
  ~Statement() {
    if (cached_) {
      if (stmt_ != nullptr) {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
      }
    } else {
      sqlite3_finalize(stmt_);
    }
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  const absl::Status& status() const { return status_; }
  Statement& Text(const std::string& s) {
    sqlite3_bind_text(stmt_, ++bound_, s.data(), static_cast<int>(s.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Blob(const std::string& s) {
    sqlite3_bind_blob(stmt_, ++bound_, s.data(), static_cast<int>(s.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Int(int64_t v) {
    sqlite3_bind_int64(stmt_, ++bound_, v);
    return *this;
  }
  Statement& Null() {
    sqlite3_bind_null(stmt_, ++bound_);
    return *this;
  }
  // SQLITE_ROW or SQLITE_DONE; other codes become an error status.
  absl::StatusOr<int> Step() {
    if (!status_.ok()) return status_;
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE) return rc;
    return SqliteError(db_, "step");
  }
  absl::Status Run() {
    auto rc = Step();
    return rc.ok() ? absl::OkStatus() : rc.status();
  }
  int64_t ColumnInt(int i) { return sqlite3_column_int64(stmt_, i); }
  bool ColumnIsNull(int i) { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }
  std::string ColumnBytes(int i) {
    const void* p = sqlite3_column_blob(stmt_, i);
    int n = sqlite3_column_bytes(stmt_, i);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  bool cached_ = false;
  absl::Status status_;
  int bound_ = 0;
};

}  // namespace sqlite_internal

using sqlite_internal::SqliteError;
using sqlite_internal::Statement;
namespace {

using google::protobuf::util::TimeUtil;

// Migration N (1-based) takes the schema from version N-1 to N. Append only;
// never edit a released migration. Documented in docs/storage.md.
constexpr const char* kMigrations[] = {
    // 1: requests, sent and received.
    R"sql(
CREATE TABLE requests (
  request_id         TEXT    NOT NULL,
  direction          INTEGER NOT NULL CHECK (direction IN (1, 2)),
  requesting_party   TEXT    NOT NULL,
  requested_party    TEXT    NOT NULL,
  state              INTEGER NOT NULL,
  request_envelope   BLOB    NOT NULL,
  payload_sha256     BLOB    NOT NULL,
  receipt_envelope   BLOB,
  submitted_by       TEXT    NOT NULL DEFAULT '',
  stored_at_us       INTEGER NOT NULL,
  updated_at_us      INTEGER NOT NULL,
  delivery_attempts  INTEGER NOT NULL DEFAULT 0,
  last_error         TEXT    NOT NULL DEFAULT '',
  next_attempt_at_us INTEGER,
  PRIMARY KEY (request_id, direction)
);
CREATE INDEX requests_by_time ON requests (direction, stored_at_us);
CREATE INDEX requests_due ON requests (state, next_attempt_at_us);
)sql",
    // 2: the audit log (docs/audit_log.md).
    R"sql(
CREATE TABLE audit_entries (
  idx        INTEGER PRIMARY KEY,
  time_us    INTEGER NOT NULL,
  type       INTEGER NOT NULL,
  actor      TEXT    NOT NULL,
  request_id TEXT    NOT NULL,
  party      TEXT    NOT NULL,
  entry      BLOB    NOT NULL
);
CREATE INDEX audit_by_request ON audit_entries (request_id);
CREATE TABLE audit_nodes (
  level INTEGER NOT NULL,
  idx   INTEGER NOT NULL,
  hash  BLOB    NOT NULL,
  PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE audit_heads (
  tree_size    INTEGER PRIMARY KEY,
  root         BLOB    NOT NULL,
  timestamp_us INTEGER NOT NULL,
  signed_head  BLOB    NOT NULL
);
CREATE TABLE peer_heads (
  party        TEXT    NOT NULL,
  tree_size    INTEGER NOT NULL,
  root         BLOB    NOT NULL,
  timestamp_us INTEGER NOT NULL,
  signed_head  BLOB    NOT NULL,
  received_us  INTEGER NOT NULL,
  PRIMARY KEY (party, tree_size)
);
)sql",
    // 3: two-person approval.
    R"sql(
ALTER TABLE requests ADD COLUMN approved_by TEXT NOT NULL DEFAULT '';
)sql",
    // 4: cases: state and signed transitions (docs/lifecycle.md).
    R"sql(
ALTER TABLE requests ADD COLUMN case_state INTEGER NOT NULL DEFAULT 0;
CREATE TABLE transitions (
  request_id         TEXT    NOT NULL,
  sequence           INTEGER NOT NULL,
  envelope           BLOB    NOT NULL,
  outbound           INTEGER NOT NULL,
  delivered          INTEGER NOT NULL DEFAULT 0,
  attempts           INTEGER NOT NULL DEFAULT 0,
  last_error         TEXT    NOT NULL DEFAULT '',
  next_attempt_at_us INTEGER,
  PRIMARY KEY (request_id, sequence)
);
CREATE INDEX transitions_due ON transitions (outbound, delivered, next_attempt_at_us);
)sql",
    // 5: the outbox: signed acknowledgements of delivered steps, and queued
    // proposals of the requesting party.
    R"sql(
ALTER TABLE transitions ADD COLUMN ack BLOB;
CREATE TABLE proposals (
  id                 INTEGER PRIMARY KEY AUTOINCREMENT,
  request_id         TEXT    NOT NULL,
  peer               TEXT    NOT NULL,
  envelope           BLOB    NOT NULL,
  queued_at_us       INTEGER NOT NULL,
  finished           INTEGER NOT NULL DEFAULT 0,
  outcome            TEXT    NOT NULL DEFAULT '',
  attempts           INTEGER NOT NULL DEFAULT 0,
  last_error         TEXT    NOT NULL DEFAULT '',
  next_attempt_at_us INTEGER NOT NULL
);
CREATE INDEX proposals_due ON proposals (finished, peer, next_attempt_at_us);
CREATE INDEX requests_due_by_peer ON requests (state, requested_party, next_attempt_at_us);
CREATE INDEX requests_by_stored_at ON requests (stored_at_us);
)sql",
};
constexpr int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kMigrationCount == SqliteStore::kSchemaVersion,
              "kSchemaVersion must equal the number of migrations");

constexpr const char* kColumns =
    "direction, state, request_envelope, receipt_envelope, submitted_by, "
    "stored_at_us, updated_at_us, delivery_attempts, last_error, next_attempt_at_us, "
    "approved_by, case_state";

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }


google::protobuf::Timestamp ToProto(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

absl::StatusOr<v1::RequestRecord> ReadRecord(Statement& st) {
  v1::RequestRecord r;
  r.set_direction(static_cast<v1::Direction>(st.ColumnInt(0)));
  r.set_state(static_cast<v1::RequestState>(st.ColumnInt(1)));
  if (!r.mutable_request()->ParseFromString(st.ColumnBytes(2))) {
    return absl::DataLossError("stored request envelope does not parse");
  }
  if (!st.ColumnIsNull(3) && !r.mutable_receipt()->ParseFromString(st.ColumnBytes(3))) {
    return absl::DataLossError("stored receipt envelope does not parse");
  }
  r.set_submitted_by(st.ColumnBytes(4));
  r.set_approved_by(st.ColumnBytes(10));
  r.set_case_state(static_cast<v1::CaseState>(st.ColumnInt(11)));
  *r.mutable_stored_at() = ToProto(st.ColumnInt(5));
  *r.mutable_updated_at() = ToProto(st.ColumnInt(6));
  r.set_delivery_attempts(static_cast<uint32_t>(st.ColumnInt(7)));
  r.set_last_error(st.ColumnBytes(8));
  if (!st.ColumnIsNull(9)) *r.mutable_next_attempt_at() = ToProto(st.ColumnInt(9));
  return r;
}

absl::StatusOr<std::vector<v1::RequestRecord>> ReadAll(Statement& st) {
  std::vector<v1::RequestRecord> out;
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) break;
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord r, ReadRecord(st));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

// Reads stored node hashes through the store's connection (inside or outside
// a transaction: the same connection sees its own uncommitted rows).
class SqliteNodeSource final : public merkle::NodeSource {
 public:
  SqliteNodeSource(sqlite3* db, std::map<const char*, sqlite3_stmt*>* cache)
      : db_(db), cache_(cache) {}
  absl::StatusOr<std::string> Node(int level, uint64_t index) const override {
    Statement st(db_, cache_, "SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?");
    st.Int(level).Int(static_cast<int64_t>(index));
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc != SQLITE_ROW) {
      return absl::NotFoundError(
          absl::StrCat("audit log node (level ", level, ", index ", index, ") is missing"));
    }
    return st.ColumnBytes(0);
  }

 private:
  sqlite3* db_;
  std::map<const char*, sqlite3_stmt*>* cache_;
};

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = absl::StrCat("cannot open database ", path, ": ",
                                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return absl::UnavailableError(msg);
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<SqliteStore> store(new SqliteStore(db));
  absl::MutexLock lock(&store->mu_);
  absl::Status st = store->Exec(
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; "
      // A 32 MiB page cache (the default is 2 MiB). No mmap: mapped pages
      // count in the process's RSS, which must stay small however large the
      // database grows (docs/performance.md).
      "PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY;");
  if (st.ok()) st = store->Migrate();
  if (st.ok()) st = store->LoadFrontier();
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("database ", path, ": ", st.message()));
  }
  return store;
}

SqliteStore::~SqliteStore() {
  absl::MutexLock lock(&mu_);
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

absl::Status SqliteStore::LoadFrontier() {
  Statement st(db_, "SELECT COALESCE(MAX(idx) + 1, 0), COUNT(*) FROM audit_entries");
  COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
  (void)rc;
  const uint64_t size = static_cast<uint64_t>(st.ColumnInt(0));
  if (static_cast<uint64_t>(st.ColumnInt(1)) != size) {
    // The node still starts, so that an auditor can run verify and see where.
    LogEvent(LogLevel::kError, "audit_log_damaged",
             {{"detail", absl::StrCat("the audit log has ", st.ColumnInt(1),
                                      " entries but its last index is ", size - 1,
                                      ": entries were removed; run 'comity audit verify'")}});
  }
  {
    Statement beyond(db_, "SELECT COALESCE(MAX(tree_size), 0) FROM audit_heads");
    COMITY_ASSIGN_OR_RETURN(int beyond_rc, beyond.Step());
    if (beyond_rc == SQLITE_ROW && static_cast<uint64_t>(beyond.ColumnInt(0)) > size) {
      LogEvent(LogLevel::kError, "audit_log_damaged",
               {{"detail", absl::StrCat("a signed tree head covers ", beyond.ColumnInt(0),
                                        " entries but the log has ", size,
                                        ": entries were removed; run 'comity audit verify'")}});
    }
  }
  auto frontier = merkle::Frontier::Load(SqliteNodeSource(db_, &statements_), size);
  if (!frontier.ok()) {
    return absl::DataLossError(absl::StrCat("cannot rebuild the audit log's Merkle tree: ",
                                            frontier.status().message()));
  }
  frontier_ = *std::move(frontier);
  return absl::OkStatus();
}

absl::Status SqliteStore::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status st = SqliteError(db_, err != nullptr ? err : "exec");
    sqlite3_free(err);
    return st;
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::Migrate() {
  COMITY_RETURN_IF_ERROR(Exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      "version INTEGER PRIMARY KEY, applied_at_us INTEGER NOT NULL)"));
  int current = 0;
  {
    Statement st(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_ROW) current = static_cast<int>(st.ColumnInt(0));
  }
  if (current > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "schema version ", current, " is newer than this build supports (",
        kSchemaVersion, "); run a newer comityd"));
  }
  for (int v = current + 1; v <= kSchemaVersion; ++v) {
    COMITY_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    absl::Status st = Exec(kMigrations[v - 1]);
    if (st.ok()) {
      Statement ins(db_, "INSERT INTO schema_migrations (version, applied_at_us) VALUES (?, ?)");
      st = ins.Int(v).Int(ToMicros(absl::Now())).Run();
    }
    if (st.ok()) st = Exec("COMMIT");
    if (!st.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return absl::Status(st.code(),
                          absl::StrCat("migration to schema ", v, " failed: ", st.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int> SqliteStore::SchemaVersion() {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
  return rc == SQLITE_ROW ? static_cast<int>(st.ColumnInt(0)) : 0;
}

absl::Status SqliteStore::InsertLocked(const RecordKey& key, const v1::RequestRecord& r) {
  Statement st(db_,
               "INSERT INTO requests (request_id, direction, requesting_party, "
               "requested_party, state, request_envelope, payload_sha256, "
               "receipt_envelope, submitted_by, stored_at_us, updated_at_us, "
               "delivery_attempts, last_error, next_attempt_at_us, case_state) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  st.Text(key.request_id)
      .Int(r.direction())
      .Text(key.requesting_party)
      .Text(key.requested_party)
      .Int(r.state())
      .Blob(r.request().SerializeAsString())
      .Blob(Sha256(r.request().payload()));
  if (r.has_receipt()) {
    st.Blob(r.receipt().SerializeAsString());
  } else {
    st.Null();
  }
  st.Text(r.submitted_by())
      .Int(TimeUtil::TimestampToMicroseconds(r.stored_at()))
      .Int(TimeUtil::TimestampToMicroseconds(r.updated_at()))
      .Int(r.delivery_attempts())
      .Text(r.last_error());
  if (r.has_next_attempt_at()) {
    st.Int(TimeUtil::TimestampToMicroseconds(r.next_attempt_at()));
  } else {
    st.Null();
  }
  st.Int(r.case_state());
  return st.Run();
}

class SqliteStore::Writer final : public AuditWriter {
 public:
  Writer(SqliteStore* store, merkle::Frontier frontier)
      : store_(store), frontier_(std::move(frontier)) {}

  absl::StatusOr<std::string> Append(v1::AuditEntry* entry) override
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    entry->set_index(frontier_.size());
    std::string bytes = SerializeDeterministic(*entry);
    created_.clear();
    frontier_.Append(merkle::LeafHash(bytes), &created_);
    sqlite3* db = store_->db_;
    Statement ins(db, &store_->statements_,
                  "INSERT INTO audit_entries (idx, time_us, type, actor, request_id, party, "
                  "entry) VALUES (?, ?, ?, ?, ?, ?, ?)");
    COMITY_RETURN_IF_ERROR(ins.Int(static_cast<int64_t>(entry->index()))
                               .Int(entry->time_unix_micros())
                               .Int(entry->type())
                               .Text(entry->actor())
                               .Text(entry->request_id())
                               .Text(entry->party())
                               .Blob(bytes)
                               .Run());
    for (const merkle::NodeRef& node : created_) {
      Statement put(db, &store_->statements_,
                    "INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)");
      absl::Status st =
          put.Int(node.level).Int(static_cast<int64_t>(node.index)).Blob(node.hash).Run();
      if (absl::IsAlreadyExists(st)) {
        return absl::DataLossError(absl::StrCat(
            "the audit log is damaged: hashes exist beyond its ", entry->index(),
            " entries (entries were removed); run 'comity audit verify' and restore from "
            "backup"));
      }
      COMITY_RETURN_IF_ERROR(st);
    }
    return bytes;
  }
  uint64_t size() const override { return frontier_.size(); }
  std::string Root() const override { return frontier_.Root(); }
  absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index,
                                                          uint64_t size) const override
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return merkle::InclusionProof(SqliteNodeSource(store_->db_, &store_->statements_), index,
                                  size);
  }
  absl::Status PutTreeHead(const v1::TreeHead& head,
                           const v1::SignedEnvelope& signed_head) override
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    Statement put(store_->db_, &store_->statements_,
                  "INSERT OR IGNORE INTO audit_heads (tree_size, root, timestamp_us, "
                  "signed_head) VALUES (?, ?, ?, ?)");
    return put.Int(static_cast<int64_t>(head.tree_size()))
        .Blob(head.root_hash())
        .Int(head.timestamp_unix_micros())
        .Blob(signed_head.SerializeAsString())
        .Run();
  }
  merkle::Frontier& frontier() { return frontier_; }

 private:
  SqliteStore* store_;
  merkle::Frontier frontier_;
  std::vector<merkle::NodeRef> created_;
};

absl::Status SqliteStore::InTransaction(const std::function<absl::Status(Writer&)>& body) {
  // Group commit: callers queue their transaction; one of them (the
  // leader) runs everything queued in one SQLite transaction, each body in
  // its own savepoint, and one fsync'd COMMIT makes them all durable. The
  // others wait, then return their own body's result.
  PendingTransaction me{&body, absl::OkStatus(), false};
  commit_mu_.Lock();
  commit_queue_.push_back(&me);
  auto my_turn = [this, &me]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_) {
    return me.done || !leader_active_;
  };
  commit_mu_.Await(absl::Condition(&my_turn));
  if (me.done) {
    commit_mu_.Unlock();
    return me.result;
  }
  leader_active_ = true;
  std::vector<PendingTransaction*> batch;
  batch.swap(commit_queue_);
  commit_mu_.Unlock();
  {
    absl::MutexLock lock(&mu_);
    CommitBatch(batch);
  }
  commit_mu_.Lock();
  for (PendingTransaction* t : batch) t->done = true;
  leader_active_ = false;
  commit_mu_.Unlock();
  return me.result;
}

void SqliteStore::CommitBatch(const std::vector<PendingTransaction*>& batch) {
  absl::Status begun = Exec("BEGIN IMMEDIATE");
  if (!begun.ok()) {
    for (PendingTransaction* t : batch) t->result = begun;
    return;
  }
  const merkle::Frontier before = frontier_;
  bool any = false;
  for (PendingTransaction* t : batch) {
    absl::Status st = Exec("SAVEPOINT txn");
    if (st.ok()) {
      Writer writer(this, frontier_);
      st = (*t->body)(writer);
      if (st.ok()) {
        st = Exec("RELEASE txn");
        if (st.ok()) {
          frontier_ = writer.frontier();
          any = true;
        }
      }
      if (!st.ok()) {
        Exec("ROLLBACK TO txn").IgnoreError();
        Exec("RELEASE txn").IgnoreError();
      }
    }
    t->result = st;
  }
  absl::Status committed = any ? Exec("COMMIT") : Exec("ROLLBACK");
  if (!committed.ok()) {
    Exec("ROLLBACK").IgnoreError();
    frontier_ = before;
    for (PendingTransaction* t : batch) {
      if (t->result.ok()) t->result = committed;
    }
  }
}

absl::Status SqliteStore::InsertOutgoing(const RecordKey& key, const v1::RequestRecord& record,
                                         const AuditFn& audit) {
  absl::Status st = InTransaction([&](Writer& w) -> absl::Status {
    COMITY_RETURN_IF_ERROR(InsertLocked(key, record));
    return audit ? audit(w) : absl::OkStatus();
  });
  if (absl::IsAlreadyExists(st)) {
    return absl::AlreadyExistsError(
        absl::StrCat("request ", key.request_id, " is already stored"));
  }
  return st;
}

absl::StatusOr<v1::RequestRecord> SqliteStore::InsertIncomingIfAbsent(
    const RecordKey& key,
    const std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)>& build,
    bool* inserted) {
  v1::RequestRecord result;
  absl::Status status = InTransaction([&](Writer& w) -> absl::Status {
    static const std::string kSql =
        absl::StrCat("SELECT ", kColumns, " FROM requests WHERE request_id = ? AND direction = 2");
    Statement sel(db_, &statements_, kSql.c_str());
    sel.Text(key.request_id);
    COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> existing, ReadAll(sel));
    if (!existing.empty()) {
      *inserted = false;
      result = std::move(existing[0]);
      return absl::OkStatus();
    }
    COMITY_ASSIGN_OR_RETURN(result, build(w));
    COMITY_RETURN_IF_ERROR(InsertLocked(key, result));
    *inserted = true;
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return result;
}

absl::Status SqliteStore::UpdateOutgoing(const std::string& request_id, const char* sql,
                                         const std::function<void(Statement&)>& bind,
                                         const AuditFn& audit) {
  return InTransaction([&](Writer& w) -> absl::Status {
    Statement st(db_, &statements_, sql);  // `sql` is a literal: cached by address.
    bind(st);
    COMITY_RETURN_IF_ERROR(st.Text(request_id).Int(v1::PENDING_DELIVERY).Run());
    if (sqlite3_changes(db_) != 1) {
      return absl::NotFoundError(
          absl::StrCat("no outgoing request ", request_id, " pending delivery"));
    }
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status SqliteStore::MarkApproved(const std::string& request_id,
                                       const v1::SignedEnvelope& signed_request,
                                       const std::string& approver, absl::Time now,
                                       const AuditFn& audit) {
  return InTransaction([&](Writer& w) -> absl::Status {
    Statement st(db_,
                 "UPDATE requests SET state = ?, request_envelope = ?, payload_sha256 = ?, "
                 "approved_by = ?, updated_at_us = ?, next_attempt_at_us = ? "
                 "WHERE request_id = ? AND direction = 1 AND state = ?");
    COMITY_RETURN_IF_ERROR(st.Int(v1::PENDING_DELIVERY)
                               .Blob(signed_request.SerializeAsString())
                               .Blob(Sha256(signed_request.payload()))
                               .Text(approver)
                               .Int(ToMicros(now))
                               .Int(ToMicros(now))
                               .Text(request_id)
                               .Int(v1::AWAITING_APPROVAL)
                               .Run());
    if (sqlite3_changes(db_) != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("request ", request_id, " is not awaiting approval"));
    }
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status SqliteStore::MarkDelivered(const std::string& request_id,
                                        const v1::SignedEnvelope& receipt, absl::Time now,
                                        const AuditFn& audit) {
  return UpdateOutgoing(
      request_id,
      "UPDATE requests SET state = ?, receipt_envelope = ?, updated_at_us = ?, "
      "delivery_attempts = delivery_attempts + 1, last_error = '', case_state = 1, "
      "next_attempt_at_us = NULL WHERE request_id = ? AND direction = 1 AND state = ?",
      [&](Statement& st) {
        st.Int(v1::DELIVERED).Blob(receipt.SerializeAsString()).Int(ToMicros(now));
      },
      audit);
}

absl::Status SqliteStore::MarkDeliveryFailed(const std::string& request_id,
                                             const std::string& error, absl::Time now,
                                             absl::Time next_attempt_at, const AuditFn& audit) {
  return UpdateOutgoing(
      request_id,
      "UPDATE requests SET updated_at_us = ?, delivery_attempts = delivery_attempts + 1, "
      "last_error = ?, next_attempt_at_us = ? WHERE request_id = ? AND direction = 1 AND "
      "state = ?",
      [&](Statement& st) { st.Int(ToMicros(now)).Text(error).Int(ToMicros(next_attempt_at)); },
      audit);
}

absl::Status SqliteStore::MarkRejected(const std::string& request_id, const std::string& error,
                                       absl::Time now, const AuditFn& audit) {
  return UpdateOutgoing(
      request_id,
      "UPDATE requests SET state = ?, updated_at_us = ?, delivery_attempts = "
      "delivery_attempts + 1, last_error = ?, next_attempt_at_us = NULL "
      "WHERE request_id = ? AND direction = 1 AND state = ?",
      [&](Statement& st) { st.Int(v1::DELIVERY_REJECTED).Int(ToMicros(now)).Text(error); },
      audit);
}

// --- Audit log reads. ---

absl::Status SqliteStore::Audit(const AuditFn& audit) {
  return InTransaction([&](Writer& w) { return audit(w); });
}

absl::StatusOr<uint64_t> SqliteStore::AuditSize() {
  absl::MutexLock lock(&mu_);
  return frontier_.size();
}

absl::StatusOr<std::vector<std::string>> SqliteStore::AuditEntries(const AuditFilter& f) {
  absl::MutexLock lock(&mu_);
  std::string sql = "SELECT entry FROM audit_entries WHERE idx >= ?";
  if (f.from_time_us != 0) sql += " AND time_us >= ?";
  if (f.to_time_us != 0) sql += " AND time_us < ?";
  if (!f.request_id.empty()) sql += " AND request_id = ?";
  if (!f.party.empty()) sql += " AND party = ?";
  if (!f.actor.empty()) sql += " AND actor = ?";
  if (f.type != 0) sql += " AND type = ?";
  sql += " ORDER BY idx";
  if (f.limit != 0) sql += " LIMIT ?";
  Statement st(db_, sql);
  st.Int(static_cast<int64_t>(f.from_index));
  if (f.from_time_us != 0) st.Int(f.from_time_us);
  if (f.to_time_us != 0) st.Int(f.to_time_us);
  if (!f.request_id.empty()) st.Text(f.request_id);
  if (!f.party.empty()) st.Text(f.party);
  if (!f.actor.empty()) st.Text(f.actor);
  if (f.type != 0) st.Int(f.type);
  if (f.limit != 0) st.Int(static_cast<int64_t>(f.limit));
  std::vector<std::string> out;
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) break;
    out.push_back(st.ColumnBytes(0));
  }
  return out;
}

absl::StatusOr<std::vector<StoredTreeHead>> SqliteStore::TreeHeads() {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "SELECT signed_head FROM audit_heads ORDER BY tree_size");
  std::vector<StoredTreeHead> out;
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) break;
    StoredTreeHead h;
    if (!h.signed_head.ParseFromString(st.ColumnBytes(0)) ||
        !h.head.ParseFromString(h.signed_head.payload())) {
      return absl::DataLossError("a stored tree head does not parse");
    }
    out.push_back(std::move(h));
  }
  return out;
}

absl::StatusOr<std::string> SqliteStore::RootAt(uint64_t size) {
  absl::MutexLock lock(&mu_);
  if (size > frontier_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the log has ", frontier_.size(), " entries, not ", size));
  }
  return merkle::RootHash(SqliteNodeSource(db_, &statements_), size);
}

absl::StatusOr<std::vector<std::string>> SqliteStore::InclusionProofAt(uint64_t index,
                                                                       uint64_t size) {
  absl::MutexLock lock(&mu_);
  if (size > frontier_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the log has ", frontier_.size(), " entries, not ", size));
  }
  return merkle::InclusionProof(SqliteNodeSource(db_, &statements_), index, size);
}

absl::StatusOr<std::vector<std::string>> SqliteStore::ConsistencyProofAt(uint64_t old_size,
                                                                         uint64_t new_size) {
  absl::MutexLock lock(&mu_);
  if (new_size > frontier_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the log has ", frontier_.size(), " entries, not ", new_size));
  }
  return merkle::ConsistencyProof(SqliteNodeSource(db_, &statements_), old_size, new_size);
}

absl::Status SqliteStore::ForEachAuditEntry(
    const std::function<absl::Status(uint64_t, const std::string&)>& fn) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "SELECT idx, entry FROM audit_entries ORDER BY idx");
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) return absl::OkStatus();
    COMITY_RETURN_IF_ERROR(fn(static_cast<uint64_t>(st.ColumnInt(0)), st.ColumnBytes(1)));
  }
}

absl::StatusOr<std::optional<StoredTreeHead>> SqliteStore::LatestTreeHead() {
  absl::MutexLock lock(&mu_);
  Statement st(db_, &statements_,
               "SELECT signed_head FROM audit_heads ORDER BY tree_size DESC LIMIT 1");
  COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
  if (rc != SQLITE_ROW) return std::optional<StoredTreeHead>();
  StoredTreeHead h;
  if (!h.signed_head.ParseFromString(st.ColumnBytes(0)) ||
      !h.head.ParseFromString(h.signed_head.payload())) {
    return absl::DataLossError("a stored tree head does not parse");
  }
  return std::optional<StoredTreeHead>(std::move(h));
}

absl::Status SqliteStore::ForEachAuditNode(
    const std::function<absl::Status(int, uint64_t, const std::string&)>& fn) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, "SELECT level, idx, hash FROM audit_nodes");
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) return absl::OkStatus();
    COMITY_RETURN_IF_ERROR(fn(static_cast<int>(st.ColumnInt(0)),
                              static_cast<uint64_t>(st.ColumnInt(1)), st.ColumnBytes(2)));
  }
}

absl::StatusOr<std::optional<StoredTreeHead>> SqliteStore::LatestPeerHead(
    const std::string& party) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "SELECT signed_head FROM peer_heads WHERE party = ? ORDER BY tree_size DESC "
               "LIMIT 1");
  st.Text(party);
  COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
  if (rc != SQLITE_ROW) return std::optional<StoredTreeHead>();
  StoredTreeHead h;
  if (!h.signed_head.ParseFromString(st.ColumnBytes(0)) ||
      !h.head.ParseFromString(h.signed_head.payload())) {
    return absl::DataLossError("a stored peer tree head does not parse");
  }
  return std::optional<StoredTreeHead>(std::move(h));
}

absl::Status SqliteStore::PutPeerHead(const std::string& party, const StoredTreeHead& h) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "INSERT OR IGNORE INTO peer_heads (party, tree_size, root, timestamp_us, "
               "signed_head, received_us) VALUES (?, ?, ?, ?, ?, ?)");
  return st.Text(party)
      .Int(static_cast<int64_t>(h.head.tree_size()))
      .Blob(h.head.root_hash())
      .Int(h.head.timestamp_unix_micros())
      .Blob(h.signed_head.SerializeAsString())
      .Int(ToMicros(absl::Now()))
      .Run();
}

absl::StatusOr<std::vector<v1::RequestRecord>> SqliteStore::Get(
    const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  static const std::string kSql =
      absl::StrCat("SELECT ", kColumns, " FROM requests WHERE request_id = ? ORDER BY direction");
  Statement st(db_, &statements_, kSql.c_str());
  st.Text(request_id);
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, ReadAll(st));
  if (records.empty()) return records;
  Statement tr(db_, &statements_,
               "SELECT envelope FROM transitions WHERE request_id = ? ORDER BY sequence");
  tr.Text(request_id);
  std::vector<v1::SignedEnvelope> transitions;
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, tr.Step());
    if (rc == SQLITE_DONE) break;
    v1::SignedEnvelope env;
    if (!env.ParseFromString(tr.ColumnBytes(0))) {
      return absl::DataLossError("a stored transition does not parse");
    }
    transitions.push_back(std::move(env));
  }
  for (auto& r : records) {
    for (const auto& t : transitions) *r.add_transitions() = t;
  }
  return records;
}

absl::StatusOr<std::map<std::string, std::pair<uint32_t, uint32_t>>>
SqliteStore::QueueDepths() {
  absl::MutexLock lock(&mu_);
  std::map<std::string, std::pair<uint32_t, uint32_t>> out;
  {
    Statement st(db_,
                 "SELECT requested_party, COUNT(*) FROM requests WHERE direction = 1 AND "
                 "state = ? GROUP BY requested_party");
    st.Int(v1::PENDING_DELIVERY);
    while (true) {
      COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
      if (rc == SQLITE_DONE) break;
      out[st.ColumnBytes(0)].first = static_cast<uint32_t>(st.ColumnInt(1));
    }
  }
  Statement st(db_,
               "SELECT r.requesting_party, COUNT(*) FROM transitions t JOIN requests r ON "
               "r.request_id = t.request_id AND r.direction = 2 WHERE t.outbound = 1 AND "
               "t.delivered = 0 GROUP BY r.requesting_party "
               "UNION ALL SELECT peer, COUNT(*) FROM proposals WHERE finished = 0 GROUP BY peer");
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) break;
    out[st.ColumnBytes(0)].second += static_cast<uint32_t>(st.ColumnInt(1));
  }
  return out;
}

absl::Status SqliteStore::AppendTransition(const std::string& request_id, v1::Direction row,
                                           const v1::Transition& t,
                                           const v1::SignedEnvelope& signed_transition,
                                           bool outbound, absl::Time now, const AuditFn& audit) {
  return InTransaction([&](Writer& w) -> absl::Status {
    Statement cur(db_,
                  "SELECT case_state, (SELECT COALESCE(MAX(sequence), 0) FROM transitions "
                  "WHERE request_id = ?1) FROM requests WHERE request_id = ?1 AND direction = ?2");
    cur.Text(request_id).Int(row);
    COMITY_ASSIGN_OR_RETURN(int rc, cur.Step());
    if (rc != SQLITE_ROW) {
      return absl::NotFoundError(absl::StrCat("no request ", request_id, " on this node"));
    }
    const int64_t state = cur.ColumnInt(0);
    const int64_t last = cur.ColumnInt(1);
    if (static_cast<int64_t>(t.sequence()) != last + 1 || state != t.from_state()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transition ", t.sequence(), " (", v1::CaseState_Name(t.from_state()), " -> ",
          v1::CaseState_Name(t.to_state()), ") does not follow the case as stored here: step ",
          last, ", state ", v1::CaseState_Name(static_cast<v1::CaseState>(state))));
    }
    Statement ins(db_,
                  "INSERT INTO transitions (request_id, sequence, envelope, outbound, "
                  "next_attempt_at_us) VALUES (?, ?, ?, ?, ?)");
    ins.Text(request_id)
        .Int(t.sequence())
        .Blob(signed_transition.SerializeAsString())
        .Int(outbound ? 1 : 0);
    if (outbound) {
      ins.Int(ToMicros(now));
    } else {
      ins.Null();
    }
    COMITY_RETURN_IF_ERROR(ins.Run());
    Statement upd(db_,
                  "UPDATE requests SET case_state = ?, updated_at_us = ? WHERE request_id = ? "
                  "AND direction = ?");
    COMITY_RETURN_IF_ERROR(
        upd.Int(t.to_state()).Int(ToMicros(now)).Text(request_id).Int(row).Run());
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::StatusOr<std::vector<PendingTransition>> SqliteStore::DueTransitions(
    const std::string& peer, absl::Time now, int limit) {
  absl::MutexLock lock(&mu_);
  // Only the earliest undelivered step of each case: a later one waits
  // until the peer has acknowledged it, whatever their retry times.
  Statement st(db_, &statements_,
               "SELECT t.request_id, t.sequence, t.envelope, t.attempts FROM transitions t "
               "JOIN requests r ON r.request_id = t.request_id AND r.direction = 2 "
               "WHERE t.outbound = 1 AND t.delivered = 0 AND t.next_attempt_at_us <= ?1 "
               "AND (?2 = '' OR r.requesting_party = ?2) AND NOT EXISTS (SELECT 1 FROM "
               "transitions e WHERE e.request_id = t.request_id AND e.outbound = 1 AND "
               "e.delivered = 0 AND e.sequence < t.sequence) "
               "ORDER BY t.next_attempt_at_us, t.request_id LIMIT ?3");
  st.Int(ToMicros(now)).Text(peer).Int(limit);
  std::vector<PendingTransition> out;
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) break;
    PendingTransition p;
    p.request_id = st.ColumnBytes(0);
    p.sequence = static_cast<uint32_t>(st.ColumnInt(1));
    if (!p.envelope.ParseFromString(st.ColumnBytes(2))) {
      return absl::DataLossError("a stored transition does not parse");
    }
    p.attempts = static_cast<uint32_t>(st.ColumnInt(3));
    out.push_back(std::move(p));
  }
  return out;
}

absl::Status SqliteStore::MarkTransitionDelivered(const std::string& request_id,
                                                  uint32_t sequence,
                                                  const v1::SignedEnvelope& ack,
                                                  const AuditFn& audit) {
  return InTransaction([&](Writer& w) -> absl::Status {
    Statement st(db_, &statements_,
                 "UPDATE transitions SET delivered = 1, attempts = attempts + 1, "
                 "last_error = '', next_attempt_at_us = NULL, ack = ? WHERE request_id = ? AND "
                 "sequence = ? AND outbound = 1 AND delivered = 0");
    COMITY_RETURN_IF_ERROR(st.Blob(ack.SerializeAsString()).Text(request_id).Int(sequence).Run());
    if (sqlite3_changes(db_) != 1) return absl::OkStatus();  // Already delivered.
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status SqliteStore::MarkTransitionFailed(const std::string& request_id,
                                               uint32_t sequence, const std::string& error,
                                               absl::Time next_attempt_at) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "UPDATE transitions SET attempts = attempts + 1, last_error = ?, "
               "next_attempt_at_us = ? WHERE request_id = ? AND sequence = ? AND outbound = 1");
  return st.Text(error).Int(ToMicros(next_attempt_at)).Text(request_id).Int(sequence).Run();
}

absl::StatusOr<std::vector<v1::RequestRecord>> SqliteStore::List(v1::Direction direction,
                                                                 int limit) {
  absl::MutexLock lock(&mu_);
  std::string sql = absl::StrCat("SELECT ", kColumns, " FROM requests");
  if (direction != v1::DIRECTION_UNSPECIFIED) sql += " WHERE direction = ?";
  sql += " ORDER BY stored_at_us DESC, request_id LIMIT ?";
  Statement st(db_, sql);
  if (direction != v1::DIRECTION_UNSPECIFIED) st.Int(direction);
  st.Int(limit);
  return ReadAll(st);
}

absl::StatusOr<std::vector<v1::RequestRecord>> SqliteStore::DueForDelivery(
    const std::string& peer, absl::Time now, int limit) {
  absl::MutexLock lock(&mu_);
  // Two statements rather than "(? = '' OR ...)", which would keep SQLite
  // from using the per-peer index; and the index named, because for
  // "ORDER BY stored_at_us LIMIT n" the planner prefers walking every
  // request in time order (e2e_bench: a third of a node's CPU at 200 req/s).
  static const std::string kAll = absl::StrCat(
      "SELECT ", kColumns,
      " FROM requests INDEXED BY requests_due WHERE state = ?1 AND direction = 1 "
      "AND (next_attempt_at_us IS NULL OR next_attempt_at_us <= ?2) "
      "ORDER BY stored_at_us LIMIT ?3");
  static const std::string kPeer = absl::StrCat(
      "SELECT ", kColumns,
      " FROM requests INDEXED BY requests_due_by_peer WHERE state = ?1 AND "
      "requested_party = ?2 AND direction = 1 "
      "AND (next_attempt_at_us IS NULL OR next_attempt_at_us <= ?3) "
      "ORDER BY stored_at_us LIMIT ?4");
  if (peer.empty()) {
    Statement st(db_, &statements_, kAll.c_str());
    st.Int(v1::PENDING_DELIVERY).Int(ToMicros(now)).Int(limit);
    return ReadAll(st);
  }
  Statement st(db_, &statements_, kPeer.c_str());
  st.Int(v1::PENDING_DELIVERY).Text(peer).Int(ToMicros(now)).Int(limit);
  return ReadAll(st);
}

namespace {

absl::StatusOr<std::vector<PendingProposal>> ReadProposals(Statement& st) {
  std::vector<PendingProposal> out;
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) break;
    PendingProposal p;
    p.id = st.ColumnInt(0);
    p.request_id = st.ColumnBytes(1);
    p.peer = st.ColumnBytes(2);
    if (!p.envelope.ParseFromString(st.ColumnBytes(3))) {
      return absl::DataLossError("a queued proposal does not parse");
    }
    p.attempts = static_cast<uint32_t>(st.ColumnInt(4));
    p.last_error = st.ColumnBytes(5);
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace

absl::StatusOr<int64_t> SqliteStore::EnqueueProposal(const std::string& request_id,
                                                     const std::string& peer,
                                                     const v1::SignedEnvelope& proposal,
                                                     absl::Time now, const AuditFn& audit) {
  int64_t id = 0;
  COMITY_RETURN_IF_ERROR(InTransaction([&](Writer& w) -> absl::Status {
    Statement queued(db_, &statements_,
                     "SELECT COUNT(*) FROM proposals WHERE request_id = ? AND finished = 0");
    queued.Text(request_id);
    COMITY_RETURN_IF_ERROR(queued.Step().status());
    if (queued.ColumnInt(0) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "request ", request_id, " already has a proposal queued for ", peer,
          "; the next step can be proposed once that one is delivered (see 'comity peers')"));
    }
    Statement ins(db_, &statements_,
                  "INSERT INTO proposals (request_id, peer, envelope, queued_at_us, "
                  "next_attempt_at_us) VALUES (?, ?, ?, ?, ?)");
    COMITY_RETURN_IF_ERROR(ins.Text(request_id)
                               .Text(peer)
                               .Blob(proposal.SerializeAsString())
                               .Int(ToMicros(now))
                               .Int(ToMicros(now))
                               .Run());
    id = sqlite3_last_insert_rowid(db_);
    return audit ? audit(w) : absl::OkStatus();
  }));
  return id;
}

absl::StatusOr<std::vector<PendingProposal>> SqliteStore::DueProposals(const std::string& peer,
                                                                       absl::Time now,
                                                                       int limit) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, &statements_,
               "SELECT id, request_id, peer, envelope, attempts, last_error FROM proposals "
               "WHERE finished = 0 AND (?1 = '' OR peer = ?1) AND next_attempt_at_us <= ?2 "
               "ORDER BY id LIMIT ?3");
  st.Text(peer).Int(ToMicros(now)).Int(limit);
  return ReadProposals(st);
}

absl::StatusOr<std::vector<PendingProposal>> SqliteStore::QueuedProposals(
    const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, &statements_,
               "SELECT id, request_id, peer, envelope, attempts, last_error FROM proposals "
               "WHERE finished = 0 AND request_id = ? ORDER BY id");
  st.Text(request_id);
  return ReadProposals(st);
}

absl::Status SqliteStore::FinishProposal(int64_t id, const std::string& outcome,
                                         const AuditFn& audit) {
  return InTransaction([&](Writer& w) -> absl::Status {
    Statement st(db_, &statements_,
                 "UPDATE proposals SET finished = 1, outcome = ?, attempts = attempts + 1 "
                 "WHERE id = ? AND finished = 0");
    COMITY_RETURN_IF_ERROR(st.Text(outcome).Int(id).Run());
    if (sqlite3_changes(db_) != 1) return absl::OkStatus();  // Already finished.
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status SqliteStore::MarkProposalFailed(int64_t id, const std::string& error,
                                             absl::Time next_attempt_at) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, &statements_,
               "UPDATE proposals SET attempts = attempts + 1, last_error = ?, "
               "next_attempt_at_us = ? WHERE id = ? AND finished = 0");
  return st.Text(error).Int(ToMicros(next_attempt_at)).Int(id).Run();
}

// --- Operations: metrics and backup (docs/metrics.md, docs/backup.md). ---

absl::StatusOr<std::vector<RequestCount>> SqliteStore::CountRequests() {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "SELECT direction, state, CASE WHEN direction = 1 THEN requested_party ELSE "
               "requesting_party END AS partner, COUNT(*) FROM requests "
               "GROUP BY direction, state, partner");
  std::vector<RequestCount> out;
  while (true) {
    COMITY_ASSIGN_OR_RETURN(int rc, st.Step());
    if (rc == SQLITE_DONE) break;
    RequestCount c;
    c.direction = static_cast<v1::Direction>(st.ColumnInt(0));
    c.state = static_cast<v1::RequestState>(st.ColumnInt(1));
    c.partner = st.ColumnBytes(2);
    c.count = static_cast<uint64_t>(st.ColumnInt(3));
    out.push_back(std::move(c));
  }
  return out;
}

absl::StatusOr<BackupOrigin> SqliteStore::Backup(const std::string& dest_path) {
  // The copy is created 0600 before SQLite opens it: it holds everything
  // the node holds.
  int fd = ::open(dest_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("backup: cannot create ", dest_path, ": ", std::strerror(errno)));
  }
  ::close(fd);
  sqlite3* dest = nullptr;
  if (sqlite3_open_v2(dest_path.c_str(), &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    absl::Status st = absl::UnavailableError(absl::StrCat(
        "backup: cannot open ", dest_path, ": ", dest ? sqlite3_errmsg(dest) : "out of memory"));
    sqlite3_close(dest);
    return st;
  }
  struct CloseDest {
    sqlite3* db;
    ~CloseDest() { sqlite3_close(db); }
  } close_dest{dest};
  sqlite3_backup* backup = nullptr;
  {
    absl::MutexLock lock(&mu_);
    backup = sqlite3_backup_init(dest, "main", db_, "main");
  }
  if (backup == nullptr) return SqliteError(dest, "backup: init");
  constexpr int kPagesPerStep = 256;
  int rc = SQLITE_OK;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      rc = sqlite3_backup_step(backup, kPagesPerStep);
    }
    if (rc == SQLITE_DONE) break;
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
      absl::SleepFor(absl::Milliseconds(5));
      continue;
    }
    if (rc != SQLITE_OK) break;
  }
  {
    absl::MutexLock lock(&mu_);
    sqlite3_backup_finish(backup);
  }
  if (rc != SQLITE_DONE) {
    return absl::InternalError(absl::StrCat("backup: copy failed: ", sqlite3_errstr(rc)));
  }
  // A self-contained file (no -wal beside it), marked as a copy: a node
  // that starts on it checks its log against its peers first
  // (Node::CheckRestoredLog).
  BackupOrigin origin;
  origin.taken_at_us = absl::ToUnixMicros(absl::Now());
  {  // Finalized before the copy is changed below.
    Statement count(dest, "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries");
    COMITY_ASSIGN_OR_RETURN(int counted, count.Step());
    (void)counted;
    origin.audit_size = static_cast<uint64_t>(count.ColumnInt(0));
  }
  char* error = nullptr;
  const std::string mark = absl::StrCat(
      "PRAGMA journal_mode=DELETE; "
      "CREATE TABLE backup_origin (taken_at_us INTEGER NOT NULL, audit_size INTEGER NOT NULL); "
      "INSERT INTO backup_origin VALUES (",
      origin.taken_at_us, ", ", origin.audit_size, ");");
  if (sqlite3_exec(dest, mark.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    std::string why = error != nullptr ? error : "unknown error";
    sqlite3_free(error);
    return absl::InternalError(absl::StrCat("backup: cannot mark the copy: ", why));
  }
  return origin;
}

absl::StatusOr<std::optional<BackupOrigin>> SqliteStore::RestoredBackupOrigin() {
  absl::MutexLock lock(&mu_);
  Statement exists(db_,
                   "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND "
                   "name = 'backup_origin'");
  COMITY_ASSIGN_OR_RETURN(int rc, exists.Step());
  if (rc != SQLITE_ROW || exists.ColumnInt(0) == 0) return std::optional<BackupOrigin>();
  Statement st(db_, "SELECT taken_at_us, audit_size FROM backup_origin LIMIT 1");
  COMITY_ASSIGN_OR_RETURN(rc, st.Step());
  if (rc != SQLITE_ROW) return std::optional<BackupOrigin>();
  BackupOrigin origin;
  origin.taken_at_us = st.ColumnInt(0);
  origin.audit_size = static_cast<uint64_t>(st.ColumnInt(1));
  return std::optional<BackupOrigin>(origin);
}

absl::Status SqliteStore::ClearBackupOrigin() {
  absl::MutexLock lock(&mu_);
  return Exec("DROP TABLE IF EXISTS backup_origin");
}

absl::StatusOr<int> SqliteStore::RewindTransitions(const std::string& request_id,
                                                   uint32_t before_sequence, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "UPDATE transitions SET delivered = 0, next_attempt_at_us = ? WHERE "
               "request_id = ? AND outbound = 1 AND delivered = 1 AND sequence < ?");
  COMITY_RETURN_IF_ERROR(
      st.Int(ToMicros(now)).Text(request_id).Int(static_cast<int64_t>(before_sequence)).Run());
  return sqlite3_changes(db_);
}

}  // namespace comity
