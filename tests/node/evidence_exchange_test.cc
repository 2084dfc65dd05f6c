// EvidenceExchange: files listed in a response fetched by the requesting
// party, verified, stored and audited; release conditions hold them back
// until accepted; a refusing peer backs the file off; a cut transfer
// resumes; exports refuse TLP:RED unless told; only the party a file was
// given to may fetch it.
#include "server/node/evidence_exchange.h"

#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/crypto/sha256.h"
#include "server/node/case_records.h"
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
using ::comity::testing::LoopbackTransport;
using ::comity::testing::NodeHarness;
using ::comity::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr char kFileName[] = "connection-logs.txt";
constexpr char kCondition[] =
    "use only in proceedings against the operators of 203.0.113.7";

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

// Everything `reader` yields, to its end.
absl::StatusOr<std::string> ReadAll(EvidenceReader& reader) {
  std::string all;
  for (;;) {
    COMITY_ASSIGN_OR_RETURN(std::string chunk, reader.Next());
    if (chunk.empty()) return all;
    all += chunk;
  }
}

// Sets every handler of `fake` to forward to `to`: a fake that behaves like
// the real peer until a test replaces one handler.
void ForwardAll(FakePeerTransport& fake, PeerTransport* to) {
  const absl::Duration t = absl::Seconds(10);
  fake.on_deliver_request = [to, t](const std::string& p, const v1::SignedEnvelope& e) {
    return to->DeliverRequest(p, e, t);
  };
  fake.on_deliver_transition = [to, t](const std::string& p,
                                       const v1::SignedEnvelope& e) {
    return to->DeliverTransition(p, e, t);
  };
  fake.on_propose = [to, t](const std::string& p, const v1::SignedEnvelope& e) {
    return to->ProposeTransition(p, e, t);
  };
  fake.on_exchange_heads = [to, t](const std::string& p, const v1::SignedEnvelope& e) {
    return to->ExchangeTreeHeads(p, e, t);
  };
  fake.on_fetch_evidence =
      [to](const std::string& p, const std::string& id, const std::string& sha,
           uint64_t offset, const std::function<absl::Status(absl::string_view)>& fn) {
        return to->FetchEvidence(p, id, sha, offset, fn, absl::Hours(1));
      };
  fake.on_consistency_proof = [to, t](const std::string& p, uint64_t a, uint64_t b) {
    return to->GetConsistencyProof(p, a, b, t);
  };
}

