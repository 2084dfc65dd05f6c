#include "client/cli.h"

#include <sstream>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/str_split.h"
#include "client/args.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "client/usage.h"
#include "comity/v1/assessment.pb.h"
#include "server/core/request_validation.h"
#include "server/util/files.h"
#include "server/util/text_proto.h"
#include "server/util/version.h"

namespace comity {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
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

// The error is its first line; a wrong flag is followed by the command's
// own usage (issue 15).
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
    const std::string first = r.err.substr(0, r.err.find('\n') + 1);
    EXPECT_THAT(first, HasSubstr(c.message));
    if (first.size() < r.err.size()) {
      EXPECT_THAT(r.err.substr(first.size()), StartsWith("\nusage: comity ")) << r.err;
    }
  }
  Result flag = RunComity({"list", "--bogus"});
  EXPECT_THAT(flag.err, HasSubstr("\nusage: comity [--connect FILE] [--json] list"));
  EXPECT_THAT(flag.err, HasSubstr("--limit N"));
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

// Every command the CLI dispatches, as its own dispatchers name them in
// their "unknown command" errors: top level, audit, treaty.
std::vector<std::string> DispatchedCommands() {
  std::vector<std::string> names;
  auto listed = [](const std::vector<std::string>& args) {
    Result r = RunComity(args);
    const size_t at = r.err.find("commands: ");
    EXPECT_NE(at, std::string::npos) << r.err;
    std::string list = r.err.substr(at + 10);
    while (!list.empty() && (list.back() == '\n')) list.pop_back();
    std::vector<std::string> out = absl::StrSplit(list, ", ");
    return out;
  };
  for (const std::string& c : listed({"frobnicate"})) names.push_back(c);
  for (const std::string& c : listed({"audit", "frobnicate"})) names.push_back("audit " + c);
  for (const std::string& c : listed({"treaty", "frobnicate"})) names.push_back("treaty " + c);
  names.push_back("admin backup");
  return names;
}

TEST(CliHelpTest, EverySubcommandHasItsOwnHelp) {
  const std::vector<std::string> dispatched = DispatchedCommands();
  ASSERT_GT(dispatched.size(), 30u);
  for (const std::string& name : dispatched) {
    // The top-level dispatcher knows it (it is not an unknown command).
    std::vector<std::string> words = absl::StrSplit(name, ' ');
    Result bare = RunComity(words);
    EXPECT_THAT(bare.err, Not(HasSubstr("unknown"))) << name;
    // --help: its own usage, on stdout, exit 0.
    words.push_back("--help");
    Result help = RunComity(words);
    EXPECT_EQ(help.code, kExitOk) << name << ": " << help.err;
    EXPECT_THAT(help.out, StartsWith("usage: comity ")) << name;
    EXPECT_THAT(help.out, HasSubstr(name)) << name;
    EXPECT_NE(help.out, GlobalUsage()) << name << " --help prints the global help";
    EXPECT_THAT(help.out, HasSubstr("example")) << name << " has no example";
    EXPECT_TRUE(help.err.empty()) << name << ": " << help.err;
    // The same text from the table, and from `comity help NAME`.
    ASSERT_NE(FindUsage(name), nullptr) << name << " is not in client/usage.cc";
    EXPECT_EQ(help.out, FindUsage(name)->text) << name;
    std::vector<std::string> help_words = absl::StrSplit(name, ' ');
    help_words.insert(help_words.begin(), "help");
    EXPECT_EQ(RunComity(help_words).out, help.out) << name;
  }
  // Flags before the command, and -h, find it too.
  Result r = RunComity({"--connect", "x.conf", "audit", "--json", "log", "-h"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, UsageText("audit log"));
}

TEST(CliHelpTest, GroupsHaveTheirOwnHelp) {
  for (const char* group : {"audit", "treaty", "admin"}) {
    Result r = RunComity({group, "--help"});
    EXPECT_EQ(r.code, kExitOk) << group;
    EXPECT_EQ(r.out, UsageText(group)) << group;
    EXPECT_NE(r.out, GlobalUsage()) << group;
  }
  EXPECT_EQ(RunComity({"audit", "help"}).out, UsageText("audit"));
  EXPECT_EQ(RunComity({"treaty", "help"}).out, UsageText("treaty"));
}

TEST(CliHelpTest, RefuseListsEveryGround) {
  Result r = RunComity({"refuse", "--help"});
  ASSERT_EQ(r.code, kExitOk);
  const auto* grounds = v1::RefusalGround_descriptor();
  for (int i = 1; i < grounds->value_count(); ++i) {
    EXPECT_THAT(r.out, HasSubstr(grounds->value(i)->name()));
  }
  EXPECT_THAT(RunComity({"postpone", "--help"}).out, HasSubstr("PREJUDICE_TO_INVESTIGATION"));
}

TEST(CliHelpTest, GlobalHelpNamesAuditServeAndVersion) {
  Result r = RunComity({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, GlobalUsage());
  EXPECT_THAT(r.out, HasSubstr("serve"));
  EXPECT_THAT(r.out, HasSubstr("--version"));
  EXPECT_THAT(r.out, HasSubstr("COMMAND --help"));
  // An unknown command with --help is still an unknown command.
  Result unknown = RunComity({"frobnicate", "--help"});
  EXPECT_EQ(unknown.code, kExitUsage);
  EXPECT_THAT(unknown.err, HasSubstr("unknown command 'frobnicate'"));
}

TEST(CliVersionTest, PrintsProjectVersionAndGitDescribe) {
  Result r = RunComity({"--version"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, std::string("comity ") + VersionString() + "\n");
  EXPECT_THAT(r.out, StartsWith(std::string("comity ") + COMITY_PROJECT_VERSION));
  EXPECT_EQ(std::string(ProjectVersion()), COMITY_PROJECT_VERSION);
  if (std::string(GitDescribe()).empty()) {
    EXPECT_EQ(std::string(VersionString()), ProjectVersion());
  } else {
    EXPECT_THAT(r.out, HasSubstr(std::string("(git ") + GitDescribe() + ")"));
  }
}

// docs/examples/draft.txtpb is what `comity submit --file` reads: the same
// parser, a draft the node accepts, and a request the treaty engine finds
// complete (BINDING, not INVALID).
TEST(DraftExampleTest, TheExampleDraftParsesAndIsComplete) {
  const std::string path = std::string(COMITY_SOURCE_DIR) + "/docs/examples/draft.txtpb";
  auto text = ReadFile(path);
  ASSERT_TRUE(text.ok()) << text.status();
  v1::RequestBody draft;
  ASSERT_TRUE(ParseTextProto(*text, path, &draft).ok());
  EXPECT_TRUE(ValidateDraft(draft).ok()) << ValidateDraft(draft);
  EXPECT_EQ(draft.requested_party(), "JP");
  Result check = RunComity({"treaty", "check", "--treaties",
                            std::string(COMITY_SOURCE_DIR) + "/deploy/treaties", "--from", "FR",
                            "--request", path});
  EXPECT_EQ(check.code, kExitOk) << check.err;
  EXPECT_THAT(check.out, HasSubstr("BINDING"));
  EXPECT_THAT(check.out, Not(HasSubstr("INVALID")));
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
