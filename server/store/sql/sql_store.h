// Internal to server/store/: the Store written once in SQL over a Database
// backend (database.h), one class per aggregate. The backends
// (server/store/sqlite/, server/store/postgres/) only open a Database and
// wrap it: NewSqlStore(std::move(db)).
#ifndef COMITY_SERVER_STORE_SQL_SQL_STORE_H_
#define COMITY_SERVER_STORE_SQL_SQL_STORE_H_

#include <memory>

#include "server/store/sql/database.h"
#include "server/store/store.h"

namespace comity::sql {

class SqlRequestStore final : public RequestStore {
 public:
  explicit SqlRequestStore(Database* db) : db_(db) {}
  absl::Status InsertOutgoing(const RecordKey& key, const v1::RequestRecord& record,
                              const AuditFn& audit) override;
  absl::StatusOr<v1::RequestRecord> InsertIncomingIfAbsent(
      const RecordKey& key,
      const std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)>& build,
      bool* inserted) override;
  absl::StatusOr<std::vector<IncomingOutcome>> InsertIncomingBatch(
      const std::vector<RecordKey>& keys, const BuildBatchFn& build) override;
  absl::Status MarkApproved(const std::string& request_id,
                            const v1::SignedEnvelope& signed_request,
                            const std::string& approver, absl::Time now,
                            const AuditFn& audit) override;
  absl::StatusOr<std::vector<v1::RequestRecord>> Get(
      const std::string& request_id) override;
  absl::StatusOr<RecordPage> List(const ListQuery& query) override;
  absl::StatusOr<RecordPage> SharedWith(const SharedQuery& query) override;
  absl::StatusOr<std::vector<std::string>> Linked(const std::string& request_id) override;
  absl::StatusOr<std::vector<RequestCount>> Count() override;

 private:
  Database* db_;
};

class SqlCaseStore final : public CaseStore {
 public:
  explicit SqlCaseStore(Database* db) : db_(db) {}
  absl::Status AppendTransition(const std::string& request_id, v1::Direction row,
                                const v1::Transition& transition,
                                const v1::SignedEnvelope& signed_transition,
                                bool outbound, absl::Time now, absl::Time next_deadline,
                                const AuditFn& audit) override;
  absl::StatusOr<std::vector<CaseRef>> Due(absl::Time before, int limit) override;
  absl::StatusOr<std::vector<CaseRef>> WithDeadlineBefore(absl::Time before,
                                                          const CaseRef* after,
                                                          int limit) override;
  absl::Status MarkDeadlinesChecked(const std::string& request_id, v1::Direction direction,
                                    absl::Time next_check, uint32_t escalated,
                                    const AuditFn& audit) override;
  absl::StatusOr<std::vector<CaseRef>> Open(const CaseRef* after, int limit) override;
  absl::Status SetNextDeadline(const std::string& request_id, v1::Direction direction,
                               absl::Time next_deadline) override;
  absl::StatusOr<std::vector<PendingEvidence>> DueEvidence(const std::string& peer,
                                                           absl::Time now, int limit,
                                                           absl::Time latest) override;
  absl::StatusOr<std::vector<PendingEvidence>> PendingEvidenceOf(
      const std::string& request_id) override;
  absl::StatusOr<std::vector<v1::SignedEnvelope>> StepAcknowledgements(
      const std::string& request_id) override;
  absl::Status MarkEvidenceHeld(const std::string& request_id, const std::string& sha256,
                                const AuditFn& audit) override;
  absl::Status MarkEvidenceDeferred(const std::string& request_id,
                                    const std::string& sha256, const std::string& error,
                                    bool count_attempt,
                                    absl::Time next_attempt_at) override;
  absl::StatusOr<int> RetryEvidence(const std::string& request_id, absl::Time now) override;
  absl::StatusOr<std::map<std::string, std::pair<int, int>>> PendingEvidenceCounts(
      uint32_t given_up_after) override;
  absl::Status StageEvidence(const StagedEvidence& file, absl::Time now,
                             const AuditFn& audit) override;
  absl::StatusOr<std::vector<StagedEvidence>> StagedEvidenceOf(
      const std::string& request_id) override;

 private:
  Database* db_;
};

