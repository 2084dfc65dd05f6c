// Backup: a private, audited copy of the database; a node opened on a
// restored copy checks with its peers that it never signed more of its log
// than the copy holds, and stops (FailedPrecondition) unless every peer
// answered consistently or the operator acknowledged the restore.
#include "server/node/backup.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::FakePeerTransport;
using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::NodeHarness;
using ::comity::testing::StatusIs;
using ::testing::AllOf;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

using HeldHead = absl::StatusOr<std::optional<v1::SignedEnvelope>>;

std::vector<v1::AuditEntry> Audit(Node& node, v1::AuditEventType type) {
  AuditFilter f;
  f.type = type;
  absl::StatusOr<std::vector<std::string>> raw = node.store()->audit().Entries(f);
  EXPECT_THAT(raw, IsOk());
  std::vector<v1::AuditEntry> out;
  for (const std::string& bytes : raw.ok() ? *raw : std::vector<std::string>()) {
    v1::AuditEntry e;
    EXPECT_TRUE(e.ParseFromString(bytes));
    out.push_back(std::move(e));
  }
  return out;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &transport_));
    data_dir_ = harness_.setup("FR").config.data_dir();
    ASSERT_THAT(fr_->witness().RecordStart(), IsOk());
  }

  // JP answers GetHeldHead with `head` (nullopt: it holds none).
  void JpHolds(std::optional<v1::SignedEnvelope> head) {
    transport_.on_held_head = [head](const std::string& party) -> HeldHead {
      EXPECT_EQ(party, "JP");
      return head;
    };
  }

  // Stops FR, puts the copy at `path` in place of its database, opens FR
  // again (not started: the check is the test's to run).
  absl::Status RestoreFrom(const std::string& path) {
    fr_.reset();
    const std::string db = data_dir_ + "/comity.db";
    std::remove((db + "-wal").c_str());
    std::remove((db + "-shm").c_str());
    std::error_code ec;
    std::filesystem::copy_file(path, db,
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return absl::InternalError(ec.message());
    COMITY_ASSIGN_OR_RETURN(fr_, harness_.MakeNode("FR", &transport_));
    return absl::OkStatus();
  }

  // A copy taken now, and the head FR signs after it.
  struct Taken {
    Backup::Copy copy;
    v1::SignedEnvelope before;  // The latest head inside the copy.
    v1::SignedEnvelope after;   // A head of a larger log, signed after the copy.
  };
  absl::StatusOr<Taken> TakeThenGoOn() {
    Taken t;
    COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope before, fr_->witness().SignTreeHead());
    t.before = before;
    COMITY_ASSIGN_OR_RETURN(t.copy, fr_->backup().Write("erin"));
    COMITY_ASSIGN_OR_RETURN(t.after, fr_->witness().SignTreeHead());
    return t;
  }

  // Whether FR's database carries the restored-from-a-backup mark.
  absl::StatusOr<bool> Marked() {
    COMITY_ASSIGN_OR_RETURN(std::optional<BackupOrigin> origin,
                            fr_->store()->RestoredBackupOrigin());
    return origin.has_value();
  }

  std::string AcceptFile() const { return data_dir_ + "/accept-restored-log"; }

  NodeHarness harness_;
  FakePeerTransport transport_;
  std::unique_ptr<Node> fr_;
  std::string data_dir_;
};

