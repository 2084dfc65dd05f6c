// The SQLite backend's WAL checkpoints run on a thread of their own, never
// inside a commit (server/store/sqlite/sqlite_database.h), and the WAL
// still stays bounded.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/store/sqlite/sqlite_database.h"

namespace comity::sqlite_internal {
namespace {

int64_t FileSize(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

class SqliteCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/comity-ckpt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/comity.db";
  }
  void TearDown() override {
    for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((path_ + suffix).c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
  std::string path_;
};

TEST_F(SqliteCheckpointTest, CheckpointsRunApartFromCommitsAndBoundTheWal) {
  auto db = SqliteDatabase::Open(path_);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)
                  ->Write(false,
                          [](sql::Session& s, AuditWriter&) {
                            return s.Script("CREATE TABLE scratch (x BLOB)");
                          })
                  .ok());
  // About 12,000 pages through the WAL: several times kCheckpointPages.
  const std::string blob(6000, 'x');
  int64_t largest_wal = 0;
  for (int i = 0; i < 6000; ++i) {
    absl::Status st = (*db)->Write(false, [&](sql::Session& s, AuditWriter&) {
      return s.Exec("INSERT INTO scratch (x) VALUES ($1)", sql::Params().Blob(blob)).status();
    });
    ASSERT_TRUE(st.ok()) << st;
    largest_wal = std::max(largest_wal, FileSize(path_ + "-wal"));
  }
  // The checkpointer is asynchronous: give the last one a moment.
  for (int i = 0; i < 100 && (*db)->checkpoints_apart() < 3; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::printf("checkpoints: %lld apart, %lld by commits; largest WAL %lld bytes\n",
              static_cast<long long>((*db)->checkpoints_apart()),
              static_cast<long long>((*db)->checkpoints_inline()),
              static_cast<long long>(largest_wal));
  // Most of the copying was done apart: more passes of the checkpointer
  // than commits that had to finish one.
  EXPECT_GE((*db)->checkpoints_apart(), 3);
  EXPECT_GT((*db)->checkpoints_apart(), (*db)->checkpoints_inline());
  // The WAL starts over instead of growing with the writes (12,000 pages
  // would be about 48 MB): at most kMaxWalPages and the last commit's.
  EXPECT_LT(largest_wal, int64_t{SqliteDatabase::kMaxWalPages + 16} * (4096 + 24) + 32)
      << "largest WAL " << largest_wal << " bytes";

  // Everything written is there after a reopen (the close checkpoints the
  // rest and removes the WAL).
  db->reset();
  EXPECT_EQ(FileSize(path_ + "-wal"), -1);
  auto again = SqliteDatabase::Open(path_);
  ASSERT_TRUE(again.ok()) << again.status();
  int64_t rows = 0;
  ASSERT_TRUE((*again)
                  ->Read([&](sql::Session& s) {
                    auto n = sql::QueryInt(s, "SELECT COUNT(*) FROM scratch", sql::Params());
                    if (!n.ok()) return n.status();
                    rows = *n;
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(rows, 6000);
}

}  // namespace
}  // namespace comity::sqlite_internal
