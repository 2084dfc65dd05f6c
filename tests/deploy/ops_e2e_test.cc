// Operations, end to end: the standard gRPC health service and server
// reflection on both mutual-TLS listeners (in-process nodes, credentials
// from certs/make-network.sh), `comity health`, and a real comityd (child
// process) that drains a call in flight on SIGTERM and exits 0.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/health_cli.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "gtest/gtest.h"
#include "server/util/files.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/testing/comityd_process.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::MtlsChannel;
using ::comity::testing::StatusIs;
using ::grpc::reflection::v1alpha::ServerReflection;
using ::grpc::reflection::v1alpha::ServerReflectionRequest;
using ::grpc::reflection::v1alpha::ServerReflectionResponse;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// One ServerReflectionInfo exchange: sends `request`, returns the answer.
absl::StatusOr<ServerReflectionResponse> Reflect(const std::shared_ptr<grpc::Channel>& channel,
                                                 const ServerReflectionRequest& request) {
  auto stub = ServerReflection::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  auto stream = stub->ServerReflectionInfo(&ctx);
  ServerReflectionResponse response;
  const bool exchanged = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  grpc::Status status = stream->Finish();
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  if (!exchanged) return absl::InternalError("reflection stream closed without an answer");
  return response;
}

std::vector<std::string> ListServices(const std::shared_ptr<grpc::Channel>& channel) {
  ServerReflectionRequest request;
  request.set_list_services("");
  absl::StatusOr<ServerReflectionResponse> response = Reflect(channel, request);
  EXPECT_THAT(response.status(), IsOk());
  std::vector<std::string> names;
  if (!response.ok()) return names;
  EXPECT_TRUE(response->has_list_services_response()) << response->DebugString();
  for (const auto& s : response->list_services_response().service()) names.push_back(s.name());
  return names;
}

class OpsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
  }

  // FR's operator listener as operator `name` of FR.
  std::shared_ptr<grpc::Channel> OperatorChannel(const std::string& name) {
    const std::string fr = net_->PartyDir("FR");
    return MtlsChannel(net_->operator_port("FR"), fr + "/ca.pem",
                       absl::StrCat(fr, "/operators/", name, ".pem"),
                       absl::StrCat(fr, "/operators/", name, ".key"));
  }
  // FR's peer listener as JP's node.
  std::shared_ptr<grpc::Channel> PeerChannel() {
    const std::string jp = net_->PartyDir("JP");
    return MtlsChannel(net_->peer_port("FR"), net_->PartyDir("FR") + "/ca.pem",
                       jp + "/node.pem", jp + "/node.key");
  }

  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(OpsE2eTest, HealthIsServingOnTheOperatorListenerWithARolelessCertificate) {
  // dave holds an operator certificate without any role: enough for health,
  // nothing else.
  auto channel = OperatorChannel("dave");
  const absl::Duration t = absl::Seconds(10);
  EXPECT_THAT(CheckHealth(channel, "", t), IsOkAndHolds(HealthStatus::kServing));
  EXPECT_THAT(CheckHealth(channel, "comity.v1.OperatorService", t),
              IsOkAndHolds(HealthStatus::kServing));
  EXPECT_THAT(CheckHealth(channel, "comity.v1.AuditService", t),
              IsOkAndHolds(HealthStatus::kServing));
  // The peer service is not on this listener.
  EXPECT_THAT(CheckHealth(channel, "comity.v1.PeerService", t),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(OpsE2eTest, HealthIsServingOnThePeerListenerForAPeerNode) {
  auto channel = PeerChannel();
  const absl::Duration t = absl::Seconds(10);
  EXPECT_THAT(CheckHealth(channel, "", t), IsOkAndHolds(HealthStatus::kServing));
  EXPECT_THAT(CheckHealth(channel, "comity.v1.PeerService", t),
              IsOkAndHolds(HealthStatus::kServing));
  EXPECT_THAT(CheckHealth(channel, "comity.v1.OperatorService", t),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(OpsE2eTest, HealthAndReflectionNeedAClientCertificate) {
  const std::string ca = net_->PartyDir("FR") + "/ca.pem";
  for (int port : {net_->operator_port("FR"), net_->peer_port("FR")}) {
    auto anonymous = MtlsChannel(port, ca);
    EXPECT_THAT(CheckHealth(anonymous, "", absl::Seconds(5)),
                StatusIs(absl::StatusCode::kUnavailable))
        << "port " << port;
    ServerReflectionRequest request;
    request.set_list_services("");
    EXPECT_THAT(Reflect(anonymous, request).status(), StatusIs(absl::StatusCode::kUnavailable))
        << "port " << port;
  }
  // A peer's node certificate does not open the operator listener.
  const std::string jp = net_->PartyDir("JP");
  auto wrong = MtlsChannel(net_->operator_port("FR"), ca, jp + "/node.pem", jp + "/node.key");
  EXPECT_THAT(CheckHealth(wrong, "", absl::Seconds(5)),
              StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(OpsE2eTest, ReflectionListsEachListenersOwnServices) {
  std::vector<std::string> op = ListServices(OperatorChannel("dave"));
  EXPECT_THAT(op, Contains("comity.v1.OperatorService"));
  EXPECT_THAT(op, Contains("comity.v1.AuditService"));
  EXPECT_THAT(op, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(op, Contains("grpc.reflection.v1alpha.ServerReflection"));
  EXPECT_THAT(op, Not(Contains("comity.v1.PeerService")));

  std::vector<std::string> peer = ListServices(PeerChannel());
  EXPECT_THAT(peer, Contains("comity.v1.PeerService"));
  EXPECT_THAT(peer, Contains("grpc.health.v1.Health"));
  EXPECT_THAT(peer, Contains("grpc.reflection.v1alpha.ServerReflection"));
  EXPECT_THAT(peer, Not(Contains("comity.v1.OperatorService")));
  EXPECT_THAT(peer, Not(Contains("comity.v1.AuditService")));
}

TEST_F(OpsE2eTest, ReflectionDescribesThePeerService) {
  ServerReflectionRequest request;
  request.set_file_containing_symbol("comity.v1.PeerService");
  absl::StatusOr<ServerReflectionResponse> response = Reflect(PeerChannel(), request);
  ASSERT_THAT(response.status(), IsOk());
  ASSERT_TRUE(response->has_file_descriptor_response()) << response->DebugString();
  ASSERT_GE(response->file_descriptor_response().file_descriptor_proto_size(), 1);
  google::protobuf::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(response->file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.name(), "comity/v1/peer.proto");
  ASSERT_GE(file.service_size(), 1);
  EXPECT_EQ(file.service(0).name(), "PeerService");
}

TEST_F(OpsE2eTest, CliHealthExitsZeroOnlyWhileTheNodeServes) {
  const std::string conf = net_->ClientConfigPath("FR", "dave");
  CliResult up = Cli({"--connect", conf, "health"});
  EXPECT_EQ(up.code, 0) << up.err;
  EXPECT_THAT(up.out, HasSubstr(": SERVING"));
  CliResult json = Cli({"--connect", conf, "health", "--service", "comity.v1.AuditService",
                        "--json"});
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"status\":\"SERVING\""));
  CliResult unknown = Cli({"--connect", conf, "health", "--service", "comity.v1.Nothing"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("no service 'comity.v1.Nothing'"));

  net_->Stop("FR");
  CliResult down = Cli({"--connect", conf, "health", "--timeout-ms", "2000"});
  EXPECT_EQ(down.code, kExitUnreachable);  // 3 (docs/cli.md).
  EXPECT_THAT(down.err, HasSubstr("cannot reach the node"));
}

TEST_F(OpsE2eTest, SigtermDrainsACallInFlightAndExitsZero) {
  net_->Stop("FR");
  // FR's only peer is a black hole, so the first delivery attempt of a
  // submission, and with it the operator's SubmitRequest call, lasts the
  // whole attempt timeout (2 s in the test network's configuration).
  testing::ListeningSocket hole;
  std::string config = net_->ConfigText("FR");
  config = absl::StrReplaceAll(
      config, {{absl::StrCat("127.0.0.1:", net_->peer_port("JP")),
                absl::StrCat("127.0.0.1:", hole.port())}});
  ASSERT_THAT(config, HasSubstr(absl::StrCat("127.0.0.1:", hole.port())));
  const std::string conf_path = net_->PartyDir("FR") + "/node.conf";
  const std::string log_path = net_->PartyDir("FR") + "/comityd.log";
  ASSERT_THAT(WriteFileAtomically(conf_path, config, 0644), IsOk());

  COMITY_ASSERT_OK_AND_ASSIGN(std::unique_ptr<testing::ComitydProcess> child,
                              testing::ComitydProcess::Spawn(COMITYD_PATH, conf_path, log_path));
  const std::string alice = net_->ClientConfigPath("FR", "alice");
  ASSERT_TRUE(child->WaitServing(alice, absl::Seconds(30))) << child->Log();

  std::future<CliResult> submit = std::async(std::launch::async, [&alice] {
    return Cli({"--connect", alice, "submit", "--to", "JP", "--type", "PRESERVATION",
                "--offence", "DATA_INTERFERENCE", "--penalty-months", "60", "--authority",
                "Parquet de Paris", "--facts", "Ransomware on a hospital network",
                "--data-sought", "Connection logs of 203.0.113.7", "--relation",
                "The server relayed command-and-control traffic", "--custodian",
                "Example Hosting KK", "--necessity", "Logs are rotated after 14 days",
                "--intent-mla", "--tlp", "AMBER"});
  });
  // The request is committed and its first delivery attempt is under way:
  // the call is in flight.
  bool submitted = false;
  for (int i = 0; i < 100 && !submitted; ++i) {
    submitted = ReadFile(log_path).value_or("").find("\"request_submitted\"") !=
                std::string::npos;
    if (!submitted) absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(submitted) << ReadFile(log_path).value_or("");
  ASSERT_EQ(submit.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout)
      << "the submission finished before SIGTERM; nothing was in flight";

  const absl::Time sent = absl::Now();
  child->Signal(SIGTERM);
  std::optional<int> code = child->WaitExit(absl::Seconds(20));
  const absl::Duration took = absl::Now() - sent;
  const std::string log = child->Log();
  ASSERT_TRUE(code.has_value()) << "comityd still running " << took << " after SIGTERM";
  EXPECT_EQ(*code, 0) << log;
  // Within the 10 s drain deadline, with room for a slow machine.
  EXPECT_LT(took, absl::Seconds(12)) << log;

  // The call in flight was allowed to finish, not cancelled.
  CliResult result = submit.get();
  EXPECT_EQ(result.code, 0) << result.err << "\n" << log;
  EXPECT_THAT(result.out, HasSubstr("PENDING_DELIVERY"));
  EXPECT_THAT(log, HasSubstr("\"signal_received\",\"signal\":\"SIGTERM\""));
  EXPECT_THAT(log, HasSubstr("\"shutdown_started\""));
  EXPECT_THAT(log, HasSubstr("\"within_grace\":\"true\""));
  // Nothing reaches a stopped node.
  EXPECT_EQ(Cli({"--connect", alice, "health", "--timeout-ms", "500"}).code, kExitUnreachable);
}

}  // namespace
}  // namespace comity
