// `comity export` end to end: JP responds with an evidence file, FR fetches
// it, and FR's operator saves it with the CLI. The copy is checked against
// the SHA-256 it was asked for and the size the signed response declares
// before it gets its name; the --out directory is made if missing; a copy
// whose bytes differ (FR's stored file damaged on its disk) is refused and
// leaves nothing behind.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/sha256.h"
#include "server/evidence/evidence_store.h"
#include "server/util/files.h"
#include "server/util/hex.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ListDir;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

class ExportE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
    alice_ = net_->ClientConfigPath("FR", "alice");
  }

  // A request from FR that JP answers with the file `name` holding `data`;
  // FR has fetched and verified it. Returns the request's id.
  std::string CaseWithEvidence(const std::string& name, const std::string& data) {
    CliResult r = Cli(testing::SubmitPreservationArgs(alice_, "JP"));
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) return "";
    const std::string id = ParseJson(r.out).fields().at("id").string_value();
    const std::string jp_bob = net_->ClientConfigPath("JP", "bob");
    EXPECT_EQ(Cli({"--connect", jp_bob, "accept", id}).code, 0);
    const std::string file = net_->dir() + "/" + name;
    EXPECT_THAT(WriteFileAtomically(file, data, 0600), IsOk());
    CliResult responded = Cli({"--connect", jp_bob, "respond", id, "--text", "the logs",
                               "--file", file, "--final"});
    EXPECT_EQ(responded.code, 0) << responded.err;
    Node* fr = net_->server("FR")->node();
    for (int i = 0; i < 200 && !fr->evidence().files().Has(Sha256(data)); ++i) {
      fr->evidence().FetchRound("JP", [] { return false; });
      absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_TRUE(fr->evidence().files().Has(Sha256(data)));
    return id;
  }

  // FR's stored copy of the file with SHA-256 `sha256`.
  std::string FrObject(const std::string& sha256) {
    return net_->server("FR")->node()->evidence().files().PathOf(sha256);
  }

  std::unique_ptr<testing::TestNetwork> net_;
  std::string alice_;
};

TEST_F(ExportE2eTest, ExportMakesMissingDirectoriesAndPrintsTheVerifiedHash) {
  const std::string data(300000, 'e');
  const std::string id = CaseWithEvidence("connection-logs.tar", data);
  ASSERT_FALSE(id.empty());
  const std::string out = net_->dir() + "/exports/2026/case-17";  // None of it exists.
  CliResult r = Cli({"--connect", alice_, "export", id, "--out", out});
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string path = out + "/evidence/connection-logs.tar";
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("wrote ", path, " (300000 bytes, sha256 ",
                                            HexEncode(Sha256(data)), ")")));
  auto copy = ReadFile(path);
  ASSERT_THAT(copy, IsOk());
  EXPECT_EQ(*copy, data);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(out.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((net_->dir() + "/exports").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(ListDir(out + "/evidence"), std::vector<std::string>{"connection-logs.tar"})
      << "no temp left";

  // An export never replaces a file: not a package, not an evidence file
  // (its package files moved away).
  CliResult again = Cli({"--connect", alice_, "export", id, "--out", out});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr(out + "/package.pb exists"));
  ASSERT_EQ(::unlink((out + "/package.pb").c_str()), 0);
  ASSERT_EQ(::unlink((out + "/manifest.json").c_str()), 0);
  again = Cli({"--connect", alice_, "export", id, "--out", out});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr(path));
  EXPECT_THAT(again.err, HasSubstr("exists"));
  EXPECT_EQ(ListDir(out), std::vector<std::string>{"evidence"});
  EXPECT_EQ(ListDir(out + "/evidence"), std::vector<std::string>{"connection-logs.tar"});

  CliResult json =
      Cli({"--connect", alice_, "--json", "export", id, "--out", out + "/j"});
  ASSERT_EQ(json.code, 0) << json.err;
  const google::protobuf::Struct parsed = ParseJson(json.out);
  const auto& file = parsed.fields().at("files").list_value().values(0);
  EXPECT_EQ(file.struct_value().fields().at("sha256").string_value(),
            HexEncode(Sha256(data)));
  EXPECT_EQ(file.struct_value().fields().at("bytes").number_value(), 300000);
}

TEST_F(ExportE2eTest, ACopyWhoseBytesDifferIsRefusedAndLeavesNothing) {
  std::string data(200000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7919 >> 3);
  const std::string sha = Sha256(data);
  const std::string id = CaseWithEvidence("disk.img", data);
  ASSERT_FALSE(id.empty());

  // One byte of FR's stored copy changes on its disk: the node streams what
  // it holds, and the CLI must not save it as the file it asked for.
  const std::string object = FrObject(sha);
  {
    int fd = ::open(object.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0) << object;
    const char flipped = static_cast<char>(data[100000] ^ 0x01);
    ASSERT_EQ(::pwrite(fd, &flipped, 1, 100000), 1);
    ::close(fd);
  }
  const std::string out = net_->dir() + "/damaged";
  CliResult r = Cli({"--connect", alice_, "export", id, "--out", out});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr(out + "/evidence/disk.img"));
  EXPECT_THAT(r.err, HasSubstr("SHA-256"));
  EXPECT_THAT(r.err, HasSubstr(HexEncode(sha)));
  EXPECT_THAT(r.out, Not(HasSubstr("wrote")));
  EXPECT_THAT(ListDir(out + "/evidence"), IsEmpty()) << "neither the file nor a temporary one";
  EXPECT_THAT(ListDir(out), std::vector<std::string>{"evidence"}) << "no package";

  // Shorter than the signed response says: refused on its size.
  ASSERT_EQ(::truncate(object.c_str(), 150000), 0);
  r = Cli({"--connect", alice_, "export", id, "--out", out});
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("150000 bytes"));
  EXPECT_THAT(r.err, HasSubstr("200000"));
  EXPECT_THAT(ListDir(out + "/evidence"), IsEmpty());
}

}  // namespace
}  // namespace comity
