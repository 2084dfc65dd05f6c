#include "server/store/sqlite/sqlite_database.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/store/sql/audit_appender.h"
#include "server/store/sql/schema.h"
#include "server/store/sql/sql_store.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace sqlite_internal {
namespace {

constexpr sql::Dialect kDialect = {
    /*int64=*/"INTEGER",
    /*blob=*/"BLOB",
    /*autoid=*/"INTEGER PRIMARY KEY AUTOINCREMENT",
    /*without_rowid=*/"WITHOUT ROWID",
    /*collate_c=*/"",
    /*for_update=*/"",
    /*index_hints=*/true,
    /*placeholder=*/'?',
};

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  const int code = sqlite3_errcode(db);
  std::string msg = absl::StrCat(what, ": ", sqlite3_errmsg(db));
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED || code == SQLITE_IOERR ||
      code == SQLITE_FULL) {
    return absl::UnavailableError(msg);
  }
  const int extended = sqlite3_extended_errcode(db);
  if (extended == SQLITE_CONSTRAINT_PRIMARYKEY || extended == SQLITE_CONSTRAINT_UNIQUE) {
    return absl::AlreadyExistsError(msg);
  }
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return absl::DataLossError(msg);
  return absl::InternalError(msg);
}

class SqliteRow final : public sql::Row {
 public:
  explicit SqliteRow(sqlite3_stmt* stmt) : stmt_(stmt) {}
  int64_t Int(int col) const override { return sqlite3_column_int64(stmt_, col); }
  std::string Bytes(int col) const override {
    const void* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
  }
  bool IsNull(int col) const override {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }

 private:
  sqlite3_stmt* stmt_;
};

class SqliteSession final : public sql::Session {
 public:
  explicit SqliteSession(Connection* conn) : conn_(conn) {}

  absl::Status Query(absl::string_view sql, const sql::Params& params,
                     sql::RowFn fn) override {
    return Run(sql, params, &fn, nullptr);
  }
  absl::StatusOr<int64_t> Exec(absl::string_view sql,
                               const sql::Params& params) override {
    int64_t changed = 0;
    COMITY_RETURN_IF_ERROR(Run(sql, params, nullptr, &changed));
    return changed;
  }
  absl::Status Script(absl::string_view sql) override { return conn_->Script(sql); }
  // One connection writes, and its transactions are already serialized.
  absl::Status Lock(absl::string_view) override { return absl::OkStatus(); }

 private:
  absl::Status Run(absl::string_view sql, const sql::Params& params, const sql::RowFn* fn,
                   int64_t* changed) {
    COMITY_ASSIGN_OR_RETURN(Connection::Prepared prepared, conn_->Prepare(sql));
    struct Done {
      Connection* conn;
      Connection::Prepared p;
      ~Done() { conn->Release(p); }
    } done{conn_, prepared};
    sqlite3_stmt* stmt = prepared.stmt;
    int index = 0;
    for (const sql::Params::Value& v : params.values()) {
      ++index;
      int rc = SQLITE_OK;
      switch (v.kind) {
        case sql::Params::Kind::kInt:
          rc = sqlite3_bind_int64(stmt, index, v.i);
          break;
        case sql::Params::Kind::kText:
          rc = sqlite3_bind_text(stmt, index, v.s.data(), static_cast<int>(v.s.size()),
                                 SQLITE_STATIC);
          break;
        case sql::Params::Kind::kBlob:
          rc = sqlite3_bind_blob(stmt, index, v.s.data(), static_cast<int>(v.s.size()),
                                 SQLITE_STATIC);
          break;
        case sql::Params::Kind::kNull:
          rc = sqlite3_bind_null(stmt, index);
          break;
      }
      if (rc != SQLITE_OK) return SqliteError(conn_->db(), "bind");
    }
    SqliteRow row(stmt);
    for (;;) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return SqliteError(conn_->db(), "step");
      if (fn != nullptr) COMITY_RETURN_IF_ERROR((*fn)(row));
    }
    if (changed != nullptr) *changed = sqlite3_changes(conn_->db());
    return absl::OkStatus();
  }

  Connection* conn_;
};

