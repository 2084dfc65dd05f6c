// The SQLite implementation of Store: one file in the node's data
// directory, WAL journal, synchronous=FULL, schema migrated on open
// (docs/storage.md).
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> store,
//                           SqliteStore::Open(data_dir + "/comity.db"));
#ifndef COMITY_SERVER_STORE_SQLITE_STORE_H_
#define COMITY_SERVER_STORE_SQLITE_STORE_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "server/audit/merkle.h"
#include "server/store/store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace comity {
namespace sqlite_internal {
class Statement;
}  // namespace sqlite_internal

// Thread-safe: calls are serialized on one connection.
class SqliteStore final : public Store {
 public:
  // The schema version this build writes.
  static constexpr int kSchemaVersion = 5;

  // Opens (creating if needed) the database at `path` and migrates it.
  // FailedPrecondition if the file was written by a newer version.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(const std::string& path);
  ~SqliteStore() override;

  absl::Status InsertOutgoing(const RecordKey& key, const v1::RequestRecord& record,
                              const AuditFn& audit = nullptr) override;
  absl::StatusOr<v1::RequestRecord> InsertIncomingIfAbsent(
      const RecordKey& key,
      const std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)>& build,
      bool* inserted) override;
  absl::Status MarkApproved(const std::string& request_id,
                            const v1::SignedEnvelope& signed_request,
                            const std::string& approver, absl::Time now,
                            const AuditFn& audit = nullptr) override;
  absl::Status MarkDelivered(const std::string& request_id, const v1::SignedEnvelope& receipt,
                             absl::Time now, const AuditFn& audit = nullptr) override;
  absl::Status MarkDeliveryFailed(const std::string& request_id, const std::string& error,
                                  absl::Time now, absl::Time next_attempt_at,
                                  const AuditFn& audit = nullptr) override;
  absl::Status MarkRejected(const std::string& request_id, const std::string& error,
                            absl::Time now, const AuditFn& audit = nullptr) override;
  absl::StatusOr<std::vector<v1::RequestRecord>> Get(const std::string& request_id) override;
  absl::StatusOr<std::map<std::string, std::pair<uint32_t, uint32_t>>> QueueDepths() override;
  absl::Status AppendTransition(const std::string& request_id, v1::Direction row,
                                const v1::Transition& transition,
                                const v1::SignedEnvelope& signed_transition, bool outbound,
                                absl::Time now, const AuditFn& audit = nullptr) override;
  absl::StatusOr<std::vector<PendingTransition>> DueTransitions(const std::string& peer,
                                                                absl::Time now,
                                                                int limit) override;
  absl::Status MarkTransitionDelivered(const std::string& request_id, uint32_t sequence,
                                       const v1::SignedEnvelope& ack,
                                       const AuditFn& audit = nullptr) override;
  absl::StatusOr<int64_t> EnqueueProposal(const std::string& request_id,
                                          const std::string& peer,
                                          const v1::SignedEnvelope& proposal, absl::Time now,
                                          const AuditFn& audit = nullptr) override;
  absl::StatusOr<std::vector<PendingProposal>> DueProposals(const std::string& peer,
                                                            absl::Time now,
                                                            int limit) override;
  absl::StatusOr<std::vector<PendingProposal>> QueuedProposals(
      const std::string& request_id) override;
  absl::Status FinishProposal(int64_t id, const std::string& outcome,
                              const AuditFn& audit = nullptr) override;
  absl::Status MarkProposalFailed(int64_t id, const std::string& error,
                                  absl::Time next_attempt_at) override;
  absl::Status MarkTransitionFailed(const std::string& request_id, uint32_t sequence,
                                    const std::string& error,
                                    absl::Time next_attempt_at) override;
  absl::StatusOr<std::vector<v1::RequestRecord>> List(v1::Direction direction,
                                                      int limit) override;
  absl::StatusOr<std::vector<v1::RequestRecord>> DueForDelivery(const std::string& peer,
                                                                absl::Time now,
                                                                int limit) override;
  absl::Status Audit(const AuditFn& audit) override;
  absl::StatusOr<uint64_t> AuditSize() override;
  absl::StatusOr<std::vector<std::string>> AuditEntries(const AuditFilter& filter) override;
  absl::StatusOr<std::vector<StoredTreeHead>> TreeHeads() override;
  absl::StatusOr<std::string> RootAt(uint64_t size) override;
  absl::StatusOr<std::vector<std::string>> InclusionProofAt(uint64_t index,
                                                            uint64_t size) override;
  absl::StatusOr<std::vector<std::string>> ConsistencyProofAt(uint64_t old_size,
                                                              uint64_t new_size) override;
  absl::Status ForEachAuditEntry(
      const std::function<absl::Status(uint64_t, const std::string&)>& fn) override;
  absl::StatusOr<std::optional<StoredTreeHead>> LatestTreeHead() override;
  absl::Status ForEachAuditNode(
      const std::function<absl::Status(int, uint64_t, const std::string&)>& fn) override;
  absl::StatusOr<std::optional<StoredTreeHead>> LatestPeerHead(
      const std::string& party) override;
  absl::Status PutPeerHead(const std::string& party, const StoredTreeHead& head) override;

  absl::StatusOr<std::vector<RequestCount>> CountRequests() override;
  // SQLite's online backup API, a few pages per step with the store's
  // mutex held only during each step (other calls run in between; their
  // changes go through the same connection, so SQLite carries them into
  // the copy): the copy is the database as it stood after the last step.
  absl::StatusOr<BackupOrigin> Backup(const std::string& dest_path) override;
  absl::StatusOr<std::optional<BackupOrigin>> RestoredBackupOrigin() override;
  absl::Status ClearBackupOrigin() override;
  absl::StatusOr<int> RewindTransitions(const std::string& request_id,
                                        uint32_t before_sequence, absl::Time now) override;

  // The schema version recorded in the file.
  absl::StatusOr<int> SchemaVersion();

 private:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InsertLocked(const RecordKey& key, const v1::RequestRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  class Writer;
  // Runs `body` in a durable transaction (rolled back, with the frontier,
  // if it fails), committed together with the transactions other threads
  // queued meanwhile: one fsync for all. Call without holding mu_.
  absl::Status InTransaction(const std::function<absl::Status(Writer&)>& body)
      ABSL_LOCKS_EXCLUDED(mu_);
  struct PendingTransaction {
    const std::function<absl::Status(Writer&)>* body;
    absl::Status result;
    bool done = false;
  };
  void CommitBatch(const std::vector<PendingTransaction*>& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status UpdateOutgoing(const std::string& request_id, const char* sql,
                              const std::function<void(sqlite_internal::Statement&)>& bind,
                              const AuditFn& audit);
  absl::Status LoadFrontier() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);  // Owned.
  // Prepared statements for the hot paths, by SQL text. Owned.
  std::map<const char*, sqlite3_stmt*> statements_ ABSL_GUARDED_BY(mu_);
  merkle::Frontier frontier_ ABSL_GUARDED_BY(mu_);
  // Group commit (InTransaction).
  absl::Mutex commit_mu_;
  std::vector<PendingTransaction*> commit_queue_ ABSL_GUARDED_BY(commit_mu_);
  bool leader_active_ ABSL_GUARDED_BY(commit_mu_) = false;
};

}  // namespace comity

#endif  // COMITY_SERVER_STORE_SQLITE_STORE_H_
