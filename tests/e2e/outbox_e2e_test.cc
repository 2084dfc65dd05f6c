// The outbox end to end (docs/delivery.md): a peer that is down gets
// everything when it returns, exactly once and in order; it does not hold up
// deliveries to other peers; the requesting party's own steps (proposals)
// are queued durably like everything else; delivered steps come back with a
// signed acknowledgement.
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
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

class OutboxE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP", "DE"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("DE"), IsOk());
  }
  CliResult Fr(std::vector<std::string> args, const std::string& who = "alice") {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath("FR", who)});
    return Cli(args);
  }
  CliResult Jp(std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath("JP", "bob")});
    return Cli(args);
  }
  // Submits a preservation request from FR; returns its id and state.
  std::pair<std::string, std::string> Submit(const std::string& to) {
    CliResult r = Fr({"submit", "--to", to, "--type", "PRESERVATION", "--offence",
                      "DATA_INTERFERENCE", "--penalty-months", "60", "--authority",
                      "Parquet de Paris", "--facts", "ransomware", "--data-sought", "logs",
                      "--relation", "C2", "--custodian", "Hosting", "--necessity", "rotation",
                      "--intent-mla", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    auto fields = ParseJson(r.out).fields();
    return {fields.at("id").string_value(), fields.at("state").string_value()};
  }
  const v1::RequestRecord* Row(const std::vector<v1::RequestRecord>& rows, v1::Direction d) {
    for (const auto& r : rows) {
      if (r.direction() == d) return &r;
    }
    return nullptr;
  }
  // Waits until `party`'s node holds `id` in a row where `pred` holds.
  template <typename Pred>
  bool Eventually(const std::string& party, const std::string& id, Pred pred) {
    for (int i = 0; i < 300; ++i) {
      auto rows = net_->server(party)->node()->Get(id);
      if (rows.ok()) {
        for (const auto& r : *rows) {
          if (pred(r)) return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  v1::PeerStatus PeerOf(const std::string& party, const std::string& peer) {
    auto peers = net_->server(party)->node()->Peers();
    EXPECT_THAT(peers.status(), IsOk());
    for (const auto& p : *peers) {
      if (p.party() == peer) return p;
    }
    ADD_FAILURE() << "no peer " << peer;
    return {};
  }
  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(OutboxE2eTest, ADownPeerGetsEverythingOnceWhenItReturnsAndDoesNotDelayOthers) {
  // JP has never started: its requests queue up.
  std::vector<std::string> to_jp;
  for (int i = 0; i < 5; ++i) {
    auto [id, state] = Submit("JP");
    EXPECT_EQ(state, "PENDING_DELIVERY");
    to_jp.push_back(id);
  }
  // Meanwhile, DE is served at once: the dead peer has its own lane.
  auto [de_id, de_state] = Submit("DE");
  EXPECT_EQ(de_state, "DELIVERED");

  v1::PeerStatus jp = PeerOf("FR", "JP");
  EXPECT_EQ(jp.requests_queued(), 5u);
  EXPECT_FALSE(jp.reachable());
  EXPECT_GE(jp.consecutive_failures(), 1u);
  EXPECT_THAT(jp.last_error(), HasSubstr("UNAVAILABLE"));
  CliResult peers = Fr({"peers"});
  EXPECT_THAT(peers.out, HasSubstr("queued: 5 requests"));
  EXPECT_THAT(peers.out, HasSubstr("backing off"));

  ASSERT_THAT(net_->Start("JP"), IsOk());
  for (const std::string& id : to_jp) {
    EXPECT_TRUE(Eventually("FR", id, [](const v1::RequestRecord& r) {
      return r.state() == v1::DELIVERED;
    })) << id;
    auto at_jp = net_->server("JP")->node()->Get(id);
    ASSERT_THAT(at_jp.status(), IsOk());
    EXPECT_EQ(at_jp->size(), 1u);  // Once, incoming.
  }
  auto received = net_->server("JP")->node()->List(v1::INCOMING, 100);
  ASSERT_THAT(received.status(), IsOk());
  EXPECT_EQ(received->size(), to_jp.size());
  EXPECT_EQ(PeerOf("FR", "JP").requests_queued(), 0u);
  // The backoff clears with the next call that reaches JP (a call made
  // while JP was still starting, e.g. gossip, may have failed meanwhile).
  for (int i = 0; i < 100 && PeerOf("FR", "JP").next_attempt_unix_micros() != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(PeerOf("FR", "JP").next_attempt_unix_micros(), 0);
  EXPECT_TRUE(PeerOf("FR", "JP").reachable());
}

TEST_F(OutboxE2eTest, AProposalToADownPeerIsQueuedAndAppliedWhenItReturns) {
  ASSERT_THAT(net_->Start("JP"), IsOk());
  auto [id, state] = Submit("JP");
  ASSERT_EQ(state, "DELIVERED");
  ASSERT_TRUE(Eventually("FR", id, [](const v1::RequestRecord& r) {
    return r.case_state() == v1::CASE_DELIVERED;
  }));
  net_->Stop("JP");

  CliResult withdraw = Fr({"withdraw", id, "--text", "suspect arrested"});
  ASSERT_EQ(withdraw.code, 0) << withdraw.err;
  EXPECT_THAT(withdraw.out, HasSubstr("queued for JP"));
  CliResult show = Fr({"show", id});
  EXPECT_THAT(show.out, HasSubstr("queued: WITHDRAW by alice"));
  // One proposal at a time per case: the next step builds on this one.
  CliResult again = Fr({"withdraw", id, "--text", "really"});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr("already has a proposal queued"));
  EXPECT_EQ(PeerOf("FR", "JP").transitions_queued(), 1u);

  // A restart of FR loses nothing: the proposal is in its store.
  net_->Stop("FR");
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  EXPECT_TRUE(Eventually("FR", id, [](const v1::RequestRecord& r) {
    return r.case_state() == v1::CASE_WITHDRAWN && r.queued_proposals_size() == 0;
  }));
  EXPECT_TRUE(Eventually("JP", id, [](const v1::RequestRecord& r) {
    return r.case_state() == v1::CASE_WITHDRAWN;
  }));
  auto fr = net_->server("FR")->node()->Get(id);
  auto jp = net_->server("JP")->node()->Get(id);
  ASSERT_EQ((*fr)[0].transitions_size(), (*jp)[0].transitions_size());
  EXPECT_EQ((*fr)[0].transitions().rbegin()->SerializeAsString(),
            (*jp)[0].transitions().rbegin()->SerializeAsString());
}

TEST_F(OutboxE2eTest, StepsAreAcknowledgedWithASignatureKeptAsProof) {
  ASSERT_THAT(net_->Start("JP"), IsOk());
  auto [id, state] = Submit("JP");
  ASSERT_EQ(state, "DELIVERED");
  net_->Stop("FR");
  ASSERT_EQ(Jp({"ack", id}).code, 0);
  ASSERT_EQ(Jp({"accept", id}).code, 0);
  // Both steps wait for FR, in order.
  EXPECT_EQ(PeerOf("JP", "FR").transitions_queued(), 2u);
  ASSERT_THAT(net_->Start("FR"), IsOk());
  EXPECT_TRUE(Eventually("FR", id, [](const v1::RequestRecord& r) {
    return r.case_state() == v1::CASE_ACCEPTED;
  }));
  for (int i = 0; i < 100 && PeerOf("JP", "FR").transitions_queued() != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(PeerOf("JP", "FR").transitions_queued(), 0u);
  // JP's log records each delivery with the hash of FR's acknowledgement.
  AuditFilter f;
  f.request_id = id;
  f.type = v1::TRANSITION_DELIVERED;
  auto entries = net_->server("JP")->node()->store()->audit().Entries(f);
  ASSERT_THAT(entries.status(), IsOk());
  ASSERT_EQ(entries->size(), 2u);
  for (const std::string& bytes : *entries) {
    v1::AuditEntry e;
    ASSERT_TRUE(e.ParseFromString(bytes));
    EXPECT_EQ(e.hashes_size(), 2) << e.DebugString();  // The step and FR's acknowledgement.
  }
}

}  // namespace
}  // namespace comity
