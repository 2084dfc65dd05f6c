// Outbox and DeliveryLane: what is due to a peer delivered and marked by its
// answer (a receipt that verifies, a refusal for good, no answer), the lane
// backing off a peer that cannot be reached, callers waiting for an attempt,
// and one peer's lane never held up by another's.
#include "server/node/outbox.h"

#include <optional>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/audit/receipt.h"
#include "server/core/envelope.h"
#include "server/crypto/sha256.h"
#include "server/util/time_proto.h"
#include "tests/node/node_test_support.h"
#include "tests/testing/status_matchers.h"

namespace comity {
namespace {

using ::comity::testing::AuditEntriesOf;
using ::comity::testing::FakePeerTransport;
using ::comity::testing::IsOk;
using ::comity::testing::LoopbackTransport;
using ::comity::testing::NodeHarness;
using ::comity::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::Ge;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Lt;
using ::testing::SizeIs;
using ::testing::StartsWith;

bool NeverStop() { return false; }

// What an AttemptDone was called with, and how often.
struct Attempts {
  AttemptDone Callback() {
    return [this](absl::StatusOr<v1::RequestRecord> r) {
      ++calls;
      last = std::move(r);
    };
  }
  int calls = 0;
  absl::StatusOr<v1::RequestRecord> last = absl::UnknownError("not called");
};

// FR's outbox over a FakePeerTransport; the fake can hand a call to the
// real nodes of the other parties through `loopback_` (with FR's node
// certificate), so that their receipts are real.
class OutboxTest : public ::testing::Test {
 protected:
  explicit OutboxTest(std::vector<std::string> parties = {"FR", "JP"})
      : parties_(parties), harness_(parties) {}

  void SetUp() override {
    loopback_ = harness_.Loopback("FR");
    for (const std::string& p : parties_) {
      if (p == "FR") continue;
      peer_transports_[p] = std::make_unique<FakePeerTransport>();
      COMITY_ASSERT_OK_AND_ASSIGN(peers_[p],
                                  harness_.MakeNode(p, peer_transports_[p].get()));
      loopback_->Connect(p, peers_[p].get());
    }
    COMITY_ASSERT_OK_AND_ASSIGN(fr_, harness_.MakeNode("FR", &fake_));
  }

  // The fake delivers requests to the real peers.
  void PeersAnswer() {
    fake_.on_deliver_request = [this](const std::string& party,
                                      const v1::SignedEnvelope& env) {
      return loopback_->DeliverRequest(party, env, absl::Seconds(1));
    };
  }
  // The fake answers every request with `status`.
  void PeersAnswer(absl::Status status) {
    fake_.on_deliver_request = [status](const std::string&, const v1::SignedEnvelope&)
        -> absl::StatusOr<v1::SignedEnvelope> { return status; };
  }

  // A request of alice's to `to`, stored for the outbox; its id in *id.
  void Submit(const std::string& to, std::string* id,
              v1::SignedEnvelope* request = nullptr) {
    COMITY_ASSERT_OK_AND_ASSIGN(
        v1::RequestRecord stored,
        fr_->submission().Submit("alice", NodeHarness::Draft(to)));
    v1::RequestBody body;
    ASSERT_TRUE(body.ParseFromString(stored.request().payload()));
    *id = body.id();
    if (request != nullptr) *request = stored.request();
  }

  DeliveryLane& lane(const std::string& peer) { return *fr_->outbox().lane(peer); }
  absl::Duration Round(const std::string& peer) { return lane(peer).RunRound(NeverStop); }

