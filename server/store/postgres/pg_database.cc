#include "server/store/postgres/pg_database.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "server/store/sql/audit_appender.h"
#include "server/store/sql/schema.h"
#include "server/store/sql/sql_store.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace pg_internal {
namespace {

constexpr sql::Dialect kDialect = {
    /*int64=*/"BIGINT",
    /*blob=*/"BYTEA",
    /*autoid=*/"BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    /*without_rowid=*/"",
    /*collate_c=*/"COLLATE \"C\"",
    /*for_update=*/"FOR UPDATE",
    /*index_hints=*/false,
    /*placeholder=*/'$',
};

// Type OIDs of the parameters we send (pg_type.h is a server header).
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;
constexpr Oid kByteaOid = 17;

// Maps a failed statement to a status by what the caller should do
// (docs/storage.md, "Errors").
absl::Status PgError(PGconn* conn, const PGresult* res, absl::string_view what) {
  std::string detail = res != nullptr ? PQresultErrorMessage(res) : "";
  if (detail.empty()) detail = PQerrorMessage(conn);
  std::string msg =
      absl::StrCat("PostgreSQL ", what, ": ", absl::StripTrailingAsciiWhitespace(detail));
  if (PQstatus(conn) != CONNECTION_OK) return absl::UnavailableError(msg);
  const char* state =
      res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const absl::string_view code = state != nullptr ? state : "";
  if (code == "23505") return absl::AlreadyExistsError(msg);
  // Connection, transaction rollback (serialization, deadlock), resources,
  // operator intervention, system errors, lock_timeout: retry.
  if (absl::StartsWith(code, "08") || absl::StartsWith(code, "40") ||
      absl::StartsWith(code, "53") || absl::StartsWith(code, "57") ||
      absl::StartsWith(code, "58") || code == "55P03") {
    return absl::UnavailableError(msg);
  }
  if (absl::StartsWith(code, "XX")) return absl::DataLossError(msg);
  return absl::InternalError(msg);
}

class PgRow final : public sql::Row {
 public:
  PgRow(const PGresult* res, int row) : res_(res), row_(row) {}
  // An integer column (int2, int4 or int8, big-endian); 0 if NULL.
  int64_t Int(int col) const override {
    const unsigned char* p =
        reinterpret_cast<const unsigned char*>(PQgetvalue(res_, row_, col));
    const int n = PQgetlength(res_, row_, col);
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
    if (n == 2) return static_cast<int16_t>(v);
    if (n == 4) return static_cast<int32_t>(v);
    return static_cast<int64_t>(v);
  }
  std::string Bytes(int col) const override {
    return std::string(PQgetvalue(res_, row_, col),
                       static_cast<size_t>(PQgetlength(res_, row_, col)));
  }
  bool IsNull(int col) const override { return PQgetisnull(res_, row_, col) != 0; }

 private:
  const PGresult* res_;
  int row_;
};

// The statements of this process in PostgreSQL's dialect, translated once.
const std::string& Translated(absl::string_view sql) {
  static absl::Mutex mu(absl::kConstInit);
  static auto* cache = new absl::node_hash_map<std::string, std::string>();
  absl::MutexLock lock(&mu);
  auto it = cache->find(sql);
  if (it == cache->end()) {
    // Dynamic statements (filters) are few shapes; bound the cache anyway.
    if (cache->size() > 4096) cache->clear();
    it = cache->emplace(std::string(sql), sql::Translate(sql, kDialect)).first;
  }
  return it->second;
}

class PgSession final : public sql::Session {
 public:
  explicit PgSession(Connection* conn) : conn_(conn) {}

  absl::Status Query(absl::string_view sql, const sql::Params& params,
                     sql::RowFn fn) override {
    COMITY_ASSIGN_OR_RETURN(PGresult * res, Run(sql, params));
    std::unique_ptr<PGresult, void (*)(PGresult*)> owned(res, &PQclear);
    const int rows = PQntuples(res);
    for (int i = 0; i < rows; ++i) COMITY_RETURN_IF_ERROR(fn(PgRow(res, i)));
    return absl::OkStatus();
  }
  absl::StatusOr<int64_t> Exec(absl::string_view sql,
                               const sql::Params& params) override {
    COMITY_ASSIGN_OR_RETURN(PGresult * res, Run(sql, params));
    const int64_t changed = std::atoll(PQcmdTuples(res));
    PQclear(res);
    return changed;
  }
  absl::Status Script(absl::string_view sql) override {
    return conn_->Exec(sql::Translate(sql, kDialect).c_str());
  }
  absl::Status Lock(absl::string_view key) override {
    // The two-int key space (apart from the bigint kPostgresAuditLockKey):
    // "comi", then a hash of the key.
    return Exec("SELECT pg_advisory_xact_lock(1668246889, hashtext($1))",
                sql::Params().Text(std::string(key)))
        .status();
  }

