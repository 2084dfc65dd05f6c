// Keys: the key ring listed with each key's state; a peer's announcement
// of a new key, signed by the key this node trusts and by the new key,
// applied, kept across restarts and audited; bad announcements refused
// with the code that says why; this node's own announcements sent to each
// peer until it acknowledges, backing off per peer on the monotonic clock,
// signed afresh at each attempt.
#include <sys/stat.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/node/keys.h"
#include "server/util/files.h"
#include "server/util/status_macros.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::FakePeerTransport;
using ::comity::testing::IsOk;
using ::comity::testing::IsOkAndHolds;
using ::comity::testing::NodeHarness;
using ::comity::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::vector<v1::AuditEntry> Audit(Node& node, v1::AuditEventType type) {
  AuditFilter f;
  f.type = type;
  absl::StatusOr<std::vector<std::string>> raw = node.store()->audit().Entries(f);
  EXPECT_THAT(raw, IsOk());
  std::vector<v1::AuditEntry> out;
  for (const std::string& bytes : raw.ok() ? *raw : std::vector<std::string>()) {
    v1::AuditEntry e;
    EXPECT_TRUE(e.ParseFromString(bytes));
    out.push_back(std::move(e));
  }
  return out;
}

// The keys of `node`'s List(), by "party/key_id".
std::map<std::string, v1::KeyStatus> ListOf(Node& node) {
  std::map<std::string, v1::KeyStatus> out;
  for (v1::KeyStatus& k : node.keys().List()) {
    out[absl::StrCat(k.party(), "/", k.key_id())] = std::move(k);
  }
  return out;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
    COMITY_ASSERT_OK_AND_ASSIGN(
        std::string pem, ReadPrivateFile(harness_.PartyDir("JP") + "/signing.key"));
    COMITY_ASSERT_OK_AND_ASSIGN(jp1_, SigningKey::FromPem(pem));
    COMITY_ASSERT_OK_AND_ASSIGN(jp2_, SigningKey::Generate());
  }

  // JP announces JP-2 (jp2_), now.
  v1::KeyAnnouncement NewJpKey() {
    v1::KeyAnnouncement a;
    a.set_party("JP");
    a.set_time_unix_micros(absl::ToUnixMicros(harness_.clock().Now()));
    a.set_key_id("JP-2");
    a.set_ed25519_public_key(jp2_->public_key());
    return a;
  }

  // `a` signed as `signer` with `key` named `key_id`, and, if `possessor`,
  // the same payload signed by it under the announced key id.
  absl::StatusOr<v1::AnnounceKeyRequest> Sign(const v1::KeyAnnouncement& a,
                                              const SigningKey& key,
                                              const std::string& key_id,
                                              const SigningKey* possessor,
                                              const std::string& signer = "JP") {
    const std::string payload = SerializeDeterministic(a);
    v1::AnnounceKeyRequest req;
    COMITY_ASSIGN_OR_RETURN(
        *req.mutable_announcement(),
        SignEnvelope(kKeyAnnouncementPayloadType, payload, signer, key_id, key));
    if (possessor != nullptr) {
      COMITY_ASSIGN_OR_RETURN(*req.mutable_possession(),
                              SignEnvelope(kKeyAnnouncementPayloadType, payload, signer,
                                           a.key_id(), *possessor));
    }
    return req;
  }

  std::string AcceptedFile() const {
    return harness_.setup("FR").config.data_dir() + "/peer_keys.pb";
  }

  NodeHarness harness_{{"FR", "JP", "DE"}};
  FakePeerTransport fr_transport_;
  std::unique_ptr<Node> fr_;
  std::unique_ptr<SigningKey> jp1_;
  std::unique_ptr<SigningKey> jp2_;
};

