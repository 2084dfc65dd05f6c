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

  std::string Submit() {
    CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "submit", "--to",
                       "JP", "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE",
                       "--authority", "Parquet de Paris", "--facts", "ransomware",
                       "--data-sought", "logs", "--relation", "C2", "--custodian",
                       "Hosting KK", "--necessity", "rotation", "--intent-mla", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return r.code == 0 ? ParseJson(r.out).fields().at("id").string_value() : "";
  }
  CliResult Jp(std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath("JP", "bob")});
    return Cli(args);
  }
  v1::CaseState FrCase(const std::string& id) {
    auto records = net_->server("FR")->node()->Get(id);
    return records.ok() && !records->empty() ? (*records)[0].case_state()
                                             : v1::CASE_STATE_UNSPECIFIED;
  }
  // `comity admin backup`; the audit size the copy holds.
  uint64_t Backup(const std::string& file) {
    CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "erin"), "admin", "backup",
                       "--out", file, "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) return 0;
    return static_cast<uint64_t>(ParseJson(r.out).fields().at("audit_size").number_value());
  }
  // Stops FR and puts `file` in place of its database, as docs/backup.md says.
  void RestoreFr(const std::string& file) {
    net_->Stop("FR");
    const std::string db = net_->PartyDir("FR") + "/data/comity.db";
    ASSERT_EQ(testing::RunShell(absl::StrCat("rm -f '", db, "-wal' '", db, "-shm' && cp '",
                                             file, "' '", db, "'")),
              0);
  }
  void ExpectAuditVerifies() {
    CliResult v = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "audit", "verify"});
    EXPECT_EQ(v.code, 0) << v.out << v.err;
    EXPECT_THAT(v.out, HasSubstr("consistent"));
  }
  bool FrLogHas(v1::AuditEventType type, const std::string& detail_part) {
    AuditFilter f;
    f.type = type;
    auto entries = net_->server("FR")->node()->store()->audit().Entries(f);
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
  EXPECT_EQ(FrCase(a), v1::CASE_DELIVERED) << "the restored copy predates JP's steps";
  ExpectAuditVerifies();

  // JP's next step finds FR behind; JP's outbox sends the case again from
  // its first step, and FR converges.
  CliResult r = Jp({"respond", a, "--text", "preserved: 3 log files"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(WaitFor([&] { return FrCase(a) == v1::CASE_PARTLY_EXECUTED; }))
      << v1::CaseState_Name(FrCase(a)) << "\n"
      << logs.All();
  EXPECT_TRUE(logs.Contains("transitions_rewound", a));

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
