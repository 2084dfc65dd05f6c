// The audit log in a real SQLite file: appends, proofs from stored hashes,
// and tamper detection: each kind of change is found by verify with a
// message that locates it.
#include <sqlite3.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/audit/merkle.h"
#include "server/audit/verifier.h"
#include "server/core/envelope.h"
#include "server/crypto/sha256.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/util/files.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::testing::HasSubstr;

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/comity.db";
    auto store = OpenSqliteStore(path_);
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
    auto key = SigningKey::Generate();
    ASSERT_THAT(key, IsOk());
    key_ = *std::move(key);
    ASSERT_THAT(keys_.Add("FR", "FR-1", key_->public_key()), IsOk());
    // 40 entries in batches of 4, a signed head after each batch.
    for (int batch = 0; batch < 10; ++batch) {
      ASSERT_THAT(store_->audit().Append([&](AuditWriter& w) -> absl::Status {
        for (int i = 0; i < 4; ++i) {
          v1::AuditEntry e;
          // Assessments: entries that name a request but log no stored item
          // (a REQUEST_RECEIVED entry needs its request row: coverage.h).
          e.set_type(v1::ASSESSMENT_MADE);
          e.set_time_unix_micros(1000 + batch * 4 + i);
          e.set_actor("peer:JP");
          e.set_request_id(absl::StrCat("req-", batch * 4 + i));
          e.add_hashes(Sha256(e.request_id()));
          auto appended = w.Append(&e);
          if (!appended.ok()) return appended.status();
        }
        return SignHead(w, *key_);
      }),
                  IsOk());
    }
  }

  static absl::Status SignHead(AuditWriter& w, const SigningKey& key) {
    v1::TreeHead head;
    head.set_party("FR");
    head.set_tree_size(w.size());
    head.set_root_hash(w.Root());
    auto signed_head =
        SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "FR", "FR-1", key);
    if (!signed_head.ok()) return signed_head.status();
    return w.PutTreeHead(head, *signed_head);
  }

  VerifyReport Verify() {
    auto report = VerifyStoredLog(store_->audit(), "FR", keys_);
    EXPECT_THAT(report, IsOk());
    return report.ok() ? *report : VerifyReport();
  }

  // Runs SQL on the file behind the store's back, as an intruder would.
  void Tamper(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << (err ? err : "");
    sqlite3_close(db);
  }

  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<SigningKey> key_;
  KeyRing keys_;
};

TEST_F(AuditLogTest, IntactLogVerifies) {
  VerifyReport r = Verify();
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.entries, 40u);
  EXPECT_EQ(r.heads, 10u);
  EXPECT_GT(r.nodes_checked, 40u);
  EXPECT_THAT(r.Summary(), HasSubstr("40 entries, root "));
  EXPECT_THAT(r.Summary(), HasSubstr("consistent"));
  EXPECT_THAT(store_->audit().RootAt(40), testing::IsOkAndHolds(r.root));
}

TEST_F(AuditLogTest, ProofsFromStoredHashesVerify) {
  auto root = store_->audit().RootAt(40);
  ASSERT_THAT(root, IsOk());
  AuditFilter f;
  f.from_index = 17;
  f.limit = 1;
  auto entry = store_->audit().Entries(f);
  ASSERT_THAT(entry, IsOk());
  auto proof = store_->audit().InclusionProofAt(17, 40);
  ASSERT_THAT(proof, IsOk());
  EXPECT_THAT(merkle::VerifyInclusion(17, 40, merkle::LeafHash((*entry)[0]), *proof, *root),
              IsOk());
  auto old_root = store_->audit().RootAt(12);
  auto consistency = store_->audit().ConsistencyProofAt(12, 40);
  ASSERT_THAT(consistency, IsOk());
  EXPECT_THAT(merkle::VerifyConsistency(12, 40, *old_root, *root, *consistency), IsOk());
}

TEST_F(AuditLogTest, SurvivesReopenAndKeepsAppending) {
  auto before = store_->audit().RootAt(40);
  store_.reset();
  auto reopened = OpenSqliteStore(path_);
  ASSERT_THAT(reopened, IsOk());
  store_ = *std::move(reopened);
  EXPECT_THAT(store_->audit().Size(), testing::IsOkAndHolds(40u));
  EXPECT_EQ(*store_->audit().RootAt(40), *before);
  ASSERT_THAT(store_->audit().Append([&](AuditWriter& w) -> absl::Status {
    v1::AuditEntry e;
    e.set_type(v1::NODE_STARTED);
    return w.Append(&e).status();
  }),
              IsOk());
  EXPECT_TRUE(Verify().ok);
}

