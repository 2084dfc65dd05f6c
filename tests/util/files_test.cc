#include "server/util/files.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::ListDir;
using ::comity::testing::StatusIs;
using ::testing::AnyOfArray;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class WriteFileAtomicallyTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
  static int Mode(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0 ? static_cast<int>(st.st_mode & 07777) : -1;
  }
  testing::TempDir dir_;
};

TEST_F(WriteFileAtomicallyTest, WritesAndReplacesWithTheModeLeavingNoTemporaryFile) {
  ASSERT_THAT(WriteFileAtomically(Path("peer-ca.pem"), "first", 0644), IsOk());
  EXPECT_THAT(ReadFile(Path("peer-ca.pem")), IsOkAndHolds("first"));
  EXPECT_EQ(Mode(Path("peer-ca.pem")), 0644);
  ASSERT_THAT(WriteFileAtomically(Path("peer-ca.pem"), "second", 0600), IsOk());
  EXPECT_THAT(ReadFile(Path("peer-ca.pem")), IsOkAndHolds("second"));
  EXPECT_EQ(Mode(Path("peer-ca.pem")), 0600);
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("peer-ca.pem"));
}

TEST_F(WriteFileAtomicallyTest, ALinkPlantedWhereATemporaryFileWouldGoIsNotFollowed) {
  // The name a fixed temporary file used to have (PATH.tmp): a link there
  // must not be written through.
  ASSERT_EQ(::symlink(Path("victim").c_str(), Path("keys.json.tmp").c_str()), 0);
  ASSERT_THAT(WriteFileAtomically(Path("keys.json"), "{}", 0600), IsOk());
  EXPECT_THAT(ReadFile(Path("keys.json")), IsOkAndHolds("{}"));
  EXPECT_EQ(Mode(Path("victim")), -1) << "nothing written through the link";
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("keys.json", "keys.json.tmp"));
}

TEST_F(WriteFileAtomicallyTest, ConcurrentWritersEachLeaveAWholeFile) {
  // Each writer has a temporary file of its own: the file always holds one
  // writer's bytes whole, never a mix or a cut.
  std::vector<std::string> contents;
  for (int i = 0; i < 4; ++i) contents.push_back(std::string(100000 + i, 'a' + i));
  std::vector<std::thread> writers;
  for (const std::string& data : contents) {
    writers.emplace_back([&, data] {
      for (int round = 0; round < 20; ++round) {
        EXPECT_THAT(WriteFileAtomically(Path("shared"), data, 0600), IsOk());
        auto now = ReadFile(Path("shared"));
        ASSERT_THAT(now, IsOk());
        EXPECT_THAT(*now, AnyOfArray(contents)) << now->size() << " bytes";
      }
    });
  }
  for (std::thread& t : writers) t.join();
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("shared"));
}

TEST_F(WriteFileAtomicallyTest, AMissingDirectoryIsNotFoundNamingIt) {
  EXPECT_THAT(WriteFileAtomically(Path("no/such/file"), "x", 0600),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("no/such/"))));
  EXPECT_THAT(ListDir(dir_.path()), ::testing::IsEmpty());
}

}  // namespace
}  // namespace comity
