#include "server/store/pg_store.h"

#include <libpq-fe.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/time_util.h"
#include "server/audit/merkle.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace pg_internal {

// Type OIDs of the parameters we send (pg_type.h is a server header).
constexpr Oid kInt8Oid = 20;
constexpr Oid kTextOid = 25;
constexpr Oid kByteaOid = 17;

// Replaces what PostgreSQL's text type cannot hold (NUL, invalid UTF-8)
// with '?': for free text such as a peer's error message, which must not
// make the update that records it fail.
std::string CleanText(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
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

// Statement parameters, all sent in binary format.
class Params {
 public:
  Params& Int(int64_t v) {
    std::string b(8, '\0');
    for (int i = 7; i >= 0; --i) {
      b[i] = static_cast<char>(v & 0xff);
      v = static_cast<int64_t>(static_cast<uint64_t>(v) >> 8);
    }
    return Add(kInt8Oid, std::move(b), false);
  }
  Params& Text(const std::string& s) { return Add(kTextOid, s, false); }
  // Free text, cleaned (CleanText).
  Params& FreeText(const std::string& s) { return Add(kTextOid, CleanText(s), false); }
  Params& Bytes(const std::string& s) { return Add(kByteaOid, s, false); }
  Params& NullInt() { return Add(kInt8Oid, "", true); }
  Params& NullBytes() { return Add(kByteaOid, "", true); }
  int size() const { return static_cast<int>(types_.size()); }
  const std::vector<Oid>& types() const { return types_; }
  const std::vector<std::string>& values() const { return values_; }
  bool null(int i) const { return nulls_[i]; }

 private:
  Params& Add(Oid type, std::string value, bool null) {
    types_.push_back(type);
    values_.push_back(std::move(value));
    nulls_.push_back(null);
    return *this;
  }
  std::vector<Oid> types_;
  std::vector<std::string> values_;
  std::vector<bool> nulls_;
};

// A query result (binary format), cleared on destruction.
class Result {
 public:
  explicit Result(PGresult* res) : res_(res, &PQclear) {}
  int rows() const { return PQntuples(res_.get()); }
  bool IsNull(int row, int col) const { return PQgetisnull(res_.get(), row, col) != 0; }
  std::string Bytes(int row, int col) const {
    return std::string(PQgetvalue(res_.get(), row, col),
                       static_cast<size_t>(PQgetlength(res_.get(), row, col)));
  }
  // An integer column (int2, int4 or int8, big-endian); 0 if NULL.
  int64_t Int(int row, int col) const {
    const unsigned char* p =
        reinterpret_cast<const unsigned char*>(PQgetvalue(res_.get(), row, col));
    const int n = PQgetlength(res_.get(), row, col);
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
    if (n == 2) return static_cast<int16_t>(v);
    if (n == 4) return static_cast<int32_t>(v);
    return static_cast<int64_t>(v);
  }
  // Rows changed by an INSERT, UPDATE or DELETE.
  int64_t Affected() const { return std::atoll(PQcmdTuples(res_.get())); }
  std::string CommandStatus() const { return PQcmdStatus(res_.get()); }

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> res_;
};

// Maps a failed statement to a status by what the caller should do
// (docs/storage.md, "Errors").
absl::Status PgError(PGconn* conn, const PGresult* res, absl::string_view what) {
  std::string detail = res != nullptr ? PQresultErrorMessage(res) : "";
  if (detail.empty()) detail = PQerrorMessage(conn);
  std::string msg =
      absl::StrCat("PostgreSQL ", what, ": ", absl::StripTrailingAsciiWhitespace(detail));
  if (PQstatus(conn) != CONNECTION_OK) return absl::UnavailableError(msg);
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const absl::string_view code = state != nullptr ? state : "";
  if (code == "23505") return absl::AlreadyExistsError(msg);
  // Connection, transaction rollback (serialization, deadlock), resources,
  // operator intervention, system errors, lock_timeout: retry.
  if (absl::StartsWith(code, "08") || absl::StartsWith(code, "40") ||
      absl::StartsWith(code, "53") || absl::StartsWith(code, "57") ||
      absl::StartsWith(code, "58") || code == "55P03") {
    return absl::UnavailableError(msg);
  }
  return absl::InternalError(msg);
}

}  // namespace pg_internal

using pg_internal::Params;
using pg_internal::Result;

namespace {

using google::protobuf::util::TimeUtil;

// Migration N (1-based) takes the schema from version N-1 to N. Append only;
// never edit a released migration. Documented in docs/storage.md
// ("PostgreSQL"). Version 1 is the SQLite schema at its version 5 plus the
// claim columns of the work queues.
constexpr const char* kMigrations[] = {
    // 1: requests, the audit log, cases, the proposal outbox, claims.
    R"sql(
CREATE TABLE requests (
  request_id         TEXT     NOT NULL,
  direction          SMALLINT NOT NULL CHECK (direction IN (1, 2)),
  requesting_party   TEXT     NOT NULL,
  requested_party    TEXT     NOT NULL,
  state              INTEGER  NOT NULL,
  request_envelope   BYTEA    NOT NULL,
  payload_sha256     BYTEA    NOT NULL,
  receipt_envelope   BYTEA,
  submitted_by       TEXT     NOT NULL DEFAULT '',
  stored_at_us       BIGINT   NOT NULL,
  updated_at_us      BIGINT   NOT NULL,
  delivery_attempts  INTEGER  NOT NULL DEFAULT 0,
  last_error         TEXT     NOT NULL DEFAULT '',
  next_attempt_at_us BIGINT,
  approved_by        TEXT     NOT NULL DEFAULT '',
  case_state         INTEGER  NOT NULL DEFAULT 0,
  claimed_by         TEXT,
  claim_until_us     BIGINT,
  PRIMARY KEY (request_id, direction)
);
CREATE INDEX requests_by_time ON requests (direction, stored_at_us);
CREATE INDEX requests_due ON requests (state, next_attempt_at_us);
CREATE INDEX requests_due_by_peer ON requests (state, requested_party, next_attempt_at_us);
CREATE TABLE audit_entries (
  idx        BIGINT  PRIMARY KEY,
  time_us    BIGINT  NOT NULL,
  type       INTEGER NOT NULL,
  actor      TEXT    NOT NULL,
  request_id TEXT    NOT NULL,
  party      TEXT    NOT NULL,
  entry      BYTEA   NOT NULL
);
CREATE INDEX audit_by_request ON audit_entries (request_id);
CREATE TABLE audit_nodes (
  level INTEGER NOT NULL,
  idx   BIGINT  NOT NULL,
  hash  BYTEA   NOT NULL,
  PRIMARY KEY (level, idx)
);
CREATE TABLE audit_heads (
  tree_size    BIGINT PRIMARY KEY,
  root         BYTEA  NOT NULL,
  timestamp_us BIGINT NOT NULL,
  signed_head  BYTEA  NOT NULL
);
CREATE TABLE peer_heads (
  party        TEXT   NOT NULL,
  tree_size    BIGINT NOT NULL,
  root         BYTEA  NOT NULL,
  timestamp_us BIGINT NOT NULL,
  signed_head  BYTEA  NOT NULL,
  received_us  BIGINT NOT NULL,
  PRIMARY KEY (party, tree_size)
);
CREATE TABLE transitions (
  request_id         TEXT     NOT NULL,
  sequence           BIGINT   NOT NULL,
  envelope           BYTEA    NOT NULL,
  outbound           SMALLINT NOT NULL,
  delivered          SMALLINT NOT NULL DEFAULT 0,
  attempts           INTEGER  NOT NULL DEFAULT 0,
  last_error         TEXT     NOT NULL DEFAULT '',
  next_attempt_at_us BIGINT,
  ack                BYTEA,
  claimed_by         TEXT,
  claim_until_us     BIGINT,
  PRIMARY KEY (request_id, sequence)
);
CREATE INDEX transitions_due ON transitions (outbound, delivered, next_attempt_at_us);
CREATE TABLE proposals (
  id                 BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  request_id         TEXT     NOT NULL,
  peer               TEXT     NOT NULL,
  envelope           BYTEA    NOT NULL,
  queued_at_us       BIGINT   NOT NULL,
  finished           SMALLINT NOT NULL DEFAULT 0,
  outcome            TEXT     NOT NULL DEFAULT '',
  attempts           INTEGER  NOT NULL DEFAULT 0,
  last_error         TEXT     NOT NULL DEFAULT '',
  next_attempt_at_us BIGINT   NOT NULL,
  claimed_by         TEXT,
  claim_until_us     BIGINT
);
CREATE INDEX proposals_due ON proposals (finished, peer, next_attempt_at_us);
)sql",
};
constexpr int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kMigrationCount == PgStore::kSchemaVersion,
              "kSchemaVersion must equal the number of migrations");

