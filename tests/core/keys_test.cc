// Keys over time (docs/keys.md): validity windows, revocation, the time an
// envelope claims, and the configuration of windows and previous keys.
#include <atomic>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/request.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/config/node_config.h"
#include "server/core/envelope.h"
#include "server/util/files.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::IsOk;
using ::comity::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1767225600);  // 2026-01-01T00:00:00Z

std::string RequestAt(absl::Time t) {
  v1::RequestBody body;
  body.set_id("0b0e7f2a-3c4d-4e5f-8a9b-0c1d2e3f4a5b");
  body.mutable_created_at()->set_seconds(absl::ToUnixSeconds(t));
  return SerializeDeterministic(body);
}

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto old_key = SigningKey::Generate();
    auto new_key = SigningKey::Generate();
    ASSERT_TRUE(old_key.ok() && new_key.ok());
    old_ = *std::move(old_key);
    new_ = *std::move(new_key);
  }
  v1::SignedEnvelope Sign(const SigningKey& key, const std::string& key_id,
                          absl::Time t) {
    auto env = SignEnvelope(kRequestPayloadType, RequestAt(t), "FR", key_id, key);
    EXPECT_TRUE(env.ok());
    return *env;
  }
  std::unique_ptr<SigningKey> old_, new_;
  KeyRing ring_;
};

TEST_F(KeysTest, UnboundedKeyVerifiesAtAnyTime) {
  ASSERT_THAT(ring_.Add("FR", "FR-1", old_->public_key()), IsOk());
  EXPECT_THAT(VerifyEnvelope(Sign(*old_, "FR-1", kT0), kRequestPayloadType, ring_),
              IsOk());
  // Not even parsed: an unbounded key does not need a time.
  auto env = SignEnvelope(kRequestPayloadType, "not a request", "FR", "FR-1", *old_);
  ASSERT_TRUE(env.ok());
  EXPECT_THAT(VerifyEnvelope(*env, kRequestPayloadType, ring_), IsOk());
}

TEST_F(KeysTest, WindowIsHalfOpen) {
  KeyValidity v;
  v.not_before = kT0;
  v.not_after = kT0 + absl::Hours(24);
  ASSERT_THAT(ring_.Add("FR", "FR-2", new_->public_key(), v), IsOk());
  EXPECT_THAT(VerifyEnvelope(Sign(*new_, "FR-2", kT0), kRequestPayloadType, ring_),
              IsOk());
  EXPECT_THAT(
      VerifyEnvelope(Sign(*new_, "FR-2", kT0 + absl::Hours(24) - absl::Seconds(1)),
                     kRequestPayloadType, ring_),
      IsOk());
  EXPECT_THAT(
      VerifyEnvelope(Sign(*new_, "FR-2", kT0 - absl::Seconds(1)), kRequestPayloadType,
                     ring_),
      StatusIs(absl::StatusCode::kUnauthenticated,
               AllOf(HasSubstr("FR-2"), HasSubstr("valid from 2026-01-01T00:00:00"),
                     HasSubstr("not_before"))));
  EXPECT_THAT(
      VerifyEnvelope(Sign(*new_, "FR-2", kT0 + absl::Hours(24)), kRequestPayloadType,
                     ring_),
      StatusIs(absl::StatusCode::kUnauthenticated,
               AllOf(HasSubstr("expired at 2026-01-02T00:00:00"), HasSubstr("rotate"))));
}

TEST_F(KeysTest, EmptyWindowIsRefused) {
  KeyValidity v;
  v.not_before = kT0;
  v.not_after = kT0;
  EXPECT_THAT(
      ring_.Add("FR", "FR-2", new_->public_key(), v),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-empty window")));
  EXPECT_EQ(ring_.Find("FR", "FR-2"), nullptr);
}

TEST_F(KeysTest, RevokedKeyRejectsLaterSignaturesButOlderOnesStillVerify) {
  ASSERT_THAT(ring_.Add("FR", "FR-1", old_->public_key()), IsOk());
  const v1::SignedEnvelope before = Sign(*old_, "FR-1", kT0 - absl::Hours(1));
  const v1::SignedEnvelope after = Sign(*old_, "FR-1", kT0 + absl::Seconds(1));
  ASSERT_THAT(VerifyEnvelope(after, kRequestPayloadType, ring_), IsOk());

  ASSERT_THAT(ring_.Revoke("FR", "FR-1", kT0), IsOk());
  EXPECT_THAT(VerifyEnvelope(before, kRequestPayloadType, ring_), IsOk());
  EXPECT_THAT(VerifyEnvelope(after, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("key 'FR-1' of party FR was revoked at "
                                       "2026-01-01T00:00:00"),
                             HasSubstr("current key"))));
  // Exactly at the revocation: refused.
  EXPECT_THAT(VerifyEnvelope(Sign(*old_, "FR-1", kT0), kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated));
}

