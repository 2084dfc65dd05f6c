// A case end to end: decisions by the requested party, signed, delivered
// and applied by the requesting party, so both nodes hold the same case.
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/evidence/evidence_store.h"
#include "server/util/files.h"
#include "server/util/clock.h"
#include "server/util/hex.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;

class CaseE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
  }
  std::string Submit(const std::string& type, const std::string& offence) {
    CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "submit", "--to",
                       "JP", "--type", type, "--offence", offence, "--penalty-months", "60",
                       "--authority", "Parquet de Paris", "--facts", "ransomware",
                       "--data-sought", "logs", "--relation", "C2", "--custodian", "Hosting KK",
                       "--necessity", "rotation", "--intent-mla", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    std::string id = ParseJson(r.out).fields().at("id").string_value();
    if (ParseJson(r.out).fields().at("state").string_value() == "AWAITING_APPROVAL") {
      CliResult ok = Cli({"--connect", net_->ClientConfigPath("FR", "bob"), "approve", id});
      EXPECT_EQ(ok.code, 0) << ok.err;
    }
    return id;
  }
  CliResult Jp(std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath("JP", "bob")});
    return Cli(args);
  }
  v1::CaseState CaseState(const std::string& party, const std::string& id) {
    auto records = net_->server(party)->node()->Get(id);
    return records.ok() ? (*records)[0].case_state() : v1::CASE_STATE_UNSPECIFIED;
  }
  // Waits until the requesting node holds the case in `state`.
  bool FranceSees(const std::string& id, v1::CaseState state) {
    for (int i = 0; i < 200; ++i) {
      if (CaseState("FR", id) == state) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  FakeClock clock_{absl::Now()};  // Outlives the nodes (declared before net_).
  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(CaseE2eTest, AFullCaseConvergesOnBothNodes) {
  std::string id = Submit("PRESERVATION", "DATA_INTERFERENCE");
  EXPECT_EQ(CaseState("FR", id), v1::CASE_DELIVERED);
  EXPECT_EQ(CaseState("JP", id), v1::CASE_DELIVERED);
  struct Step {
    std::vector<std::string> args;
    v1::CaseState state;
  };
  const Step steps[] = {
      {{"ack", id}, v1::CASE_ACKNOWLEDGED},
      {{"review", id}, v1::CASE_UNDER_REVIEW},
      {{"accept", id}, v1::CASE_ACCEPTED},
      {{"respond", id, "--text", "preserved: 3 log files, 2.1 GB, until 2027-01-25"},
       v1::CASE_PARTLY_EXECUTED},
      {{"respond", id, "--text", "preservation confirmed for 90 days", "--final"},
       v1::CASE_EXECUTED},
      {{"close", id}, v1::CASE_CLOSED},
  };
  for (const Step& s : steps) {
    CliResult r = Jp(s.args);
    ASSERT_EQ(r.code, 0) << s.args[0] << ": " << r.err;
    EXPECT_EQ(CaseState("JP", id), s.state);
    EXPECT_TRUE(FranceSees(id, s.state)) << s.args[0];
  }
  // The same signed chain on both sides, every step verified.
  auto fr = net_->server("FR")->node()->Get(id);
  auto jp = net_->server("JP")->node()->Get(id);
  ASSERT_EQ((*fr)[0].transitions_size(), 6);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ((*fr)[0].transitions(i).SerializeAsString(),
              (*jp)[0].transitions(i).SerializeAsString());
  }
  CliResult show = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "show", id});
  EXPECT_THAT(show.out, HasSubstr("case:      CASE_CLOSED"));
  EXPECT_THAT(show.out, HasSubstr("6. CLOSE -> CASE_CLOSED by JP (bob)"));
  EXPECT_THAT(show.out, ::testing::Not(HasSubstr("FAILED")));
  // Both audit logs record every step.
  CliResult jp_log = Cli({"--connect", net_->ClientConfigPath("JP", "carol"), "audit", "log",
                          "--request", id, "--type", "CASE_DECIDED"});
  EXPECT_THAT(jp_log.out, HasSubstr("(6 of"));
  CliResult fr_log = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "audit", "log",
                          "--request", id, "--type", "CASE_UPDATED"});
  EXPECT_THAT(fr_log.out, HasSubstr("(6 of"));
}

