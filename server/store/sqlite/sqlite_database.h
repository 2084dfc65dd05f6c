// Internal to server/store/: the SQLite backend of the SQL store (a
// sql::Database), in sqlite_database.cc. Use OpenSqliteStore
// (sqlite_store.h).
#ifndef COMITY_SERVER_STORE_SQLITE_SQLITE_DATABASE_H_
#define COMITY_SERVER_STORE_SQLITE_SQLITE_DATABASE_H_

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/node_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/audit/merkle.h"
#include "server/store/sql/database.h"
#include "server/util/executor.h"

struct sqlite3;
struct sqlite3_stmt;

namespace comity::sqlite_internal {

// One SQLite connection with its prepared statements, by SQL text (as the
// shared store writes it: translated once, then cached). Not thread-safe.
class Connection {
 public:
  // The writer (journal_mode=WAL, synchronous=FULL, a 32 MiB cache), a
  // reader (read-only), or the checkpointer (read-write, a small cache:
  // it only copies the WAL's frames back, at the writer's synchronous=FULL).
  enum class Role { kWriter, kReader, kCheckpointer };
  // Unavailable if the file cannot be opened.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path, Role role);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Takes ownership of an open handle.
  static std::unique_ptr<Connection> Adopt(sqlite3* db);

  sqlite3* db() { return db_; }

  struct Cached {
    sqlite3_stmt* stmt = nullptr;
    bool in_use = false;
  };
  // A prepared statement of `sql` (the store's dialect): the cached one,
  // or a one-off (`cached` null) if that one is in use by an outer query.
  struct Prepared {
    sqlite3_stmt* stmt = nullptr;
    Cached* cached = nullptr;
  };
  absl::StatusOr<Prepared> Prepare(absl::string_view sql);
  // Resets (cached) or finalizes (one-off) a statement from Prepare.
  void Release(const Prepared& p);
  // Runs translated statements without parameters.
  absl::Status Script(absl::string_view sql);

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;  // Owned.
  // By the SQL text as the shared store writes it; node map: stable entries.
  absl::node_hash_map<std::string, Cached> statements_;
};

class SqliteDatabase final : public sql::Database {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteDatabase>> Open(const std::string& path);
  ~SqliteDatabase() override;

  absl::Status Write(bool audit, const sql::WriteFn& body) override
      ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Read(const sql::ReadFn& body) override ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Snapshot(const sql::ReadFn& body) override;
  bool shared() const override { return false; }
  const std::string& replica_id() const override { return replica_id_; }
  absl::Duration claim_lease() const override { return absl::ZeroDuration(); }
  absl::Status Backup(const std::string& dest_path, int64_t taken_at_us,
                      uint64_t* audit_size) override;
  // PRAGMA quick_check on the session's connection.
  absl::Status CheckIntegrity(sql::Session& session) override;

  // Below this size a file is checked in full at open (PRAGMA
  // integrity_check: every page, every index against its table); at or
  // above it, PRAGMA quick_check (every page and b-tree, not the indexes'
  // contents), which `audit verify` also runs (docs/storage.md, "Opening").
  static constexpr int64_t kFullCheckBelowBytes = int64_t{256} << 20;

  // WAL checkpoints run apart from the commits (docs/storage.md): each
  // time the WAL has grown by kCheckpointPages, a thread of the database's
  // own copies its frames back into the database on a connection of its
  // own (PASSIVE: it never waits for, nor blocks, the writer or a reader),
  // so commits do not carry that copy and its fsyncs. The WAL starts over
  // when a checkpoint has caught up with the last commit before the next
  // one begins; under writes without a pause that never happens, so a
  // commit that finds kMaxWalPages copies back the frames since the
  // checkpointer's last pass itself (as SQLite's autocheckpoint would).
  static constexpr int kCheckpointPages = 1000;
  static constexpr int kMaxWalPages = 4000;
  // Checkpoints run so far, by the checkpointer and by commits (tests).
  int64_t checkpoints_apart() const { return checkpoints_apart_.load(); }
  int64_t checkpoints_inline() const { return checkpoints_inline_.load(); }

 private:
  SqliteDatabase(std::string path, std::unique_ptr<Connection> conn)
      : path_(std::move(path)), conn_(std::move(conn)) {}
  struct PendingWrite {
    const sql::WriteFn* body;
    bool audit;
    absl::Status result;
    bool done = false;
  };
  void CommitBatch(const std::vector<PendingWrite*>& batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // sqlite3_wal_hook of the writer: after each commit, the WAL's size.
  static int AfterCommit(void* self, struct sqlite3* db, const char* schema, int wal_pages);
  // One PASSIVE checkpoint on the checkpointer's connection.
  void Checkpoint() ABSL_LOCKS_EXCLUDED(checkpoint_mu_);

  const std::string path_;
  const std::string replica_id_;
  absl::Mutex mu_;
  std::unique_ptr<Connection> conn_ ABSL_GUARDED_BY(mu_);
  // The audit log as committed.
  merkle::Frontier frontier_ ABSL_GUARDED_BY(mu_);
  // Group commit (Write).
  absl::Mutex commit_mu_;
  std::vector<PendingWrite*> commit_queue_ ABSL_GUARDED_BY(commit_mu_);
  bool leader_active_ ABSL_GUARDED_BY(commit_mu_) = false;
  // Snapshot reads, on their own read-only connection (opened on first use).
  absl::Mutex snapshot_mu_;
  std::unique_ptr<Connection> snapshot_conn_ ABSL_GUARDED_BY(snapshot_mu_);
  // Reads (Read), on read-only connections of their own: in WAL mode they
  // never wait for the writer, whose lock is held through each group's
  // fsync. Idle ones are kept, up to kIdleReaders.
  static constexpr size_t kIdleReaders = 8;
  // An idle reader, or a new one; null if none can be opened.
  std::unique_ptr<Connection> TakeReader();
  void ReturnReader(std::unique_ptr<Connection> reader);
  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<Connection>> readers_ ABSL_GUARDED_BY(readers_mu_);
  // Checkpoints (above): one thread, and its connection (opened on first use).
  std::unique_ptr<Executor> checkpointer_;  // Null in memory.
  std::atomic<bool> checkpoint_queued_{false};
  std::atomic<int> next_checkpoint_at_{kCheckpointPages};  // WAL pages.
  std::atomic<int64_t> checkpoints_apart_{0};
  std::atomic<int64_t> checkpoints_inline_{0};
  absl::Mutex checkpoint_mu_;
  std::unique_ptr<Connection> checkpoint_conn_ ABSL_GUARDED_BY(checkpoint_mu_);
};

}  // namespace comity::sqlite_internal

#endif  // COMITY_SERVER_STORE_SQLITE_SQLITE_DATABASE_H_
