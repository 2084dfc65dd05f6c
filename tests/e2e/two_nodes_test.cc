// End to end: real comity nodes (in-process), real gRPC, real mutual TLS on
// loopback, real SQLite files, credentials made by certs/make-network.sh.
#include <grpcpp/grpcpp.h>

#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "client/cli.h"
#include "comity/v1/peer.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/audit/receipt.h"
#include "server/crypto/random.h"
#include "server/util/files.h"
#include "server/util/log.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::google::protobuf::util::TimeUtil;
using ::testing::HasSubstr;
using ::testing::Not;

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::LogCapture;
using ::comity::testing::ParseJson;

class TwoNodesTest : public ::testing::Test {
 protected:
  // A fresh network per test: nothing one test stores can affect another.
  void SetUp() override {
    net_ = new testing::TestNetwork({"FR", "JP", "DE"});
    // A party nobody trusts, with its own CA.
    outsider_ = new testing::TempDir();
    ASSERT_EQ(testing::RunShell(absl::StrCat(testing::SourceDir(), "/certs/make-network.sh '",
                                             outsider_->path(), "' GB >/dev/null")),
              0);
    // Certificates issued by FR's CA that claim to be someone else.
    for (const char* claim : {"GB", "DE"}) {
      std::string base = absl::StrCat(net_->PartyDir("FR"), "/forged-", claim);
      std::string cmd = absl::StrCat(
          "set -e; cd '", net_->PartyDir("FR"), "'; umask 077; ",
          "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ", base,
          ".key 2>/dev/null; openssl req -new -key ", base, ".key -subj /CN=forged -out ", base,
          ".csr 2>/dev/null; printf 'subjectAltName=URI:urn:comity:party:", claim,
          "\\nextendedKeyUsage=clientAuth\\n' > ", base, ".ext; ",
          "openssl x509 -req -in ", base, ".csr -CA ca.pem -CAkey ca.key -CAcreateserial ",
          "-days 2 -extfile ", base, ".ext -out ", base, ".pem 2>/dev/null");
      ASSERT_EQ(testing::RunShell(cmd), 0) << cmd;
    }
      ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
  }
  void TearDown() override {
    delete net_;
    delete outsider_;
    net_ = nullptr;
    outsider_ = nullptr;
  }

  // A PeerService stub to JP's peer listener presenting the given
  // certificate and key.
  std::unique_ptr<v1::PeerService::Stub> PeerStub(const std::string& cert_path,
                                                  const std::string& key_path,
                                                  const std::string& to = "JP") {
    grpc::SslCredentialsOptions opts;
    opts.pem_root_certs = *ReadFile(net_->PartyDir(to) + "/ca.pem");
    opts.pem_cert_chain = *ReadFile(cert_path);
    opts.pem_private_key = *ReadFile(key_path);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(64 << 20);
    return v1::PeerService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", net_->peer_port(to)), grpc::SslCredentials(opts), args));
  }
  std::unique_ptr<v1::PeerService::Stub> NodeStub(const std::string& from) {
    return PeerStub(net_->PartyDir(from) + "/node.pem", net_->PartyDir(from) + "/node.key");
  }

