// The Store contract, run against every implementation: SQLite always,
// PostgreSQL when $COMITY_TEST_POSTGRES names a server (else those cases
// are skipped, with a message). Then what only PostgreSQL promises: several
// replicas on one database share the work and keep one audit log.
#include <sqlite3.h>

#include <atomic>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "server/audit/merkle.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/store/postgres/pg_store.h"
#include "server/store/sqlite/sqlite_store.h"
#include "server/store/sql/schema.h"
#include "server/util/status_macros.h"
#include "tests/testing/postgres_test_db.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::PostgresTestDb;
using ::comity::testing::StatusIs;
using ::google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

v1::RequestRecord Record(v1::Direction dir, const std::string& payload, int64_t at_us) {
  v1::RequestRecord r;
  r.set_direction(dir);
  r.set_state(dir == v1::OUTGOING ? v1::PENDING_DELIVERY : v1::RECEIVED);
  r.mutable_request()->set_payload_type("comity.v1.RequestBody");
  r.mutable_request()->set_payload(payload);
  r.mutable_request()->set_signer_party("FR");
  *r.mutable_stored_at() = TimeUtil::MicrosecondsToTimestamp(at_us);
  *r.mutable_updated_at() = r.stored_at();
  if (dir == v1::OUTGOING) *r.mutable_next_attempt_at() = r.stored_at();
  if (dir == v1::INCOMING) {
    r.mutable_receipt()->set_payload("receipt");
    r.set_case_state(v1::CASE_DELIVERED);
  }
  return r;
}

// A build function that returns a fixed record.
std::function<absl::StatusOr<v1::RequestRecord>(AuditWriter&)> Fixed(v1::RequestRecord r) {
  return [r](AuditWriter&) -> absl::StatusOr<v1::RequestRecord> { return r; };
}

v1::AuditEntry Entry(const std::string& request_id, v1::AuditEventType type, int64_t at) {
  v1::AuditEntry e;
  e.set_type(type);
  e.set_time_unix_micros(at);
  e.set_actor("node");
  e.set_request_id(request_id);
  e.set_party("JP");
  return e;
}

// An AuditFn appending one entry per type.
AuditFn Append(const std::string& request_id, std::vector<v1::AuditEventType> types) {
  return [request_id, types](AuditWriter& w) -> absl::Status {
    for (v1::AuditEventType t : types) {
      v1::AuditEntry e = Entry(request_id, t, 1000 + static_cast<int64_t>(w.size()));
      auto appended = w.Append(&e);
      if (!appended.ok()) return appended.status();
    }
    return absl::OkStatus();
  };
}

absl::Status SignHead(AuditWriter& w, const SigningKey& key) {
  v1::TreeHead head;
  head.set_party("FR");
  head.set_tree_size(w.size());
  head.set_root_hash(w.Root());
  head.set_timestamp_unix_micros(absl::ToUnixMicros(absl::Now()));
  auto signed_head =
      SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "FR", "FR-1", key);
  if (!signed_head.ok()) return signed_head.status();
  return w.PutTreeHead(head, *signed_head);
}

v1::SignedEnvelope Step(const std::string& request_id, uint32_t seq, v1::CaseState from,
                        v1::CaseState to, v1::Transition* t) {
  t->set_request_id(request_id);
  t->set_sequence(seq);
  t->set_from_state(from);
  t->set_to_state(to);
  v1::SignedEnvelope env;
  env.set_payload_type("comity.v1.Transition");
  env.set_payload(t->SerializeAsString());
  return env;
}

std::vector<std::string> IdsOf(const std::vector<v1::RequestRecord>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records) ids.push_back(r.request().payload());
  return ids;
}

// The first page of a listing.
absl::StatusOr<std::vector<v1::RequestRecord>> ListAll(Store& store, v1::Direction direction,
                                                       int limit) {
  ListQuery q;
  q.direction = direction;
  q.limit = limit;
  auto page = store.requests().List(q);
  if (!page.ok()) return page.status();
  return page->records;
}

// --- Backends. ---

// One database, opened (again) on demand, with SQL behind the store's back.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual absl::StatusOr<std::unique_ptr<Store>> Open() = 0;
  virtual absl::Status Exec(const std::string& sql) = 0;
};

class SqliteBackend final : public Backend {
 public:
  absl::StatusOr<std::unique_ptr<Store>> Open() override { return OpenSqliteStore(path()); }
  absl::Status Exec(const std::string& sql) override {
    sqlite3* db = nullptr;
    if (sqlite3_open(path().c_str(), &db) != SQLITE_OK) {
      sqlite3_close(db);
      return absl::InternalError("open");
    }
    char* err = nullptr;
    absl::Status st;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      st = absl::InternalError(err != nullptr ? err : "exec");
    }
    sqlite3_free(err);
    sqlite3_close(db);
    return st;
  }
  std::string path() const { return dir_.path() + "/comity.db"; }

 private:
  testing::TempDir dir_;
};

class PgBackend final : public Backend {
 public:
  explicit PgBackend(std::unique_ptr<PostgresTestDb> db) : db_(std::move(db)) {}
  absl::StatusOr<std::unique_ptr<Store>> Open() override { return OpenPostgresStore(db_->url()); }
  absl::Status Exec(const std::string& sql) override { return db_->Exec(sql); }

 private:
  std::unique_ptr<PostgresTestDb> db_;
};

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      backend_ = std::make_unique<SqliteBackend>();
    } else {
      if (PostgresTestDb::ServerUrl().empty()) GTEST_SKIP() << PostgresTestDb::kSkipMessage;
      COMITY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<PostgresTestDb> db, PostgresTestDb::Create());
      backend_ = std::make_unique<PgBackend>(std::move(db));
    }
    COMITY_ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
    COMITY_ASSERT_OK_AND_ASSIGN(key_, SigningKey::Generate());
    ASSERT_THAT(keys_.Add("FR", "FR-1", key_->public_key()), IsOk());
  }
  void TearDown() override { store_.reset(); }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<SigningKey> key_;
  KeyRing keys_;
};

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

TEST_P(StoreTest, SchemaIsMigrated) {
  EXPECT_THAT(store_->SchemaVersion(), IsOkAndHolds(sql::kSchemaVersion));
  // Opening again migrates nothing and keeps the version.
  store_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
  EXPECT_THAT(store_->SchemaVersion(), IsOkAndHolds(sql::kSchemaVersion));
}

TEST_P(StoreTest, RefusesNewerSchema) {
  store_.reset();
  ASSERT_THAT(backend_->Exec("INSERT INTO schema_migrations VALUES (99, 0)"), IsOk());
  EXPECT_THAT(backend_->Open(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("newer than this build")));
}

TEST_P(StoreTest, OutgoingLifecycleSurvivesReopen) {
  RecordKey key{"id-1", "FR", "JP"};
  ASSERT_THAT(store_->requests().InsertOutgoing(key, Record(v1::OUTGOING, "p1", 1000)), IsOk());
  EXPECT_THAT(store_->requests().InsertOutgoing(key, Record(v1::OUTGOING, "p1", 1000)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  auto due = store_->outbox().DueRequests("", absl::FromUnixMicros(2000), 10, absl::InfiniteFuture());
  ASSERT_THAT(due, IsOk());
  EXPECT_EQ(due->size(), 1u);

  ASSERT_THAT(store_->outbox().MarkDeliveryFailed("id-1", "UNAVAILABLE: down",
                                         absl::FromUnixMicros(3000), absl::FromUnixMicros(9000)),
              IsOk());
  EXPECT_THAT(store_->outbox().DueRequests("", absl::FromUnixMicros(5000), 10, absl::InfiniteFuture()),
              IsOkAndHolds(IsEmpty()));
  COMITY_ASSERT_OK_AND_ASSIGN(auto pending, store_->requests().Get("id-1"));
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].last_error(), "UNAVAILABLE: down");
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(pending[0].next_attempt_at()), 9000);
  v1::SignedEnvelope receipt;
  receipt.set_payload("signed receipt");
  ASSERT_THAT(store_->outbox().MarkDelivered("id-1", receipt, absl::FromUnixMicros(10000), absl::InfiniteFuture()), IsOk());
  EXPECT_THAT(store_->outbox().MarkDelivered("id-404", receipt, absl::FromUnixMicros(10000), absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->outbox().MarkDeliveryFailed("id-1", "late", absl::FromUnixMicros(1),
                                         absl::FromUnixMicros(2)),
              StatusIs(absl::StatusCode::kNotFound));

  store_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(auto reopened, backend_->Open());
  COMITY_ASSERT_OK_AND_ASSIGN(auto records, reopened->requests().Get("id-1"));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state(), v1::DELIVERED);
  EXPECT_EQ(records[0].case_state(), v1::CASE_DELIVERED);
  EXPECT_EQ(records[0].receipt().payload(), "signed receipt");
  EXPECT_EQ(records[0].delivery_attempts(), 2u);
  EXPECT_EQ(records[0].last_error(), "");
  EXPECT_FALSE(records[0].has_next_attempt_at());
  EXPECT_EQ(records[0].request().payload(), "p1");
  EXPECT_THAT(reopened->outbox().DueRequests("", absl::FromUnixMicros(99999), 10, absl::InfiniteFuture()),
              IsOkAndHolds(IsEmpty()));
}