 private:
  absl::StatusOr<PGresult*> Run(absl::string_view sql, const sql::Params& params) {
    const int n = static_cast<int>(params.size());
    std::vector<Oid> types(n);
    std::vector<std::string> values(n);
    std::vector<const char*> pointers(n);
    std::vector<int> lengths(n);
    std::vector<int> formats(n, 1);
    for (int i = 0; i < n; ++i) {
      const sql::Params::Value& v = params.values()[i];
      switch (v.kind) {
        case sql::Params::Kind::kInt: {
          types[i] = kInt8Oid;
          std::string b(8, '\0');
          uint64_t u = static_cast<uint64_t>(v.i);
          for (int k = 7; k >= 0; --k, u >>= 8) b[k] = static_cast<char>(u & 0xff);
          values[i] = std::move(b);
          break;
        }
        case sql::Params::Kind::kText:
          types[i] = kTextOid;
          values[i] = CleanText(v.s);
          break;
        case sql::Params::Kind::kBlob:
          types[i] = kByteaOid;
          values[i] = v.s;
          break;
        case sql::Params::Kind::kNull:
          types[i] = 0;  // Unknown: inferred from the statement.
          break;
      }
      pointers[i] = v.kind == sql::Params::Kind::kNull ? nullptr : values[i].data();
      lengths[i] = static_cast<int>(values[i].size());
    }
    PGresult* res = PQexecParams(conn_->conn(), Translated(sql).c_str(), n, types.data(),
                                 pointers.data(), lengths.data(), formats.data(),
                                 /*resultFormat=*/1);
    const ExecStatusType status =
        res != nullptr ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      absl::Status st = PgError(conn_->conn(), res, "query");
      PQclear(res);
      return st;
    }
    return res;
  }

  Connection* conn_;
};

std::string NewReplicaId() {
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "unknown");
  std::random_device rd;
  return absl::StrFormat("%s:%d:%08x", host, static_cast<int>(::getpid()), rd());
}

void IgnoreNotice(void*, const char*) {}

}  // namespace

std::string CleanText(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80           ? 1
                 : (c >> 5) == 0x6  ? 2
                 : (c >> 4) == 0xe  ? 3
                 : (c >> 3) == 0x1e ? 4
                                    : 0;
    bool ok = len != 0 && i + len <= s.size() && c != 0;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
    }
    if (ok && len == 2 && c < 0xc2) ok = false;  // Overlong.
    if (ok) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out.push_back('?');
      ++i;
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(
    const std::string& conninfo) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  std::unique_ptr<Connection> c(new Connection(conn));
  if (PQstatus(conn) != CONNECTION_OK) {
    return absl::UnavailableError(absl::StrCat(
        "cannot connect to ", c->Describe(), ": ",
        absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn)),
        " (check the database URL in the node configuration and that the server is up)"));
  }
  PQsetNoticeProcessor(conn, &IgnoreNotice, nullptr);
  COMITY_RETURN_IF_ERROR(c->SetUpSession());
  return c;
}

Connection::~Connection() { PQfinish(conn_); }

std::string Connection::Describe() const {
  const char* db = PQdb(conn_);
  const char* host = PQhost(conn_);
  const char* port = PQport(conn_);
  return absl::StrCat("PostgreSQL database '", db ? db : "", "' on ", host ? host : "",
                      port != nullptr && *port != '\0' ? absl::StrCat(":", port) : "");
}

absl::Status Connection::SetUpSession() {
  // synchronous_commit on: COMMIT returns once the commit record is flushed
  // (whatever the server's default). lock_timeout: a replica stuck inside a
  // transaction makes the others fail with UNAVAILABLE (retry) rather than
  // wait for ever; idle_in_transaction_session_timeout ends such a session
  // and so releases its locks.
  return Exec(
      "SET synchronous_commit = on; SET client_encoding = 'UTF8'; "
      "SET lock_timeout = '30s'; SET idle_in_transaction_session_timeout = '60s'");
}

absl::Status Connection::EnsureConnected() {
  if (PQstatus(conn_) == CONNECTION_OK) return absl::OkStatus();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("lost the connection to ", Describe(), " and cannot reconnect: ",
                     absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn_))));
  }
  LogEvent(LogLevel::kWarning, "store_reconnected", {{"database", Describe()}});
  return SetUpSession();
}

absl::Status Connection::Exec(const char* sql) {
  PGresult* res = PQexec(conn_, sql);
  absl::Status st;
  const ExecStatusType status = res != nullptr ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    st = PgError(conn_, res, "exec");
  }
  PQclear(res);
  return st;
}

absl::StatusOr<std::unique_ptr<PgDatabase>> PgDatabase::Open(
    const std::string& conninfo, const PostgresOptions& options) {
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn, Connection::Open(conninfo));
  const std::string where = conn->Describe();
  std::unique_ptr<PgDatabase> db(new PgDatabase(
      conninfo, options, options.replica_id.empty() ? NewReplicaId() : options.replica_id,
      std::move(conn)));
  absl::Status st = sql::Migrate(*db);
  if (st.ok()) {
    absl::MutexLock lock(&db->mu_);
    PgSession session(db->conn_.get());
    auto frontier = sql::LoadFrontier(session);
    if (frontier.ok()) {
      db->frontier_ = *std::move(frontier);
    } else {
      st = frontier.status();
    }
  }
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat(where, ": ", st.message()));
  return db;
}

