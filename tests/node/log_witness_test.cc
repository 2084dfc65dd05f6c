// LogWitness: starts recorded under a signed head (and key changes), heads
// reused while the log does not grow, a peer's heads checked against the
// last one held with the peer's consistency proofs, split views raised,
// audited and reported, reports of this node's own split views checked,
// gossip only with reachable peers, the log verified.
#include "server/node/log_witness.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
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
using ::testing::SizeIs;

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

v1::TreeHead HeadOf(const v1::SignedEnvelope& env) {
  v1::TreeHead h;
  EXPECT_TRUE(h.ParseFromString(env.payload()));
  return h;
}

// An entry that is neither a start nor a head, to grow a log.
absl::Status AppendEntry(Node& node) {
  return node.store()->audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = node.context().Event(v1::AUDIT_EXPORTED, "operator:carol");
    return w.Append(&e).status();
  });
}

class LogWitnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
    COMITY_ASSERT_OK_AND_ASSIGN(jp_, harness_.MakeNode("JP", &jp_transport_));
    // FR asks JP for proofs of JP's own log.
    fr_transport_.on_consistency_proof = [this](const std::string& party,
                                                uint64_t old_size, uint64_t new_size) {
      EXPECT_EQ(party, "JP");
      return jp_->witness().ConsistencyProof(old_size, new_size);
    };
    fr_transport_.on_report_split_view = [this](const std::string& party,
                                                const v1::SignedEnvelope& first,
                                                const v1::SignedEnvelope& second) {
      reported_.push_back({party, first, second});
      return absl::OkStatus();
    };
  }

  // JP's log grown by one entry, under a new head signed by JP's node.
  absl::StatusOr<v1::SignedEnvelope> GrowJp() {
    COMITY_RETURN_IF_ERROR(AppendEntry(*jp_));
    return jp_->witness().SignTreeHead();
  }

  // A tree head of `party` signed with its key file (as its node would
  // sign, with whatever content a test puts in it).
  absl::StatusOr<v1::SignedEnvelope> Forge(const std::string& party,
                                           const v1::TreeHead& head) {
    COMITY_ASSIGN_OR_RETURN(std::string pem,
                            ReadPrivateFile(harness_.PartyDir(party) + "/signing.key"));
    COMITY_ASSIGN_OR_RETURN(std::unique_ptr<SigningKey> key, SigningKey::FromPem(pem));
    return SignEnvelope(kTreeHeadPayloadType, SerializeDeterministic(head), party,
                        party + "-1", *key);
  }

  absl::StatusOr<v1::SignedEnvelope> HeldOfJp() {
    COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> held,
                            fr_->store()->audit().LatestPeerHead("JP"));
    if (!held.has_value()) return absl::NotFoundError("FR holds no head of JP");
    return held->signed_head;
  }

  struct Report {
    std::string party;
    v1::SignedEnvelope first, second;
  };

  NodeHarness harness_;
  FakePeerTransport fr_transport_;
  FakePeerTransport jp_transport_;
  std::unique_ptr<Node> fr_;
  std::unique_ptr<Node> jp_;
  std::vector<Report> reported_;
};

TEST_F(LogWitnessTest, RecordStartLogsTheStartUnderASignedHead) {
  ASSERT_THAT(fr_->witness().RecordStart(), IsOk());
  std::vector<v1::AuditEntry> started = Audit(*fr_, v1::NODE_STARTED);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].actor(), "node");
  EXPECT_THAT(started[0].detail(), HasSubstr("party FR; signing key FR-1"));
  EXPECT_THAT(Audit(*fr_, v1::KEY_CHANGED), IsEmpty());

  COMITY_ASSERT_OK_AND_ASSIGN(uint64_t size, fr_->store()->audit().Size());
  COMITY_ASSERT_OK_AND_ASSIGN(std::optional<StoredTreeHead> head,
                              fr_->store()->audit().LatestTreeHead());
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->head.tree_size(), size);
  EXPECT_EQ(head->head.party(), "FR");
  EXPECT_THAT(fr_->store()->audit().RootAt(size), IsOkAndHolds(head->head.root_hash()));
  EXPECT_THAT(VerifyEnvelope(head->signed_head, kTreeHeadPayloadType, fr_->key_ring()),
              IsOk());
}

