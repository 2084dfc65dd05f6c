// The PostgreSQL implementation of Store, for a party that runs several
// comityd replicas on one database behind one address (docs/storage.md,
// "PostgreSQL").
//
//   COMITY_ASSIGN_OR_RETURN(std::unique_ptr<PgStore> store,
//                           PgStore::Open("postgresql://comity@db.example/comity"));
//
// Same semantics and durability as SqliteStore: every mutating call has
// committed (synchronous_commit = on) when it returns OK, with the audit
// entries its AuditFn appended in the same transaction. What differs is
// what several replicas need:
//  - The audit log has one writer at a time: every transaction that may
//    append takes pg_advisory_xact_lock(kAuditLockKey) first and then reads
//    the log's size from the database (another replica may have appended);
//    the in-memory Merkle frontier is used only if its size matches.
//  - Due work is claimed: DueForDelivery, DueTransitions and DueProposals
//    mark the rows they return as claimed by this instance until
//    now + claim_lease (database clock). Another instance skips a row under
//    a live claim; this instance gets it again (so a single replica behaves
//    exactly like SqliteStore). The Mark*/Finish* calls release the claim;
//    a crashed replica's claims expire with the lease.
#ifndef COMITY_SERVER_STORE_PG_STORE_H_
#define COMITY_SERVER_STORE_PG_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/audit/merkle.h"
#include "server/store/store.h"

typedef struct pg_conn PGconn;

namespace comity {
namespace pg_internal {
class Params;
class Result;
}  // namespace pg_internal

// Thread-safe: calls are serialized on one connection per instance. Run one
// instance per process (replica); several processes may share a database.
// Within one instance, the caller must not fetch the same due rows from two
// threads at once (the node has one worker per kind of work).
class PgStore final : public Store {
 public:
  // The schema version this build writes (its own numbering, independent
  // of SqliteStore's).
  static constexpr int kSchemaVersion = 1;
  // pg_advisory_xact_lock keys (the bigint key space): "comity" then a
  // purpose. Every transaction that may append to the audit log takes
  // kAuditLockKey first; migrations take kMigrationLockKey.
  static constexpr int64_t kAuditLockKey = 0x636f6d6974790001;
  static constexpr int64_t kMigrationLockKey = 0x636f6d6974790002;

  struct Options {
    // How long a claim on due work holds before another replica may take
    // the row. Longer than a worker's batch takes (64 rows x
    // delivery.attempt_timeout_ms), else a slow batch may be delivered twice
    // (harmless: the receiver answers a repeat with what it stored).
    absl::Duration claim_lease = absl::Minutes(5);
    // This replica's name in claims. Stable across restarts (comityd uses
    // host and peer listen address), so that a replica killed mid-batch gets
    // its own claims back at once instead of after the lease; empty: a new
    // name per process.
    std::string replica_id;
  };

  // Connects with libpq (`conninfo`: a postgresql:// URL or key=value
  // string) and migrates the schema, serialized across replicas.
  // Unavailable if the server cannot be reached; FailedPrecondition if the
  // database was written by a newer version.
  static absl::StatusOr<std::unique_ptr<PgStore>> Open(const std::string& conninfo,
                                                       const Options& options);
  static absl::StatusOr<std::unique_ptr<PgStore>> Open(const std::string& conninfo) {
    return Open(conninfo, Options());
  }
  // Releases this instance's claims (so that a restart or another replica
  // picks the work up at once) and closes the connection.
  ~PgStore() override;

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
  absl::StatusOr<std::vector<RequestCount>> CountRequests() override;
  // Unimplemented: a PostgreSQL database is backed up with pg_dump, which
  // takes a consistent snapshot while the node runs (docs/backup.md).
  absl::StatusOr<BackupOrigin> Backup(const std::string& dest_path) override;
  // Always none: copies are not made by this store.
  absl::StatusOr<std::optional<BackupOrigin>> RestoredBackupOrigin() override;
  absl::Status ClearBackupOrigin() override;
  absl::StatusOr<int> RewindTransitions(const std::string& request_id,
                                        uint32_t before_sequence, absl::Time now) override;
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
  absl::Status MarkTransitionFailed(const std::string& request_id, uint32_t sequence,
                                    const std::string& error,
                                    absl::Time next_attempt_at) override;
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

  // The schema version recorded in the database.
  absl::StatusOr<int> SchemaVersion();
  // This instance's name in claimed_by columns: "<host>:<pid>:<random>".
  const std::string& replica_id() const { return replica_id_; }

 private:
  class Writer;
  class NodeSource;
  PgStore(PGconn* conn, std::string conninfo, Options options, std::string replica_id);

  // Reconnects if the connection was lost (PQreset) and sets the session up.
  absl::Status EnsureConnected() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SetUpSession() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A statement with parameters, results in binary format.
  absl::StatusOr<pg_internal::Result> Query(const char* sql, const pg_internal::Params& params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<pg_internal::Result> Query(const std::string& sql,
                                            const pg_internal::Params& params)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One or more statements without parameters (DDL, BEGIN, COMMIT).
  absl::Status Exec(const char* sql) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Migrate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckLogAtOpen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The log's size in the database: MAX(idx) + 1.
  absl::StatusOr<uint64_t> LogSize() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CheckSize(uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status InsertLocked(const RecordKey& key, const v1::RequestRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // BEGIN; if `audit` the audit lock and the current frontier; body; COMMIT
  // (ROLLBACK on error, the cached frontier kept only after COMMIT).
  absl::Status InTransaction(bool audit, const std::function<absl::Status(Writer&)>& body)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UPDATE of a pending outgoing row (state and direction bound last).
  absl::Status UpdateOutgoing(const std::string& request_id, const char* sql,
                              pg_internal::Params params, const AuditFn& audit);
  int64_t LeaseMicros() const { return absl::ToInt64Microseconds(options_.claim_lease); }

  absl::Mutex mu_;
  PGconn* conn_ ABSL_GUARDED_BY(mu_);  // Owned.
  const std::string conninfo_;
  const Options options_;
  const std::string replica_id_;
  // The frontier as of the last commit by this instance; valid only if its
  // size equals the log's size read under the audit lock.
  merkle::Frontier frontier_ ABSL_GUARDED_BY(mu_);
};

}  // namespace comity

#endif  // COMITY_SERVER_STORE_PG_STORE_H_