// The database server's clock in microseconds: claims are timed by it, so
// that replicas whose clocks differ agree on when a claim expires.
#define COMITY_PG_NOW_US "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)"

// A row is free to claim for replica $me if unclaimed, its claim expired,
// or it is already ours.
#define COMITY_PG_CLAIMABLE(alias, me)                                          \
  "(" alias ".claim_until_us IS NULL OR " alias ".claim_until_us <= " COMITY_PG_NOW_US \
  " OR " alias ".claimed_by = " me ")"

constexpr const char* kColumns =
    "direction, state, request_envelope, receipt_envelope, submitted_by, "
    "stored_at_us, updated_at_us, delivery_attempts, last_error, next_attempt_at_us, "
    "approved_by, case_state";

// The two-int advisory lock key space (separate from the bigint one):
// "comi", then the hash of a request id. Serializes EnqueueProposal's check
// and insert per request across replicas.
constexpr const char* kProposalLockSql =
    "SELECT pg_advisory_xact_lock(1668246889, hashtext($1))";

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }

google::protobuf::Timestamp ToProto(int64_t micros) {
  return TimeUtil::MicrosecondsToTimestamp(micros);
}

absl::StatusOr<v1::RequestRecord> ReadRecord(const Result& res, int row) {
  v1::RequestRecord r;
  r.set_direction(static_cast<v1::Direction>(res.Int(row, 0)));
  r.set_state(static_cast<v1::RequestState>(res.Int(row, 1)));
  if (!r.mutable_request()->ParseFromString(res.Bytes(row, 2))) {
    return absl::DataLossError("stored request envelope does not parse");
  }
  if (!res.IsNull(row, 3) && !r.mutable_receipt()->ParseFromString(res.Bytes(row, 3))) {
    return absl::DataLossError("stored receipt envelope does not parse");
  }
  r.set_submitted_by(res.Bytes(row, 4));
  r.set_approved_by(res.Bytes(row, 10));
  r.set_case_state(static_cast<v1::CaseState>(res.Int(row, 11)));
  *r.mutable_stored_at() = ToProto(res.Int(row, 5));
  *r.mutable_updated_at() = ToProto(res.Int(row, 6));
  r.set_delivery_attempts(static_cast<uint32_t>(res.Int(row, 7)));
  r.set_last_error(res.Bytes(row, 8));
  if (!res.IsNull(row, 9)) *r.mutable_next_attempt_at() = ToProto(res.Int(row, 9));
  return r;
}

absl::StatusOr<std::vector<v1::RequestRecord>> ReadAll(const Result& res) {
  std::vector<v1::RequestRecord> out;
  for (int i = 0; i < res.rows(); ++i) {
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord r, ReadRecord(res, i));
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<StoredTreeHead> ReadHead(const Result& res, int row, const char* what) {
  StoredTreeHead h;
  if (!h.signed_head.ParseFromString(res.Bytes(row, 0)) ||
      !h.head.ParseFromString(h.signed_head.payload())) {
    return absl::DataLossError(absl::StrCat("a stored ", what, " does not parse"));
  }
  return h;
}

absl::StatusOr<std::vector<PendingProposal>> ReadProposals(const Result& res) {
  std::vector<PendingProposal> out;
  for (int i = 0; i < res.rows(); ++i) {
    PendingProposal p;
    p.id = res.Int(i, 0);
    p.request_id = res.Bytes(i, 1);
    p.peer = res.Bytes(i, 2);
    if (!p.envelope.ParseFromString(res.Bytes(i, 3))) {
      return absl::DataLossError("a queued proposal does not parse");
    }
    p.attempts = static_cast<uint32_t>(res.Int(i, 4));
    p.last_error = res.Bytes(i, 5);
    out.push_back(std::move(p));
  }
  return out;
}

std::string NewReplicaId() {
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "unknown");
  std::random_device rd;
  return absl::StrFormat("%s:%d:%08x", host, static_cast<int>(::getpid()), rd());
}

// Where the store is, for messages: never the conninfo itself, which may
// hold a password.
std::string Describe(PGconn* conn) {
  const char* db = PQdb(conn);
  const char* host = PQhost(conn);
  const char* port = PQport(conn);
  return absl::StrCat("PostgreSQL database '", db ? db : "", "' on ", host ? host : "",
                      port != nullptr && *port != '\0' ? absl::StrCat(":", port) : "");
}

void IgnoreNotice(void*, const char*) {}

}  // namespace

// Reads stored node hashes through the store's connection (inside or outside
// a transaction: a transaction sees its own uncommitted rows).
class PgStore::NodeSource final : public merkle::NodeSource {
 public:
  explicit NodeSource(PgStore* store) : store_(store) {}
  absl::StatusOr<std::string> Node(int level, uint64_t index) const override
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    COMITY_ASSIGN_OR_RETURN(
        Result res, store_->Query("SELECT hash FROM audit_nodes WHERE level = $1 AND idx = $2",
                                  Params().Int(level).Int(static_cast<int64_t>(index))));
    if (res.rows() != 1) {
      return absl::NotFoundError(
          absl::StrCat("audit log node (level ", level, ", index ", index, ") is missing"));
    }
    return res.Bytes(0, 0);
  }

 private:
  PgStore* store_;
};