TEST_F(AuditLogTest, ChangedByteIsDetected) {
  // Flip one byte inside entry 17's request id.
  Tamper("UPDATE audit_entries SET entry = CAST(replace(CAST(entry AS TEXT), 'req-17', "
         "'req-18') AS BLOB) WHERE idx = 17");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("entry 17 does not match its stored leaf hash"));
}

TEST_F(AuditLogTest, ChangedEntryWithRecomputedHashesIsCaughtByTheSignedHeads) {
  // An intruder who also rewrites the stored hashes is stopped by the heads.
  Tamper("UPDATE audit_entries SET entry = CAST(replace(CAST(entry AS TEXT), 'req-17', "
         "'req-18') AS BLOB) WHERE idx = 17; DELETE FROM audit_nodes;");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("tree head for size 20"));
  // The heads bound it (no leaf hashes to trust here: the intruder deleted them).
  EXPECT_THAT(r.error, HasSubstr("..19 was changed"));
}

TEST_F(AuditLogTest, DeletedEntryIsDetected) {
  Tamper("DELETE FROM audit_entries WHERE idx = 9");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("entry 9 is missing"));
}

TEST_F(AuditLogTest, ReorderedEntriesAreDetected) {
  Tamper("UPDATE audit_entries SET idx = -1 WHERE idx = 3;"
         "UPDATE audit_entries SET idx = 3 WHERE idx = 4;"
         "UPDATE audit_entries SET idx = 4 WHERE idx = -1;");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("entry at position 3 says it is entry 4"));
}

TEST_F(AuditLogTest, TruncatedLogIsDetected) {
  Tamper("DELETE FROM audit_entries WHERE idx >= 35");
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("truncated"));
  // Even with the hashes of the removed part gone too.
  Tamper("DELETE FROM audit_nodes WHERE (idx + 1) * (1 << level) > 35");
  VerifyReport again = Verify();
  EXPECT_FALSE(again.ok);
  EXPECT_THAT(again.error, HasSubstr("covers 36 entries but the log has only 35"));
}

TEST_F(AuditLogTest, HeadSignedByAnotherKeyIsDetected) {
  auto other = SigningKey::Generate();
  ASSERT_THAT(other, IsOk());
  auto root = store_->audit().RootAt(24);
  v1::TreeHead head;
  head.set_party("FR");
  head.set_tree_size(24);
  head.set_root_hash(*root);
  auto forged = SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "FR", "FR-1",
                             **other);
  ASSERT_THAT(forged, IsOk());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "UPDATE audit_heads SET signed_head = ? WHERE tree_size = 24",
                               -1, &st, nullptr),
            SQLITE_OK);
  std::string bytes = forged->SerializeAsString();
  sqlite3_bind_blob(st, 1, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);
  VerifyReport r = Verify();
  EXPECT_FALSE(r.ok);
  EXPECT_THAT(r.error, HasSubstr("tree head for size 24"));
  EXPECT_THAT(r.error, HasSubstr("does not verify"));
}

TEST_F(AuditLogTest, BundleVerifiesOfflineAndDetectsTampering) {
  v1::AuditBundle bundle;
  bundle.set_party("FR");
  ASSERT_THAT(store_->audit().ReadSnapshot([&](AuditSnapshot& snap) {
    return snap.ForEachEntry(0, [&](uint64_t, const std::string& b) {
      bundle.add_entries(b);
      return absl::OkStatus();
    });
  }),
              IsOk());
  auto heads = store_->audit().TreeHeads();
  ASSERT_THAT(heads, IsOk());
  for (const auto& h : *heads) bundle.add_tree_heads(h.signed_head.SerializeAsString());
  v1::PublicKeyEntry* k = bundle.add_public_keys();
  k->set_party("FR");
  k->set_key_id("FR-1");
  k->set_ed25519_public_key(key_->public_key());
  VerifyReport ok = VerifyBundle(bundle);
  EXPECT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.entries, 40u);
  // With the leaf hashes the node exports beside the entries, a changed
  // entry is named by its index; forged leaf hashes (which do not give the
  // signed root) are not trusted, and the heads bound the change instead.
  for (const std::string& e : bundle.entries()) bundle.add_leaf_hashes(merkle::LeafHash(e));
  (*bundle.mutable_entries(5))[3] ^= 1;
  VerifyReport bad = VerifyBundle(bundle);
  EXPECT_FALSE(bad.ok);
  EXPECT_THAT(bad.error, HasSubstr("entry 5 was changed: its hash differs from the one the "
                                   "signed head for size 8 covers"));
  *bundle.mutable_leaf_hashes(5) = merkle::LeafHash(bundle.entries(5));  // Forged to match.
  VerifyReport forged = VerifyBundle(bundle);
  EXPECT_FALSE(forged.ok);
  EXPECT_THAT(forged.error, HasSubstr("an entry in 4..7 was changed"));
  bundle.clear_leaf_hashes();
  EXPECT_THAT(VerifyBundle(bundle).error, HasSubstr("an entry in 4..7 was changed"));
}


