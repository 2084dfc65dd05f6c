// Internal to server/store/: the one AuditWriter of both backends. It
// appends entries and the Merkle nodes they complete through a Session,
// inside the transaction that records the change (docs/audit_log.md,
// docs/storage.md).
#ifndef COMITY_SERVER_STORE_SQL_AUDIT_APPENDER_H_
#define COMITY_SERVER_STORE_SQL_AUDIT_APPENDER_H_

#include <string>
#include <vector>

#include "server/audit/merkle.h"
#include "server/store/sql/database.h"
#include "server/store/store.h"

namespace comity::sql {

// Appends after `frontier` (the log as committed, or as this transaction
// left it so far). Not thread-safe; lives for one transaction body.
class AuditAppender final : public AuditWriter {
 public:
  // `writable` false: every Append fails (the transaction was not opened
  // for the audit log, so it does not hold the appenders' lock).
  AuditAppender(Session* session, merkle::Frontier frontier, bool writable = true)
      : session_(session), frontier_(std::move(frontier)), writable_(writable) {}

  // Errors: DataLoss when the log is damaged (an entry or hash already
  // exists beyond its end: entries were removed), else the session's.
  absl::StatusOr<std::string> Append(v1::AuditEntry* entry) override;
  uint64_t size() const override { return frontier_.size(); }
  std::string Root() const override { return frontier_.Root(); }
  absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index,
                                                          uint64_t size) const override;
  absl::Status PutTreeHead(const v1::TreeHead& head,
                           const v1::SignedEnvelope& signed_head) override;

  // The frontier after what was appended: the backend keeps it when the
  // transaction commits (after a failed append it rolls back instead).
  const merkle::Frontier& frontier() const { return frontier_; }

 private:
  // The entry's row and the Merkle nodes it completes.
  absl::Status Insert(const v1::AuditEntry& entry, const std::string& bytes);

  Session* session_;
  merkle::Frontier frontier_;
  const bool writable_;
  absl::Status failed_;  // The first failed append's error.
  std::vector<merkle::NodeRef> created_;
};

}  // namespace comity::sql

#endif  // COMITY_SERVER_STORE_SQL_AUDIT_APPENDER_H_