TEST_F(CaseE2eTest, RefusalOnAnOpenGroundIsRecordedWithItsReasons) {
  std::string id = Submit("PRESERVATION", "DATA_INTERFERENCE");
  CliResult r = Jp({"refuse", id, "--ground", "ESSENTIAL_INTERESTS", "--reasons",
                    "the server belongs to a state agency", "--consultation",
                    "consulted FR's central authority on 2026-11-20"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(FranceSees(id, v1::CASE_REFUSED));
  CliResult show = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "show", id});
  EXPECT_THAT(show.out, HasSubstr("grounds: ESSENTIAL_INTERESTS"));
  EXPECT_THAT(show.out, HasSubstr("reasons: the server belongs to a state agency"));
  EXPECT_THAT(show.out, HasSubstr("consultation: consulted FR's central authority"));
}

// Issue 15, item 6: the statistics come from the signed steps: refusals by
// the ground invoked, outcomes per partner and instrument, and the time to
// decide and to respond, on both sides.
TEST_F(CaseE2eTest, AuditStatsCountOutcomesAndRefusalGroundsFromTheSignedSteps) {
  std::string refused = Submit("PRESERVATION", "DATA_INTERFERENCE");
  ASSERT_EQ(Jp({"refuse", refused, "--ground", "ESSENTIAL_INTERESTS", "--reasons", "state agency"})
                .code,
            0);
  std::string accepted = Submit("PRESERVATION", "ILLEGAL_ACCESS");
  ASSERT_EQ(Jp({"accept", accepted}).code, 0);
  ASSERT_EQ(Jp({"respond", accepted, "--text", "preserved", "--final"}).code, 0);
  ASSERT_TRUE(FranceSees(refused, v1::CASE_REFUSED));
  ASSERT_TRUE(FranceSees(accepted, v1::CASE_EXECUTED));
  for (const char* party : {"JP", "FR"}) {
    SCOPED_TRACE(party);
    const std::string partner = std::string(party) == "JP" ? "FR" : "JP";
    CliResult r = Cli({"--connect", net_->ClientConfigPath(party, "carol"), "audit", "stats",
                       "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto s = ParseJson(r.out).fields();
    EXPECT_EQ(s.at("case_refusals_by_ground").struct_value().fields().at("ESSENTIAL_INTERESTS")
                  .number_value(),
              1)
        << r.out;
    auto by_partner = s.at("outcomes_by_partner").struct_value().fields().at(partner)
                          .struct_value().fields();
    EXPECT_EQ(by_partner.at("REFUSE").number_value(), 1) << r.out;
    EXPECT_EQ(by_partner.at("ACCEPT").number_value(), 1) << r.out;
    EXPECT_EQ(by_partner.at("RESPOND").number_value(), 1) << r.out;
    auto by_instrument = s.at("outcomes_by_instrument").struct_value().fields().at("ETS185")
                             .struct_value().fields();
    EXPECT_EQ(by_instrument.at("REFUSE").number_value(), 1) << r.out;
    EXPECT_EQ(s.at("decision_ms").struct_value().fields().at("count").number_value(), 2);
    EXPECT_EQ(s.at("response_ms").struct_value().fields().at("count").number_value(), 1);
    CliResult text = Cli({"--connect", net_->ClientConfigPath(party, "carol"), "audit", "stats"});
    EXPECT_THAT(text.out, HasSubstr("case refusals, by ground:  ESSENTIAL_INTERESTS 1"));
    EXPECT_THAT(text.out, HasSubstr("time to decide (from the request to ACCEPT or REFUSE): 2 decided"));
  }
}

// Issue 15, item 4: `comity inbox` is a worklist: what waits on whom, the
// verbs this party may use, the deadline, and pending conditions.
TEST_F(CaseE2eTest, TheInboxSaysWhatWaitsOnWhomAndWhatToRun) {
  std::string id = Submit("PRESERVATION", "DATA_INTERFERENCE");
  auto item = [](const CliResult& r, const std::string& want) {
    auto list = ParseJson(absl::StrCat("{\"l\":", r.out, "}")).fields().at("l").list_value();
    for (const auto& v : list.values()) {
      if (v.struct_value().fields().at("id").string_value() == want) return v.struct_value();
    }
    return google::protobuf::Struct();
  };
  auto verbs = [](const google::protobuf::Struct& s) {
    std::vector<std::string> out;
    for (const auto& v : s.fields().at("next").list_value().values()) {
      out.push_back(v.string_value());
    }
    return out;
  };
  CliResult jp = Jp({"inbox", "--json"});
  ASSERT_EQ(jp.code, 0) << jp.err;
  google::protobuf::Struct mine = item(jp, id);
  ASSERT_EQ(mine.fields().count("waits_on"), 1u) << jp.out;
  EXPECT_EQ(mine.fields().at("waits_on").string_value(), "you");
  EXPECT_EQ(mine.fields().at("state").string_value(), "CASE_DELIVERED");
  EXPECT_THAT(verbs(mine), ::testing::ElementsAre("ack", "review", "accept", "refuse", "ask"));
  EXPECT_EQ(mine.fields().count("deadline"), 1u) << jp.out;  // The acknowledgement is due.
  CliResult fr = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "inbox", "--json"});
  EXPECT_EQ(item(fr, id).fields().at("waits_on").string_value(), "JP");

  ASSERT_EQ(Jp({"ask", id, "--text", "Which accounts?"}).code, 0);
  ASSERT_TRUE(FranceSees(id, v1::CASE_INFO_REQUESTED));
  fr = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "inbox", "--json"});
  google::protobuf::Struct theirs = item(fr, id);
  EXPECT_EQ(theirs.fields().at("waits_on").string_value(), "you");
  EXPECT_THAT(verbs(theirs), ::testing::Contains("answer"));
  EXPECT_EQ(item(Jp({"inbox", "--json"}), id).fields().at("waits_on").string_value(), "FR");

  // The text form: a header, the verbs as commands to run.
  CliResult text = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "inbox"});
  EXPECT_THAT(text.out, HasSubstr("WAITS ON  DEADLINE"));
  EXPECT_THAT(text.out, HasSubstr("next: comity answer " + id));
}