// FR requests, JP responds with a file. JP's transport is a loopback to FR;
// FR's is a fake that forwards to a loopback to JP unless a test scripts it.
class EvidenceExchangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Larger than one 1 MiB chunk would be slow; a few KiB with distinct
    // bytes is enough to tell a resumed transfer from a restarted one.
    for (int i = 0; content_.size() < 5000; ++i) {
      absl::StrAppend(&content_, "2026-01-25T10:00:", i % 60,
                      "Z 203.0.113.7 -> 198.51.100.", i, "\n");
    }
    sha_ = Sha256(content_);
    path_ = absl::StrCat(files_dir_.path(), "/", kFileName);
    std::ofstream(path_, std::ios::binary) << content_;

    jp_transport_ = harness_.Loopback("JP");
    fr_loop_ = harness_.Loopback("FR");
    ForwardAll(fr_transport_, fr_loop_.get());
    COMITY_ASSERT_OK_AND_ASSIGN(jp_, harness_.MakeNode("JP", jp_transport_.get()));
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
    fr_loop_->Connect("JP", jp_.get());
    jp_transport_->Connect("FR", fr_.get());
  }

  // FR's request `draft`, delivered to JP; its id.
  absl::StatusOr<std::string> SendToJp(const v1::RequestBody& draft) {
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord stored,
                            fr_->submission().Submit("alice", draft));
    COMITY_ASSIGN_OR_RETURN(v1::RequestBody body, BodyOf(stored));
    fr_->outbox().lane("JP")->RunRound([] { return false; });
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord received,
                            LoadRecord(*jp_->store(), body.id(), v1::INCOMING));
    if (received.case_state() != v1::CASE_DELIVERED) {
      return absl::InternalError("not delivered to JP");
    }
    return body.id();
  }

  // JP accepts and responds with the test file under `conditions`; the
  // steps reach FR.
  absl::Status JpResponds(const std::string& id,
                          std::vector<std::string> conditions = {}) {
    CaseBook::Decision accept;
    accept.action = v1::ACCEPT;
    COMITY_RETURN_IF_ERROR(jp_->cases().Decide("bob", id, accept).status());
    CaseBook::Decision respond;
    respond.action = v1::RESPOND;
    respond.text = "the connection logs asked for";
    COMITY_ASSIGN_OR_RETURN(
        v1::EvidenceFile staged,
        testing::StageFile(jp_->evidence_intake(), "bob", id, path_, "connection-logs.txt"));
    respond.evidence_sha256 = {staged.sha256()};
    respond.release_conditions = std::move(conditions);
    COMITY_RETURN_IF_ERROR(jp_->cases().Decide("bob", id, respond).status());
    Drain(*jp_, "FR");
    COMITY_ASSIGN_OR_RETURN(v1::RequestRecord row,
                            LoadRecord(*fr_->store(), id, v1::OUTGOING));
    if (row.transitions_size() != 2) {
      return absl::InternalError(
          absl::StrCat("FR holds ", row.transitions_size(), " steps"));
    }
    return absl::OkStatus();
  }

  // Runs `node`'s lane to `peer` until nothing more is due (each round
  // delivers one step per case).
  void Drain(Node& node, const std::string& peer) {
    for (int i = 0; i < 10; ++i) {
      node.outbox().lane(peer)->RunRound([] { return false; });
      OutboxStore& out = node.store()->outbox();
      const absl::Time now = harness_.clock().Now();
      auto t = out.DueTransitions(peer, now, 10, absl::InfiniteFuture());
      auto p = out.DueProposals(peer, now, 10, absl::InfiniteFuture());
      auto r = out.DueRequests(peer, now, 10, absl::InfiniteFuture());
      if (t.ok() && t->empty() && p.ok() && p->empty() && r.ok() && r->empty()) return;
    }
    ADD_FAILURE() << node.party() << "'s lane to " << peer << " did not drain";
  }

  void FetchFromJp() {
    fr_->evidence().FetchRound("JP", [] { return false; });
  }

  // The one file FR still waits for of `id`.
  absl::StatusOr<PendingEvidence> PendingOnFr(const std::string& id) {
    COMITY_ASSIGN_OR_RETURN(std::vector<PendingEvidence> pending,
                            fr_->store()->cases().PendingEvidenceOf(id));
    if (pending.size() != 1) {
      return absl::NotFoundError(absl::StrCat(pending.size(), " pending files"));
    }
    return pending[0];
  }

  absl::StatusOr<std::string> HeldOnFr() {
    return ReadFile(fr_->evidence().files().PathOf(sha_));
  }

  NodeHarness harness_;
  ::comity::testing::TempDir files_dir_;
  std::string content_;
  std::string sha_;
  std::string path_;
  std::unique_ptr<LoopbackTransport> jp_transport_;
  std::unique_ptr<LoopbackTransport> fr_loop_;
  FakePeerTransport fr_transport_;
  std::unique_ptr<Node> jp_;
  std::unique_ptr<Node> fr_;
};