  v1::RequestRecord Sent(const std::string& id) {
    absl::StatusOr<std::vector<v1::RequestRecord>> records = fr_->Get(id);
    EXPECT_THAT(records, IsOk());
    if (records.ok()) {
      for (const v1::RequestRecord& r : *records) {
        if (r.direction() == v1::OUTGOING) return r;
      }
    }
    ADD_FAILURE() << "no sent record " << id;
    return v1::RequestRecord();
  }
  std::vector<v1::AuditEntry> FrAudit(v1::AuditEventType type,
                                      const std::string& id = "") {
    absl::StatusOr<std::vector<v1::AuditEntry>> entries = AuditEntriesOf(*fr_, type, id);
    EXPECT_THAT(entries, IsOk());
    return entries.ok() ? *std::move(entries) : std::vector<v1::AuditEntry>{};
  }
  absl::Time Now() { return harness_.clock().Now(); }
  absl::Duration Poll() {
    return absl::Milliseconds(fr_->context().config().delivery().retry_initial_ms());
  }

  const std::vector<std::string> parties_;
  NodeHarness harness_;
  std::unique_ptr<LoopbackTransport> loopback_;
  std::map<std::string, std::unique_ptr<FakePeerTransport>> peer_transports_;
  std::map<std::string, std::unique_ptr<Node>> peers_;
  FakePeerTransport fake_;
  std::unique_ptr<Node> fr_;
};

TEST_F(OutboxTest, ThereIsALaneForEachPeerAndNoOther) {
  EXPECT_NE(fr_->outbox().lane("JP"), nullptr);
  EXPECT_EQ(fr_->outbox().lane("JP")->peer(), "JP");
  EXPECT_EQ(fr_->outbox().lane("FR"), nullptr);
  EXPECT_EQ(fr_->outbox().lane("DE"), nullptr);
}

TEST_F(OutboxTest, ARequestIsDeliveredAndMarkedDeliveredWithTheReceipt) {
  PeersAnswer();
  std::string id;
  v1::SignedEnvelope request;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id, &request));
  EXPECT_EQ(Round("JP"), Poll());
  EXPECT_EQ(fake_.calls("DeliverRequest"), 1);

  v1::RequestRecord sent = Sent(id);
  EXPECT_EQ(sent.state(), v1::DELIVERED);
  EXPECT_EQ(sent.case_state(), v1::CASE_DELIVERED);
  EXPECT_THAT(VerifyReceipt(request, sent.receipt(), "JP", fr_->key_ring()), IsOk());
  // JP holds it.
  COMITY_ASSERT_OK_AND_ASSIGN(std::vector<v1::RequestRecord> at_jp,
                              peers_["JP"]->Get(id));
  ASSERT_THAT(at_jp, SizeIs(1));
  EXPECT_EQ(at_jp[0].direction(), v1::INCOMING);
  EXPECT_EQ(at_jp[0].receipt().SerializeAsString(), sent.receipt().SerializeAsString());

  std::vector<v1::AuditEntry> tried = FrAudit(v1::DELIVERY_ATTEMPTED, id);
  ASSERT_THAT(tried, SizeIs(1));
  EXPECT_EQ(tried[0].detail(), "attempt 1");
  EXPECT_EQ(tried[0].party(), "JP");
  std::vector<v1::AuditEntry> acked = FrAudit(v1::DELIVERY_ACKNOWLEDGED, id);
  ASSERT_THAT(acked, SizeIs(1));
  EXPECT_THAT(acked[0].hashes(), ElementsAre(Sha256(sent.receipt().payload())));
  EXPECT_THAT(acked[0].detail(), StartsWith("JP log entry "));
  EXPECT_THAT(FrAudit(v1::DELIVERY_FAILED), IsEmpty());

  EXPECT_TRUE(lane("JP").reachable());
  EXPECT_EQ(lane("JP").failures(), 0u);
  EXPECT_EQ(lane("JP").retry_at(), absl::InfinitePast());
  // Nothing more is due.
  harness_.clock().Advance(absl::Minutes(5));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 1);
}