  static v1::RequestBody Body(const std::string& from = "FR", const std::string& to = "JP",
                              absl::Time created = absl::Now()) {
    v1::RequestBody b;
    b.set_id(RandomUuid());
    b.set_requesting_party(from);
    b.set_requested_party(to);
    *b.mutable_created_at() = TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(created));
    b.set_assistance_type(v1::PRESERVATION);
    b.mutable_offence()->set_category(v1::DATA_INTERFERENCE);
    b.set_urgency(v1::URGENT);
    b.mutable_particulars()->set_requesting_authority("Parquet de Paris");
    b.mutable_particulars()->set_facts_summary("ransomware on a hospital network");
    return b;
  }

  v1::SignedEnvelope Sign(const v1::RequestBody& body, const std::string& as = "FR") {
    auto key = SigningKeyOf(as);
    auto env = SignEnvelope(kRequestPayloadType, body.SerializeAsString(), as, as + "-1", *key);
    EXPECT_THAT(env, IsOk());
    return *env;
  }

  std::unique_ptr<SigningKey> SigningKeyOf(const std::string& party) {
    auto pem = ReadFile(net_->PartyDir(party) + "/signing.key");
    EXPECT_THAT(pem, IsOk());
    auto key = SigningKey::FromPem(*pem);
    EXPECT_THAT(key, IsOk());
    return *std::move(key);
  }

  grpc::Status Deliver(v1::PeerService::Stub* stub, const v1::SignedEnvelope& env,
                       v1::SignedEnvelope* receipt = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::DeliverRequestRequest req;
    *req.mutable_request() = env;
    v1::DeliverRequestResponse resp;
    grpc::Status status = stub->DeliverRequest(&ctx, req, &resp);
    if (receipt != nullptr) *receipt = resp.receipt();
    return status;
  }

  size_t ReceivedCount(const std::string& party = "JP") {
    auto list = net_->server(party)->node()->List(v1::INCOMING, 1000);
    EXPECT_THAT(list, IsOk());
    return list.ok() ? list->size() : 0;
  }

  // Polls until `party` holds `id` in state `state` (max ~15 s).
  bool WaitForState(const std::string& party, const std::string& id, v1::RequestState state) {
    for (int i = 0; i < 300; ++i) {
      auto records = net_->server(party)->node()->Get(id);
      if (records.ok()) {
        for (const auto& r : *records) {
          if (r.state() == state) return true;
        }
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  static testing::TestNetwork* net_;
  static testing::TempDir* outsider_;
};
testing::TestNetwork* TwoNodesTest::net_ = nullptr;
testing::TempDir* TwoNodesTest::outsider_ = nullptr;

std::vector<std::string> SubmitArgs(const std::string& connect) {
  return {"--connect", connect, "submit", "--to", "JP", "--type", "PRESERVATION",
          "--offence", "DATA_INTERFERENCE", "--authority", "Parquet de Paris",
          "--facts", "ransomware", "--data-sought", "connection logs of 203.0.113.7",
          "--relation", "C2 server", "--custodian", "Example Hosting KK",
          "--necessity", "logs rotate after 14 days", "--intent-mla", "--tlp", "amber",
          "--json"};
}

TEST_F(TwoNodesTest, RequestFromFrToJpIsStoredByBothWithAVerifiedReceipt) {
  LogCapture logs;
  CliResult submit = Cli(SubmitArgs(net_->ClientConfigPath("FR", "alice")));
  ASSERT_EQ(submit.code, 0) << submit.err << submit.out;
  google::protobuf::Struct json = ParseJson(submit.out);
  const auto& f = json.fields();
  std::string id = f.at("id").string_value();
  EXPECT_EQ(f.at("state").string_value(), "DELIVERED");
  EXPECT_EQ(f.at("submitted_by").string_value(), "alice");
  const auto& verification = f.at("verification").struct_value().fields();
  EXPECT_TRUE(verification.at("signature").struct_value().fields().at("verified").bool_value());
  EXPECT_TRUE(verification.at("receipt").struct_value().fields().at("verified").bool_value());
  // Both sides assessed it under the treaty library, and agree.
  EXPECT_EQ(f.at("obligation").string_value(), "BINDING");
  EXPECT_EQ(f.at("instrument").string_value(), "ETS185");
  EXPECT_TRUE(verification.at("assessments_agree").bool_value());
  EXPECT_EQ(verification.at("receipt").struct_value().fields().at("receiver_assessment")
                .struct_value().fields().at("obligation").string_value(),
            "BINDING");

  // Both nodes hold it; the receipts are the same bytes and verify.
  COMITY_ASSERT_OK_AND_ASSIGN(auto sent, net_->server("FR")->node()->Get(id));
  COMITY_ASSERT_OK_AND_ASSIGN(auto received, net_->server("JP")->node()->Get(id));
  ASSERT_EQ(sent.size(), 1u);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(sent[0].state(), v1::DELIVERED);
  EXPECT_EQ(received[0].state(), v1::RECEIVED);
  EXPECT_EQ(sent[0].request().SerializeAsString(), received[0].request().SerializeAsString());
  EXPECT_EQ(sent[0].receipt().SerializeAsString(), received[0].receipt().SerializeAsString());
  EXPECT_THAT(VerifyReceipt(sent[0].request(), sent[0].receipt(), "JP",
                            net_->setup("FR").key_ring),
              IsOk());
  EXPECT_TRUE(logs.Contains("request_received", id)) << logs.All();
  EXPECT_TRUE(logs.Contains("request_delivered", id)) << logs.All();

  // JP's operator sees it, verified.
  std::string jp = net_->ClientConfigPath("JP", "bob");
  CliResult list = Cli({"--connect", jp, "list", "--received"});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr(id));
  EXPECT_THAT(list.out, HasSubstr("CASE_DELIVERED"));
  CliResult show = Cli({"--connect", jp, "show", id});
  EXPECT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("signature: FR key FR-1: verified"));
  EXPECT_THAT(show.out, HasSubstr("receipt:   JP key JP-1: verified"));
  EXPECT_THAT(show.out, HasSubstr("assessment FR: BINDING under ETS185"));
  EXPECT_THAT(show.out, HasSubstr("assessment JP: BINDING under ETS185"));
  EXPECT_THAT(show.out, ::testing::Not(HasSubstr("DISAGREEMENT")));
  CliResult show_json = Cli({"--connect", jp, "show", id, "--json"});
  EXPECT_EQ(show_json.code, 0) << show_json.err;
  EXPECT_EQ(ParseJson(show_json.out).fields().at("body").struct_value().fields().at(
                "requested_party").string_value(),
            "JP");
  CliResult missing = Cli({"--connect", jp, "show", "0f8fad5b-d9cb-469f-a165-70867728950e"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND"));
}

TEST_F(TwoNodesTest, SameBytesGetTheSameReceipt) {
  auto stub = NodeStub("FR");
  v1::SignedEnvelope env = Sign(Body());
  v1::SignedEnvelope first, second;
  ASSERT_TRUE(Deliver(stub.get(), env, &first).ok());
  ASSERT_TRUE(Deliver(stub.get(), env, &second).ok());
  EXPECT_EQ(first.SerializeAsString(), second.SerializeAsString());
  EXPECT_EQ(ReceivedCount(), 1u);
}

// Each hostile input: the status, a log line, and nothing stored.
TEST_F(TwoNodesTest, HostileRequestsAreRefusedLoggedAndNotStored) {
  LogCapture logs;
  auto fr = NodeStub("FR");
  struct Case {
    std::string name;
    std::function<grpc::Status()> send;
    grpc::StatusCode code;
    std::string message;
  };
  std::string fr_dir = net_->PartyDir("FR");
  v1::RequestBody replayed = Body();
  ASSERT_TRUE(Deliver(fr.get(), Sign(replayed)).ok());
  const size_t baseline = ReceivedCount();

  std::vector<Case> cases = {
      {"tampered signature",
       [&] {
         auto env = Sign(Body());
         (*env.mutable_signature())[5] ^= 1;
         return Deliver(fr.get(), env);
       },
       grpc::StatusCode::UNAUTHENTICATED, "does not verify"},
      {"tampered payload",
       [&] {
         auto env = Sign(Body());
         env.mutable_payload()->back() ^= 1;
         return Deliver(fr.get(), env);
       },
       grpc::StatusCode::UNAUTHENTICATED, "does not verify"},
      {"signed by another party than the TLS peer",
       [&] { return Deliver(fr.get(), Sign(Body("DE", "JP"), "DE")); },
       grpc::StatusCode::PERMISSION_DENIED, "TLS peer is FR"},
      {"certificate of an unconfigured party",
       [&] {
         auto stub = PeerStub(fr_dir + "/forged-GB.pem", fr_dir + "/forged-GB.key");
         return Deliver(stub.get(), Sign(Body()));
       },
       grpc::StatusCode::PERMISSION_DENIED, "not a configured peer"},
      {"certificate for DE issued by FR's CA",
       [&] {
         auto stub = PeerStub(fr_dir + "/forged-DE.pem", fr_dir + "/forged-DE.key");
         return Deliver(stub.get(), Sign(Body("DE", "JP"), "DE"));
       },
       grpc::StatusCode::PERMISSION_DENIED, "not issued by the CA configured"},
      {"operator certificate on the peer listener",
       [&] {
         auto stub = PeerStub(fr_dir + "/operators/alice.pem", fr_dir + "/operators/alice.key");
         return Deliver(stub.get(), Sign(Body()));
       },
       grpc::StatusCode::PERMISSION_DENIED, "operator certificate"},
      {"addressed to a third party",
       [&] { return Deliver(fr.get(), Sign(Body("FR", "DE"))); },
       grpc::StatusCode::INVALID_ARGUMENT, "addressed to 'DE'"},
      {"same id, different bytes",
       [&] {
         v1::RequestBody b = replayed;
         b.mutable_particulars()->set_facts_summary("changed");
         return Deliver(fr.get(), Sign(b));
       },
       grpc::StatusCode::ALREADY_EXISTS, "different content"},
      {"created_at an hour ahead",
       [&] { return Deliver(fr.get(), Sign(Body("FR", "JP", absl::Now() + absl::Hours(1)))); },
       grpc::StatusCode::FAILED_PRECONDITION, "later than this node's clock"},
      {"payload that is not a request",
       [&] {
         auto env = SignEnvelope(kRequestPayloadType, std::string("\xff\xff\xff", 3), "FR",
                                 "FR-1", *SigningKeyOf("FR"));
         return Deliver(fr.get(), *env);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "not a comity.v1.RequestBody"},
      {"structurally invalid request",
       [&] {
         v1::RequestBody b = Body();
         b.mutable_offence()->set_category(v1::OTHER);
         return Deliver(fr.get(), Sign(b));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "offence.description"},
      {"oversized (2 MiB against a 1 MiB limit)",
       [&] {
         v1::RequestBody b = Body();
         b.mutable_particulars()->set_facts_summary(std::string(2 << 20, 'x'));
         return Deliver(fr.get(), Sign(b));
       },
       grpc::StatusCode::RESOURCE_EXHAUSTED, "limit"},
  };
  for (const Case& c : cases) {
    grpc::Status status = c.send();
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.name;
    EXPECT_TRUE(logs.Contains("peer_request_rejected", c.message)) << c.name << "\n"
                                                                   << logs.All();
    EXPECT_EQ(ReceivedCount(), baseline) << c.name;
  }

  // Far over any limit: gRPC itself refuses it before our handler.
  v1::RequestBody huge = Body();
  huge.mutable_particulars()->set_facts_summary(std::string(5 << 20, 'x'));
  EXPECT_EQ(Deliver(fr.get(), Sign(huge)).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // A certificate from a CA nobody configured: the TLS handshake fails.
  auto outsider = PeerStub(outsider_->path() + "/GB/node.pem", outsider_->path() + "/GB/node.key");
  EXPECT_EQ(Deliver(outsider.get(), Sign(Body())).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(ReceivedCount(), baseline);
}

TEST_F(TwoNodesTest, OperatorsMustPresentTheirNodesOperatorCertificates) {
  LogCapture logs;
  // FR's node certificate is issued by FR's CA but is not an operator's.
  std::string path = net_->PartyDir("FR") + "/node-as-operator.conf";
  ASSERT_THAT(WriteFileAtomically(path,
                                  absl::StrCat("address: \"127.0.0.1:", net_->operator_port("FR"),
                                               "\"\nca_file: \"ca.pem\"\ncert_file: "
                                               "\"node.pem\"\nkey_file: \"node.key\"\n"),
                                  0600),
              IsOk());
  CliResult denied = Cli({"--connect", path, "list"});
  EXPECT_EQ(denied.code, 1);
  EXPECT_THAT(denied.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_TRUE(logs.Contains("operator_denied", "not an operator certificate")) << logs.All();

  // JP's operator cannot reach FR's operator listener at all.
  std::string cross = net_->PartyDir("JP") + "/cross.conf";
  ASSERT_THAT(WriteFileAtomically(cross,
                                  absl::StrCat("address: \"127.0.0.1:", net_->operator_port("FR"),
                                               "\"\nca_file: \"../FR/ca.pem\"\ncert_file: "
                                               "\"operators/alice.pem\"\nkey_file: "
                                               "\"operators/alice.key\"\n"),
                                  0600),
              IsOk());
  CliResult cross_result = Cli({"--connect", cross, "list"});
  EXPECT_EQ(cross_result.code, kExitUnreachable);
  EXPECT_THAT(cross_result.err, HasSubstr("cannot reach the node"));
}

TEST_F(TwoNodesTest, DeliveryRetriesUntilThePeerComesBack) {
  net_->Stop("JP");
  CliResult submit = Cli(SubmitArgs(net_->ClientConfigPath("FR", "alice")));
  ASSERT_EQ(submit.code, 0) << submit.err;
  google::protobuf::Struct json = ParseJson(submit.out);
  std::string id = json.fields().at("id").string_value();
  EXPECT_EQ(json.fields().at("state").string_value(), "PENDING_DELIVERY");
  EXPECT_THAT(json.fields().at("last_error").string_value(), HasSubstr("UNAVAILABLE"));

  // comity peers tells why: JP unreachable, one request queued for it.
  CliResult peers = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "peers", "--json"});
  ASSERT_EQ(peers.code, 0) << peers.err;
  bool seen_jp = false;
  for (absl::string_view line : {absl::string_view(peers.out)}) {
    google::protobuf::Struct wrapper;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                    absl::StrCat("{\"p\":", line, "}"), &wrapper)
                    .ok());
    for (const auto& v : wrapper.fields().at("p").list_value().values()) {
      const auto& f = v.struct_value().fields();
      if (f.at("party").string_value() != "JP") continue;
      seen_jp = true;
      EXPECT_FALSE(f.at("reachable").bool_value());
      EXPECT_EQ(f.at("requests_queued").number_value(), 1);
      EXPECT_THAT(f.at("last_error").string_value(), HasSubstr("UNAVAILABLE"));
    }
  }
  EXPECT_TRUE(seen_jp) << peers.out;

  // FR restarts too: the request was stored before delivery, so it survives.
  net_->Stop("FR");
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_THAT(net_->Start("JP"), IsOk());
  EXPECT_TRUE(WaitForState("FR", id, v1::DELIVERED));
  EXPECT_TRUE(WaitForState("JP", id, v1::RECEIVED));
  COMITY_ASSERT_OK_AND_ASSIGN(auto sent, net_->server("FR")->node()->Get(id));
  EXPECT_GE(sent[0].delivery_attempts(), 2u);
  CliResult after = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "peers"});
  EXPECT_THAT(after.out, HasSubstr("JP  127.0.0.1:"));
  EXPECT_THAT(after.out, HasSubstr("reachable  queued: 0 requests, 0 case steps"));
  EXPECT_THAT(VerifyReceipt(sent[0].request(), sent[0].receipt(), "JP",
                            net_->setup("FR").key_ring),
              IsOk());
}

TEST_F(TwoNodesTest, AClockTwoDaysBehindIsRetriedNotRejected) {
  // FR's clock is two days behind: JP accepts the old-looking request, but
  // FR cannot accept a receipt dated two days ahead of its clock. A fault
  // that clears when the clock is fixed: FR keeps the request, retries,
  // and says why.
  FakeClock behind(absl::Now() - absl::Hours(48));
  ASSERT_THAT(net_->Start("FR", &behind), IsOk());
  CliResult submit = Cli(SubmitArgs(net_->ClientConfigPath("FR", "alice")));
  ASSERT_EQ(submit.code, 0) << submit.err;
  google::protobuf::Struct json = ParseJson(submit.out);
  EXPECT_EQ(json.fields().at("state").string_value(), "PENDING_DELIVERY");
  EXPECT_THAT(json.fields().at("last_error").string_value(),
              HasSubstr("later than this node's clock"));
  EXPECT_EQ(json.fields().count("next_attempt_at"), 1u);
  EXPECT_EQ(ReceivedCount(), 1u);
  net_->Stop("FR");  // Before `behind` goes away.
}

TEST_F(TwoNodesTest, InvalidRequestIsNotSent) {
  // A preservation request without the intent to follow with a mutual
  // assistance request does not meet ETS185 Art 29(2)(f).
  auto args = SubmitArgs(net_->ClientConfigPath("FR", "alice"));
  args.erase(std::find(args.begin(), args.end(), "--intent-mla"));
  CliResult submit = Cli(args);
  EXPECT_EQ(submit.code, 1);
  EXPECT_THAT(submit.err, HasSubstr("INVALID under ETS185 (ETS185 Art 29(2)(f))"));
  // Named by the flag that sets it and its article, once, without the
  // instrument's commentary (issue 15, item 2).
  EXPECT_THAT(submit.err, HasSubstr("missing --intent-mla (particulars.intends_mutual_assistance_"
                                    "request): ETS185 Art 29(2)(f)"));
  EXPECT_THAT(submit.err, Not(HasSubstr("Art 29(5)")));
  EXPECT_THAT(submit.err, HasSubstr("nothing was sent"));
  // Two missing fields under one article are each named once.
  auto two = SubmitArgs(net_->ClientConfigPath("FR", "alice"));
  for (const char* flag : {"--data-sought", "--relation"}) {
    auto it = std::find(two.begin(), two.end(), flag);
    ASSERT_NE(it, two.end()) << flag;
    two.erase(it, it + 2);
  }
  CliResult both = Cli(two);
  EXPECT_EQ(both.code, 1);
  EXPECT_THAT(both.err, HasSubstr("missing --data-sought (particulars.data_sought): ETS185 Art "
                                  "29(2)(c)"));
  EXPECT_THAT(both.err, HasSubstr("; --relation (particulars.relation_to_offence): ETS185 Art "
                                  "29(2)(c)"));
  EXPECT_EQ(both.err.find("--data-sought"), both.err.rfind("--data-sought")) << both.err;
  EXPECT_THAT(net_->server("FR")->node()->List(v1::OUTGOING, 10), IsOkAndHolds(::testing::IsEmpty()));
  EXPECT_EQ(ReceivedCount(), 0u);
}

TEST_F(TwoNodesTest, DisagreementBetweenAssessmentsIsShownToBoth) {
  LogCapture logs;
  // JP runs a library in which it shares nothing with FR but a declaration.
  testing::TempDir lib;
  ASSERT_THAT(WriteFileAtomically(lib.path() + "/decl.textproto",
                                  "id: \"DECL\" kind: POLITICAL_DECLARATION\n"
                                  "parties { party: \"FR\" signed: \"2015-12-30\" }\n"
                                  "parties { party: \"JP\" signed: \"2015-12-30\" }\n",
                                  0644),
              IsOk());
  std::string original = net_->ConfigText("JP");
  net_->ConfigText("JP") = absl::StrReplaceAll(
      original, {{testing::SourceDir() + "/deploy/treaties", lib.path()}});
  absl::Status started = net_->Start("JP");
  net_->ConfigText("JP") = original;
  ASSERT_THAT(started, IsOk());

  CliResult submit = Cli(SubmitArgs(net_->ClientConfigPath("FR", "alice")));
  ASSERT_EQ(submit.code, 0) << submit.err;
  std::string id = ParseJson(submit.out).fields().at("id").string_value();
  CliResult fr = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "show", id});
  EXPECT_THAT(fr.out, HasSubstr("assessment FR: BINDING under ETS185"));
  EXPECT_THAT(fr.out, HasSubstr("assessment JP: VOLUNTARY under DECL"));
  EXPECT_THAT(fr.out, HasSubstr("DISAGREEMENT"));
  CliResult jp = Cli({"--connect", net_->ClientConfigPath("JP", "alice"), "show", id});
  EXPECT_THAT(jp.out, HasSubstr("DISAGREEMENT"));
  EXPECT_TRUE(logs.Contains("assessment_disagreement", "VOLUNTARY under DECL")) << logs.All();
}