TEST_F(LogWitnessTest, ARestartWithAnotherSigningKeyIsRecordedAsAKeyChange) {
  ASSERT_THAT(fr_->witness().RecordStart(), IsOk());
  // Same key again: a start, no change.
  fr_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
  ASSERT_THAT(fr_->witness().RecordStart(), IsOk());
  EXPECT_EQ(Audit(*fr_, v1::NODE_STARTED).size(), 2u);
  EXPECT_THAT(Audit(*fr_, v1::KEY_CHANGED), IsEmpty());

  // FR rotates to FR-2 (docs/keys.md, "Rotation").
  const std::string dir = harness_.PartyDir("FR");
  ASSERT_EQ(::comity::testing::RunShell(
                absl::StrCat("umask 077; openssl genpkey -algorithm ed25519 -out '", dir,
                             "/signing2.key' 2>/dev/null")),
            0);
  std::string& config = harness_.ConfigText("FR");
  const std::string old_line =
      "signing_key { key_id: \"FR-1\" private_key_file: \"signing.key\" }";
  ASSERT_NE(config.find(old_line), std::string::npos);
  config = absl::StrReplaceAll(
      config,
      {{old_line,
        "signing_key { key_id: \"FR-2\" private_key_file: \"signing2.key\" }\n"
        "previous_signing_keys { key_id: \"FR-1\" private_key_file: \"signing.key\" }"}});
  fr_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
  ASSERT_THAT(fr_->witness().RecordStart(), IsOk());

  std::vector<v1::AuditEntry> started = Audit(*fr_, v1::NODE_STARTED);
  ASSERT_EQ(started.size(), 3u);
  std::vector<v1::AuditEntry> changed = Audit(*fr_, v1::KEY_CHANGED);
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_EQ(changed[0].detail(), "signing key is now FR-2");
  ASSERT_EQ(changed[0].hashes_size(), 2);
  EXPECT_EQ(changed[0].hashes(0), started[1].hashes(1));  // The key before.
  EXPECT_EQ(changed[0].hashes(1), started[2].hashes(1));  // The key now.
  EXPECT_NE(changed[0].hashes(0), changed[0].hashes(1));
  COMITY_ASSERT_OK_AND_ASSIGN(std::optional<StoredTreeHead> head,
                              fr_->store()->audit().LatestTreeHead());
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->signed_head.key_id(), "FR-2");
  // Heads signed with FR-1 and FR-2 both verify.
  COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, fr_->witness().Verify());
  EXPECT_TRUE(report.ok) << report.error;
  EXPECT_EQ(report.heads, 3u);
}

TEST_F(LogWitnessTest, SignTreeHeadReusesTheLatestHeadUntilTheLogGrows) {
  ASSERT_THAT(fr_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(std::optional<StoredTreeHead> first,
                              fr_->store()->audit().LatestTreeHead());
  ASSERT_TRUE(first.has_value());
  harness_.clock().Advance(absl::Minutes(1));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope again, fr_->witness().SignTreeHead());
  EXPECT_EQ(again.payload(), first->signed_head.payload());
  EXPECT_THAT(fr_->store()->audit().TreeHeads(), IsOkAndHolds(SizeIs(1)));

  ASSERT_THAT(AppendEntry(*fr_), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope grown, fr_->witness().SignTreeHead());
  COMITY_ASSERT_OK_AND_ASSIGN(uint64_t size, fr_->store()->audit().Size());
  EXPECT_EQ(HeadOf(grown).tree_size(), size);
  EXPECT_GT(size, first->head.tree_size());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope same, fr_->witness().SignTreeHead());
  EXPECT_EQ(same.payload(), grown.payload());
  EXPECT_THAT(fr_->store()->audit().TreeHeads(), IsOkAndHolds(SizeIs(2)));
}

