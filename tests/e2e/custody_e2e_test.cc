// The custody package end to end, on real nodes over TLS: FR asks JP, JP
// responds with an evidence file under a use condition, FR accepts it and
// exports the case with `comity export ID --out DIR`. The package verifies
// offline with `comity verify-package DIR` (no node, no configuration), the
// export is in FR's audit log with the package's SHA-256 and destination,
// and every kind of tampering a court must catch is caught and named: a
// changed, missing or extra evidence file, an edited manifest, a step
// removed or altered in package.pb, a key swapped, a log entry changed.
#include <sys/stat.h>

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/custody.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
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
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr char kCondition[] = "use only in the proceedings against the ransomware group";

// A copy of the package directory `from` (package.pb, manifest.json and
// evidence/), to tamper with.
void CopyPackage(const std::string& from, const std::string& to) {
  ASSERT_THAT(EnsureDir(to), IsOk());
  ASSERT_THAT(EnsureDir(to + "/evidence"), IsOk());
  for (const std::string& name : ListDir(from)) {
    if (name == "evidence") continue;
    auto bytes = ReadFile(from + "/" + name);
    ASSERT_THAT(bytes, IsOk());
    ASSERT_THAT(WriteFileAtomically(to + "/" + name, *bytes, 0600), IsOk());
  }
  for (const std::string& name : ListDir(from + "/evidence")) {
    auto bytes = ReadFile(from + "/evidence/" + name);
    ASSERT_THAT(bytes, IsOk());
    ASSERT_THAT(WriteFileAtomically(to + "/evidence/" + name, *bytes, 0600), IsOk());
  }
}

v1::CustodyPackage ReadPackage(const std::string& dir) {
  v1::CustodyPackage p;
  auto bytes = ReadFile(dir + "/package.pb");
  EXPECT_THAT(bytes, IsOk());
  if (bytes.ok()) {
    EXPECT_TRUE(p.ParseFromString(*bytes));
  }
  return p;
}

void WritePackage(const std::string& dir, const v1::CustodyPackage& p) {
  ASSERT_THAT(WriteFileAtomically(dir + "/package.pb", p.SerializeAsString(), 0600), IsOk());
}

class CustodyE2eTest : public ::testing::Test {
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
  bool Holds(const std::string& party, const std::string& id, int steps) {
    for (int i = 0; i < 200 && Steps(party, id) < steps; ++i) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    return Steps(party, id) >= steps;
  }

  // FR -> JP, accepted, answered with `data` under kCondition, the
  // condition accepted by FR and the file fetched. Returns the id.
  std::string AcceptedCase(const std::string& data) {
    CliResult r = Cli(testing::SubmitPreservationArgs(alice_, "JP"));
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) return "";
    const std::string id = ParseJson(r.out).fields().at("id").string_value();
    EXPECT_EQ(Jp({"accept", id}).code, 0);
    const std::string file = net_->dir() + "/connection-logs.tar";
    EXPECT_THAT(WriteFileAtomically(file, data, 0600), IsOk());
    CliResult responded = Jp({"respond", id, "--text", "the logs", "--file", file,
                              "--condition", kCondition});
    EXPECT_EQ(responded.code, 0) << responded.err;
    EXPECT_TRUE(Holds("FR", id, 2));
    CliResult accepted = Fr({"accept-conditions", id});
    EXPECT_EQ(accepted.code, 0) << accepted.err;
    EXPECT_TRUE(Holds("JP", id, 3));
    Node* fr = net_->server("FR")->node();
    for (int i = 0; i < 200 && !fr->evidence().files().Has(Sha256(data)); ++i) {
      fr->evidence().FetchRound("JP", [] { return false; });
      absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_TRUE(fr->evidence().files().Has(Sha256(data)));
    return id;
  }

  // verify-package on `dir`: the exit code, and the first failure's text.
  CliResult Verify(const std::string& dir) { return Cli({"verify-package", dir}); }