TEST_F(OutboxTest, AnUnreachablePeerBacksTheLaneOffAndRoundsMeanwhileMakeNoCall) {
  PeersAnswer(absl::UnavailableError("JP is down"));
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  const absl::Time t0 = Now();
  const absl::Duration wait = Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 1);
  EXPECT_EQ(lane("JP").failures(), 1u);
  EXPECT_FALSE(lane("JP").reachable());
  // retry_initial_ms (100) times a jitter in [0.5, 1).
  EXPECT_THAT(lane("JP").retry_at() - t0,
              AllOf(Ge(absl::Milliseconds(50)), Lt(absl::Milliseconds(100))));
  EXPECT_EQ(wait, lane("JP").retry_at() - t0);

  v1::RequestRecord sent = Sent(id);
  EXPECT_EQ(sent.state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(sent.delivery_attempts(), 1u);
  EXPECT_EQ(sent.last_error(), "UNAVAILABLE: JP is down");
  std::vector<v1::AuditEntry> failed = FrAudit(v1::DELIVERY_FAILED, id);
  ASSERT_THAT(failed, SizeIs(1));
  EXPECT_EQ(failed[0].detail(), "UNAVAILABLE: JP is down");

  // During the backoff: no call, and the rest of the backoff to wait.
  harness_.clock().Advance(absl::Milliseconds(20));
  EXPECT_EQ(Round("JP"), lane("JP").retry_at() - Now());
  EXPECT_EQ(fake_.calls("DeliverRequest"), 1);
  EXPECT_EQ(lane("JP").failures(), 1u);

  // After it: one probe, failing again, a longer backoff.
  harness_.clock().Advance(absl::Seconds(1));
  const absl::Time t1 = Now();
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 2);
  EXPECT_EQ(lane("JP").failures(), 2u);
  EXPECT_THAT(lane("JP").retry_at() - t1,
              AllOf(Ge(absl::Milliseconds(100)), Lt(absl::Milliseconds(200))));
  EXPECT_EQ(Sent(id).delivery_attempts(), 2u);
  COMITY_ASSERT_OK_AND_ASSIGN(std::vector<v1::PeerStatus> peers, fr_->Peers());
  ASSERT_THAT(peers, SizeIs(1));
  EXPECT_FALSE(peers[0].reachable());
  EXPECT_EQ(peers[0].consecutive_failures(), 2u);
  EXPECT_EQ(peers[0].requests_queued(), 1u);
  EXPECT_EQ(peers[0].last_error(), "UNAVAILABLE: JP is down");

  // JP is back.
  PeersAnswer();
  harness_.clock().Advance(absl::Seconds(1));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 3);
  EXPECT_EQ(Sent(id).state(), v1::DELIVERED);
  EXPECT_EQ(lane("JP").failures(), 0u);
  EXPECT_TRUE(lane("JP").reachable());
  EXPECT_EQ(lane("JP").retry_at(), absl::InfinitePast());
  std::vector<v1::AuditEntry> tried = FrAudit(v1::DELIVERY_ATTEMPTED, id);
  ASSERT_THAT(tried, SizeIs(3));
  EXPECT_EQ(tried[2].detail(), "attempt 3");
}

// The lane's backoff is timed on the monotonic clock: a wall clock stepped
// forward does not end it (every lane would probe at once), one stepped
// back does not stretch it (nor keep gossip off the peer, which asks
// reachable()).
TEST_F(OutboxTest, AWallClockStepNeitherEndsNorStretchesTheLanesBackoff) {
  PeersAnswer(absl::UnavailableError("JP is down"));
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Round("JP");
  ASSERT_EQ(fake_.calls("DeliverRequest"), 1);
  ASSERT_FALSE(lane("JP").reachable());

  harness_.clock().Step(absl::Hours(2));
  EXPECT_FALSE(lane("JP").reachable());
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 1);
  // `comity peers` gives the next try by the clock as it reads now.
  EXPECT_GT(lane("JP").retry_at(), Now());
  EXPECT_LT(lane("JP").retry_at(), Now() + absl::Milliseconds(100));

  harness_.clock().Step(-absl::Hours(4));
  harness_.clock().Advance(absl::Seconds(1));  // Past the backoff, in real time.
  EXPECT_TRUE(lane("JP").reachable());
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 2);
}

