#include "server/store/sql/schema.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/request.pb.h"
#include "server/store/store.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity::sql {
namespace {

// Migration N (1-based) takes the schema from version N-1 to N. Append only;
// never edit a released migration. Documented in docs/storage.md. Dialect
// tokens: server/store/sql/database.h.
constexpr const char* kMigrations[] = {
    // 1: requests, sent and received.
    R"sql(
CREATE TABLE requests (
  request_id         TEXT    NOT NULL,
  direction          INTEGER NOT NULL CHECK (direction IN (1, 2)),
  requesting_party   TEXT    NOT NULL,
  requested_party    TEXT    NOT NULL,
  state              INTEGER NOT NULL,
  request_envelope   {blob}  NOT NULL,
  payload_sha256     {blob}  NOT NULL,
  receipt_envelope   {blob},
  submitted_by       TEXT    NOT NULL DEFAULT '',
  stored_at_us       {int64} NOT NULL,
  updated_at_us      {int64} NOT NULL,
  delivery_attempts  INTEGER NOT NULL DEFAULT 0,
  last_error         TEXT    NOT NULL DEFAULT '',
  next_attempt_at_us {int64},
  PRIMARY KEY (request_id, direction)
);
CREATE INDEX requests_by_time ON requests (direction, stored_at_us);
CREATE INDEX requests_due ON requests (state, next_attempt_at_us);
)sql",
    // 2: the audit log (docs/audit_log.md).
    R"sql(
CREATE TABLE audit_entries (
  idx        {int64} PRIMARY KEY,
  time_us    {int64} NOT NULL,
  type       INTEGER NOT NULL,
  actor      TEXT    NOT NULL,
  request_id TEXT    NOT NULL,
  party      TEXT    NOT NULL,
  entry      {blob}  NOT NULL
);
CREATE INDEX audit_by_request ON audit_entries (request_id);
CREATE TABLE audit_nodes (
  level INTEGER NOT NULL,
  idx   {int64} NOT NULL,
  hash  {blob}  NOT NULL,
  PRIMARY KEY (level, idx)
) {without_rowid};
CREATE TABLE audit_heads (
  tree_size    {int64} PRIMARY KEY,
  root         {blob}  NOT NULL,
  timestamp_us {int64} NOT NULL,
  signed_head  {blob}  NOT NULL
);
CREATE TABLE peer_heads (
  party        TEXT    NOT NULL,
  tree_size    {int64} NOT NULL,
  root         {blob}  NOT NULL,
  timestamp_us {int64} NOT NULL,
  signed_head  {blob}  NOT NULL,
  received_us  {int64} NOT NULL,
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
  sequence           {int64} NOT NULL,
  envelope           {blob}  NOT NULL,
  outbound           INTEGER NOT NULL,
  delivered          INTEGER NOT NULL DEFAULT 0,
  attempts           INTEGER NOT NULL DEFAULT 0,
  last_error         TEXT    NOT NULL DEFAULT '',
  next_attempt_at_us {int64},
  PRIMARY KEY (request_id, sequence)
);
CREATE INDEX transitions_due ON transitions (outbound, delivered, next_attempt_at_us);
)sql",
    // 5: the outbox: signed acknowledgements of delivered steps, and queued
    // proposals of the requesting party.
    R"sql(
ALTER TABLE transitions ADD COLUMN ack {blob};
CREATE TABLE proposals (
  id                 {autoid},
  request_id         TEXT    NOT NULL,
  peer               TEXT    NOT NULL,
  envelope           {blob}  NOT NULL,
  queued_at_us       {int64} NOT NULL,
  finished           INTEGER NOT NULL DEFAULT 0,
  outcome            TEXT    NOT NULL DEFAULT '',
  attempts           INTEGER NOT NULL DEFAULT 0,
  last_error         TEXT    NOT NULL DEFAULT '',
  next_attempt_at_us {int64} NOT NULL
);
CREATE INDEX proposals_due ON proposals (finished, peer, next_attempt_at_us);
CREATE INDEX requests_due_by_peer ON requests (state, requested_party, next_attempt_at_us);
CREATE INDEX requests_by_stored_at ON requests (stored_at_us);
)sql",
    // 6: claims on due work, for replicas sharing one database (unused on a
    // database of one process).
    R"sql(