TEST_F(KeysTest, ListShowsTheConfiguredKeysWithTheirState) {
  std::map<std::string, v1::KeyStatus> keys = ListOf(*fr_);
  ASSERT_EQ(keys.size(), 3u);
  const v1::KeyStatus& own = keys["FR/FR-1"];
  EXPECT_TRUE(own.signing());
  EXPECT_EQ(own.source(), "config");
  EXPECT_EQ(own.state(), "valid");
  EXPECT_EQ(own.ed25519_public_key(), harness_.setup("FR").signing_key->public_key());
  EXPECT_THAT(own.acknowledged_by(), IsEmpty());  // Nothing to announce.
  EXPECT_THAT(own.pending(), IsEmpty());
  const v1::KeyStatus& jp = keys["JP/JP-1"];
  EXPECT_FALSE(jp.signing());
  EXPECT_EQ(jp.source(), "config");
  EXPECT_EQ(jp.state(), "valid");
  EXPECT_EQ(jp.ed25519_public_key(), jp1_->public_key());
  EXPECT_EQ(jp.not_after_unix_micros(), 0);
  EXPECT_EQ(keys["DE/DE-1"].state(), "valid");

  // A window in the configuration shows, and sets the state at the clock.
  std::string& config = harness_.ConfigText("FR");
  ASSERT_NE(config.find("key_id: \"JP-1\""), std::string::npos);
  config = absl::StrReplaceAll(
      config,
      {{"key_id: \"JP-1\"", "key_id: \"JP-1\" not_after: \"2020-01-01T00:00:00Z\""}});
  fr_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
  keys = ListOf(*fr_);
  EXPECT_EQ(keys["JP/JP-1"].state(), "expired");
  EXPECT_EQ(keys["JP/JP-1"].not_after_unix_micros(),
            absl::ToUnixMicros(absl::FromUnixSeconds(1577836800)));
}

TEST_F(KeysTest, AnAnnouncedKeyIsAppliedKeptAndAudited) {
  const v1::KeyAnnouncement a = NewJpKey();
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest req,
                              Sign(a, *jp1_, "JP-1", jp2_.get()));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", req), IsOkAndHolds(true));
  const VerifyingKey* learned = fr_->key_ring().Find("JP", "JP-2");
  ASSERT_NE(learned, nullptr);
  EXPECT_EQ(learned->raw(), jp2_->public_key());
  EXPECT_TRUE(Exists(AcceptedFile()));
  struct stat st;
  ASSERT_EQ(::stat(AcceptedFile().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  std::vector<v1::AuditEntry> announced = Audit(*fr_, v1::KEY_ANNOUNCED);
  ASSERT_EQ(announced.size(), 1u);
  EXPECT_EQ(announced[0].actor(), "peer:JP");
  EXPECT_EQ(announced[0].party(), "JP");
  EXPECT_THAT(announced[0].hashes(), ElementsAre(Sha256(req.announcement().payload())));
  EXPECT_THAT(announced[0].detail(), HasSubstr("JP key JP-2 added, vouched for by JP-1"));
  EXPECT_EQ(ListOf(*fr_)["JP/JP-2"].source(), "announced");

  // The same announcement again teaches nothing, and is not audited again.
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", req), IsOkAndHolds(false));
  EXPECT_EQ(Audit(*fr_, v1::KEY_ANNOUNCED).size(), 1u);

  // Kept across a restart: what JP-2 signs verifies on the new node.
  fr_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
  ASSERT_NE(fr_->key_ring().Find("JP", "JP-2"), nullptr);
  EXPECT_EQ(ListOf(*fr_)["JP/JP-2"].source(), "announced");
  v1::TreeHead head;
  head.set_party("JP");
  head.set_tree_size(1);
  head.set_root_hash(Sha256("x"));
  head.set_timestamp_unix_micros(absl::ToUnixMicros(harness_.clock().Now()));
  COMITY_ASSERT_OK_AND_ASSIGN(
      v1::SignedEnvelope env,
      SignEnvelope(kTreeHeadPayloadType, SerializeDeterministic(head), "JP", "JP-2",
                   *jp2_));
  EXPECT_THAT(VerifyEnvelope(env, kTreeHeadPayloadType, fr_->key_ring()), IsOk());
}

TEST_F(KeysTest, ARevocationSignedByAnAnnouncedKeyIsApplied) {
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest add,
                              Sign(NewJpKey(), *jp1_, "JP-1", jp2_.get()));
  ASSERT_THAT(fr_->keys().ReceiveAnnouncement("JP", add), IsOkAndHolds(true));
  v1::KeyAnnouncement r;
  r.set_party("JP");
  r.set_time_unix_micros(absl::ToUnixMicros(harness_.clock().Now()));
  r.set_revoke_key_id("JP-1");
  const absl::Time revoked_at = harness_.clock().Now() - absl::Minutes(1);
  r.set_revoked_at_unix_micros(absl::ToUnixMicros(revoked_at));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest revoke,
                              Sign(r, *jp2_, "JP-2", nullptr));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", revoke), IsOkAndHolds(true));
  EXPECT_EQ(fr_->key_ring().ValidityOf("JP", "JP-1").revoked_at, revoked_at);
  std::vector<v1::AuditEntry> revoked = Audit(*fr_, v1::KEY_REVOKED);
  ASSERT_EQ(revoked.size(), 1u);
  EXPECT_THAT(revoked[0].detail(), HasSubstr("JP key JP-1 revoked from"));
  EXPECT_EQ(ListOf(*fr_)["JP/JP-1"].state(), "revoked");
  // Only ever earlier: the same revocation again changes nothing.
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", revoke), IsOkAndHolds(false));
}