TEST_F(CaseE2eTest, ABindingRequestCannotBeRefusedOnAGroundTheTreatyExcludes) {
  // Mutual assistance for an Art 2-11 offence: not refusable as fiscal
  // (ETS185 Art 25(4)).
  std::string id = Submit("MUTUAL_ASSISTANCE", "DATA_INTERFERENCE");
  CliResult r = Jp({"refuse", id, "--ground", "FISCAL_OFFENCE", "--reasons", "tax matter"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("FISCAL_OFFENCE is not a ground it leaves open"));
  EXPECT_EQ(CaseState("JP", id), v1::CASE_DELIVERED);
  CliResult no_reasons = Jp({"refuse", id, "--ground", "ESSENTIAL_INTERESTS"});
  EXPECT_EQ(no_reasons.code, 1);
  EXPECT_THAT(no_reasons.err, HasSubstr("Art 27(7)"));
}

TEST_F(CaseE2eTest, IllegalStepsAndWrongSidesAreRefused) {
  std::string id = Submit("PRESERVATION", "DATA_INTERFERENCE");
  CliResult early = Jp({"respond", id, "--text", "here", "--final"});
  EXPECT_EQ(early.code, 1);
  EXPECT_THAT(early.err, HasSubstr("respond (RESPOND) is not allowed in state CASE_DELIVERED; allowed for the requested party in CASE_DELIVERED: ack, review, accept, refuse, ask"));
  // The requesting party does not decide on its own request...
  CliResult fr = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "accept", id});
  EXPECT_EQ(fr.code, 1);
  EXPECT_THAT(fr.err, HasSubstr("only the requested party can ACCEPT"));
  // ...nor the requested party withdraw it.
  CliResult jp = Jp({"withdraw", id});
  EXPECT_EQ(jp.code, 1);
  EXPECT_THAT(jp.err, HasSubstr("only the requesting party can WITHDRAW"));
  // Deciding needs the reviewer role; acting on a sent request the submitter role.
  CliResult carol = Cli({"--connect", net_->ClientConfigPath("JP", "carol"), "accept", id});
  EXPECT_EQ(carol.code, 1);
  EXPECT_THAT(carol.err, HasSubstr("lacks the reviewer"));
  CliResult bob = Cli({"--connect", net_->ClientConfigPath("FR", "bob"), "withdraw", id});
  EXPECT_EQ(bob.code, 1);
  EXPECT_THAT(bob.err, HasSubstr("lacks the submitter role"));
}