ALTER TABLE requests ADD COLUMN claimed_by TEXT;
ALTER TABLE requests ADD COLUMN claim_until_us {int64};
ALTER TABLE transitions ADD COLUMN claimed_by TEXT;
ALTER TABLE transitions ADD COLUMN claim_until_us {int64};
ALTER TABLE proposals ADD COLUMN claimed_by TEXT;
ALTER TABLE proposals ADD COLUMN claim_until_us {int64};
)sql",
    // 7: what the node watches, by index instead of scans: each case's
    // next deadline, the links between requests, the evidence still to
    // fetch; and the mark of a backup copy.
    R"sql(
ALTER TABLE requests ADD COLUMN next_deadline_us {int64};
ALTER TABLE requests ADD COLUMN next_check_us {int64};
ALTER TABLE requests ADD COLUMN escalated INTEGER NOT NULL DEFAULT 0;
CREATE INDEX requests_by_deadline ON requests (next_deadline_us)
  WHERE next_deadline_us IS NOT NULL;
CREATE INDEX requests_by_check ON requests (next_check_us)
  WHERE next_check_us IS NOT NULL;
CREATE INDEX requests_by_case_state ON requests (case_state, request_id, direction);
CREATE INDEX IF NOT EXISTS requests_by_stored_at ON requests (stored_at_us);
CREATE TABLE request_links (
  request_id TEXT NOT NULL,
  related_id TEXT NOT NULL,
  PRIMARY KEY (request_id, related_id)
);
CREATE INDEX request_links_back ON request_links (related_id, request_id);
CREATE TABLE evidence (
  request_id         TEXT    NOT NULL,
  sha256             {blob}  NOT NULL,
  name               TEXT    NOT NULL,
  size               {int64} NOT NULL,
  held               INTEGER NOT NULL DEFAULT 0,
  attempts           INTEGER NOT NULL DEFAULT 0,
  last_error         TEXT    NOT NULL DEFAULT '',
  next_attempt_at_us {int64},
  listed_at_us       {int64} NOT NULL,
  PRIMARY KEY (request_id, sha256)
);
CREATE INDEX evidence_due ON evidence (held, next_attempt_at_us);
CREATE TABLE IF NOT EXISTS backup_origin (
  taken_at_us {int64} NOT NULL,
  audit_size  {int64} NOT NULL
);
)sql",
    // 8: evidence files an operator staged for a response to a received
    // request (uploaded or imported; docs/evidence.md).
    R"sql(
CREATE TABLE staged_evidence (
  request_id   TEXT    NOT NULL,
  sha256       {blob}  NOT NULL,
  name         TEXT    NOT NULL,
  size         {int64} NOT NULL,
  staged_by    TEXT    NOT NULL,
  staged_at_us {int64} NOT NULL,
  PRIMARY KEY (request_id, sha256)
);
)sql",
    // 9: the requests changed since a time, for a partner that recovers
    // what it lost from this node (docs/backup.md, "Partners are each
    // other's backup").
    R"sql(
CREATE INDEX requests_by_update ON requests (updated_at_us);
)sql",
    // 10: the due indexes hold only the requests still to deliver, not
    // every request ever stored: a stored incoming request no longer
    // writes them, a delivered one only leaves them (docs/performance.md).
    R"sql(
DROP INDEX requests_due;
DROP INDEX requests_due_by_peer;
CREATE INDEX requests_due ON requests (next_attempt_at_us) WHERE state = 1;
CREATE INDEX requests_due_by_peer ON requests (requested_party, next_attempt_at_us)
  WHERE state = 1;
)sql",
};
constexpr int kMigrationCount = sizeof(kMigrations) / sizeof(kMigrations[0]);
static_assert(kMigrationCount == kSchemaVersion,
              "kSchemaVersion must equal the number of migrations");