std::vector<std::string> ExtraditionArgs(const std::string& connect) {
  return {"--connect", connect, "submit", "--to", "JP", "--type", "EXTRADITION",
          "--offence", "ILLEGAL_ACCESS", "--penalty-months", "60", "--authority",
          "Parquet de Paris", "--facts", "intrusion into a ministry", "--json"};
}

TEST_F(TwoNodesTest, ExtraditionLeavesOnlyWithASecondOperatorsApproval) {
  LogCapture logs;
  std::string alice = net_->ClientConfigPath("FR", "alice");
  std::string bob = net_->ClientConfigPath("FR", "bob");
  CliResult submit = Cli(ExtraditionArgs(alice));
  ASSERT_EQ(submit.code, 0) << submit.err;
  auto json = ParseJson(submit.out);
  std::string id = json.fields().at("id").string_value();
  EXPECT_EQ(json.fields().at("state").string_value(), "AWAITING_APPROVAL");
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(ReceivedCount(), 0u);  // Nothing left the country.

  // Alice may not approve (she lacks the role, and it is her own draft).
  CliResult self = Cli({"--connect", alice, "approve", id});
  EXPECT_EQ(self.code, 1);
  EXPECT_THAT(self.err, HasSubstr("lacks the approver role"));
  CliResult inbox = Cli({"--connect", bob, "inbox"});
  EXPECT_THAT(inbox.out, HasSubstr("next: comity approve " + id));

  CliResult approved = Cli({"--connect", bob, "approve", id, "--json"});
  ASSERT_EQ(approved.code, 0) << approved.err;
  auto approved_json = ParseJson(approved.out);
  EXPECT_EQ(approved_json.fields().at("state").string_value(), "DELIVERED");
  EXPECT_TRUE(WaitForState("JP", id, v1::RECEIVED));
  CliResult again = Cli({"--connect", bob, "approve", id});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr("not a draft awaiting approval"));

  // Both identities are in the audit log.
  CliResult log = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "audit", "log",
                       "--request", id});
  EXPECT_THAT(log.out, HasSubstr("REQUEST_SUBMITTED  operator:alice"));
  EXPECT_THAT(log.out, HasSubstr("REQUEST_APPROVED  operator:bob"));
  EXPECT_THAT(log.out, HasSubstr("submitted by alice, approved by bob"));
}