TEST_F(KeysTest, BadAnnouncementsAreRefusedWithTheirReason) {
  const v1::KeyAnnouncement a = NewJpKey();
  // Called by another party than the one that signed.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest good,
                              Sign(a, *jp1_, "JP-1", jp2_.get()));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("DE", good),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("signed as party 'JP' but the TLS peer is DE")));
  // Vouched for by a key FR does not trust (the new key itself).
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest self,
                              Sign(a, *jp2_, "JP-2", jp2_.get()));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", self),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("JP-2")));
  // Signed with another key under JP-1's id.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest forged,
                              Sign(a, *jp2_, "JP-1", jp2_.get()));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", forged),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // No proof of possession, or one the announced key did not make.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest bare,
                              Sign(a, *jp1_, "JP-1", nullptr));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", bare),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("lacks its proof of possession")));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest not_possessed,
                              Sign(a, *jp1_, "JP-1", jp1_.get()));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", not_possessed),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       HasSubstr("does not verify with the announced public key")));
  // Signed too long ago, or ahead of this node's clock.
  v1::KeyAnnouncement old = a;
  old.set_time_unix_micros(
      absl::ToUnixMicros(harness_.clock().Now() - absl::Hours(24) - absl::Minutes(1)));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest stale,
                              Sign(old, *jp1_, "JP-1", jp2_.get()));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", stale),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("outside the acceptance window")));
  v1::KeyAnnouncement ahead = a;
  ahead.set_time_unix_micros(
      absl::ToUnixMicros(harness_.clock().Now() + absl::Minutes(6)));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest early,
                              Sign(ahead, *jp1_, "JP-1", jp2_.get()));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", early),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("outside the acceptance window")));
  // A payload that speaks for another party.
  v1::KeyAnnouncement other = a;
  other.set_party("DE");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest for_de,
                              Sign(other, *jp1_, "JP-1", jp2_.get()));
  EXPECT_THAT(
      fr_->keys().ReceiveAnnouncement("JP", for_de),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names party 'DE'")));
  // A known id with another public key.
  v1::KeyAnnouncement reuse = a;
  reuse.set_key_id("JP-1");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest reused,
                              Sign(reuse, *jp1_, "JP-1", jp2_.get()));
  EXPECT_THAT(
      fr_->keys().ReceiveAnnouncement("JP", reused),
      StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("a new key needs a new id")));
  // Nothing to add or revoke.
  v1::KeyAnnouncement empty;
  empty.set_party("JP");
  empty.set_time_unix_micros(a.time_unix_micros());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest nothing,
                              Sign(empty, *jp1_, "JP-1", nullptr));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", nothing),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names no key")));

  // A window that admits no instant.
  v1::KeyAnnouncement shut = a;
  shut.set_not_before_unix_micros(a.time_unix_micros() + 3600000000);
  shut.set_not_after_unix_micros(a.time_unix_micros());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest empty_window,
                              Sign(shut, *jp1_, "JP-1", jp2_.get()));
  EXPECT_THAT(fr_->keys().ReceiveAnnouncement("JP", empty_window),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("window is empty")));
  // A revocation without its time.
  v1::KeyAnnouncement undated;
  undated.set_party("JP");
  undated.set_time_unix_micros(a.time_unix_micros());
  undated.set_revoke_key_id("JP-1");
  COMITY_ASSERT_OK_AND_ASSIGN(v1::AnnounceKeyRequest no_time,
                              Sign(undated, *jp1_, "JP-1", nullptr));
  EXPECT_THAT(
      fr_->keys().ReceiveAnnouncement("JP", no_time),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("revoked_at_unix_micros")));

  EXPECT_EQ(fr_->key_ring().Find("JP", "JP-2"), nullptr);
  EXPECT_FALSE(fr_->key_ring().ValidityOf("JP", "JP-1").revoked());
  EXPECT_THAT(Audit(*fr_, v1::KEY_ANNOUNCED), IsEmpty());
  EXPECT_THAT(Audit(*fr_, v1::KEY_REVOKED), IsEmpty());
  EXPECT_FALSE(Exists(AcceptedFile()));
}

