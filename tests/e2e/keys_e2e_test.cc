// Keys over time end to end (docs/keys.md): FR rotates to a new signing key
// and JP learns it from FR's signed announcement; old envelopes still
// verify; FR revokes its old key and JP refuses what that key signs after
// the revocation; the announcements survive JP's restart and outlast an
// outage longer than JP's replay window; and a node
// certificate replaced on disk is served without a restart.
#include <fstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "comity/v1/audit.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/random.h"
#include "server/crypto/sha256.h"
#include "server/grpc/grpc_peer_transport.h"
#include "server/util/files.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/offset_clock.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ParseJson;
using ::comity::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

class KeysE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    fr_config_ = net_->ConfigText("FR");
  }
  CliResult As(const std::string& party, const std::string& who,
               std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath(party, who)});
    return Cli(args);
  }
  // Submits a preservation request from FR to JP; returns its id once FR
  // holds it DELIVERED (empty on failure).
  std::string SubmitDelivered() {
    CliResult r = As("FR", "alice",
                     {"submit",
                      "--to",
                      "JP",
                      "--type",
                      "PRESERVATION",
                      "--offence",
                      "DATA_INTERFERENCE",
                      "--penalty-months",
                      "60",
                      "--authority",
                      "Parquet de Paris",
                      "--facts",
                      "ransomware",
                      "--data-sought",
                      "logs",
                      "--relation",
                      "C2",
                      "--custodian",
                      "Hosting",
                      "--necessity",
                      "rotation",
                      "--intent-mla",
                      "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    if (r.code != 0) return "";
    const std::string id = ParseJson(r.out).fields().at("id").string_value();
    for (int i = 0; i < 300; ++i) {
      auto rows = net_->server("FR")->node()->Get(id);
      if (rows.ok() && !rows->empty() && (*rows)[0].state() == v1::DELIVERED) return id;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "request " << id << " was not delivered";
    return "";
  }
  // Restarts FR with `signing` in place of its signing_key line.
  absl::Status RestartFr(const std::string& signing,
                         const Clock* clock = SystemClock::Get()) {
    net_->ConfigText("FR") = absl::StrReplaceAll(
        fr_config_,
        {{"signing_key { key_id: \"FR-1\" private_key_file: \"signing.key\" }",
          signing}});
    return net_->Start("FR", clock);
  }
  template <typename Pred>
  bool Eventually(Pred pred) {
    for (int i = 0; i < 400; ++i) {
      if (pred()) return true;
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }
  std::vector<v1::AuditEntry> Audit(const std::string& party, v1::AuditEventType type) {
    AuditFilter f;
    f.type = type;
    auto raw = net_->server(party)->node()->store()->audit().Entries(f);
    EXPECT_THAT(raw.status(), IsOk());
    std::vector<v1::AuditEntry> out;
    for (const auto& bytes : raw.ok() ? *raw : std::vector<std::string>()) {
      v1::AuditEntry e;
      EXPECT_TRUE(e.ParseFromString(bytes));
      out.push_back(e);
    }
    return out;
  }
  // A request from FR to JP signed with `key` as `key_id`, claiming `when`.
  v1::SignedEnvelope ForgedRequest(const SigningKey& key, const std::string& key_id,
                                   absl::Time when) {
    v1::RequestBody body;
    body.set_id(RandomUuid());
    body.set_requesting_party("FR");
    body.set_requested_party("JP");
    body.mutable_created_at()->set_seconds(absl::ToUnixSeconds(when));
    body.set_assistance_type(v1::PRESERVATION);
    body.mutable_offence()->set_category(v1::DATA_INTERFERENCE);
    body.mutable_particulars()->set_requesting_authority("Parquet de Paris");
    body.mutable_particulars()->set_facts_summary("ransomware");
    body.set_urgency(v1::ROUTINE);
    body.mutable_handling()->set_tlp(v1::TLP_AMBER);
    auto env = SignEnvelope(kRequestPayloadType, SerializeDeterministic(body), "FR",
                            key_id, key);
    EXPECT_TRUE(env.ok());
    return *env;
  }

  // Before net_: the nodes read it until they stop.
  testing::OffsetClock clock_;
  std::unique_ptr<testing::TestNetwork> net_;
  std::string fr_config_;
};

TEST_F(KeysE2eTest, RotateAnnounceRevoke) {
  ASSERT_THAT(net_->Start("JP"), IsOk());
  ASSERT_THAT(net_->Start("FR"), IsOk());
  const std::string old_id = SubmitDelivered();
  ASSERT_FALSE(old_id.empty());

  // FR rotates: FR-2 signs from now on; FR-1 stays to vouch for it.
  const std::string fr_dir = net_->PartyDir("FR");
  ASSERT_EQ(testing::RunShell(
                absl::StrCat("umask 077; openssl genpkey -algorithm ed25519 -out '",
                             fr_dir, "/signing2.key' 2>/dev/null")),
            0);
  ASSERT_THAT(
      RestartFr("signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
                "previous_signing_keys { key_id: \"FR-1\" "
                "private_key_file: \"signing.key\" }\n"),
      IsOk());
  ASSERT_TRUE(Eventually([&] {
    return net_->server("JP")->node()->key_ring().Find("FR", "FR-2") != nullptr &&
           !Audit("JP", v1::KEY_ANNOUNCED).empty();
  })) << "JP never learned FR-2";
  const auto announced = Audit("JP", v1::KEY_ANNOUNCED);
  ASSERT_EQ(announced.size(), 1u);
  EXPECT_EQ(announced[0].actor(), "peer:FR");
  EXPECT_THAT(announced[0].detail(), HasSubstr("FR key FR-2 added, vouched for by FR-1"));
  ASSERT_TRUE(Eventually([&] { return Audit("FR", v1::KEY_ANNOUNCED).size() == 1; }))
      << "FR did not record JP's acknowledgement";

  // Requests signed with FR-2 are accepted by JP.
  const std::string new_id = SubmitDelivered();
  ASSERT_FALSE(new_id.empty());
  COMITY_ASSERT_OK_AND_ASSIGN(auto rows, net_->server("JP")->node()->Get(new_id));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].request().key_id(), "FR-2");

  // FR revokes FR-1 from now on (after everything FR-1 signed above).
  const absl::Time revoked_at = absl::Now();
  ASSERT_THAT(RestartFr(absl::StrCat(
                  "signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
                  "previous_signing_keys { key_id: \"FR-1\" "
                  "private_key_file: \"signing.key\" revoked_at: \"",
                  absl::FormatTime(absl::RFC3339_full, revoked_at, absl::UTCTimeZone()),
                  "\" }\n")),
              IsOk());
  // The ring changes before the audit entry is appended: wait for both.
  ASSERT_TRUE(Eventually([&] {
    return net_->server("JP")->node()->key_ring().ValidityOf("FR", "FR-1").revoked() &&
           !Audit("JP", v1::KEY_REVOKED).empty();
  })) << "JP never learned that FR-1 is revoked";
  const auto revoked = Audit("JP", v1::KEY_REVOKED);
  ASSERT_EQ(revoked.size(), 1u);
  EXPECT_THAT(revoked[0].detail(), HasSubstr("FR key FR-1 revoked from"));

  // An envelope signed with FR-1 claiming a time after the revocation is
  // refused, and audited.
  COMITY_ASSERT_OK_AND_ASSIGN(std::string pem, ReadPrivateFile(fr_dir + "/signing.key"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto fr1, SigningKey::FromPem(pem));
  // created_at has whole seconds: the next second is after the
  // revocation however fast the test runs.
  const absl::Time forged_at =
      absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()) + 1);
  ASSERT_GT(forged_at, revoked_at);
  const v1::SignedEnvelope forged = ForgedRequest(*fr1, "FR-1", forged_at);
  GrpcPeerTransport transport(&net_->setup("FR"));
  EXPECT_THAT(transport.DeliverRequest("JP", forged, absl::Seconds(10)).status(),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("key 'FR-1' of party FR was revoked at")));
  bool audited = false;
  for (const auto& e : Audit("JP", v1::PEER_REQUEST_REFUSED)) {
    if (e.hashes_size() > 0 && e.hashes(0) == Sha256(forged.payload()) &&
        e.detail().find("revoked") != std::string::npos) {
      audited = true;
    }
  }
  EXPECT_TRUE(audited) << "JP did not audit the refusal";

  // What FR-1 signed before its revocation still verifies: the stored
  // request, its redelivery (the same receipt again), the CLI's check, both
  // audit logs.
  COMITY_ASSERT_OK_AND_ASSIGN(auto old_rows, net_->server("JP")->node()->Get(old_id));
  ASSERT_EQ(old_rows.size(), 1u);
  EXPECT_EQ(old_rows[0].request().key_id(), "FR-1");
  EXPECT_THAT(VerifyEnvelope(old_rows[0].request(), kRequestPayloadType,
                             net_->server("JP")->node()->key_ring()),
              IsOk());
  auto again = transport.DeliverRequest("JP", old_rows[0].request(), absl::Seconds(10));
  ASSERT_THAT(again.status(), IsOk());
  EXPECT_EQ(again->SerializeAsString(), old_rows[0].receipt().SerializeAsString());
  CliResult show = As("JP", "alice", {"show", old_id});
  EXPECT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("signature: FR key FR-1: verified"));
  for (const char* party : {"FR", "JP"}) {
    CliResult verify = As(party, "carol", {"audit", "verify"});
    EXPECT_EQ(verify.code, 0) << party << ": " << verify.out << verify.err;
  }

  // comity keys shows both sides' view.
  CliResult jp_keys = As("JP", "alice", {"keys", "--party", "FR"});
  ASSERT_EQ(jp_keys.code, 0) << jp_keys.err;
  EXPECT_THAT(jp_keys.out, HasSubstr("FR  FR-1  revoked"));
  EXPECT_THAT(jp_keys.out, HasSubstr("FR  FR-2  valid"));
  EXPECT_THAT(jp_keys.out, HasSubstr("(announced)"));
  // Fingerprints as everywhere else (docs/keys.md): sha256:HEX of the raw key.
  const VerifyingKey* fr2 = net_->server("JP")->node()->key_ring().Find("FR", "FR-2");
  ASSERT_NE(fr2, nullptr);
  EXPECT_THAT(jp_keys.out, HasSubstr(KeyFingerprint(fr2->raw())));
  EXPECT_THAT(jp_keys.out, Not(HasSubstr(absl::Base64Escape(fr2->raw()))));
  CliResult jp_json = As("JP", "alice", {"keys", "--json"});
  ASSERT_EQ(jp_json.code, 0) << jp_json.err;
  // A list is one JSON array (docs/cli.md).
  google::protobuf::ListValue json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(jp_json.out, &json).ok())
      << jp_json.out;
  const auto& listed = json.values();
  ASSERT_EQ(listed.size(), 3);  // FR-1, FR-2, JP-1.
  int revoked_listed = 0;
  for (const auto& k : listed) {
    if (k.struct_value().fields().at("state").string_value() == "revoked")
      ++revoked_listed;
  }
  EXPECT_EQ(revoked_listed, 1);
  for (const auto& k : listed) {
    EXPECT_THAT(k.struct_value().fields().at("fingerprint").string_value(),
                ::testing::StartsWith("sha256:"));
  }
  ASSERT_TRUE(Eventually([&] {
    CliResult fr_keys = As("FR", "alice", {"keys", "--party", "FR"});
    return fr_keys.out.find("FR  FR-2  valid, signing") != std::string::npos &&
           fr_keys.out.find("announced to: JP") != std::string::npos;
  }));

  // JP keeps what it learned across a restart.
  net_->Stop("JP");
  ASSERT_THAT(net_->Start("JP"), IsOk());
  EXPECT_NE(net_->server("JP")->node()->key_ring().Find("FR", "FR-2"), nullptr);
  EXPECT_TRUE(net_->server("JP")->node()->key_ring().ValidityOf("FR", "FR-1").revoked());
  EXPECT_FALSE(SubmitDelivered().empty());
}

