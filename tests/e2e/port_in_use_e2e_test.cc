// A node refuses to start on a listen address another process holds: a
// second comityd on the peer or the operator port of a running one, or a
// socket of another program (with or without SO_REUSEPORT). It exits
// non-zero naming the address, without recording a start in its store, and
// the node that holds the port keeps serving. Real comityd child processes.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/health_cli.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config/node_config.h"
#include "server/store/open_store.h"
#include "server/util/files.h"
#include "tests/testing/comityd_process.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::ComitydProcess;
using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class PortInUseE2eTest : public ::testing::Test {
 protected:
  PortInUseE2eTest() : net_({"FR", "JP"}) {}

  std::string Address(int port) { return absl::StrCat("127.0.0.1:", port); }

  // Writes `party`'s configuration, with each of `moves` (its own listen
  // port -> another port) applied and `extra` appended, to PARTY/node.conf;
  // returns the path.
  std::string WriteConfig(const std::string& party,
                          const std::vector<std::pair<int, int>>& moves = {},
                          const std::string& extra = "") {
    std::string text = net_.ConfigText(party) + extra;
    for (const auto& [from, to] : moves) {
      const std::string before = absl::StrCat("_listen_address: \"", Address(from), "\"");
      EXPECT_THAT(text, HasSubstr(before));
      text = absl::StrReplaceAll(
          text, {{before, absl::StrCat("_listen_address: \"", Address(to), "\"")}});
    }
    const std::string path = net_.PartyDir(party) + "/node.conf";
    EXPECT_THAT(WriteFileAtomically(path, text, 0644), IsOk());
    return path;
  }

  std::unique_ptr<ComitydProcess> Spawn(const std::string& party, const std::string& conf) {
    auto child = ComitydProcess::Spawn(COMITYD_PATH, conf,
                                       net_.PartyDir(party) + "/comityd.log");
    EXPECT_THAT(child.status(), IsOk());
    return child.ok() ? *std::move(child) : nullptr;
  }

  // FR as a comityd of its own, serving on both its ports.
  std::unique_ptr<ComitydProcess> StartFr() {
    std::unique_ptr<ComitydProcess> fr = Spawn("FR", WriteConfig("FR"));
    if (fr == nullptr) return nullptr;
    EXPECT_TRUE(fr->WaitServing(net_.ClientConfigPath("FR", "dave"), absl::Seconds(20)))
        << fr->Log();
    return fr;
  }

  // JP, started with `moves` applied, must exit non-zero and say why.
  void ExpectJpRefusesToStart(const std::vector<std::pair<int, int>>& moves,
                              const std::string& field, int port,
                              const std::string& extra = "") {
    std::unique_ptr<ComitydProcess> jp = Spawn("JP", WriteConfig("JP", moves, extra));
    ASSERT_NE(jp, nullptr);
    // Far more than a start takes; a node that shares the port never exits.
    std::optional<int> code = jp->WaitExit(absl::Seconds(20));
    const std::string log = jp->Log();
    ASSERT_TRUE(code.has_value()) << "JP started on a port in use\n" << log;
    EXPECT_NE(*code, 0) << log;
    EXPECT_THAT(log, HasSubstr(absl::StrCat(field, " ", Address(port),
                                            " is in use by another process")));
    EXPECT_THAT(log, HasSubstr(absl::StrCat("ss -ltnp 'sport = :", port, "'")));
    EXPECT_THAT(log, Not(HasSubstr("\"node_started\"")));
    ExpectNoStartRecorded("JP");
  }

  // Nothing in `party`'s store says that its node started.
  void ExpectNoStartRecorded(const std::string& party) {
    auto setup = LoadNodeConfig(net_.PartyDir(party) + "/node.conf");
    ASSERT_THAT(setup.status(), IsOk());
    auto store = OpenStore((*setup)->config);
    ASSERT_THAT(store.status(), IsOk());
    AuditFilter started;
    started.type = v1::NODE_STARTED;
    EXPECT_THAT((*store)->audit().Entries(started), IsOkAndHolds(IsEmpty()));
  }

  // FR still answers on both of its listeners.
  void ExpectFrServes() {
    const std::string fr = net_.PartyDir("FR");
    const std::string jp = net_.PartyDir("JP");
    // Several connections each: a listener that shares its port with
    // another process gives some of them to the other.
    for (int i = 0; i < 8; ++i) {
      auto op = testing::MtlsChannel(net_.operator_port("FR"), fr + "/ca.pem",
                                     fr + "/operators/dave.pem", fr + "/operators/dave.key");
      EXPECT_THAT(CheckHealth(op, "comity.v1.OperatorService", absl::Seconds(10)),
                  IsOkAndHolds(HealthStatus::kServing));
      auto peer = testing::MtlsChannel(net_.peer_port("FR"), fr + "/ca.pem", jp + "/node.pem",
                                       jp + "/node.key");
      EXPECT_THAT(CheckHealth(peer, "comity.v1.PeerService", absl::Seconds(10)),
                  IsOkAndHolds(HealthStatus::kServing));
    }
  }

  testing::TestNetwork net_;
};

TEST_F(PortInUseE2eTest, SecondNodeOnThePeerPortOfARunningNodeExits) {
  std::unique_ptr<ComitydProcess> fr = StartFr();
  ASSERT_NE(fr, nullptr);
  const int taken = net_.peer_port("FR");
  ExpectJpRefusesToStart({{net_.peer_port("JP"), taken}}, "peer_listen_address", taken);
  ExpectFrServes();
  EXPECT_FALSE(fr->WaitExit(absl::ZeroDuration()).has_value()) << fr->Log();
}

TEST_F(PortInUseE2eTest, SecondNodeOnTheOperatorPortOfARunningNodeExits) {
  std::unique_ptr<ComitydProcess> fr = StartFr();
  ASSERT_NE(fr, nullptr);
  const int taken = net_.operator_port("FR");
  ExpectJpRefusesToStart({{net_.operator_port("JP"), taken}}, "operator_listen_address",
                         taken);
  ExpectFrServes();
  EXPECT_FALSE(fr->WaitExit(absl::ZeroDuration()).has_value()) << fr->Log();
}

TEST_F(PortInUseE2eTest, ASocketOfAnotherProgramKeepsTheNodeFromStarting) {
  for (bool reuse_port : {false, true}) {
    SCOPED_TRACE(reuse_port ? "SO_REUSEPORT" : "plain socket");
    testing::ListeningSocket peer(reuse_port);
    ExpectJpRefusesToStart({{net_.peer_port("JP"), peer.port()}}, "peer_listen_address",
                           peer.port());
    testing::ListeningSocket op(reuse_port);
    ExpectJpRefusesToStart({{net_.operator_port("JP"), op.port()}}, "operator_listen_address",
                           op.port());
    testing::ListeningSocket metrics(reuse_port);
    ExpectJpRefusesToStart({}, "metrics_listen_address", metrics.port(),
                           absl::StrCat("metrics_listen_address: \"", Address(metrics.port()),
                                        "\"\n"));
  }
}

}  // namespace
}  // namespace comity
