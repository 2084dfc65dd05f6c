// Opens the store a node configuration names: SQLite in data_dir when
// `database` is empty, else the PostgreSQL database at that URL
// (docs/configuration.md, docs/storage.md).
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenStore(setup->config));
#ifndef COMITY_SERVER_STORE_OPEN_STORE_H_
#define COMITY_SERVER_STORE_OPEN_STORE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "comity/v1/config.pb.h"
#include "server/store/store.h"

namespace comity {

// True if `database` names PostgreSQL (a postgresql:// or postgres:// URL).
bool IsPostgresUrl(const std::string& database);

// The store of a validated configuration (ParseNodeConfig). For SQLite,
// data_dir must exist. Errors are those of OpenSqliteStore or
// OpenPostgresStore.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(const v1::NodeConfig& config);

// Where the store is, for logs: "sqlite:<path>" or "postgresql" (never the
// URL, which may hold a password).
std::string StoreDescription(const v1::NodeConfig& config);

}  // namespace comity

#endif  // COMITY_SERVER_STORE_OPEN_STORE_H_