TEST_P(StoreTest, ApprovalThenRejection) {
  v1::RequestRecord draft = Record(v1::OUTGOING, "draft", 100);
  draft.set_state(v1::AWAITING_APPROVAL);
  draft.clear_next_attempt_at();
  draft.set_submitted_by("alice");
  ASSERT_THAT(store_->requests().InsertOutgoing({"d", "FR", "JP"}, draft), IsOk());
  EXPECT_THAT(store_->outbox().DueRequests("", absl::FromUnixMicros(1000), 10, absl::InfiniteFuture()),
              IsOkAndHolds(IsEmpty()));
  v1::SignedEnvelope signed_request;
  signed_request.set_payload("signed draft");
  signed_request.set_signature("sig");
  ASSERT_THAT(store_->requests().MarkApproved("d", signed_request, "bob", absl::FromUnixMicros(500)),
              IsOk());
  EXPECT_THAT(store_->requests().MarkApproved("d", signed_request, "bob", absl::FromUnixMicros(500)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not awaiting")));
  COMITY_ASSERT_OK_AND_ASSIGN(auto due, store_->outbox().DueRequests("", absl::FromUnixMicros(500), 10, absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].request().signature(), "sig");
  EXPECT_EQ(due[0].approved_by(), "bob");
  EXPECT_EQ(due[0].submitted_by(), "alice");
  // Free text a peer sent may be anything; it is stored, not refused.
  ASSERT_THAT(store_->outbox().MarkRejected("d", std::string("INVALID_ARGUMENT: bad \xff\x00 bytes", 31),
                                   absl::FromUnixMicros(600)),
              IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto records, store_->requests().Get("d"));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state(), v1::DELIVERY_REJECTED);
  EXPECT_THAT(records[0].last_error(), HasSubstr("INVALID_ARGUMENT: bad"));
  EXPECT_THAT(store_->outbox().DueRequests("", absl::FromUnixMicros(9999), 10, absl::InfiniteFuture()),
              IsOkAndHolds(IsEmpty()));
}

TEST_P(StoreTest, DueForDeliveryIsOldestFirstAndFilteredByPeer) {
  ASSERT_THAT(store_->requests().InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "a", 30)), IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"b", "FR", "DE"}, Record(v1::OUTGOING, "b", 10)), IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"c", "FR", "JP"}, Record(v1::OUTGOING, "c", 20)), IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"d", "FR", "JP"}, Record(v1::OUTGOING, "d", 5000)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto all, store_->outbox().DueRequests("", absl::FromUnixMicros(100), 10, absl::InfiniteFuture()));
  EXPECT_THAT(IdsOf(all), ElementsAre("b", "c", "a"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto jp, store_->outbox().DueRequests("JP", absl::FromUnixMicros(100), 10, absl::InfiniteFuture()));
  EXPECT_THAT(IdsOf(jp), ElementsAre("c", "a"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto one, store_->outbox().DueRequests("", absl::FromUnixMicros(100), 1, absl::InfiniteFuture()));
  EXPECT_THAT(IdsOf(one), ElementsAre("b"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto depths, store_->outbox().Depths());
  EXPECT_EQ(depths["JP"].first, 3u);
  EXPECT_EQ(depths["DE"].first, 1u);
}

TEST_P(StoreTest, IncomingInsertIsIdempotent) {
  RecordKey key{"id-2", "FR", "JP"};
  bool inserted = false;
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto first, store_->requests().InsertIncomingIfAbsent(key, Fixed(Record(v1::INCOMING, "a", 1)),
                                                 &inserted));
  EXPECT_TRUE(inserted);
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto second, store_->requests().InsertIncomingIfAbsent(key, Fixed(Record(v1::INCOMING, "b", 2)),
                                                  &inserted));
  EXPECT_FALSE(inserted);
  EXPECT_EQ(second.request().payload(), "a");  // The first one stays.
  EXPECT_EQ(second.receipt().payload(), "receipt");
  // An id is one case on a node: no outgoing request under it, nor an
  // incoming one under the id of an outgoing one.
  EXPECT_THAT(store_->requests().InsertOutgoing(key, Record(v1::OUTGOING, "c", 3)),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("received")));
  ASSERT_THAT(store_->requests().InsertOutgoing({"id-3", "FR", "JP"},
                                                Record(v1::OUTGOING, "d", 4)),
              IsOk());
  EXPECT_THAT(store_->requests().InsertIncomingIfAbsent(
                  {"id-3", "JP", "FR"}, Fixed(Record(v1::INCOMING, "e", 5)), &inserted),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("sent")));
  COMITY_ASSERT_OK_AND_ASSIGN(auto one, store_->requests().Get("id-2"));
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].direction(), v1::INCOMING);
}

TEST_P(StoreTest, ABatchOfIncomingRequestsIsStoredInOneTransaction) {
  ASSERT_THAT(store_->requests().InsertOutgoing({"sent", "FR", "JP"},
                                                Record(v1::OUTGOING, "s", 1)),
              IsOk());
  bool inserted = false;
  ASSERT_THAT(store_->requests().InsertIncomingIfAbsent(
                  {"held", "JP", "FR"}, Fixed(Record(v1::INCOMING, "h", 2)), &inserted),
              IsOk());
  const std::vector<RecordKey> keys = {{"a", "JP", "FR"},    {"held", "JP", "FR"},
                                       {"sent", "JP", "FR"}, {"a", "JP", "FR"},
                                       {"b", "JP", "FR"}};
  int builds = 0;
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto outcomes,
      store_->requests().InsertIncomingBatch(
          keys, [&](AuditWriter& w, const std::vector<size_t>& fresh)
                    -> absl::StatusOr<std::vector<v1::RequestRecord>> {
            ++builds;
            EXPECT_THAT(fresh, ElementsAre(0u, 4u));
            std::vector<v1::RequestRecord> out;
            for (size_t i : fresh) {
              v1::AuditEntry e = Entry(keys[i].request_id, v1::REQUEST_RECEIVED, 3);
              COMITY_RETURN_IF_ERROR(w.Append(&e).status());
              out.push_back(Record(v1::INCOMING, keys[i].request_id + "-bytes", 3));
            }
            return out;
          }));
  EXPECT_EQ(builds, 1);
  ASSERT_EQ(outcomes.size(), keys.size());
  EXPECT_TRUE(outcomes[0].inserted);
  EXPECT_EQ(outcomes[0].record->request().payload(), "a-bytes");
  EXPECT_FALSE(outcomes[1].inserted);  // Held before: as held.
  EXPECT_EQ(outcomes[1].record->request().payload(), "h");
  EXPECT_THAT(outcomes[2].record.status(),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("sent")));
  EXPECT_FALSE(outcomes[3].inserted);  // The same id again in the batch.
  EXPECT_EQ(outcomes[3].record->request().payload(), "a-bytes");
  EXPECT_TRUE(outcomes[4].inserted);
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(2u));
  COMITY_ASSERT_OK_AND_ASSIGN(auto a, store_->requests().Get("a"));
  EXPECT_THAT(a, SizeIs(1));

  // A failing build stores nothing of the batch.
  EXPECT_THAT(store_->requests().InsertIncomingBatch(
                  {{"c", "JP", "FR"}, {"d", "JP", "FR"}},
                  [&](AuditWriter& w, const std::vector<size_t>&)
                      -> absl::StatusOr<std::vector<v1::RequestRecord>> {
                    v1::AuditEntry e = Entry("c", v1::REQUEST_RECEIVED, 4);
                    COMITY_RETURN_IF_ERROR(w.Append(&e).status());
                    return absl::InternalError("signing failed");
                  }),
              StatusIs(absl::StatusCode::kInternal));
  EXPECT_THAT(store_->requests().Get("c"), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(2u));
}

TEST_P(StoreTest, ABatchOfDeliveriesIsMarkedInOneTransaction) {
  for (const char* id : {"x", "y", "z"}) {
    ASSERT_THAT(store_->requests().InsertOutgoing({id, "FR", "JP"},
                                                  Record(v1::OUTGOING, id, 1)),
                IsOk());
  }
  v1::SignedEnvelope receipt;
  receipt.set_payload("signed receipt");
  ASSERT_THAT(store_->outbox().MarkDelivered("z", receipt, absl::FromUnixMicros(5),
                                             absl::InfiniteFuture()),
              IsOk());
  int audited = 0;
  auto audit = [&](AuditWriter& w) -> absl::Status {
    ++audited;
    v1::AuditEntry e = Entry("x", v1::DELIVERY_ACKNOWLEDGED, 6);
    return w.Append(&e).status();
  };
  std::vector<OutboxStore::Delivered> items(3);
  const char* ids[] = {"x", "y", "z"};
  for (int i = 0; i < 3; ++i) {
    items[i].request_id = ids[i];
    items[i].receipt = receipt;
    items[i].next_deadline = absl::FromUnixMicros(1000 + i);
    items[i].audit = audit;
  }
  EXPECT_THAT(store_->outbox().MarkDeliveredBatch(items, absl::FromUnixMicros(10)),
              IsOkAndHolds(ElementsAre(true, true, false)));  // z was delivered before.
  EXPECT_EQ(audited, 2);
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(2u));
  COMITY_ASSERT_OK_AND_ASSIGN(auto y, store_->requests().Get("y"));
  ASSERT_THAT(y, SizeIs(1));
  EXPECT_EQ(y[0].state(), v1::DELIVERED);
  EXPECT_EQ(y[0].case_state(), v1::CASE_DELIVERED);
  EXPECT_EQ(y[0].receipt().payload(), "signed receipt");
  EXPECT_EQ(y[0].delivery_attempts(), 1u);
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(y[0].next_deadline()), 1001);
  EXPECT_THAT(store_->outbox().DueRequests("", absl::FromUnixMicros(100), 10,
                                           absl::InfiniteFuture()),
              IsOkAndHolds(IsEmpty()));
}