TEST_F(KeysE2eTest, TheAnnouncementOutlastsAnOutageLongerThanTheReplayWindow) {
  // FR rotates while JP is down, and JP is back only after more than its
  // replay window (one day; both clocks jump 25 h): an announcement signed
  // when FR started would be refused as too old, and what FR-2 signs with
  // it. FR signs the announcement again at each attempt.
  ASSERT_THAT(net_->Start("JP", &clock_), IsOk());
  net_->Stop("JP");
  const std::string fr_dir = net_->PartyDir("FR");
  ASSERT_EQ(testing::RunShell(
                absl::StrCat("umask 077; openssl genpkey -algorithm ed25519 -out '",
                             fr_dir, "/signing2.key' 2>/dev/null")),
            0);
  ASSERT_THAT(
      RestartFr("signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
                "previous_signing_keys { key_id: \"FR-1\" "
                "private_key_file: \"signing.key\" }\n",
                &clock_),
      IsOk());
  CliResult r =
      Cli(testing::SubmitPreservationArgs(net_->ClientConfigPath("FR", "alice"), "JP"));
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string id = ParseJson(r.out).fields().at("id").string_value();
  absl::SleepFor(absl::Seconds(1));  // FR's first attempts meet JP down.
  clock_.Set(absl::Hours(25));
  ASSERT_THAT(net_->Start("JP", &clock_), IsOk());

  ASSERT_TRUE(Eventually([&] {
    return net_->server("JP")->node()->key_ring().Find("FR", "FR-2") != nullptr;
  })) << "JP never learned FR-2";
  ASSERT_TRUE(Eventually([&] {
    auto rows = net_->server("FR")->node()->Get(id);
    return rows.ok() && !rows->empty() && (*rows)[0].state() == v1::DELIVERED;
  })) << "the request FR-2 signed was not delivered";
  EXPECT_EQ(Audit("JP", v1::KEY_ANNOUNCED).size(), 1u);
  for (const auto& e : Audit("JP", v1::PEER_REQUEST_REFUSED)) {
    EXPECT_THAT(e.detail(), ::testing::Not(HasSubstr("outside the acceptance window")));
  }
}