TEST_F(LogWitnessTest, APeersHeadsAreKeptWhenConsistent) {
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope small, jp_->witness().SignTreeHead());
  // The first head of a peer is stored as it is: nothing to compare with.
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", small), IsOk());
  EXPECT_THAT(HeldOfJp(), IsOkAndHolds(::testing::Property(&v1::SignedEnvelope::payload,
                                                           small.payload())));
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", small), IsOk());
  EXPECT_EQ(fr_transport_.calls("GetConsistencyProof"), 0);

  // A larger head, proved to extend the one held, replaces it.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope large, GrowJp());
  ASSERT_GT(HeadOf(large).tree_size(), HeadOf(small).tree_size());
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", large), IsOk());
  EXPECT_EQ(fr_transport_.calls("GetConsistencyProof"), 1);
  EXPECT_THAT(HeldOfJp(), IsOkAndHolds(::testing::Property(&v1::SignedEnvelope::payload,
                                                           large.payload())));

  // An older head, proved to be a prefix, is fine and changes nothing.
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", small), IsOk());
  EXPECT_EQ(fr_transport_.calls("GetConsistencyProof"), 2);
  EXPECT_THAT(HeldOfJp(), IsOkAndHolds(::testing::Property(&v1::SignedEnvelope::payload,
                                                           large.payload())));
  EXPECT_THAT(Audit(*fr_, v1::SPLIT_VIEW_DETECTED), IsEmpty());
  EXPECT_EQ(fr_transport_.calls("ReportSplitView"), 0);
}

TEST_F(LogWitnessTest, AHeadThatIsNotThePeersIsRefused) {
  ASSERT_THAT(fr_->witness().RecordStart(), IsOk());
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope fr_head, fr_->witness().SignTreeHead());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope jp_head, jp_->witness().SignTreeHead());
  // FR's own head, offered as JP's.
  EXPECT_THAT(
      fr_->witness().CheckPeerHead("JP", fr_head),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a tree head of JP")));
  v1::SignedEnvelope tampered = jp_head;
  tampered.mutable_signature()->back() ^= 0x01;
  EXPECT_THAT(fr_->witness().CheckPeerHead("JP", tampered),
              StatusIs(absl::StatusCode::kUnauthenticated));
  // The gossip entry point checks the TLS peer too.
  EXPECT_THAT(
      fr_->witness().ExchangeTreeHeads("JP", fr_head),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("the TLS peer is JP")));
  // And answers with this node's latest head.
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope answer,
                              fr_->witness().ExchangeTreeHeads("JP", jp_head));
  EXPECT_EQ(answer.payload(), fr_head.payload());
  EXPECT_THAT(Audit(*fr_, v1::SPLIT_VIEW_DETECTED), IsEmpty());
}

TEST_F(LogWitnessTest, AnInconsistentProofIsASplitViewAuditedAndReported) {
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope small, jp_->witness().SignTreeHead());
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", small), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope large, GrowJp());
  fr_transport_.on_consistency_proof = [](const std::string&, uint64_t, uint64_t) {
    return std::vector<std::string>{std::string(32, '\x42')};
  };

  EXPECT_THAT(fr_->witness().CheckPeerHead("JP", large),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("JP's log")));
  std::vector<v1::AuditEntry> split = Audit(*fr_, v1::SPLIT_VIEW_DETECTED);
  ASSERT_EQ(split.size(), 1u);
  EXPECT_EQ(split[0].actor(), "node");
  EXPECT_EQ(split[0].party(), "JP");
  EXPECT_THAT(split[0].hashes(),
              ElementsAre(Sha256(small.payload()), Sha256(large.payload())));
  ASSERT_EQ(reported_.size(), 1u);
  EXPECT_EQ(reported_[0].party, "JP");
  EXPECT_EQ(reported_[0].first.payload(), small.payload());
  EXPECT_EQ(reported_[0].second.payload(), large.payload());
  // The contradicting head is not taken as the one held.
  EXPECT_THAT(HeldOfJp(), IsOkAndHolds(::testing::Property(&v1::SignedEnvelope::payload,
                                                           small.payload())));
}

TEST_F(LogWitnessTest, TwoRootsForOneSizeAreASplitView) {
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope real, jp_->witness().SignTreeHead());
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", real), IsOk());
  v1::TreeHead other = HeadOf(real);
  other.set_root_hash(Sha256("another log of the same size"));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope forked, Forge("JP", other));

  EXPECT_THAT(fr_->witness().CheckPeerHead("JP", forked),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr(absl::StrCat("two different roots for size ",
                                              other.tree_size()))));
  EXPECT_EQ(fr_transport_.calls("GetConsistencyProof"), 0);
  ASSERT_EQ(Audit(*fr_, v1::SPLIT_VIEW_DETECTED).size(), 1u);
  ASSERT_EQ(reported_.size(), 1u);
  EXPECT_EQ(reported_[0].first.payload(), real.payload());
  EXPECT_EQ(reported_[0].second.payload(), forked.payload());
  // JP's node, shown the report, agrees: its key signed both.
  EXPECT_THAT(
      jp_->witness().HandleSplitViewReport("FR", reported_[0].first, reported_[0].second),
      IsOk());
  std::vector<v1::AuditEntry> on_jp = Audit(*jp_, v1::SPLIT_VIEW_DETECTED);
  ASSERT_EQ(on_jp.size(), 1u);
  EXPECT_EQ(on_jp[0].actor(), "peer:FR");
}