// Runs `pragma` (integrity_check or quick_check) on `session`: OK if it
// answers "ok", else DataLoss with its first findings.
absl::Status RunCheck(sql::Session& session, absl::string_view pragma) {
  std::string findings;
  int rows = 0;
  absl::Status st = session.Query(
      absl::StrCat("PRAGMA ", pragma, "(8)"), sql::Params(), [&](const sql::Row& row) {
        const std::string line = row.Bytes(0);
        if (line != "ok") absl::StrAppend(&findings, rows++ > 0 ? "; " : "", line);
        return absl::OkStatus();
      });
  if (!st.ok() && !absl::IsDataLoss(st)) return st;
  if (!st.ok()) absl::StrAppend(&findings, rows > 0 ? "; " : "", st.message());
  if (findings.empty()) return absl::OkStatus();
  return absl::DataLossError(absl::StrCat("PRAGMA ", pragma, " finds the file damaged: ",
                                          findings.substr(0, 600)));
}

// The check at open, before anything is written: the file as it is on disk
// (with its WAL, if the last run did not close), read-only.
absl::Status CheckAtOpen(const std::string& path) {
  struct stat st;
  if (path == ":memory:" || ::stat(path.c_str(), &st) != 0 || st.st_size == 0) {
    return absl::OkStatus();  // A new database.
  }
  const bool full = st.st_size < SqliteDatabase::kFullCheckBelowBytes;
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Open(path, Connection::Role::kReader));
  SqliteSession session(conn.get());
  absl::Status checked = RunCheck(session, full ? "integrity_check" : "quick_check");
  if (!absl::IsDataLoss(checked)) return checked;
  return absl::DataLossError(absl::StrCat(
      "database ", path, " is damaged (", checked.message(),
      "). The node did not start and has not changed the file. Stop anything else using "
      "it, keep a copy of it for analysis, and restore the last backup (docs/backup.md); "
      "then start the node, which checks the restored log against its peers"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const std::string& path,
                                                             Role role) {
  const bool read_only = role == Role::kReader;
  sqlite3* db = nullptr;
  const int flags =
      (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
      SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = absl::StrCat("cannot open database ", path, ": ",
                                   db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return absl::UnavailableError(msg);
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<Connection> conn(new Connection(db));
  // A 32 MiB page cache (the default is 2 MiB). No mmap: mapped pages count
  // in the process's RSS, which must stay small however large the database
  // grows (docs/performance.md).
  switch (role) {
    case Role::kWriter:
      COMITY_RETURN_IF_ERROR(
          conn->Script("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                       "PRAGMA foreign_keys=ON; PRAGMA cache_size=-32768; "
                       "PRAGMA temp_store=MEMORY;"));
      break;
    case Role::kReader:
      COMITY_RETURN_IF_ERROR(
          conn->Script("PRAGMA cache_size=-8192; PRAGMA temp_store=MEMORY;"));
      break;
    case Role::kCheckpointer:
      COMITY_RETURN_IF_ERROR(conn->Script("PRAGMA synchronous=FULL; PRAGMA cache_size=-256;"));
      break;
  }
  return conn;
}

Connection::~Connection() {
  for (auto& [sql, c] : statements_) sqlite3_finalize(c.stmt);
  sqlite3_close(db_);
}

std::unique_ptr<Connection> Connection::Adopt(sqlite3* db) {
  return std::unique_ptr<Connection>(new Connection(db));
}

absl::StatusOr<Connection::Prepared> Connection::Prepare(absl::string_view sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end() && !it->second.in_use) {
    it->second.in_use = true;
    return Prepared{it->second.stmt, &it->second};
  }
  const std::string translated = sql::Translate(sql, kDialect);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, translated.c_str(), static_cast<int>(translated.size()),
                         &stmt, nullptr) != SQLITE_OK) {
    return SqliteError(db_, absl::StrCat("prepare (", translated.substr(0, 80), ")"));
  }
  if (it != statements_.end())
    return Prepared{stmt, nullptr};  // In use by an outer query.
  Cached& entry = statements_[std::string(sql)];
  entry = Cached{stmt, true};
  return Prepared{stmt, &entry};
}