TEST_F(CaseE2eTest, ExtraditionRefusedOnNationalityOpensTheDutyToProsecute) {
  std::string id = Submit("EXTRADITION", "ILLEGAL_ACCESS");
  CliResult r = Jp({"refuse", id, "--ground", "NATIONALITY", "--reasons",
                    "the person is a national of JP"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("open duty: ETS185 Art 24(6)"));
  EXPECT_TRUE(FranceSees(id, v1::CASE_REFUSED));
}

TEST_F(CaseE2eTest, StepsReachARequesterThatWasDownInOrder) {
  std::string id = Submit("PRESERVATION", "DATA_INTERFERENCE");
  net_->Stop("FR");
  ASSERT_EQ(Jp({"ack", id}).code, 0);
  ASSERT_EQ(Jp({"accept", id}).code, 0);
  ASSERT_THAT(net_->Start("FR"), IsOk());
  EXPECT_TRUE(FranceSees(id, v1::CASE_ACCEPTED));
  auto fr = net_->server("FR")->node()->Get(id);
  EXPECT_EQ((*fr)[0].transitions_size(), 2);
}

TEST_F(CaseE2eTest, TheRequesterAnswersQuestionsWithdrawsAndCloses) {
  std::string id = Submit("PRESERVATION", "DATA_INTERFERENCE");
  std::string alice = net_->ClientConfigPath("FR", "alice");
  ASSERT_EQ(Jp({"ask", id, "--text", "which time zone are the log times in?"}).code, 0);
  EXPECT_TRUE(FranceSees(id, v1::CASE_INFO_REQUESTED));
  CliResult answer = Cli({"--connect", alice, "answer", id, "--text", "UTC"});
  ASSERT_EQ(answer.code, 0) << answer.err;
  EXPECT_EQ(CaseState("FR", id), v1::CASE_UNDER_REVIEW);
  EXPECT_EQ(CaseState("JP", id), v1::CASE_UNDER_REVIEW);
  CliResult again = Cli({"--connect", alice, "answer", id, "--text", "UTC"});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr("answer (PROVIDE_INFO) is not allowed in state CASE_UNDER_REVIEW; allowed for the requesting party in CASE_UNDER_REVIEW: withdraw"));
  CliResult withdraw = Cli({"--connect", alice, "withdraw", id, "--text", "suspect arrested"});
  ASSERT_EQ(withdraw.code, 0) << withdraw.err;
  EXPECT_EQ(CaseState("JP", id), v1::CASE_WITHDRAWN);
  // JP cannot accept a withdrawn request.
  EXPECT_EQ(Jp({"accept", id}).code, 1);
  ASSERT_EQ(Cli({"--connect", alice, "close", id}).code, 0);
  EXPECT_EQ(CaseState("JP", id), v1::CASE_CLOSED);
  EXPECT_TRUE(FranceSees(id, v1::CASE_CLOSED));
  // The steps FR took are signed by FR (its proposals) inside JP's numbering.
  auto fr = net_->server("FR")->node()->Get(id);
  auto jp = net_->server("JP")->node()->Get(id);
  ASSERT_EQ((*fr)[0].transitions_size(), 4);  // Asked, answered, withdrawn, closed.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ((*fr)[0].transitions(i).SerializeAsString(),
              (*jp)[0].transitions(i).SerializeAsString());
  }
  CliResult show = Cli({"--connect", alice, "show", id});
  EXPECT_THAT(show.out, HasSubstr("3. WITHDRAW -> CASE_WITHDRAWN by FR (alice)"));
}

