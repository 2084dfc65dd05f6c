// Backup and restore of a running node (docs/backup.md): `comity admin
// backup` while FR works, more work, FR restored from the copy; its log
// verifies, stays consistent with the heads JP saw, and the case steps it
// lost come back from JP's outbox. A head FR signed after the backup and
// shown to JP stops the restored node from starting until acknowledged.
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "comity/v1/operator.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
using ::comity::testing::LogCapture;
using ::comity::testing::ParseJson;
using ::testing::HasSubstr;

class BackupE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    if (!net_->ConfigText("FR").empty() &&
        net_->ConfigText("FR").find("database:") != std::string::npos) {
      GTEST_SKIP() << "PostgreSQL store: backups are pg_dump's (docs/backup.md)";
    }
    // Heads travel only when the test says so: no periodic gossip after
    // the round each node makes at start.
    for (const char* p : {"FR", "JP"}) {
      net_->ConfigText(p) += "audit { head_interval_seconds: 3600 }\n";
    }
    MakeAdmin("FR", "erin");
    MakeAdmin("JP", "erin");
    ASSERT_THAT(net_->Start("JP"), IsOk());
    ASSERT_THAT(net_->Start("FR"), IsOk());
    // FR's first gossip round shows JP a head of FR's log.
    ASSERT_TRUE(WaitFor([&] { return HeldFrHeadSize() > 0; })) << "JP never saw FR's head";
    // JP's own first round (half a second after its start) also brings it
    // FR's head: past it, JP sees FR's heads only when a test shows them.
    absl::SleepFor(absl::Seconds(1));
  }

  // An operator certificate with the admin role, issued by the party's CA
  // as certs/make-network.sh issues the others.
  void MakeAdmin(const std::string& party, const std::string& name) {
    const std::string dir = net_->PartyDir(party);
    const std::string base = absl::StrCat(dir, "/operators/", name);
    const std::string cmd = absl::StrCat(
        "set -e; cd '", dir, "'; umask 077; ",
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out '", base,
        ".key' 2>/dev/null; ",
        "openssl req -new -key '", base, ".key' -subj '/CN=", name, " (", party, ")' -out '",
        base, ".csr' 2>/dev/null; ",
        "printf 'basicConstraints = critical, CA:FALSE\\nkeyUsage = critical, "
        "digitalSignature, keyEncipherment\\nextendedKeyUsage = clientAuth\\n"
        "subjectAltName = URI:urn:comity:operator:",
        party, ":", name, ", URI:urn:comity:role:admin\\n' > '", base, ".ext'; ",
        "openssl x509 -req -in '", base, ".csr' -CA ca.pem -CAkey ca.key -CAcreateserial ",
        "-CAserial '", base, ".srl' -days 30 -sha256 -extfile '", base, ".ext' -out '", base,
        ".pem' 2>/dev/null");
    ASSERT_EQ(testing::RunShell(cmd), 0) << cmd;
  }

  template <typename F>
  bool WaitFor(F done, absl::Duration limit = absl::Seconds(20)) {
    const absl::Time end = absl::Now() + limit;
    while (absl::Now() < end) {
      if (done()) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return done();
  }

  // The size of the latest head of FR's log that JP holds; 0 if none.
  uint64_t HeldFrHeadSize() {
    auto held = net_->server("JP")->node()->store()->audit().LatestPeerHead("FR");
    return held.ok() && held->has_value() ? (*held)->head.tree_size() : 0;
  }

  std::string Submit(const std::string& from = "FR", const std::string& to = "JP") {
    CliResult r = Cli({"--connect", net_->ClientConfigPath(from, "alice"), "submit", "--to",
                       to, "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE",
                       "--authority", "Parquet de Paris", "--facts", "ransomware",
                       "--data-sought", "logs", "--relation", "C2", "--custodian",
                       "Hosting KK", "--necessity", "rotation", "--intent-mla", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return r.code == 0 ? ParseJson(r.out).fields().at("id").string_value() : "";
  }
  CliResult Jp(std::vector<std::string> args) { return As("JP", "bob", std::move(args)); }
  CliResult As(const std::string& party, const std::string& op, std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath(party, op)});
    return Cli(args);
  }
  v1::CaseState FrCase(const std::string& id) { return CaseAt("FR", id); }
  v1::CaseState CaseAt(const std::string& party, const std::string& id) {
    auto records = net_->server(party)->node()->Get(id);
    return records.ok() && !records->empty() ? (*records)[0].case_state()
                                             : v1::CASE_STATE_UNSPECIFIED;
  }
  // The one record `party` holds under `id` (an empty one if none).
  v1::RequestRecord RecordAt(const std::string& party, const std::string& id) {
    auto records = net_->server(party)->node()->Get(id);
    return records.ok() && records->size() == 1 ? (*records)[0] : v1::RequestRecord();
  }
  // `comity admin backup`; the audit size the copy holds.
  uint64_t Backup(const std::string& file, const std::string& party = "FR") {
    CliResult r = Cli({"--connect", net_->ClientConfigPath(party, "erin"), "admin", "backup",
                       "--out", file, "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) return 0;
    return static_cast<uint64_t>(ParseJson(r.out).fields().at("audit_size").number_value());
  }
  // Stops FR and puts `file` in place of its database, as docs/backup.md says.
  void RestoreFr(const std::string& file) { Restore("FR", file); }
  // Starts a restored node, acknowledging the restore if a peer holds a
  // head signed after the backup (which depends on what gossip showed it).
  absl::Status StartRestored(const std::string& party) {
    absl::Status started = net_->Start(party);
    if (!absl::IsFailedPrecondition(started)) return started;
    std::ofstream(net_->PartyDir(party) + "/data/accept-restored-log") << "disk lost\n";
    return net_->Start(party);
  }
  void Restore(const std::string& party, const std::string& file) {
    net_->Stop(party);
    const std::string db = net_->PartyDir(party) + "/data/comity.db";
    ASSERT_EQ(testing::RunShell(absl::StrCat("rm -f '", db, "-wal' '", db, "-shm' && cp '",
                                             file, "' '", db, "'")),
              0);
  }
  void ExpectAuditVerifies(const std::string& party = "FR") {
    CliResult v =
        Cli({"--connect", net_->ClientConfigPath(party, "carol"), "audit", "verify"});
    EXPECT_EQ(v.code, 0) << v.out << v.err;
    EXPECT_THAT(v.out, HasSubstr("consistent"));
  }
  bool FrLogHas(v1::AuditEventType type, const std::string& detail_part) {
    return LogHas("FR", type, detail_part);
  }
  bool LogHas(const std::string& party, v1::AuditEventType type,
              const std::string& detail_part) {
    AuditFilter f;
    f.type = type;
    auto entries = net_->server(party)->node()->store()->audit().Entries(f);
    if (!entries.ok()) return false;
    for (const std::string& bytes : *entries) {
      v1::AuditEntry e;
      if (e.ParseFromString(bytes) && e.detail().find(detail_part) != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(BackupE2eTest, OnlyAnAdminMayTakeABackup) {
  const std::string file = net_->dir() + "/denied.db";
  CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "admin", "backup",
                     "--out", file});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("admin role"));
  struct stat st;
  EXPECT_NE(::stat(file.c_str(), &st), 0) << "nothing is saved on a refusal";
}

TEST_F(BackupE2eTest, ABackupGoesIntoNewDirectoriesAndPrintsItsHash) {
  const std::string dir = net_->dir() + "/backups/fr";  // Neither exists.
  const std::string file = dir + "/2026-01-25.db";
  CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "erin"), "admin", "backup",
                     "--out", file});
  ASSERT_EQ(r.code, 0) << r.err;
  auto copy = ReadFile(file);
  ASSERT_THAT(copy, IsOk());
  EXPECT_THAT(
      r.out, HasSubstr(absl::StrCat("wrote ", file, " (", copy->size(), " bytes, sha256 ",
                                    HexEncode(Sha256(*copy)), ")")));
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"2026-01-25.db"}) << "no temp left";

  CliResult again = Cli({"--connect", net_->ClientConfigPath("FR", "erin"), "admin",
                         "backup", "--out", file});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, HasSubstr("exists"));
  auto unchanged = ReadFile(file);
  ASSERT_THAT(unchanged, IsOk());
  EXPECT_EQ(*unchanged, *copy);
}