void Connection::Release(const Prepared& p) {
  if (p.cached == nullptr) {
    sqlite3_finalize(p.stmt);
    return;
  }
  sqlite3_reset(p.stmt);
  sqlite3_clear_bindings(p.stmt);
  p.cached->in_use = false;
}

absl::Status Connection::Script(absl::string_view sql) {
  const std::string translated = sql::Translate(sql, kDialect);
  char* err = nullptr;
  if (sqlite3_exec(db_, translated.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    absl::Status st = SqliteError(db_, err != nullptr ? err : "exec");
    sqlite3_free(err);
    return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SqliteDatabase>> SqliteDatabase::Open(
    const std::string& path) {
  COMITY_RETURN_IF_ERROR(CheckAtOpen(path));
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn,
                          Connection::Open(path, Connection::Role::kWriter));
  std::unique_ptr<SqliteDatabase> db(new SqliteDatabase(path, std::move(conn)));
  COMITY_RETURN_IF_ERROR(sql::Migrate(*db));
  absl::MutexLock lock(&db->mu_);
  SqliteSession session(db->conn_.get());
  COMITY_ASSIGN_OR_RETURN(db->frontier_, sql::LoadFrontier(session));
  if (path != ":memory:") {
    // Replaces SQLite's autocheckpoint (itself a WAL hook).
    db->checkpointer_ = std::make_unique<Executor>("comity-checkpoint", 1);
    sqlite3_wal_hook(db->conn_->db(), &SqliteDatabase::AfterCommit, db.get());
  }
  return db;
}

SqliteDatabase::~SqliteDatabase() {
  // The last checkpoint asked for runs; then the writer's connection,
  // closed last, checkpoints what is left and removes the WAL.
  if (checkpointer_ != nullptr) checkpointer_->Stop();
  absl::MutexLock lock(&checkpoint_mu_);
  checkpoint_conn_.reset();
}

int SqliteDatabase::AfterCommit(void* self, sqlite3* db, const char* schema, int wal_pages) {
  auto* me = static_cast<SqliteDatabase*>(self);
  if (wal_pages >= kMaxWalPages) {
    // A WAL written without a pause never starts over by itself (the
    // checkpointer is always a few commits behind): this commit copies
    // back what the checkpointer has not yet, the frames since its last
    // pass, so that the next one starts the WAL from its beginning.
    sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    me->checkpoints_inline_.fetch_add(1);
    me->next_checkpoint_at_.store(kCheckpointPages);
    return SQLITE_OK;
  }
  if (wal_pages < kCheckpointPages) {
    me->next_checkpoint_at_.store(kCheckpointPages);  // Started over.
    return SQLITE_OK;
  }
  if (wal_pages >= me->next_checkpoint_at_.load() && !me->checkpoint_queued_.exchange(true)) {
    me->next_checkpoint_at_.store(wal_pages + kCheckpointPages);
    me->checkpointer_->Schedule([me] { me->Checkpoint(); });
  }
  return SQLITE_OK;
}

void SqliteDatabase::Checkpoint() {
  checkpoint_queued_.store(false);
  absl::MutexLock lock(&checkpoint_mu_);
  if (checkpoint_conn_ == nullptr) {
    absl::StatusOr<std::unique_ptr<Connection>> opened =
        Connection::Open(path_, Connection::Role::kCheckpointer);
    if (!opened.ok()) {
      // The WAL grows meanwhile; commits checkpoint it at kMaxWalPages.
      LogEvent(LogLevel::kWarning, "checkpoint_failed",
               {{"error", opened.status().ToString()}});
      return;
    }
    checkpoint_conn_ = *std::move(opened);
  }
  const int rc = sqlite3_wal_checkpoint_v2(checkpoint_conn_->db(), nullptr,
                                           SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
    LogEvent(LogLevel::kWarning, "checkpoint_failed",
             {{"error", sqlite3_errmsg(checkpoint_conn_->db())}});
    return;
  }
  checkpoints_apart_.fetch_add(1);
}

absl::Status SqliteDatabase::Write(bool audit, const sql::WriteFn& body) {
  // Group commit: callers queue their transaction; one of them (the
  // leader) runs everything queued in one SQLite transaction, each body in
  // its own savepoint, and one fsync'd COMMIT makes them all durable. The
  // others wait, then return their own body's result.
  PendingWrite me{&body, audit, absl::OkStatus(), false};
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
  std::vector<PendingWrite*> batch;
  batch.swap(commit_queue_);
  commit_mu_.Unlock();
  {
    absl::MutexLock lock(&mu_);
    CommitBatch(batch);
  }
  commit_mu_.Lock();
  for (PendingWrite* t : batch) t->done = true;
  leader_active_ = false;
  commit_mu_.Unlock();
  return me.result;
}

void SqliteDatabase::CommitBatch(const std::vector<PendingWrite*>& batch) {
  SqliteSession session(conn_.get());
  const sql::Params none;
  absl::Status begun = session.Exec("BEGIN IMMEDIATE", none).status();
  if (!begun.ok()) {
    for (PendingWrite* t : batch) t->result = begun;
    return;
  }
  const merkle::Frontier before = frontier_;
  bool any = false;
  for (PendingWrite* t : batch) {
    absl::Status st = session.Exec("SAVEPOINT txn", none).status();
    if (st.ok()) {
      sql::AuditAppender appender(&session, frontier_, t->audit);
      st = (*t->body)(session, appender);
      if (st.ok()) {
        st = session.Exec("RELEASE txn", none).status();
        if (st.ok()) {
          frontier_ = appender.frontier();
          any = true;
        }
      }
      if (!st.ok()) {
        session.Exec("ROLLBACK TO txn", none).IgnoreError();
        session.Exec("RELEASE txn", none).IgnoreError();
      }
    }
    t->result = st;
  }
  absl::Status committed = any ? session.Exec("COMMIT", none).status()
                               : session.Exec("ROLLBACK", none).status();
  if (!committed.ok()) {
    session.Exec("ROLLBACK", none).IgnoreError();
    frontier_ = before;
    for (PendingWrite* t : batch) {
      if (t->result.ok()) t->result = committed;
    }
  }
}

absl::Status SqliteDatabase::Read(const sql::ReadFn& body) {
  std::unique_ptr<Connection> reader =
      path_ == ":memory:" ? nullptr : TakeReader();  // In memory: one connection.
  if (reader == nullptr) {
    absl::MutexLock lock(&mu_);
    SqliteSession session(conn_.get());
    return body(session);
  }
  SqliteSession session(reader.get());
  const sql::Params none;
  // One read transaction: the body's statements see one committed state.
  absl::Status st = session.Exec("BEGIN", none).status();
  if (st.ok()) {
    st = body(session);
    absl::Status ended = session.Exec(st.ok() ? "COMMIT" : "ROLLBACK", none).status();
    if (st.ok()) st = ended;
  }
  ReturnReader(std::move(reader));
  return st;
}

std::unique_ptr<Connection> SqliteDatabase::TakeReader() {
  {
    absl::MutexLock lock(&readers_mu_);
    if (!readers_.empty()) {
      std::unique_ptr<Connection> r = std::move(readers_.back());
      readers_.pop_back();
      return r;
    }
  }
  absl::StatusOr<std::unique_ptr<Connection>> opened = Connection::Open(path_, Connection::Role::kReader);
  if (!opened.ok()) return nullptr;
  // A small page cache each: the OS caches the file for all of them.
  if (!(*opened)->Script("PRAGMA cache_size=-2048;").ok()) return nullptr;
  return *std::move(opened);
}

void SqliteDatabase::ReturnReader(std::unique_ptr<Connection> reader) {
  absl::MutexLock lock(&readers_mu_);
  if (readers_.size() < kIdleReaders) readers_.push_back(std::move(reader));
}

absl::Status SqliteDatabase::Snapshot(const sql::ReadFn& body) {
  // An in-memory database (tests) has no second connection to it: the
  // writer's, with writes held off for the read.
  if (path_ == ":memory:") return Read(body);
  absl::MutexLock lock(&snapshot_mu_);
  if (snapshot_conn_ == nullptr) {
    COMITY_ASSIGN_OR_RETURN(snapshot_conn_, Connection::Open(path_, Connection::Role::kReader));
  }
  SqliteSession session(snapshot_conn_.get());
  const sql::Params none;
  // A read transaction: every statement until COMMIT sees the database as
  // of its first read, whatever the writer commits meanwhile (WAL).
  COMITY_RETURN_IF_ERROR(session.Exec("BEGIN", none).status());
  absl::Status st = body(session);
  absl::Status ended = session.Exec(st.ok() ? "COMMIT" : "ROLLBACK", none).status();
  return st.ok() ? ended : st;
}

absl::Status SqliteDatabase::Backup(const std::string& dest_path, int64_t taken_at_us,
                                    uint64_t* audit_size) {
  // The copy is created 0600 before SQLite opens it: it holds everything
  // the node holds.
  int fd = ::open(dest_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("backup: cannot create ", dest_path, ": ", std::strerror(errno)));
  }
  ::close(fd);
  sqlite3* dest = nullptr;
  if (sqlite3_open_v2(dest_path.c_str(), &dest,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    absl::Status st = absl::UnavailableError(
        absl::StrCat("backup: cannot open ", dest_path, ": ",
                     dest ? sqlite3_errmsg(dest) : "out of memory"));
    sqlite3_close(dest);
    return st;
  }
  struct CloseDest {
    sqlite3* db;
    ~CloseDest() { sqlite3_close(db); }
  } close_dest{dest};
  // SQLite's online backup API, a few pages per step with the store's
  // mutex held only during each step (other calls run in between; their
  // changes go through the same connection, so SQLite carries them into
  // the copy): the copy is the database as it stood after the last step.
  sqlite3_backup* backup = nullptr;
  {
    absl::MutexLock lock(&mu_);
    backup = sqlite3_backup_init(dest, "main", conn_->db(), "main");
  }
  if (backup == nullptr) return SqliteError(dest, "backup: init");
  constexpr int kPagesPerStep = 256;
  int rc = SQLITE_OK;
  for (;;) {
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
  // that starts on it checks its log against its peers first.
  std::unique_ptr<Connection> copy = Connection::Adopt(dest);
  close_dest.db = nullptr;
  SqliteSession session(copy.get());
  COMITY_ASSIGN_OR_RETURN(uint64_t size, sql::LogSize(session));
  *audit_size = size;
  COMITY_RETURN_IF_ERROR(copy->Script("PRAGMA journal_mode=DELETE"));
  COMITY_RETURN_IF_ERROR(
      session.Exec("DELETE FROM backup_origin", sql::Params()).status());
  return session
      .Exec("INSERT INTO backup_origin (taken_at_us, audit_size) VALUES ($1, $2)",
            sql::Params().Int(taken_at_us).Int(static_cast<int64_t>(size)))
      .status();
}

absl::Status SqliteDatabase::CheckIntegrity(sql::Session& session) {
  return RunCheck(session, "quick_check");
}

}  // namespace sqlite_internal

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path) {
  auto db = sqlite_internal::SqliteDatabase::Open(path);
  if (absl::IsDataLoss(db.status())) return db.status();  // Names the file.
  if (!db.ok()) {
    return absl::Status(db.status().code(),
                        absl::StrCat("database ", path, ": ", db.status().message()));
  }
  return sql::NewSqlStore(*std::move(db));
}

}  // namespace comity
