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
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "server/audit/merkle.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/store/pg_store.h"
#include "server/store/sqlite_store.h"
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

// --- Backends. ---

// One database, opened (again) on demand, with SQL behind the store's back.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual absl::StatusOr<std::unique_ptr<Store>> Open() = 0;
  virtual absl::StatusOr<int> SchemaVersion(Store& store) = 0;
  virtual int CurrentSchemaVersion() const = 0;
  virtual absl::Status Exec(const std::string& sql) = 0;
};

class SqliteBackend final : public Backend {
 public:
  absl::StatusOr<std::unique_ptr<Store>> Open() override {
    auto store = SqliteStore::Open(path());
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(*std::move(store));
  }
  absl::StatusOr<int> SchemaVersion(Store& store) override {
    return static_cast<SqliteStore&>(store).SchemaVersion();
  }
  int CurrentSchemaVersion() const override { return SqliteStore::kSchemaVersion; }
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
  absl::StatusOr<std::unique_ptr<Store>> Open() override {
    auto store = PgStore::Open(db_->url());
    if (!store.ok()) return store.status();
    return std::unique_ptr<Store>(*std::move(store));
  }
  absl::StatusOr<int> SchemaVersion(Store& store) override {
    return static_cast<PgStore&>(store).SchemaVersion();
  }
  int CurrentSchemaVersion() const override { return PgStore::kSchemaVersion; }
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
  EXPECT_THAT(backend_->SchemaVersion(*store_),
              IsOkAndHolds(backend_->CurrentSchemaVersion()));
  // Opening again migrates nothing and keeps the version.
  store_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
  EXPECT_THAT(backend_->SchemaVersion(*store_),
              IsOkAndHolds(backend_->CurrentSchemaVersion()));
}

TEST_P(StoreTest, RefusesNewerSchema) {
  store_.reset();
  ASSERT_THAT(backend_->Exec("INSERT INTO schema_migrations VALUES (99, 0)"), IsOk());
  EXPECT_THAT(backend_->Open(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("newer than this build")));
}

TEST_P(StoreTest, OutgoingLifecycleSurvivesReopen) {
  RecordKey key{"id-1", "FR", "JP"};
  ASSERT_THAT(store_->InsertOutgoing(key, Record(v1::OUTGOING, "p1", 1000)), IsOk());
  EXPECT_THAT(store_->InsertOutgoing(key, Record(v1::OUTGOING, "p1", 1000)),
              StatusIs(absl::StatusCode::kAlreadyExists));
  auto due = store_->DueForDelivery("", absl::FromUnixMicros(2000), 10);
  ASSERT_THAT(due, IsOk());
  EXPECT_EQ(due->size(), 1u);

  ASSERT_THAT(store_->MarkDeliveryFailed("id-1", "UNAVAILABLE: down",
                                         absl::FromUnixMicros(3000), absl::FromUnixMicros(9000)),
              IsOk());
  EXPECT_THAT(store_->DueForDelivery("", absl::FromUnixMicros(5000), 10),
              IsOkAndHolds(IsEmpty()));
  COMITY_ASSERT_OK_AND_ASSIGN(auto pending, store_->Get("id-1"));
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].last_error(), "UNAVAILABLE: down");
  EXPECT_EQ(TimeUtil::TimestampToMicroseconds(pending[0].next_attempt_at()), 9000);
  v1::SignedEnvelope receipt;
  receipt.set_payload("signed receipt");
  ASSERT_THAT(store_->MarkDelivered("id-1", receipt, absl::FromUnixMicros(10000)), IsOk());
  EXPECT_THAT(store_->MarkDelivered("id-404", receipt, absl::FromUnixMicros(10000)),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->MarkDeliveryFailed("id-1", "late", absl::FromUnixMicros(1),
                                         absl::FromUnixMicros(2)),
              StatusIs(absl::StatusCode::kNotFound));

  store_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(auto reopened, backend_->Open());
  COMITY_ASSERT_OK_AND_ASSIGN(auto records, reopened->Get("id-1"));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state(), v1::DELIVERED);
  EXPECT_EQ(records[0].case_state(), v1::CASE_DELIVERED);
  EXPECT_EQ(records[0].receipt().payload(), "signed receipt");
  EXPECT_EQ(records[0].delivery_attempts(), 2u);
  EXPECT_EQ(records[0].last_error(), "");
  EXPECT_FALSE(records[0].has_next_attempt_at());
  EXPECT_EQ(records[0].request().payload(), "p1");
  EXPECT_THAT(reopened->DueForDelivery("", absl::FromUnixMicros(99999), 10),
              IsOkAndHolds(IsEmpty()));
}

