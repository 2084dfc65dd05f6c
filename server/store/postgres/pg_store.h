// The PostgreSQL store, for a party that runs several comityd replicas on
// one database behind one address (docs/storage.md, "PostgreSQL").
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Store> store,
//                           OpenPostgresStore("postgresql://comity@db.example/comity"));
//
// Same semantics and durability as the SQLite store: every mutating call
// has committed (synchronous_commit = on) when it returns OK, with the
// audit entries its AuditFn appended in the same transaction. What differs
// is what several replicas need:
//  - The audit log has one writer at a time: every transaction that may
//    append takes pg_advisory_xact_lock(kAuditLockKey) first and then reads
//    the log's size from the database (another replica may have appended);
//    the in-memory Merkle frontier is used only if its size matches.
//  - Due work is claimed (OutboxStore): the Due* calls mark the rows they
//    return as claimed by this instance until now + claim_lease (database
//    clock). Another instance skips a row under a live claim; this instance
//    gets it again (so a single replica behaves exactly like SQLite). The
//    Mark*/Finish* calls release the claim; a crashed replica's claims
//    expire with the lease.
#ifndef COMITY_SERVER_STORE_POSTGRES_PG_STORE_H_
#define COMITY_SERVER_STORE_POSTGRES_PG_STORE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/store/store.h"

namespace comity {

struct PostgresOptions {
  // How long a claim on due work holds before another replica may take the
  // row. Longer than a lane's batch takes (64 rows x
  // delivery.attempt_timeout_ms), else a slow batch may be delivered twice
  // (harmless: the receiver answers a repeat with what it stored).
  absl::Duration claim_lease = absl::Minutes(5);
  // This replica's name in claims. Stable across restarts (comityd uses host
  // and peer listen address), so that a replica killed mid-batch gets its
  // own claims back at once instead of after the lease; empty: a new name
  // per process ("<host>:<pid>:<random>").
  std::string replica_id;
};

// pg_advisory_xact_lock key (the bigint key space, "comity" then a
// purpose) that every transaction that may append to the audit log takes.
inline constexpr int64_t kPostgresAuditLockKey = 0x636f6d6974790001;

// Connects with libpq (`conninfo`: a postgresql:// URL or key=value string)
// and migrates the schema, serialized across replicas. Unavailable if the
// server cannot be reached; FailedPrecondition if the database was written
// by a newer version. The store releases this replica's claims when
// destroyed (so that a restart or another replica picks the work up at
// once).
absl::StatusOr<std::unique_ptr<Store>> OpenPostgresStore(
    const std::string& conninfo, const PostgresOptions& options = {});

}  // namespace comity

#endif  // COMITY_SERVER_STORE_POSTGRES_PG_STORE_H_
