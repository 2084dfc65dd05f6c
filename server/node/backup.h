// Backups and restores of a node's database (docs/backup.md): the
// consistent copy an admin takes while the node runs, and the check a
// restored node makes with its peers before it signs anything.
//
//   Backup backup(&ctx);
//   COMITY_RETURN_IF_ERROR(backup.CheckLogAgainstPeers());   // At start.
//   COMITY_ASSIGN_OR_RETURN(Backup::Copy copy, backup.Write("admin"));
#ifndef COMITY_SERVER_NODE_BACKUP_H_
#define COMITY_SERVER_NODE_BACKUP_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/node/node_context.h"

namespace comity {

// Thread-safe.
class Backup {
 public:
  struct Copy {
    std::string path;
    BackupOrigin origin;
  };
  explicit Backup(const NodeContext* ctx) : ctx_(ctx) {}

  // A consistent copy of the database, written to a new file in data_dir
  // (mode 0600) while the node runs, after a BACKUP_TAKEN entry by
  // `operator_name`; the caller deletes the file when done. Unimplemented
  // for a PostgreSQL store.
  absl::StatusOr<Copy> Write(const std::string& operator_name);
  // At every start, before the node signs anything: asks every peer (at
  // once) for the latest head of this node's log it holds.
  // FailedPrecondition if a peer holds a head this log does not contain
  // (the node signed more and lost it: a restored backup, a database file
  // rolled back or replaced, a torn WAL; going on would sign a second,
  // different log of those sizes, a split view), or, for a database
  // restored from a backup (Store::RestoredBackupOrigin), if a peer cannot
  // be asked; unless the operator acknowledged it (file
  // data_dir/accept-restored-log, consumed), which is then audited
  // (LOG_RESTORED). Then, if `behind_since` is given, sets it when the
  // node starts behind (restored, or acknowledged): the time from which it
  // may have lost what its peers hold (the backup's, else its latest
  // head's), for Recovery::RecoverFromPeers.
  absl::Status CheckLogAgainstPeers(std::optional<absl::Time>* behind_since = nullptr);

 private:
  const NodeContext* const ctx_;
};

}  // namespace comity

#endif  // COMITY_SERVER_NODE_BACKUP_H_