TEST_F(OutboxTest, APermanentRefusalRejectsTheRequestWhichIsNotRetried) {
  PeersAnswer(absl::InvalidArgumentError("request body is malformed"));
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 1);
  v1::RequestRecord sent = Sent(id);
  EXPECT_EQ(sent.state(), v1::DELIVERY_REJECTED);
  EXPECT_EQ(sent.last_error(), "INVALID_ARGUMENT: request body is malformed");
  std::vector<v1::AuditEntry> refused = FrAudit(v1::DELIVERY_REFUSED, id);
  ASSERT_THAT(refused, SizeIs(1));
  EXPECT_EQ(refused[0].detail(), "INVALID_ARGUMENT: request body is malformed");
  EXPECT_THAT(FrAudit(v1::DELIVERY_FAILED), IsEmpty());
  // The peer answered: the lane does not back off.
  EXPECT_TRUE(lane("JP").reachable());
  EXPECT_EQ(lane("JP").failures(), 0u);
  // And never tries these bytes again.
  harness_.clock().Advance(absl::Hours(2));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 1);
  EXPECT_EQ(Sent(id).state(), v1::DELIVERY_REJECTED);
}

TEST_F(OutboxTest, ARequestRefusedForNowNeitherBacksTheLaneOffNorHoldsUpTheRest) {
  // JP refuses the oldest request as dated ahead of its clock (a sender whose
  // clock was ahead) and takes the others. It answered: the lane does not
  // back off, and the rest go out in the same round.
  std::string ahead, second, third;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &ahead));
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &second));
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &third));
  fake_.on_deliver_request =
      [&](const std::string& party,
          const v1::SignedEnvelope& env) -> absl::StatusOr<v1::SignedEnvelope> {
    v1::RequestBody body;
    if (body.ParseFromString(env.payload()) && body.id() == ahead) {
      return absl::FailedPreconditionError(
          "created_at is dated 2026-01-01T00:10:00Z, later than this node's clock "
          "(2026-01-01T00:00:00Z) allows (limits.max_clock_skew_seconds: 5m)");
    }
    return loopback_->DeliverRequest(party, env, absl::Seconds(1));
  };
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 3);
  EXPECT_EQ(Sent(ahead).state(), v1::PENDING_DELIVERY);
  EXPECT_THAT(Sent(ahead).last_error(), HasSubstr("later than this node's clock"));
  EXPECT_EQ(Sent(second).state(), v1::DELIVERED);
  EXPECT_EQ(Sent(third).state(), v1::DELIVERED);
  EXPECT_TRUE(lane("JP").reachable());
  EXPECT_EQ(lane("JP").failures(), 0u);
  // The refused one alone is retried, after its own backoff.
  harness_.clock().Advance(absl::Seconds(1));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 4);
  EXPECT_EQ(Sent(ahead).state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(lane("JP").failures(), 0u);
}

TEST_F(OutboxTest, AReceiptThatDoesNotVerifyIsNoDeliveryAndIsRetried) {
  // A real receipt of JP's, but for another request.
  PeersAnswer();
  std::string first;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &first));
  Round("JP");
  ASSERT_EQ(Sent(first).state(), v1::DELIVERED);
  const v1::SignedEnvelope other_receipt = Sent(first).receipt();
  fake_.on_deliver_request = [&](const std::string&, const v1::SignedEnvelope&) {
    return absl::StatusOr<v1::SignedEnvelope>(other_receipt);
  };
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverRequest"), 2);
  v1::RequestRecord sent = Sent(id);
  // Not DELIVERY_REJECTED although the check fails with INVALID_ARGUMENT:
  // the peer did not refuse anything.
  EXPECT_EQ(sent.state(), v1::PENDING_DELIVERY);
  EXPECT_THAT(sent.last_error(), StartsWith("INVALID_ARGUMENT: "));
  EXPECT_THAT(FrAudit(v1::DELIVERY_FAILED, id), SizeIs(1));
  EXPECT_THAT(FrAudit(v1::DELIVERY_ACKNOWLEDGED, id), IsEmpty());
  EXPECT_THAT(FrAudit(v1::DELIVERY_REFUSED), IsEmpty());
  // Tried again later, and delivered once the answer is right.
  PeersAnswer();
  harness_.clock().Advance(absl::Seconds(1));
  Round("JP");
  EXPECT_EQ(Sent(id).state(), v1::DELIVERED);
}