TEST_F(KeysE2eTest, AnnouncementNeedsAKeyJpTrusts) {
  ASSERT_THAT(net_->Start("JP"), IsOk());
  // FR announces FR-2 vouched for by a key JP has never heard of.
  const std::string fr_dir = net_->PartyDir("FR");
  ASSERT_EQ(testing::RunShell(absl::StrCat(
                "umask 077; openssl genpkey -algorithm ed25519 -out '", fr_dir,
                "/signing2.key' 2>/dev/null && openssl genpkey -algorithm ed25519 -out '",
                fr_dir, "/other.key' 2>/dev/null")),
            0);
  ASSERT_THAT(
      RestartFr("signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
                "previous_signing_keys { key_id: \"FR-0\" "
                "private_key_file: \"other.key\" }\n"),
      IsOk());
  ASSERT_TRUE(Eventually([&] {
    for (const auto& e : Audit("JP", v1::PEER_REQUEST_REFUSED)) {
      if (e.detail().find("UNAUTHENTICATED") != std::string::npos &&
          e.detail().find("FR-0") != std::string::npos) {
        return true;
      }
    }
    return false;
  })) << "JP did not refuse and audit the announcement";
  EXPECT_EQ(net_->server("JP")->node()->key_ring().Find("FR", "FR-2"), nullptr);
  EXPECT_TRUE(Audit("JP", v1::KEY_ANNOUNCED).empty());
}

