// Internal to server/store/: the schema of a node's database, one list of
// migrations for both backends (docs/storage.md), and the checks of the
// audit log made when a store opens.
#ifndef COMITY_SERVER_STORE_SQL_SCHEMA_H_
#define COMITY_SERVER_STORE_SQL_SCHEMA_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/audit/merkle.h"
#include "server/store/sql/database.h"

namespace comity::sql {

// The schema version this build writes: the number of migrations.
inline constexpr int kSchemaVersion = 10;

// Brings the database to kSchemaVersion, one transaction per migration
// (concurrent openers, e.g. two replicas, migrate once).
// FailedPrecondition if it was written by a newer build.
absl::Status Migrate(Database& db);

// The schema version recorded in the database.
absl::StatusOr<int> SchemaVersion(Session& s);

// Merkle hashes of the audit log read through a session (which sees its
// own transaction's uncommitted rows).
class SessionNodeSource final : public merkle::NodeSource {
 public:
  explicit SessionNodeSource(Session* s) : s_(s) {}
  absl::StatusOr<std::string> Node(int level, uint64_t index) const override;

 private:
  Session* s_;
};

// The number of entries in the log (one past its last index).
absl::StatusOr<uint64_t> LogSize(Session& s);

// Rebuilds the frontier of the log from its stored hashes. Logs
// (audit_log_damaged) but does not fail when entries were removed, so that
// the node starts and an auditor can find where; DataLoss if the hashes
// themselves are missing.
absl::StatusOr<merkle::Frontier> LoadFrontier(Session& s);

}  // namespace comity::sql

#endif  // COMITY_SERVER_STORE_SQL_SCHEMA_H_