class AnnounceRoundTest : public KeysTest {
 protected:
  void SetUp() override {
    KeysTest::SetUp();
    // FR rotated: FR-2 signs, FR-1 (still held) vouches for it.
    const std::string dir = harness_.PartyDir("FR");
    ASSERT_EQ(::comity::testing::RunShell(
                  absl::StrCat("umask 077; openssl genpkey -algorithm ed25519 -out '",
                               dir, "/signing2.key' 2>/dev/null")),
              0);
    std::string& config = harness_.ConfigText("FR");
    const std::string line =
        "signing_key { key_id: \"FR-1\" private_key_file: \"signing.key\" }";
    ASSERT_NE(config.find(line), std::string::npos);
    config = absl::StrReplaceAll(
        config, {{line,
                  "signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
                  "previous_signing_keys { key_id: \"FR-1\" private_key_file: "
                  "\"signing.key\" }"}});
    fr_.reset();
    COMITY_ASSERT_OK_AND_ASSIGN(jp_, harness_.MakeNode("JP", &jp_transport_));
    fr_transport_.on_announce_key =
        [this](const std::string& party,
               const v1::AnnounceKeyRequest& req) -> absl::StatusOr<bool> {
      sent_[party].push_back(req);
      if (party == "DE") return true;
      if (jp_down_) return absl::UnavailableError("JP is down");
      return jp_->keys().ReceiveAnnouncement("FR", req);
    };
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
  }

  FakePeerTransport jp_transport_;
  std::unique_ptr<Node> jp_;
  bool jp_down_ = true;
  std::map<std::string, std::vector<v1::AnnounceKeyRequest>> sent_;
};

TEST_F(AnnounceRoundTest, TheNewKeyIsAnnouncedToEachPeerWithBackoffPerPeer) {
  fr_->keys().AnnounceRound();
  EXPECT_EQ(fr_transport_.calls("AnnounceKey"), 2);  // JP and DE.
  // What went out: FR-2, vouched for by FR-1, with FR-2's proof.
  ASSERT_EQ(sent_["DE"].size(), 1u);
  const v1::AnnounceKeyRequest& req = sent_["DE"][0];
  EXPECT_EQ(req.announcement().signer_party(), "FR");
  EXPECT_EQ(req.announcement().key_id(), "FR-1");
  EXPECT_EQ(req.possession().key_id(), "FR-2");
  EXPECT_EQ(req.possession().payload(), req.announcement().payload());
  v1::KeyAnnouncement a;
  ASSERT_TRUE(a.ParseFromString(req.announcement().payload()));
  EXPECT_EQ(a.key_id(), "FR-2");
  EXPECT_EQ(a.ed25519_public_key(), harness_.setup("FR").signing_key->public_key());
  // DE's acknowledgement is audited; JP's lane is pending.
  std::vector<v1::AuditEntry> acked = Audit(*fr_, v1::KEY_ANNOUNCED);
  ASSERT_EQ(acked.size(), 1u);
  EXPECT_EQ(acked[0].actor(), "node");
  EXPECT_EQ(acked[0].party(), "DE");
  EXPECT_EQ(acked[0].detail(), "key FR-2 acknowledged by DE");
  v1::KeyStatus own = ListOf(*fr_)["FR/FR-2"];
  EXPECT_TRUE(own.signing());
  EXPECT_THAT(own.acknowledged_by(), ElementsAre("DE"));
  EXPECT_THAT(own.pending(), ElementsAre("JP"));

  // At the same instant: DE is done and JP backs off.
  fr_->keys().AnnounceRound();
  EXPECT_EQ(fr_transport_.calls("AnnounceKey"), 2);

  // Later, JP answers and learns FR-2 from FR-1's signature.
  jp_down_ = false;
  harness_.clock().Advance(absl::Seconds(1));
  fr_->keys().AnnounceRound();
  EXPECT_EQ(fr_transport_.calls("AnnounceKey"), 3);
  EXPECT_EQ(sent_["DE"].size(), 1u);
  ASSERT_NE(jp_->key_ring().Find("FR", "FR-2"), nullptr);
  EXPECT_EQ(Audit(*jp_, v1::KEY_ANNOUNCED).size(), 1u);
  EXPECT_EQ(Audit(*fr_, v1::KEY_ANNOUNCED).size(), 2u);
  own = ListOf(*fr_)["FR/FR-2"];
  EXPECT_THAT(own.acknowledged_by(), ElementsAre("DE", "JP"));
  EXPECT_THAT(own.pending(), IsEmpty());
  harness_.clock().Advance(absl::Seconds(10));
  fr_->keys().AnnounceRound();
  EXPECT_EQ(fr_transport_.calls("AnnounceKey"), 3);

  // After a restart FR announces again; JP knew it: nothing new to audit.
  fr_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
  fr_->keys().AnnounceRound();
  EXPECT_EQ(fr_transport_.calls("AnnounceKey"), 5);
  EXPECT_EQ(Audit(*jp_, v1::KEY_ANNOUNCED).size(), 1u);
  std::vector<v1::AuditEntry> after = Audit(*fr_, v1::KEY_ANNOUNCED);
  ASSERT_EQ(after.size(),
            3u);  // DE's fake says "changed" every time; JP's node does not.
  EXPECT_EQ(after[2].party(), "DE");
  EXPECT_THAT(ListOf(*fr_)["FR/FR-2"].acknowledged_by(), ElementsAre("DE", "JP"));
}