// Migration 7 indexes what rows stored before it hold: the links named in
// request bodies, the evidence listed in responses to sent requests. The
// next deadlines are the node's to compute (it re-indexes open cases at
// start).
absl::Status BackfillIndexes(Session& s) {
  absl::Status parsed = s.Query(
      "SELECT request_id, request_envelope FROM requests", Params(),
      [&](const Row& row) -> absl::Status {
        v1::SignedEnvelope env;
        v1::RequestBody body;
        if (!env.ParseFromString(row.Bytes(1)) || !body.ParseFromString(env.payload())) {
          return absl::OkStatus();  // Not ours to judge here; verify reports it.
        }
        for (const std::string& related : body.related_request_ids()) {
          COMITY_RETURN_IF_ERROR(
              s.Exec("INSERT INTO request_links (request_id, related_id) VALUES ($1, $2) "
                     "ON CONFLICT DO NOTHING",
                     Params().Text(row.Bytes(0)).Text(related))
                  .status());
        }
        return absl::OkStatus();
      });
  COMITY_RETURN_IF_ERROR(parsed);
  const int64_t now = ToMicros(absl::Now());
  return s.Query(
      "SELECT t.request_id, t.envelope FROM transitions t JOIN requests r ON "
      "r.request_id = t.request_id AND r.direction = 1",
      Params(), [&](const Row& row) -> absl::Status {
        v1::SignedEnvelope env;
        v1::Transition t;
        if (!env.ParseFromString(row.Bytes(1)) || !t.ParseFromString(env.payload())) {
          return absl::OkStatus();
        }
        for (const v1::EvidenceFile& f : t.evidence()) {
          COMITY_RETURN_IF_ERROR(
              s.Exec(
                   "INSERT INTO evidence (request_id, sha256, name, size, "
                   "next_attempt_at_us, "
                   "listed_at_us) VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
                   Params()
                       .Text(row.Bytes(0))
                       .Blob(f.sha256())
                       .Text(f.name())
                       .Int(static_cast<int64_t>(f.size()))
                       .Int(now))
                  .status());
        }
        return absl::OkStatus();
      });
}

// PostgreSQL databases made before the schemas were one counted their own
// version 1, which is version 6 here (SQLite's 5 plus the claim columns).
absl::Status RenumberLegacyPostgres(Database& db) {
  bool legacy = false;
  COMITY_RETURN_IF_ERROR(db.Read([&](Session& s) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(int version, SchemaVersion(s));
    legacy = version == 1 &&
             s.Exec("SELECT claimed_by FROM requests LIMIT 0", Params()).ok();
    return absl::OkStatus();
  }));
  if (!legacy) return absl::OkStatus();
  return db.Write(false, [](Session& s, AuditWriter&) -> absl::Status {
    for (int v = 2; v <= 6; ++v) {
      COMITY_RETURN_IF_ERROR(
          s.Exec("INSERT INTO schema_migrations (version, applied_at_us) VALUES ($1, $2) "
                 "ON CONFLICT DO NOTHING",
                 Params().Int(v).Int(ToMicros(absl::Now())))
              .status());
    }
    return absl::OkStatus();
  });
}

}  // namespace