TEST_F(CaseE2eTest, LateBindingRequestsAreEscalatedAndPreservationsFlagged) {
  testing::LogCapture logs;
  ASSERT_THAT(net_->Start("FR", &clock_), IsOk());
  ASSERT_THAT(net_->Start("JP", &clock_), IsOk());
  std::string id = Submit("PRESERVATION", "DATA_INTERFERENCE");  // BINDING, ROUTINE.
  CliResult none = Jp({"overdue"});
  EXPECT_THAT(none.out, HasSubstr("nothing is late"));

  clock_.Advance(absl::Hours(73));  // Past the 72 h to acknowledge.
  for (const char* party : {"JP", "FR"}) {
    CliResult late = Cli({"--connect", net_->ClientConfigPath(party, "alice"), "overdue"});
    EXPECT_THAT(late.out, HasSubstr("LATE    ACKNOWLEDGE  " + id)) << party;
  }
  net_->server("JP")->node()->deadlines().Check();
  net_->server("JP")->node()->deadlines().Check();  // Escalated once, not twice.
  EXPECT_TRUE(logs.Contains("deadline_missed", id)) << logs.All();
  CliResult escalated = Cli({"--connect", net_->ClientConfigPath("JP", "carol"), "audit",
                             "log", "--request", id, "--type", "CASE_ESCALATED"});
  EXPECT_THAT(escalated.out, HasSubstr("ACKNOWLEDGE overdue since"));
  EXPECT_THAT(escalated.out, HasSubstr("(1 of"));

  // Accepted, the preservation runs 60 days (ETS185 Art 29(7)); a week
  // before it lapses both sides see it.
  ASSERT_EQ(Jp({"accept", id}).code, 0);
  EXPECT_TRUE(FranceSees(id, v1::CASE_ACCEPTED));
  EXPECT_THAT(Jp({"overdue"}).out, HasSubstr("nothing is late"));
  clock_.Advance(absl::Hours(24 * 54));
  for (const char* party : {"JP", "FR"}) {
    CliResult expiring = Cli({"--connect", net_->ClientConfigPath(party, "alice"), "overdue"});
    EXPECT_THAT(expiring.out, HasSubstr("EXPIRES PRESERVATION_EXPIRY  " + id)) << party;
    EXPECT_THAT(expiring.out, HasSubstr("Art 29(7)"));
  }
  net_->Stop("FR");
  net_->Stop("JP");
}