TEST_F(KeysTest, RevocationOnlyMovesEarlier) {
  ASSERT_THAT(ring_.Add("FR", "FR-1", old_->public_key()), IsOk());
  ASSERT_THAT(ring_.Revoke("FR", "FR-1", kT0), IsOk());
  ASSERT_THAT(ring_.Revoke("FR", "FR-1", kT0 + absl::Hours(5)), IsOk());
  EXPECT_EQ(ring_.ValidityOf("FR", "FR-1").revoked_at, kT0);
  KeyValidity later;
  later.revoked_at = kT0 + absl::Hours(9);
  ASSERT_THAT(ring_.Add("FR", "FR-1", old_->public_key(), later), IsOk());
  EXPECT_EQ(ring_.ValidityOf("FR", "FR-1").revoked_at, kT0);
  ASSERT_THAT(ring_.Revoke("FR", "FR-1", kT0 - absl::Hours(1)), IsOk());
  EXPECT_EQ(ring_.ValidityOf("FR", "FR-1").revoked_at, kT0 - absl::Hours(1));
  EXPECT_THAT(ring_.Revoke("FR", "FR-9", kT0), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(KeysTest, BackDatedSignatureArrivingLongAfterRevocationIsRefused) {
  ASSERT_THAT(ring_.Add("FR", "FR-1", old_->public_key()), IsOk());
  ASSERT_THAT(ring_.Revoke("FR", "FR-1", kT0), IsOk());
  // Claims a time before the revocation: fine if it is stored, or arrives
  // within the grace; not if it arrives later (a holder of the leaked key
  // could back-date anything).
  const v1::SignedEnvelope env = Sign(*old_, "FR-1", kT0 - absl::Minutes(1));
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_), IsOk());
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_,
                             ArrivingNow(kT0 + absl::Hours(23), absl::Hours(24))),
              IsOk());
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_,
                             ArrivingNow(kT0 + absl::Hours(25), absl::Hours(24))),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("possibly back-dated"), HasSubstr("FR-1"))));
}

TEST_F(KeysTest, WindowedKeyNeedsATimeInThePayload) {
  KeyValidity v;
  v.not_before = kT0;
  ASSERT_THAT(ring_.Add("FR", "FR-2", new_->public_key(), v), IsOk());
  auto env = SignEnvelope(kRequestPayloadType, SerializeDeterministic(v1::RequestBody()),
                          "FR", "FR-2", *new_);
  ASSERT_TRUE(env.ok());
  EXPECT_THAT(VerifyEnvelope(*env, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("created_at")));
}

TEST_F(KeysTest, BadSignatureIsReportedBeforeTheWindow) {
  KeyValidity v;
  v.not_after = kT0;
  ASSERT_THAT(ring_.Add("FR", "FR-2", new_->public_key(), v), IsOk());
  v1::SignedEnvelope env = Sign(*new_, "FR-2", kT0 + absl::Hours(1));
  env.mutable_signature()->back() ^= 1;
  EXPECT_THAT(VerifyEnvelope(env, kRequestPayloadType, ring_),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("does not verify")));
}