PgStore::PgStore(PGconn* conn, std::string conninfo, Options options, std::string replica_id)
    : conn_(conn),
      conninfo_(std::move(conninfo)),
      options_(options),
      replica_id_(std::move(replica_id)) {}

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Open(const std::string& conninfo,
                                                       const Options& options) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = absl::StrCat(
        "cannot connect to ", Describe(conn), ": ",
        absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn)),
        " (check the database URL in the node configuration and that the server is up)");
    PQfinish(conn);
    return absl::UnavailableError(msg);
  }
  PQsetNoticeProcessor(conn, &IgnoreNotice, nullptr);
  const std::string where = Describe(conn);
  std::unique_ptr<PgStore> store(new PgStore(
      conn, conninfo, options,
      options.replica_id.empty() ? NewReplicaId() : options.replica_id));
  absl::MutexLock lock(&store->mu_);
  absl::Status st = store->SetUpSession();
  if (st.ok()) st = store->Migrate();
  if (st.ok()) st = store->CheckLogAtOpen();
  if (!st.ok()) return absl::Status(st.code(), absl::StrCat(where, ": ", st.message()));
  return store;
}

PgStore::~PgStore() {
  absl::MutexLock lock(&mu_);
  if (PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) == PQTRANS_IDLE) {
    for (const char* sql :
         {"UPDATE requests SET claimed_by = NULL, claim_until_us = NULL WHERE claimed_by = $1",
          "UPDATE transitions SET claimed_by = NULL, claim_until_us = NULL WHERE claimed_by = $1",
          "UPDATE proposals SET claimed_by = NULL, claim_until_us = NULL WHERE claimed_by = $1"}) {
      Query(sql, Params().Text(replica_id_)).status().IgnoreError();
    }
  }
  PQfinish(conn_);
}

absl::Status PgStore::SetUpSession() {
  // synchronous_commit on: COMMIT returns once the commit record is flushed
  // (whatever the server's default). lock_timeout: a replica stuck inside a
  // transaction makes the others fail with UNAVAILABLE (retry) rather than
  // wait for ever; idle_in_transaction_session_timeout ends such a session
  // and so releases its locks.
  return Exec(
      "SET synchronous_commit = on; SET client_encoding = 'UTF8'; "
      "SET lock_timeout = '30s'; SET idle_in_transaction_session_timeout = '60s'");
}

absl::Status PgStore::EnsureConnected() {
  if (PQstatus(conn_) == CONNECTION_OK) return absl::OkStatus();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("lost the connection to ", Describe(conn_), " and cannot reconnect: ",
                     absl::StripTrailingAsciiWhitespace(PQerrorMessage(conn_))));
  }
  LogEvent(LogLevel::kWarning, "store_reconnected", {{"database", Describe(conn_)}});
  return SetUpSession();
}

absl::StatusOr<Result> PgStore::Query(const std::string& sql, const Params& params) {
  return Query(sql.c_str(), params);
}

absl::StatusOr<Result> PgStore::Query(const char* sql, const Params& params) {
  const int n = params.size();
  std::vector<const char*> values(n);
  std::vector<int> lengths(n);
  std::vector<int> formats(n, 1);
  for (int i = 0; i < n; ++i) {
    values[i] = params.null(i) ? nullptr : params.values()[i].data();
    lengths[i] = static_cast<int>(params.values()[i].size());
  }
  PGresult* raw = PQexecParams(conn_, sql, n, params.types().data(), values.data(),
                               lengths.data(), formats.data(), /*resultFormat=*/1);
  const ExecStatusType status = raw != nullptr ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    absl::Status st = pg_internal::PgError(conn_, raw, "query");
    PQclear(raw);
    return st;
  }
  return Result(raw);
}

absl::Status PgStore::Exec(const char* sql) {
  PGresult* res = PQexec(conn_, sql);
  absl::Status st;
  const ExecStatusType status = res != nullptr ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    st = pg_internal::PgError(conn_, res, "exec");
  }
  PQclear(res);
  return st;
}

absl::Status PgStore::Migrate() {
  for (;;) {
    COMITY_RETURN_IF_ERROR(Exec("BEGIN"));
    // One replica migrates; the others wait here, then see the new version.
    absl::Status st =
        Query("SELECT pg_advisory_xact_lock($1)", Params().Int(kMigrationLockKey)).status();
    if (st.ok()) {
      st = Exec(
          "CREATE TABLE IF NOT EXISTS schema_migrations ("
          "version INTEGER PRIMARY KEY, applied_at_us BIGINT NOT NULL)");
    }
    int current = 0;
    if (st.ok()) {
      auto res = Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", Params());
      if (res.ok()) {
        current = static_cast<int>(res->Int(0, 0));
      } else {
        st = res.status();
      }
    }
    if (st.ok() && current > kSchemaVersion) {
      st = absl::FailedPreconditionError(absl::StrCat(
          "schema version ", current, " is newer than this build supports (", kSchemaVersion,
          "); run a newer comityd"));
    }
    if (st.ok() && current == kSchemaVersion) return Exec("COMMIT");
    const int v = current + 1;
    if (st.ok()) st = Exec(kMigrations[v - 1]);
    if (st.ok()) {
      st = Query("INSERT INTO schema_migrations (version, applied_at_us) VALUES ($1, $2)",
                 Params().Int(v).Int(ToMicros(absl::Now())))
               .status();
    }
    if (st.ok()) st = Exec("COMMIT");
    if (!st.ok()) {
      Exec("ROLLBACK").IgnoreError();
      if (absl::IsFailedPrecondition(st)) return st;
      return absl::Status(st.code(),
                          absl::StrCat("migration to schema ", v, " failed: ", st.message()));
    }
  }
}