TEST_P(StoreTest, ApprovalThenRejection) {
  v1::RequestRecord draft = Record(v1::OUTGOING, "draft", 100);
  draft.set_state(v1::AWAITING_APPROVAL);
  draft.clear_next_attempt_at();
  draft.set_submitted_by("alice");
  ASSERT_THAT(store_->InsertOutgoing({"d", "FR", "JP"}, draft), IsOk());
  EXPECT_THAT(store_->DueForDelivery("", absl::FromUnixMicros(1000), 10),
              IsOkAndHolds(IsEmpty()));
  v1::SignedEnvelope signed_request;
  signed_request.set_payload("signed draft");
  signed_request.set_signature("sig");
  ASSERT_THAT(store_->MarkApproved("d", signed_request, "bob", absl::FromUnixMicros(500)),
              IsOk());
  EXPECT_THAT(store_->MarkApproved("d", signed_request, "bob", absl::FromUnixMicros(500)),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not awaiting")));
  COMITY_ASSERT_OK_AND_ASSIGN(auto due, store_->DueForDelivery("", absl::FromUnixMicros(500), 10));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].request().signature(), "sig");
  EXPECT_EQ(due[0].approved_by(), "bob");
  EXPECT_EQ(due[0].submitted_by(), "alice");
  // Free text a peer sent may be anything; it is stored, not refused.
  ASSERT_THAT(store_->MarkRejected("d", std::string("INVALID_ARGUMENT: bad \xff\x00 bytes", 31),
                                   absl::FromUnixMicros(600)),
              IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto records, store_->Get("d"));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state(), v1::DELIVERY_REJECTED);
  EXPECT_THAT(records[0].last_error(), HasSubstr("INVALID_ARGUMENT: bad"));
  EXPECT_THAT(store_->DueForDelivery("", absl::FromUnixMicros(9999), 10),
              IsOkAndHolds(IsEmpty()));
}

