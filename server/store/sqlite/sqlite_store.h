// The SQLite store: one file in the node's data directory, WAL journal,
// synchronous=FULL, schema migrated on open (docs/storage.md). The default
// store of a node.
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Store> store,
//                           OpenSqliteStore(data_dir + "/comity.db"));
//
// Writers from every thread are committed in groups: one fsync for all the
// transactions queued meanwhile, each in its own savepoint. Snapshot reads
// (AuditStore::ReadSnapshot) run on a second, read-only connection, so a
// verification of the whole log never holds up the node.
#ifndef COMITY_SERVER_STORE_SQLITE_SQLITE_STORE_H_
#define COMITY_SERVER_STORE_SQLITE_SQLITE_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/store/store.h"

namespace comity {

// Opens (creating if needed) the database at `path` and migrates it.
// FailedPrecondition if the file was written by a newer version;
// Unavailable if it cannot be opened.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path);

}  // namespace comity

#endif  // COMITY_SERVER_STORE_SQLITE_SQLITE_STORE_H_
