// The CLI's output layer end to end, with real nodes over mutual TLS
// (docs/cli.md): use conditions shown first and blocking `export` until they
// are accepted; `show --json` with every signed step, the conditions and the
// evidence; `--json` on export and the audit commands; errors under --json
// as one object on stderr; exit 3 when the node does not answer.
#include <sys/stat.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
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
constexpr int kExitUnreachable = 3;  // Red run against the old client only.

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;
using ::testing::Not;

using Fields = google::protobuf::Map<std::string, google::protobuf::Value>;

// The {"error":{...}} object a command printed on stderr under --json.
Fields ErrorJson(const CliResult& r) {
  google::protobuf::Struct s = ParseJson(r.err);
  if (s.fields().count("error") == 0) {
    ADD_FAILURE() << "no error object: " << r.err;
    return Fields();
  }
  return s.fields().at("error").struct_value().fields();
}

class CliOutputE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
    alice_ = net_->ClientConfigPath("FR", "alice");
    jp_bob_ = net_->ClientConfigPath("JP", "bob");
  }

  CliResult Fr(std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", alice_});
    return Cli(args);
  }
  CliResult Jp(std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", jp_bob_});
    return Cli(args);
  }
  int Steps(const std::string& party, const std::string& id) {
    auto r = net_->server(party)->node()->Get(id);
    return r.ok() ? (*r)[0].transitions_size() : -1;
  }
  bool FranceHolds(const std::string& id, int steps) {
    for (int i = 0; i < 200 && Steps("FR", id) < steps; ++i) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    return Steps("FR", id) >= steps;
  }

  // FR -> JP, accepted, answered with `name` under `condition`; FR holds the
  // RESPOND step (and not the file). Returns the id.
  std::string CaseUnderCondition(const std::string& name, const std::string& data,
                                 const std::string& condition) {
    CliResult r = Cli(testing::SubmitPreservationArgs(alice_, "JP"));
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) return "";
    const std::string id = ParseJson(r.out).fields().at("id").string_value();
    EXPECT_EQ(Jp({"accept", id}).code, 0);
    const std::string file = net_->dir() + "/" + name;
    EXPECT_THAT(WriteFileAtomically(file, data, 0600), IsOk());
    CliResult responded = Jp(
        {"respond", id, "--text", "the logs", "--file", file, "--condition", condition});
    EXPECT_EQ(responded.code, 0) << responded.err;
    EXPECT_TRUE(FranceHolds(id, 2));
    net_->server("FR")->node()->evidence().FetchRound("JP", [] { return false; });
    return id;
  }

  std::unique_ptr<testing::TestNetwork> net_;
  std::string alice_, jp_bob_;
};