TEST_P(StoreTest, DueForDeliveryIsOldestFirstAndFilteredByPeer) {
  ASSERT_THAT(store_->InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "a", 30)), IsOk());
  ASSERT_THAT(store_->InsertOutgoing({"b", "FR", "DE"}, Record(v1::OUTGOING, "b", 10)), IsOk());
  ASSERT_THAT(store_->InsertOutgoing({"c", "FR", "JP"}, Record(v1::OUTGOING, "c", 20)), IsOk());
  ASSERT_THAT(store_->InsertOutgoing({"d", "FR", "JP"}, Record(v1::OUTGOING, "d", 5000)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto all, store_->DueForDelivery("", absl::FromUnixMicros(100), 10));
  EXPECT_THAT(IdsOf(all), ElementsAre("b", "c", "a"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto jp, store_->DueForDelivery("JP", absl::FromUnixMicros(100), 10));
  EXPECT_THAT(IdsOf(jp), ElementsAre("c", "a"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto one, store_->DueForDelivery("", absl::FromUnixMicros(100), 1));
  EXPECT_THAT(IdsOf(one), ElementsAre("b"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto depths, store_->QueueDepths());
  EXPECT_EQ(depths["JP"].first, 3u);
  EXPECT_EQ(depths["DE"].first, 1u);
}

TEST_P(StoreTest, IncomingInsertIsIdempotent) {
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
  EXPECT_EQ(second.receipt().payload(), "receipt");
  // An outgoing request may share the id space without clashing.
  EXPECT_THAT(store_->InsertOutgoing(key, Record(v1::OUTGOING, "c", 3)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto both, store_->Get("id-2"));
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0].direction(), v1::OUTGOING);
  EXPECT_EQ(both[1].direction(), v1::INCOMING);
}

TEST_P(StoreTest, ListIsNewestFirstAndFiltered) {
  bool inserted;
  ASSERT_THAT(store_->InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "1", 10)), IsOk());
  ASSERT_THAT(store_->InsertIncomingIfAbsent({"b", "JP", "FR"},
                                             Fixed(Record(v1::INCOMING, "2", 20)), &inserted),
              IsOk());
  ASSERT_THAT(store_->InsertOutgoing({"c", "FR", "DE"}, Record(v1::OUTGOING, "3", 30)), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto all, store_->List(v1::DIRECTION_UNSPECIFIED, 10));
  EXPECT_THAT(IdsOf(all), ElementsAre("3", "2", "1"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto sent, store_->List(v1::OUTGOING, 10));
  EXPECT_THAT(IdsOf(sent), ElementsAre("3", "1"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto one, store_->List(v1::DIRECTION_UNSPECIFIED, 1));
  EXPECT_EQ(one.size(), 1u);
}

TEST_P(StoreTest, AuditEntriesCommitOrRollBackWithTheChange) {
  ASSERT_THAT(store_->InsertOutgoing({"a", "FR", "JP"}, Record(v1::OUTGOING, "1", 10),
                                     Append("a", {v1::REQUEST_SUBMITTED, v1::ASSESSMENT_MADE})),
              IsOk());
  EXPECT_THAT(store_->AuditSize(), IsOkAndHolds(2u));
  // The audit function fails: neither the row nor any entry is stored.
  AuditFn failing = [](AuditWriter& w) -> absl::Status {
    v1::AuditEntry e = Entry("b", v1::REQUEST_SUBMITTED, 5);
    if (!w.Append(&e).ok()) return absl::InternalError("append");
    return absl::UnavailableError("signer down");
  };
  EXPECT_THAT(store_->InsertOutgoing({"b", "FR", "JP"}, Record(v1::OUTGOING, "2", 20), failing),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("signer down")));
  EXPECT_THAT(store_->Get("b"), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(store_->AuditSize(), IsOkAndHolds(2u));
  // The next append takes the next index, not one the failed one used.
  ASSERT_THAT(store_->MarkDeliveryFailed("a", "down", absl::FromUnixMicros(20),
                                         absl::FromUnixMicros(30),
                                         Append("a", {v1::DELIVERY_ATTEMPTED, v1::DELIVERY_FAILED})),
              IsOk());
  // A change that does not happen writes no entry.
  EXPECT_THAT(store_->MarkDelivered("zz", v1::SignedEnvelope(), absl::FromUnixMicros(40),
                                    Append("zz", {v1::DELIVERY_ACKNOWLEDGED})),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(store_->AuditSize(), IsOkAndHolds(4u));

  AuditFilter by_type;
  by_type.type = v1::DELIVERY_FAILED;
  COMITY_ASSERT_OK_AND_ASSIGN(auto failed, store_->AuditEntries(by_type));
  ASSERT_EQ(failed.size(), 1u);
  v1::AuditEntry parsed;
  ASSERT_TRUE(parsed.ParseFromString(failed[0]));
  EXPECT_EQ(parsed.index(), 3u);
  AuditFilter page;
  page.from_index = 1;
  page.limit = 2;
  page.request_id = "a";
  EXPECT_THAT(store_->AuditEntries(page), IsOkAndHolds(SizeIs(2)));
  uint64_t expect = 0;
  ASSERT_THAT(store_->ForEachAuditEntry([&](uint64_t pos, const std::string&) {
    EXPECT_EQ(pos, expect++);
    return absl::OkStatus();
  }),
              IsOk());
  EXPECT_EQ(expect, 4u);
}

TEST_P(StoreTest, ProofsAndHeadsFromStoredNodesSurviveReopen) {
  std::vector<std::string> leaves;
  for (int batch = 0; batch < 5; ++batch) {
    ASSERT_THAT(store_->Audit([&](AuditWriter& w) -> absl::Status {
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
  COMITY_ASSERT_OK_AND_ASSIGN(std::string root15, store_->RootAt(15));
  COMITY_ASSERT_OK_AND_ASSIGN(std::string root6, store_->RootAt(6));
  COMITY_ASSERT_OK_AND_ASSIGN(auto incl, store_->InclusionProofAt(4, 15));
  EXPECT_THAT(merkle::VerifyInclusion(4, 15, leaves[4], incl, root15), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto cons, store_->ConsistencyProofAt(6, 15));
  EXPECT_THAT(merkle::VerifyConsistency(6, 15, root6, root15, cons), IsOk());
  EXPECT_THAT(store_->RootAt(16), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(store_->TreeHeads(), IsOkAndHolds(SizeIs(5)));
  COMITY_ASSERT_OK_AND_ASSIGN(auto latest, store_->LatestTreeHead());
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->head.tree_size(), 15u);
  EXPECT_EQ(latest->head.root_hash(), root15);
  COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, VerifyStoredLog(*store_, "FR", keys_));
  EXPECT_TRUE(report.ok) << report.error;
  EXPECT_EQ(report.entries, 15u);
  EXPECT_EQ(report.heads, 5u);

  store_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(store_, backend_->Open());
  EXPECT_THAT(store_->AuditSize(), IsOkAndHolds(15u));
  ASSERT_THAT(store_->Audit(Append("after", {v1::NODE_STARTED})), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto cons2, store_->ConsistencyProofAt(15, 16));
  COMITY_ASSERT_OK_AND_ASSIGN(std::string root16, store_->RootAt(16));
  EXPECT_THAT(merkle::VerifyConsistency(15, 16, root15, root16, cons2), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(report, VerifyStoredLog(*store_, "FR", keys_));
  EXPECT_TRUE(report.ok) << report.error;
  EXPECT_EQ(report.entries, 16u);
}

TEST_P(StoreTest, PeerHeadsKeepTheFirstOfEachSize) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto none, store_->LatestPeerHead("JP"));
  EXPECT_FALSE(none.has_value());
  auto head = [](uint64_t size, const std::string& root) {
    StoredTreeHead h;
    h.head.set_party("JP");
    h.head.set_tree_size(size);
    h.head.set_root_hash(root);
    h.signed_head.set_payload(h.head.SerializeAsString());
    return h;
  };
  ASSERT_THAT(store_->PutPeerHead("JP", head(5, "r5")), IsOk());
  ASSERT_THAT(store_->PutPeerHead("JP", head(9, "r9")), IsOk());
  ASSERT_THAT(store_->PutPeerHead("JP", head(9, "other")), IsOk());
  ASSERT_THAT(store_->PutPeerHead("DE", head(20, "d20")), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto latest, store_->LatestPeerHead("JP"));
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->head.tree_size(), 9u);
  EXPECT_EQ(latest->head.root_hash(), "r9");
}

TEST_P(StoreTest, TransitionsFollowTheCaseAndGoOutInOrder) {
  bool inserted;
  for (const char* id : {"c1", "c2"}) {
    ASSERT_THAT(store_->InsertIncomingIfAbsent({id, "FR", "JP"},
                                               Fixed(Record(v1::INCOMING, id, 1)), &inserted),
                IsOk());
  }
  v1::Transition t1, t2, bad, c2t;
  auto e1 = Step("c1", 1, v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, &t1);
  auto e2 = Step("c1", 2, v1::CASE_ACKNOWLEDGED, v1::CASE_ACCEPTED, &t2);
  auto ebad = Step("c1", 2, v1::CASE_DELIVERED, v1::CASE_REFUSED, &bad);
  auto ec2 = Step("c2", 1, v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, &c2t);
  const absl::Time now = absl::FromUnixMicros(1000);
  ASSERT_THAT(store_->AppendTransition("c1", v1::INCOMING, t1, e1, true, now,
                                       Append("c1", {v1::CASE_DECIDED})),
              IsOk());
  EXPECT_THAT(store_->AppendTransition("c1", v1::INCOMING, t1, e1, true, now),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(store_->AppendTransition("c1", v1::INCOMING, bad, ebad, true, now),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("does not follow")));
  EXPECT_THAT(store_->AppendTransition("nope", v1::INCOMING, t1, e1, true, now),
              StatusIs(absl::StatusCode::kNotFound));
  ASSERT_THAT(store_->AppendTransition("c1", v1::INCOMING, t2, e2, true, now), IsOk());
  ASSERT_THAT(store_->AppendTransition("c2", v1::INCOMING, c2t, ec2, true, now), IsOk());
  EXPECT_THAT(store_->AuditSize(), IsOkAndHolds(1u));

  COMITY_ASSERT_OK_AND_ASSIGN(auto records, store_->Get("c1"));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].case_state(), v1::CASE_ACCEPTED);
  ASSERT_EQ(records[0].transitions_size(), 2);
  EXPECT_EQ(records[0].transitions(1).payload(), e2.payload());

  // Only the earliest undelivered step of each case is due.
  COMITY_ASSERT_OK_AND_ASSIGN(auto due, store_->DueTransitions("", now, 10));
  ASSERT_EQ(due.size(), 2u);
  std::set<std::pair<std::string, uint32_t>> got;
  for (const auto& p : due) got.insert({p.request_id, p.sequence});
  EXPECT_EQ(got, (std::set<std::pair<std::string, uint32_t>>{{"c1", 1}, {"c2", 1}}));
  EXPECT_THAT(store_->DueTransitions("DE", now, 10), IsOkAndHolds(IsEmpty()));
  COMITY_ASSERT_OK_AND_ASSIGN(auto depths, store_->QueueDepths());
  EXPECT_EQ(depths["FR"].second, 3u);

  ASSERT_THAT(store_->MarkTransitionFailed("c2", 1, "UNAVAILABLE: down",
                                           absl::FromUnixMicros(5000)),
              IsOk());
  v1::SignedEnvelope ack;
  ack.set_payload("ack");
  ASSERT_THAT(store_->MarkTransitionDelivered("c1", 1, ack,
                                              Append("c1", {v1::TRANSITION_DELIVERED})),
              IsOk());
  // Again: already delivered, no second entry.
  ASSERT_THAT(store_->MarkTransitionDelivered("c1", 1, ack,
                                              Append("c1", {v1::TRANSITION_DELIVERED})),
              IsOk());
  EXPECT_THAT(store_->AuditSize(), IsOkAndHolds(2u));
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->DueTransitions("FR", now, 10));
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].request_id, "c1");
  EXPECT_EQ(due[0].sequence, 2u);
  COMITY_ASSERT_OK_AND_ASSIGN(due, store_->DueTransitions("", absl::FromUnixMicros(6000), 10));
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
                              store_->EnqueueProposal("r1", "JP", proposal, now,
                                                      Append("r1", {v1::REQUEST_SUBMITTED})));
  EXPECT_THAT(store_->EnqueueProposal("r1", "JP", proposal, now),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already has")));
  COMITY_ASSERT_OK_AND_ASSIGN(int64_t second, store_->EnqueueProposal("r2", "DE", proposal, now));
  EXPECT_GT(second, first);
  EXPECT_THAT(store_->AuditSize(), IsOkAndHolds(1u));
  COMITY_ASSERT_OK_AND_ASSIGN(auto due, store_->DueProposals("", now, 10));
  ASSERT_EQ(due.size(), 2u);
  EXPECT_EQ(due[0].id, first);
  EXPECT_EQ(due[0].envelope.payload(), "withdraw");
  EXPECT_THAT(store_->DueProposals("DE", now, 10), IsOkAndHolds(SizeIs(1)));
  COMITY_ASSERT_OK_AND_ASSIGN(auto depths, store_->QueueDepths());
  EXPECT_EQ(depths["JP"].second, 1u);

  ASSERT_THAT(store_->MarkProposalFailed(first, "UNAVAILABLE: down", absl::FromUnixMicros(9000)),
              IsOk());
  EXPECT_THAT(store_->DueProposals("JP", now, 10), IsOkAndHolds(IsEmpty()));
  COMITY_ASSERT_OK_AND_ASSIGN(auto queued, store_->QueuedProposals("r1"));
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_EQ(queued[0].attempts, 1u);
  EXPECT_EQ(queued[0].last_error, "UNAVAILABLE: down");
  ASSERT_THAT(store_->FinishProposal(first, "", Append("r1", {v1::REQUEST_SUBMITTED})), IsOk());
  ASSERT_THAT(store_->FinishProposal(first, "", Append("r1", {v1::REQUEST_SUBMITTED})), IsOk());
  EXPECT_THAT(store_->AuditSize(), IsOkAndHolds(2u));
  EXPECT_THAT(store_->QueuedProposals("r1"), IsOkAndHolds(IsEmpty()));
  // Once finished, the next proposal for the request may be queued.
  EXPECT_THAT(store_->EnqueueProposal("r1", "JP", proposal, now), IsOk());
}