TEST_F(BackupTest, WriteMakesAPrivateCopyAndAuditsIt) {
  COMITY_ASSERT_OK_AND_ASSIGN(uint64_t size, fr_->store()->audit().Size());
  COMITY_ASSERT_OK_AND_ASSIGN(Backup::Copy copy, fr_->backup().Write("erin"));
  EXPECT_THAT(copy.path, StartsWith(data_dir_ + "/backup-"));
  EXPECT_THAT(copy.path, EndsWith(".db.partial"));
  struct stat st;
  ASSERT_EQ(::stat(copy.path.c_str(), &st), 0) << copy.path;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(copy.origin.audit_size, size);

  // Audited after the copy: the entry is not in it.
  std::vector<v1::AuditEntry> taken = Audit(*fr_, v1::BACKUP_TAKEN);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].actor(), "operator:erin");
  EXPECT_EQ(taken[0].index(), size);
  EXPECT_EQ(taken[0].detail(),
            absl::StrCat("database copied with ", size, " audit log entries"));

  // The copy holds the log as it stood, marked with its origin; the live
  // database carries no mark.
  {
    COMITY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Store> opened,
                                OpenSqliteStore(copy.path));
    EXPECT_THAT(opened->audit().Size(), IsOkAndHolds(size));
    COMITY_ASSERT_OK_AND_ASSIGN(std::optional<BackupOrigin> origin,
                                opened->RestoredBackupOrigin());
    ASSERT_TRUE(origin.has_value());
    EXPECT_EQ(origin->audit_size, size);
    EXPECT_EQ(origin->taken_at_us, copy.origin.taken_at_us);
  }
  COMITY_ASSERT_OK_AND_ASSIGN(std::optional<BackupOrigin> live,
                              fr_->store()->RestoredBackupOrigin());
  EXPECT_FALSE(live.has_value());
}

TEST_F(BackupTest, ANodeThatWasNotRestoredAsksItsPeersButStartsWithoutThoseItCannotReach) {
  EXPECT_THAT(fr_->backup().CheckLogAgainstPeers(), IsOk());
  EXPECT_EQ(transport_.calls("GetHeldHead"), 1);
  EXPECT_THAT(Audit(*fr_, v1::LOG_RESTORED), IsEmpty());
}

TEST_F(BackupTest, AHeadBeyondTheCopyStopsTheRestoredNodeUntilAcknowledged) {
  COMITY_ASSERT_OK_AND_ASSIGN(Taken t, TakeThenGoOn());
  v1::TreeHead after;
  ASSERT_TRUE(after.ParseFromString(t.after.payload()));
  ASSERT_GT(after.tree_size(), t.copy.origin.audit_size);
  JpHolds(t.after);
  ASSERT_THAT(RestoreFrom(t.copy.path), IsOk());
  EXPECT_THAT(fr_->store()->audit().Size(), IsOkAndHolds(t.copy.origin.audit_size));

  EXPECT_THAT(
      fr_->backup().CheckLogAgainstPeers(),
      StatusIs(
          absl::StatusCode::kFailedPrecondition,
          AllOf(HasSubstr(absl::StrCat("JP holds a head of size ", after.tree_size())),
                HasSubstr(absl::StrCat("beyond the ", t.copy.origin.audit_size,
                                       " entries restored")),
                HasSubstr("split view"), HasSubstr(AcceptFile()))));
  EXPECT_EQ(transport_.calls("GetHeldHead"), 1);
  EXPECT_THAT(Audit(*fr_, v1::LOG_RESTORED), IsEmpty());
  EXPECT_THAT(Marked(), IsOkAndHolds(true));

  // The operator acknowledges the restore: the node goes on, on the record.
  std::ofstream(AcceptFile()) << "";
  ASSERT_TRUE(Exists(AcceptFile()));
  EXPECT_THAT(fr_->backup().CheckLogAgainstPeers(), IsOk());
  std::vector<v1::AuditEntry> restored = Audit(*fr_, v1::LOG_RESTORED);
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_EQ(restored[0].actor(), "node");
  EXPECT_THAT(
      restored[0].detail(),
      HasSubstr(absl::StrCat("started on the operator's acknowledgement despite: JP "
                             "holds a head of size ",
                             after.tree_size())));
  EXPECT_FALSE(Exists(AcceptFile()));  // One use only.
  EXPECT_THAT(Marked(), IsOkAndHolds(false));

  // The next start asks again; the head of the lost log that JP holds was
  // accepted (it was signed before LOG_RESTORED), so the node starts.
  EXPECT_THAT(fr_->backup().CheckLogAgainstPeers(), IsOk());
  EXPECT_EQ(transport_.calls("GetHeldHead"), 3);
  EXPECT_EQ(Audit(*fr_, v1::LOG_RESTORED).size(), 1u);
}

