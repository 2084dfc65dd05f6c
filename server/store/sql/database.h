// Internal to server/store/: what the shared SQL store (sql_store.h) needs
// of a database backend. The SQL is written once, with `$1`-style
// parameters and a few dialect tokens that each backend rewrites:
//
//   {int64}          a 64-bit integer column type
//   {blob}           a byte string column type
//   {autoid}         an auto-incremented 64-bit primary key column
//   {without_rowid}  SQLite's WITHOUT ROWID table option (PostgreSQL: none)
//   {collate_c}      byte-order comparison of TEXT (SQLite's default)
//   {for_update}     a row lock held to the end of the transaction
//   {indexed_by:X}   SQLite's INDEXED BY X planner hint (PostgreSQL: none)
//
// A backend is a connection (or connections) with transactions: SQLite
// commits concurrent writers in groups (one fsync for all); PostgreSQL
// serializes audit-log appenders across replicas with an advisory lock.
#ifndef COMITY_SERVER_STORE_SQL_DATABASE_H_
#define COMITY_SERVER_STORE_SQL_DATABASE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace comity {

class AuditWriter;

namespace sql {

// The parameters of one statement, bound in order to $1, $2, ...
class Params {
 public:
  enum class Kind { kInt, kText, kBlob, kNull };
  struct Value {
    Kind kind;
    int64_t i = 0;
    std::string s;
  };

  Params() { values_.reserve(8); }
  Params& Int(int64_t v) {
    values_.push_back(Value{Kind::kInt, v, {}});
    return *this;
  }
  // Text: ids, party codes, free text (PostgreSQL replaces what its text
  // type cannot hold, NUL and invalid UTF-8, with '?').
  Params& Text(std::string s) {
    values_.push_back(Value{Kind::kText, 0, std::move(s)});
    return *this;
  }
  Params& Blob(std::string s) {
    values_.push_back(Value{Kind::kBlob, 0, std::move(s)});
    return *this;
  }
  Params& Null() {
    values_.push_back(Value{Kind::kNull, 0, {}});
    return *this;
  }
  // A time in microseconds since the epoch, or NULL for an infinite time
  // (InfiniteFuture: "never").
  Params& TimeOrNull(absl::Time t);
  const std::vector<Value>& values() const { return values_; }
  size_t size() const { return values_.size(); }

 private:
  std::vector<Value> values_;
};

// One result row; valid only during the callback it is passed to.
class Row {
 public:
  virtual ~Row() = default;
  // An integer column; 0 if NULL.
  virtual int64_t Int(int col) const = 0;
  // A text or blob column; empty if NULL.
  virtual std::string Bytes(int col) const = 0;
  virtual bool IsNull(int col) const = 0;
};

// Called for each row; not owned (no allocation per query).
using RowFn = absl::FunctionRef<absl::Status(const Row&)>;

// Statements on one connection, inside a transaction or a read. Not
// thread-safe; valid only during the callback it is passed to.
//
// Errors of every backend map to the same codes: AlreadyExists for a
// unique or primary key violation, Unavailable where retrying can help
// (busy, connection lost, disk full), Internal otherwise.
class Session {
 public:
  virtual ~Session() = default;
  // Runs a query, calling `fn` for each row in order; a non-OK status from
  // `fn` stops the query and is returned.
  virtual absl::Status Query(absl::string_view sql, const Params& params, RowFn fn) = 0;
  // Runs a statement that returns no rows; returns how many rows it changed.
  virtual absl::StatusOr<int64_t> Exec(absl::string_view sql, const Params& params) = 0;
  // Runs statements without parameters, separated by ';' (migrations).
  virtual absl::Status Script(absl::string_view sql) = 0;
  // Inside a write: serializes this transaction with every other that
  // locks `key` until it ends, also across processes sharing the database.
  virtual absl::Status Lock(absl::string_view key) = 0;
};

// The body of a write transaction. `audit` appends to the audit log in the
// same transaction (an error if the write was not opened for the audit).
using WriteFn = std::function<absl::Status(Session& session, AuditWriter& audit)>;
using ReadFn = std::function<absl::Status(Session& session)>;

// Thread-safe.
class Database {
 public:
  virtual ~Database() = default;

  // Runs `body` in one durable transaction, rolled back (with the audit
  // log's in-memory state) if it fails. `audit`: the body may append to
  // the log.
  virtual absl::Status Write(bool audit, const WriteFn& body) = 0;
  // Runs `body` on the current state (it sees every committed write).
  virtual absl::Status Read(const ReadFn& body) = 0;
  // Runs `body` on one consistent read-only snapshot, apart from the
  // writers (they go on meanwhile).
  virtual absl::Status Snapshot(const ReadFn& body) = 0;

  // Several processes share this database: due work is claimed for a lease
  // (Outbox), so that two replicas never deliver the same item at once.
  virtual bool shared() const = 0;
  // This process's name in claims, and the lease (only where shared()).
  virtual const std::string& replica_id() const = 0;
  virtual absl::Duration claim_lease() const = 0;

  // Copies the whole database to a new file `dest_path` (mode 0600),
  // marked as a backup taken at `taken_at_us` (table backup_origin), and
  // sets *audit_size to the log size the copy holds. Unimplemented where
  // the database has its own tools.
  virtual absl::Status Backup(const std::string& dest_path, int64_t taken_at_us,
                              uint64_t* audit_size) = 0;
  // The database's own check of its files on `session` (a Snapshot's):
  // DataLoss naming the first problem. OK where the backend has no such
  // check that a client can run cheaply (PostgreSQL: docs/storage.md).
  virtual absl::Status CheckIntegrity(Session& session) {
    (void)session;
    return absl::OkStatus();
  }
};

// How a backend spells the dialect tokens (above).
struct Dialect {
  const char* int64;
  const char* blob;
  const char* autoid;
  const char* without_rowid;
  const char* collate_c;
  const char* for_update;
  bool index_hints;  // Keep {indexed_by:X} as INDEXED BY X.
  char placeholder;  // '$' ($1) or '?' (?1).
};
// `sql` in the backend's dialect. Unknown tokens are left as they are (and
// fail to prepare, naming themselves).
std::string Translate(absl::string_view sql, const Dialect& dialect);

// Helpers over Session.
// The first column of the first row as an integer; `fallback` if no row.
absl::StatusOr<int64_t> QueryInt(Session& s, absl::string_view sql, const Params& params,
                                 int64_t fallback = 0);
int64_t ToMicros(absl::Time t);

}  // namespace sql
}  // namespace comity

#endif  // COMITY_SERVER_STORE_SQL_DATABASE_H_