TEST_P(StoreTest, ListIsNewestFirstAndFiltered) {
  bool inserted;
  ASSERT_THAT(store_->requests().InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "1", 10)), IsOk());
  ASSERT_THAT(store_->requests().InsertIncomingIfAbsent({"b", "JP", "FR"},
                                             Fixed(Record(v1::INCOMING, "2", 20)), &inserted),
              IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"c", "FR", "DE"}, Record(v1::OUTGOING, "3", 30)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto all, ListAll(*store_, v1::DIRECTION_UNSPECIFIED, 10));
  EXPECT_THAT(IdsOf(all), ElementsAre("3", "2", "1"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto sent, ListAll(*store_, v1::OUTGOING, 10));
  EXPECT_THAT(IdsOf(sent), ElementsAre("3", "1"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto one, ListAll(*store_, v1::DIRECTION_UNSPECIFIED, 1));
  EXPECT_EQ(one.size(), 1u);
}

TEST_P(StoreTest, EntryPagesEndAtTheirLimitOrTheirBytesAndSayWhereTheNextBegins) {
  ASSERT_THAT(
      store_->audit().Append(
          Append("a", {v1::REQUEST_SUBMITTED, v1::ASSESSMENT_MADE, v1::DELIVERY_ATTEMPTED,
                       v1::DELIVERY_FAILED, v1::DELIVERY_ATTEMPTED})),
      IsOk());
  auto index_of = [](const std::string& bytes) {
    v1::AuditEntry e;
    EXPECT_TRUE(e.ParseFromString(bytes));
    return e.index();
  };
  AuditFilter f;
  f.limit = 2;
  COMITY_ASSERT_OK_AND_ASSIGN(AuditEntryPage page, store_->audit().EntryPage(f));
  ASSERT_EQ(page.entries.size(), 2u);
  EXPECT_EQ(page.next_index, 2u);
  // Filtered: the next page starts after the last entry that matched.
  f.type = v1::DELIVERY_ATTEMPTED;
  f.limit = 1;
  COMITY_ASSERT_OK_AND_ASSIGN(page, store_->audit().EntryPage(f));
  ASSERT_EQ(page.entries.size(), 1u);
  EXPECT_EQ(index_of(page.entries[0]), 2u);
  EXPECT_EQ(page.next_index, 3u);
  f.from_index = page.next_index;
  COMITY_ASSERT_OK_AND_ASSIGN(page, store_->audit().EntryPage(f));
  ASSERT_EQ(page.entries.size(), 1u);
  EXPECT_EQ(index_of(page.entries[0]), 4u);
  EXPECT_EQ(page.next_index, 0u);  // The last page.
  // By bytes: one entry's worth a page, and at least one however small.
  AuditFilter bytes;
  bytes.max_bytes = 1;
  COMITY_ASSERT_OK_AND_ASSIGN(page, store_->audit().EntryPage(bytes));
  ASSERT_EQ(page.entries.size(), 1u);
  EXPECT_EQ(page.next_index, 1u);
  bytes.max_bytes = 1 << 20;
  COMITY_ASSERT_OK_AND_ASSIGN(page, store_->audit().EntryPage(bytes));
  EXPECT_EQ(page.entries.size(), 5u);
  EXPECT_EQ(page.next_index, 0u);
}

TEST_P(StoreTest, AuditActorFilterTakesABareOperatorName) {
  ASSERT_THAT(store_->audit().Append([](AuditWriter& w) -> absl::Status {
    for (const char* actor : {"operator:alice", "operator:alicia", "node", "peer:JP",
                              "operator:alice", "auditor:alice", "tls:ipv4:127.0.0.1:5"}) {
      v1::AuditEntry e = Entry("a", v1::REQUEST_SUBMITTED, 1000 + static_cast<int64_t>(w.size()));
      e.set_actor(actor);
      if (auto appended = w.Append(&e); !appended.ok()) return appended.status();
    }
    return absl::OkStatus();
  }),
              IsOk());
  auto count = [&](const std::string& actor) -> size_t {
    AuditFilter f;
    f.actor = actor;
    auto entries = store_->audit().Entries(f);
    EXPECT_THAT(entries.status(), IsOk());
    return entries.ok() ? entries->size() : 0;
  };
  EXPECT_EQ(count("alice"), 3u);           // operator:alice twice, auditor:alice
  EXPECT_EQ(count("operator:alice"), 2u);  // As before.
  EXPECT_EQ(count("node"), 1u);            // A bare actor still matches itself.
  EXPECT_EQ(count("peer:JP"), 1u);
  EXPECT_EQ(count("ali"), 0u);             // Whole names only.
  EXPECT_EQ(count("JP"), 0u);              // Only operators are named bare.
}

TEST_P(StoreTest, AuditEntriesCommitOrRollBackWithTheChange) {
  ASSERT_THAT(store_->requests().InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "1", 10),
                                     Append("a", {v1::REQUEST_SUBMITTED, v1::ASSESSMENT_MADE})),
              IsOk());
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(2u));
  // The audit function fails: neither the row nor any entry is stored.
  AuditFn failing = [](AuditWriter& w) -> absl::Status {
    v1::AuditEntry e = Entry("b", v1::REQUEST_SUBMITTED, 5);
    if (!w.Append(&e).ok()) return absl::InternalError("append");
    return absl::UnavailableError("signer down");
  };
  EXPECT_THAT(store_->requests().InsertOutgoing({"b", "FR", "JP"}, Record(v1::OUTGOING, "2", 20), failing),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("signer down")));
  EXPECT_THAT(store_->requests().Get("b"), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(2u));
  // The next append takes the next index, not one the failed one used.
  ASSERT_THAT(store_->outbox().MarkDeliveryFailed("a", "down", absl::FromUnixMicros(20),
                                         absl::FromUnixMicros(30),
                                         Append("a", {v1::DELIVERY_ATTEMPTED, v1::DELIVERY_FAILED})),
              IsOk());
  // A change that does not happen writes no entry.
  EXPECT_THAT(store_->outbox().MarkDelivered("zz", v1::SignedEnvelope(), absl::FromUnixMicros(40), absl::InfiniteFuture(),
                                    Append("zz", {v1::DELIVERY_ACKNOWLEDGED})),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(4u));

  AuditFilter by_type;
  by_type.type = v1::DELIVERY_FAILED;
  COMITY_ASSERT_OK_AND_ASSIGN(auto failed, store_->audit().Entries(by_type));
  ASSERT_EQ(failed.size(), 1u);
  v1::AuditEntry parsed;
  ASSERT_TRUE(parsed.ParseFromString(failed[0]));
  EXPECT_EQ(parsed.index(), 3u);
  AuditFilter page;
  page.from_index = 1;
  page.limit = 2;
  page.request_id = "a";
  EXPECT_THAT(store_->audit().Entries(page), IsOkAndHolds(SizeIs(2)));
  uint64_t expect = 0;
  ASSERT_THAT(store_->audit().ReadSnapshot([&](AuditSnapshot& snap) {
    EXPECT_EQ(snap.size(), 4u);
    return snap.ForEachEntry(0, [&](uint64_t pos, const std::string&) {
      EXPECT_EQ(pos, expect++);
      return absl::OkStatus();
    });
  }),
              IsOk());
  EXPECT_EQ(expect, 4u);
}

