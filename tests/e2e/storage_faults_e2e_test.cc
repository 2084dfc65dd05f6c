// Faults of the stored data, end to end on real nodes over real mutual TLS:
// a byte changed in a stored request, receipt or step behind the node's
// back (a failing disk, an intruder with the file), and a damaged b-tree
// page of the SQLite file. What the log covers, `comity audit verify`
// checks against the stored data and names the first mismatch; the node
// signs nothing on a stored item whose signature no longer verifies; and a
// damaged database stops the node at start, the file left as it was.
//
// The byte changes run on SQLite and, with COMITY_TEST_POSTGRES, on
// PostgreSQL (TestNetwork::FlipStoredByte); the damaged page is SQLite's.
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/util/files.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;
using ::testing::Not;

class StorageFaultsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
  }
  std::string Submit() {
    CliResult r = Cli(testing::SubmitPreservationArgs(net_->ClientConfigPath("FR", "alice"),
                                                      "JP"));
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  }
  v1::RequestRecord Record(const std::string& party, const std::string& id) {
    auto r = net_->server(party)->node()->Get(id);
    EXPECT_THAT(r, IsOk());
    return r.ok() && !r->empty() ? (*r)[0] : v1::RequestRecord();
  }
  // Waits until FR holds `id` as delivered with `steps` steps.
  bool FranceHolds(const std::string& id, int steps) {
    for (int i = 0; i < 200; ++i) {
      v1::RequestRecord r = Record("FR", id);
      if (r.state() == v1::DELIVERED && r.transitions_size() == steps) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  CliResult Jp(std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath("JP", "alice")});
    return Cli(args);
  }
  CliResult Verify(const std::string& party) {
    return Cli({"--connect", net_->ClientConfigPath(party, "carol"), "audit", "verify"});
  }
  std::string Where(const std::string& id) { return absl::StrCat("request_id = '", id, "'"); }

  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(StorageFaultsE2eTest, AChangedRequestPayloadIsNamedAndNothingIsSignedOnIt) {
  const std::string id = Submit();
  ASSERT_TRUE(FranceHolds(id, 0));
  ASSERT_EQ(Verify("JP").code, 0);

  net_->Stop("JP");
  ASSERT_THAT(net_->FlipStoredByte("JP", "requests", "request_envelope", Where(id),
                                   "ransomware"),
              IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());

  CliResult verify = Verify("JP");
  EXPECT_NE(verify.code, 0) << verify.out;
  EXPECT_THAT(verify.out, HasSubstr("request " + id));
  EXPECT_THAT(verify.out, HasSubstr("REQUEST_RECEIVED"));
  EXPECT_THAT(verify.out, Not(HasSubstr("consistent")));

  // Deciding on it is refused here, and said why, rather than signed and
  // refused by FR ("deliver the earlier steps first") for ever.
  CliResult ack = Jp({"ack", id});
  EXPECT_NE(ack.code, 0) << ack.out;
  EXPECT_THAT(ack.err, HasSubstr("DATA_LOSS"));
  EXPECT_THAT(ack.err, HasSubstr(id));
  EXPECT_EQ(Record("JP", id).transitions_size(), 0);
  CliResult refused = Cli({"--connect", net_->ClientConfigPath("JP", "carol"), "audit", "log",
                           "--type", "OPERATOR_REQUEST_REFUSED"});
  EXPECT_THAT(refused.out, HasSubstr("does not verify"));
}

TEST_F(StorageFaultsE2eTest, AChangedReceiptIsNamed) {
  const std::string id = Submit();
  ASSERT_TRUE(FranceHolds(id, 0));
  ASSERT_EQ(Verify("FR").code, 0);

  net_->Stop("FR");
  ASSERT_THAT(net_->FlipStoredByte("FR", "requests", "receipt_envelope", Where(id)), IsOk());
  ASSERT_THAT(net_->Start("FR"), IsOk());

  CliResult verify = Verify("FR");
  EXPECT_NE(verify.code, 0) << verify.out;
  EXPECT_THAT(verify.out, HasSubstr("request " + id));
  EXPECT_THAT(verify.out, HasSubstr("receipt"));
}