TEST_F(BackupE2eTest, ABackupToANonAsciiPathPrintsValidJson) {
  // absl::CEscape once wrote this path with octal escapes ("\303..."), which
  // no JSON parser reads as the path (docs/cli.md).
  const std::string file = net_->dir() + "/sauvegardes-été/日本.db";
  CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "erin"), "admin", "backup",
                     "--out", file, "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const google::protobuf::Struct json = ParseJson(r.out);
  EXPECT_EQ(json.fields().at("file").string_value(), file);
  auto copy = ReadFile(file);
  ASSERT_THAT(copy, IsOk());
  EXPECT_EQ(json.fields().at("sha256").string_value(), HexEncode(Sha256(*copy)));
  EXPECT_EQ(json.fields().at("bytes").number_value(), static_cast<double>(copy->size()));
}

TEST_F(BackupE2eTest, ARestoredNodeVerifiesStaysConsistentAndGetsLostStepsBack) {
  LogCapture logs;
  const std::string a = Submit();
  ASSERT_FALSE(a.empty());

  // The backup is taken while another submission is in flight.
  const std::string file = net_->dir() + "/fr-backup.db";
  std::string b;
  std::thread in_flight([&] { b = Submit(); });
  const uint64_t backup_size = Backup(file);
  in_flight.join();
  ASSERT_GT(backup_size, 0u);
  struct stat st;
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(FrLogHas(v1::BACKUP_TAKEN, absl::StrCat(backup_size, " audit log entries")));

  // More work after the backup: JP's steps of case A reach FR, which
  // acknowledges them; FR's restored copy will not have them.
  for (const char* step : {"ack", "review", "accept"}) {
    CliResult r = Jp({step, a});
    ASSERT_EQ(r.code, 0) << step << ": " << r.err;
  }
  ASSERT_TRUE(WaitFor([&] { return FrCase(a) == v1::CASE_ACCEPTED; }));
  // The safe case: JP has seen no head FR signed after the backup.
  ASSERT_LE(HeldFrHeadSize(), backup_size);

  RestoreFr(file);
  // Gossip every second from now on, so that JP checks the restored log.
  net_->ConfigText("FR") = absl::StrReplaceAll(
      net_->ConfigText("FR"), {{"head_interval_seconds: 3600", "head_interval_seconds: 1"}});
  ASSERT_THAT(net_->Start("FR"), IsOk());
  EXPECT_TRUE(FrLogHas(v1::LOG_RESTORED, "JP: head of size"));
  EXPECT_TRUE(logs.Contains("log_restored", "consistent"));
  // The restored copy predates JP's steps; FR fetched them back from JP
  // before it started.
  EXPECT_EQ(FrCase(a), v1::CASE_ACCEPTED);
  EXPECT_TRUE(FrLogHas(v1::RECORDS_RECOVERED, "3 steps recovered")) << logs.All();
  EXPECT_TRUE(FrLogHas(v1::CASE_UPDATED, "recovered from JP"));
  ExpectAuditVerifies();

  // JP's next step follows what FR holds: no rewind needed.
  CliResult r = Jp({"respond", a, "--text", "preserved: 3 log files"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(WaitFor([&] { return FrCase(a) == v1::CASE_PARTLY_EXECUTED; }))
      << v1::CaseState_Name(FrCase(a)) << "\n"
      << logs.All();
  EXPECT_FALSE(logs.Contains("transitions_rewound", a));

  // The request in flight during the backup: if the copy holds it, it is
  // delivered (again: JP returns the same receipt).
  auto records = net_->server("FR")->node()->Get(b);
  if (records.ok() && !records->empty()) {
    EXPECT_TRUE(WaitFor([&] {
      auto now = net_->server("FR")->node()->Get(b);
      return now.ok() && (*now)[0].state() == v1::DELIVERED;
    }));
  }

  // JP takes FR's new heads as extensions of the ones it saw before the
  // backup: no split view.
  EXPECT_TRUE(WaitFor([&] { return HeldFrHeadSize() > backup_size; }));
  EXPECT_FALSE(logs.Contains("split_view_detected", "FR")) << logs.All();
  ExpectAuditVerifies();
}

TEST_F(BackupE2eTest, AHeadSignedAfterTheBackupStopsTheRestoredNodeUntilAcknowledged) {
  LogCapture logs;
  const std::string a = Submit();
  ASSERT_FALSE(a.empty());
  const std::string file = net_->dir() + "/fr-backup.db";
  const uint64_t backup_size = Backup(file);
  ASSERT_GT(backup_size, 0u);

  // FR goes on and JP sees a head of the longer log.
  ASSERT_EQ(Jp({"ack", a}).code, 0);
  ASSERT_TRUE(WaitFor([&] { return FrCase(a) == v1::CASE_ACKNOWLEDGED; }));
  auto head = net_->server("FR")->node()->witness().SignTreeHead();
  ASSERT_THAT(head.status(), IsOk());
  ASSERT_THAT(net_->server("JP")->node()->witness().CheckPeerHead("FR", *head), IsOk());
  const uint64_t seen = HeldFrHeadSize();
  ASSERT_GT(seen, backup_size);

  RestoreFr(file);
  absl::Status refused = net_->Start("FR");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr(absl::StrCat("JP holds a head of size ", seen)));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("accept-restored-log"));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("split view"));

  // The operator acknowledges: the node starts, says so in its log, and
  // the acknowledgement is used up.
  const std::string ack = net_->PartyDir("FR") + "/data/accept-restored-log";
  { std::ofstream(ack) << "restored after disk loss\n"; }
  ASSERT_THAT(net_->Start("FR"), IsOk());
  EXPECT_TRUE(FrLogHas(v1::LOG_RESTORED, "operator's acknowledgement"));
  struct stat st;
  EXPECT_NE(::stat(ack.c_str(), &st), 0);
  ExpectAuditVerifies();
}