TEST(SqliteStoreTest, DurabilitySettingsApplied) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/comity.db";
  COMITY_ASSERT_OK_AND_ASSIGN(auto store, SqliteStore::Open(path));
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
  std::unique_ptr<PgStore> Replica(absl::Duration lease = absl::Minutes(5)) {
    PgStore::Options options;
    options.claim_lease = lease;
    auto store = PgStore::Open(db_->url(), options);
    EXPECT_THAT(store, IsOk());
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::unique_ptr<PostgresTestDb> db_;
  std::unique_ptr<SigningKey> key_;
  KeyRing keys_;
};

TEST_F(PgReplicasTest, ReplicasOpeningAtOnceMigrateOnce) {
  std::vector<std::unique_ptr<PgStore>> stores(4);
  std::vector<std::thread> threads;
  for (auto& s : stores) {
    threads.emplace_back([&s, this] { s = Replica(); });
  }
  for (auto& t : threads) t.join();
  for (auto& s : stores) {
    ASSERT_NE(s, nullptr);
    EXPECT_THAT(s->SchemaVersion(), IsOkAndHolds(PgStore::kSchemaVersion));
  }
  EXPECT_NE(stores[0]->replica_id(), stores[1]->replica_id());
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
    PgStore* store = r == 0 ? a.get() : b.get();
    for (int t = 0; t < kThreadsPerReplica; ++t) {
      threads.emplace_back([&, store, r, t] {
        for (int i = 0; i < kTransactions; ++i) {
          const std::string id = absl::StrCat("r", r, "-t", t, "-", i);
          absl::Status st;
          if (i % 3 == 0) {
            // A change with its entries.
            st = store->InsertOutgoing({id, "FR", "JP"}, Record(v1::OUTGOING, id, i),
                                       Append(id, {v1::REQUEST_SUBMITTED, v1::ASSESSMENT_MADE}));
          } else {
            // Entries and a head signed over the log as this replica sees it.
            st = store->Audit([&](AuditWriter& w) -> absl::Status {
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
  EXPECT_THAT(a->AuditSize(), IsOkAndHolds(total));
  EXPECT_THAT(b->AuditSize(), IsOkAndHolds(total));
  // Every position once, in order: no fork, no duplicate, no gap.
  std::set<std::string> ids_seen;
  uint64_t expect = 0;
  ASSERT_THAT(a->ForEachAuditEntry([&](uint64_t pos, const std::string& bytes) {
    v1::AuditEntry e;
    EXPECT_TRUE(e.ParseFromString(bytes));
    EXPECT_EQ(pos, expect);
    EXPECT_EQ(e.index(), expect);
    ++expect;
    return absl::OkStatus();
  }),
              IsOk());
  EXPECT_EQ(expect, total);
  // Every head, whichever replica signed it, is a head of this one log.
  for (PgStore* s : {a.get(), b.get()}) {
    COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, VerifyStoredLog(*s, "FR", keys_));
    EXPECT_TRUE(report.ok) << report.error;
    EXPECT_EQ(report.entries, total);
    EXPECT_EQ(report.heads, 2u * kThreadsPerReplica * (kTransactions / 3));
  }
  // A replica that did not append last still appends at the end.
  ASSERT_THAT(a->Audit(Append("last-a", {v1::NODE_STARTED})), IsOk());
  ASSERT_THAT(b->Audit(Append("last-b", {v1::NODE_STARTED})), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, VerifyStoredLog(*b, "FR", keys_));
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
    ASSERT_THAT(a->InsertOutgoing({id, "FR", i % 2 ? "JP" : "DE"}, Record(v1::OUTGOING, id, i)),
                IsOk());
  }
  absl::Mutex mu;
  std::map<std::string, int> delivered;  // id -> times handed out.
  std::map<std::string, int> by_replica[2];
  std::atomic<int> errors{0};
  auto worker = [&](PgStore* store, int r) {
    for (;;) {
      auto due = store->DueForDelivery("", absl::FromUnixMicros(1'000'000), 8);
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
        absl::Status st = store->MarkDelivered(id, v1::SignedEnvelope(),
                                               absl::FromUnixMicros(1'000'001));
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
    ASSERT_THAT(a->InsertOutgoing({id, "FR", "JP"}, Record(v1::OUTGOING, id, i)), IsOk());
  }
  ASSERT_THAT(a->InsertIncomingIfAbsent({"case", "FR", "JP"},
                                        Fixed(Record(v1::INCOMING, "case", 1)), &inserted),
              IsOk());
  v1::Transition t1;
  auto e1 = Step("case", 1, v1::CASE_DELIVERED, v1::CASE_ACKNOWLEDGED, &t1);
  ASSERT_THAT(a->AppendTransition("case", v1::INCOMING, t1, e1, true, now), IsOk());
  v1::SignedEnvelope proposal;
  ASSERT_THAT(a->EnqueueProposal("p", "JP", proposal, now), IsOk());

  const absl::Time claimed_at = absl::Now();
  COMITY_ASSERT_OK_AND_ASSIGN(auto mine, a->DueForDelivery("", now, 2));
  ASSERT_EQ(mine.size(), 2u);
  ASSERT_THAT(a->DueTransitions("", now, 10), IsOkAndHolds(SizeIs(1)));
  ASSERT_THAT(a->DueProposals("", now, 10), IsOkAndHolds(SizeIs(1)));
  // B gets only what A did not claim; A gets its own claims again.
  COMITY_ASSERT_OK_AND_ASSIGN(auto theirs, b->DueForDelivery("", now, 10));
  EXPECT_THAT(IdsOf(theirs), ElementsAre("x2", "x3"));
  EXPECT_THAT(b->DueTransitions("", now, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(b->DueProposals("", now, 10), IsOkAndHolds(IsEmpty()));
  EXPECT_THAT(a->DueForDelivery("", now, 2), IsOkAndHolds(SizeIs(2)));
  // A failed attempt releases the claim: after its backoff anyone may retry.
  ASSERT_THAT(a->MarkDeliveryFailed("x0", "down", now, now), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto after_release, b->DueForDelivery("", now, 10));
  EXPECT_THAT(IdsOf(after_release), ElementsAre("x0", "x2", "x3"));
  ASSERT_LT(absl::Now() - claimed_at, lease) << "too slow to test the lease";

  // A crashes (its claims are not released) ...
  absl::SleepFor(lease + absl::Milliseconds(300) - (absl::Now() - claimed_at));
  // ... and when the lease has run out B takes over.
  COMITY_ASSERT_OK_AND_ASSIGN(auto taken, b->DueForDelivery("", now, 10));
  EXPECT_THAT(IdsOf(taken), ElementsAre("x0", "x1", "x2", "x3"));
  EXPECT_THAT(b->DueTransitions("", now, 10), IsOkAndHolds(SizeIs(1)));
  EXPECT_THAT(b->DueProposals("", now, 10), IsOkAndHolds(SizeIs(1)));
  // Now A waits for B's claims.
  EXPECT_THAT(a->DueForDelivery("", now, 10), IsOkAndHolds(IsEmpty()));
  // A replica that shuts down releases its claims at once.
  b.reset();
  EXPECT_THAT(a->DueForDelivery("", now, 10), IsOkAndHolds(SizeIs(4)));
  EXPECT_THAT(a->DueTransitions("", now, 10), IsOkAndHolds(SizeIs(1)));
}

TEST_F(PgReplicasTest, ConcurrentReceiptOfOneRequestStoresItOnce) {
  auto a = Replica();
  auto b = Replica();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::atomic<int> inserted_count{0};
  auto receive = [&](PgStore* store, const std::string& payload) {
    bool inserted = false;
    auto got = store->InsertIncomingIfAbsent(
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
  EXPECT_THAT(a->AuditSize(), IsOkAndHolds(1u));
  COMITY_ASSERT_OK_AND_ASSIGN(auto rows, b->Get("same"));
  EXPECT_THAT(IdsOf(rows), SizeIs(1));
}

TEST_F(PgReplicasTest, ALostConnectionIsUnavailableThenReestablished) {
  auto a = Replica();
  ASSERT_NE(a, nullptr);
  ASSERT_THAT(a->Audit(Append("x", {v1::NODE_STARTED})), IsOk());
  // The server ends the store's session (a restart, a failover).
  ASSERT_THAT(db_->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        "datname = current_database() AND pid <> pg_backend_pid()"),
              IsOk());
  EXPECT_THAT(a->AuditSize(), StatusIs(absl::StatusCode::kUnavailable));
  // The next call reconnects; nothing committed was lost.
  EXPECT_THAT(a->AuditSize(), IsOkAndHolds(1u));
  ASSERT_THAT(a->Audit(Append("y", {v1::NODE_STARTED})), IsOk());
  EXPECT_THAT(a->AuditSize(), IsOkAndHolds(2u));
}

TEST_F(PgReplicasTest, UnreachableServerIsUnavailable) {
  EXPECT_THAT(PgStore::Open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("cannot connect")));
}

}  // namespace
}  // namespace comity