TEST_F(OutboxTest, WaitersGetTheStoredStateUntilTheOutboxStarts) {
  PeersAnswer();
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Attempts done;
  fr_->outbox().AwaitAttempt("JP", "r:" + id, done.Callback());
  ASSERT_EQ(done.calls, 1);
  ASSERT_THAT(done.last, IsOk());
  EXPECT_EQ(done.last->state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(fake_.calls("DeliverRequest"), 0);
  // Not a peer: the stored state at once too.
  Attempts other;
  fr_->outbox().Start();
  fr_->outbox().AwaitAttempt("DE", "r:" + id, other.Callback());
  EXPECT_EQ(other.calls, 1);
}

TEST_F(OutboxTest, AWaiterGetsTheRecordAfterTheAttempt) {
  PeersAnswer();
  int kicks = 0;
  fr_->outbox().SetWaker("JP", [&] { ++kicks; });
  fr_->outbox().Start();
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Attempts done;
  fr_->outbox().AwaitAttempt("JP", "r:" + id, done.Callback());
  EXPECT_EQ(kicks, 1);       // The lane is woken...
  EXPECT_EQ(done.calls, 0);  // ... and the caller waits for it.
  Round("JP");
  ASSERT_EQ(done.calls, 1);
  ASSERT_THAT(done.last, IsOk());
  EXPECT_EQ(done.last->state(), v1::DELIVERED);
  EXPECT_TRUE(done.last->has_receipt());
  Round("JP");
  EXPECT_EQ(done.calls, 1);
}

TEST_F(OutboxTest, AWaiterGetsAFailedAttemptThenTheStoredStateWhileTheLaneBacksOff) {
  PeersAnswer(absl::UnavailableError("JP is down"));
  fr_->outbox().Start();
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Attempts first;
  fr_->outbox().AwaitAttempt("JP", "r:" + id, first.Callback());
  Round("JP");
  ASSERT_EQ(first.calls, 1);
  ASSERT_THAT(first.last, IsOk());
  EXPECT_EQ(first.last->state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(first.last->delivery_attempts(), 1u);
  EXPECT_EQ(first.last->last_error(), "UNAVAILABLE: JP is down");
  ASSERT_FALSE(lane("JP").reachable());

  // While backing off, no attempt comes: the stored state, without a call.
  Attempts second;
  fr_->outbox().AwaitAttempt("JP", "r:" + id, second.Callback());
  EXPECT_EQ(second.calls, 0);
  Round("JP");
  ASSERT_EQ(second.calls, 1);
  ASSERT_THAT(second.last, IsOk());
  EXPECT_EQ(second.last->state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(second.last->delivery_attempts(), 1u);
  EXPECT_EQ(fake_.calls("DeliverRequest"), 1);
}

TEST_F(OutboxTest, AWaiterWhoseAttemptDoesNotComeGivesUpWithTheStoredState) {
  PeersAnswer();
  fr_->outbox().Start();
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Round("JP");
  ASSERT_EQ(Sent(id).state(), v1::DELIVERED);
  // Nothing of this key is due any more.
  Attempts done;
  fr_->outbox().AwaitAttempt("JP", "r:" + id, done.Callback());
  Round("JP");
  EXPECT_EQ(done.calls, 0);
  // Two attempt timeouts and a second later.
  harness_.clock().Advance(2 * fr_->context().attempt_timeout() + absl::Seconds(1));
  Round("JP");
  ASSERT_EQ(done.calls, 1);
  ASSERT_THAT(done.last, IsOk());
  EXPECT_EQ(done.last->state(), v1::DELIVERED);
}

TEST_F(OutboxTest, AWaiterGivesUpInTimeThoughTheWallClockWasSteppedBack) {
  PeersAnswer();
  fr_->outbox().Start();
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Round("JP");
  ASSERT_EQ(Sent(id).state(), v1::DELIVERED);
  Attempts done;
  fr_->outbox().AwaitAttempt("JP", "r:" + id, done.Callback());
  harness_.clock().Step(-absl::Hours(2));
  harness_.clock().Advance(2 * fr_->context().attempt_timeout() + absl::Seconds(1));
  Round("JP");
  const int calls = done.calls;
  fr_->outbox().Stop();  // Answers a waiter still waiting while `done` lives.
  ASSERT_EQ(calls, 1);
  ASSERT_THAT(done.last, IsOk());
  EXPECT_EQ(done.last->state(), v1::DELIVERED);
}

TEST_F(OutboxTest, StopAnswersEveryWaiterAndLaterCallersAtOnce) {
  PeersAnswer(absl::UnavailableError("JP is down"));
  fr_->outbox().Start();
  std::string pending;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &pending));
  Attempts waiting;
  fr_->outbox().AwaitAttempt("JP", "r:" + pending, waiting.Callback());
  ASSERT_EQ(waiting.calls, 0);
  fr_->outbox().Stop();
  ASSERT_EQ(waiting.calls, 1);
  EXPECT_THAT(
      waiting.last,
      StatusIs(absl::StatusCode::kUnavailable,
               HasSubstr("the request is stored and will be delivered after restart")));
  // After Stop: the stored state at once.
  Attempts later;
  fr_->outbox().AwaitAttempt("JP", "r:" + pending, later.Callback());
  ASSERT_EQ(later.calls, 1);
  ASSERT_THAT(later.last, IsOk());
  EXPECT_EQ(later.last->state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(fake_.calls("DeliverRequest"), 0);
}

TEST_F(OutboxTest, AProposalRefusedForGoodLeavesTheQueueAndItsWaiterHearsWhy) {
  PeersAnswer();
  fr_->outbox().Start();
  std::string id;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &id));
  Round("JP");
  ASSERT_EQ(Sent(id).state(), v1::DELIVERED);
  CaseBook::Decision withdraw;
  withdraw.action = v1::WITHDRAW;
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord queued,
                              fr_->cases().Propose("alice", id, withdraw));
  ASSERT_THAT(queued.queued_proposals(), SizeIs(1));

  // Unreachable: stays queued, the lane backs off.
  fake_.on_propose = [](const std::string&,
                        const v1::SignedEnvelope&) -> absl::StatusOr<v1::SignedEnvelope> {
    return absl::UnavailableError("JP is down");
  };
  Round("JP");
  EXPECT_EQ(fake_.calls("ProposeTransition"), 1);
  EXPECT_EQ(lane("JP").failures(), 1u);
  EXPECT_THAT(Sent(id).queued_proposals(), SizeIs(1));

  // Refused for good: off the queue, audited, the waiter told.
  fake_.on_propose = [](const std::string&,
                        const v1::SignedEnvelope&) -> absl::StatusOr<v1::SignedEnvelope> {
    return absl::FailedPreconditionError("the case moved on");
  };
  Attempts done;
  fr_->outbox().AwaitAttempt("JP", "p:" + id, done.Callback());
  harness_.clock().Advance(absl::Seconds(1));
  Round("JP");
  EXPECT_EQ(fake_.calls("ProposeTransition"), 2);
  ASSERT_EQ(done.calls, 1);
  EXPECT_THAT(done.last,
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("JP refused the proposal: the case moved on")));
  EXPECT_THAT(Sent(id).queued_proposals(), IsEmpty());
  EXPECT_EQ(Sent(id).case_state(), v1::CASE_DELIVERED);
  std::vector<v1::AuditEntry> refused = FrAudit(v1::PROPOSAL_REFUSED, id);
  ASSERT_THAT(refused, SizeIs(1));
  EXPECT_EQ(refused[0].detail(), "FAILED_PRECONDITION: the case moved on");
  EXPECT_THAT(refused[0].hashes(),
              ElementsAre(Sha256(queued.queued_proposals(0).payload())));
  EXPECT_EQ(lane("JP").failures(), 0u);
  harness_.clock().Advance(absl::Seconds(1));
  Round("JP");
  EXPECT_EQ(fake_.calls("ProposeTransition"), 2);
}

