// `comity --version` and `comityd --version` of the built binaries: the
// CMake project version and, in a git checkout, `git describe` at configure
// time (server/util/version.h).
#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/util/version.h"

namespace comity {
namespace {

using ::testing::MatchesRegex;

struct BinaryRun {
  int status;
  std::string out;
};

BinaryRun RunBinary(const std::string& command) {
  BinaryRun r{-1, ""};
  FILE* p = ::popen((command + " 2>/dev/null").c_str(), "r");
  if (p == nullptr) return r;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  r.status = ::pclose(p);
  return r;
}

TEST(CliVersionBinaryTest, BothBinariesPrintTheVersion) {
  for (const auto& [name, path] : {std::pair<std::string, std::string>{"comity", COMITY_PATH},
                                   {"comityd", COMITYD_PATH}}) {
    BinaryRun r = RunBinary(path + " --version");
    EXPECT_EQ(r.status, 0) << name;
    EXPECT_EQ(r.out, name + " " + VersionString() + "\n") << name;
    EXPECT_THAT(r.out, MatchesRegex(name + " " + COMITY_PROJECT_VERSION +
                                    "( \\(git [0-9A-Za-z._-]+\\))?\n"))
        << name;
  }
  // comityd's help names it.
  BinaryRun help = RunBinary(std::string(COMITYD_PATH) + " --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_THAT(help.out, ::testing::HasSubstr("--version"));
}

}  // namespace
}  // namespace comity