TEST_F(BackupE2eTest, ADatabaseRolledBackWithoutABackupMarkStopsTheNodeToo) {
  // A copy of the file taken while FR was stopped: no backup mark, as after
  // a torn WAL or a file put back by hand.
  const std::string a = Submit();
  ASSERT_FALSE(a.empty());
  net_->Stop("FR");
  const std::string db = net_->PartyDir("FR") + "/data/comity.db";
  const std::string old_copy = net_->dir() + "/fr-old.db";
  ASSERT_EQ(testing::RunShell(absl::StrCat("cp '", db, "' '", old_copy, "'")), 0);
  ASSERT_THAT(net_->Start("FR"), IsOk());

  // FR goes on and JP sees a head of the longer log.
  ASSERT_EQ(Jp({"ack", a}).code, 0);
  ASSERT_TRUE(WaitFor([&] { return FrCase(a) == v1::CASE_ACKNOWLEDGED; }));
  auto head = net_->server("FR")->node()->witness().SignTreeHead();
  ASSERT_THAT(head.status(), IsOk());
  ASSERT_THAT(net_->server("JP")->node()->witness().CheckPeerHead("FR", *head), IsOk());
  const uint64_t seen = HeldFrHeadSize();

  RestoreFr(old_copy);
  absl::Status refused = net_->Start("FR");
  EXPECT_TRUE(absl::IsFailedPrecondition(refused)) << refused;
  EXPECT_THAT(std::string(refused.message()), HasSubstr("less than its peers saw it sign"));
  EXPECT_THAT(std::string(refused.message()),
              HasSubstr(absl::StrCat("JP holds a head of size ", seen)));
  // Nothing was signed meanwhile: JP still holds the same head of FR's log.
  EXPECT_EQ(HeldFrHeadSize(), seen);
}