TEST_F(OutboxTest, ACaseStepIsDeliveredOnlyAgainstThePeersAcknowledgementOfIt) {
  // JP requests and FR decides: FR's lane to JP carries the step.
  Node& jp = *peers_["JP"];
  peer_transports_["JP"]->on_deliver_request = [this](const std::string&,
                                                      const v1::SignedEnvelope& env) {
    return fr_->peer_api().DeliverRequest(harness_.PeerCall("JP"), env);
  };
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord stored,
                              jp.submission().Submit("alice", NodeHarness::Draft("FR")));
  v1::RequestBody body;
  ASSERT_TRUE(body.ParseFromString(stored.request().payload()));
  const std::string id = body.id();
  jp.outbox().lane("FR")->RunRound(NeverStop);
  CaseBook::Decision acknowledge;
  acknowledge.action = v1::ACKNOWLEDGE;
  COMITY_ASSERT_OK_AND_ASSIGN(v1::RequestRecord decided,
                              fr_->cases().Decide("bob", id, acknowledge));
  ASSERT_THAT(decided.transitions(), SizeIs(1));
  const v1::SignedEnvelope step = decided.transitions(0);

  // JP's signed acknowledgement, but of other bytes: not a delivery.
  fake_.on_deliver_transition = [&](const std::string&, const v1::SignedEnvelope&) {
    v1::Acknowledgement a;
    a.set_request_id(id);
    a.set_sequence(1);
    a.set_payload_sha256(Sha256("other bytes"));
    a.set_party("JP");
    return jp.context().Sign(kAckPayloadType, a);
  };
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverTransition"), 1);
  EXPECT_THAT(FrAudit(v1::TRANSITION_DELIVERED, id), IsEmpty());
  EXPECT_EQ(lane("JP").failures(), 0u);  // JP answered.
  COMITY_ASSERT_OK_AND_ASSIGN(std::vector<v1::PeerStatus> peers, fr_->Peers());
  ASSERT_THAT(peers, SizeIs(1));
  EXPECT_EQ(peers[0].transitions_queued(), 1u);

  // JP unreachable: the lane backs off.
  fake_.on_deliver_transition =
      [](const std::string&,
         const v1::SignedEnvelope&) -> absl::StatusOr<v1::SignedEnvelope> {
    return absl::UnavailableError("JP is down");
  };
  harness_.clock().Advance(absl::Seconds(1));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverTransition"), 2);
  EXPECT_EQ(lane("JP").failures(), 1u);
  EXPECT_FALSE(lane("JP").reachable());

  // The real JP applies it and acknowledges these bytes.
  fake_.on_deliver_transition = [this](const std::string& party,
                                       const v1::SignedEnvelope& env) {
    return loopback_->DeliverTransition(party, env, absl::Seconds(1));
  };
  harness_.clock().Advance(absl::Seconds(1));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverTransition"), 3);
  std::vector<v1::AuditEntry> delivered = FrAudit(v1::TRANSITION_DELIVERED, id);
  ASSERT_THAT(delivered, SizeIs(1));
  EXPECT_EQ(delivered[0].detail(), "step 1");
  ASSERT_THAT(delivered[0].hashes(), SizeIs(2));
  EXPECT_EQ(delivered[0].hashes(0), Sha256(step.payload()));
  EXPECT_EQ(lane("JP").failures(), 0u);
  COMITY_ASSERT_OK_AND_ASSIGN(std::vector<v1::RequestRecord> at_jp, jp.Get(id));
  ASSERT_THAT(at_jp, SizeIs(1));
  EXPECT_EQ(at_jp[0].case_state(), v1::CASE_ACKNOWLEDGED);
  // Not sent again.
  harness_.clock().Advance(absl::Seconds(1));
  Round("JP");
  EXPECT_EQ(fake_.calls("DeliverTransition"), 3);
}