absl::StatusOr<int> PgStore::SchemaVersion() {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_ASSIGN_OR_RETURN(
      Result res, Query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", Params()));
  return static_cast<int>(res.Int(0, 0));
}

absl::StatusOr<uint64_t> PgStore::LogSize() {
  COMITY_ASSIGN_OR_RETURN(Result res,
                          Query("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries", Params()));
  return static_cast<uint64_t>(res.Int(0, 0));
}

absl::Status PgStore::CheckLogAtOpen() {
  COMITY_ASSIGN_OR_RETURN(
      Result res,
      Query("SELECT COALESCE(MAX(idx) + 1, 0), COUNT(*), "
            "(SELECT COALESCE(MAX(tree_size), 0) FROM audit_heads) FROM audit_entries",
            Params()));
  const uint64_t size = static_cast<uint64_t>(res.Int(0, 0));
  const uint64_t count = static_cast<uint64_t>(res.Int(0, 1));
  const uint64_t head = static_cast<uint64_t>(res.Int(0, 2));
  // The node still starts, so that an auditor can run verify and see where.
  if (count != size) {
    LogEvent(LogLevel::kError, "audit_log_damaged",
             {{"detail", absl::StrCat("the audit log has ", count,
                                      " entries but its last index is ", size - 1,
                                      ": entries were removed; run 'comity audit verify'")}});
  }
  if (head > size) {
    LogEvent(LogLevel::kError, "audit_log_damaged",
             {{"detail", absl::StrCat("a signed tree head covers ", head,
                                      " entries but the log has ", size,
                                      ": entries were removed; run 'comity audit verify'")}});
  }
  auto frontier = merkle::Frontier::Load(NodeSource(this), size);
  if (!frontier.ok()) {
    return absl::DataLossError(absl::StrCat("cannot rebuild the audit log's Merkle tree: ",
                                            frontier.status().message()));
  }
  frontier_ = *std::move(frontier);
  return absl::OkStatus();
}

absl::Status PgStore::InsertLocked(const RecordKey& key, const v1::RequestRecord& r) {
  Params p;
  p.Text(key.request_id)
      .Int(r.direction())
      .Text(key.requesting_party)
      .Text(key.requested_party)
      .Int(r.state())
      .Bytes(r.request().SerializeAsString())
      .Bytes(Sha256(r.request().payload()));
  if (r.has_receipt()) {
    p.Bytes(r.receipt().SerializeAsString());
  } else {
    p.NullBytes();
  }
  p.Text(r.submitted_by())
      .Int(TimeUtil::TimestampToMicroseconds(r.stored_at()))
      .Int(TimeUtil::TimestampToMicroseconds(r.updated_at()))
      .Int(r.delivery_attempts())
      .FreeText(r.last_error());
  if (r.has_next_attempt_at()) {
    p.Int(TimeUtil::TimestampToMicroseconds(r.next_attempt_at()));
  } else {
    p.NullInt();
  }
  p.Int(r.case_state());
  return Query("INSERT INTO requests (request_id, direction, requesting_party, "
               "requested_party, state, request_envelope, payload_sha256, "
               "receipt_envelope, submitted_by, stored_at_us, updated_at_us, "
               "delivery_attempts, last_error, next_attempt_at_us, case_state) "
               "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
               p)
      .status();
}

class PgStore::Writer final : public AuditWriter {
 public:
  Writer(PgStore* store, merkle::Frontier frontier, bool locked)
      : store_(store), frontier_(std::move(frontier)), locked_(locked) {}

  absl::StatusOr<std::string> Append(v1::AuditEntry* entry) override
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (!locked_) {
      return absl::InternalError(
          "audit append in a transaction that did not take the audit lock (a bug in PgStore)");
    }
    entry->set_index(frontier_.size());
    std::string bytes = SerializeDeterministic(*entry);
    created_.clear();
    frontier_.Append(merkle::LeafHash(bytes), &created_);
    absl::Status st =
        store_
            ->Query("INSERT INTO audit_entries (idx, time_us, type, actor, request_id, party, "
                    "entry) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    Params()
                        .Int(static_cast<int64_t>(entry->index()))
                        .Int(entry->time_unix_micros())
                        .Int(entry->type())
                        .FreeText(entry->actor())
                        .FreeText(entry->request_id())
                        .FreeText(entry->party())
                        .Bytes(bytes))
            .status();
    if (absl::IsAlreadyExists(st)) {
      // Under the audit lock the size was just read, so this is damage.
      return absl::DataLossError(absl::StrCat(
          "the audit log is damaged: entry ", entry->index(),
          " exists beyond its last index; run 'comity audit verify' and restore from backup"));
    }
    COMITY_RETURN_IF_ERROR(st);
    // Every node the entry completed, in one statement.
    std::string sql = "INSERT INTO audit_nodes (level, idx, hash) VALUES ";
    Params nodes;
    for (size_t i = 0; i < created_.size(); ++i) {
      absl::StrAppend(&sql, i == 0 ? "" : ", ", "($", 3 * i + 1, ", $", 3 * i + 2, ", $",
                      3 * i + 3, ")");
      nodes.Int(created_[i].level)
          .Int(static_cast<int64_t>(created_[i].index))
          .Bytes(created_[i].hash);
    }
    st = store_->Query(sql, nodes).status();
    if (absl::IsAlreadyExists(st)) {
      return absl::DataLossError(absl::StrCat(
          "the audit log is damaged: hashes exist beyond its ", entry->index(),
          " entries (entries were removed); run 'comity audit verify' and restore from "
          "backup"));
    }
    COMITY_RETURN_IF_ERROR(st);
    return bytes;
  }
  uint64_t size() const override { return frontier_.size(); }
  std::string Root() const override { return frontier_.Root(); }
  absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index,
                                                          uint64_t size) const override {
    return merkle::InclusionProof(NodeSource(store_), index, size);
  }
  absl::Status PutTreeHead(const v1::TreeHead& head,
                           const v1::SignedEnvelope& signed_head) override
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return store_
        ->Query("INSERT INTO audit_heads (tree_size, root, timestamp_us, signed_head) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                Params()
                    .Int(static_cast<int64_t>(head.tree_size()))
                    .Bytes(head.root_hash())
                    .Int(head.timestamp_unix_micros())
                    .Bytes(signed_head.SerializeAsString()))
        .status();
  }
  const merkle::Frontier& frontier() const { return frontier_; }

 private:
  PgStore* store_;
  merkle::Frontier frontier_;
  const bool locked_;
  std::vector<merkle::NodeRef> created_;
};

absl::Status PgStore::InTransaction(bool audit,
                                    const std::function<absl::Status(Writer&)>& body) {
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_RETURN_IF_ERROR(Exec("BEGIN"));
  absl::Status st;
  merkle::Frontier start;
  if (audit) {
    // One appender at a time across replicas. Statements after the lock
    // see every append committed before it was granted (READ COMMITTED
    // takes a snapshot per statement), so the size read next is current.
    st = Query("SELECT pg_advisory_xact_lock($1)", Params().Int(kAuditLockKey)).status();
    absl::StatusOr<uint64_t> size = st.ok() ? LogSize() : absl::StatusOr<uint64_t>(st);
    if (!size.ok()) {
      st = size.status();
    } else if (*size == frontier_.size()) {
      start = frontier_;  // Nobody appended since this instance last did.
    } else {
      auto loaded = merkle::Frontier::Load(NodeSource(this), *size);
      if (loaded.ok()) {
        start = *std::move(loaded);
      } else {
        st = absl::DataLossError(absl::StrCat("cannot rebuild the audit log's Merkle tree: ",
                                              loaded.status().message()));
      }
    }
  }
  Writer writer(this, std::move(start), audit);
  if (st.ok()) st = body(writer);
  if (st.ok()) {
    PGresult* res = PQexec(conn_, "COMMIT");
    // COMMIT of a transaction that failed reports "ROLLBACK", not an error.
    if (res == nullptr || PQresultStatus(res) != PGRES_COMMAND_OK) {
      st = pg_internal::PgError(conn_, res, "commit");
      if (PQstatus(conn_) != CONNECTION_OK) {
        st = absl::UnavailableError(absl::StrCat(
            st.message(), " (the connection was lost during COMMIT: the outcome is unknown)"));
      }
    } else if (std::strcmp(PQcmdStatus(res), "COMMIT") != 0) {
      st = absl::InternalError(absl::StrCat("PostgreSQL commit: the transaction was rolled "
                                            "back (", PQcmdStatus(res), ")"));
    }
    PQclear(res);
    if (st.ok()) {
      if (audit) frontier_ = writer.frontier();
      return absl::OkStatus();
    }
    return st;
  }
  if (PQstatus(conn_) == CONNECTION_OK && PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    Exec("ROLLBACK").IgnoreError();
  }
  return st;
}

// --- Requests. ---

