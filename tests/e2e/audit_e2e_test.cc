// The audit log end to end: real nodes, real TLS, the comity audit CLI.
#include <grpcpp/grpcpp.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "comity/v1/peer.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/audit/receipt.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::LogCapture;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;

class AuditE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
  }

  std::string Submit() {
    CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "submit", "--to",
                       "JP", "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE",
                       "--authority", "Parquet de Paris", "--facts", "ransomware",
                       "--data-sought", "logs", "--relation", "C2", "--custodian", "Hosting KK",
                       "--necessity", "rotation", "--intent-mla", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  }
  CliResult Audit(const std::string& party, std::vector<std::string> args,
                  const std::string& who = "carol") {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath(party, who), "audit"});
    return Cli(args);
  }
  std::vector<std::string> Types(const CliResult& log_json) {
    std::vector<std::string> types;
    for (absl::string_view line : absl::StrSplit(log_json.out, '\n', absl::SkipEmpty())) {
      types.push_back(ParseJson(std::string(line)).fields().at("type").string_value());
    }
    return types;
  }

  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(AuditE2eTest, EveryStepOfARequestIsLoggedAndProvable) {
  std::string id = Submit();
  // The receipt FR holds carries JP's signed head and a proof of the
  // REQUEST_RECEIVED entry; it verified on delivery, and verifies again.
  COMITY_ASSERT_OK_AND_ASSIGN(auto sent, net_->server("FR")->node()->Get(id));
  auto receipt = VerifyReceipt(sent[0].request(), sent[0].receipt(), "JP",
                               net_->setup("FR").key_ring);
  ASSERT_THAT(receipt, IsOk());
  EXPECT_TRUE(receipt->has_tree_head());

  CliResult fr_log = Audit("FR", {"log", "--request", id, "--json"});
  ASSERT_EQ(fr_log.code, 0) << fr_log.err;
  EXPECT_THAT(Types(fr_log), ::testing::ElementsAre("REQUEST_SUBMITTED", "ASSESSMENT_MADE",
                                                    "DELIVERY_ATTEMPTED",
                                                    "DELIVERY_ACKNOWLEDGED"));
  CliResult jp_log = Audit("JP", {"log", "--request", id, "--json"});
  EXPECT_THAT(Types(jp_log), ::testing::ElementsAre("REQUEST_RECEIVED", "ASSESSMENT_MADE"));
  CliResult started = Audit("FR", {"log", "--type", "NODE_STARTED"});
  EXPECT_THAT(started.out, HasSubstr("treaty library"));

  for (const char* party : {"FR", "JP"}) {
    CliResult verify = Audit(party, {"verify"});
    EXPECT_EQ(verify.code, 0) << verify.err;
    EXPECT_THAT(verify.out, HasSubstr("consistent")) << party;
  }
  CliResult head = Audit("JP", {"head"});
  EXPECT_EQ(head.code, 0) << head.err;
  CliResult prove = Audit("JP", {"prove", "1"});
  EXPECT_EQ(prove.code, 0) << prove.err;
  EXPECT_THAT(prove.out, HasSubstr("inclusion proof verified"));
  CliResult consistency = Audit("JP", {"consistency", "1", "3"});
  EXPECT_EQ(consistency.code, 0) << consistency.err;
  EXPECT_THAT(consistency.out, HasSubstr("consistency proof verified"));

  CliResult stats = Audit("FR", {"stats", "--json"});
  ASSERT_EQ(stats.code, 0) << stats.err;
  auto s = ParseJson(stats.out).fields();
  EXPECT_EQ(s.at("sent_by_partner").struct_value().fields().at("JP").number_value(), 1);
  EXPECT_EQ(s.at("assessments_by_instrument").struct_value().fields().at("ETS185").number_value(),
            1);
  EXPECT_EQ(s.at("acknowledgement_ms").struct_value().fields().at("count").number_value(), 1);
}

