#include "server/util/posix_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/util/files.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::ListDir;
using ::comity::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class PosixFileTest : public ::testing::Test {
 protected:
  std::string Path(const std::string& name) const { return dir_.path() + "/" + name; }
  testing::TempDir dir_;
};

TEST_F(PosixFileTest, TemporaryFilesBesideAPathAreNewPrivateAndDistinct) {
  std::set<std::string> names;
  for (int i = 0; i < 20; ++i) {
    COMITY_ASSERT_OK_AND_ASSIGN(auto temp, CreateTempFileBeside(Path("disk.img")));
    ScopedFd closer(temp.first);
    EXPECT_THAT(temp.second, AllOf(StartsWith(Path(".disk.img.")), EndsWith(".partial")));
    struct stat st;
    ASSERT_EQ(::fstat(temp.first, &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    EXPECT_EQ(st.st_size, 0);
    names.insert(temp.second);
  }
  EXPECT_EQ(names.size(), 20u);
  EXPECT_THAT(CreateTempFileBeside(Path("missing/f")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(Path("missing/"))));
}

TEST_F(PosixFileTest, RenameReplacesOnlyWhenAsked) {
  ASSERT_THAT(WriteFileAtomically(Path("new"), "new", 0600), IsOk());
  ASSERT_THAT(WriteFileAtomically(Path("old"), "old", 0600), IsOk());
  EXPECT_THAT(RenameFile(Path("new"), Path("old"), /*replace=*/false),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr(Path("old"))));
  EXPECT_THAT(ReadFile(Path("old")), IsOkAndHolds("old"));
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("new", "old")) << "the source is kept";
  EXPECT_THAT(RenameFile(Path("new"), Path("fresh"), /*replace=*/false), IsOk());
  EXPECT_THAT(RenameFile(Path("fresh"), Path("old"), /*replace=*/true), IsOk());
  EXPECT_THAT(ReadFile(Path("old")), IsOkAndHolds("new"));
  EXPECT_THAT(ListDir(dir_.path()), ElementsAre("old"));
  EXPECT_THAT(RenameFile(Path("gone"), Path("x"), /*replace=*/true),
              StatusIs(absl::StatusCode::kInternal, HasSubstr(Path("gone"))));
}

}  // namespace
}  // namespace comity