// The SHA-256 fingerprint of the certificate a listener presents, seen by
// a client with `cert`/`key`; empty if the handshake fails.
std::string ServedFingerprint(const std::string& dir, int port, const std::string& cert,
                              const std::string& key, const std::string& ca) {
  const std::string out = dir + "/served.txt";
  testing::RunShell(
      absl::StrCat("openssl s_client -connect 127.0.0.1:", port, " -cert '", cert,
                   "' -key '", key, "' -CAfile '", ca,
                   "' </dev/null 2>/dev/null | openssl x509 -noout -fingerprint "
                   "-sha256 > '",
                   out, "' 2>/dev/null"));
  auto text = ReadFile(out);
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : "";
}

std::string FileFingerprint(const std::string& dir, const std::string& cert) {
  const std::string out = dir + "/file.txt";
  testing::RunShell(absl::StrCat("openssl x509 -noout -fingerprint -sha256 -in '", cert,
                                 "' > '", out, "'"));
  auto text = ReadFile(out);
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : "";
}

// Issues a new node certificate and key for `party` from its CA (as
// certs/make-network.sh does) and moves them over node.pem and node.key.
void ReplaceNodeCertificate(const std::string& dir, const std::string& party) {
  const std::string cmd = absl::StrCat(
      "set -e; cd '", dir, "'; umask 077; ",
      "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out new.key "
      "2>/dev/null; ",
      "openssl req -new -key new.key -subj '/O=Comity test network/CN=comity node ",
      party, " (renewed)' -out new.csr 2>/dev/null; ",
      "printf 'basicConstraints = critical, CA:FALSE\\nkeyUsage = critical, "
      "digitalSignature, "
      "keyEncipherment\\nextendedKeyUsage = serverAuth, clientAuth\\nsubjectAltName = "
      "URI:urn:comity:party:",
      party, ", DNS:localhost, IP:127.0.0.1, IP:::1\\n' > new.ext; ",
      "openssl x509 -req -in new.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 "
      "-sha256 "
      "-extfile new.ext -out new.pem 2>/dev/null; chmod 644 new.pem; ",
      "mv new.key node.key; mv new.pem node.pem");
  ASSERT_EQ(testing::RunShell(cmd), 0) << cmd;
}

