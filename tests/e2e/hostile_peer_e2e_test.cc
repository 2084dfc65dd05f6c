// A hostile partner, end to end: JP (or FR) signs, with its real key and
// over its real TLS certificate, steps no honest node would send: fields
// over their bounds, times in 1970 or 9999. Each is refused before it is
// stored, with the field or time named, and audited; the case and the
// deadlines stay as they were.
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "comity/v1/peer.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
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

class HostilePeerE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    net_->ConfigText("FR") += "evidence { max_fetch_attempts: 4 }\n";
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
    CliResult r = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "submit", "--to",
                       "JP", "--type", "PRESERVATION", "--offence", "DATA_INTERFERENCE",
                       "--authority", "Parquet de Paris", "--facts", "ransomware",
                       "--data-sought", "logs", "--relation", "C2", "--custodian", "Hosting",
                       "--necessity", "rotation", "--intent-mla", "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    id_ = ParseJson(r.out).fields().at("id").string_value();
    auto records = net_->server("FR")->node()->Get(id_);
    ASSERT_THAT(records, IsOk());
    request_payload_ = (*records)[0].request().payload();
  }
  std::unique_ptr<SigningKey> KeyOf(const std::string& party) {
    auto pem = ReadFile(net_->PartyDir(party) + "/signing.key");
    EXPECT_THAT(pem, IsOk());
    auto key = SigningKey::FromPem(*pem);
    EXPECT_THAT(key, IsOk());
    return *std::move(key);
  }
  // JP's first step of the case, ACKNOWLEDGE, signed by JP at `when`.
  v1::Transition FirstStep(absl::Time when) {
    v1::Transition t;
    t.set_request_id(id_);
    t.set_sequence(1);
    t.set_previous_sha256(Sha256(request_payload_));
    t.set_action(v1::ACKNOWLEDGE);
    t.set_from_state(v1::CASE_DELIVERED);
    t.set_to_state(v1::CASE_ACKNOWLEDGED);
    t.set_party("JP");
    t.set_operator_name("mallory");
    t.set_time_unix_micros(absl::ToUnixMicros(when));
    return t;
  }
  grpc::Status SendToFrance(const v1::Transition& t) {
    auto env = SignEnvelope(kTransitionPayloadType, t.SerializeAsString(), "JP", "JP-1",
                            *KeyOf("JP"));
    EXPECT_THAT(env, IsOk());
    auto stub = v1::PeerService::NewStub(net_->PeerChannel("FR", "JP"));
    v1::DeliverTransitionRequest req;
    *req.mutable_transition() = *env;
    v1::DeliverTransitionResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return stub->DeliverTransition(&ctx, req, &resp);
  }
  std::string Audit(const std::string& party, const std::string& type) {
    CliResult r = Cli({"--connect", net_->ClientConfigPath(party, "carol"), "audit", "log",
                       "--type", type});
    EXPECT_EQ(r.code, 0) << r.err;
    return r.out;
  }
  int FranceSteps() {
    auto records = net_->server("FR")->node()->Get(id_);
    return records.ok() ? (*records)[0].transitions_size() : -1;
  }

  std::unique_ptr<testing::TestNetwork> net_;
  std::string id_;
  std::string request_payload_;
};