TEST_P(StoreTest, ProofsAndHeadsFromStoredNodesSurviveReopen) {
  std::vector<std::string> leaves;
  for (int batch = 0; batch < 5; ++batch) {
    ASSERT_THAT(store_->audit().Append([&](AuditWriter& w) -> absl::Status {
      for (int i = 0; i < 3; ++i) {
        v1::AuditEntry e = Entry(absl::StrCat("r", batch), v1::REQUEST_RECEIVED, batch * 10 + i);
        auto bytes = w.Append(&e);
        if (!bytes.ok()) return bytes.status();
        leaves.push_back(merkle::LeafHash(*bytes));
      }
      // Inside the transaction the writer sees its own appends.
      auto proof = w.InclusionProof(w.size() - 1, w.size());
      if (!proof.ok()) return proof.status();
      absl::Status st =
          merkle::VerifyInclusion(w.size() - 1, w.size(), leaves.back(), *proof, w.Root());
      if (!st.ok()) return st;
      return SignHead(w, *key_);
    }),
                IsOk());
  }
  ASSERT_EQ(leaves.size(), 15u);
  COMITY_ASSERT_OK_AND_ASSIGN(std::string root15, store_->audit().RootAt(15));
  COMITY_ASSERT_OK_AND_ASSIGN(std::string root6, store_->audit().RootAt(6));
  COMITY_ASSERT_OK_AND_ASSIGN(auto incl, store_->audit().InclusionProofAt(4, 15));
  EXPECT_THAT(merkle::VerifyInclusion(4, 15, leaves[4], incl, root15), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto cons, store_->audit().ConsistencyProofAt(6, 15));
  EXPECT_THAT(merkle::VerifyConsistency(6, 15, root6, root15, cons), IsOk());
  EXPECT_THAT(store_->audit().RootAt(16), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->audit().TreeHeads(), IsOkAndHolds(SizeIs(5)));
  COMITY_ASSERT_OK_AND_ASSIGN(auto latest, store_->audit().LatestTreeHead());
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->head.tree_size(), 15u);
  EXPECT_EQ(latest->head.root_hash(), root15);
  COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, VerifyStoredLog(store_->audit(), "FR", keys_));
  EXPECT_TRUE(report.ok) << report.error;
  EXPECT_EQ(report.entries, 15u);
  EXPECT_EQ(report.heads, 5u);

  store_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(15u));
  ASSERT_THAT(store_->audit().Append(Append("after", {v1::NODE_STARTED})), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto cons2, store_->audit().ConsistencyProofAt(15, 16));
  COMITY_ASSERT_OK_AND_ASSIGN(std::string root16, store_->audit().RootAt(16));
  EXPECT_THAT(merkle::VerifyConsistency(15, 16, root15, root16, cons2), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(report, VerifyStoredLog(store_->audit(), "FR", keys_));
  EXPECT_TRUE(report.ok) << report.error;
  EXPECT_EQ(report.entries, 16u);
}

TEST_P(StoreTest, PeerHeadsKeepTheFirstOfEachSize) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto none, store_->audit().LatestPeerHead("JP"));
  EXPECT_FALSE(none.has_value());
  auto head = [](uint64_t size, const std::string& root) {
    StoredTreeHead h;
    h.head.set_party("JP");
    h.head.set_tree_size(size);
    h.head.set_root_hash(root);
    h.signed_head.set_payload(h.head.SerializeAsString());
    return h;
  };
  ASSERT_THAT(store_->audit().PutPeerHead("JP", head(5, "r5"), absl::UnixEpoch()), IsOk());
  ASSERT_THAT(store_->audit().PutPeerHead("JP", head(9, "r9"), absl::UnixEpoch()), IsOk());
  ASSERT_THAT(store_->audit().PutPeerHead("JP", head(9, "other"), absl::UnixEpoch()), IsOk());
  ASSERT_THAT(store_->audit().PutPeerHead("DE", head(20, "d20"), absl::UnixEpoch()), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto latest, store_->audit().LatestPeerHead("JP"));
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->head.tree_size(), 9u);
  EXPECT_EQ(latest->head.root_hash(), "r9");
}

TEST_P(StoreTest, TransitionsFollowTheCaseAndGoOutInOrder) {
  bool inserted;
  for (const char* id : {"c1", "c2"}) {
    ASSERT_THAT(store_->requests().InsertIncomingIfAbsent({id, "FR", "JP"},
                                               Fixed(Record(v1::INCOMING, id, 1)), &inserted),
                IsOk());
  }
  v1::Transition t1, t2, bad, c2t;
  auto e1 = Step("c1", 1, v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, &t1);
  auto e2 = Step("c1", 2, v1::CASE_ACKNOWLEDGED, v1::CASE_ACCEPTED, &t2);
  auto ebad = Step("c1", 2, v1::CASE_DELIVERED, v1::CASE_REFUSED, &bad);
  auto ec2 = Step("c2", 1, v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, &c2t);
  const absl::Time now = absl::FromUnixMicros(1000);
  ASSERT_THAT(store_->cases().AppendTransition("c1", v1::INCOMING, t1, e1, true, now, absl::InfiniteFuture(),
                                       Append("c1", {v1::CASE_DECIDED})),
              IsOk());
  EXPECT_THAT(store_->cases().AppendTransition("c1", v1::INCOMING, t1, e1, true, now, absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->cases().AppendTransition("c1", v1::INCOMING, bad, ebad, true, now, absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not follow")));
  EXPECT_THAT(store_->cases().AppendTransition("nope", v1::INCOMING, t1, e1, true, now, absl::InfiniteFuture()),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(store_->cases().AppendTransition("c1", v1::INCOMING, t2, e2, true, now, absl::InfiniteFuture()), IsOk());
  ASSERT_THAT(store_->cases().AppendTransition("c2", v1::INCOMING, c2t, ec2, true, now, absl::InfiniteFuture()), IsOk());
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(1u));

  COMITY_ASSERT_OK_AND_ASSIGN(auto records, store_->requests().Get("c1"));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].case_state(), v1::CASE_ACCEPTED);
  ASSERT_EQ(records[0].transitions_size(), 2);
  EXPECT_EQ(records[0].transitions(1).payload(), e2.payload());

  // Only the earliest undelivered step of each case is due.
  COMITY_ASSERT_OK_AND_ASSIGN(auto due, store_->outbox().DueTransitions("", now, 10, absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 2u);
  std::set<std::pair<std::string, uint32_t>> got;
  for (const auto& p : due) got.insert({p.request_id, p.sequence});
  EXPECT_EQ(got, (std::set<std::pair<std::string, uint32_t>>{{"c1", 1}, {"c2", 1}}));
  EXPECT_THAT(store_->outbox().DueTransitions("DE", now, 10, absl::InfiniteFuture()), IsOkAndHolds(IsEmpty()));
  COMITY_ASSERT_OK_AND_ASSIGN(auto depths, store_->outbox().Depths());
  EXPECT_EQ(depths["FR"].second, 3u);

  ASSERT_THAT(store_->outbox().MarkTransitionFailed("c2", 1, "UNAVAILABLE: down",
                                           absl::FromUnixMicros(5000)),
              IsOk());
  v1::SignedEnvelope ack;
  ack.set_payload("ack");
  ASSERT_THAT(store_->outbox().MarkTransitionDelivered("c1", 1, ack,
                                              Append("c1", {v1::TRANSITION_DELIVERED})),
              IsOk());
  // Again: already delivered, no second entry.
  ASSERT_THAT(store_->outbox().MarkTransitionDelivered("c1", 1, ack,
                                              Append("c1", {v1::TRANSITION_DELIVERED})),
              IsOk());
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(2u));
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->outbox().DueTransitions("FR", now, 10, absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].request_id, "c1");
  EXPECT_EQ(due[0].sequence, 2u);
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->outbox().DueTransitions("", absl::FromUnixMicros(6000), 10, absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 2u);
  for (const auto& p : due) {
    if (p.request_id == "c2") {
      EXPECT_EQ(p.attempts, 1u);
    }
  }
}

TEST_P(StoreTest, ProposalsQueueOnePerRequest) {
  v1::SignedEnvelope proposal;
  proposal.set_payload("withdraw");
  const absl::Time now = absl::FromUnixMicros(1000);
  COMITY_ASSERT_OK_AND_ASSIGN(int64_t first,
                              store_->outbox().EnqueueProposal("r1", "JP", proposal, now,
                                                      Append("r1", {v1::REQUEST_SUBMITTED})));
  EXPECT_THAT(store_->outbox().EnqueueProposal("r1", "JP", proposal, now),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already has")));
  COMITY_ASSERT_OK_AND_ASSIGN(int64_t second, store_->outbox().EnqueueProposal("r2", "DE", proposal, now));
  EXPECT_GT(second, first);
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(1u));
  COMITY_ASSERT_OK_AND_ASSIGN(auto due, store_->outbox().DueProposals("", now, 10, absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].id, first);
  EXPECT_EQ(due[0].envelope.payload(), "withdraw");
  EXPECT_THAT(store_->outbox().DueProposals("DE", now, 10, absl::InfiniteFuture()), IsOkAndHolds(SizeIs(1)));
  COMITY_ASSERT_OK_AND_ASSIGN(auto depths, store_->outbox().Depths());
  EXPECT_EQ(depths["JP"].second, 1u);

  ASSERT_THAT(store_->outbox().MarkProposalFailed(first, "UNAVAILABLE: down", absl::FromUnixMicros(9000)),
              IsOk());
  EXPECT_THAT(store_->outbox().DueProposals("JP", now, 10, absl::InfiniteFuture()), IsOkAndHolds(IsEmpty()));
  COMITY_ASSERT_OK_AND_ASSIGN(auto queued, store_->outbox().QueuedProposals("r1"));
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].attempts, 1u);
  EXPECT_EQ(queued[0].last_error, "UNAVAILABLE: down");
  ASSERT_THAT(store_->outbox().FinishProposal(first, "", Append("r1", {v1::REQUEST_SUBMITTED})), IsOk());
  ASSERT_THAT(store_->outbox().FinishProposal(first, "", Append("r1", {v1::REQUEST_SUBMITTED})), IsOk());
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(2u));
  EXPECT_THAT(store_->outbox().QueuedProposals("r1"), IsOkAndHolds(IsEmpty()));
  // Once finished, the next proposal for the request may be queued.
  EXPECT_THAT(store_->outbox().EnqueueProposal("r1", "JP", proposal, now), IsOk());
}