TEST(SignedTimeTest, EachPayloadTypeGivesItsOwnTime) {
  const absl::Time t = kT0 + absl::Microseconds(123456);
  const int64_t us = absl::ToUnixMicros(t);
  v1::Receipt receipt;
  receipt.mutable_received_at()->set_seconds(absl::ToUnixSeconds(kT0));
  receipt.mutable_received_at()->set_nanos(123456000);
  v1::TreeHead head;
  head.set_timestamp_unix_micros(us);
  v1::Transition transition;
  transition.set_time_unix_micros(us);
  v1::TransitionProposal proposal;
  proposal.set_time_unix_micros(us);
  v1::Acknowledgement ack;
  ack.set_received_at_unix_micros(us);
  v1::KeyAnnouncement announcement;
  announcement.set_time_unix_micros(us);
  v1::RequestBody body;
  body.mutable_created_at()->set_seconds(absl::ToUnixSeconds(kT0));
  body.mutable_created_at()->set_nanos(123456000);
  const std::pair<absl::string_view, std::string> cases[] = {
      {kRequestPayloadType, SerializeDeterministic(body)},
      {kReceiptPayloadType, SerializeDeterministic(receipt)},
      {kTreeHeadPayloadType, SerializeDeterministic(head)},
      {kTransitionPayloadType, SerializeDeterministic(transition)},
      {kProposalPayloadType, SerializeDeterministic(proposal)},
      {kAckPayloadType, SerializeDeterministic(ack)},
      {kKeyAnnouncementPayloadType, SerializeDeterministic(announcement)},
  };
  for (const auto& [type, payload] : cases) {
    absl::StatusOr<absl::Time> got = SignedTime(type, payload);
    ASSERT_TRUE(got.ok()) << type << ": " << got.status();
    EXPECT_EQ(*got, t) << type;
    EXPECT_THAT(SignedTime(type, ""), StatusIs(absl::StatusCode::kInvalidArgument))
        << type;
  }
  EXPECT_THAT(SignedTime("comity.v1.Other", ""),
              StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(SignedTime(kTreeHeadPayloadType, "\xff\xff"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(KeyValidityTest, StateAt) {
  KeyValidity v;
  v.not_before = kT0;
  v.not_after = kT0 + absl::Hours(10);
  EXPECT_EQ(v.StateAt(kT0 - absl::Seconds(1)), "not yet valid");
  EXPECT_EQ(v.StateAt(kT0), "valid");
  EXPECT_EQ(v.StateAt(kT0 + absl::Hours(10)), "expired");
  v.revoked_at = kT0 + absl::Hours(1);
  EXPECT_EQ(v.StateAt(kT0 + absl::Hours(2)), "revoked");
  EXPECT_EQ(v.StateAt(kT0 + absl::Minutes(59)), "valid");
}

TEST(KeyRingConcurrencyTest, AddWhileVerifying) {
  KeyRing ring;
  auto key = SigningKey::Generate();
  ASSERT_TRUE(key.ok());
  ASSERT_THAT(ring.Add("FR", "FR-1", (*key)->public_key()), IsOk());
  auto env = SignEnvelope(kRequestPayloadType, RequestAt(kT0), "FR", "FR-1", **key);
  ASSERT_TRUE(env.ok());
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        if (!VerifyEnvelope(*env, kRequestPayloadType, ring).ok()) ++failures;
        ring.Entries();
      }
    });
  }
  // EXPECT, not ASSERT: the readers must be joined whatever happens.
  for (int i = 0; i < 200; ++i) {
    auto k = SigningKey::Generate();
    if (!k.ok()) continue;
    EXPECT_THAT(ring.Add("JP", absl::StrCat("JP-", i), (*k)->public_key()), IsOk());
    if (i % 10 == 0) {
      EXPECT_THAT(ring.Revoke("JP", absl::StrCat("JP-", i), kT0), IsOk());
    }
  }
  stop.store(true);
  for (auto& t : readers) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(ring.KeysOf("JP").size(), 200u);
}