TEST_F(TwoNodesTest, ASubmitterCannotApproveTheirOwnDraft) {
  // Bob holds the approver role but submits nothing; give the submitter the
  // approver role too, with a certificate made for this test.
  ASSERT_EQ(testing::RunShell(absl::StrCat(
                "cd '", net_->PartyDir("FR"), "' && umask 077 && ",
                "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "
                "operators/erin.key 2>/dev/null && openssl req -new -key operators/erin.key "
                "-subj /CN=erin -out erin.csr 2>/dev/null && printf 'subjectAltName=URI:urn:"
                "comity:operator:FR:erin,URI:urn:comity:role:submitter,URI:urn:comity:role:"
                "approver\\nextendedKeyUsage=clientAuth\\n' > erin.ext && openssl x509 -req -in "
                "erin.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile erin.ext "
                "-out operators/erin.pem 2>/dev/null")),
            0);
  std::string erin = net_->ClientConfigPath("FR", "erin");
  CliResult submit = Cli(ExtraditionArgs(erin));
  ASSERT_EQ(submit.code, 0) << submit.err;
  std::string id = ParseJson(submit.out).fields().at("id").string_value();
  CliResult self = Cli({"--connect", erin, "approve", id});
  EXPECT_EQ(self.code, 1);
  EXPECT_THAT(self.err, HasSubstr("cannot also approve it"));
}