PgDatabase::~PgDatabase() {
  absl::MutexLock lock(&mu_);
  PGconn* c = conn_->conn();
  if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) == PQTRANS_IDLE) {
    PgSession session(conn_.get());
    for (const char* sql : {"UPDATE requests SET claimed_by = NULL, claim_until_us = "
                            "NULL WHERE claimed_by = $1",
                            "UPDATE transitions SET claimed_by = NULL, claim_until_us = "
                            "NULL WHERE claimed_by = $1",
                            "UPDATE proposals SET claimed_by = NULL, claim_until_us = "
                            "NULL WHERE claimed_by = $1"}) {
      session.Exec(sql, sql::Params().Text(replica_id_)).status().IgnoreError();
    }
  }
}

absl::Status PgDatabase::Write(bool audit, const sql::WriteFn& body) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(conn_->EnsureConnected());
  PgSession session(conn_.get());
  COMITY_RETURN_IF_ERROR(conn_->Exec("BEGIN"));
  absl::Status st;
  merkle::Frontier start;
  if (audit) {
    // One appender at a time across replicas. Statements after the lock
    // see every append committed before it was granted (READ COMMITTED
    // takes a snapshot per statement), so the size read next is current.
    st = session.Exec("SELECT pg_advisory_xact_lock($1)",
                      sql::Params().Int(kPostgresAuditLockKey))
             .status();
    absl::StatusOr<uint64_t> size = st.ok() ? sql::LogSize(session) : st;
    if (!size.ok()) {
      st = size.status();
    } else if (*size == frontier_.size()) {
      start = frontier_;  // Nobody appended since this instance last did.
    } else {
      auto loaded = merkle::Frontier::Load(sql::SessionNodeSource(&session), *size);
      if (loaded.ok()) {
        start = *std::move(loaded);
      } else {
        st = absl::DataLossError(absl::StrCat(
            "cannot rebuild the audit log's Merkle tree: ", loaded.status().message()));
      }
    }
  }
  sql::AuditAppender appender(&session, std::move(start), audit);
  if (st.ok()) st = body(session, appender);
  PGconn* c = conn_->conn();
  if (st.ok()) {
    PGresult* res = PQexec(c, "COMMIT");
    // COMMIT of a transaction that failed reports "ROLLBACK", not an error.
    if (res == nullptr || PQresultStatus(res) != PGRES_COMMAND_OK) {
      st = PgError(c, res, "commit");
      if (PQstatus(c) != CONNECTION_OK) {
        st = absl::UnavailableError(absl::StrCat(
            st.message(),
            " (the connection was lost during COMMIT: the outcome is unknown)"));
      }
    } else if (std::strcmp(PQcmdStatus(res), "COMMIT") != 0) {
      st = absl::InternalError(
          absl::StrCat("PostgreSQL commit: the transaction was rolled "
                       "back (",
                       PQcmdStatus(res), ")"));
    }
    PQclear(res);
    if (st.ok() && audit) frontier_ = appender.frontier();
    return st;
  }
  if (PQstatus(c) == CONNECTION_OK && PQtransactionStatus(c) != PQTRANS_IDLE) {
    conn_->Exec("ROLLBACK").IgnoreError();
  }
  return st;
}

absl::Status PgDatabase::Read(const sql::ReadFn& body) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(conn_->EnsureConnected());
  PgSession session(conn_.get());
  return body(session);
}

absl::Status PgDatabase::Snapshot(const sql::ReadFn& body) {
  absl::MutexLock lock(&snapshot_mu_);
  if (snapshot_conn_ == nullptr) {
    COMITY_ASSIGN_OR_RETURN(snapshot_conn_, Connection::Open(conninfo_));
  }
  COMITY_RETURN_IF_ERROR(snapshot_conn_->EnsureConnected());
  // Every statement until COMMIT sees the database as of the first one.
  COMITY_RETURN_IF_ERROR(
      snapshot_conn_->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
  PgSession session(snapshot_conn_.get());
  absl::Status st = body(session);
  absl::Status ended = snapshot_conn_->Exec(st.ok() ? "COMMIT" : "ROLLBACK");
  return st.ok() ? ended : st;
}

absl::Status PgDatabase::Backup(const std::string&, int64_t, uint64_t*) {
  return absl::UnimplementedError(
      "this node stores in PostgreSQL: back it up with PostgreSQL's own tools while the "
      "node "
      "runs, e.g. pg_dump --format=custom --file=comity.dump 'postgresql://...' (the URL "
      "of "
      "the node's `database` setting), and restore with pg_restore (docs/backup.md)");
}

}  // namespace pg_internal

absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(const std::string& conninfo,
                                                         const PostgresOptions& options) {
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<pg_internal::PgDatabase> db,
                          pg_internal::PgDatabase::Open(conninfo, options));
  return sql::NewSqlStore(std::move(db));
}

}  // namespace comity