TEST_F(AuditE2eTest, OnlyAuditorsMayReadTheLogAndRefusalsAreLogged) {
  CliResult denied = Audit("FR", {"verify"}, "alice");
  EXPECT_EQ(denied.code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(denied.err, HasSubstr("lacks the auditor role"));
  CliResult failures = Audit("FR", {"log", "--type", "AUTH_FAILURE"});
  EXPECT_THAT(failures.out, HasSubstr("audit.Verify: operator alice lacks the auditor role"));
}

// `--actor alice` is operator alice (the log says "operator:alice").
TEST_F(AuditE2eTest, ABareOperatorNameFiltersByThatOperator) {
  const std::string id = Submit();
  CliResult bare = Audit("FR", {"log", "--actor", "alice", "--json"});
  ASSERT_EQ(bare.code, 0) << bare.err;
  EXPECT_THAT(Types(bare), ::testing::Contains("REQUEST_SUBMITTED"));
  for (absl::string_view line : absl::StrSplit(bare.out, '\n', absl::SkipEmpty())) {
    EXPECT_EQ(ParseJson(std::string(line)).fields().at("actor").string_value(), "operator:alice");
  }
  CliResult full = Audit("FR", {"log", "--actor", "operator:alice", "--json"});
  EXPECT_EQ(Types(full), Types(bare));
  CliResult nobody = Audit("FR", {"log", "--actor", "alic"});
  EXPECT_THAT(nobody.out, HasSubstr("(0 of "));
}

TEST_F(AuditE2eTest, ExportedBundleVerifiesOfflineAndTamperingShows) {
  Submit();
  std::string prefix = net_->dir() + "/fr-audit";
  CliResult exported = Audit("FR", {"export", "--out", prefix});
  ASSERT_EQ(exported.code, 0) << exported.err;
  EXPECT_THAT(exported.out, HasSubstr("consistent"));
  // Offline: no --connect, no node.
  CliResult offline = Cli({"audit", "verify", "--bundle", prefix + ".bundle"});
  EXPECT_EQ(offline.code, 0) << offline.err;
  EXPECT_THAT(offline.out, HasSubstr("consistent"));
  // The keys it was checked with, by the fingerprint `comity keys` shows.
  const VerifyingKey* fr1 = net_->server("FR")->node()->key_ring().Find("FR", "FR-1");
  ASSERT_NE(fr1, nullptr);
  EXPECT_THAT(offline.out, HasSubstr("FR FR-1 " + KeyFingerprint(fr1->raw())));
  std::ifstream jsonl(prefix + ".jsonl");
  std::string first;
  std::getline(jsonl, first);
  EXPECT_THAT(first, HasSubstr("NODE_STARTED"));

  auto bytes = ReadFile(prefix + ".bundle");
  ASSERT_THAT(bytes, IsOk());
  v1::AuditBundle bundle;
  ASSERT_TRUE(bundle.ParseFromString(*bytes));
  std::string& entry = (*bundle.mutable_entries(2));
  entry[entry.size() - 1] ^= 0x01;
  ASSERT_THAT(WriteFileAtomically(prefix + ".bundle", bundle.SerializeAsString(), 0600), IsOk());
  CliResult tampered = Cli({"audit", "verify", "--bundle", prefix + ".bundle"});
  EXPECT_EQ(tampered.code, 1);
  EXPECT_THAT(tampered.out, HasSubstr("FAILED"));
  // Named by its index (issue 15): the heads around it bound it.
  EXPECT_THAT(tampered.out, HasSubstr("entry 2 was changed")) << tampered.out;
}

TEST_F(AuditE2eTest, SplitViewIsDetectedAndRaisedOnBothSides) {
  LogCapture logs;
  Submit();  // FR now knows a head of JP's log, from the receipt.
  COMITY_ASSERT_OK_AND_ASSIGN(auto known,
                              net_->server("FR")->node()->store()->audit().LatestPeerHead("JP"));
  ASSERT_TRUE(known.has_value());

  // JP's key signs a second, different head of the same size: a split view.
  auto pem = ReadFile(net_->PartyDir("JP") + "/signing.key");
  ASSERT_THAT(pem, IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(auto jp_key, SigningKey::FromPem(*pem));
  v1::TreeHead forged = known->head;
  forged.set_root_hash(Sha256("a different history"));
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::SignedEnvelope forged_head,
      SignEnvelope(kTreeHeadPayloadType, forged.SerializeAsString(), "JP", "JP-1", *jp_key));

  grpc::SslCredentialsOptions opts;
  opts.pem_root_certs = *ReadFile(net_->PartyDir("FR") + "/ca.pem");
  opts.pem_cert_chain = *ReadFile(net_->PartyDir("JP") + "/node.pem");
  opts.pem_private_key = *ReadFile(net_->PartyDir("JP") + "/node.key");
  auto stub = v1::PeerService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", net_->peer_port("FR")), grpc::SslCredentials(opts)));
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::ExchangeTreeHeadsRequest req;
  *req.mutable_head() = forged_head;
  v1::ExchangeTreeHeadsResponse resp;
  grpc::Status st = stub->ExchangeTreeHeads(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::DATA_LOSS) << st.error_message();
  EXPECT_THAT(st.error_message(), HasSubstr("two different roots"));

  CliResult fr = Audit("FR", {"log", "--type", "SPLIT_VIEW_DETECTED"});
  EXPECT_THAT(fr.out, HasSubstr("JP's log"));
  CliResult jp = Audit("JP", {"log", "--type", "SPLIT_VIEW_DETECTED"});
  EXPECT_THAT(jp.out, HasSubstr("reported by FR"));
  EXPECT_TRUE(logs.Contains("split_view_detected", "\"party\":\"JP\"")) << logs.All();
  // Both logs still verify: the alert is itself an entry.
  EXPECT_EQ(Audit("FR", {"verify"}).code, 0);
}

TEST_F(AuditE2eTest, HeadsAreGossipedAndCheckedOnSchedule) {
  for (const char* p : {"FR", "JP"}) {
    net_->ConfigText(p) += "audit { head_interval_seconds: 1 }\n";
    ASSERT_THAT(net_->Start(p), IsOk());
  }
  Submit();
  Submit();
  // Within a few rounds each node holds a head of the other's current log.
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    auto jp_size = net_->server("JP")->node()->store()->audit().Size();
    auto fr_view = net_->server("FR")->node()->store()->audit().LatestPeerHead("JP");
    auto fr_size = net_->server("FR")->node()->store()->audit().Size();
    auto jp_view = net_->server("JP")->node()->store()->audit().LatestPeerHead("FR");
    seen = jp_size.ok() && fr_view.ok() && fr_view->has_value() && fr_size.ok() &&
           jp_view.ok() && jp_view->has_value() && (*jp_view)->head.tree_size() > 1 &&
           (*fr_view)->head.tree_size() > 1;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(seen);
  EXPECT_THAT(Audit("FR", {"log", "--type", "SPLIT_VIEW_DETECTED"}).out,
              HasSubstr("(0 of"));
}

}  // namespace
}  // namespace comity