absl::StatusOr<int> SchemaVersion(Session& s) {
  COMITY_ASSIGN_OR_RETURN(
      int64_t v,
      QueryInt(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", Params()));
  return static_cast<int>(v);
}

absl::Status Migrate(Database& db) {
  COMITY_RETURN_IF_ERROR(db.Write(false, [](Session& s, AuditWriter&) -> absl::Status {
    COMITY_RETURN_IF_ERROR(s.Lock("comity schema"));
    return s.Script(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "applied_at_us {int64} NOT NULL)");
  }));
  COMITY_RETURN_IF_ERROR(RenumberLegacyPostgres(db));
  for (;;) {
    bool current = false;
    int applying = 0;
    absl::Status st = db.Write(false, [&](Session& s, AuditWriter&) -> absl::Status {
      // One opener migrates; the others wait here, then see the new version.
      COMITY_RETURN_IF_ERROR(s.Lock("comity schema"));
      COMITY_ASSIGN_OR_RETURN(int version, SchemaVersion(s));
      if (version > kSchemaVersion) {
        return absl::FailedPreconditionError(absl::StrCat(
            "schema version ", version, " is newer than this build supports (",
            kSchemaVersion, "); run a newer comityd"));
      }
      if (version == kSchemaVersion) {
        current = true;
        return absl::OkStatus();
      }
      applying = version + 1;
      COMITY_RETURN_IF_ERROR(s.Script(kMigrations[applying - 1]));
      if (applying == 7) COMITY_RETURN_IF_ERROR(BackfillIndexes(s));
      return s
          .Exec("INSERT INTO schema_migrations (version, applied_at_us) VALUES ($1, $2)",
                Params().Int(applying).Int(ToMicros(absl::Now())))
          .status();
    });
    if (!st.ok()) {
      if (absl::IsFailedPrecondition(st) || applying == 0) return st;
      return absl::Status(st.code(), absl::StrCat("migration to schema ", applying,
                                                  " failed: ", st.message()));
    }
    if (current) return absl::OkStatus();
  }
}

absl::StatusOr<std::string> SessionNodeSource::Node(int level, uint64_t index) const {
  std::string hash;
  bool found = false;
  COMITY_RETURN_IF_ERROR(s_->Query(
      "SELECT hash FROM audit_nodes WHERE level = $1 AND idx = $2",
      Params().Int(level).Int(static_cast<int64_t>(index)), [&](const Row& row) {
        hash = row.Bytes(0);
        found = true;
        return absl::OkStatus();
      }));
  if (!found) {
    return absl::NotFoundError(
        absl::StrCat("audit log node (level ", level, ", index ", index, ") is missing"));
  }
  return hash;
}

absl::StatusOr<uint64_t> LogSize(Session& s) {
  COMITY_ASSIGN_OR_RETURN(
      int64_t size,
      QueryInt(s, "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries", Params()));
  return static_cast<uint64_t>(size);
}

absl::StatusOr<merkle::Frontier> LoadFrontier(Session& s) {
  COMITY_ASSIGN_OR_RETURN(uint64_t size, LogSize(s));
  COMITY_ASSIGN_OR_RETURN(int64_t count,
                          QueryInt(s, "SELECT COUNT(*) FROM audit_entries", Params()));
  COMITY_ASSIGN_OR_RETURN(
      int64_t head,
      QueryInt(s, "SELECT COALESCE(MAX(tree_size), 0) FROM audit_heads", Params()));
  // The node still starts, so that an auditor can run verify and see where.
  if (static_cast<uint64_t>(count) != size) {
    LogEvent(
        LogLevel::kError, "audit_log_damaged",
        {{"detail",
          absl::StrCat("the audit log has ", count, " entries but its last index is ",
                       size - 1, ": entries were removed; run 'comity audit verify'")}});
  }
  if (static_cast<uint64_t>(head) > size) {
    LogEvent(
        LogLevel::kError, "audit_log_damaged",
        {{"detail",
          absl::StrCat("a signed tree head covers ", head, " entries but the log has ",
                       size, ": entries were removed; run 'comity audit verify'")}});
  }
  auto frontier = merkle::Frontier::Load(SessionNodeSource(&s), size);
  if (!frontier.ok()) {
    return absl::DataLossError(absl::StrCat(
        "cannot rebuild the audit log's Merkle tree: ", frontier.status().message()));
  }
  return frontier;
}

}  // namespace comity::sql