TEST_F(EvidenceExchangeTest, AListedFileIsFetchedVerifiedStoredAndAuditedOnce) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  ASSERT_THAT(JpResponds(id), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(PendingEvidence pending, PendingOnFr(id));
  EXPECT_EQ(pending.peer, "JP");
  EXPECT_EQ(pending.sha256, sha_);
  EXPECT_EQ(pending.name, kFileName);
  EXPECT_EQ(pending.size, content_.size());
  EXPECT_EQ(pending.attempts, 0u);
  EXPECT_FALSE(fr_->evidence().files().Has(sha_));

  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 1);
  ASSERT_TRUE(fr_->evidence().files().Has(sha_));
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
  COMITY_ASSERT_OK_AND_ASSIGN(auto still, fr_->store()->cases().PendingEvidenceOf(id));
  EXPECT_THAT(still, IsEmpty());
  std::vector<v1::AuditEntry> received = Audit(*fr_, v1::EVIDENCE_RECEIVED);
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].request_id(), id);
  EXPECT_EQ(received[0].actor(), "peer:JP");
  EXPECT_EQ(received[0].party(), "JP");
  EXPECT_THAT(received[0].hashes(), ElementsAre(sha_));
  EXPECT_THAT(received[0].detail(), HasSubstr("SHA-256 verified"));
  COMITY_ASSERT_OK_AND_ASSIGN(auto records, fr_->Get(id));
  std::vector<v1::StoredEvidence> held = fr_->evidence().HeldOf(records);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].sha256(), sha_);

  // Held: the next round asks for nothing.
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 1);
  EXPECT_EQ(Audit(*fr_, v1::EVIDENCE_RECEIVED).size(), 1u);
}

TEST_F(EvidenceExchangeTest, ReleaseConditionsHoldTheFileUntilTheRequesterAcceptsThem) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  ASSERT_THAT(JpResponds(id, {kCondition}), IsOk());
  EXPECT_THAT(jp_->evidence().CheckAccess("FR", id, sha_),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(kCondition)));
  EXPECT_THAT(jp_->evidence().OpenForPeer("FR", id, sha_, 0, 1024),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("Art 28(2)")));

  // FR does not even ask: the file waits, without counting an attempt.
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 0);
  EXPECT_FALSE(fr_->evidence().files().Has(sha_));
  COMITY_ASSERT_OK_AND_ASSIGN(PendingEvidence waiting, PendingOnFr(id));
  EXPECT_EQ(waiting.attempts, 0u);
  EXPECT_THAT(waiting.last_error, HasSubstr("release conditions"));
  harness_.clock().Advance(absl::Hours(1));
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 0);

  // FR accepts; JP numbers the step; FR applies it.
  CaseBook::Decision accept;
  accept.action = v1::ACCEPT_CONDITIONS;
  ASSERT_THAT(fr_->cases().Propose("alice", id, accept), IsOk());
  Drain(*fr_, "JP");
  EXPECT_THAT(jp_->evidence().CheckAccess("FR", id, sha_), IsOk());

  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 1);
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
  EXPECT_EQ(Audit(*fr_, v1::EVIDENCE_RECEIVED).size(), 1u);
}

TEST_F(EvidenceExchangeTest, ARefusingPeerBacksTheFileOffAndAttemptsAreCounted) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  ASSERT_THAT(JpResponds(id), IsOk());
  auto forward = fr_transport_.on_fetch_evidence;
  fr_transport_.on_fetch_evidence =
      [](const std::string&, const std::string&, const std::string&, uint64_t,
         const std::function<absl::Status(absl::string_view)>&) {
        return absl::PermissionDeniedError("JP's evidence service refuses for now");
      };

  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 1);
  COMITY_ASSERT_OK_AND_ASSIGN(PendingEvidence p, PendingOnFr(id));
  EXPECT_EQ(p.attempts, 1u);
  EXPECT_EQ(p.last_error, "PERMISSION_DENIED: JP's evidence service refuses for now");

  // Backed off: the same instant asks nothing.
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 1);
  // Later (past retry_max_ms), it tries again and counts.
  harness_.clock().Advance(absl::Seconds(1));
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 2);
  COMITY_ASSERT_OK_AND_ASSIGN(p, PendingOnFr(id));
  EXPECT_EQ(p.attempts, 2u);

  fr_transport_.on_fetch_evidence = forward;
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 2);
  harness_.clock().Advance(absl::Seconds(1));
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 3);
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
  COMITY_ASSERT_OK_AND_ASSIGN(auto still, fr_->store()->cases().PendingEvidenceOf(id));
  EXPECT_THAT(still, IsEmpty());
  EXPECT_EQ(Audit(*fr_, v1::EVIDENCE_RECEIVED).size(), 1u);
}