// Fault 6 of issue 13: the requested party restored from a backup had lost
// the steps it signed after it (and the requesting party's withdrawal it had
// numbered), a request received and one it sent; its operators would have
// decided again and signed the same sequence numbers with other content.
// Now it fetches back from FR, before it signs anything, what FR holds of
// their cases, so it never signs a sequence twice.
TEST_F(BackupE2eTest, ARestoredRequestedPartyGetsBackWhatItsPartnerHoldsAndSignsNoStepTwice) {
  LogCapture logs;
  const std::string a = Submit();
  ASSERT_FALSE(a.empty());
  ASSERT_TRUE(WaitFor([&] { return RecordAt("FR", a).state() == v1::DELIVERED; }));
  const std::string file = net_->dir() + "/jp-backup.db";
  ASSERT_GT(Backup(file, "JP"), 0u);

  // After the backup: JP's three decisions on A and the withdrawal FR
  // proposes (JP numbers it as step 4); B, sent by FR; C, sent by JP.
  for (const char* step : {"ack", "review", "accept"}) {
    CliResult r = Jp({step, a});
    ASSERT_EQ(r.code, 0) << step << ": " << r.err;
  }
  ASSERT_TRUE(WaitFor([&] { return CaseAt("FR", a) == v1::CASE_ACCEPTED; }));
  CliResult withdrawn = As("FR", "alice", {"withdraw", a, "--text", "suspect arrested"});
  ASSERT_EQ(withdrawn.code, 0) << withdrawn.err;
  ASSERT_TRUE(WaitFor([&] { return CaseAt("FR", a) == v1::CASE_WITHDRAWN; }));
  const std::string b = Submit();
  const std::string c = Submit("JP", "FR");
  ASSERT_FALSE(b.empty());
  ASSERT_FALSE(c.empty());
  ASSERT_TRUE(WaitFor([&] { return RecordAt("FR", b).state() == v1::DELIVERED; }));
  ASSERT_TRUE(WaitFor([&] { return RecordAt("JP", c).state() == v1::DELIVERED; }));
  const v1::RequestRecord fr_a = RecordAt("FR", a);
  ASSERT_EQ(fr_a.transitions_size(), 4);

  // JP restored; it recovers from FR before it starts.
  Restore("JP", file);
  ASSERT_THAT(StartRestored("JP"), IsOk());

  // A: every step back, the same bytes FR holds; withdrawn, not open.
  const v1::RequestRecord jp_a = RecordAt("JP", a);
  ASSERT_EQ(jp_a.transitions_size(), 4) << logs.All();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(jp_a.transitions(i).SerializeAsString(), fr_a.transitions(i).SerializeAsString())
        << "step " << i + 1;
  }
  EXPECT_EQ(jp_a.case_state(), v1::CASE_WITHDRAWN);
  // B received again, C sent with FR's receipt.
  EXPECT_EQ(RecordAt("JP", b).state(), v1::RECEIVED);
  const v1::RequestRecord jp_c = RecordAt("JP", c);
  EXPECT_EQ(jp_c.direction(), v1::OUTGOING);
  EXPECT_EQ(jp_c.state(), v1::DELIVERED);
  EXPECT_EQ(jp_c.receipt().SerializeAsString(), RecordAt("FR", c).receipt().SerializeAsString());
  EXPECT_TRUE(LogHas("JP", v1::RECORDS_RECOVERED, "2 requests, 0 receipts, 4 steps recovered"))
      << logs.All();
  ExpectAuditVerifies("JP");

  // JP's operators cannot decide A again; B's next step is step 1, and FR
  // takes it: nobody holds two different steps of one sequence.
  CliResult again = Jp({"respond", a, "--text", "logs"});
  EXPECT_NE(again.code, 0) << again.out;
  ASSERT_EQ(Jp({"ack", b}).code, 0);
  EXPECT_TRUE(WaitFor([&] { return CaseAt("FR", b) == v1::CASE_ACKNOWLEDGED; }))
      << logs.All();
  // JP's outbox delivers A's recovered steps again; FR acknowledges the
  // same bytes, and refuses nothing.
  EXPECT_TRUE(WaitFor([&] {
    auto depths = net_->server("JP")->node()->store()->outbox().Depths();
    return depths.ok() && (depths->count("FR") == 0 || ((*depths)["FR"].first == 0 &&
                                                         (*depths)["FR"].second == 0));
  })) << logs.All();
  EXPECT_EQ(logs.All().find("already received with other content"), std::string::npos)
      << logs.All();
  EXPECT_FALSE(LogHas("FR", v1::PEER_REQUEST_REFUSED, "")) << logs.All();
  ExpectAuditVerifies("JP");
  ExpectAuditVerifies("FR");
}

