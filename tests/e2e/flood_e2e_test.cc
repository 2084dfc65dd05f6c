// Hostile load end to end: a peer that floods a node is refused over its
// rate limit with a clear status, before any signature is checked, and the
// node keeps serving the other peers; the refusals are audited in aggregate
// and the log still verifies.
#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/grpc/grpc_peer_transport.h"
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

constexpr int kFloodCalls = 400;
constexpr int kFloodThreads = 8;

class FloodE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP", "DE"});
    net_->ConfigText("FR") += "limits { peer_rate_per_second: 20 peer_burst: 20 }\n";
    for (const char* p : {"FR", "JP", "DE"}) ASSERT_THAT(net_->Start(p), IsOk());
  }
  std::vector<v1::AuditEntry> FranceLog(v1::AuditEventType type) {
    AuditFilter f;
    f.type = type;
    auto entries = net_->server("FR")->node()->store()->audit().Entries(f);
    EXPECT_THAT(entries.status(), IsOk());
    std::vector<v1::AuditEntry> out;
    for (const std::string& bytes : *entries) {
      v1::AuditEntry e;
      EXPECT_TRUE(e.ParseFromString(bytes));
      out.push_back(std::move(e));
    }
    return out;
  }
  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(FloodE2eTest, AFloodingPeerIsRefusedOverItsLimitWhileOthersAreServed) {
  // JP's node credentials, used by a hostile program: junk envelopes as fast
  // as eight threads can send them. JP's own node is stopped first: its calls
  // to FR (key announcements, gossip, each started when the node starts) count
  // against the same limit, and this test counts the flood's calls exactly.
  // A single gossip call of JP's node during the flood made FR count one
  // rate-limited call more than the flood saw.
  net_->Stop("JP");
  GrpcPeerTransport jp(&net_->setup("JP"));
  v1::SignedEnvelope junk;
  junk.set_payload_type("comity.v1.RequestBody");
  junk.set_payload("not a request");
  junk.set_signer_party("JP");
  junk.set_key_id("JP-1");
  junk.set_signature(std::string(64, 'x'));
  std::atomic<int> next{0}, over_limit{0}, refused_signature{0}, other{0};
  std::vector<std::thread> flood;
  for (int t = 0; t < kFloodThreads; ++t) {
    flood.emplace_back([&] {
      while (next.fetch_add(1) < kFloodCalls) {
        absl::Status st = jp.DeliverRequest("FR", junk, absl::Seconds(5)).status();
        if (absl::IsUnavailable(st) && absl::StrContains(st.message(), "over its rate limit")) {
          ++over_limit;
        } else if (absl::IsUnauthenticated(st)) {
          ++refused_signature;
        } else {
          ++other;
        }
      }
    });
  }
  // Meanwhile DE's requests to FR go through.
  std::vector<std::string> from_de;
  for (int i = 0; i < 5; ++i) {
    CliResult r = Cli({"--connect", net_->ClientConfigPath("DE", "alice"), "submit", "--to", "FR",
                       "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE",
                       "--penalty-months", "60", "--authority", "BKA", "--facts", "botnet",
                       "--data-sought", "logs", "--relation", "C2", "--custodian", "OVH",
                       "--necessity", "rotation", "--intent-mla", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(ParseJson(r.out).fields().at("state").string_value(), "DELIVERED") << r.out;
  }
  for (std::thread& t : flood) t.join();

  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(over_limit.load(), 0);
  EXPECT_GT(refused_signature.load(), 0);  // The burst got through to the checks.
  EXPECT_EQ(over_limit + refused_signature, kFloodCalls);

  // Each call that got through was refused and audited on its own; the
  // calls over the limit are counted in PEER_RATE_LIMITED entries.
  int audited_refusals = 0;
  for (const auto& e : FranceLog(v1::PEER_REQUEST_REFUSED)) {
    if (e.actor() == "peer:JP") ++audited_refusals;
  }
  EXPECT_EQ(audited_refusals, refused_signature.load());
  uint64_t counted = 0;
  for (int i = 0; i < 100 && counted < static_cast<uint64_t>(over_limit.load()); ++i) {
    counted = 0;
    for (const auto& e : FranceLog(v1::PEER_RATE_LIMITED)) {
      EXPECT_EQ(e.party(), "JP");  // Never DE.
      counted += std::stoull(e.detail());
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(counted, static_cast<uint64_t>(over_limit.load()));
  auto verified = net_->server("FR")->node()->witness().Verify();
  ASSERT_THAT(verified.status(), IsOk());
  EXPECT_TRUE(verified->ok) << verified->error;
}

}  // namespace
}  // namespace comity