  std::unique_ptr<testing::TestNetwork> net_;
  std::string alice_, jp_bob_;
};

TEST_F(CustodyE2eTest, AnExportedPackageVerifiesOfflineAndIsAudited) {
  const std::string data(250000, 'L');
  const std::string id = AcceptedCase(data);
  ASSERT_FALSE(id.empty());
  const std::string out = net_->dir() + "/court/case-1";

  CliResult exported = Fr({"export", id, "--out", out});
  ASSERT_EQ(exported.code, 0) << exported.err;
  EXPECT_THAT(exported.out, HasSubstr("wrote " + out + "/evidence/connection-logs.tar"));
  EXPECT_THAT(exported.out, HasSubstr("wrote " + out + "/package.pb"));
  EXPECT_THAT(exported.out, HasSubstr("custody package of request " + id + " verified"));
  EXPECT_THAT(exported.out, HasSubstr("comity verify-package " + out));
  EXPECT_THAT(ListDir(out), UnorderedElementsAre("evidence", "manifest.json", "package.pb"));
  EXPECT_THAT(ListDir(out + "/evidence"), UnorderedElementsAre("connection-logs.tar"));
  struct stat st;
  ASSERT_EQ(::stat((out + "/package.pb").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // What the package holds: the signed case, the file with the RESPOND step
  // and the step that accepted its condition, keys of both parties, FR's
  // log entries about the request.
  const v1::CustodyPackage p = ReadPackage(out);
  EXPECT_EQ(p.party(), "FR");
  EXPECT_EQ(p.request_id(), id);
  EXPECT_EQ(p.exported_by(), "operator:alice");
  EXPECT_EQ(p.destination(), out);
  EXPECT_TRUE(p.has_receipt());
  EXPECT_EQ(p.transitions_size(), 3);
  ASSERT_EQ(p.files_size(), 1);
  EXPECT_EQ(p.files(0).path(), "evidence/connection-logs.tar");
  EXPECT_EQ(p.files(0).respond_step(), 2u);
  EXPECT_EQ(p.files(0).accepted_in_step(), 3u);
  ASSERT_EQ(p.files(0).release_conditions_size(), 1);
  EXPECT_EQ(p.files(0).release_conditions(0), kCondition);
  std::set<std::string> key_parties;
  for (const auto& k : p.keys()) key_parties.insert(k.party());
  EXPECT_EQ(key_parties, (std::set<std::string>{"FR", "JP"}));
  std::set<int> types;
  for (const auto& pe : p.entries()) {
    v1::AuditEntry e;
    ASSERT_TRUE(e.ParseFromString(pe.entry()));
    EXPECT_EQ(e.request_id(), id);
    types.insert(e.type());
  }
  for (int t : {v1::REQUEST_SUBMITTED, v1::DELIVERY_ACKNOWLEDGED, v1::CASE_UPDATED,
                v1::EVIDENCE_RECEIVED}) {
    EXPECT_EQ(types.count(t), 1u) << v1::AuditEventType_Name(t);
  }

  // Offline, by a court: every check passes; the key fingerprints are shown.
  CliResult verified = Verify(out);
  ASSERT_EQ(verified.code, 0) << verified.out << verified.err;
  EXPECT_THAT(verified.out, HasSubstr("verified: 1 files, 3 signed steps"));
  EXPECT_THAT(verified.out, Not(HasSubstr("FAIL")));
  for (const auto& k : p.keys()) {
    EXPECT_THAT(verified.out, HasSubstr(KeyFingerprint(k.ed25519_public_key())));
  }
  EXPECT_THAT(verified.out,
              HasSubstr("conditions accepted by FR in step 3"));
  CliResult json = Cli({"verify-package", out, "--json"});
  ASSERT_EQ(json.code, 0) << json.err;
  const auto fields = ParseJson(json.out).fields();
  EXPECT_TRUE(fields.at("ok").bool_value());
  EXPECT_EQ(fields.at("files").number_value(), 1);
  const std::string package_sha =
      HexEncode(Sha256(*ReadFile(out + "/package.pb")));
  EXPECT_EQ(fields.at("package_sha256").string_value(), package_sha);

  // The manifest says the same for people.
  auto manifest = ReadFile(out + "/manifest.json");
  ASSERT_THAT(manifest, IsOk());
  const auto m = ParseJson(*manifest).fields();
  EXPECT_EQ(m.at("package_sha256").string_value(), package_sha);
  EXPECT_EQ(m.at("files").list_value().values(0).struct_value().fields().at("sha256")
                .string_value(),
            HexEncode(Sha256(data)));

  // FR's log records the export: the package's SHA-256 and where it went.
  const std::string carol = net_->ClientConfigPath("FR", "carol");
  CliResult log = Cli({"--connect", carol, "audit", "log", "--request", id,
                       "--type", "CUSTODY_PACKAGE_EXPORTED", "--json"});
  ASSERT_EQ(log.code, 0) << log.err;
  EXPECT_THAT(log.out, HasSubstr(package_sha));
  EXPECT_THAT(log.out, HasSubstr("to " + out));
  EXPECT_THAT(log.out, HasSubstr("operator:alice"));

  // The same directory again: refused before anything is written.
  CliResult again = Fr({"export", id, "--out", out});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr("already holds a custody package"));

  // The requested party's own package of its response verifies too.
  const std::string jp_out = net_->dir() + "/jp-package";
  CliResult jp = Jp({"export", id, "--out", jp_out});
  ASSERT_EQ(jp.code, 0) << jp.err;
  CliResult jp_verified = Verify(jp_out);
  EXPECT_EQ(jp_verified.code, 0) << jp_verified.out;
  EXPECT_EQ(ReadPackage(jp_out).party(), "JP");
}

TEST_F(CustodyE2eTest, EveryTamperingIsCaughtAndNamed) {
  const std::string data(120000, 'T');
  const std::string id = AcceptedCase(data);
  ASSERT_FALSE(id.empty());
  const std::string out = net_->dir() + "/original";
  ASSERT_EQ(Fr({"export", id, "--out", out}).code, 0);
  ASSERT_EQ(Verify(out).code, 0);
  int n = 0;
  auto copy = [&]() {
    const std::string dir = absl::StrCat(net_->dir(), "/tampered-", ++n);
    CopyPackage(out, dir);
    EXPECT_EQ(Verify(dir).code, 0) << "the copy itself verifies";
    return dir;
  };
  auto expect_fails = [&](const std::string& dir, const std::string& what,
                          const std::string& why) {
    CliResult r = Verify(dir);
    EXPECT_EQ(r.code, 1) << r.out;
    EXPECT_THAT(r.out, HasSubstr("NOT verified: " + what)) << r.out;
    EXPECT_THAT(r.out, HasSubstr(why)) << r.out;
  };

  // One byte of the evidence file.
  {
    const std::string dir = copy();
    std::string changed = data;
    changed[60000] = 'X';
    ASSERT_THAT(
        WriteFileAtomically(dir + "/evidence/connection-logs.tar", changed, 0600), IsOk());
    expect_fails(dir, "evidence/connection-logs.tar", "changed after it was released");
  }
  // The evidence file gone; another one added.
  {
    const std::string dir = copy();
    ASSERT_EQ(::unlink((dir + "/evidence/connection-logs.tar").c_str()), 0);
    expect_fails(dir, "evidence/connection-logs.tar", "missing");
  }
  {
    const std::string dir = copy();
    ASSERT_THAT(WriteFileAtomically(dir + "/evidence/planted.txt", "x", 0600), IsOk());
    expect_fails(dir, "evidence/planted.txt", "not a file of the package");
  }
  // The manifest edited (a person's reading of the package).
  {
    const std::string dir = copy();
    std::string manifest = *ReadFile(dir + "/manifest.json");
    const size_t at = manifest.find(kCondition);
    ASSERT_NE(at, std::string::npos);
    manifest.replace(at, 8, "use for ");
    ASSERT_THAT(WriteFileAtomically(dir + "/manifest.json", manifest, 0600), IsOk());
    expect_fails(dir, "manifest.json", "edited after export");
  }
  // The step that accepted the condition removed from package.pb: the file
  // is then released under a condition nobody accepted.
  {
    const std::string dir = copy();
    v1::CustodyPackage p = ReadPackage(dir);
    p.mutable_transitions()->RemoveLast();
    WritePackage(dir, p);
    expect_fails(dir, "evidence/connection-logs.tar", "no ACCEPT_CONDITIONS step");
  }
  // The RESPOND step's text altered: its signature no longer holds.
  {
    const std::string dir = copy();
    v1::CustodyPackage p = ReadPackage(dir);
    v1::Transition t;
    ASSERT_TRUE(t.ParseFromString(p.transitions(1).payload()));
    t.set_text("other logs");
    p.mutable_transitions(1)->set_payload(t.SerializeAsString());
    WritePackage(dir, p);
    expect_fails(dir, "step 2", "");
  }
  // JP's key swapped for another: nothing JP signed verifies.
  {
    const std::string dir = copy();
    v1::CustodyPackage p = ReadPackage(dir);
    auto other = SigningKey::Generate();
    ASSERT_THAT(other, IsOk());
    for (auto& k : *p.mutable_keys()) {
      if (k.party() == "JP") k.set_ed25519_public_key((*other)->public_key());
    }
    WritePackage(dir, p);
    expect_fails(dir, "receipt", "");
  }
  // One of FR's log entries changed: its inclusion proof fails.
  {
    const std::string dir = copy();
    v1::CustodyPackage p = ReadPackage(dir);
    ASSERT_GT(p.entries_size(), 0);
    v1::AuditEntry e;
    ASSERT_TRUE(e.ParseFromString(p.entries(0).entry()));
    e.set_actor("operator:mallory");
    p.mutable_entries(0)->set_entry(e.SerializeAsString());
    WritePackage(dir, p);
    expect_fails(dir, absl::StrCat("log entry ", e.index()), "");
  }
  // Not a package at all.
  {
    const std::string dir = copy();
    ASSERT_THAT(WriteFileAtomically(dir + "/package.pb", "not a package", 0600), IsOk());
    expect_fails(dir, "package", "not a comity.v1.CustodyPackage");
  }
  CliResult usage = Cli({"verify-package", net_->dir() + "/no-such-dir"});
  EXPECT_EQ(usage.code, 2);
  EXPECT_THAT(usage.err, HasSubstr("is not a directory"));
}

TEST_F(CustodyE2eTest, ACaseWithoutEvidenceStillGetsAPackageOfItsSignedSteps) {
  CliResult r = Cli(testing::SubmitPreservationArgs(alice_, "JP"));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string id = ParseJson(r.out).fields().at("id").string_value();
  CliResult refused = Jp({"refuse", id, "--ground", "ESSENTIAL_INTERESTS", "--reasons",
                          "essential interests of the requested party"});
  ASSERT_EQ(refused.code, 0) << refused.err;
  ASSERT_TRUE(Holds("FR", id, 1));
  const std::string out = net_->dir() + "/refused";
  CliResult exported = Fr({"--json", "export", id, "--out", out});
  ASSERT_EQ(exported.code, 0) << exported.err;
  const auto f = ParseJson(exported.out).fields();
  EXPECT_TRUE(f.at("verified").bool_value());
  EXPECT_EQ(f.at("files").list_value().values_size(), 0);
  EXPECT_EQ(Verify(out).code, 0);
  EXPECT_THAT(*ReadFile(out + "/manifest.json"), HasSubstr("ESSENTIAL_INTERESTS"));
}

}  // namespace
}  // namespace comity