TEST_P(StoreTest, ListPagesWithACursorThroughEveryRecord) {
  bool inserted;
  // 25 records, some sharing a stored_at time, both directions.
  for (int i = 0; i < 25; ++i) {
    const std::string id = absl::StrFormat("r%02d", i);
    const int64_t at = 1000 + (i / 3) * 10;  // Three per time.
    if (i % 2 == 0) {
      ASSERT_THAT(store_->requests().InsertOutgoing({id, "FR", "JP"}, Record(v1::OUTGOING, id, at)),
                  IsOk());
    } else {
      ASSERT_THAT(store_->requests().InsertIncomingIfAbsent(
                      {id, "JP", "FR"}, Fixed(Record(v1::INCOMING, id, at)), &inserted),
                  IsOk());
    }
  }
  std::vector<std::string> seen;
  ListQuery q;
  q.limit = 4;
  for (int pages = 0;; ++pages) {
    ASSERT_LT(pages, 10);
    COMITY_ASSERT_OK_AND_ASSIGN(RecordPage page, store_->requests().List(q));
    for (const auto& r : page.records) seen.push_back(r.request().payload());
    if (page.next_cursor.empty()) break;
    EXPECT_EQ(page.records.size(), 4u);
    q.after = page.next_cursor;
  }
  ASSERT_EQ(seen.size(), 25u);
  // Newest first, ties by id; no record twice.
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 25u);
  EXPECT_EQ(seen.front(), "r24");
  EXPECT_EQ(seen[1], "r21");  // r21..r23 share a time: id order.
  EXPECT_EQ(seen.back(), "r02");
  q = ListQuery();
  q.direction = v1::INCOMING;
  q.limit = 100;
  COMITY_ASSERT_OK_AND_ASSIGN(RecordPage incoming, store_->requests().List(q));
  EXPECT_EQ(incoming.records.size(), 12u);
  EXPECT_TRUE(incoming.next_cursor.empty());
  q.after = "not a cursor";
  EXPECT_THAT(store_->requests().List(q),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cursor")));
}

TEST_P(StoreTest, SharedWithPagesThroughOnePartnersRecordsChangedSinceATime) {
  bool inserted;
  // JP's: a (sent, at 10), b (received from JP, at 20), d..h (sent, at 40
  // to 80); DE's: c. All changed when stored.
  ASSERT_THAT(store_->requests().InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "1", 10)), IsOk());
  ASSERT_THAT(store_->requests().InsertIncomingIfAbsent({"b", "JP", "FR"},
                                             Fixed(Record(v1::INCOMING, "2", 20)), &inserted),
              IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"c", "FR", "DE"}, Record(v1::OUTGOING, "3", 30)), IsOk());
  ASSERT_THAT(store_->requests().InsertIncomingIfAbsent({"z", "DE", "FR"},
                                             Fixed(Record(v1::INCOMING, "9", 35)), &inserted),
              IsOk());
  for (int i = 0; i < 5; ++i) {
    const std::string id(1, static_cast<char>('d' + i));
    ASSERT_THAT(store_->requests().InsertOutgoing({id, "FR", "JP"},
                                                  Record(v1::OUTGOING, id, 40 + 10 * i)),
                IsOk());
  }
  // b's case moves on at 100: it comes last.
  v1::Transition t;
  t.set_request_id("b");
  t.set_sequence(1);
  t.set_from_state(v1::CASE_DELIVERED);
  t.set_to_state(v1::CASE_ACKNOWLEDGED);
  v1::SignedEnvelope env;
  env.set_payload(t.SerializeAsString());
  ASSERT_THAT(store_->cases().AppendTransition("b", v1::INCOMING, t, env, true,
                                               absl::FromUnixMicros(100),
                                               absl::InfiniteFuture()),
              IsOk());

  SharedQuery q;
  q.partner = "JP";
  q.limit = 3;
  std::vector<std::string> ids;
  for (int pages = 0; pages < 10; ++pages) {
    COMITY_ASSERT_OK_AND_ASSIGN(RecordPage page, store_->requests().SharedWith(q));
    EXPECT_LE(page.records.size(), 3u);
    for (const auto& r : page.records) {
      ids.push_back(r.request().payload());
      if (r.request().payload() == "2") {
        EXPECT_EQ(r.transitions_size(), 1);
      }
    }
    if (page.next_cursor.empty()) break;
    q.after = page.next_cursor;
  }
  // In order of last change; DE's never.
  EXPECT_THAT(ids, ElementsAre("1", "d", "e", "f", "g", "h", "2"));

  q.after.clear();
  q.limit = 100;
  q.changed_since = absl::FromUnixMicros(60);
  COMITY_ASSERT_OK_AND_ASSIGN(RecordPage since, store_->requests().SharedWith(q));
  EXPECT_THAT(IdsOf(since.records), ElementsAre("f", "g", "h", "2"));
  EXPECT_TRUE(since.next_cursor.empty());

  q.after = "not a cursor";
  EXPECT_THAT(store_->requests().SharedWith(q).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_P(StoreTest, LinksAreIndexedBothWays) {
  ASSERT_THAT(store_->requests().InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "a", 1)),
              IsOk());
  ASSERT_THAT(
      store_->requests().InsertOutgoing({"b", "FR", "JP", {"a"}}, Record(v1::OUTGOING, "b", 2)),
      IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"c", "FR", "JP", {"a", "b"}},
                                                Record(v1::OUTGOING, "c", 3)),
              IsOk());
  EXPECT_THAT(store_->requests().Linked("a"), IsOkAndHolds(ElementsAre("b", "c")));
  EXPECT_THAT(store_->requests().Linked("b"), IsOkAndHolds(ElementsAre("a", "c")));
  EXPECT_THAT(store_->requests().Linked("c"), IsOkAndHolds(ElementsAre("a", "b")));
  EXPECT_THAT(store_->requests().Linked("zz"), IsOkAndHolds(IsEmpty()));
}

TEST_P(StoreTest, CasesAreFoundByTheirNextDeadline) {
  bool inserted;
  auto at = [](int64_t s) { return absl::FromUnixSeconds(s); };
  for (const char* id : {"early", "late", "none"}) {
    v1::RequestRecord r = Record(v1::INCOMING, id, 1);
    if (std::string(id) == "early") *r.mutable_next_deadline() = TimeUtil::SecondsToTimestamp(100);
    if (std::string(id) == "late") *r.mutable_next_deadline() = TimeUtil::SecondsToTimestamp(500);
    ASSERT_THAT(store_->requests().InsertIncomingIfAbsent({id, "FR", "JP"}, Fixed(r), &inserted),
                IsOk());
  }
  COMITY_ASSERT_OK_AND_ASSIGN(auto due, store_->cases().Due(at(200), 10));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].request_id, "early");
  EXPECT_EQ(due[0].direction, v1::INCOMING);
  EXPECT_EQ(due[0].next_deadline, at(100));
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->cases().Due(at(600), 10));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[1].request_id, "late");
  // Checked, escalated, next check later: not due again until then.
  ASSERT_THAT(store_->cases().MarkDeadlinesChecked("early", v1::INCOMING, at(700), 1,
                                                   Append("early", {v1::CASE_ESCALATED})),
              IsOk());
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(1u));
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->cases().Due(at(600), 10));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].request_id, "late");
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->cases().Due(at(700), 10));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[1].request_id, "early");
  EXPECT_EQ(due[1].escalated, 1u);  // Kept with the case.
  // Still listed among the cases with a deadline passed.
  COMITY_ASSERT_OK_AND_ASSIGN(auto passed, store_->cases().WithDeadlineBefore(at(600), nullptr, 1));
  ASSERT_EQ(passed.size(), 1u);
  EXPECT_EQ(passed[0].request_id, "early");
  COMITY_ASSERT_OK_AND_ASSIGN(auto rest,
                              store_->cases().WithDeadlineBefore(at(600), &passed[0], 10));
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].request_id, "late");
  // A step moves the deadline later: due again once that comes.
  v1::Transition t;
  auto env = Step("early", 1, v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, &t);
  ASSERT_THAT(store_->cases().AppendTransition("early", v1::INCOMING, t, env, true, at(150),
                                               at(300)),
              IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->cases().Due(at(350), 10));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].request_id, "early");
  EXPECT_EQ(due[0].next_deadline, at(300));
  // Open cases, in id order, paged; a recomputed deadline is kept.
  COMITY_ASSERT_OK_AND_ASSIGN(auto open, store_->cases().Open(nullptr, 2));
  ASSERT_EQ(open.size(), 2u);
  EXPECT_EQ(open[0].request_id, "early");
  EXPECT_EQ(open[1].request_id, "late");
  COMITY_ASSERT_OK_AND_ASSIGN(auto more, store_->cases().Open(&open[1], 10));
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].request_id, "none");
  EXPECT_EQ(more[0].next_deadline, absl::InfiniteFuture());
  ASSERT_THAT(store_->cases().SetNextDeadline("none", v1::INCOMING, at(50)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->cases().Due(at(60), 10));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].request_id, "none");
}