TEST_F(HostilePeerE2eTest, EveryFieldOfAStepIsBounded) {
  struct Case {
    const char* what;
    std::function<void(v1::Transition&)> spoil;
  } cases[] = {
      {"transition.evidence has 2000 entries",
       [](v1::Transition& t) {
         t.set_action(v1::RESPOND);
         for (int i = 0; i < 2000; ++i) {
           v1::EvidenceFile* f = t.add_evidence();
           f->set_name(absl::StrCat("f", i));
           f->set_sha256(Sha256(absl::StrCat(i)));
           f->set_size(1);
         }
       }},
      {"transition.text is 307200 bytes", [](v1::Transition& t) { t.set_text(std::string(300 << 10, 'x')); }},
      {"transition.reasons is", [](v1::Transition& t) { t.set_reasons(std::string(40 << 10, 'r')); }},
      {"transition.operator_name is", [](v1::Transition& t) { t.set_operator_name(std::string(500, 'o')); }},
      {"transition.release_conditions has",
       [](v1::Transition& t) {
         for (int i = 0; i < 100; ++i) t.add_release_conditions("c");
       }},
      {"transition.open_duties[] is",
       [](v1::Transition& t) { t.add_open_duties(std::string(5000, 'd')); }},
      {"transition.evidence[].sha256 is 5 bytes",
       [](v1::Transition& t) {
         v1::EvidenceFile* f = t.add_evidence();
         f->set_name("x");
         f->set_sha256("short");
         f->set_size(1);
       }},
      {"transition.evidence[].name is 0 bytes",
       [](v1::Transition& t) {
         v1::EvidenceFile* f = t.add_evidence();
         f->set_sha256(Sha256("x"));
         f->set_size(1);
       }},
      {"transition.request_id is 300 bytes",
       [](v1::Transition& t) { t.set_request_id(std::string(300, 'i')); }},
  };
  for (const Case& c : cases) {
    v1::Transition t = FirstStep(absl::Now());
    c.spoil(t);
    grpc::Status st = SendToFrance(t);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.what;
    EXPECT_THAT(st.error_message(), HasSubstr(c.what));
  }
  EXPECT_EQ(FranceSteps(), 0);
  EXPECT_THAT(Audit("FR", "PEER_REQUEST_REFUSED"), HasSubstr("transition.evidence has 2000"));
  // The honest step still goes through.
  grpc::Status ok = SendToFrance(FirstStep(absl::Now()));
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  EXPECT_EQ(FranceSteps(), 1);
}

TEST_F(HostilePeerE2eTest, StepTimesAreCheckedAgainstTheClockAndTheCase) {
  const absl::Time times[] = {absl::FromUnixSeconds(5000000),
                              absl::FromCivil(absl::CivilSecond(9999, 1, 1, 0, 0, 0),
                                              absl::UTCTimeZone()),
                              absl::Now() + absl::Hours(1), absl::Now() - absl::Hours(48)};
  const char* rules[] = {"before the step it follows", "later than this node's clock",
                         "later than this node's clock", "before the step it follows"};
  for (int i = 0; i < 4; ++i) {
    grpc::Status st = SendToFrance(FirstStep(times[i]));
    EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << i;
    EXPECT_THAT(st.error_message(), HasSubstr(rules[i])) << i;
  }
  EXPECT_EQ(FranceSteps(), 0);
  EXPECT_THAT(Audit("FR", "PEER_REQUEST_REFUSED"), HasSubstr("9999-01-01"));
  // No deadline comes from a refused step.
  CliResult overdue = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "overdue"});
  EXPECT_THAT(overdue.out, ::testing::Not(HasSubstr("1970")));
  EXPECT_THAT(overdue.out, ::testing::Not(HasSubstr("9999")));
}