// A bundle file as `comity audit export` writes it, the stream's messages
// one after the other, is read incrementally and gives the same findings;
// so does a file of one message (as before the export streamed) and one
// whose heads are out of size order.
TEST_F(AuditLogTest, BundleFileIsVerifiedAsItIsRead) {
  v1::AuditBundle first;
  first.set_party("FR");
  v1::PublicKeyEntry* k = first.add_public_keys();
  k->set_party("FR");
  k->set_key_id("FR-1");
  k->set_ed25519_public_key(key_->public_key());
  std::vector<v1::AuditBundle> chunks = {first};
  auto heads = store_->audit().TreeHeads();
  ASSERT_THAT(heads, IsOk());
  ASSERT_GE(heads->size(), 3u);
  for (size_t i = 0; i < heads->size(); i += 2) {
    v1::AuditBundle c;
    for (size_t j = i; j < std::min(i + 2, heads->size()); ++j) {
      c.add_tree_heads((*heads)[j].signed_head.SerializeAsString());
    }
    chunks.push_back(c);
  }
  ASSERT_THAT(store_->audit().ReadSnapshot([&](AuditSnapshot& snap) {
    return snap.ForEachEntry(0, [&](uint64_t i, const std::string& b) {
      if (i % 7 == 0) chunks.emplace_back();
      chunks.back().add_entries(b);
      chunks.back().add_leaf_hashes(merkle::LeafHash(b));
      return absl::OkStatus();
    });
  }),
              IsOk());
  testing::TempDir dir;
  auto write = [&](const std::vector<v1::AuditBundle>& parts) {
    std::string bytes;
    for (const v1::AuditBundle& c : parts) bytes += c.SerializeAsString();
    const std::string path = dir.path() + "/export.bundle";
    EXPECT_THAT(WriteFileAtomically(path, bytes, 0600), IsOk());
    return path;
  };
  BundleInfo info;
  auto ok = VerifyBundleFile(write(chunks), &info);
  ASSERT_THAT(ok.status(), IsOk());
  EXPECT_TRUE(ok->ok) << ok->error;
  EXPECT_EQ(ok->entries, 40u);
  EXPECT_EQ(ok->heads, heads->size());
  EXPECT_EQ(info.party, "FR");
  ASSERT_EQ(info.public_keys.size(), 1u);

  v1::AuditBundle merged;
  for (const v1::AuditBundle& c : chunks) merged.MergeFrom(c);
  EXPECT_TRUE(VerifyBundleFile(write({merged}), &info)->ok);
  // Out of size order: the last head message first.
  std::vector<v1::AuditBundle> shuffled = chunks;
  std::swap(shuffled[1], shuffled[2]);
  auto unsorted = VerifyBundleFile(write(shuffled), &info);
  ASSERT_THAT(unsorted.status(), IsOk());
  EXPECT_TRUE(unsorted->ok) << unsorted->error;

  // A changed entry is named from the leaf hashes, as in memory.
  std::vector<v1::AuditBundle> changed = chunks;
  for (v1::AuditBundle& c : changed) {
    if (c.entries_size() > 0) {
      (*c.mutable_entries(5))[3] ^= 1;
      break;
    }
  }
  auto bad = VerifyBundleFile(write(changed), &info);
  ASSERT_THAT(bad.status(), IsOk());
  EXPECT_THAT(bad->error, HasSubstr("entry 5 was changed: its hash differs from the one the "
                                    "signed head for size 8 covers"));
  EXPECT_THAT(VerifyBundleFile(dir.path() + "/none.bundle", &info).status().code(),
              absl::StatusCode::kNotFound);
  ASSERT_THAT(WriteFileAtomically(dir.path() + "/junk.bundle", "\xff\xff\xff", 0600), IsOk());
  EXPECT_THAT(VerifyBundleFile(dir.path() + "/junk.bundle", &info).status().code(),
              absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace comity