TEST_F(KeysE2eTest, NodeCertificateReplacedWithoutRestart) {
  for (const char* party : {"FR", "JP"}) {
    std::string& text = net_->ConfigText(party);
    text = absl::StrReplaceAll(
        text, {{"operator_ca_file: \"ca.pem\" }",
                "operator_ca_file: \"ca.pem\" reload_interval_seconds: 1 }"}});
  }
  fr_config_ = net_->ConfigText("FR");
  ASSERT_THAT(net_->Start("JP"), IsOk());
  ASSERT_THAT(net_->Start("FR"), IsOk());
  ASSERT_FALSE(SubmitDelivered().empty());

  const std::string jp = net_->PartyDir("JP");
  const std::string fr = net_->PartyDir("FR");
  const std::string old_cert = FileFingerprint(jp, jp + "/node.pem");
  ASSERT_FALSE(old_cert.empty());
  EXPECT_EQ(ServedFingerprint(jp, net_->peer_port("JP"), fr + "/node.pem",
                              fr + "/node.key", jp + "/ca.pem"),
            old_cert);
  NodeServer* const before = net_->server("JP");

  ReplaceNodeCertificate(jp, "JP");
  const std::string new_cert = FileFingerprint(jp, jp + "/node.pem");
  ASSERT_NE(new_cert, old_cert);
  // Both listeners present the new certificate within a few intervals.
  EXPECT_TRUE(Eventually([&] {
    return ServedFingerprint(jp, net_->peer_port("JP"), fr + "/node.pem",
                             fr + "/node.key", jp + "/ca.pem") == new_cert;
  })) << "the peer listener still serves the old certificate";
  EXPECT_TRUE(Eventually([&] {
    return ServedFingerprint(jp, net_->operator_port("JP"), jp + "/operators/alice.pem",
                             jp + "/operators/alice.key", jp + "/ca.pem") == new_cert;
  })) << "the operator listener still serves the old certificate";
  EXPECT_EQ(net_->server("JP"), before) << "JP was restarted";

  // FR renews too; JP identifies FR by its new certificate on a new
  // connection, and deliveries keep working.
  ReplaceNodeCertificate(fr, "FR");
  absl::SleepFor(absl::Seconds(2));
  GrpcPeerTransport fresh(&net_->setup("FR"));
  COMITY_ASSERT_OK_AND_ASSIGN(std::string pem, ReadPrivateFile(fr + "/signing.key"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto fr1, SigningKey::FromPem(pem));
  EXPECT_THAT(fresh
                  .DeliverRequest("JP", ForgedRequest(*fr1, "FR-1", absl::Now()),
                                  absl::Seconds(10))
                  .status(),
              IsOk());
  EXPECT_FALSE(SubmitDelivered().empty());
  CliResult peers = As("JP", "alice", {"peers"});
  EXPECT_EQ(peers.code, 0) << peers.err;
}

}  // namespace
}  // namespace comity