// The backoff between fetch attempts runs on the monotonic clock: a wall
// clock stepped back two hours does not hold the next attempt back for two
// hours, and one stepped forward does not make it due at once.
class EvidenceBackoffTest : public EvidenceExchangeTest {
 protected:
  // JP responds to a request with the test file, and refuses FR's first
  // fetch of it: the file backs off (retry_initial_ms, 100, with jitter).
  void RespondAndRefuseOnce() {
    COMITY_ASSERT_OK_AND_ASSIGN(id_, SendToJp(NodeHarness::Draft("JP")));
    ASSERT_THAT(JpResponds(id_), IsOk());
    forward_ = fr_transport_.on_fetch_evidence;
    fr_transport_.on_fetch_evidence =
        [this](const std::string& party, const std::string& rid, const std::string& sha,
               uint64_t offset, const std::function<absl::Status(absl::string_view)>& fn) {
          if (fr_transport_.calls("FetchEvidence") == 1) {
            return absl::PermissionDeniedError("JP's evidence service refuses for now");
          }
          return forward_(party, rid, sha, offset, fn);
        };
    FetchFromJp();
    ASSERT_EQ(fr_transport_.calls("FetchEvidence"), 1);
    COMITY_ASSERT_OK_AND_ASSIGN(PendingEvidence p, PendingOnFr(id_));
    ASSERT_EQ(p.attempts, 1u);
    ASSERT_LE(p.next_attempt_at, harness_.clock().Now() + absl::Milliseconds(100));
  }

  std::string id_;
  std::function<absl::Status(const std::string&, const std::string&, const std::string&,
                             uint64_t, const std::function<absl::Status(absl::string_view)>&)>
      forward_;
};

TEST_F(EvidenceBackoffTest, AWallClockSteppedBackDoesNotHoldTheNextFetchBack) {
  ASSERT_NO_FATAL_FAILURE(RespondAndRefuseOnce());
  harness_.clock().Step(-absl::Hours(2));
  harness_.clock().Advance(absl::Seconds(1));  // Past the backoff, in real time.
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 2);
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
}

TEST_F(EvidenceBackoffTest, AWallClockSteppedForwardDoesNotEndTheBackoff) {
  ASSERT_NO_FATAL_FAILURE(RespondAndRefuseOnce());
  harness_.clock().Step(absl::Hours(2));
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 1);
  // What operators see is the next attempt by the clock as it reads now.
  COMITY_ASSERT_OK_AND_ASSIGN(PendingEvidence p, PendingOnFr(id_));
  EXPECT_EQ(p.attempts, 1u);
  EXPECT_GT(p.next_attempt_at, harness_.clock().Now());
  EXPECT_LE(p.next_attempt_at, harness_.clock().Now() + absl::Milliseconds(100));
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 1);

  harness_.clock().Advance(absl::Seconds(1));
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 2);
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
}

TEST_F(EvidenceBackoffTest, AfterARestartAFetchScheduledBeforeAStepBackIsDue) {
  ASSERT_NO_FATAL_FAILURE(RespondAndRefuseOnce());
  // The node restarts after the step: only the stored retry time is left,
  // two hours ahead of the clock, further than any backoff
  // (evidence.retry_max_ms): it was set before the step, and is due.
  harness_.clock().Step(-absl::Hours(2));
  jp_transport_->Connect("FR", nullptr);
  fr_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
  jp_transport_->Connect("FR", fr_.get());
  FetchFromJp();
  EXPECT_EQ(fr_transport_.calls("FetchEvidence"), 2);
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
}