TEST_F(HostilePeerE2eTest, ProposalsHeadsAndFetchesAreBoundedToo) {
  // FR, as a hostile requesting party, proposes to JP.
  auto fr_key = KeyOf("FR");
  auto jp_stub = v1::PeerService::NewStub(net_->PeerChannel("JP", "FR"));
  auto propose = [&](const v1::TransitionProposal& p) {
    auto env = SignEnvelope(kProposalPayloadType, p.SerializeAsString(), "FR", "FR-1", *fr_key);
    v1::ProposeTransitionRequest req;
    *req.mutable_proposal() = *env;
    v1::ProposeTransitionResponse resp;
    grpc::ClientContext ctx;
    return jp_stub->ProposeTransition(&ctx, req, &resp);
  };
  v1::TransitionProposal p;
  p.set_request_id(id_);
  p.set_action(v1::WITHDRAW);
  p.set_party("FR");
  p.set_operator_name("alice");
  p.set_time_unix_micros(absl::ToUnixMicros(absl::Now()));
  p.set_text(std::string(100 << 10, 'w'));
  grpc::Status st = propose(p);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("proposal.text"));
  p.set_text("withdrawn");
  p.set_time_unix_micros(0);
  st = propose(p);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("before the step it follows"));
  EXPECT_THAT(Audit("JP", "PEER_REQUEST_REFUSED"), HasSubstr("ProposeTransition"));

  // A tree head of JP dated in the future, sent to FR.
  v1::TreeHead head;
  head.set_party("JP");
  head.set_tree_size(1);
  head.set_root_hash(Sha256("root"));
  head.set_timestamp_unix_micros(absl::ToUnixMicros(absl::Now() + absl::Hours(24 * 365)));
  auto env = SignEnvelope(kTreeHeadPayloadType, head.SerializeAsString(), "JP", "JP-1",
                          *KeyOf("JP"));
  auto fr_stub = v1::PeerService::NewStub(net_->PeerChannel("FR", "JP"));
  v1::ExchangeTreeHeadsRequest exchange;
  *exchange.mutable_head() = *env;
  v1::ExchangeTreeHeadsResponse exchanged;
  grpc::ClientContext c1;
  st = fr_stub->ExchangeTreeHeads(&c1, exchange, &exchanged);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(st.error_message(), HasSubstr("later than this node's clock"));

  // An envelope with a 1 KB key id; a fetch with an oversized id.
  (*exchange.mutable_head()).set_key_id(std::string(1000, 'k'));
  grpc::ClientContext c2;
  st = fr_stub->ExchangeTreeHeads(&c2, exchange, &exchanged);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(st.error_message(), HasSubstr("envelope.key_id"));
  v1::FetchEvidenceRequest fetch;
  fetch.set_request_id(std::string(300, 'x'));
  fetch.set_sha256(Sha256("x"));
  grpc::ClientContext c3;
  auto reader = fr_stub->FetchEvidence(&c3, fetch);
  v1::EvidenceChunk chunk;
  while (reader->Read(&chunk)) {
  }
  st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(Audit("FR", "PEER_REQUEST_REFUSED"), HasSubstr("FetchEvidence"));
}

TEST_F(HostilePeerE2eTest, AFileThePartnerWillNotServeIsFetchedWithBackoffThenGivenUp) {
  // JP accepts and responds listing a file it never holds: each of FR's
  // fetches is refused (audited on JP).
  v1::Transition accept = FirstStep(absl::Now());
  accept.set_action(v1::ACCEPT);
  accept.set_to_state(v1::CASE_ACCEPTED);
  ASSERT_TRUE(SendToFrance(accept).ok());
  v1::Transition respond = accept;
  respond.set_sequence(2);
  respond.set_previous_sha256(Sha256(accept.SerializeAsString()));
  respond.set_action(v1::RESPOND);
  respond.set_from_state(v1::CASE_ACCEPTED);
  respond.set_to_state(v1::CASE_PARTLY_EXECUTED);
  respond.set_time_unix_micros(absl::ToUnixMicros(absl::Now()));
  v1::EvidenceFile* f = respond.add_evidence();
  f->set_name("never.bin");
  f->set_sha256(Sha256("never served"));
  f->set_size(1000);
  grpc::Status sent = SendToFrance(respond);
  ASSERT_TRUE(sent.ok()) << sent.error_message();

  // Attempts back off and stop after four; before, FR asked hundreds of
  // times a second, for ever.
  auto fetches = [&] {
    const std::string log = Audit("JP", "PEER_REQUEST_REFUSED");
    int n = 0;
    for (size_t at = log.find("FetchEvidence"); at != std::string::npos;
         at = log.find("FetchEvidence", at + 1)) {
      ++n;
    }
    return n;
  };
  absl::SleepFor(absl::Seconds(3));
  EXPECT_GE(fetches(), 1);
  EXPECT_LE(fetches(), 4);
  CliResult show;
  for (int i = 0; i < 300; ++i) {
    show = Cli({"--connect", net_->ClientConfigPath("FR", "alice"), "show", id_});
    if (show.out.find("gave up") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(show.out, HasSubstr("gave up after 4 attempts")) << show.out;
  const int all = fetches();
  EXPECT_EQ(all, 4);
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(fetches(), all);
}

}  // namespace
}  // namespace comity