// The requesting party restored: it had lost a request it sent after the
// backup (FR holds it, with its receipt) and the steps JP took on it.
TEST_F(BackupE2eTest, ARestoredRequestingPartyGetsBackTheRequestsItSentAndTheirSteps) {
  LogCapture logs;
  const std::string file = net_->dir() + "/fr-backup.db";
  ASSERT_GT(Backup(file), 0u);
  const std::string a = Submit();
  ASSERT_FALSE(a.empty());
  ASSERT_TRUE(WaitFor([&] { return RecordAt("FR", a).state() == v1::DELIVERED; }));
  ASSERT_EQ(Jp({"ack", a}).code, 0);
  ASSERT_TRUE(WaitFor([&] { return CaseAt("FR", a) == v1::CASE_ACKNOWLEDGED; }));

  RestoreFr(file);
  ASSERT_THAT(StartRestored("FR"), IsOk());
  const v1::RequestRecord fr_a = RecordAt("FR", a);
  EXPECT_EQ(fr_a.direction(), v1::OUTGOING);
  EXPECT_EQ(fr_a.state(), v1::DELIVERED);
  EXPECT_EQ(fr_a.case_state(), v1::CASE_ACKNOWLEDGED) << logs.All();
  EXPECT_EQ(fr_a.receipt().SerializeAsString(), RecordAt("JP", a).receipt().SerializeAsString());
  EXPECT_TRUE(FrLogHas(v1::RECORDS_RECOVERED, "1 requests, 0 receipts, 1 steps recovered"))
      << logs.All();
  ExpectAuditVerifies();

  // FR's operators go on with the case: JP numbers the proposal as step 2.
  CliResult withdrawn = As("FR", "alice", {"withdraw", a, "--text", "resolved"});
  ASSERT_EQ(withdrawn.code, 0) << withdrawn.err;
  EXPECT_TRUE(WaitFor([&] { return CaseAt("JP", a) == v1::CASE_WITHDRAWN; })) << logs.All();
  EXPECT_TRUE(WaitFor([&] { return CaseAt("FR", a) == v1::CASE_WITHDRAWN; })) << logs.All();
  EXPECT_EQ(RecordAt("FR", a).transitions_size(), 2);
  ExpectAuditVerifies();
}