TEST_F(EvidenceExchangeTest, ACutTransferResumesFromThePartialBytes) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  ASSERT_THAT(JpResponds(id), IsOk());
  const size_t half = content_.size() / 2;
  std::vector<uint64_t> offsets;
  fr_transport_.on_fetch_evidence =
      [&](const std::string&, const std::string&, const std::string&, uint64_t offset,
          const std::function<absl::Status(absl::string_view)>& fn) -> absl::Status {
    offsets.push_back(offset);
    if (offsets.size() == 1) {
      COMITY_RETURN_IF_ERROR(fn(absl::string_view(content_).substr(offset, half)));
      return absl::UnavailableError("connection reset");
    }
    return fn(absl::string_view(content_).substr(offset));
  };

  FetchFromJp();
  EXPECT_FALSE(fr_->evidence().files().Has(sha_));
  COMITY_ASSERT_OK_AND_ASSIGN(PendingEvidence p, PendingOnFr(id));
  EXPECT_EQ(p.attempts, 1u);
  EXPECT_THAT(p.last_error, StartsWith("UNAVAILABLE"));

  harness_.clock().Advance(absl::Seconds(1));
  FetchFromJp();
  EXPECT_THAT(offsets, ElementsAre(0u, half));
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
  EXPECT_EQ(Audit(*fr_, v1::EVIDENCE_RECEIVED).size(), 1u);
}

TEST_F(EvidenceExchangeTest, ACutTransferResumesAfterARestartToo) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  ASSERT_THAT(JpResponds(id), IsOk());
  const size_t half = content_.size() / 2;
  std::vector<uint64_t> offsets;
  fr_transport_.on_fetch_evidence =
      [&](const std::string&, const std::string&, const std::string&, uint64_t offset,
          const std::function<absl::Status(absl::string_view)>& fn) -> absl::Status {
    offsets.push_back(offset);
    if (offsets.size() == 1) {
      COMITY_RETURN_IF_ERROR(fn(absl::string_view(content_).substr(offset, half)));
      return absl::UnavailableError("connection reset");
    }
    return fn(absl::string_view(content_).substr(offset));
  };
  FetchFromJp();
  ASSERT_EQ(offsets.size(), 1u);

  jp_transport_->Connect("FR", nullptr);
  fr_.reset();
  COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fr_transport_));
  jp_transport_->Connect("FR", fr_.get());
  harness_.clock().Advance(absl::Seconds(1));
  FetchFromJp();
  EXPECT_THAT(offsets, ElementsAre(0u, half));
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
  EXPECT_EQ(Audit(*fr_, v1::EVIDENCE_RECEIVED).size(), 1u);
}

TEST_F(EvidenceExchangeTest,
       BytesThatDoNotMatchTheListedHashAreDiscardedAndFetchedAgain) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  ASSERT_THAT(JpResponds(id), IsOk());
  std::vector<uint64_t> offsets;
  auto forward = fr_transport_.on_fetch_evidence;
  fr_transport_.on_fetch_evidence =
      [&](const std::string& party, const std::string& rid, const std::string& sha,
          uint64_t offset, const std::function<absl::Status(absl::string_view)>& fn) {
        offsets.push_back(offset);
        if (offsets.size() > 1) return forward(party, rid, sha, offset, fn);
        std::string tampered = content_;
        tampered[10] ^= 0x01;
        return fn(tampered);
      };

  FetchFromJp();
  EXPECT_FALSE(fr_->evidence().files().Has(sha_));
  COMITY_ASSERT_OK_AND_ASSIGN(PendingEvidence p, PendingOnFr(id));
  EXPECT_EQ(p.attempts, 1u);
  EXPECT_THAT(p.last_error, StartsWith("DATA_LOSS"));
  EXPECT_THAT(Audit(*fr_, v1::EVIDENCE_RECEIVED), IsEmpty());

  // From the start again, not from the bad bytes' end.
  harness_.clock().Advance(absl::Seconds(1));
  FetchFromJp();
  EXPECT_THAT(offsets, ElementsAre(0u, 0u));
  EXPECT_THAT(HeldOnFr(), IsOkAndHolds(content_));
  EXPECT_EQ(Audit(*fr_, v1::EVIDENCE_RECEIVED).size(), 1u);
}