TEST(ParseKeyTimeTest, Rfc3339WithZone) {
  COMITY_ASSERT_OK_AND_ASSIGN(
      absl::Time t, ParseKeyTime("2026-01-01T09:00:00+09:00", absl::InfinitePast()));
  EXPECT_EQ(t, kT0);
  COMITY_ASSERT_OK_AND_ASSIGN(absl::Time unset, ParseKeyTime("", absl::InfiniteFuture()));
  EXPECT_EQ(unset, absl::InfiniteFuture());
  EXPECT_THAT(ParseKeyTime("2026-01-01", absl::InfinitePast()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("RFC 3339")));
  EXPECT_THAT(ParseKeyTime("1767225600", absl::InfinitePast()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

class KeyConfigTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { net_ = new testing::TestNetwork({"FR", "JP"}); }
  static void TearDownTestSuite() {
    delete net_;
    net_ = nullptr;
  }
  absl::StatusOr<std::unique_ptr<NodeSetup>> Parse(const std::string& text) {
    return ParseNodeConfig(text, "fr.conf", net_->PartyDir("FR"));
  }
  // FR's configuration with `replacement` for its signing_key line.
  std::string WithSigningKeys(const std::string& replacement) {
    const std::string from =
        "signing_key { key_id: \"FR-1\" private_key_file: \"signing.key\" }";
    std::string text = net_->ConfigText("FR");
    EXPECT_NE(text.find(from), std::string::npos);
    return absl::StrReplaceAll(text, {{from, replacement}});
  }
  static testing::TestNetwork* net_;
};
testing::TestNetwork* KeyConfigTest::net_ = nullptr;

TEST_F(KeyConfigTest, PeerKeyWindowsAndRevocationReachTheRing) {
  const std::string text = absl::StrReplaceAll(
      net_->ConfigText("FR"),
      {{"signing_keys { key_id: \"JP-1\"",
        "signing_keys { not_before: \"2026-01-01T00:00:00Z\" not_after: "
        "\"2027-01-01T00:00:00Z\" revoked_at: \"2026-06-01T00:00:00Z\" key_id: "
        "\"JP-1\""}});
  COMITY_ASSERT_OK_AND_ASSIGN(auto setup, Parse(text));
  const KeyValidity v = setup->key_ring.ValidityOf("JP", "JP-1");
  EXPECT_EQ(v.not_before, kT0);
  EXPECT_EQ(v.not_after, absl::FromUnixSeconds(1798761600));
  EXPECT_EQ(v.revoked_at, absl::FromUnixSeconds(1780272000));
}

TEST_F(KeyConfigTest, BadWindowsNameTheField) {
  const std::pair<std::string, std::string> cases[] = {
      {"not_before: \"yesterday\"", "peers[0].signing_keys[0].not_before"},
      {"not_before: \"2027-01-01T00:00:00Z\" not_after: \"2026-01-01T00:00:00Z\"",
       "peers[0].signing_keys[0].not_after"},
      {"revoked_at: \"2026-13-01T00:00:00Z\"", "peers[0].signing_keys[0].revoked_at"},
  };
  for (const auto& [fields, field] : cases) {
    const std::string text = absl::StrReplaceAll(
        net_->ConfigText("FR"), {{"signing_keys { key_id: \"JP-1\"",
                                  "signing_keys { " + fields + " key_id: \"JP-1\""}});
    EXPECT_THAT(Parse(text), StatusIs(absl::StatusCode::kInvalidArgument,
                                      AllOf(HasSubstr("fr.conf: " + field))))
        << fields;
  }
}

TEST_F(KeyConfigTest, PreviousSigningKeys) {
  // A second key for FR, made the way certs/make-network.sh makes keys.
  const std::string dir = net_->PartyDir("FR");
  ASSERT_EQ(testing::RunShell(
                absl::StrCat("umask 077; openssl genpkey -algorithm ed25519 -out '", dir,
                             "/signing2.key' 2>/dev/null")),
            0);
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto setup,
      Parse(WithSigningKeys(
          "signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" "
          "not_before: \"2026-01-01T00:00:00Z\" }\n"
          "previous_signing_keys { key_id: \"FR-1\" private_key_file: \"signing.key\" "
          "revoked_at: \"2026-02-01T00:00:00Z\" }\n")));
  EXPECT_NE(setup->key_ring.Find("FR", "FR-1"), nullptr);
  EXPECT_NE(setup->key_ring.Find("FR", "FR-2"), nullptr);
  ASSERT_EQ(setup->previous_signing_keys.size(), 1u);
  EXPECT_NE(setup->previous_signing_keys[0].key, nullptr);
  EXPECT_TRUE(setup->previous_signing_keys[0].validity.revoked());
  EXPECT_EQ(setup->signing_key_validity.not_before, kT0);

  // Verification only: a public key instead of the private one.
  COMITY_ASSERT_OK_AND_ASSIGN(std::string pub, ReadFile(dir + "/signing.pub"));
  while (!pub.empty() && pub.back() == '\n') pub.pop_back();
  COMITY_ASSERT_OK_AND_ASSIGN(
      auto verify_only,
      Parse(WithSigningKeys(
          "signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
          "previous_signing_keys { key_id: \"FR-1\" ed25519_public_key: \"" +
          pub + "\" }\n")));
  ASSERT_EQ(verify_only->previous_signing_keys.size(), 1u);
  EXPECT_EQ(verify_only->previous_signing_keys[0].key, nullptr);

  const std::pair<std::string, std::string> errors[] = {
      {"signing_key { key_id: \"FR-1\" private_key_file: \"signing.key\" revoked_at: "
       "\"2026-01-01T00:00:00Z\" }",
       "signing_key.revoked_at"},
      {"signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
       "previous_signing_keys { key_id: \"FR-2\" private_key_file: \"signing.key\" }",
       "previous_signing_keys[0].key_id"},
      {"signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
       "previous_signing_keys { key_id: \"FR-1\" }",
       "exactly one of private_key_file"},
  };
  for (const auto& [replacement, expected] : errors) {
    EXPECT_THAT(Parse(WithSigningKeys(replacement)),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(expected)))
        << replacement;
  }
}

}  // namespace
}  // namespace comity
