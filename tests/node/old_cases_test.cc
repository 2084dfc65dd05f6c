// The duties that watch the store reach every case, not the newest 1,000
// (issue 13, fault 7): with 1,001 requests between FR and JP, the oldest,
// stored before the other thousand, is still escalated by JP's deadline
// watch when its acknowledgement is late, and the evidence JP releases for
// it is still fetched by FR. A window over the newest 1,000 requests (by
// stored_at, as ListRequests orders them) leaves exactly that case out.
// Real SQLite stores, the harness's fake clock, two in-process nodes over
// loopback transports.
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/sha256.h"
#include "server/node/case_records.h"
#include "server/util/status_macros.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::LoopbackTransport;
using ::comity::testing::NodeHarness;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr int kNewer = 1000;

class OldCasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fr_transport_ = harness_.Loopback("FR");
    jp_transport_ = harness_.Loopback("JP");
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", fr_transport_.get()));
    COMITY_ASSERT_OK_AND_ASSIGN(jp_, harness_.MakeNode("JP", jp_transport_.get()));
    fr_transport_->Connect("JP", jp_.get());
    jp_transport_->Connect("FR", fr_.get());
  }

  // Submits a request on FR; its id.
  absl::StatusOr<std::string> Submit() {
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord stored,
                            fr_->submission().Submit("alice", NodeHarness::Draft("JP")));
    COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(stored));
    return body.id();
  }

  // Runs `from`'s lane to `to` until nothing more is due.
  void Drain(Node& from, const std::string& to) {
    for (int i = 0; i < 1000; ++i) {
      from.outbox().lane(to)->RunRound([] { return false; });
      OutboxStore& out = from.store()->outbox();
      const absl::Time now = harness_.clock().Now();
      auto t = out.DueTransitions(to, now, 1, absl::InfiniteFuture());
      auto p = out.DueProposals(to, now, 1, absl::InfiniteFuture());
      auto r = out.DueRequests(to, now, 1, absl::InfiniteFuture());
      if (t.ok() && t->empty() && p.ok() && p->empty() && r.ok() && r->empty()) return;
    }
    ADD_FAILURE() << from.party() << "'s lane to " << to << " did not drain";
  }

  std::vector<v1::AuditEntry> Audit(Node& node, v1::AuditEventType type) {
    auto entries = testing::AuditEntriesOf(node, type);
    EXPECT_THAT(entries, IsOk());
    return entries.ok() ? *std::move(entries) : std::vector<v1::AuditEntry>();
  }

  NodeHarness harness_;
  ::comity::testing::TempDir files_dir_;
  std::unique_ptr<LoopbackTransport> fr_transport_;
  std::unique_ptr<LoopbackTransport> jp_transport_;
  std::unique_ptr<Node> fr_;
  std::unique_ptr<Node> jp_;
};

TEST_F(OldCasesTest, TheOldestOfOverAThousandCasesIsEscalatedAndItsEvidenceFetched) {
  // The oldest: stored first on both nodes, an hour before the others.
  COMITY_ASSERT_OK_AND_ASSIGN(const std::string oldest, Submit());
  Drain(*fr_, "JP");
  harness_.clock().Advance(absl::Hours(1));
  for (int i = 0; i < kNewer; ++i) ASSERT_THAT(Submit(), IsOk());
  Drain(*fr_, "JP");
  ListQuery newest;
  newest.direction = v1::INCOMING;
  newest.limit = kNewer;
  COMITY_ASSERT_OK_AND_ASSIGN(RecordPage page, jp_->store()->requests().List(newest));
  ASSERT_THAT(page.records, SizeIs(kNewer));
  ASSERT_FALSE(page.next_cursor.empty()) << "JP holds no more than the newest 1,000";
  for (const v1::RequestRecord& r : page.records) {
    COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestBody body, BodyOf(r));
    ASSERT_NE(body.id(), oldest) << "the oldest is among the newest 1,000";
  }

  // Past the oldest's 72 hours to acknowledge, not the others'.
  harness_.clock().Advance(absl::Hours(71) + absl::Seconds(1));
  jp_->deadlines().Check();
  std::vector<v1::AuditEntry> escalated = Audit(*jp_, v1::CASE_ESCALATED);
  ASSERT_THAT(escalated, SizeIs(1));
  EXPECT_EQ(escalated[0].request_id(), oldest);
  EXPECT_THAT(escalated[0].detail(), StartsWith("ACKNOWLEDGE overdue since"));

  // JP answers the oldest with a file; FR fetches it.
  std::string content = "2026-01-25T10:00:00Z 203.0.113.7 -> 198.51.100.1\n";
  const std::string path = absl::StrCat(files_dir_.path(), "/logs.txt");
  std::ofstream(path, std::ios::binary) << content;
  CaseBook::Decision accept;
  accept.action = v1::ACCEPT;
  ASSERT_THAT(jp_->cases().Decide("bob", oldest, accept), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::EvidenceFile staged,
      testing::StageFile(jp_->evidence_intake(), "bob", oldest, path, "logs.txt"));
  CaseBook::Decision respond;
  respond.action = v1::RESPOND;
  respond.text = "the logs";
  respond.evidence_sha256 = {staged.sha256()};
  ASSERT_THAT(jp_->cases().Decide("bob", oldest, respond), IsOk());
  Drain(*jp_, "FR");
  fr_->evidence().FetchRound("JP", [] { return false; });
  EXPECT_TRUE(fr_->evidence().files().Has(Sha256(content)));
  std::vector<v1::AuditEntry> received = Audit(*fr_, v1::EVIDENCE_RECEIVED);
  ASSERT_THAT(received, SizeIs(1));
  EXPECT_EQ(received[0].request_id(), oldest);
}

}  // namespace
}  // namespace comity