// FR sends to JP and DE.
class OutboxTwoPeersTest : public OutboxTest {
 protected:
  OutboxTwoPeersTest() : OutboxTest({"FR", "JP", "DE"}) {}
};

TEST_F(OutboxTwoPeersTest, APeerThatIsDownDoesNotDelayAnotherPeersLane) {
  // JP's call hangs until the test lets it fail; DE answers.
  absl::Notification jp_called, jp_release;
  fake_.on_deliver_request =
      [&](const std::string& party,
          const v1::SignedEnvelope& env) -> absl::StatusOr<v1::SignedEnvelope> {
    if (party == "JP") {
      jp_called.Notify();
      jp_release.WaitForNotification();
      return absl::DeadlineExceededError("JP did not answer");
    }
    return loopback_->DeliverRequest(party, env, absl::Seconds(1));
  };
  std::string to_jp, to_de;
  ASSERT_NO_FATAL_FAILURE(Submit("JP", &to_jp));
  ASSERT_NO_FATAL_FAILURE(Submit("DE", &to_de));

  std::thread jp_lane([&] { Round("JP"); });
  jp_called.WaitForNotification();
  // JP's call is still under way; DE's lane delivers regardless.
  Round("DE");
  EXPECT_EQ(Sent(to_de).state(), v1::DELIVERED);
  EXPECT_EQ(Sent(to_jp).state(), v1::PENDING_DELIVERY);
  EXPECT_TRUE(lane("DE").reachable());
  jp_release.Notify();
  jp_lane.join();

  EXPECT_EQ(Sent(to_jp).state(), v1::PENDING_DELIVERY);
  EXPECT_EQ(lane("JP").failures(), 1u);
  EXPECT_FALSE(lane("JP").reachable());
  EXPECT_EQ(lane("DE").failures(), 0u);
  EXPECT_TRUE(lane("DE").reachable());

  // While JP's lane backs off, DE's goes on.
  std::string to_de_2;
  ASSERT_NO_FATAL_FAILURE(Submit("DE", &to_de_2));
  const int jp_calls = fake_.calls("DeliverRequest");
  Round("JP");
  Round("DE");
  EXPECT_EQ(fake_.calls("DeliverRequest"), jp_calls + 1);
  EXPECT_EQ(Sent(to_de_2).state(), v1::DELIVERED);

  COMITY_ASSERT_OK_AND_ASSIGN(std::vector<v1::PeerStatus> peers, fr_->Peers());
  std::map<std::string, v1::PeerStatus> by_party;
  for (const v1::PeerStatus& p : peers) by_party[p.party()] = p;
  EXPECT_FALSE(by_party["JP"].reachable());
  EXPECT_EQ(by_party["JP"].consecutive_failures(), 1u);
  EXPECT_EQ(by_party["JP"].requests_queued(), 1u);
  EXPECT_TRUE(by_party["DE"].reachable());
  EXPECT_EQ(by_party["DE"].consecutive_failures(), 0u);
  EXPECT_EQ(by_party["DE"].requests_queued(), 0u);
}

}  // namespace
}  // namespace comity