absl::Status PgStore::InsertOutgoing(const RecordKey& key, const v1::RequestRecord& record,
                                     const AuditFn& audit) {
  absl::MutexLock lock(&mu_);
  absl::Status st = InTransaction(audit != nullptr, [&](Writer& w) -> absl::Status {
    COMITY_RETURN_IF_ERROR(InsertLocked(key, record));
    return audit ? audit(w) : absl::OkStatus();
  });
  if (absl::IsAlreadyExists(st)) {
    return absl::AlreadyExistsError(
        absl::StrCat("request ", key.request_id, " is already stored"));
  }
  return st;
}

absl::StatusOr<v1::RequestRecord> PgStore::InsertIncomingIfAbsent(
    const RecordKey& key,
    const std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)>& build,
    bool* inserted) {
  absl::MutexLock lock(&mu_);
  v1::RequestRecord result;
  // Under the audit lock, so that two replicas receiving the same request
  // at once store it once: the second sees the first's row.
  absl::Status status = InTransaction(true, [&](Writer& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        Result sel, Query(absl::StrCat("SELECT ", kColumns,
                                       " FROM requests WHERE request_id = $1 AND direction = 2"),
                          Params().Text(key.request_id)));
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

absl::Status PgStore::UpdateOutgoing(const std::string& request_id, const char* sql,
                                     Params params, const AuditFn& audit) {
  absl::MutexLock lock(&mu_);
  params.Text(request_id).Int(v1::PENDING_DELIVERY);
  return InTransaction(audit != nullptr, [&](Writer& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(Result res, Query(sql, params));
    if (res.Affected() != 1) {
      return absl::NotFoundError(
          absl::StrCat("no outgoing request ", request_id, " pending delivery"));
    }
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status PgStore::MarkApproved(const std::string& request_id,
                                   const v1::SignedEnvelope& signed_request,
                                   const std::string& approver, absl::Time now,
                                   const AuditFn& audit) {
  absl::MutexLock lock(&mu_);
  return InTransaction(audit != nullptr, [&](Writer& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        Result res,
        Query("UPDATE requests SET state = $1, request_envelope = $2, payload_sha256 = $3, "
              "approved_by = $4, updated_at_us = $5, next_attempt_at_us = $6 "
              "WHERE request_id = $7 AND direction = 1 AND state = $8",
              Params()
                  .Int(v1::PENDING_DELIVERY)
                  .Bytes(signed_request.SerializeAsString())
                  .Bytes(Sha256(signed_request.payload()))
                  .Text(approver)
                  .Int(ToMicros(now))
                  .Int(ToMicros(now))
                  .Text(request_id)
                  .Int(v1::AWAITING_APPROVAL)));
    if (res.Affected() != 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("request ", request_id, " is not awaiting approval"));
    }
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status PgStore::MarkDelivered(const std::string& request_id,
                                    const v1::SignedEnvelope& receipt, absl::Time now,
                                    const AuditFn& audit) {
  return UpdateOutgoing(
      request_id,
      "UPDATE requests SET state = $1, receipt_envelope = $2, updated_at_us = $3, "
      "delivery_attempts = delivery_attempts + 1, last_error = '', case_state = 1, "
      "next_attempt_at_us = NULL, claimed_by = NULL, claim_until_us = NULL "
      "WHERE request_id = $4 AND direction = 1 AND state = $5",
      Params().Int(v1::DELIVERED).Bytes(receipt.SerializeAsString()).Int(ToMicros(now)),
      audit);
}

absl::Status PgStore::MarkDeliveryFailed(const std::string& request_id,
                                         const std::string& error, absl::Time now,
                                         absl::Time next_attempt_at, const AuditFn& audit) {
  return UpdateOutgoing(
      request_id,
      "UPDATE requests SET updated_at_us = $1, delivery_attempts = delivery_attempts + 1, "
      "last_error = $2, next_attempt_at_us = $3, claimed_by = NULL, claim_until_us = NULL "
      "WHERE request_id = $4 AND direction = 1 AND state = $5",
      Params().Int(ToMicros(now)).FreeText(error).Int(ToMicros(next_attempt_at)), audit);
}

absl::Status PgStore::MarkRejected(const std::string& request_id, const std::string& error,
                                   absl::Time now, const AuditFn& audit) {
  return UpdateOutgoing(
      request_id,
      "UPDATE requests SET state = $1, updated_at_us = $2, delivery_attempts = "
      "delivery_attempts + 1, last_error = $3, next_attempt_at_us = NULL, claimed_by = NULL, "
      "claim_until_us = NULL WHERE request_id = $4 AND direction = 1 AND state = $5",
      Params().Int(v1::DELIVERY_REJECTED).Int(ToMicros(now)).FreeText(error), audit);
}

absl::StatusOr<std::vector<v1::RequestRecord>> PgStore::Get(const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_ASSIGN_OR_RETURN(
      Result res,
      Query(absl::StrCat("SELECT ", kColumns,
                         " FROM requests WHERE request_id = $1 ORDER BY direction"),
            Params().Text(request_id)));
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, ReadAll(res));
  if (records.empty()) return records;
  COMITY_ASSIGN_OR_RETURN(
      Result tr, Query("SELECT envelope FROM transitions WHERE request_id = $1 ORDER BY sequence",
                       Params().Text(request_id)));
  std::vector<v1::SignedEnvelope> transitions;
  for (int i = 0; i < tr.rows(); ++i) {
    v1::SignedEnvelope env;
    if (!env.ParseFromString(tr.Bytes(i, 0))) {
      return absl::DataLossError("a stored transition does not parse");
    }
    transitions.push_back(std::move(env));
  }
  for (auto& r : records) {
    for (const auto& t : transitions) *r.add_transitions() = t;
  }
  return records;
}

absl::StatusOr<std::map<std::string, std::pair<uint32_t, uint32_t>>> PgStore::QueueDepths() {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  std::map<std::string, std::pair<uint32_t, uint32_t>> out;
  COMITY_ASSIGN_OR_RETURN(
      Result req, Query("SELECT requested_party, COUNT(*) FROM requests WHERE direction = 1 AND "
                        "state = $1 GROUP BY requested_party",
                        Params().Int(v1::PENDING_DELIVERY)));
  for (int i = 0; i < req.rows(); ++i) {
    out[req.Bytes(i, 0)].first = static_cast<uint32_t>(req.Int(i, 1));
  }
  COMITY_ASSIGN_OR_RETURN(
      Result steps,
      Query("SELECT r.requesting_party, COUNT(*) FROM transitions t JOIN requests r ON "
            "r.request_id = t.request_id AND r.direction = 2 WHERE t.outbound = 1 AND "
            "t.delivered = 0 GROUP BY r.requesting_party "
            "UNION ALL SELECT peer, COUNT(*) FROM proposals WHERE finished = 0 GROUP BY peer",
            Params()));
  for (int i = 0; i < steps.rows(); ++i) {
    out[steps.Bytes(i, 0)].second += static_cast<uint32_t>(steps.Int(i, 1));
  }
  return out;
}

absl::StatusOr<std::vector<v1::RequestRecord>> PgStore::List(v1::Direction direction,
                                                             int limit) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  Params p;
  std::string sql = absl::StrCat("SELECT ", kColumns, " FROM requests");
  if (direction != v1::DIRECTION_UNSPECIFIED) {
    sql += " WHERE direction = $1";
    p.Int(direction);
  }
  // COLLATE "C": byte order, as SQLite compares TEXT.
  absl::StrAppend(&sql, " ORDER BY stored_at_us DESC, request_id COLLATE \"C\" LIMIT $",
                  p.size() + 1);
  p.Int(limit);
  COMITY_ASSIGN_OR_RETURN(Result res, Query(sql, p));
  return ReadAll(res);
}

absl::StatusOr<std::vector<v1::RequestRecord>> PgStore::DueForDelivery(const std::string& peer,
                                                                       absl::Time now,
                                                                       int limit) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  // Claims what it returns, in one statement: rows another replica is
  // claiming right now are skipped (SKIP LOCKED), rows it claimed before
  // are skipped until the claim expires.
  static const std::string kSql = absl::StrCat(
      "WITH due AS MATERIALIZED (SELECT request_id FROM requests q WHERE state = $1 AND "
      "direction = 1 AND ($2 = '' OR requested_party = $2) AND (next_attempt_at_us IS NULL OR "
      "next_attempt_at_us <= $3) AND " COMITY_PG_CLAIMABLE("q", "$4")
      " ORDER BY stored_at_us LIMIT $5 FOR UPDATE SKIP LOCKED), "
      "claimed AS (UPDATE requests r SET claimed_by = $4, claim_until_us = " COMITY_PG_NOW_US
      " + $6 FROM due WHERE r.request_id = due.request_id AND r.direction = 1 RETURNING r.*) "
      "SELECT ",
      kColumns, " FROM claimed ORDER BY stored_at_us, request_id COLLATE \"C\"");
  COMITY_ASSIGN_OR_RETURN(Result res, Query(kSql, Params()
                                                      .Int(v1::PENDING_DELIVERY)
                                                      .Text(peer)
                                                      .Int(ToMicros(now))
                                                      .Text(replica_id_)
                                                      .Int(limit)
                                                      .Int(LeaseMicros())));
  return ReadAll(res);
}

// --- Cases. ---

absl::Status PgStore::AppendTransition(const std::string& request_id, v1::Direction row,
                                       const v1::Transition& t,
                                       const v1::SignedEnvelope& signed_transition,
                                       bool outbound, absl::Time now, const AuditFn& audit) {
  absl::MutexLock lock(&mu_);
  return InTransaction(audit != nullptr, [&](Writer& w) -> absl::Status {
    // The row lock orders concurrent steps of one case across replicas.
    COMITY_ASSIGN_OR_RETURN(
        Result cur, Query("SELECT case_state FROM requests WHERE request_id = $1 AND "
                          "direction = $2 FOR UPDATE",
                          Params().Text(request_id).Int(row)));
    if (cur.rows() != 1) {
      return absl::NotFoundError(absl::StrCat("no request ", request_id, " on this node"));
    }
    const int64_t state = cur.Int(0, 0);
    COMITY_ASSIGN_OR_RETURN(
        Result seq, Query("SELECT COALESCE(MAX(sequence), 0) FROM transitions WHERE "
                          "request_id = $1",
                          Params().Text(request_id)));
    const int64_t last = seq.Int(0, 0);
    if (static_cast<int64_t>(t.sequence()) != last + 1 || state != t.from_state()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "transition ", t.sequence(), " (", v1::CaseState_Name(t.from_state()), " -> ",
          v1::CaseState_Name(t.to_state()), ") does not follow the case as stored here: step ",
          last, ", state ", v1::CaseState_Name(static_cast<v1::CaseState>(state))));
    }
    Params ins;
    ins.Text(request_id)
        .Int(t.sequence())
        .Bytes(signed_transition.SerializeAsString())
        .Int(outbound ? 1 : 0);
    if (outbound) {
      ins.Int(ToMicros(now));
    } else {
      ins.NullInt();
    }
    COMITY_RETURN_IF_ERROR(Query("INSERT INTO transitions (request_id, sequence, envelope, "
                                 "outbound, next_attempt_at_us) VALUES ($1, $2, $3, $4, $5)",
                                 ins)
                               .status());
    COMITY_RETURN_IF_ERROR(Query("UPDATE requests SET case_state = $1, updated_at_us = $2 "
                                 "WHERE request_id = $3 AND direction = $4",
                                 Params().Int(t.to_state()).Int(ToMicros(now)).Text(request_id).Int(
                                     row))
                               .status());
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::StatusOr<std::vector<PendingTransition>> PgStore::DueTransitions(const std::string& peer,
                                                                       absl::Time now,
                                                                       int limit) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  // Only the earliest undelivered step of each case, so that no step
  // overtakes an earlier one; claiming it claims the case.
  static const char* const kSql =
      "WITH due AS MATERIALIZED (SELECT t.request_id, t.sequence FROM transitions t "
      "JOIN requests r ON r.request_id = t.request_id AND r.direction = 2 "
      "WHERE t.outbound = 1 AND t.delivered = 0 AND t.next_attempt_at_us <= $1 "
      "AND ($2 = '' OR r.requesting_party = $2) AND NOT EXISTS (SELECT 1 FROM "
      "transitions e WHERE e.request_id = t.request_id AND e.outbound = 1 AND "
      "e.delivered = 0 AND e.sequence < t.sequence) AND " COMITY_PG_CLAIMABLE("t", "$3")
      " ORDER BY t.next_attempt_at_us, t.request_id COLLATE \"C\" LIMIT $4 "
      "FOR UPDATE OF t SKIP LOCKED), "
      "claimed AS (UPDATE transitions t SET claimed_by = $3, claim_until_us = " COMITY_PG_NOW_US
      " + $5 FROM due WHERE t.request_id = due.request_id AND t.sequence = due.sequence "
      "RETURNING t.request_id, t.sequence, t.envelope, t.attempts, t.next_attempt_at_us) "
      "SELECT request_id, sequence, envelope, attempts FROM claimed "
      "ORDER BY next_attempt_at_us, request_id COLLATE \"C\"";
  COMITY_ASSIGN_OR_RETURN(
      Result res,
      Query(kSql,
            Params().Int(ToMicros(now)).Text(peer).Text(replica_id_).Int(limit).Int(LeaseMicros())));
  std::vector<PendingTransition> out;
  for (int i = 0; i < res.rows(); ++i) {
    PendingTransition p;
    p.request_id = res.Bytes(i, 0);
    p.sequence = static_cast<uint32_t>(res.Int(i, 1));
    if (!p.envelope.ParseFromString(res.Bytes(i, 2))) {
      return absl::DataLossError("a stored transition does not parse");
    }
    p.attempts = static_cast<uint32_t>(res.Int(i, 3));
    out.push_back(std::move(p));
  }
  return out;
}

absl::Status PgStore::MarkTransitionDelivered(const std::string& request_id, uint32_t sequence,
                                              const v1::SignedEnvelope& ack,
                                              const AuditFn& audit) {
  absl::MutexLock lock(&mu_);
  return InTransaction(audit != nullptr, [&](Writer& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        Result res,
        Query("UPDATE transitions SET delivered = 1, attempts = attempts + 1, last_error = '', "
              "next_attempt_at_us = NULL, ack = $1, claimed_by = NULL, claim_until_us = NULL "
              "WHERE request_id = $2 AND sequence = $3 AND outbound = 1 AND delivered = 0",
              Params().Bytes(ack.SerializeAsString()).Text(request_id).Int(sequence)));
    if (res.Affected() != 1) return absl::OkStatus();  // Already delivered.
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status PgStore::MarkTransitionFailed(const std::string& request_id, uint32_t sequence,
                                           const std::string& error,
                                           absl::Time next_attempt_at) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  return Query("UPDATE transitions SET attempts = attempts + 1, last_error = $1, "
               "next_attempt_at_us = $2, claimed_by = NULL, claim_until_us = NULL "
               "WHERE request_id = $3 AND sequence = $4 AND outbound = 1",
               Params().FreeText(error).Int(ToMicros(next_attempt_at)).Text(request_id).Int(
                   sequence))
      .status();
}

// --- The proposal outbox. ---

absl::StatusOr<int64_t> PgStore::EnqueueProposal(const std::string& request_id,
                                                 const std::string& peer,
                                                 const v1::SignedEnvelope& proposal,
                                                 absl::Time now, const AuditFn& audit) {
  absl::MutexLock lock(&mu_);
  int64_t id = 0;
  COMITY_RETURN_IF_ERROR(InTransaction(audit != nullptr, [&](Writer& w) -> absl::Status {
    COMITY_RETURN_IF_ERROR(Query(kProposalLockSql, Params().Text(request_id)).status());
    COMITY_ASSIGN_OR_RETURN(
        Result queued, Query("SELECT COUNT(*) FROM proposals WHERE request_id = $1 AND "
                             "finished = 0",
                             Params().Text(request_id)));
    if (queued.Int(0, 0) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "request ", request_id, " already has a proposal queued for ", peer,
          "; the next step can be proposed once that one is delivered (see 'comity peers')"));
    }
    COMITY_ASSIGN_OR_RETURN(
        Result ins, Query("INSERT INTO proposals (request_id, peer, envelope, queued_at_us, "
                          "next_attempt_at_us) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                          Params()
                              .Text(request_id)
                              .Text(peer)
                              .Bytes(proposal.SerializeAsString())
                              .Int(ToMicros(now))
                              .Int(ToMicros(now))));
    id = ins.Int(0, 0);
    return audit ? audit(w) : absl::OkStatus();
  }));
  return id;
}

absl::StatusOr<std::vector<PendingProposal>> PgStore::DueProposals(const std::string& peer,
                                                                   absl::Time now, int limit) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  static const char* const kSql =
      "WITH due AS MATERIALIZED (SELECT id FROM proposals p WHERE finished = 0 AND "
      "($1 = '' OR peer = $1) AND next_attempt_at_us <= $2 AND " COMITY_PG_CLAIMABLE("p", "$3")
      " ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED), "
      "claimed AS (UPDATE proposals p SET claimed_by = $3, claim_until_us = " COMITY_PG_NOW_US
      " + $5 FROM due WHERE p.id = due.id RETURNING p.*) "
      "SELECT id, request_id, peer, envelope, attempts, last_error FROM claimed ORDER BY id";
  COMITY_ASSIGN_OR_RETURN(
      Result res,
      Query(kSql,
            Params().Text(peer).Int(ToMicros(now)).Text(replica_id_).Int(limit).Int(LeaseMicros())));
  return ReadProposals(res);
}

absl::StatusOr<std::vector<PendingProposal>> PgStore::QueuedProposals(
    const std::string& request_id) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_ASSIGN_OR_RETURN(
      Result res, Query("SELECT id, request_id, peer, envelope, attempts, last_error FROM "
                        "proposals WHERE finished = 0 AND request_id = $1 ORDER BY id",
                        Params().Text(request_id)));
  return ReadProposals(res);
}

