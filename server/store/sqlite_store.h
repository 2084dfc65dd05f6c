// The SQLite implementation of Store: one file in the node's data
// directory, WAL journal, synchronous=FULL, schema migrated on open
// (docs/storage.md).
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> store,
//                           SqliteStore::Open(data_dir + "/comity.db"));
#ifndef COMITY_SERVER_STORE_SQLITE_STORE_H_
#define COMITY_SERVER_STORE_SQLITE_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/store/store.h"

struct sqlite3;

namespace comity {

// Thread-safe: calls are serialized on one connection.
class SqliteStore final : public Store {
 public:
  // The schema version this build writes.
  static constexpr int kSchemaVersion = 1;

  // Opens (creating if needed) the database at `path` and migrates it.
  // FailedPrecondition if the file was written by a newer version.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  ~SqliteStore() override;

  absl::Status InsertOutgoing(const RecordKey& key,
                              const v1::RequestRecord& record) override;
  absl::StatusOr<v1::RequestRecord> InsertIncomingIfAbsent(
      const RecordKey& key, const v1::RequestRecord& record, bool* inserted) override;
  absl::Status MarkDelivered(const std::string& request_id,
                             const v1::SignedEnvelope& receipt, absl::Time now) override;
  absl::Status MarkDeliveryFailed(const std::string& request_id, const std::string& error,
                                  absl::Time now, absl::Time next_attempt_at) override;
  absl::Status MarkRejected(const std::string& request_id, const std::string& error,
                            absl::Time now) override;
  absl::StatusOr<std::vector<v1::RequestRecord>> Get(
      const std::string& request_id) override;
  absl::StatusOr<std::vector<v1::RequestRecord>> List(v1::Direction direction,
                                                      int limit) override;
  absl::StatusOr<std::vector<v1::RequestRecord>> DueForDelivery(absl::Time now,
                                                                int limit) override;

  // The schema version recorded in the file.
  absl::StatusOr<int> SchemaVersion();

 private:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InsertLocked(const RecordKey& key, const v1::RequestRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);  // Owned.
};

}  // namespace comity

#endif  // COMITY_SERVER_STORE_SQLITE_STORE_H_