class SqlOutboxStore final : public OutboxStore {
 public:
  explicit SqlOutboxStore(Database* db) : db_(db) {}
  absl::StatusOr<std::vector<v1::RequestRecord>> DueRequests(const std::string& peer,
                                                             absl::Time now,
                                                             int limit, absl::Time latest) override;
  absl::Status MarkDelivered(const std::string& request_id,
                             const v1::SignedEnvelope& receipt, absl::Time now,
                             absl::Time next_deadline, const AuditFn& audit) override;
  absl::StatusOr<std::vector<bool>> MarkDeliveredBatch(const std::vector<Delivered>& items,
                                                       absl::Time now) override;
  absl::Status MarkDeliveryFailed(const std::string& request_id, const std::string& error,
                                  absl::Time now, absl::Time next_attempt_at,
                                  const AuditFn& audit) override;
  absl::Status MarkRejected(const std::string& request_id, const std::string& error,
                            absl::Time now, const AuditFn& audit) override;
  absl::StatusOr<std::vector<PendingTransition>> DueTransitions(const std::string& peer,
                                                                absl::Time now,
                                                                int limit, absl::Time latest) override;
  absl::Status MarkTransitionDelivered(const std::string& request_id, uint32_t sequence,
                                       const v1::SignedEnvelope& ack,
                                       const AuditFn& audit) override;
  absl::Status MarkTransitionFailed(const std::string& request_id, uint32_t sequence,
                                    const std::string& error,
                                    absl::Time next_attempt_at) override;
  absl::StatusOr<int> RewindTransitions(const std::string& request_id,
                                        uint32_t before_sequence,
                                        absl::Time now) override;
  absl::StatusOr<int64_t> EnqueueProposal(const std::string& request_id,
                                          const std::string& peer,
                                          const v1::SignedEnvelope& proposal,
                                          absl::Time now, const AuditFn& audit) override;
  absl::StatusOr<std::vector<PendingProposal>> DueProposals(const std::string& peer,
                                                            absl::Time now,
                                                            int limit, absl::Time latest) override;
  absl::StatusOr<std::vector<PendingProposal>> QueuedProposals(
      const std::string& request_id) override;
  absl::Status FinishProposal(int64_t id, const std::string& outcome,
                              const AuditFn& audit) override;
  absl::Status MarkProposalFailed(int64_t id, const std::string& error,
                                  absl::Time next_attempt_at) override;
  absl::StatusOr<std::map<std::string, std::pair<uint32_t, uint32_t>>> Depths() override;

 private:
  // Updates the outgoing request if it is still PENDING_DELIVERY (the
  // statement's last two parameters are the id and that state); NotFound
  // otherwise.
  absl::Status UpdatePending(const std::string& request_id, const char* sql,
                             Params params, const AuditFn& audit);
  Database* db_;
};

class SqlAuditStore final : public AuditStore {
 public:
  explicit SqlAuditStore(Database* db) : db_(db) {}
  absl::Status Append(const AuditFn& audit) override;
  absl::StatusOr<uint64_t> Size() override;
  absl::StatusOr<std::vector<std::string>> Entries(const AuditFilter& filter) override;
  absl::StatusOr<AuditEntryPage> EntryPage(const AuditFilter& filter) override;
  absl::StatusOr<std::vector<StoredTreeHead>> TreeHeads(uint64_t from_size,
                                                        uint64_t limit) override;
  absl::StatusOr<std::optional<StoredTreeHead>> LatestTreeHead() override;
  absl::StatusOr<std::string> RootAt(uint64_t size) override;
  absl::StatusOr<std::vector<std::string>> InclusionProofAt(uint64_t index,
                                                            uint64_t size) override;
  absl::StatusOr<std::vector<std::string>> ConsistencyProofAt(uint64_t old_size,
                                                              uint64_t new_size) override;
  absl::Status ReadSnapshot(
      const std::function<absl::Status(AuditSnapshot&)>& fn) override;
  absl::StatusOr<std::optional<StoredTreeHead>> LatestPeerHead(
      const std::string& party) override;
  absl::Status PutPeerHead(const std::string& party, const StoredTreeHead& head,
                           absl::Time received_at) override;

 private:
  Database* db_;
};

// The Store over `db`, which it owns.
std::unique_ptr<Store> NewSqlStore(std::unique_ptr<Database> db);

}  // namespace comity::sql

#endif  // COMITY_SERVER_STORE_SQL_SQL_STORE_H_
