#include "server/store/sql/audit_appender.h"

#include "absl/strings/str_cat.h"
#include "server/core/envelope.h"
#include "server/store/sql/schema.h"
#include "server/util/status_macros.h"

namespace comity::sql {


absl::StatusOr<std::string> AuditAppender::Append(v1::AuditEntry* entry) {
  if (!writable_) {
    return absl::InternalError(
        "audit append in a transaction not opened for the audit log (a bug in the store)");
  }
  // After a failed append the transaction is rolled back, frontier and all:
  // nothing more may be appended in it.
  COMITY_RETURN_IF_ERROR(failed_);
  entry->set_index(frontier_.size());
  std::string bytes = SerializeDeterministic(*entry);
  absl::Status st = Insert(*entry, bytes);
  if (!st.ok()) {
    failed_ = st;
    return st;
  }
  return bytes;
}

absl::Status AuditAppender::Insert(const v1::AuditEntry& entry, const std::string& bytes) {
  absl::Status st = session_
                        ->Exec("INSERT INTO audit_entries (idx, time_us, type, actor, "
                               "request_id, party, entry) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                               Params()
                                   .Int(static_cast<int64_t>(entry.index()))
                                   .Int(entry.time_unix_micros())
                                   .Int(entry.type())
                                   .Text(entry.actor())
                                   .Text(entry.request_id())
                                   .Text(entry.party())
                                   .Blob(bytes))
                        .status();
  if (absl::IsAlreadyExists(st)) {
    return absl::DataLossError(absl::StrCat(
        "the audit log is damaged: entry ", entry.index(),
        " exists beyond its last index; run 'comity audit verify' and restore from backup"));
  }
  COMITY_RETURN_IF_ERROR(st);
  created_.clear();
  frontier_.Append(merkle::LeafHash(bytes), &created_);
  // One row per statement: SQLite keeps a statement journal for a statement
  // that writes several rows, whose cost grows with the transaction.
  for (merkle::NodeRef& node : created_) {
    st = session_
             ->Exec("INSERT INTO audit_nodes (level, idx, hash) VALUES ($1, $2, $3)",
                    Params().Int(node.level).Int(static_cast<int64_t>(node.index)).Blob(
                        std::move(node.hash)))
             .status();
    if (absl::IsAlreadyExists(st)) {
      return absl::DataLossError(absl::StrCat(
          "the audit log is damaged: hashes exist beyond its ", entry.index(),
          " entries (entries were removed); run 'comity audit verify' and restore from "
          "backup"));
    }
    COMITY_RETURN_IF_ERROR(st);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> AuditAppender::InclusionProof(
    uint64_t index, uint64_t size) const {
  return merkle::InclusionProof(SessionNodeSource(session_), index, size);
}

absl::Status AuditAppender::PutTreeHead(const v1::TreeHead& head,
                                        const v1::SignedEnvelope& signed_head) {
  return session_
      ->Exec(
          "INSERT INTO audit_heads (tree_size, root, timestamp_us, signed_head) "
          "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
          Params()
              .Int(static_cast<int64_t>(head.tree_size()))
              .Blob(head.root_hash())
              .Int(head.timestamp_unix_micros())
              .Blob(signed_head.SerializeAsString()))
      .status();
}

}  // namespace comity::sql
