#include "client/cli.h"

#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "client/args.h"

namespace comity {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out, err;
};

Result RunComity(const std::vector<std::string>& args, const std::string& connect_env = "") {
  std::ostringstream out, err;
  int code = RunCli(
      args,
      [&](const std::string& name) {
        return name == "COMITY_CONNECT" ? connect_env : std::string();
      },
      out, err);
  return {code, out.str(), err.str()};
}

TEST(CliTest, HelpAndUsage) {
  EXPECT_EQ(RunComity({}).code, kExitUsage);
  Result help = RunComity({"help"});
  EXPECT_EQ(help.code, kExitOk);
  EXPECT_THAT(help.out, HasSubstr("submit --to XX"));
}

TEST(CliTest, WrongArgumentsAreOneClearLineAndExitTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"list", "--bogus"}, "unknown flag --bogus"},
      {{"list", "--limit"}, "--limit needs a value"},
      {{"list", "--connect", "a", "--connect", "b"}, "--connect is given twice"},
      {{"show"}, "exactly one request id"},
      {{"show", "a", "b"}, "exactly one request id"},
      {{"list", "extra"}, "unexpected argument 'extra'"},
      {{"list"}, "pass --connect FILE"},
      {{"--connect", "/nonexistent/x.conf", "list"}, "/nonexistent/x.conf"},
  };
  for (const Case& c : cases) {
    Result r = RunComity(c.args);
    EXPECT_NE(r.code, kExitOk) << c.message;
    EXPECT_THAT(r.err, StartsWith("comity: ")) << c.message;
    EXPECT_THAT(r.err, HasSubstr(c.message));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_EQ(RunComity({"frobnicate"}).code, kExitUsage);
  EXPECT_EQ(RunComity({"list"}).code, kExitUsage);
}

TEST(ArgsTest, ParsesValuesSwitchesAndRepeats) {
  FlagSpec spec;
  spec.with_value = {"to", "use-limit"};
  spec.repeated = {"use-limit"};
  spec.switches = {"json"};
  auto parsed = ParseArgs({"submit", "--to=JP", "--use-limit", "a", "--use-limit", "b", "--json"},
                          spec);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->Get("to"), "JP");
  EXPECT_EQ(parsed->GetAll("use-limit"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(parsed->Has("json"));
  EXPECT_EQ(parsed->positional, std::vector<std::string>{"submit"});
  EXPECT_FALSE(ParseArgs({"--json=yes"}, spec).ok());
}

}  // namespace
}  // namespace comity