// The receiver's own receipt carries no signature (version 3): a changed
// byte anywhere in it, in its statement as in its proof, is named, and the
// receiver signs nothing that depends on it.
TEST_F(StorageFaultsE2eTest, AChangedReceiptOnTheReceiverIsNamedAndNothingIsSignedOnIt) {
  // The first occurrence of the library's version is in the statement; the
  // middle byte is in the entry or the proof. A network each, as verify
  // names the first damage it meets.
  for (const bool in_statement : {true, false}) {
    if (!in_statement) {
      net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
      ASSERT_THAT(net_->Start("FR"), IsOk());
      ASSERT_THAT(net_->Start("JP"), IsOk());
    }
    const std::string id = Submit();
    ASSERT_TRUE(FranceHolds(id, 0));
    ASSERT_EQ(Verify("JP").code, 0);
    v1::Receipt receipt;
    ASSERT_TRUE(ParseReceipt(Record("JP", id).receipt(), &receipt));
    const std::string needle =
        in_statement ? receipt.receiver_assessment().library_version() : "";
    ASSERT_TRUE(!in_statement || !needle.empty());

    net_->Stop("JP");
    ASSERT_THAT(net_->FlipStoredByte("JP", "requests", "receipt_envelope", Where(id), needle),
                IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());

    CliResult verify = Verify("JP");
    EXPECT_NE(verify.code, 0) << verify.out;
    EXPECT_THAT(verify.out, HasSubstr("request " + id)) << in_statement;
    EXPECT_THAT(verify.out, HasSubstr("receipt")) << in_statement;

    CliResult ack = Jp({"ack", id});
    EXPECT_NE(ack.code, 0) << ack.out;
    EXPECT_THAT(ack.err, HasSubstr("DATA_LOSS")) << in_statement;
    EXPECT_THAT(ack.err, HasSubstr("receipt")) << in_statement;
    EXPECT_EQ(Record("JP", id).transitions_size(), 0);
  }
}

TEST_F(StorageFaultsE2eTest, AChangedStepIsNamedOnBothSides) {
  const std::string id = Submit();
  ASSERT_TRUE(FranceHolds(id, 0));
  ASSERT_EQ(Jp({"ack", id}).code, 0);
  ASSERT_TRUE(FranceHolds(id, 1));
  ASSERT_EQ(Verify("FR").code, 0);
  ASSERT_EQ(Verify("JP").code, 0);

  for (const char* party : {"FR", "JP"}) {
    net_->Stop(party);
    ASSERT_THAT(net_->FlipStoredByte(party, "transitions", "envelope", Where(id)), IsOk());
    ASSERT_THAT(net_->Start(party), IsOk());
    CliResult verify = Verify(party);
    EXPECT_NE(verify.code, 0) << party << ": " << verify.out;
    EXPECT_THAT(verify.out, HasSubstr("request " + id)) << party;
    EXPECT_THAT(verify.out, HasSubstr("step 1")) << party;
  }
  // JP does not chain a new step onto the damaged one.
  CliResult review = Jp({"review", id});
  EXPECT_NE(review.code, 0) << review.out;
  EXPECT_THAT(review.err, HasSubstr("DATA_LOSS"));
  EXPECT_THAT(review.err, HasSubstr("step 1"));
  EXPECT_EQ(Record("JP", id).transitions_size(), 1);
}

TEST_F(StorageFaultsE2eTest, ADeletedRequestRowIsNamed) {
  const std::string id = Submit();
  ASSERT_TRUE(FranceHolds(id, 0));
  net_->Stop("JP");
  // Deleting is a change too: the log says the request was received.
  ASSERT_THAT(net_->ExecSql("JP", "DELETE FROM requests WHERE " + Where(id)), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  CliResult verify = Verify("JP");
  EXPECT_NE(verify.code, 0) << verify.out;
  EXPECT_THAT(verify.out, HasSubstr(id));
}

// The page size and the root page of `table`, read from the file.
void PageOf(const std::string& path, const std::string& table, int64_t* page_size,
            int64_t* root) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  *page_size = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT rootpage FROM sqlite_schema WHERE name = ?1", -1,
                               &stmt, nullptr),
            SQLITE_OK);
  sqlite3_bind_text(stmt, 1, table.c_str(), -1, SQLITE_TRANSIENT);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  *root = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(StorageFaultsE2eTest, ADamagedPageStopsTheNodeAtStartAndLeavesTheFile) {
  const std::string path = net_->SqlitePath("JP");
  if (path.empty()) GTEST_SKIP() << "a damaged page is SQLite's (PostgreSQL: docs/storage.md)";
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(Submit());
  ASSERT_TRUE(FranceHolds(ids.back(), 0));
  net_->Stop("JP");
  ASSERT_NE(::access((path + "-wal").c_str(), F_OK), 0) << "the WAL was checkpointed at close";

  // The b-tree page of the requests table (its root): its header and cell
  // pointers overwritten, as a torn or misdirected write would leave them.
  int64_t page_size = 0, root = 0;
  PageOf(path, "requests", &page_size, &root);
  ASSERT_GT(root, 1);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekp((root - 1) * page_size);
    const std::string garbage(64, '\x5a');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto before = ReadFile(path);
  ASSERT_THAT(before, IsOk());

  absl::Status started = net_->Start("JP");
  EXPECT_FALSE(started.ok());
  EXPECT_EQ(started.code(), absl::StatusCode::kDataLoss) << started;
  EXPECT_THAT(started.message(), HasSubstr(path));
  EXPECT_THAT(started.message(), HasSubstr("docs/backup.md"));
  // Nothing lost: the file is as it was.
  auto after = ReadFile(path);
  ASSERT_THAT(after, IsOk());
  EXPECT_TRUE(*before == *after) << "the damaged file was modified";
}

}  // namespace
}  // namespace comity
