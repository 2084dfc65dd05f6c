#include "client/cli.h"

#include <sstream>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "client/args.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

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

// Parses `text` as JSON, or fails the test.
google::protobuf::Value Parse(const std::string& text) {
  google::protobuf::Value v;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &v).ok()) << text;
  return v;
}

TEST(CliTest, UsageErrorsUnderJsonAreJsonInEveryCommandGroup) {
  const std::vector<std::vector<std::string>> cases = {
      {"--json", "frobnicate"},
      {"list", "--bogus", "--json"},
      {"show", "--json"},
      {"list", "--json"},  // No --connect.
      {"audit", "log", "--bogus", "--json"},
      {"audit", "prove", "--json"},
      {"treaty", "check", "--json", "--treaties", "/nonexistent"},
      {"treaty", "frob", "--json"},
      {"admin", "backup", "--json"},
      {"keys", "--bogus", "--json"},
      {"health", "--timeout-ms", "0", "--json"},
  };
  for (const auto& args : cases) {
    Result r = RunComity(args);
    const std::string what = absl::StrJoin(args, " ");
    EXPECT_NE(r.code, kExitOk) << what;
    EXPECT_TRUE(r.out.empty()) << what << ": " << r.out;
    google::protobuf::Value parsed = Parse(r.err);
    ASSERT_TRUE(parsed.struct_value().fields().count("error")) << what << ": " << r.err;
    const auto& e = parsed.struct_value().fields().at("error").struct_value().fields();
    EXPECT_EQ(e.at("code").string_value(), ExitCodeName(r.code)) << what;
    EXPECT_FALSE(e.at("message").string_value().empty()) << what;
  }
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
