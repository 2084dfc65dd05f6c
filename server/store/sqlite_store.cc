#include "server/store/sqlite_store.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "server/crypto/ed25519.h"
#include "server/util/status_macros.h"

namespace comity {
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
};
constexpr int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kMigrationCount == SqliteStore::kSchemaVersion,
              "kSchemaVersion must equal the number of migrations");

constexpr const char* kColumns =
    "direction, state, request_envelope, receipt_envelope, submitted_by, "
    "stored_at_us, updated_at_us, delivery_attempts, last_error, next_attempt_at_us";

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

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

google::protobuf::Timestamp ToProto(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

// A prepared statement, finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) {
      status_ = SqliteError(db, "prepare");
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
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
  absl::Status status_;
  int bound_ = 0;
};

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
      "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;");
  if (st.ok()) st = store->Migrate();
  if (!st.ok()) {
    return absl::Status(st.code(), absl::StrCat("database ", path, ": ", st.message()));
  }
  return store;
}

SqliteStore::~SqliteStore() {
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
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
               "delivery_attempts, last_error, next_attempt_at_us) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
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
  return st.Run();
}

absl::Status SqliteStore::InsertOutgoing(const RecordKey& key,
                                         const v1::RequestRecord& record) {
  absl::MutexLock lock(&mu_);
  absl::Status st = InsertLocked(key, record);
  if (absl::IsAlreadyExists(st)) {
    return absl::AlreadyExistsError(
        absl::StrCat("request ", key.request_id, " is already stored"));
  }
  return st;
}

absl::StatusOr<v1::RequestRecord> SqliteStore::InsertIncomingIfAbsent(
    const RecordKey& key, const v1::RequestRecord& record, bool* inserted) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  auto body = [&]() -> absl::StatusOr<v1::RequestRecord> {
    Statement sel(db_, absl::StrCat("SELECT ", kColumns,
                                    " FROM requests WHERE request_id = ? AND direction = 2"));
    sel.Text(key.request_id);
    COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> existing, ReadAll(sel));
    if (!existing.empty()) {
      *inserted = false;
      return existing[0];
    }
    COMITY_RETURN_IF_ERROR(InsertLocked(key, record));
    *inserted = true;
    return record;
  };
  absl::StatusOr<v1::RequestRecord> result = body();
  absl::Status end = Exec(result.ok() ? "COMMIT" : "ROLLBACK");
  if (!result.ok()) return result.status();
  if (!end.ok()) {
    Exec("ROLLBACK").IgnoreError();
    return end;
  }
  return result;
}

absl::Status SqliteStore::MarkDelivered(const std::string& request_id,
                                        const v1::SignedEnvelope& receipt,
                                        absl::Time now) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "UPDATE requests SET state = ?, receipt_envelope = ?, updated_at_us = ?, "
               "delivery_attempts = delivery_attempts + 1, last_error = '', "
               "next_attempt_at_us = NULL WHERE request_id = ? AND direction = 1 "
               "AND state = ?");
  COMITY_RETURN_IF_ERROR(st.Int(v1::DELIVERED)
                             .Blob(receipt.SerializeAsString())
                             .Int(ToMicros(now))
                             .Text(request_id)
                             .Int(v1::PENDING_DELIVERY)
                             .Run());
  if (sqlite3_changes(db_) != 1) {
    return absl::NotFoundError(
        absl::StrCat("no outgoing request ", request_id, " pending delivery"));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::MarkDeliveryFailed(const std::string& request_id,
                                             const std::string& error, absl::Time now,
                                             absl::Time next_attempt_at) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "UPDATE requests SET updated_at_us = ?, delivery_attempts = "
               "delivery_attempts + 1, last_error = ?, next_attempt_at_us = ? "
               "WHERE request_id = ? AND direction = 1 AND state = ?");
  COMITY_RETURN_IF_ERROR(st.Int(ToMicros(now))
                             .Text(error)
                             .Int(ToMicros(next_attempt_at))
                             .Text(request_id)
                             .Int(v1::PENDING_DELIVERY)
                             .Run());
  if (sqlite3_changes(db_) != 1) {
    return absl::NotFoundError(
        absl::StrCat("no outgoing request ", request_id, " pending delivery"));
  }
  return absl::OkStatus();
}

absl::Status SqliteStore::MarkRejected(const std::string& request_id,
                                       const std::string& error, absl::Time now) {
  absl::MutexLock lock(&mu_);
  Statement st(db_,
               "UPDATE requests SET state = ?, updated_at_us = ?, delivery_attempts = "
               "delivery_attempts + 1, last_error = ?, next_attempt_at_us = NULL "
               "WHERE request_id = ? AND direction = 1 AND state = ?");
  COMITY_RETURN_IF_ERROR(st.Int(v1::DELIVERY_REJECTED)
                             .Int(ToMicros(now))
                             .Text(error)
                             .Text(request_id)
                             .Int(v1::PENDING_DELIVERY)
                             .Run());
  if (sqlite3_changes(db_) != 1) {
    return absl::NotFoundError(
        absl::StrCat("no outgoing request ", request_id, " pending delivery"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::RequestRecord>> SqliteStore::Get(
    const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, absl::StrCat("SELECT ", kColumns,
                                 " FROM requests WHERE request_id = ? ORDER BY direction"));
  st.Text(request_id);
  return ReadAll(st);
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

absl::StatusOr<std::vector<v1::RequestRecord>> SqliteStore::DueForDelivery(absl::Time now,
                                                                           int limit) {
  absl::MutexLock lock(&mu_);
  Statement st(db_, absl::StrCat("SELECT ", kColumns,
                                 " FROM requests WHERE state = ? AND direction = 1 AND "
                                 "(next_attempt_at_us IS NULL OR next_attempt_at_us <= ?) "
                                 "ORDER BY stored_at_us LIMIT ?"));
  st.Int(v1::PENDING_DELIVERY).Int(ToMicros(now)).Int(limit);
  return ReadAll(st);
}

}  // namespace comity