TEST_P(StoreTest, EvidenceListedInAResponseIsPendingUntilHeld) {
  ASSERT_THAT(store_->requests().InsertOutgoing({"req", "FR", "JP"}, Record(v1::OUTGOING, "req", 1)),
              IsOk());
  ASSERT_THAT(store_->outbox().MarkDelivered("req", v1::SignedEnvelope(), absl::FromUnixMicros(2),
                                             absl::InfiniteFuture()),
              IsOk());
  v1::Transition t;
  auto env = Step("req", 1, v1::CASE_DELIVERED, v1::CASE_EXECUTED, &t);
  for (const char* name : {"a.img", "b.pcap"}) {
    v1::EvidenceFile* f = t.add_evidence();
    f->set_name(name);
    f->set_sha256(Sha256(name));
    f->set_size(100);
  }
  env.set_payload(t.SerializeAsString());
  const absl::Time now = absl::FromUnixMicros(1000);
  ASSERT_THAT(store_->cases().AppendTransition("req", v1::OUTGOING, t, env, false, now,
                                               absl::InfiniteFuture()),
              IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto due, store_->cases().DueEvidence("", now, 10, absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].peer, "JP");
  EXPECT_EQ(due[0].size, 100u);
  EXPECT_THAT(store_->cases().DueEvidence("DE", now, 10, absl::InfiniteFuture()),
              IsOkAndHolds(IsEmpty()));
  // One fails and backs off; the other waits for accepted conditions.
  ASSERT_THAT(store_->cases().MarkEvidenceDeferred("req", Sha256("a.img"), "UNAVAILABLE", true,
                                                   now + absl::Seconds(5)),
              IsOk());
  ASSERT_THAT(store_->cases().MarkEvidenceDeferred("req", Sha256("b.pcap"), "conditions", false,
                                                   absl::InfiniteFuture()),
              IsOk());
  EXPECT_THAT(
      store_->cases().DueEvidence("", now + absl::Seconds(1), 10, absl::InfiniteFuture()),
      IsOkAndHolds(IsEmpty()));
  // A retry time further off than `latest` (now + the longest backoff) was
  // set before the clock was stepped back: due.
  COMITY_ASSERT_OK_AND_ASSIGN(due,
                              store_->cases().DueEvidence("", now + absl::Seconds(1), 10,
                                                          now + absl::Seconds(4)));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].name, "a.img");
  COMITY_ASSERT_OK_AND_ASSIGN(due,
                              store_->cases().DueEvidence("", now + absl::Seconds(6), 10,
                                                          absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].name, "a.img");
  EXPECT_EQ(due[0].attempts, 1u);
  EXPECT_EQ(due[0].last_error, "UNAVAILABLE");
  // The requesting party accepts the conditions: everything unheld is due.
  v1::Transition accept;
  auto accept_env = Step("req", 2, v1::CASE_EXECUTED, v1::CASE_EXECUTED, &accept);
  accept.add_accepted_conditions("use only for case 1");
  accept_env.set_payload(accept.SerializeAsString());
  ASSERT_THAT(store_->cases().AppendTransition("req", v1::OUTGOING, accept, accept_env, false,
                                               now + absl::Seconds(2), absl::InfiniteFuture()),
              IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(due,
                              store_->cases().DueEvidence("", now + absl::Seconds(2), 10,
                                                          absl::InfiniteFuture()));
  EXPECT_EQ(due.size(), 2u);
  ASSERT_THAT(store_->cases().MarkEvidenceHeld("req", Sha256("a.img"),
                                               Append("req", {v1::EVIDENCE_RECEIVED})),
              IsOk());
  ASSERT_THAT(store_->cases().MarkEvidenceHeld("req", Sha256("a.img"),
                                               Append("req", {v1::EVIDENCE_RECEIVED})),
              IsOk());
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(1u));  // Once.
  COMITY_ASSERT_OK_AND_ASSIGN(auto pending, store_->cases().PendingEvidenceOf("req"));
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].name, "b.pcap");
}

TEST_P(StoreTest, EvidenceGivenUpIsCountedAndRetriedOnAsk) {
  ASSERT_THAT(store_->requests().InsertOutgoing({"req", "FR", "JP"}, Record(v1::OUTGOING, "req", 1)),
              IsOk());
  ASSERT_THAT(store_->outbox().MarkDelivered("req", v1::SignedEnvelope(), absl::FromUnixMicros(2),
                                             absl::InfiniteFuture()),
              IsOk());
  v1::Transition t;
  auto env = Step("req", 1, v1::CASE_DELIVERED, v1::CASE_EXECUTED, &t);
  for (const char* name : {"a.img", "b.pcap"}) {
    v1::EvidenceFile* f = t.add_evidence();
    f->set_name(name);
    f->set_sha256(Sha256(name));
    f->set_size(100);
  }
  env.set_payload(t.SerializeAsString());
  const absl::Time now = absl::FromUnixMicros(1000);
  ASSERT_THAT(store_->cases().AppendTransition("req", v1::OUTGOING, t, env, false, now,
                                               absl::InfiniteFuture()),
              IsOk());
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(store_->cases().MarkEvidenceDeferred("req", Sha256("a.img"), "refused", true,
                                                     absl::InfiniteFuture()),
                IsOk());
  }
  auto counts = store_->cases().PendingEvidenceCounts(3);
  ASSERT_THAT(counts, IsOk());
  EXPECT_EQ(counts->at("JP"), std::make_pair(2, 1));
  EXPECT_THAT(
      store_->cases().DueEvidence("", now + absl::Hours(1), 10, absl::InfiniteFuture()),
      IsOkAndHolds(SizeIs(1)));  // b.pcap only.
  EXPECT_THAT(store_->cases().RetryEvidence("req", now), IsOkAndHolds(2));
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto due, store_->cases().DueEvidence("", now, 10, absl::InfiniteFuture()));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].attempts + due[1].attempts, 0u);
}

TEST_P(StoreTest, StagedEvidenceIsOneRowPerFileAndRequest) {
  StagedEvidence f{"req", Sha256("a"), "a.img", 10, "bob"};
  ASSERT_THAT(store_->cases().StageEvidence(f, absl::FromUnixMicros(1),
                                            Append("req", {v1::EVIDENCE_IMPORTED})),
              IsOk());
  f.name = "renamed.img";
  ASSERT_THAT(store_->cases().StageEvidence(f, absl::FromUnixMicros(2)), IsOk());
  StagedEvidence g{"req", Sha256("b"), "b.img", 20, "alice"};
  ASSERT_THAT(store_->cases().StageEvidence(g, absl::FromUnixMicros(3)), IsOk());
  StagedEvidence other{"other", Sha256("a"), "a.img", 10, "bob"};
  ASSERT_THAT(store_->cases().StageEvidence(other, absl::FromUnixMicros(4)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto staged, store_->cases().StagedEvidenceOf("req"));
  ASSERT_EQ(staged.size(), 2u);
  EXPECT_EQ(staged[0].name, "renamed.img");
  EXPECT_EQ(staged[1].staged_by, "alice");
  EXPECT_EQ(staged[1].size, 20u);
  EXPECT_THAT(store_->audit().Size(), IsOkAndHolds(1u));
}

TEST_P(StoreTest, ASnapshotIsOneMomentWhileTheLogGrows) {
  ASSERT_THAT(store_->audit().Append([&](AuditWriter& w) -> absl::Status {
    absl::Status st = Append("x", {v1::NODE_STARTED, v1::NODE_STARTED})(w);
    if (!st.ok()) return st;
    return SignHead(w, *key_);
  }),
              IsOk());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop.load(); ++i) {
      absl::Status st = store_->audit().Append([&](AuditWriter& w) -> absl::Status {
        absl::Status appended = Append("w", {v1::AUTH_FAILURE})(w);
        if (!appended.ok()) return appended;
        return i % 2 == 0 ? SignHead(w, *key_) : absl::OkStatus();
      });
      ASSERT_THAT(st, IsOk());
    }
  });
  for (int round = 0; round < 20; ++round) {
    uint64_t entries = 0;
    uint64_t max_head = 0;
    uint64_t size = 0;
    ASSERT_THAT(store_->audit().ReadSnapshot([&](AuditSnapshot& snap) -> absl::Status {
      size = snap.size();
      absl::SleepFor(absl::Milliseconds(2));  // The writer goes on meanwhile.
      absl::Status st = snap.ForEachEntry(0, [&](uint64_t, const std::string&) {
        ++entries;
        return absl::OkStatus();
      });
      if (!st.ok()) return st;
      return snap.ForEachTreeHead([&](StoredTreeHead h) {
        max_head = std::max<uint64_t>(max_head, h.head.tree_size());
        return absl::OkStatus();
      });
    }),
                IsOk());
    EXPECT_EQ(entries, size);
    EXPECT_LE(max_head, size) << "a head beyond the snapshot's log";
    COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report,
                                VerifyStoredLog(store_->audit(), "FR", keys_));
    EXPECT_TRUE(report.ok) << "round " << round << ": " << report.error;
  }
  stop.store(true);
  writer.join();
}

