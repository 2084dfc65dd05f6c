#include "server/store/sql/audit_appender.h"

#include <array>

#include "absl/strings/str_cat.h"
#include "server/core/envelope.h"
#include "server/store/sql/schema.h"
#include "server/util/status_macros.h"

namespace comity::sql {
namespace {

// An append completes at most one node per level, 64 in all.
constexpr size_t kMaxNodes = 64;

// "INSERT INTO audit_nodes ... VALUES ($1, $2, $3), ..." for n rows, so
// that an entry's nodes go in one statement.
const std::string& InsertNodesSql(size_t n) {
  static const std::array<std::string, kMaxNodes + 1>* const kSql = [] {
    auto* all = new std::array<std::string, kMaxNodes + 1>();
    for (size_t rows = 1; rows <= kMaxNodes; ++rows) {
      std::string& sql = (*all)[rows];
      sql = "INSERT INTO audit_nodes (level, idx, hash) VALUES ";
      for (size_t i = 0; i < rows; ++i) {
        absl::StrAppend(&sql, i == 0 ? "" : ", ", "($", 3 * i + 1, ", $", 3 * i + 2,
                        ", $", 3 * i + 3, ")");
      }
    }
    return all;
  }();
  return (*kSql)[n];
}

}  // namespace

absl::StatusOr<std::string> AuditAppender::Append(v1::AuditEntry* entry) {
  if (!writable_) {
    return absl::InternalError(
        "audit append in a transaction not opened for the audit log (a bug in the "
        "store)");
  }
  entry->set_index(frontier_.size());
  std::string bytes = SerializeDeterministic(*entry);
  created_.clear();
  merkle::Frontier next = frontier_;
  next.Append(merkle::LeafHash(bytes), &created_);
  absl::Status st =
      session_
          ->Exec(
              "INSERT INTO audit_entries (idx, time_us, type, actor, "
              "request_id, party, entry) VALUES ($1, $2, $3, $4, $5, $6, $7)",
              Params()
                  .Int(static_cast<int64_t>(entry->index()))
                  .Int(entry->time_unix_micros())
                  .Int(entry->type())
                  .Text(entry->actor())
                  .Text(entry->request_id())
                  .Text(entry->party())
                  .Blob(bytes))
          .status();
  if (absl::IsAlreadyExists(st)) {
    return absl::DataLossError(absl::StrCat("the audit log is damaged: entry ",
                                            entry->index(),
                                            " exists beyond its last index; run 'comity "
                                            "audit verify' and restore from backup"));
  }
  COMITY_RETURN_IF_ERROR(st);
  if (created_.size() > kMaxNodes) return absl::InternalError("too many Merkle nodes");
  Params nodes;
  for (const merkle::NodeRef& node : created_) {
    nodes.Int(node.level).Int(static_cast<int64_t>(node.index)).Blob(node.hash);
  }
  st = session_->Exec(InsertNodesSql(created_.size()), nodes).status();
  if (absl::IsAlreadyExists(st)) {
    return absl::DataLossError(
        absl::StrCat("the audit log is damaged: hashes exist beyond its ", entry->index(),
                     " entries (entries were removed); run 'comity audit verify' and "
                     "restore from backup"));
  }
  COMITY_RETURN_IF_ERROR(st);
  frontier_ = std::move(next);
  return bytes;
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