TEST_F(BackupTest, AHeadWithAnotherRootAtARestoredSizeStopsTheNode) {
  COMITY_ASSERT_OK_AND_ASSIGN(Taken t, TakeThenGoOn());
  // FR's key signed another root for a size the copy holds.
  v1::TreeHead forked;
  ASSERT_TRUE(forked.ParseFromString(t.before.payload()));
  forked.set_root_hash(Sha256("a log the copy does not hold"));
  COMITY_ASSERT_OK_AND_ASSIGN(std::string pem,
                              ReadPrivateFile(harness_.PartyDir("FR") + "/signing.key"));
  COMITY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<SigningKey> key, SigningKey::FromPem(pem));
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::SignedEnvelope head,
      SignEnvelope(kTreeHeadPayloadType, SerializeDeterministic(forked), "FR", "FR-1",
                   *key));
  JpHolds(head);
  ASSERT_THAT(RestoreFrom(t.copy.path), IsOk());
  EXPECT_THAT(
      fr_->backup().CheckLogAgainstPeers(),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr(absl::StrCat("JP holds a head of size ", forked.tree_size(),
                                      " whose root differs from the restored log's"))));
  EXPECT_THAT(Audit(*fr_, v1::LOG_RESTORED), IsEmpty());
}

TEST_F(BackupTest, APeerThatCannotBeAskedStopsTheRestoredNode) {
  COMITY_ASSERT_OK_AND_ASSIGN(Taken t, TakeThenGoOn());
  transport_.on_held_head = [](const std::string&) -> HeldHead {
    return absl::UnavailableError("JP is down");
  };
  ASSERT_THAT(RestoreFrom(t.copy.path), IsOk());
  EXPECT_THAT(
      fr_->backup().CheckLogAgainstPeers(),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("could not be asked"), HasSubstr("JP (JP is down)"),
                     HasSubstr("Start again once they are reachable"))));
  EXPECT_THAT(Audit(*fr_, v1::LOG_RESTORED), IsEmpty());
  EXPECT_THAT(Marked(), IsOkAndHolds(true));

  // An answer that is not a head of FR's is no answer either.
  v1::SignedEnvelope not_a_head = t.after;
  not_a_head.mutable_signature()->back() ^= 0x01;
  JpHolds(not_a_head);
  EXPECT_THAT(fr_->backup().CheckLogAgainstPeers(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("its answer is not a head signed by FR")));
  EXPECT_THAT(Audit(*fr_, v1::LOG_RESTORED), IsEmpty());
}

TEST_F(BackupTest, ConsistentPeersLetTheRestoredNodeStartAndClearTheMark) {
  COMITY_ASSERT_OK_AND_ASSIGN(Taken t, TakeThenGoOn());
  v1::TreeHead before;
  ASSERT_TRUE(before.ParseFromString(t.before.payload()));
  ASSERT_LE(before.tree_size(), t.copy.origin.audit_size);
  JpHolds(t.before);
  ASSERT_THAT(RestoreFrom(t.copy.path), IsOk());
  EXPECT_THAT(fr_->backup().CheckLogAgainstPeers(), IsOk());
  std::vector<v1::AuditEntry> restored = Audit(*fr_, v1::LOG_RESTORED);
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_THAT(
      restored[0].detail(),
      AllOf(HasSubstr(absl::StrCat("with ", t.copy.origin.audit_size, " entries")),
            HasSubstr(
                absl::StrCat("JP: head of size ", before.tree_size(), " consistent"))));
  EXPECT_THAT(restored[0].detail(), ::testing::Not(HasSubstr("despite")));
  EXPECT_THAT(Marked(), IsOkAndHolds(false));
  // The restored log verifies, LOG_RESTORED included.
  COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, fr_->witness().Verify());
  EXPECT_TRUE(report.ok) << report.error;
}

TEST_F(BackupTest, APeerThatHoldsNoHeadIsConsistent) {
  COMITY_ASSERT_OK_AND_ASSIGN(Taken t, TakeThenGoOn());
  JpHolds(std::nullopt);
  ASSERT_THAT(RestoreFrom(t.copy.path), IsOk());
  EXPECT_THAT(fr_->backup().CheckLogAgainstPeers(), IsOk());
  std::vector<v1::AuditEntry> restored = Audit(*fr_, v1::LOG_RESTORED);
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_THAT(restored[0].detail(), HasSubstr("JP: no head"));
  EXPECT_THAT(Marked(), IsOkAndHolds(false));
}

}  // namespace
}  // namespace comity