TEST_P(StoreTest, MigrationSevenIndexesWhatOlderSchemasHold) {
  // Rows as a version 6 store held them: bodies with links, a response
  // listing evidence.
  v1::RequestBody first, second;
  first.set_id("aaaa");
  second.set_id("bbbb");
  second.add_related_request_ids("aaaa");
  v1::RequestRecord r1 = Record(v1::OUTGOING, first.SerializeAsString(), 1);
  v1::RequestRecord r2 = Record(v1::OUTGOING, second.SerializeAsString(), 2);
  ASSERT_THAT(store_->requests().InsertOutgoing({"aaaa", "FR", "JP"}, r1), IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"bbbb", "FR", "JP"}, r2), IsOk());
  v1::Transition t;
  auto env = Step("bbbb", 1, v1::CASE_STATE_UNSPECIFIED, v1::CASE_EXECUTED, &t);
  t.add_evidence()->set_sha256(Sha256("file"));
  env.set_payload(t.SerializeAsString());
  ASSERT_THAT(store_->cases().AppendTransition("bbbb", v1::OUTGOING, t, env, false,
                                               absl::FromUnixMicros(3), absl::InfiniteFuture()),
              IsOk());
  store_.reset();
  ASSERT_THAT(backend_->Exec("DROP INDEX requests_by_update; DROP TABLE staged_evidence; "
                             "DROP TABLE request_links; DROP TABLE evidence; "
                             "DROP TABLE backup_origin; DROP INDEX requests_by_deadline; "
                             "DROP INDEX requests_by_case_state; "
                             "ALTER TABLE requests DROP COLUMN next_deadline_us; "
                             "DROP INDEX requests_by_check; "
                             "ALTER TABLE requests DROP COLUMN next_check_us; "
                             "ALTER TABLE requests DROP COLUMN escalated; "
                             "DELETE FROM schema_migrations WHERE version >= 7"),
              IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
  EXPECT_THAT(store_->SchemaVersion(), IsOkAndHolds(sql::kSchemaVersion));
  EXPECT_THAT(store_->requests().Linked("aaaa"), IsOkAndHolds(ElementsAre("bbbb")));
  COMITY_ASSERT_OK_AND_ASSIGN(auto pending, store_->cases().PendingEvidenceOf("bbbb"));
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].sha256, Sha256("file"));
}

TEST_P(StoreTest, MigrationTenKeepsTheDueRequestsOfAnOlderSchema) {
  // Requests as a version 9 store held them, under full due indexes: two
  // pending (one per peer), one delivered, one received.
  ASSERT_THAT(store_->requests().InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "a", 20)),
              IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"b", "FR", "DE"}, Record(v1::OUTGOING, "b", 10)),
              IsOk());
  ASSERT_THAT(store_->requests().InsertOutgoing({"c", "FR", "JP"}, Record(v1::OUTGOING, "c", 5)),
              IsOk());
  v1::SignedEnvelope receipt;
  receipt.set_payload("signed receipt");
  ASSERT_THAT(store_->outbox().MarkDelivered("c", receipt, absl::FromUnixMicros(30),
                                             absl::InfiniteFuture()),
              IsOk());
  store_.reset();
  ASSERT_THAT(
      backend_->Exec("DROP INDEX requests_due; DROP INDEX requests_due_by_peer; "
                     "CREATE INDEX requests_due ON requests (state, next_attempt_at_us); "
                     "CREATE INDEX requests_due_by_peer ON requests "
                     "(state, requested_party, next_attempt_at_us); "
                     "DELETE FROM schema_migrations WHERE version >= 10"),
      IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
  EXPECT_THAT(store_->SchemaVersion(), IsOkAndHolds(sql::kSchemaVersion));
  const absl::Time now = absl::FromUnixMicros(100);
  EXPECT_THAT(IdsOf(*store_->outbox().DueRequests("", now, 10, absl::InfiniteFuture())),
              ElementsAre("b", "a"));
  EXPECT_THAT(IdsOf(*store_->outbox().DueRequests("JP", now, 10, absl::InfiniteFuture())),
              ElementsAre("a"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto depths, store_->outbox().Depths());
  EXPECT_EQ(depths["JP"].first, 1u);
  EXPECT_EQ(depths["DE"].first, 1u);
  // A request stored pending after the migration is due; delivered, it is not.
  ASSERT_THAT(store_->requests().InsertOutgoing({"d", "FR", "JP"}, Record(v1::OUTGOING, "d", 1)),
              IsOk());
  EXPECT_THAT(IdsOf(*store_->outbox().DueRequests("JP", now, 10, absl::InfiniteFuture())),
              ElementsAre("d", "a"));
  ASSERT_THAT(store_->outbox().MarkDelivered("a", receipt, absl::FromUnixMicros(40),
                                             absl::InfiniteFuture()),
              IsOk());
  EXPECT_THAT(IdsOf(*store_->outbox().DueRequests("", now, 10, absl::InfiniteFuture())),
              ElementsAre("d", "b"));
}

TEST(SqliteStoreTest, DurabilitySettingsApplied) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/comity.db";
  COMITY_ASSERT_OK_AND_ASSIGN(auto store, OpenSqliteStore(path));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

// --- PostgreSQL only: several replicas on one database. ---

class PgReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (PostgresTestDb::ServerUrl().empty()) GTEST_SKIP() << PostgresTestDb::kSkipMessage;
    COMITY_ASSERT_OK_AND_ASSIGN(db_, PostgresTestDb::Create());
    COMITY_ASSERT_OK_AND_ASSIGN(key_, SigningKey::Generate());
    ASSERT_THAT(keys_.Add("FR", "FR-1", key_->public_key()), IsOk());
  }
  std::unique_ptr<Store> Replica(absl::Duration lease = absl::Minutes(5)) {
    PostgresOptions options;
    options.claim_lease = lease;
    auto store = OpenPostgresStore(db_->url(), options);
    EXPECT_THAT(store, IsOk());
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::unique_ptr<PostgresTestDb> db_;
  std::unique_ptr<SigningKey> key_;
  KeyRing keys_;
};

TEST_F(PgReplicasTest, ReplicasOpeningAtOnceMigrateOnce) {
  std::vector<std::unique_ptr<Store>> stores(4);
  std::vector<std::thread> threads;
  for (auto& s : stores) {
    threads.emplace_back([&s, this] { s = Replica(); });
  }
  for (auto& t : threads) t.join();
  for (auto& s : stores) {
    ASSERT_NE(s, nullptr);
    EXPECT_THAT(s->SchemaVersion(), IsOkAndHolds(sql::kSchemaVersion));
  }
}

TEST_F(PgReplicasTest, ConcurrentAppendsFromTwoReplicasMakeOneLinearLog) {
  auto a = Replica();
  auto b = Replica();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kThreadsPerReplica = 3;
  constexpr int kTransactions = 15;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    Store* store = r == 0 ? a.get() : b.get();
    for (int t = 0; t < kThreadsPerReplica; ++t) {
      threads.emplace_back([&, store, r, t] {
        for (int i = 0; i < kTransactions; ++i) {
          const std::string id = absl::StrCat("r", r, "-t", t, "-", i);
          absl::Status st;
          if (i % 3 == 0) {
            // A change with its entries.
            st = store->requests().InsertOutgoing({id, "FR", "JP"}, Record(v1::OUTGOING, id, i),
                                       Append(id, {v1::REQUEST_SUBMITTED, v1::ASSESSMENT_MADE}));
          } else {
            // Entries and a head signed over the log as this replica sees it.
            st = store->audit().Append([&](AuditWriter& w) -> absl::Status {
              absl::Status appended = Append(id, {v1::AUTH_FAILURE, v1::NODE_STARTED})(w);
              if (!appended.ok()) return appended;
              return i % 3 == 1 ? SignHead(w, *key_) : absl::OkStatus();
            });
          }
          if (!st.ok()) {
            ADD_FAILURE() << id << ": " << st;
            ++failures;
          }
        }
      });
    }
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  const uint64_t total = 2 * kThreadsPerReplica * kTransactions * 2;
  EXPECT_THAT(a->audit().Size(), IsOkAndHolds(total));
  EXPECT_THAT(b->audit().Size(), IsOkAndHolds(total));
  // Every position once, in order: no fork, no duplicate, no gap.
  std::set<std::string> ids_seen;
  uint64_t expect = 0;
  ASSERT_THAT(a->audit().ReadSnapshot([&](AuditSnapshot& snap) {
    return snap.ForEachEntry(0, [&](uint64_t pos, const std::string& bytes) {
      v1::AuditEntry e;
      EXPECT_TRUE(e.ParseFromString(bytes));
      EXPECT_EQ(pos, expect);
      EXPECT_EQ(e.index(), expect);
      ++expect;
      return absl::OkStatus();
    });
  }),
              IsOk());
  EXPECT_EQ(expect, total);
  // Every head, whichever replica signed it, is a head of this one log.
  for (Store* s : {a.get(), b.get()}) {
    COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, VerifyStoredLog(s->audit(), "FR", keys_));
    EXPECT_TRUE(report.ok) << report.error;
    EXPECT_EQ(report.entries, total);
    EXPECT_EQ(report.heads, 2u * kThreadsPerReplica * (kTransactions / 3));
  }
  // A replica that did not append last still appends at the end.
  ASSERT_THAT(a->audit().Append(Append("last-a", {v1::NODE_STARTED})), IsOk());
  ASSERT_THAT(b->audit().Append(Append("last-b", {v1::NODE_STARTED})), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, VerifyStoredLog(b->audit(), "FR", keys_));
  EXPECT_TRUE(report.ok) << report.error;
  EXPECT_EQ(report.entries, total + 2);
}

