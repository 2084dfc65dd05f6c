#include "server/store/open_store.h"

#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/store/postgres/pg_store.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/util/status_macros.h"

namespace comity {

bool IsPostgresUrl(const std::string& database) {
  return absl::StartsWith(database, "postgresql://") || absl::StartsWith(database, "postgres://");
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const v1::NodeConfig& config) {
  if (config.database().empty()) {
    return OpenSqliteStore(config.data_dir() + "/comity.db");
  }
  if (!IsPostgresUrl(config.database())) {
    return absl::InvalidArgumentError(
        "database: must be empty (SQLite in data_dir) or a postgresql:// URL");
  }
  PostgresOptions options;
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "unknown");
  options.replica_id = absl::StrCat(host, ":", config.peer_listen_address());
  return OpenPostgresStore(config.database(), options);
}

std::string StoreDescription(const v1::NodeConfig& config) {
  return config.database().empty() ? "sqlite:" + config.data_dir() + "/comity.db"
                                   : "postgresql";
}

}  // namespace comity
