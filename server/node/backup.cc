#include "server/node/backup.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <thread>
#include <vector>

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

absl::Status Backup::CheckLogAgainstPeers(std::optional<absl::Time>* behind_since) {
  COMITY_ASSIGN_OR_RETURN(std::optional<BackupOrigin> origin,
                          ctx_->store().RestoredBackupOrigin());
  COMITY_ASSIGN_OR_RETURN(uint64_t size, ctx_->store().audit().Size());
  const absl::Duration timeout = ctx_->attempt_timeout();
  // A divergence the operator accepted before (LOG_RESTORED): heads signed
  // before that are the lost log's, already known to the peers as a split
  // view; only a head signed since can show a new loss.
  int64_t accepted_until_us = 0;
  {
    AuditFilter restored;
    restored.type = v1::LOG_RESTORED;
    COMITY_ASSIGN_OR_RETURN(std::vector<std::string> entries,
                            ctx_->store().audit().Entries(restored));
    for (const std::string& bytes : entries) {
      v1::AuditEntry e;
      if (e.ParseFromString(bytes)) {
        accepted_until_us = std::max<int64_t>(accepted_until_us, e.time_unix_micros());
      }
    }
  }
  const char* const held_by_us = origin.has_value() ? "restored" : "this log holds";
  // Every peer at once: the start waits for the slowest answer (at most the
  // attempt timeout), not their sum.
  std::vector<std::string> peers;
  for (const auto& [peer, unused] : ctx_->setup().peers) peers.push_back(peer);
  std::vector<absl::StatusOr<std::optional<v1::SignedEnvelope>>> answers(
      peers.size(), absl::UnknownError("not asked"));
  {
    std::vector<std::thread> asking;
    asking.reserve(peers.size());
    for (size_t i = 0; i < peers.size(); ++i) {
      asking.emplace_back([&, i] { answers[i] = ctx_->transport().GetHeldHead(peers[i], timeout); });
    }
    for (std::thread& t : asking) t.join();
  }
  // What each peer saw of this node's log must be in this log: a head of a
  // larger size, or another root at its size, was signed and then lost (a
  // restored backup, a rolled-back or replaced database file, a torn WAL).
  std::vector<std::string> conflicts;
  std::vector<std::string> unchecked;
  std::vector<std::string> checked;
  for (size_t i = 0; i < peers.size(); ++i) {
    const std::string& peer = peers[i];
    const absl::StatusOr<std::optional<v1::SignedEnvelope>>& held = answers[i];
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
    std::string conflict;
    if (head.tree_size() > size) {
      conflict = absl::StrCat(peer, " holds a head of size ", head.tree_size(),
                              " this node signed at ", FormatMicros(head.timestamp_unix_micros()),
                              ", beyond the ", size, " entries ", held_by_us);
    } else {
      absl::StatusOr<std::string> root = ctx_->store().audit().RootAt(head.tree_size());
      if (!root.ok() || *root != head.root_hash()) {
        conflict = absl::StrCat(peer, " holds a head of size ", head.tree_size(),
                                " whose root differs from the ",
                                origin.has_value() ? "restored log's" : "log's");
      }
    }
    if (!conflict.empty() && !origin.has_value() &&
        head.timestamp_unix_micros() <= accepted_until_us) {
      checked.push_back(absl::StrCat(peer, ": ", conflict, ", accepted at ",
                                     FormatMicros(accepted_until_us)));
      continue;
    }
    if (!conflict.empty()) {
      conflicts.push_back(std::move(conflict));
      continue;
    }
    checked.push_back(
        absl::StrCat(peer, ": head of size ", head.tree_size(), " consistent"));
  }

  const std::string ack_file = ctx_->config().data_dir() + "/accept-restored-log";
  const bool acknowledged = ::access(ack_file.c_str(), F_OK) == 0;
  // A restored backup must be checked by every peer; an ordinary start
  // goes on without the peers it cannot reach (they check this node's
  // heads against theirs as they gossip), but never past a conflict.
  const bool refuse = !conflicts.empty() || (origin.has_value() && !unchecked.empty());
  if (refuse && !acknowledged) {
    std::string why =
        origin.has_value()
            ? absl::StrCat("this node's database was restored from a backup taken at ",
                           FormatMicros(origin->taken_at_us), " with ", origin->audit_size,
                           " audit log entries; ")
            : absl::StrCat("this node's database holds ", size,
                           " audit log entries, less than its peers saw it sign (the file "
                           "was rolled back, replaced by an older copy, or lost its last "
                           "commits); ");
    if (!conflicts.empty()) {
      absl::StrAppend(
          &why, "this node signed more of its log than it now holds: ",
          absl::StrJoin(conflicts, "; "),
          ". Starting would sign a second, different log of those sizes, which "
          "the peers see as a split view. Restore a later backup if there is one; ");
    }
    if (origin.has_value() && !unchecked.empty()) {
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
  // An acknowledgement without a conflict (a PostgreSQL database put back
  // with pg_restore, which carries no backup mark) still makes the node
  // recover what its peers hold.
  if (!origin.has_value() && !refuse && !acknowledged) {
    if (!unchecked.empty()) {
      LogEvent(LogLevel::kWarning, "log_unchecked_at_start",
               {{"peers", absl::StrJoin(unchecked, "; ")}});
    }
    return absl::OkStatus();
  }
  std::string detail =
      origin.has_value()
          ? absl::StrCat("restored from a backup taken at ", FormatMicros(origin->taken_at_us),
                         " with ", origin->audit_size, " entries; peers: ",
                         absl::StrJoin(checked, "; "))
          : absl::StrCat("started with ", size,
                         refuse ? " entries, behind its peers; peers: "
                                : " entries on the operator's acknowledgement of a restore; "
                                  "peers: ",
                         absl::StrJoin(checked, "; "));
  if (refuse) {
    absl::StrAppend(&detail, "; started on the operator's acknowledgement despite: ",
                    absl::StrJoin(conflicts, "; "), conflicts.empty() ? "" : "; ",
                    absl::StrJoin(unchecked, "; "));
  }
  COMITY_RETURN_IF_ERROR(ctx_->store().audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = ctx_->Event(v1::LOG_RESTORED, "node");
    e.set_detail(detail.substr(0, 2000));
    return w.Append(&e).status();
  }));
  if (behind_since != nullptr) {
    if (origin.has_value()) {
      *behind_since = absl::FromUnixMicros(origin->taken_at_us);
    } else {
      COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> latest,
                              ctx_->store().audit().LatestTreeHead());
      *behind_since = latest.has_value()
                          ? absl::FromUnixMicros(latest->head.timestamp_unix_micros())
                          : absl::InfinitePast();
    }
  }
  if (origin.has_value()) COMITY_RETURN_IF_ERROR(ctx_->store().ClearBackupOrigin());
  if (acknowledged) std::remove(ack_file.c_str());
  LogEvent(conflicts.empty() ? LogLevel::kInfo : LogLevel::kError, "log_restored",
           {{"detail", detail}});
  return absl::OkStatus();
}

}  // namespace comity