TEST_F(PgReplicasTest, TwoReplicasDeliverEachDueRequestOnce) {
  auto a = Replica();
  auto b = Replica();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kRequests = 120;
  for (int i = 0; i < kRequests; ++i) {
    const std::string id = absl::StrCat("q", i);
    ASSERT_THAT(a->requests().InsertOutgoing({id, "FR", i % 2 ? "JP" : "DE"}, Record(v1::OUTGOING, id, i)),
                IsOk());
  }
  absl::Mutex mu;
  std::map<std::string, int> delivered;  // id -> times handed out.
  std::map<std::string, int> by_replica[2];
  std::atomic<int> errors{0};
  auto worker = [&](Store* store, int r) {
    for (;;) {
      auto due = store->outbox().DueRequests("", absl::FromUnixMicros(1'000'000), 8, absl::InfiniteFuture());
      if (!due.ok()) {
        ADD_FAILURE() << due.status();
        ++errors;
        return;
      }
      if (due->empty()) return;
      for (const v1::RequestRecord& rec : *due) {
        const std::string& id = rec.request().payload();
        {
          absl::MutexLock lock(&mu);
          ++delivered[id];
          ++by_replica[r][id];
        }
        absl::Status st = store->outbox().MarkDelivered(id, v1::SignedEnvelope(),
                                               absl::FromUnixMicros(1'000'001),
                                               absl::InfiniteFuture());
        if (!st.ok()) {
          ADD_FAILURE() << id << " (handed to another replica too?): " << st;
          ++errors;
        }
      }
    }
  };
  std::thread ta(worker, a.get(), 0);
  std::thread tb(worker, b.get(), 1);
  ta.join();
  tb.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(delivered.size(), static_cast<size_t>(kRequests));
  for (const auto& [id, times] : delivered) EXPECT_EQ(times, 1) << id;
  // Both took part (not a proof of fairness, but of sharing).
  EXPECT_GT(by_replica[0].size() + by_replica[1].size(), 0u);
  std::cout << "replica A delivered " << by_replica[0].size() << ", replica B "
            << by_replica[1].size() << "\n";
}

TEST_F(PgReplicasTest, AClaimHoldsUntilReleasedOrExpired) {
  const absl::Duration lease = absl::Seconds(2);
  auto a = Replica(lease);
  auto b = Replica(lease);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  const absl::Time now = absl::FromUnixMicros(1'000'000);
  bool inserted;
  for (int i = 0; i < 4; ++i) {
    const std::string id = absl::StrCat("x", i);
    ASSERT_THAT(a->requests().InsertOutgoing({id, "FR", "JP"}, Record(v1::OUTGOING, id, i)), IsOk());
  }
  ASSERT_THAT(a->requests().InsertIncomingIfAbsent({"case", "FR", "JP"},
                                        Fixed(Record(v1::INCOMING, "case", 1)), &inserted),
              IsOk());
  v1::Transition t1;
  auto e1 = Step("case", 1, v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, &t1);
  ASSERT_THAT(a->cases().AppendTransition("case", v1::INCOMING, t1, e1, true, now, absl::InfiniteFuture()), IsOk());
  v1::SignedEnvelope proposal;
  ASSERT_THAT(a->outbox().EnqueueProposal("p", "JP", proposal, now), IsOk());

  const absl::Time claimed_at = absl::Now();
  COMITY_ASSERT_OK_AND_ASSIGN(auto mine, a->outbox().DueRequests("", now, 2, absl::InfiniteFuture()));
  ASSERT_EQ(mine.size(), 2u);
  ASSERT_THAT(a->outbox().DueTransitions("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(SizeIs(1)));
  ASSERT_THAT(a->outbox().DueProposals("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(SizeIs(1)));
  // B gets only what A did not claim; A gets its own claims again.
  COMITY_ASSERT_OK_AND_ASSIGN(auto theirs, b->outbox().DueRequests("", now, 10, absl::InfiniteFuture()));
  EXPECT_THAT(IdsOf(theirs), ElementsAre("x2", "x3"));
  EXPECT_THAT(b->outbox().DueTransitions("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(b->outbox().DueProposals("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(a->outbox().DueRequests("", now, 2, absl::InfiniteFuture()), IsOkAndHolds(SizeIs(2)));
  // A failed attempt releases the claim: after its backoff anyone may retry.
  ASSERT_THAT(a->outbox().MarkDeliveryFailed("x0", "down", now, now), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto after_release, b->outbox().DueRequests("", now, 10, absl::InfiniteFuture()));
  EXPECT_THAT(IdsOf(after_release), ElementsAre("x0", "x2", "x3"));
  ASSERT_LT(absl::Now() - claimed_at, lease) << "too slow to test the lease";

  // A crashes (its claims are not released) ...
  absl::SleepFor(lease + absl::Milliseconds(300) - (absl::Now() - claimed_at));
  // ... and when the lease has run out B takes over.
  COMITY_ASSERT_OK_AND_ASSIGN(auto taken, b->outbox().DueRequests("", now, 10, absl::InfiniteFuture()));
  EXPECT_THAT(IdsOf(taken), ElementsAre("x0", "x1", "x2", "x3"));
  EXPECT_THAT(b->outbox().DueTransitions("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(SizeIs(1)));
  EXPECT_THAT(b->outbox().DueProposals("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(SizeIs(1)));
  // Now A waits for B's claims.
  EXPECT_THAT(a->outbox().DueRequests("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(IsEmpty()));
  // A replica that shuts down releases its claims at once.
  b.reset();
  EXPECT_THAT(a->outbox().DueRequests("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(SizeIs(4)));
  EXPECT_THAT(a->outbox().DueTransitions("", now, 10, absl::InfiniteFuture()), IsOkAndHolds(SizeIs(1)));
}

TEST_F(PgReplicasTest, ConcurrentReceiptOfOneRequestStoresItOnce) {
  auto a = Replica();
  auto b = Replica();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::atomic<int> inserted_count{0};
  auto receive = [&](Store* store, const std::string& payload) {
    bool inserted = false;
    auto got = store->requests().InsertIncomingIfAbsent(
        {"same", "JP", "FR"},
        [&](AuditWriter& w) -> absl::StatusOr<v1::RequestRecord> {
          absl::Status st = Append("same", {v1::REQUEST_RECEIVED})(w);
          if (!st.ok()) return st;
          return Record(v1::INCOMING, payload, 1);
        },
        &inserted);
    EXPECT_THAT(got, IsOk());
    if (inserted) ++inserted_count;
  };
  std::thread ta(receive, a.get(), "from-a");
  std::thread tb(receive, b.get(), "from-b");
  ta.join();
  tb.join();
  EXPECT_EQ(inserted_count.load(), 1);
  EXPECT_THAT(a->audit().Size(), IsOkAndHolds(1u));
  COMITY_ASSERT_OK_AND_ASSIGN(auto rows, b->requests().Get("same"));
  EXPECT_THAT(IdsOf(rows), SizeIs(1));
}

TEST_F(PgReplicasTest, ALostConnectionIsUnavailableThenReestablished) {
  auto a = Replica();
  ASSERT_NE(a, nullptr);
  ASSERT_THAT(a->audit().Append(Append("x", {v1::NODE_STARTED})), IsOk());
  // The server ends the store's session (a restart, a failover).
  ASSERT_THAT(db_->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        "datname = current_database() AND pid <> pg_backend_pid()"),
              IsOk());
  EXPECT_THAT(a->audit().Size(), StatusIs(absl::StatusCode::kUnavailable));
  // The next call reconnects; nothing committed was lost.
  EXPECT_THAT(a->audit().Size(), IsOkAndHolds(1u));
  ASSERT_THAT(a->audit().Append(Append("y", {v1::NODE_STARTED})), IsOk());
  EXPECT_THAT(a->audit().Size(), IsOkAndHolds(2u));
}

TEST_F(PgReplicasTest, UnreachableServerIsUnavailable) {
  EXPECT_THAT(OpenPostgresStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot connect")));
}

}  // namespace
}  // namespace comity