absl::Status PgStore::FinishProposal(int64_t id, const std::string& outcome,
                                     const AuditFn& audit) {
  absl::MutexLock lock(&mu_);
  return InTransaction(audit != nullptr, [&](Writer& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(
        Result res, Query("UPDATE proposals SET finished = 1, outcome = $1, attempts = "
                          "attempts + 1, claimed_by = NULL, claim_until_us = NULL "
                          "WHERE id = $2 AND finished = 0",
                          Params().FreeText(outcome).Int(id)));
    if (res.Affected() != 1) return absl::OkStatus();  // Already finished.
    return audit ? audit(w) : absl::OkStatus();
  });
}

absl::Status PgStore::MarkProposalFailed(int64_t id, const std::string& error,
                                         absl::Time next_attempt_at) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  return Query("UPDATE proposals SET attempts = attempts + 1, last_error = $1, "
               "next_attempt_at_us = $2, claimed_by = NULL, claim_until_us = NULL "
               "WHERE id = $3 AND finished = 0",
               Params().FreeText(error).Int(ToMicros(next_attempt_at)).Int(id))
      .status();
}

// --- The audit log. ---

absl::Status PgStore::Audit(const AuditFn& audit) {
  absl::MutexLock lock(&mu_);
  return InTransaction(true, [&](Writer& w) { return audit(w); });
}

