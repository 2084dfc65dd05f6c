// Internal to server/store/: the PostgreSQL backend of the SQL store (a
// sql::Database), in pg_database.cc. Use OpenPostgresStore (pg_store.h).
#ifndef COMITY_SERVER_STORE_POSTGRES_PG_DATABASE_H_
#define COMITY_SERVER_STORE_POSTGRES_PG_DATABASE_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/audit/merkle.h"
#include "server/store/postgres/pg_store.h"
#include "server/store/sql/database.h"

typedef struct pg_conn PGconn;

namespace comity::pg_internal {

// Replaces what PostgreSQL's text type cannot hold (NUL, invalid UTF-8)
// with '?': for free text such as a peer's error message, which must not
// make the update that records it fail.
std::string CleanText(absl::string_view s);

// One libpq connection, reconnected when lost. Not thread-safe.
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& conninfo);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  PGconn* conn() { return conn_; }
  // Reconnects if the connection was lost (PQreset) and sets the session up.
  absl::Status EnsureConnected();
  // "PostgreSQL database 'x' on host:port" (never the conninfo, which may
  // hold a password).
  std::string Describe() const;
  // Statements without parameters (BEGIN, COMMIT, DDL).
  absl::Status Exec(const char* sql);

 private:
  explicit Connection(PGconn* conn) : conn_(conn) {}
  absl::Status SetUpSession();
  PGconn* conn_;  // Owned.
};

class PgDatabase final : public sql::Database {
 public:
  static absl::StatusOr<std::unique_ptr<PgDatabase>> Open(const std::string& conninfo,
                                                          const PostgresOptions& options);
  ~PgDatabase() override;

  absl::Status Write(bool audit, const sql::WriteFn& body) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Read(const sql::ReadFn& body) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Snapshot(const sql::ReadFn& body) override;
  bool shared() const override { return true; }
  const std::string& replica_id() const override { return replica_id_; }
  absl::Duration claim_lease() const override { return options_.claim_lease; }
  absl::Status Backup(const std::string& dest_path, int64_t taken_at_us,
                      uint64_t* audit_size) override;

 private:
  PgDatabase(std::string conninfo, PostgresOptions options, std::string replica_id,
             std::unique_ptr<Connection> conn)
      : conninfo_(std::move(conninfo)),
        options_(std::move(options)),
        replica_id_(std::move(replica_id)),
        conn_(std::move(conn)) {}

  const std::string conninfo_;
  const PostgresOptions options_;
  const std::string replica_id_;
  absl::Mutex mu_;
  std::unique_ptr<Connection> conn_ ABSL_GUARDED_BY(mu_);
  // The frontier as of the last commit by this instance; valid only if its
  // size equals the log's size read under the audit lock.
  merkle::Frontier frontier_ ABSL_GUARDED_BY(mu_);
  absl::Mutex snapshot_mu_;
  std::unique_ptr<Connection> snapshot_conn_ ABSL_GUARDED_BY(snapshot_mu_);
};

}  // namespace comity::pg_internal

#endif  // COMITY_SERVER_STORE_POSTGRES_PG_DATABASE_H_