// A node that answers Backup with bytes other than those it announces
// (total_bytes in the first chunk, the SHA-256 in the last): what a damaged
// copy, or a bad network path, looks like to the CLI.
class DamagingOperatorService final : public v1::OperatorService::Service {
 public:
  DamagingOperatorService(std::string sent, uint64_t total, std::string sha256)
      : sent_(std::move(sent)), total_(total), sha256_(std::move(sha256)) {}
  grpc::Status Backup(grpc::ServerContext*, const v1::BackupRequest*,
                      grpc::ServerWriter<v1::BackupChunk>* writer) override {
    v1::BackupChunk first;
    first.set_data(sent_.substr(0, sent_.size() / 2));
    first.set_total_bytes(total_);
    first.set_audit_size(7);
    v1::BackupChunk last;
    last.set_data(sent_.substr(sent_.size() / 2));
    last.set_sha256(sha256_);
    writer->Write(first);
    writer->Write(last);
    return grpc::Status::OK;
  }

 private:
  const std::string sent_;
  const uint64_t total_;
  const std::string sha256_;
};

// Runs `comity admin backup --out FILE` against `service`, served with FR's
// node certificate on a free loopback port.
CliResult BackupFrom(testing::TestNetwork& net, DamagingOperatorService* service,
                     const std::string& file) {
  const std::string fr = net.PartyDir("FR");
  grpc::SslServerCredentialsOptions tls(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  tls.pem_root_certs = *ReadFile(fr + "/ca.pem");
  tls.pem_key_cert_pairs.push_back(
      {*ReadFile(fr + "/node.key"), *ReadFile(fr + "/node.pem")});
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(tls), &port);
  builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  EXPECT_GT(port, 0);
  const std::string conf = net.dir() + "/damaging-node.conf";
  std::ofstream(conf) << "address: \"127.0.0.1:" << port << "\"\n"
                      << "ca_file: \"" << fr << "/ca.pem\"\n"
                      << "cert_file: \"" << fr << "/operators/alice.pem\"\n"
                      << "key_file: \"" << fr << "/operators/alice.key\"\n";
  CliResult r = Cli({"--connect", conf, "admin", "backup", "--out", file});
  server->Shutdown();
  return r;
}