TEST_F(EvidenceExchangeTest, ExportRefusesTlpRedWithoutTheFlagAndAuditsOnceAtTheStart) {
  v1::RequestBody red = NodeHarness::Draft("JP");
  red.mutable_handling()->set_tlp(v1::TLP_RED);
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(red));
  ASSERT_THAT(JpResponds(id), IsOk());
  FetchFromJp();
  ASSERT_TRUE(fr_->evidence().files().Has(sha_));

  EXPECT_THAT(fr_->evidence().OpenForExport("alice", id, sha_, 0, false, 1024),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("TLP:RED")));
  EXPECT_THAT(Audit(*fr_, v1::EVIDENCE_EXPORTED), IsEmpty());

  COMITY_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<EvidenceReader> reader,
      fr_->evidence().OpenForExport("alice", id, sha_, 0, true, 1024));
  EXPECT_THAT(ReadAll(*reader), IsOkAndHolds(content_));
  std::vector<v1::AuditEntry> exported = Audit(*fr_, v1::EVIDENCE_EXPORTED);
  ASSERT_EQ(exported.size(), 1u);
  EXPECT_EQ(exported[0].request_id(), id);
  EXPECT_EQ(exported[0].actor(), "operator:alice");
  EXPECT_EQ(exported[0].party(), "JP");
  EXPECT_THAT(exported[0].hashes(), ElementsAre(sha_));
  EXPECT_THAT(exported[0].detail(), HasSubstr("TLP_RED, exported with --allow-tlp-red"));

  // A resumed export (offset > 0) continues without a second entry.
  COMITY_ASSERT_OK_AND_ASSIGN(
      reader, fr_->evidence().OpenForExport("alice", id, sha_, 100, true, 1024));
  EXPECT_THAT(ReadAll(*reader), IsOkAndHolds(content_.substr(100)));
  EXPECT_EQ(Audit(*fr_, v1::EVIDENCE_EXPORTED).size(), 1u);

  EXPECT_THAT(
      fr_->evidence().OpenForExport("alice", id, Sha256("not listed"), 0, true, 1024),
      StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(
      fr_->evidence().OpenForExport("alice", "no-such-request", sha_, 0, true, 1024),
      StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(EvidenceExchangeTest, ExportOfAmberMaterialNeedsNoFlag) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  ASSERT_THAT(JpResponds(id), IsOk());
  COMITY_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<EvidenceReader> reader,
      jp_->evidence().OpenForExport("bob", id, sha_, 0, false, 1024));
  EXPECT_THAT(ReadAll(*reader), IsOkAndHolds(content_));
  std::vector<v1::AuditEntry> exported = Audit(*jp_, v1::EVIDENCE_EXPORTED);
  ASSERT_EQ(exported.size(), 1u);
  EXPECT_EQ(exported[0].party(), "FR");  // On the requested side: the requesting party.
  EXPECT_EQ(exported[0].detail(), absl::StrCat(kFileName, "; TLP_AMBER"));
}

TEST_F(EvidenceExchangeTest, OnlyThePartyTheFileWasGivenToMayFetchIt) {
  COMITY_ASSERT_OK_AND_ASSIGN(std::string id, SendToJp(NodeHarness::Draft("JP")));
  ASSERT_THAT(JpResponds(id), IsOk());
  EXPECT_THAT(jp_->evidence().CheckAccess("FR", id, sha_), IsOk());
  EXPECT_THAT(
      jp_->evidence().CheckAccess("DE", id, sha_),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("was given to DE")));
  EXPECT_THAT(
      jp_->evidence().CheckAccess("FR", id, Sha256("another file")),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("was given to FR")));
  EXPECT_THAT(
      jp_->evidence().CheckAccess("FR", "00000000-0000-4000-8000-000000000000", sha_),
      StatusIs(absl::StatusCode::kPermissionDenied));
  // FR itself, as the requesting party, serves nothing of its own request.
  EXPECT_THAT(fr_->evidence().CheckAccess("JP", id, sha_),
              StatusIs(absl::StatusCode::kPermissionDenied));
  // Through the peer API: FR's node certificate is served by JP, JP's is
  // refused by FR.
  EXPECT_THAT(jp_->peer_api().FetchEvidence(harness_.PeerCall("FR"), id, sha_, 0),
              IsOk());
  EXPECT_THAT(fr_->peer_api().FetchEvidence(harness_.PeerCall("JP"), id, sha_, 0),
              StatusIs(absl::StatusCode::kPermissionDenied));
}

}  // namespace
}  // namespace comity