absl::StatusOr<uint64_t> PgStore::AuditSize() {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  return LogSize();
}

absl::Status PgStore::CheckSize(uint64_t size) {
  COMITY_ASSIGN_OR_RETURN(uint64_t have, LogSize());
  if (size > have) {
    return absl::InvalidArgumentError(
        absl::StrCat("the log has ", have, " entries, not ", size));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> PgStore::AuditEntries(const AuditFilter& f) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  Params p;
  std::string sql = "SELECT entry FROM audit_entries WHERE idx >= $1";
  p.Int(static_cast<int64_t>(f.from_index));
  auto next = [&p]() { return absl::StrCat("$", p.size() + 1); };
  if (f.from_time_us != 0) {
    absl::StrAppend(&sql, " AND time_us >= ", next());
    p.Int(f.from_time_us);
  }
  if (f.to_time_us != 0) {
    absl::StrAppend(&sql, " AND time_us < ", next());
    p.Int(f.to_time_us);
  }
  if (!f.request_id.empty()) {
    absl::StrAppend(&sql, " AND request_id = ", next());
    p.FreeText(f.request_id);
  }
  if (!f.party.empty()) {
    absl::StrAppend(&sql, " AND party = ", next());
    p.FreeText(f.party);
  }
  if (!f.actor.empty()) {
    absl::StrAppend(&sql, " AND actor = ", next());
    p.FreeText(f.actor);
  }
  if (f.type != 0) {
    absl::StrAppend(&sql, " AND type = ", next());
    p.Int(f.type);
  }
  sql += " ORDER BY idx";
  if (f.limit != 0) {
    absl::StrAppend(&sql, " LIMIT ", next());
    p.Int(static_cast<int64_t>(f.limit));
  }
  COMITY_ASSIGN_OR_RETURN(Result res, Query(sql, p));
  std::vector<std::string> out;
  out.reserve(res.rows());
  for (int i = 0; i < res.rows(); ++i) out.push_back(res.Bytes(i, 0));
  return out;
}

absl::StatusOr<std::vector<StoredTreeHead>> PgStore::TreeHeads() {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_ASSIGN_OR_RETURN(
      Result res, Query("SELECT signed_head FROM audit_heads ORDER BY tree_size", Params()));
  std::vector<StoredTreeHead> out;
  for (int i = 0; i < res.rows(); ++i) {
    COMITY_ASSIGN_OR_RETURN(StoredTreeHead h, ReadHead(res, i, "tree head"));
    out.push_back(std::move(h));
  }
  return out;
}

absl::StatusOr<std::string> PgStore::RootAt(uint64_t size) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_RETURN_IF_ERROR(CheckSize(size));
  return merkle::RootHash(NodeSource(this), size);
}