TEST_F(CaseE2eTest, FollowUpRequestsFormAChainBothSidesCanShow) {
  std::string preservation = Submit("PRESERVATION", "DATA_INTERFERENCE");
  std::string alice = net_->ClientConfigPath("FR", "alice");
  auto follow = [&](const std::string& type, const std::string& related) {
    CliResult r = Cli({"--connect", alice, "submit", "--to", "JP", "--type", type, "--offence",
                       "DATA_INTERFERENCE", "--authority", "Parquet de Paris", "--facts",
                       "ransomware", "--related", related, "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  };
  std::string disclosure = follow("TRAFFIC_DATA_DISCLOSURE", preservation);
  std::string access = follow("STORED_DATA_ACCESS", disclosure);
  for (const char* party : {"FR", "JP"}) {
    CliResult chain = Cli({"--connect", net_->ClientConfigPath(party, "alice"), "show",
                           disclosure, "--chain"});
    ASSERT_EQ(chain.code, 0) << chain.err;
    EXPECT_THAT(chain.out, HasSubstr("chain of 3 request record(s)")) << party;
    size_t a = chain.out.find("1. "), b = chain.out.find("2. "), c = chain.out.find("3. ");
    EXPECT_LT(chain.out.find(preservation), chain.out.find(disclosure));
    EXPECT_NE(a, std::string::npos);
    EXPECT_LT(a, b);
    EXPECT_LT(b, c);
    EXPECT_THAT(chain.out, HasSubstr("STORED_DATA_ACCESS  FR -> JP"));
    EXPECT_THAT(chain.out, HasSubstr("(follows " + disclosure + ")"));
  }
  CliResult unknown = Cli({"--connect", alice, "submit", "--to", "JP", "--type",
                           "TRAFFIC_DATA_DISCLOSURE", "--offence", "DATA_INTERFERENCE",
                           "--authority", "x", "--facts", "y", "--related",
                           "0f8fad5b-d9cb-469f-a165-70867728950e"});
  EXPECT_EQ(unknown.code, 1);
  EXPECT_THAT(unknown.err, HasSubstr("is unknown to this node"));
  (void)access;
}

// Writes `bytes` of deterministic pseudo-random data to `path`.
std::string MakeFile(const std::string& path, size_t bytes) {
  std::string data(bytes, '\0');
  uint64_t x = 0x9e3779b97f4a7c15;
  for (size_t i = 0; i < bytes; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    data[i] = static_cast<char>(x);
  }
  EXPECT_THAT(WriteFileAtomically(path, data, 0600), IsOk());
  return Sha256(data);
}

TEST_F(CaseE2eTest, EvidenceIsStreamedVerifiedAndResumed) {
  std::string id = Submit("PRESERVATION", "DATA_INTERFERENCE");
  ASSERT_EQ(Jp({"accept", id}).code, 0);
  const std::string logs_path = net_->dir() + "/connection-logs.tar";
  const std::string disk_path = net_->dir() + "/disk-image.raw";
  const std::string logs_sha = MakeFile(logs_path, 5 << 20);
  const std::string disk_sha = MakeFile(disk_path, (6 << 20) + 12345);

  // FR already holds the first 2 MiB of the disk image, as after a transfer
  // cut short: the fetch must resume there.
  EvidenceStore* fr_store = &net_->server("FR")->node()->evidence().files();
  auto disk = ReadFile(disk_path);
  ASSERT_THAT(disk, IsOk());
  ASSERT_THAT(fr_store->BeginUpload(HexEncode(disk_sha), disk->size(), disk_sha),
              testing::IsOkAndHolds(0u));
  ASSERT_THAT(fr_store->AppendChunk(HexEncode(disk_sha), 0, disk->substr(0, 2 << 20)), IsOk());

  CliResult partial = Jp({"respond", id, "--text", "connection logs", "--file", logs_path});
  ASSERT_EQ(partial.code, 0) << partial.err;
  CliResult final_response = Jp({"respond", id, "--text", "disk image of the C2 server",
                                 "--file", disk_path, "--final"});
  ASSERT_EQ(final_response.code, 0) << final_response.err;
  EXPECT_TRUE(FranceSees(id, v1::CASE_EXECUTED));
  net_->server("FR")->node()->evidence().FetchRound("JP", [] { return false; });
  EXPECT_TRUE(fr_store->Has(logs_sha));
  EXPECT_TRUE(fr_store->Has(disk_sha));
  auto fetched = ReadFile(fr_store->PathOf(disk_sha));
  ASSERT_THAT(fetched, IsOk());
  EXPECT_EQ(Sha256(*fetched), disk_sha);

  CliResult show = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "show", id});
  EXPECT_THAT(show.out, HasSubstr("evidence:  connection-logs.tar, 5242880 bytes"));
  EXPECT_THAT(show.out, HasSubstr("verified, " + fr_store->PathOf(disk_sha)));
  CliResult log = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "audit", "log",
                       "--request", id, "--type", "EVIDENCE_RECEIVED"});
  EXPECT_THAT(log.out, HasSubstr("disk-image.raw, 6303801 bytes, SHA-256 verified"));

  // Evidence is only for the party that asked: JP's own request elsewhere
  // is not readable, and FR cannot fetch what was not given to it.
  absl::Status denied =
      net_->server("JP")->node()->evidence().CheckAccess("FR", id, Sha256("not given"));
  EXPECT_TRUE(absl::IsPermissionDenied(denied)) << denied;
}