TEST_F(LogWitnessTest, AHeadOfASmallerLogDatedLaterIsASplitView) {
  // JP's log shrank (rolled back): it signs a smaller head after a larger one.
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope large, jp_->witness().SignTreeHead());
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", large), IsOk());
  v1::TreeHead small = HeadOf(large);
  ASSERT_GT(small.tree_size(), 1u);
  small.set_tree_size(small.tree_size() - 1);
  small.set_root_hash(Sha256("the rolled-back log"));
  small.set_timestamp_unix_micros(small.timestamp_unix_micros() +
                                  absl::ToInt64Microseconds(absl::Minutes(10)));
  harness_.clock().Advance(absl::Minutes(10));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope shrunk, Forge("JP", small));

  EXPECT_THAT(fr_->witness().CheckPeerHead("JP", shrunk),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not shrink")));
  ASSERT_EQ(Audit(*fr_, v1::SPLIT_VIEW_DETECTED).size(), 1u);
  ASSERT_EQ(reported_.size(), 1u);
  EXPECT_THAT(
      jp_->witness().HandleSplitViewReport("FR", reported_[0].first, reported_[0].second),
      IsOk());
  EXPECT_EQ(Audit(*jp_, v1::SPLIT_VIEW_DETECTED).size(), 1u);
}

TEST_F(LogWitnessTest, AnUnreachablePeerIsNotASplitView) {
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope small, jp_->witness().SignTreeHead());
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", small), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope large, GrowJp());
  auto prove = fr_transport_.on_consistency_proof;
  fr_transport_.on_consistency_proof = [](const std::string&, uint64_t, uint64_t) {
    return absl::StatusOr<std::vector<std::string>>(absl::UnavailableError("JP is down"));
  };

  EXPECT_THAT(fr_->witness().CheckPeerHead("JP", large),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("JP is down")));
  EXPECT_THAT(Audit(*fr_, v1::SPLIT_VIEW_DETECTED), IsEmpty());
  EXPECT_THAT(reported_, IsEmpty());
  EXPECT_THAT(HeldOfJp(), IsOkAndHolds(::testing::Property(&v1::SignedEnvelope::payload,
                                                           small.payload())));
  // Through gossip the call is answered all the same.
  EXPECT_THAT(fr_->witness().ExchangeTreeHeads("JP", large), IsOk());

  // Checked with the next head once JP answers.
  fr_transport_.on_consistency_proof = prove;
  ASSERT_THAT(fr_->witness().CheckPeerHead("JP", large), IsOk());
  EXPECT_THAT(HeldOfJp(), IsOkAndHolds(::testing::Property(&v1::SignedEnvelope::payload,
                                                           large.payload())));
}

TEST_F(LogWitnessTest, ASplitViewReportIsAcceptedOnlyForOwnHeadsThatContradict) {
  ASSERT_THAT(fr_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope first, fr_->witness().SignTreeHead());
  ASSERT_THAT(AppendEntry(*fr_), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope second, fr_->witness().SignTreeHead());
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope jp_head, jp_->witness().SignTreeHead());

  // Two real heads of one log: consistent, no split view.
  EXPECT_THAT(fr_->witness().HandleSplitViewReport("JP", first, second),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("consistent")));
  EXPECT_THAT(fr_->witness().HandleSplitViewReport("JP", second, second),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("consistent")));
  // Not this node's head.
  EXPECT_THAT(fr_->witness().HandleSplitViewReport("JP", first, jp_head),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not signed by this party")));
  // Not a signature of this node's key.
  v1::SignedEnvelope tampered = second;
  tampered.mutable_signature()->back() ^= 0x01;
  EXPECT_THAT(fr_->witness().HandleSplitViewReport("JP", first, tampered),
              StatusIs(absl::StatusCode::kUnauthenticated));
  EXPECT_THAT(Audit(*fr_, v1::SPLIT_VIEW_DETECTED), IsEmpty());

  // FR's key signed another root for the size of `second`: a real fork.
  v1::TreeHead other = HeadOf(second);
  other.set_root_hash(Sha256("a second log"));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope forked, Forge("FR", other));
  EXPECT_THAT(fr_->witness().HandleSplitViewReport("JP", second, forked), IsOk());
  std::vector<v1::AuditEntry> split = Audit(*fr_, v1::SPLIT_VIEW_DETECTED);
  ASSERT_EQ(split.size(), 1u);
  EXPECT_EQ(split[0].actor(), "peer:JP");
  EXPECT_EQ(split[0].party(), "JP");
  EXPECT_THAT(split[0].detail(), HasSubstr("reported by JP"));
  // Found by the peer: not reported back to it.
  EXPECT_EQ(fr_transport_.calls("ReportSplitView"), 0);

  // Another size, with a root this log never had at it.
  v1::TreeHead smaller = HeadOf(first);
  smaller.set_root_hash(Sha256("not FR's root at that size"));
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope wrong, Forge("FR", smaller));
  EXPECT_THAT(fr_->witness().HandleSplitViewReport("JP", wrong, second), IsOk());
  EXPECT_EQ(Audit(*fr_, v1::SPLIT_VIEW_DETECTED).size(), 2u);
}