TEST_F(CliOutputE2eTest, PendingConditionsAreShownFirstAndBlockExport) {
  const std::string data(70000, 'c');
  const std::string condition =
      "use only in the proceedings against the ransomware group";
  const std::string id = CaseUnderCondition("connection-logs.tar", data, condition);
  ASSERT_FALSE(id.empty());
  ASSERT_FALSE(net_->server("FR")->node()->evidence().files().Has(Sha256(data)));

  // show, text: the condition, what it blocks, and the command to run.
  CliResult show = Fr({"show", id});
  ASSERT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("CONDITIONS PENDING (ETS185 Art 28(2))"));
  EXPECT_THAT(show.out, HasSubstr("connection-logs.tar"));
  EXPECT_THAT(show.out, HasSubstr("  - " + condition + " (step 2)"));
  EXPECT_THAT(show.out, HasSubstr("comity accept-conditions " + id));
  EXPECT_THAT(show.out, HasSubstr("condition: " + condition + " (PENDING"));
  EXPECT_THAT(show.out, HasSubstr("held back by the responding party"));
  // Before the steps, so that it is not missed.
  EXPECT_LT(show.out.find("CONDITIONS PENDING"), show.out.find("case:"));

  // show --json on the requester: the steps, the condition pending, the
  // evidence awaiting it.
  CliResult json = Fr({"show", id, "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  google::protobuf::Struct s = ParseJson(json.out);
  const auto& f = s.fields();
  EXPECT_EQ(f.at("body").struct_value().fields().at("requested_party").string_value(),
            "JP");
  const auto& steps = f.at("steps").list_value().values();
  ASSERT_EQ(steps.size(), 2);
  EXPECT_EQ(f.at("step_count").number_value(), 2);
  // Every deadline of the case, met or not, with the time left: the
  // service levels JP met (acknowledge, decide) and the accepted
  // preservation's term (ETS185 Art 29(7)).
  std::map<std::string, google::protobuf::Struct> deadlines;
  for (const auto& d : f.at("deadlines").list_value().values()) {
    EXPECT_EQ(d.struct_value().fields().at("request_id").string_value(), id);
    deadlines[d.struct_value().fields().at("kind").string_value()] = d.struct_value();
  }
  ASSERT_EQ(deadlines.size(), 3u) << json.out;
  EXPECT_TRUE(deadlines["ACKNOWLEDGE"].fields().at("met").bool_value());
  EXPECT_TRUE(deadlines["DECIDE"].fields().at("met").bool_value());
  const auto& term = deadlines["PRESERVATION_EXPIRY"].fields();
  EXPECT_FALSE(term.at("met").bool_value());
  EXPECT_FALSE(term.at("overdue").bool_value());
  EXPECT_GT(term.at("seconds_left").number_value(), 50 * 86400);
  EXPECT_EQ(term.at("party").string_value(), "FR");
  EXPECT_THAT(show.out, HasSubstr("deadline: DUE     PRESERVATION_EXPIRY"));
  EXPECT_THAT(show.out, HasSubstr("deadline: MET     DECIDE"));
  const auto& accept = steps[0].struct_value().fields();
  EXPECT_EQ(accept.at("sequence").number_value(), 1);
  EXPECT_EQ(accept.at("action").string_value(), "ACCEPT");
  EXPECT_EQ(accept.at("to_state").string_value(), "CASE_ACCEPTED");
  EXPECT_EQ(accept.at("party").string_value(), "JP");
  EXPECT_EQ(accept.at("operator").string_value(), "bob");
  EXPECT_FALSE(accept.at("time").string_value().empty());
  EXPECT_TRUE(accept.at("signature").struct_value().fields().at("verified").bool_value());
  const auto& respond = steps[1].struct_value().fields();
  EXPECT_EQ(respond.at("action").string_value(), "RESPOND");
  EXPECT_EQ(respond.at("release_conditions").list_value().values(0).string_value(),
            condition);
  EXPECT_EQ(respond.at("evidence")
                .list_value()
                .values(0)
                .struct_value()
                .fields()
                .at("sha256")
                .string_value(),
            HexEncode(Sha256(data)));
  const auto& conditions = f.at("conditions").list_value().values();
  ASSERT_EQ(conditions.size(), 1);
  const auto& c = conditions[0].struct_value().fields();
  EXPECT_EQ(c.at("text").string_value(), condition);
  EXPECT_EQ(c.at("state").string_value(), "pending");
  EXPECT_EQ(c.at("step").number_value(), 2);
  EXPECT_EQ(c.at("blocks").list_value().values(0).string_value(), "connection-logs.tar");
  EXPECT_EQ(f.at("pending_conditions").number_value(), 1);
  const auto& evidence = f.at("evidence").list_value().values();
  ASSERT_EQ(evidence.size(), 1);
  EXPECT_EQ(evidence[0].struct_value().fields().at("state").string_value(),
            "awaiting_conditions");
  EXPECT_EQ(evidence[0].struct_value().fields().at("size").number_value(), 70000);

  // The requested side sees the same steps, its evidence held back.
  CliResult jp_json = Jp({"show", id, "--json"});
  ASSERT_EQ(jp_json.code, 0) << jp_json.err;
  google::protobuf::Struct jp = ParseJson(jp_json.out);
  EXPECT_EQ(jp.fields().at("steps").list_value().values_size(), 2);
  EXPECT_EQ(jp.fields()
                .at("evidence")
                .list_value()
                .values(0)
                .struct_value()
                .fields()
                .at("state")
                .string_value(),
            "held_back");
  CliResult jp_show = Jp({"show", id});
  EXPECT_THAT(jp_show.out, HasSubstr("waiting for FR to accept them"));

  // export before acceptance: refused, naming the condition and the command;
  // nothing is made.
  const std::string out = net_->dir() + "/exports/case";
  CliResult early = Fr({"export", id, "--out", out});
  EXPECT_EQ(early.code, kExitFailure);
  EXPECT_THAT(early.out, Not(HasSubstr("no evidence")));
  EXPECT_THAT(early.err,
              HasSubstr("held back by JP until its use conditions are accepted"));
  EXPECT_THAT(early.err, HasSubstr(condition));
  EXPECT_THAT(early.err, HasSubstr("comity accept-conditions " + id));
  EXPECT_EQ(std::count(early.err.begin(), early.err.end(), '\n'), 1) << early.err;
  struct stat st;
  EXPECT_NE(::stat(out.c_str(), &st), 0) << "no directory made";
  CliResult early_json = Fr({"--json", "export", id, "--out", out});
  EXPECT_EQ(early_json.code, kExitFailure);
  EXPECT_TRUE(early_json.out.empty()) << early_json.out;
  Fields e = ErrorJson(early_json);
  EXPECT_EQ(e["code"].string_value(), "REFUSED");
  EXPECT_EQ(e["exit_code"].number_value(), 1);
  EXPECT_THAT(e["message"].string_value(), HasSubstr(condition));
  EXPECT_THAT(e["hint"].string_value(), HasSubstr("comity accept-conditions " + id));

  // Accepted: the step shows it, the file comes, export works.
  CliResult accepted = Fr({"accept-conditions", id});
  ASSERT_EQ(accepted.code, 0) << accepted.err;
  Node* fr = net_->server("FR")->node();
  for (int i = 0; i < 200 && !fr->evidence().files().Has(Sha256(data)); ++i) {
    fr->evidence().FetchRound("JP", [] { return false; });
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(fr->evidence().files().Has(Sha256(data)));
  json = Fr({"show", id, "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  s = ParseJson(json.out);
  const auto& after =
      s.fields().at("conditions").list_value().values(0).struct_value().fields();
  EXPECT_EQ(after.at("state").string_value(), "accepted");
  EXPECT_EQ(after.at("accepted_in_step").number_value(), 3);
  EXPECT_EQ(s.fields().at("pending_conditions").number_value(), 0);
  const auto& step3 =
      s.fields().at("steps").list_value().values(2).struct_value().fields();
  EXPECT_EQ(step3.at("action").string_value(), "ACCEPT_CONDITIONS");
  EXPECT_EQ(step3.at("party").string_value(), "FR");
  EXPECT_EQ(step3.at("accepted_conditions").list_value().values(0).string_value(),
            condition);
  const auto& held =
      s.fields().at("evidence").list_value().values(0).struct_value().fields();
  EXPECT_EQ(held.at("state").string_value(), "verified");
  EXPECT_FALSE(held.at("path").string_value().empty());
  show = Fr({"show", id});
  EXPECT_THAT(show.out, Not(HasSubstr("CONDITIONS PENDING")));
  EXPECT_THAT(show.out, HasSubstr("condition: " + condition + " (accepted in step 3)"));

  CliResult exported = Fr({"--json", "export", id, "--out", out});
  ASSERT_EQ(exported.code, 0) << exported.err;
  google::protobuf::Struct x = ParseJson(exported.out);
  EXPECT_EQ(x.fields().at("id").string_value(), id);
  const auto& file =
      x.fields().at("files").list_value().values(0).struct_value().fields();
  EXPECT_EQ(file.at("name").string_value(), "connection-logs.tar");
  EXPECT_EQ(file.at("path").string_value(), out + "/evidence/connection-logs.tar");
  EXPECT_EQ(file.at("sha256").string_value(), HexEncode(Sha256(data)));
  EXPECT_EQ(x.fields().at("held_back").list_value().values_size(), 0);
}

TEST_F(CliOutputE2eTest, JsonOutputIsValidForNonAsciiPaths) {
  const std::string data(5000, 'x');
  const std::string id = CaseUnderCondition("journaux-été.csv", data, "only for case 1");
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(Fr({"accept-conditions", id}).code, 0);
  Node* fr = net_->server("FR")->node();
  for (int i = 0; i < 200 && !fr->evidence().files().Has(Sha256(data)); ++i) {
    fr->evidence().FetchRound("JP", [] { return false; });
    absl::SleepFor(absl::Milliseconds(50));
  }
  const std::string out = net_->dir() + "/dossier-été/日本";
  CliResult r = Fr({"export", id, "--out", out, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  google::protobuf::Struct x = ParseJson(r.out);
  EXPECT_EQ(x.fields().at("out").string_value(), out);
  EXPECT_EQ(x.fields()
                .at("files")
                .list_value()
                .values(0)
                .struct_value()
                .fields()
                .at("path")
                .string_value(),
            out + "/evidence/journaux-été.csv");
}

TEST_F(CliOutputE2eTest, ANodeThatDoesNotAnswerExitsThree) {
  net_->Stop("FR");
  CliResult text = Fr({"list"});
  EXPECT_EQ(text.code, kExitUnreachable) << text.err;
  EXPECT_THAT(text.err, HasSubstr("cannot reach the node"));
  EXPECT_EQ(std::count(text.err.begin(), text.err.end(), '\n'), 1) << text.err;
  CliResult json = Fr({"show", "0f8fad5b-d9cb-469f-a165-70867728950e", "--json"});
  EXPECT_EQ(json.code, kExitUnreachable);
  EXPECT_TRUE(json.out.empty());
  Fields e = ErrorJson(json);
  EXPECT_EQ(e["code"].string_value(), "UNREACHABLE");
  EXPECT_EQ(e["exit_code"].number_value(), 3);
  EXPECT_THAT(e["message"].string_value(), HasSubstr("cannot reach the node"));
  CliResult audit = Cli(
      {"--connect", net_->ClientConfigPath("FR", "carol"), "--json", "audit", "head"});
  EXPECT_EQ(audit.code, kExitUnreachable);
  EXPECT_EQ(ErrorJson(audit)["code"].string_value(), "UNREACHABLE");
}

TEST_F(CliOutputE2eTest, RefusalsByTheNodeExitOneWithAJsonError) {
  // dave has no role.
  CliResult r =
      Cli({"--connect", net_->ClientConfigPath("FR", "dave"), "list", "--json"});
  EXPECT_EQ(r.code, kExitFailure);
  Fields e = ErrorJson(r);
  EXPECT_EQ(e["code"].string_value(), "REFUSED");
  EXPECT_THAT(e["message"].string_value(), HasSubstr("PERMISSION_DENIED"));
  EXPECT_FALSE(e["hint"].string_value().empty());
  CliResult missing = Fr({"show", "0f8fad5b-d9cb-469f-a165-70867728950e", "--json"});
  EXPECT_EQ(missing.code, kExitFailure);
  EXPECT_EQ(ErrorJson(missing)["code"].string_value(), "REFUSED");
}

TEST_F(CliOutputE2eTest, AuditCommandsHonourJson) {
  const std::string carol = net_->ClientConfigPath("FR", "carol");
  ASSERT_EQ(Cli(testing::SubmitPreservationArgs(alice_, "JP")).code, 0);
  CliResult head = Cli({"--connect", carol, "audit", "head", "--json"});
  ASSERT_EQ(head.code, 0) << head.err;
  google::protobuf::Struct h = ParseJson(head.out);
  EXPECT_EQ(h.fields().at("party").string_value(), "FR");
  EXPECT_GT(h.fields().at("tree_size").number_value(), 0);
  EXPECT_EQ(h.fields().at("root").string_value().size(), 64u);

  const std::string prefix = net_->dir() + "/fr-log";
  CliResult exported =
      Cli({"--connect", carol, "audit", "export", "--out", prefix, "--json"});
  ASSERT_EQ(exported.code, 0) << exported.err;
  google::protobuf::Struct x = ParseJson(exported.out);
  EXPECT_TRUE(x.fields().at("verified").bool_value());
  EXPECT_EQ(x.fields().at("bundle").string_value(), prefix + ".bundle");
  EXPECT_GT(x.fields().at("entries").number_value(), 0);

  CliResult verified = Cli({"--connect", carol, "audit", "verify", "--json"});
  ASSERT_EQ(verified.code, 0) << verified.err;
  EXPECT_TRUE(ParseJson(verified.out).fields().at("ok").bool_value());
  CliResult stats = Cli({"--connect", carol, "audit", "stats", "--json"});
  ASSERT_EQ(stats.code, 0) << stats.err;
  EXPECT_GT(ParseJson(stats.out).fields().at("entries").number_value(), 0);
  CliResult offline = Cli({"audit", "verify", "--bundle", prefix + ".bundle", "--json"});
  ASSERT_EQ(offline.code, 0) << offline.err;
  EXPECT_TRUE(ParseJson(offline.out).fields().at("ok").bool_value());

  // audit log --json is the one streaming list: JSON Lines, one entry a line.
  CliResult log = Cli({"--connect", carol, "audit", "log", "--json", "--limit", "3"});
  ASSERT_EQ(log.code, 0) << log.err;
  int lines = 0;
  for (absl::string_view line : absl::StrSplit(log.out, '\n', absl::SkipEmpty())) {
    google::protobuf::Struct entry = ParseJson(std::string(line));
    EXPECT_EQ(entry.fields().at("index").number_value(), lines);
    EXPECT_FALSE(entry.fields().at("type").string_value().empty());
    ++lines;
  }
  EXPECT_EQ(lines, 3);
}

TEST_F(CliOutputE2eTest, ListsAreOneJsonArray) {
  ASSERT_EQ(Cli(testing::SubmitPreservationArgs(alice_, "JP")).code, 0);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"list"}, {"inbox"}, {"overdue"}, {"peers"}, {"keys"}}) {
    std::vector<std::string> with_json = args;
    with_json.push_back("--json");
    CliResult r = Fr(with_json);
    ASSERT_EQ(r.code, 0) << args[0] << ": " << r.err;
    google::protobuf::ListValue list;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &list).ok())
        << args[0] << ": " << r.out;
  }
}

// Issue 15, "done when": the whole case of an operator's day, FR -> JP
// (preservation, acceptance, a response with a file under a use condition,
// its release, export, close) played through the CLI with --json only, and
// every output parsed as JSON.
TEST_F(CliOutputE2eTest, AWholeCaseThroughTheCliWithJsonOnly) {
  auto json = [](const CliResult& r, const std::string& what) {
    EXPECT_TRUE(r.err.empty() || r.code != 0) << what << ": " << r.err;
    // One JSON document: an object or an array.
    google::protobuf::Value v;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &v).ok())
        << what << ": not JSON: " << r.out;
    return v;
  };
  auto ok = [&](const CliResult& r, const std::string& what) {
    EXPECT_EQ(r.code, 0) << what << ": " << r.err;
    return json(r, what);
  };
  std::vector<std::string> submit = testing::SubmitPreservationArgs(alice_, "JP");
  if (std::find(submit.begin(), submit.end(), "--json") == submit.end()) submit.push_back("--json");
  const google::protobuf::Value submitted = ok(Cli(submit), "submit");
  const std::string id = submitted.struct_value().fields().at("id").string_value();
  ASSERT_FALSE(id.empty());
  const std::string prefix = id.substr(0, 8);  // Operators type prefixes.

  const google::protobuf::Value jp_inbox = ok(Jp({"inbox", "--json"}), "JP inbox");
  ASSERT_EQ(jp_inbox.list_value().values_size(), 1);
  EXPECT_EQ(jp_inbox.list_value().values(0).struct_value().fields().at("waits_on").string_value(),
            "you");
  ok(Jp({"ack", prefix, "--json"}), "ack");
  ok(Jp({"review", prefix, "--json"}), "review");
  ok(Jp({"accept", prefix, "--json"}), "accept");
  const std::string file = net_->dir() + "/logs.bin";
  ASSERT_THAT(WriteFileAtomically(file, std::string(50000, 'l'), 0600), IsOk());
  ok(Jp({"respond", prefix, "--text", "preserved and copied", "--file", file, "--condition",
         "use only in case 2026/17", "--final", "--json"}),
     "respond");
  ASSERT_TRUE(FranceHolds(id, 4));
  net_->server("FR")->node()->evidence().FetchRound("JP", [] { return false; });

  // FR: the worklist and the case say the condition holds the file back.
  const google::protobuf::Value fr_inbox = ok(Fr({"inbox", "--json"}), "FR inbox");
  EXPECT_EQ(fr_inbox.list_value().values(0).struct_value().fields().at("pending_conditions")
                .list_value().values_size(),
            1);
  const google::protobuf::Value shown = ok(Fr({"show", prefix, "--json"}), "show");
  EXPECT_GE(shown.struct_value().fields().at("steps").list_value().values_size(), 4);
  const std::string out = net_->dir() + "/court";
  CliResult early = Fr({"export", prefix, "--out", out, "--json"});
  EXPECT_EQ(early.code, kExitFailure);
  EXPECT_TRUE(early.out.empty()) << early.out;
  EXPECT_THAT(ErrorJson(early)["hint"].string_value(), HasSubstr("accept-conditions"));
  ok(Fr({"accept-conditions", prefix, "--json"}), "accept-conditions");
  net_->server("FR")->node()->evidence().FetchRound("JP", [] { return false; });
  ok(Fr({"export", prefix, "--out", out, "--json"}), "export");
  ok(Fr({"close", prefix, "--json"}), "close");
  ok(Fr({"list", "--json"}), "list");
  ok(Fr({"overdue", "--json"}), "overdue");
  ok(Fr({"peers", "--json"}), "peers");
  for (const char* party : {"FR", "JP"}) {
    const std::string carol = net_->ClientConfigPath(party, "carol");
    const google::protobuf::Value stats =
        ok(Cli({"--connect", carol, "audit", "stats", "--json"}), "audit stats");
    EXPECT_EQ(stats.struct_value().fields().at("response_ms").struct_value().fields().at("count")
                  .number_value(),
              1)
        << party;
    ok(Cli({"--connect", carol, "audit", "head", "--json"}), "audit head");
    ok(Cli({"--connect", carol, "audit", "verify", "--json"}), "audit verify");
  }
}

}  // namespace
}  // namespace comity