TEST_F(CaseE2eTest, ConditionalReleaseAndTlpRedExport) {
  CliResult submitted = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "submit", "--to",
                             "JP", "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE",
                             "--authority", "Parquet de Paris", "--facts", "ransomware",
                             "--data-sought", "logs", "--relation", "C2", "--custodian", "DC",
                             "--necessity", "rotation", "--intent-mla", "--tlp", "RED", "--json"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  std::string id = ParseJson(submitted.out).fields().at("id").string_value();
  ASSERT_EQ(Jp({"accept", id}).code, 0);
  const std::string path = net_->dir() + "/subscriber-records.csv";
  const std::string sha = MakeFile(path, 300000);
  const std::string condition = "use only in the proceedings against the ransomware group";
  ASSERT_EQ(Jp({"respond", id, "--text", "records", "--file", path, "--final", "--condition",
                condition})
                .code,
            0);
  EXPECT_TRUE(FranceSees(id, v1::CASE_EXECUTED));

  // Not released before FR accepts the condition.
  Node* fr = net_->server("FR")->node();
  fr->evidence().FetchRound("JP", [] { return false; });
  EXPECT_FALSE(fr->evidence().files().Has(sha));
  absl::Status held = net_->server("JP")->node()->evidence().CheckAccess("FR", id, sha);
  EXPECT_TRUE(absl::IsFailedPrecondition(held)) << held;
  EXPECT_THAT(std::string(held.message()), HasSubstr(condition));

  std::string alice = net_->ClientConfigPath("FR", "alice");
  CliResult accepted = Cli({"--connect", alice, "accept-conditions", id});
  ASSERT_EQ(accepted.code, 0) << accepted.err;
  EXPECT_THAT(accepted.out, HasSubstr("accepted condition: " + condition));
  EXPECT_EQ(CaseState("JP", id), v1::CASE_EXECUTED);  // The state does not move.
  fr->evidence().FetchRound("JP", [] { return false; });
  EXPECT_TRUE(fr->evidence().files().Has(sha));

  // TLP:RED leaves the node only with the explicit flag, and that is logged.
  testing::TempDir out;
  CliResult refused = Cli({"--connect", alice, "export", id, "--out", out.path()});
  EXPECT_EQ(refused.code, 1);
  EXPECT_THAT(refused.err, HasSubstr("TLP:RED"));
  CliResult exported =
      Cli({"--connect", alice, "export", id, "--out", out.path(), "--allow-tlp-red"});
  ASSERT_EQ(exported.code, 0) << exported.err;
  auto copy = ReadFile(out.path() + "/evidence/subscriber-records.csv");
  ASSERT_THAT(copy, IsOk());
  EXPECT_EQ(Sha256(*copy), sha);
  CliResult log = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "audit", "log",
                       "--request", id, "--type", "EVIDENCE_EXPORTED"});
  EXPECT_THAT(log.out, HasSubstr("operator:alice"));
  EXPECT_THAT(log.out, HasSubstr("TLP_RED, exported with --allow-tlp-red"));
}

}  // namespace
}  // namespace comity