TEST_F(LogWitnessTest, GossipSkipsAPeerTheOutboxCannotReach) {
  ASSERT_THAT(jp_->witness().RecordStart(), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(v1::SignedEnvelope jp_head, jp_->witness().SignTreeHead());
  std::vector<v1::SignedEnvelope> shown;
  fr_transport_.on_exchange_heads = [&](const std::string& party,
                                        const v1::SignedEnvelope& ours) {
    EXPECT_EQ(party, "JP");
    shown.push_back(ours);
    return absl::StatusOr<v1::SignedEnvelope>(jp_head);
  };

  fr_->witness().GossipRound();
  ASSERT_EQ(fr_transport_.calls("ExchangeTreeHeads"), 1);
  // FR showed a head of its whole log, and kept JP's answer.
  ASSERT_EQ(shown.size(), 1u);
  EXPECT_EQ(shown[0].signer_party(), "FR");
  EXPECT_THAT(fr_->store()->audit().Size(), IsOkAndHolds(HeadOf(shown[0]).tree_size()));
  EXPECT_THAT(HeldOfJp(), IsOkAndHolds(::testing::Property(&v1::SignedEnvelope::payload,
                                                           jp_head.payload())));

  // JP cannot be reached: its lane backs off, and gossip leaves it alone.
  fr_transport_.on_deliver_request = [](const std::string&, const v1::SignedEnvelope&) {
    return absl::StatusOr<v1::SignedEnvelope>(absl::UnavailableError("JP is down"));
  };
  ASSERT_THAT(fr_->submission().Submit("alice", NodeHarness::Draft("JP")), IsOk());
  fr_->outbox().lane("JP")->RunRound([] { return false; });
  ASSERT_FALSE(fr_->outbox().lane("JP")->reachable());
  fr_->witness().GossipRound();
  EXPECT_EQ(fr_transport_.calls("ExchangeTreeHeads"), 1);

  // Once the backoff is over, gossip tries again.
  harness_.clock().Advance(absl::Seconds(1));
  ASSERT_TRUE(fr_->outbox().lane("JP")->reachable());
  fr_->witness().GossipRound();
  EXPECT_EQ(fr_transport_.calls("ExchangeTreeHeads"), 2);
}

TEST_F(LogWitnessTest, VerifyPassesOnACleanLog) {
  ASSERT_THAT(fr_->witness().RecordStart(), IsOk());
  ASSERT_THAT(AppendEntry(*fr_), IsOk());
  fr_->witness().RecordAuditExport("operator:carol");
  COMITY_ASSERT_OK_AND_ASSIGN(VerifyReport report, fr_->witness().Verify());
  EXPECT_TRUE(report.ok) << report.error;
  EXPECT_THAT(report.error, IsEmpty());
  COMITY_ASSERT_OK_AND_ASSIGN(uint64_t size, fr_->store()->audit().Size());
  EXPECT_EQ(report.entries, size);
  EXPECT_EQ(report.heads, 2u);
  EXPECT_EQ(report.signed_size, size);
  EXPECT_THAT(fr_->store()->audit().RootAt(size), IsOkAndHolds(report.root));
}

}  // namespace
}  // namespace comity