TEST_F(TwoNodesTest, EveryCallChecksTheRoleAndDenialsAreAudited) {
  // dave has no role, carol is an auditor: neither may submit.
  for (const char* who : {"dave", "carol"}) {
    CliResult r = Cli(SubmitArgs(net_->ClientConfigPath("FR", who)));
    EXPECT_EQ(r.code, 1) << who;
    EXPECT_THAT(r.err, HasSubstr("lacks the submitter role")) << who;
  }
  CliResult list = Cli({"--connect", net_->ClientConfigPath("FR", "dave"), "list"});
  EXPECT_EQ(list.code, 1);
  EXPECT_THAT(list.err, HasSubstr("PERMISSION_DENIED"));
  CliResult audit = Cli({"--connect", net_->ClientConfigPath("FR", "bob"), "audit", "verify"});
  EXPECT_EQ(audit.code, 1);
  CliResult failures = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "audit", "log",
                            "--type", "AUTH_FAILURE"});
  EXPECT_THAT(failures.out, HasSubstr("SubmitRequest: operator dave lacks the submitter role"));
  EXPECT_THAT(failures.out, HasSubstr("audit.Verify: operator bob lacks the auditor role"));
}

TEST_F(TwoNodesTest, SubmitErrorsAreClear) {
  std::string fr = net_->ClientConfigPath("FR", "alice");
  auto args = SubmitArgs(fr);
  args[4] = "GB";  // Not a configured peer.
  CliResult unknown = Cli(args);
  EXPECT_EQ(unknown.code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("GB is not a configured peer"));
  args[4] = "FR";
  CliResult self = Cli(args);
  EXPECT_EQ(self.code, 1);
  EXPECT_THAT(self.err, HasSubstr("own party"));
  args[4] = "JP";
  args[6] = "TELEPATHY";
  CliResult bad_type = Cli(args);
  EXPECT_EQ(bad_type.code, 2);
  EXPECT_THAT(bad_type.err, HasSubstr("PRESERVATION"));
  EXPECT_EQ(Cli({"--connect", fr, "list", "--received"}).code, 0);
}

}  // namespace
}  // namespace comity