TEST(BackupDamageE2eTest, ACopyWhoseBytesDifferFromWhatTheNodeAnnouncedIsNotSaved) {
  testing::TestNetwork net({"FR"});
  const std::string copy(100000, 'd');
  std::string damaged = copy;
  damaged[4242] ^= 0x20;
  const std::string dir = net.dir() + "/backups";

  DamagingOperatorService flipped(damaged, copy.size(), Sha256(copy));
  CliResult r = BackupFrom(net, &flipped, dir + "/flipped.db");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr(dir + "/flipped.db"));
  EXPECT_THAT(r.err, HasSubstr("SHA-256"));
  EXPECT_THAT(r.err, HasSubstr(HexEncode(Sha256(copy))));
  EXPECT_THAT(r.err, HasSubstr(HexEncode(Sha256(damaged))));

  DamagingOperatorService short_copy(copy.substr(0, 60000), copy.size(), Sha256(copy));
  r = BackupFrom(net, &short_copy, dir + "/short.db");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("60000 bytes"));
  EXPECT_THAT(r.err, HasSubstr("100000"));

  DamagingOperatorService unsigned_copy(copy, copy.size(), "");
  r = BackupFrom(net, &unsigned_copy, dir + "/no-hash.db");
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_THAT(r.err, HasSubstr("SHA-256"));

  EXPECT_EQ(ListDir(dir), std::vector<std::string>{}) << "no file, no temporary file";

  // The same stream, undamaged, is saved.
  DamagingOperatorService honest(copy, copy.size(), Sha256(copy));
  r = BackupFrom(net, &honest, dir + "/good.db");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(HexEncode(Sha256(copy))));
  EXPECT_EQ(ListDir(dir), std::vector<std::string>{"good.db"});
}

}  // namespace
}  // namespace comity