absl::StatusOr<std::vector<std::string>> PgStore::InclusionProofAt(uint64_t index,
                                                                   uint64_t size) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_RETURN_IF_ERROR(CheckSize(size));
  return merkle::InclusionProof(NodeSource(this), index, size);
}

absl::StatusOr<std::vector<std::string>> PgStore::ConsistencyProofAt(uint64_t old_size,
                                                                     uint64_t new_size) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_RETURN_IF_ERROR(CheckSize(new_size));
  return merkle::ConsistencyProof(NodeSource(this), old_size, new_size);
}

absl::Status PgStore::ForEachAuditEntry(
    const std::function<absl::Status(uint64_t, const std::string&)>& fn) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  // In pages, so that a long log is not held in memory at once.
  constexpr int64_t kPage = 4096;
  int64_t from = 0;
  for (;;) {
    COMITY_ASSIGN_OR_RETURN(
        Result res, Query("SELECT idx, entry FROM audit_entries WHERE idx >= $1 ORDER BY idx "
                          "LIMIT $2",
                          Params().Int(from).Int(kPage)));
    for (int i = 0; i < res.rows(); ++i) {
      COMITY_RETURN_IF_ERROR(fn(static_cast<uint64_t>(res.Int(i, 0)), res.Bytes(i, 1)));
    }
    if (res.rows() < kPage) return absl::OkStatus();
    from = res.Int(res.rows() - 1, 0) + 1;
  }
}

absl::StatusOr<std::optional<StoredTreeHead>> PgStore::LatestTreeHead() {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_ASSIGN_OR_RETURN(
      Result res,
      Query("SELECT signed_head FROM audit_heads ORDER BY tree_size DESC LIMIT 1", Params()));
  if (res.rows() == 0) return std::optional<StoredTreeHead>();
  COMITY_ASSIGN_OR_RETURN(StoredTreeHead h, ReadHead(res, 0, "tree head"));
  return std::optional<StoredTreeHead>(std::move(h));
}

absl::Status PgStore::ForEachAuditNode(
    const std::function<absl::Status(int, uint64_t, const std::string&)>& fn) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  constexpr int64_t kPage = 8192;
  int64_t level = 0;
  int64_t from = 0;
  for (;;) {
    COMITY_ASSIGN_OR_RETURN(
        Result res,
        Query("SELECT level, idx, hash FROM audit_nodes WHERE (level, idx) >= ($1, $2) "
              "ORDER BY level, idx LIMIT $3",
              Params().Int(level).Int(from).Int(kPage)));
    for (int i = 0; i < res.rows(); ++i) {
      COMITY_RETURN_IF_ERROR(fn(static_cast<int>(res.Int(i, 0)),
                                static_cast<uint64_t>(res.Int(i, 1)), res.Bytes(i, 2)));
    }
    if (res.rows() < kPage) return absl::OkStatus();
    level = res.Int(res.rows() - 1, 0);
    from = res.Int(res.rows() - 1, 1) + 1;
  }
}

absl::StatusOr<std::optional<StoredTreeHead>> PgStore::LatestPeerHead(const std::string& party) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_ASSIGN_OR_RETURN(Result res, Query("SELECT signed_head FROM peer_heads WHERE party = $1 "
                                            "ORDER BY tree_size DESC LIMIT 1",
                                            Params().Text(party)));
  if (res.rows() == 0) return std::optional<StoredTreeHead>();
  COMITY_ASSIGN_OR_RETURN(StoredTreeHead h, ReadHead(res, 0, "peer tree head"));
  return std::optional<StoredTreeHead>(std::move(h));
}

absl::Status PgStore::PutPeerHead(const std::string& party, const StoredTreeHead& h) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  return Query("INSERT INTO peer_heads (party, tree_size, root, timestamp_us, signed_head, "
               "received_us) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
               Params()
                   .Text(party)
                   .Int(static_cast<int64_t>(h.head.tree_size()))
                   .Bytes(h.head.root_hash())
                   .Int(h.head.timestamp_unix_micros())
                   .Bytes(h.signed_head.SerializeAsString())
                   .Int(ToMicros(absl::Now())))
      .status();
}

// --- Operations: metrics and backup (docs/metrics.md, docs/backup.md). ---

absl::StatusOr<std::vector<RequestCount>> PgStore::CountRequests() {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_ASSIGN_OR_RETURN(
      Result res,
      Query("SELECT direction, state, CASE WHEN direction = 1 THEN requested_party ELSE "
            "requesting_party END AS partner, COUNT(*) FROM requests "
            "GROUP BY direction, state, partner",
            Params()));
  std::vector<RequestCount> out;
  for (int i = 0; i < res.rows(); ++i) {
    RequestCount c;
    c.direction = static_cast<v1::Direction>(res.Int(i, 0));
    c.state = static_cast<v1::RequestState>(res.Int(i, 1));
    c.partner = res.Bytes(i, 2);
    c.count = static_cast<uint64_t>(res.Int(i, 3));
    out.push_back(std::move(c));
  }
  return out;
}

absl::StatusOr<BackupOrigin> PgStore::Backup(const std::string& dest_path) {
  (void)dest_path;
  return absl::UnimplementedError(
      "this node stores in PostgreSQL: back it up with PostgreSQL's own tools while the node "
      "runs, e.g. pg_dump --format=custom --file=comity.dump 'postgresql://...' (the URL of "
      "the node's `database` setting), and restore with pg_restore (docs/backup.md)");
}

absl::StatusOr<std::optional<BackupOrigin>> PgStore::RestoredBackupOrigin() {
  return std::optional<BackupOrigin>();
}

absl::Status PgStore::ClearBackupOrigin() { return absl::OkStatus(); }

absl::StatusOr<int> PgStore::RewindTransitions(const std::string& request_id,
                                               uint32_t before_sequence, absl::Time now) {
  absl::MutexLock lock(&mu_);
  COMITY_RETURN_IF_ERROR(EnsureConnected());
  COMITY_ASSIGN_OR_RETURN(
      Result res,
      Query("UPDATE transitions SET delivered = 0, next_attempt_at_us = $1, claimed_by = NULL, "
            "claim_until_us = NULL WHERE request_id = $2 AND outbound = 1 AND delivered = 1 "
            "AND sequence < $3",
            Params().Int(ToMicros(now)).Text(request_id).Int(before_sequence)));
  return static_cast<int>(res.Affected());
}

}  // namespace comity
