#include "server/node/backup.h"

#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/random.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

std::string FormatMicros(int64_t micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<Backup::Copy> Backup::Write(const std::string& operator_name) {
  Copy copy;
  copy.path =
      absl::StrCat(ctx_->config().data_dir(), "/backup-", RandomUuid(), ".db.partial");
  absl::StatusOr<BackupOrigin> origin = ctx_->store().Backup(copy.path);
  if (!origin.ok()) {
    std::remove(copy.path.c_str());
    return origin.status();
  }
  copy.origin = *origin;
  // Logged after the copy, so the entry says exactly what the copy holds.
  absl::Status audited = ctx_->store().audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = ctx_->Event(v1::BACKUP_TAKEN, "operator:" + operator_name);
    e.set_detail(absl::StrCat("database copied with ", copy.origin.audit_size,
                              " audit log entries"));
    return w.Append(&e).status();
  });
  if (!audited.ok()) {
    std::remove(copy.path.c_str());
    return audited;
  }
  LogEvent(LogLevel::kInfo, "backup_taken",
           {{"operator", operator_name},
            {"audit_size", absl::StrCat(copy.origin.audit_size)}});
  return copy;
}

absl::Status Backup::CheckRestoredLog() {
  COMITY_ASSIGN_OR_RETURN(std::optional<BackupOrigin> origin,
                          ctx_->store().RestoredBackupOrigin());
  if (!origin.has_value()) return absl::OkStatus();
  COMITY_ASSIGN_OR_RETURN(uint64_t size, ctx_->store().audit().Size());
  const absl::Duration timeout = ctx_->attempt_timeout();
  // What each peer saw of this node's log must be in the restored log:
  // a head of a larger size, or another root at its size, was signed after
  // the backup was taken.
  std::vector<std::string> conflicts;
  std::vector<std::string> unchecked;
  std::vector<std::string> checked;
  for (const auto& [peer, unused] : ctx_->setup().peers) {
    absl::StatusOr<std::optional<v1::SignedEnvelope>> held =
        ctx_->transport().GetHeldHead(peer, timeout);
    if (!held.ok()) {
      unchecked.push_back(absl::StrCat(peer, " (", held.status().message(), ")"));
      continue;
    }
    if (!held->has_value()) {
      checked.push_back(absl::StrCat(peer, ": no head"));
      continue;
    }
    const v1::SignedEnvelope& env = **held;
    v1::TreeHead head;
    if (env.signer_party() != ctx_->party() ||
        !VerifyEnvelope(env, kTreeHeadPayloadType, ctx_->key_ring()).ok() ||
        !head.ParseFromString(env.payload()) || head.party() != ctx_->party()) {
      unchecked.push_back(absl::StrCat(peer, " (its answer is not a head signed by ",
                                       ctx_->party(), ")"));
      continue;
    }
    if (head.tree_size() > size) {
      conflicts.push_back(absl::StrCat(peer, " holds a head of size ", head.tree_size(),
                                       " this node signed at ",
                                       FormatMicros(head.timestamp_unix_micros()),
                                       ", beyond the ", size, " entries restored"));
      continue;
    }
    absl::StatusOr<std::string> root = ctx_->store().audit().RootAt(head.tree_size());
    if (!root.ok() || *root != head.root_hash()) {
      conflicts.push_back(absl::StrCat(peer, " holds a head of size ", head.tree_size(),
                                       " whose root differs from the restored log's"));
      continue;
    }
    checked.push_back(
        absl::StrCat(peer, ": head of size ", head.tree_size(), " consistent"));
  }

  const std::string ack_file = ctx_->config().data_dir() + "/accept-restored-log";
  const bool acknowledged = ::access(ack_file.c_str(), F_OK) == 0;
  if ((!conflicts.empty() || !unchecked.empty()) && !acknowledged) {
    std::string why =
        absl::StrCat("this node's database was restored from a backup taken at ",
                     FormatMicros(origin->taken_at_us), " with ", origin->audit_size,
                     " audit log entries; ");
    if (!conflicts.empty()) {
      absl::StrAppend(
          &why, "this node signed more of its log after that backup: ",
          absl::StrJoin(conflicts, "; "),
          ". Starting would sign a second, different log of those sizes, which "
          "the peers see as a split view. Restore a later backup if there is one; ");
    }
    if (!unchecked.empty()) {
      absl::StrAppend(&why,
                      "these peers could not be asked which heads of this log they "
                      "hold: ",
                      absl::StrJoin(unchecked, "; "),
                      ". Start again once they are reachable; ");
    }
    absl::StrAppend(&why,
                    "to start anyway (audited as LOG_RESTORED; peers that hold later "
                    "heads will report a split view), create ",
                    ack_file, " and start again (docs/backup.md)");
    return absl::FailedPreconditionError(why);
  }
  std::string detail = absl::StrCat(
      "restored from a backup taken at ", FormatMicros(origin->taken_at_us), " with ",
      origin->audit_size, " entries; peers: ", absl::StrJoin(checked, "; "));
  if (!conflicts.empty() || !unchecked.empty()) {
    absl::StrAppend(&detail, "; started on the operator's acknowledgement despite: ",
                    absl::StrJoin(conflicts, "; "), conflicts.empty() ? "" : "; ",
                    absl::StrJoin(unchecked, "; "));
  }
  COMITY_RETURN_IF_ERROR(ctx_->store().audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = ctx_->Event(v1::LOG_RESTORED, "node");
    e.set_detail(detail.substr(0, 2000));
    return w.Append(&e).status();
  }));
  COMITY_RETURN_IF_ERROR(ctx_->store().ClearBackupOrigin());
  if (acknowledged) std::remove(ack_file.c_str());
  LogEvent(conflicts.empty() ? LogLevel::kInfo : LogLevel::kError, "log_restored",
           {{"detail", detail}});
  return absl::OkStatus();
}

}  // namespace comity