TEST_F(AnnounceRoundTest,
       EachAttemptIsSignedAfreshSoAnOutageLongerThanTheReplayWindowPasses) {
  // JP is down for longer than its replay window (one day): what FR signed
  // at its first attempt is too old by the time JP is back.
  fr_->keys().AnnounceRound();
  ASSERT_EQ(sent_["JP"].size(), 1u);
  harness_.clock().Advance(absl::Hours(25));
  jp_down_ = false;
  fr_->keys().AnnounceRound();
  ASSERT_EQ(sent_["JP"].size(), 2u);
  ASSERT_NE(jp_->key_ring().Find("FR", "FR-2"), nullptr);
  EXPECT_EQ(Audit(*jp_, v1::KEY_ANNOUNCED).size(), 1u);
  EXPECT_THAT(ListOf(*fr_)["FR/FR-2"].acknowledged_by(), ElementsAre("DE", "JP"));

  // The second attempt carries a new signature, dated when it was made, and
  // its proof of possession signs the same bytes.
  const v1::AnnounceKeyRequest& first = sent_["JP"][0];
  const v1::AnnounceKeyRequest& second = sent_["JP"][1];
  v1::KeyAnnouncement a1, a2;
  ASSERT_TRUE(a1.ParseFromString(first.announcement().payload()));
  ASSERT_TRUE(a2.ParseFromString(second.announcement().payload()));
  EXPECT_EQ(a2.time_unix_micros(), absl::ToUnixMicros(harness_.clock().Now()));
  EXPECT_EQ(absl::FromUnixMicros(a2.time_unix_micros()) -
                absl::FromUnixMicros(a1.time_unix_micros()),
            absl::Hours(25));
  EXPECT_EQ(a2.key_id(), "FR-2");
  EXPECT_NE(second.announcement().signature(), first.announcement().signature());
  EXPECT_EQ(second.announcement().key_id(), "FR-1");
  EXPECT_EQ(second.possession().payload(), second.announcement().payload());
  EXPECT_EQ(second.possession().key_id(), "FR-2");
  // The audit entry names what JP took.
  std::vector<v1::AuditEntry> acked = Audit(*fr_, v1::KEY_ANNOUNCED);
  ASSERT_EQ(acked.size(), 2u);
  EXPECT_EQ(acked[1].party(), "JP");
  EXPECT_THAT(acked[1].hashes(), ElementsAre(Sha256(second.announcement().payload())));
}

TEST_F(AnnounceRoundTest, RetriesAreTimedOnTheMonotonicClockNotTheWallClock) {
  fr_->keys().AnnounceRound();  // JP is down: FR backs off (at most 400 ms).
  ASSERT_EQ(sent_["JP"].size(), 1u);
  // A wall clock stepped forward by hours does not make the retry due...
  harness_.clock().Set(harness_.clock().Now() + absl::Hours(2));
  fr_->keys().AnnounceRound();
  EXPECT_EQ(sent_["JP"].size(), 1u);
  // ... and one stepped back does not put it off by the step.
  harness_.clock().Set(harness_.clock().Now() - absl::Hours(4));
  harness_.clock().Advance(absl::Seconds(1));
  jp_down_ = false;
  fr_->keys().AnnounceRound();
  EXPECT_EQ(sent_["JP"].size(), 2u);
  EXPECT_NE(jp_->key_ring().Find("FR", "FR-2"), nullptr);
}

TEST_F(KeysTest, ANodeWithoutPreviousKeysAnnouncesNothing) {
  fr_transport_.on_announce_key = [](const std::string&, const v1::AnnounceKeyRequest&) {
    return absl::StatusOr<bool>(true);
  };
  fr_->keys().AnnounceRound();
  EXPECT_EQ(fr_transport_.calls("AnnounceKey"), 0);
}

}  // namespace
}  // namespace comity
