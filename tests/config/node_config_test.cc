#include "server/config/node_config.h"

#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

class NodeConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { net_ = new testing::TestNetwork({"FR", "JP", "DE"}); }
  static void TearDownTestSuite() {
    delete net_;
    net_ = nullptr;
  }
  absl::StatusOr<std::unique_ptr<NodeSetup>> Parse(const std::string& text) {
    return ParseNodeConfig(text, "fr.conf", net_->PartyDir("FR"));
  }
  std::string Replace(const std::string& from, const std::string& to) {
    std::string text = net_->ConfigText("FR");
    EXPECT_NE(text.find(from), std::string::npos) << from;
    return absl::StrReplaceAll(text, {{from, to}});
  }
  static testing::TestNetwork* net_;
};
testing::TestNetwork* NodeConfigTest::net_ = nullptr;

TEST_F(NodeConfigTest, ValidConfigLoadsWithDefaults) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto setup, Parse(net_->ConfigText("FR")));
  EXPECT_EQ(setup->config.party(), "FR");
  EXPECT_EQ(setup->peers.size(), 2u);
  EXPECT_EQ(setup->config.limits().max_message_bytes(), 1u << 20);
  EXPECT_EQ(setup->replay_window(), absl::Hours(24));
  EXPECT_EQ(setup->config.data_dir(), net_->PartyDir("FR") + "/data");
  EXPECT_NE(setup->key_ring.Find("JP", "JP-1"), nullptr);
  EXPECT_NE(setup->key_ring.Find("FR", "FR-1"), nullptr);
}

TEST_F(NodeConfigTest, ErrorsNameTheFieldAndTheFix) {
  struct Case {
    std::string text;
    absl::StatusCode code;
    std::string field;
    std::string fix;
  };
  const std::string base = net_->ConfigText("FR");
  const Case cases[] = {
      {Replace("party: \"FR\"\n", ""), absl::StatusCode::kInvalidArgument, "party:",
       "is required"},
      {Replace("party: \"FR\"", "party: \"XX\""), absl::StatusCode::kInvalidArgument,
       "party:", "ISO 3166-1"},
      {Replace("peer_listen_address: \"127.0.0.1:", "peer_listen_address: \"127.0.0.1-"),
       absl::StatusCode::kInvalidArgument, "peer_listen_address", "host:port"},
      {Replace("data_dir: \"data\"\n", ""), absl::StatusCode::kInvalidArgument, "data_dir",
       "required"},
      {Replace("cert_file: \"node.pem\"", "cert_file: \"missing.pem\""),
       absl::StatusCode::kNotFound, "tls.cert_file", "missing.pem"},
      {Replace("cert_file: \"node.pem\"", "cert_file: \"../JP/node.pem\""),
       absl::StatusCode::kInvalidArgument, "tls.cert_file", "does not name party FR"},
      {Replace("private_key_file: \"signing.key\"", "private_key_file: \"node.key\""),
       absl::StatusCode::kInvalidArgument, "signing_key.private_key_file", "Ed25519"},
      {Replace("key_id: \"FR-1\"", "key_id: \"\""), absl::StatusCode::kInvalidArgument,
       "signing_key.key_id", "required"},
      {Replace("ed25519_public_key: \"", "ed25519_public_key: \"!!"),
       absl::StatusCode::kInvalidArgument, "peers[0].signing_keys[0].ed25519_public_key",
       "base64"},
      {Replace("party: \"JP\"", "party: \"FR\""), absl::StatusCode::kInvalidArgument,
       "peers[0].party", "own party"},
      {Replace("party: \"JP\"", "party: \"DE\""), absl::StatusCode::kInvalidArgument,
       "peers[1].party", "listed twice"},
      {Replace("party: \"FR\"", "party: \"FR\"\nbogus_field: 1"),
       absl::StatusCode::kInvalidArgument, "fr.conf: line 2", "bogus_field"},
      {Replace("party: \"FR\"", "party: \"FR"), absl::StatusCode::kInvalidArgument,
       "fr.conf: line 1", "NodeConfig"},
      {base + "limits { max_message_bytes: 100 }\n", absl::StatusCode::kInvalidArgument,
       "limits.max_message_bytes", "at least"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(Parse(c.text), StatusIs(c.code, AllOf(HasSubstr(c.field), HasSubstr(c.fix))))
        << c.field;
  }
}

TEST_F(NodeConfigTest, DatabaseIsEmptyOrAPostgresUrl) {
  // The configuration without a database line (TestNetwork adds one when
  // $COMITY_TEST_POSTGRES is set).
  std::string base;
  for (absl::string_view line : absl::StrSplit(net_->ConfigText("FR"), '\n')) {
    if (!absl::StartsWith(line, "database:")) absl::StrAppend(&base, line, "\n");
  }
  COMITY_ASSERT_OK_AND_ASSIGN(auto sqlite, Parse(base));
  EXPECT_EQ(sqlite->config.database(), "");
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto pg, Parse(base + "database: \"postgresql://comity@db.example:5432/comity\"\n"));
  EXPECT_EQ(pg->config.database(), "postgresql://comity@db.example:5432/comity");
  EXPECT_THAT(Parse(base + "database: \"postgres://comity@db/comity\"\n"), IsOk());
  // Refused without echoing the value, which may hold a password.
  auto bad = Parse(base + "database: \"mysql://comity:s3cret@db/comity\"\n");
  EXPECT_THAT(bad, StatusIs(absl::StatusCode::kInvalidArgument,
                            AllOf(HasSubstr("fr.conf: database:"), HasSubstr("postgresql://"),
                                  ::testing::Not(HasSubstr("s3cret")))));
  EXPECT_THAT(Parse(base + "database: \"data/comity.db\"\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("SQLite in data_dir")));
}

TEST_F(NodeConfigTest, PrivateKeyReadableByOthersIsRefused) {
  std::string key = net_->PartyDir("FR") + "/signing.key";
  ASSERT_EQ(::chmod(key.c_str(), 0644), 0);
  auto setup = Parse(net_->ConfigText("FR"));
  ASSERT_EQ(::chmod(key.c_str(), 0600), 0);
  EXPECT_THAT(setup, StatusIs(absl::StatusCode::kFailedPrecondition,
                              AllOf(HasSubstr("signing_key.private_key_file"),
                                    HasSubstr("chmod 600"))));
}

TEST_F(NodeConfigTest, ClientConfig) {
  COMITY_ASSERT_OK_AND_ASSIGN(auto client,
                              LoadClientConfig(net_->ClientConfigPath("FR", "alice")));
  EXPECT_EQ(client.ca_file(), net_->PartyDir("FR") + "/ca.pem");
  EXPECT_EQ(client.key_file(), net_->PartyDir("FR") + "/operators/alice.key");
  EXPECT_THAT(LoadClientConfig(net_->PartyDir("FR") + "/nope.conf"),
              StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace comity
