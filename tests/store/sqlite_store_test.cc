#include "server/store/sqlite_store.h"

#include <sqlite3.h>

#include "google/protobuf/util/time_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::StatusIs;
using ::google::protobuf::util::TimeUtil;

v1::RequestRecord Record(v1::Direction dir, const std::string& payload, int64_t at_us) {
  v1::RequestRecord r;
  r.set_direction(dir);
  r.set_state(dir == v1::OUTGOING ? v1::PENDING_DELIVERY : v1::RECEIVED);
  r.mutable_request()->set_payload_type("comity.v1.RequestBody");
  r.mutable_request()->set_payload(payload);
  r.mutable_request()->set_signer_party("FR");
  *r.mutable_stored_at() = TimeUtil::MicrosecondsToTimestamp(at_us);
  *r.mutable_updated_at() = r.stored_at();
  if (dir == v1::INCOMING) r.mutable_receipt()->set_payload("receipt");
  return r;
}

// A build function that returns a fixed record.
std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)> Fixed(v1::RequestRecord r) {
  return [r](AuditWriter&) -> absl::StatusOr<v1::RequestRecord> { return r; };
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.path() + "/comity.db";
    auto store = SqliteStore::Open(path_);
    ASSERT_THAT(store, IsOk());
    store_ = *std::move(store);
  }
  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(SqliteStoreTest, SchemaIsMigratedAndDurabilitySettingsApplied) {
  EXPECT_THAT(store_->SchemaVersion(), IsOkAndHolds(SqliteStore::kSchemaVersion));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, RefusesNewerSchema) {
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (99, 0)", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  EXPECT_THAT(SqliteStore::Open(path_),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       ::testing::HasSubstr("newer than this build")));
}

TEST_F(SqliteStoreTest, OutgoingLifecycleSurvivesReopen) {
  RecordKey key{"id-1", "FR", "JP"};
  ASSERT_THAT(store_->InsertOutgoing(key, Record(v1::OUTGOING, "p1", 1000)), IsOk());
  EXPECT_THAT(store_->InsertOutgoing(key, Record(v1::OUTGOING, "p1", 1000)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  auto due = store_->DueForDelivery(absl::FromUnixMicros(2000), 10);
  ASSERT_THAT(due, IsOk());
  EXPECT_EQ(due->size(), 1u);

  ASSERT_THAT(store_->MarkDeliveryFailed("id-1", "UNAVAILABLE: down",
                                         absl::FromUnixMicros(3000), absl::FromUnixMicros(9000)),
              IsOk());
  EXPECT_THAT(store_->DueForDelivery(absl::FromUnixMicros(5000), 10),
              IsOkAndHolds(::testing::IsEmpty()));
  v1::SignedEnvelope receipt;
  receipt.set_payload("signed receipt");
  ASSERT_THAT(store_->MarkDelivered("id-1", receipt, absl::FromUnixMicros(10000)), IsOk());
  EXPECT_THAT(store_->MarkDelivered("id-404", receipt, absl::FromUnixMicros(10000)),
              StatusIs(absl::StatusCode::kNotFound));

  store_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(auto reopened, SqliteStore::Open(path_));
  COMITY_ASSERT_OK_AND_ASSIGN(auto records, reopened->Get("id-1"));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state(), v1::DELIVERED);
  EXPECT_EQ(records[0].receipt().payload(), "signed receipt");
  EXPECT_EQ(records[0].delivery_attempts(), 2u);
  EXPECT_EQ(records[0].last_error(), "");
  EXPECT_EQ(records[0].request().payload(), "p1");
  EXPECT_THAT(reopened->DueForDelivery(absl::FromUnixMicros(99999), 10),
              IsOkAndHolds(::testing::IsEmpty()));
}

TEST_F(SqliteStoreTest, IncomingInsertIsIdempotent) {
  RecordKey key{"id-2", "FR", "JP"};
  bool inserted = false;
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto first, store_->InsertIncomingIfAbsent(key, Fixed(Record(v1::INCOMING, "a", 1)),
                                                 &inserted));
  EXPECT_TRUE(inserted);
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto second, store_->InsertIncomingIfAbsent(key, Fixed(Record(v1::INCOMING, "b", 2)),
                                                  &inserted));
  EXPECT_FALSE(inserted);
  EXPECT_EQ(second.request().payload(), "a");  // The first one stays.
  // An outgoing request may share the id space without clashing.
  EXPECT_THAT(store_->InsertOutgoing(key, Record(v1::OUTGOING, "c", 3)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto both, store_->Get("id-2"));
  EXPECT_EQ(both.size(), 2u);
}

TEST_F(SqliteStoreTest, ListIsNewestFirstAndFiltered) {
  bool inserted;
  ASSERT_THAT(store_->InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "1", 10)), IsOk());
  ASSERT_THAT(store_->InsertIncomingIfAbsent({"b", "JP", "FR"},
                                             Fixed(Record(v1::INCOMING, "2", 20)), &inserted),
              IsOk());
  ASSERT_THAT(store_->InsertOutgoing({"c", "FR", "DE"}, Record(v1::OUTGOING, "3", 30)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto all, store_->List(v1::DIRECTION_UNSPECIFIED, 10));
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].request().payload(), "3");
  EXPECT_EQ(all[2].request().payload(), "1");
  COMITY_ASSERT_OK_AND_ASSIGN(auto sent, store_->List(v1::OUTGOING, 10));
  EXPECT_EQ(sent.size(), 2u);
  COMITY_ASSERT_OK_AND_ASSIGN(auto one, store_->List(v1::DIRECTION_UNSPECIFIED, 1));
  EXPECT_EQ(one.size(), 1u);
}

}  // namespace
}  // namespace comity
