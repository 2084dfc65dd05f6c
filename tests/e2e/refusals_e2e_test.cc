// Walks every row of docs/refusals.md on two real nodes over TLS: each row
// names an RPC, what makes a node refuse it, the status and the audit entry
// the refusal leaves. The test provokes each one, checks the code, and
// checks the entry appended with the method in its detail. A row without a
// trigger here, or a trigger without a row, fails.
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "comity/v1/operator.grpc.pb.h"
#include "comity/v1/peer.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/random.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
#include "server/util/time_proto.h"
#include "tests/testing/e2e_helpers.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_network.h"

namespace comity {
namespace {

using ::comity::testing::Cli;
using ::comity::testing::CliResult;
using ::comity::testing::IsOk;
using ::comity::testing::ParseJson;

struct Row {
  std::string id, rpc, status, entry;
};

// The rows of the tables of docs/refusals.md.
std::vector<Row> ReadRows() {
  std::ifstream in(testing::SourceDir() + "/docs/refusals.md");
  std::vector<Row> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "| P") && !absl::StartsWith(line, "| O")) continue;
    std::vector<std::string> cells = absl::StrSplit(line, '|');
    // "", id, rpc, when, status, entry, ""
    if (cells.size() < 7) continue;
    for (auto& c : cells) c = std::string(absl::StripAsciiWhitespace(c));
    rows.push_back({cells[1], cells[2], cells[4], cells[5]});
  }
  return rows;
}

// What a trigger did: the call's status, on whose node, by which method
// name (as the entry's detail starts).
struct Outcome {
  grpc::Status status;
  std::string party;
  std::string method;
};

class RefusalsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    ASSERT_THAT(net_->Start("FR"), IsOk());
    ASSERT_THAT(net_->Start("JP"), IsOk());
    // FR -> JP, TLP:RED, answered with a file under a condition.
    to_jp_ = Submit("FR", "JP", {"--tlp", "RED"});
    ASSERT_EQ(Op("JP", "bob", {"accept", to_jp_}).code, 0);
    const std::string path = net_->dir() + "/records.csv";
    std::ofstream(path) << std::string(5000, 'r');
    released_sha_ = Sha256(std::string(5000, 'r'));
    CliResult r = Op("JP", "bob", {"respond", to_jp_, "--text", "records", "--file", path,
                                   "--condition", "only for case 1"});
    ASSERT_EQ(r.code, 0) << r.err;
    // JP -> FR.
    to_fr_ = Submit("JP", "FR", {});
    for (int i = 0; i < 100 && Steps("FR", to_jp_) < 2; ++i) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_EQ(Steps("FR", to_jp_), 2);
    // JP -> FR, accepted by FR: it takes evidence.
    accepted_ = Submit("JP", "FR", {});
    for (int i = 0; i < 100 && Steps("FR", accepted_) < 1; ++i) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    r = Op("FR", "bob", {"accept", accepted_});
    ASSERT_EQ(r.code, 0) << r.err;
  }

  std::string Submit(const std::string& from, const std::string& to,
                     std::vector<std::string> extra) {
    std::vector<std::string> args =
        testing::SubmitPreservationArgs(net_->ClientConfigPath(from, "alice"), to);
    args.insert(args.end(), extra.begin(), extra.end());
    CliResult r = Cli(args);
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  }
  CliResult Op(const std::string& party, const std::string& name,
               std::vector<std::string> args) {
    args.insert(args.begin(), {"--connect", net_->ClientConfigPath(party, name)});
    return Cli(args);
  }
  int Steps(const std::string& party, const std::string& id) {
    auto r = net_->server(party)->node()->Get(id);
    return r.ok() ? (*r)[0].transitions_size() : -1;
  }
  v1::RequestRecord Record(const std::string& party, const std::string& id) {
    auto r = net_->server(party)->node()->Get(id);
    EXPECT_THAT(r, IsOk());
    return r.ok() ? (*r)[0] : v1::RequestRecord();
  }
  v1::SignedEnvelope Sign(absl::string_view type, const google::protobuf::Message& m,
                          const std::string& party) {
    auto pem = ReadFile(net_->PartyDir(party) + "/signing.key");
    auto key = SigningKey::FromPem(*pem);
    auto env = SignEnvelope(type, m.SerializeAsString(), party, party + "-1", **key);
    EXPECT_THAT(env, IsOk());
    return *env;
  }
  std::unique_ptr<v1::PeerService::Stub> Peer(const std::string& to, const std::string& as) {
    return v1::PeerService::NewStub(net_->PeerChannel(to, as));
  }
  std::unique_ptr<v1::OperatorService::Stub> Operator(const std::string& party,
                                                      const std::string& name) {
    return v1::OperatorService::NewStub(net_->OperatorChannel(party, name));
  }
  static void Deadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  }
  grpc::Status DeliverRequest(const v1::SignedEnvelope& env) {
    v1::DeliverRequestRequest req;
    *req.mutable_request() = env;
    v1::DeliverRequestResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Peer("FR", "JP")->DeliverRequest(&ctx, req, &resp);
  }
  grpc::Status DeliverTransition(const v1::SignedEnvelope& env) {
    v1::DeliverTransitionRequest req;
    *req.mutable_transition() = env;
    v1::DeliverTransitionResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Peer("FR", "JP")->DeliverTransition(&ctx, req, &resp);
  }
  grpc::Status Propose(const v1::TransitionProposal& p) {
    v1::ProposeTransitionRequest req;
    *req.mutable_proposal() = Sign(kProposalPayloadType, p, "FR");
    v1::ProposeTransitionResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Peer("JP", "FR")->ProposeTransition(&ctx, req, &resp);
  }
  grpc::Status Fetch(const std::string& id, const std::string& sha) {
    v1::FetchEvidenceRequest req;
    req.set_request_id(id);
    req.set_sha256(sha);
    grpc::ClientContext ctx;
    Deadline(ctx);
    auto reader = Peer("JP", "FR")->FetchEvidence(&ctx, req);
    v1::EvidenceChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  }
  grpc::Status ExchangeHeads(const v1::SignedEnvelope& head) {
    v1::ExchangeTreeHeadsRequest req;
    *req.mutable_head() = head;
    v1::ExchangeTreeHeadsResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Peer("FR", "JP")->ExchangeTreeHeads(&ctx, req, &resp);
  }
  grpc::Status Announce(const v1::SignedEnvelope& env) {
    v1::AnnounceKeyRequest req;
    *req.mutable_announcement() = env;
    v1::AnnounceKeyResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Peer("FR", "JP")->AnnounceKey(&ctx, req, &resp);
  }
  // JP's request to FR, as FR stored it, re-signed after `edit`.
  v1::SignedEnvelope JpRequest(const std::function<void(v1::RequestBody&)>& edit) {
    v1::RequestBody body;
    EXPECT_TRUE(body.ParseFromString(Record("FR", to_fr_).request().payload()));
    edit(body);
    return Sign(kRequestPayloadType, body, "JP");
  }
  // The next step JP could take in the case of FR's request, as FR holds it.
  v1::Transition NextJpStep() {
    v1::RequestRecord row = Record("FR", to_jp_);
    v1::Transition t;
    t.set_request_id(to_jp_);
    t.set_sequence(static_cast<uint32_t>(row.transitions_size()) + 1);
    t.set_previous_sha256(Sha256(row.transitions(row.transitions_size() - 1).payload()));
    t.set_action(v1::RESPOND);
    t.set_from_state(row.case_state());
    t.set_to_state(v1::CASE_PARTLY_EXECUTED);
    t.set_party("JP");
    t.set_operator_name("mallory");
    t.set_text("more records");
    t.set_time_unix_micros(absl::ToUnixMicros(absl::Now()));
    return t;
  }
  v1::TransitionProposal Withdraw() {
    v1::TransitionProposal p;
    p.set_request_id(to_jp_);
    p.set_action(v1::WITHDRAW);
    p.set_party("FR");
    p.set_operator_name("alice");
    p.set_time_unix_micros(absl::ToUnixMicros(absl::Now()));
    p.set_text("withdrawn");
    p.set_based_on_sequence(2);
    return p;
  }
  v1::SignedEnvelope JpHead(uint64_t size, const std::string& root, absl::Time at) {
    v1::TreeHead h;
    h.set_party("JP");
    h.set_tree_size(size);
    h.set_root_hash(root);
    h.set_timestamp_unix_micros(absl::ToUnixMicros(at));
    return Sign(kTreeHeadPayloadType, h, "JP");
  }

  std::map<std::string, std::function<Outcome()>> Triggers();

  std::unique_ptr<testing::TestNetwork> net_;
  std::string to_jp_, to_fr_, accepted_, released_sha_;
};

std::map<std::string, std::function<Outcome()>> RefusalsE2eTest::Triggers() {
  std::map<std::string, std::function<Outcome()>> t;
  // --- Peer RPCs. ---
  t["P1"] = [&] {
    grpc::SslCredentialsOptions opts;
    // JP's CA is trusted on FR's peer port, so the handshake passes; the
    // certificate is an operator's, not JP's node's.
    opts.pem_root_certs = *ReadFile(net_->PartyDir("FR") + "/ca.pem");
    opts.pem_cert_chain = *ReadFile(net_->PartyDir("JP") + "/operators/dave.pem");
    opts.pem_private_key = *ReadFile(net_->PartyDir("JP") + "/operators/dave.key");
    auto stub = v1::PeerService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", net_->peer_port("FR")),
                            grpc::SslCredentials(opts)));
    v1::ExchangeTreeHeadsRequest req;
    v1::ExchangeTreeHeadsResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{stub->ExchangeTreeHeads(&ctx, req, &resp), "FR", "ExchangeTreeHeads"};
  };
  t["P2"] = [&] {
    v1::SignedEnvelope env = JpRequest([](v1::RequestBody&) {});
    env.set_payload(std::string(2 << 20, 'x'));
    return Outcome{DeliverRequest(env), "FR", "DeliverRequest"};
  };
  t["P3"] = [&] {
    v1::SignedEnvelope env = JpRequest([](v1::RequestBody& b) { b.set_id(RandomUuid()); });
    env.set_signer_party("DE");
    return Outcome{DeliverRequest(env), "FR", "DeliverRequest"};
  };
  t["P4"] = [&] {
    v1::SignedEnvelope env = JpRequest([](v1::RequestBody& b) { b.set_id(RandomUuid()); });
    (*env.mutable_signature())[0] ^= 1;
    return Outcome{DeliverRequest(env), "FR", "DeliverRequest"};
  };
  t["P5"] = [&] {
    v1::SignedEnvelope env = JpRequest([](v1::RequestBody& b) { b.set_id(RandomUuid()); });
    env.set_key_id(std::string(1000, 'k'));
    return Outcome{DeliverRequest(env), "FR", "DeliverRequest"};
  };
  t["P6"] = [&] {
    return Outcome{DeliverRequest(JpRequest([](v1::RequestBody& b) {
                     b.set_id(RandomUuid());
                     b.set_requested_party("DE");
                   })),
                   "FR", "DeliverRequest"};
  };
  t["P7"] = [&] {
    return Outcome{DeliverRequest(JpRequest([](v1::RequestBody& b) {
                     b.mutable_particulars()->set_facts_summary("other facts");
                   })),
                   "FR", "DeliverRequest"};
  };
  t["P8"] = [&] {
    return Outcome{DeliverRequest(JpRequest([](v1::RequestBody& b) {
                     b.set_id(RandomUuid());
                     *b.mutable_created_at() = ToProto(absl::Now() + absl::Hours(1));
                   })),
                   "FR", "DeliverRequest"};
  };
  t["P9"] = [&] {
    v1::SignedEnvelope env = Sign(kTransitionPayloadType, NextJpStep(), "JP");
    env.set_signer_party("DE");
    return Outcome{DeliverTransition(env), "FR", "DeliverTransition"};
  };
  t["P10"] = [&] {
    v1::Transition step = NextJpStep();
    step.set_request_id(to_fr_);
    return Outcome{DeliverTransition(Sign(kTransitionPayloadType, step, "JP")), "FR",
                   "DeliverTransition"};
  };
  t["P11"] = [&] {
    v1::Transition step = NextJpStep();
    step.set_text(std::string(300 << 10, 't'));
    return Outcome{DeliverTransition(Sign(kTransitionPayloadType, step, "JP")), "FR",
                   "DeliverTransition"};
  };
  t["P12"] = [&] {
    v1::Transition step = NextJpStep();
    step.set_time_unix_micros(absl::ToUnixMicros(absl::Now() + absl::Hours(2)));
    return Outcome{DeliverTransition(Sign(kTransitionPayloadType, step, "JP")), "FR",
                   "DeliverTransition"};
  };
  t["P13"] = [&] {
    v1::Transition step = NextJpStep();
    step.set_sequence(step.sequence() + 5);
    return Outcome{DeliverTransition(Sign(kTransitionPayloadType, step, "JP")), "FR",
                   "DeliverTransition"};
  };
  t["P14"] = [&] {
    v1::Transition step = NextJpStep();
    step.set_action(v1::ACKNOWLEDGE);
    return Outcome{DeliverTransition(Sign(kTransitionPayloadType, step, "JP")), "FR",
                   "DeliverTransition"};
  };
  t["P15"] = [&] {
    v1::Transition first;
    EXPECT_TRUE(first.ParseFromString(Record("FR", to_jp_).transitions(0).payload()));
    first.set_operator_name("someone else");
    return Outcome{DeliverTransition(Sign(kTransitionPayloadType, first, "JP")), "FR",
                   "DeliverTransition"};
  };
  t["P16"] = [&] {
    v1::TransitionProposal p = Withdraw();
    p.set_request_id(to_fr_);
    return Outcome{Propose(p), "JP", "ProposeTransition"};
  };
  t["P17"] = [&] {
    v1::TransitionProposal p = Withdraw();
    p.set_text(std::string(100 << 10, 'w'));
    return Outcome{Propose(p), "JP", "ProposeTransition"};
  };
  t["P18"] = [&] {
    v1::TransitionProposal p = Withdraw();
    p.set_time_unix_micros(absl::ToUnixMicros(absl::Now() - absl::Hours(24 * 30)));
    return Outcome{Propose(p), "JP", "ProposeTransition"};
  };
  t["P19"] = [&] {
    v1::TransitionProposal p = Withdraw();
    p.set_action(v1::ACCEPT);
    return Outcome{Propose(p), "JP", "ProposeTransition"};
  };
  t["P20"] = [&] { return Outcome{Fetch(to_jp_, Sha256("not given")), "JP", "FetchEvidence"}; };
  t["P21"] = [&] { return Outcome{Fetch(to_jp_, released_sha_), "JP", "FetchEvidence"}; };
  t["P22"] = [&] {
    return Outcome{Fetch(std::string(300, 'i'), released_sha_), "JP", "FetchEvidence"};
  };
  t["P23"] = [&] {
    v1::SignedEnvelope head = JpHead(1, Sha256("r"), absl::Now());
    head.set_signer_party("DE");
    return Outcome{ExchangeHeads(head), "FR", "ExchangeTreeHeads"};
  };
  t["P24"] = [&] {
    return Outcome{ExchangeHeads(JpHead(1, Sha256("r"), absl::Now() + absl::Hours(24))), "FR",
                   "ExchangeTreeHeads"};
  };
  t["P25"] = [&] {
    auto held = net_->server("FR")->node()->store()->audit().LatestPeerHead("JP");
    EXPECT_TRUE(held.ok() && held->has_value());
    const uint64_t size = (held.ok() && held->has_value()) ? (*held)->head.tree_size() : 1;
    return Outcome{ExchangeHeads(JpHead(size, Sha256("another root"), absl::Now())), "FR",
                   "ExchangeTreeHeads"};
  };
  t["P26"] = [&] {
    v1::GetConsistencyProofRequest req;
    req.set_old_size(5);
    req.set_new_size(1000000000);
    v1::GetConsistencyProofResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Peer("FR", "JP")->GetConsistencyProof(&ctx, req, &resp), "FR",
                   "GetConsistencyProof"};
  };
  t["P27"] = [&] {
    auto heads = net_->server("FR")->node()->store()->audit().TreeHeads();
    EXPECT_TRUE(heads.ok() && !heads->empty());
    v1::ReportSplitViewRequest req;
    *req.mutable_first() = heads->back().signed_head;
    *req.mutable_second() = heads->back().signed_head;
    v1::ReportSplitViewResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Peer("FR", "JP")->ReportSplitView(&ctx, req, &resp), "FR",
                   "ReportSplitView"};
  };
  auto announcement = [this](absl::Time at) {
    v1::KeyAnnouncement a;
    a.set_party("JP");
    a.set_time_unix_micros(absl::ToUnixMicros(at));
    a.set_key_id("JP-2");
    a.set_ed25519_public_key(std::string(32, 'k'));
    return Sign(kKeyAnnouncementPayloadType, a, "JP");
  };
  t["P28"] = [this, announcement] {
    v1::SignedEnvelope env = announcement(absl::Now());
    env.set_signer_party("DE");
    return Outcome{Announce(env), "FR", "AnnounceKey"};
  };
  t["P29"] = [this, announcement] {
    return Outcome{Announce(announcement(absl::Now() - absl::Hours(72))), "FR", "AnnounceKey"};
  };
  t["P30"] = [&] {
    v1::GetSharedRecordsRequest req;
    req.set_page_token("not a cursor");
    v1::GetSharedRecordsResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Peer("FR", "JP")->GetSharedRecords(&ctx, req, &resp), "FR",
                   "GetSharedRecords"};
  };
  t["P31"] = [&] {
    v1::DeliverRequestsRequest req;
    const v1::SignedEnvelope env = JpRequest([](v1::RequestBody& b) { b.set_id(RandomUuid()); });
    for (int i = 0; i < 257; ++i) *req.add_requests() = env;
    v1::DeliverRequestsResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Peer("FR", "JP")->DeliverRequests(&ctx, req, &resp), "FR",
                   "DeliverRequests"};
  };
  t["P32"] = [&] {
    v1::DeliverRequestsRequest req;
    *req.add_requests() = JpRequest([](v1::RequestBody& b) { b.set_id(RandomUuid()); });
    v1::SignedEnvelope forged = JpRequest([](v1::RequestBody& b) { b.set_id(RandomUuid()); });
    (*forged.mutable_signature())[0] ^= 1;
    *req.add_requests() = forged;
    v1::DeliverRequestsResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    grpc::Status call = Peer("FR", "JP")->DeliverRequests(&ctx, req, &resp);
    EXPECT_TRUE(call.ok()) << call.error_message();
    if (!call.ok() || resp.outcomes_size() != 2) return Outcome{call, "FR", "DeliverRequests"};
    // The good request is stored; the forged one is refused on its own.
    EXPECT_EQ(resp.outcomes(0).code(), 0) << resp.outcomes(0).message();
    EXPECT_TRUE(resp.outcomes(0).has_receipt());
    return Outcome{grpc::Status(static_cast<grpc::StatusCode>(resp.outcomes(1).code()),
                                resp.outcomes(1).message()),
                   "FR", "DeliverRequests"};
  };

  // --- Operator RPCs. ---
  t["O1"] = [&] {
    v1::ListPeersResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Operator("FR", "dave")->ListPeers(&ctx, v1::ListPeersRequest(), &resp), "FR",
                   "ListPeers"};
  };
  t["O2"] = [&] {
    v1::SubmitRequestRequest req;
    req.mutable_draft()->set_requested_party("JP");
    v1::SubmitRequestResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Operator("FR", "alice")->SubmitRequest(&ctx, req, &resp), "FR",
                   "SubmitRequest"};
  };
  t["O3"] = [&] {
    CliResult draft = Cli({"--connect", net_->ClientConfigPath("FR", "erin"), "submit", "--to",
                           "JP", "--type", "EXTRADITION", "--offence", "DATA_INTERFERENCE",
                           "--penalty-months", "60", "--authority", "Parquet", "--facts", "f",
                           "--data-sought", "d", "--relation", "r", "--custodian", "c",
                           "--necessity", "n", "--intent-mla", "--json"});
    EXPECT_EQ(draft.code, 0) << draft.err;
    v1::ApproveRequestRequest req;
    req.set_id(ParseJson(draft.out).fields().at("id").string_value());
    v1::ApproveRequestResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Operator("FR", "erin")->ApproveRequest(&ctx, req, &resp), "FR",
                   "ApproveRequest"};
  };
  t["O4"] = [&] {
    v1::ApproveRequestRequest req;
    req.set_id(RandomUuid());
    v1::ApproveRequestResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Operator("FR", "bob")->ApproveRequest(&ctx, req, &resp), "FR",
                   "ApproveRequest"};
  };
  auto decide = [this](const std::string& id, v1::CaseAction action, bool path) {
    v1::DecideRequestRequest req;
    req.set_id(id);
    req.set_action(action);
    req.set_text("text");
    if (path) req.add_evidence_paths(net_->PartyDir("FR") + "/signing.key");
    v1::DecideRequestResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Operator("FR", "alice")->DecideRequest(&ctx, req, &resp);
  };
  t["O5"] = [this, decide] {
    return Outcome{decide(RandomUuid(), v1::ACCEPT, false), "FR", "DecideRequest"};
  };
  t["O6"] = [this, decide] { return Outcome{decide(to_jp_, v1::ACCEPT, false), "FR", "DecideRequest"}; };
  t["O7"] = [this, decide] { return Outcome{decide(to_fr_, v1::RESPOND, true), "FR", "DecideRequest"}; };
  t["O8"] = [&] {
    v1::BeginEvidenceUploadRequest req;
    req.set_request_id(to_fr_);
    req.set_name("huge.img");
    req.set_size(uint64_t{2} << 40);
    req.set_sha256(Sha256("x"));
    v1::BeginEvidenceUploadResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Operator("FR", "alice")->BeginEvidenceUpload(&ctx, req, &resp), "FR",
                   "BeginEvidenceUpload"};
  };
  t["O9"] = [&] {
    const std::string key = *ReadFile(net_->PartyDir("FR") + "/signing.key");
    auto stub = Operator("FR", "alice");
    v1::BeginEvidenceUploadRequest begin;
    begin.set_request_id(accepted_);
    begin.set_name("key.pem");
    begin.set_size(key.size());
    begin.set_sha256(Sha256(key));
    v1::BeginEvidenceUploadResponse begun;
    grpc::ClientContext c1;
    Deadline(c1);
    grpc::Status begun_status = stub->BeginEvidenceUpload(&c1, begin, &begun);
    EXPECT_TRUE(begun_status.ok()) << begun_status.error_message();
    v1::UploadEvidenceResponse resp;
    grpc::ClientContext c2;
    Deadline(c2);
    auto writer = stub->UploadEvidence(&c2, &resp);
    v1::EvidenceUploadChunk chunk;
    chunk.set_request_id(accepted_);
    chunk.set_sha256(Sha256(key));
    chunk.set_data(key);
    writer->Write(chunk);
    writer->WritesDone();
    return Outcome{writer->Finish(), "FR", "UploadEvidence"};
  };
  t["O10"] = [&] {
    v1::ImportEvidenceRequest req;
    req.set_request_id(to_fr_);
    req.set_name("logs.tar");
    v1::ImportEvidenceResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Operator("FR", "alice")->ImportEvidence(&ctx, req, &resp), "FR",
                   "ImportEvidence"};
  };
  t["O11"] = [&] {
    v1::RetryEvidenceRequest req;
    req.set_id(to_fr_);
    v1::RetryEvidenceResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Operator("FR", "alice")->RetryEvidence(&ctx, req, &resp), "FR",
                   "RetryEvidence"};
  };
  auto export_file = [this](const std::string& party, const std::string& name,
                         const std::string& sha) {
    v1::ExportEvidenceRequest req;
    req.set_id(to_jp_);
    req.set_sha256(sha);
    grpc::ClientContext ctx;
    Deadline(ctx);
    auto reader = Operator(party, name)->ExportEvidence(&ctx, req);
    v1::EvidenceChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return reader->Finish();
  };
  t["O12"] = [this, export_file] {
    return Outcome{export_file("JP", "bob", released_sha_), "JP", "ExportEvidence"};
  };
  t["O13"] = [this, export_file] {
    return Outcome{export_file("FR", "alice", Sha256("none")), "FR", "ExportEvidence"};
  };
  auto package = [this](const std::string& party, const std::string& name,
                        const std::string& sha, bool allow_tlp_red) {
    v1::ExportCustodyPackageRequest req;
    req.set_id(to_jp_);
    req.set_destination("/cases/17");
    req.add_files(sha);
    req.set_allow_tlp_red(allow_tlp_red);
    v1::ExportCustodyPackageResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Operator(party, name)->ExportCustodyPackage(&ctx, req, &resp);
  };
  t["O17"] = [this, package] {
    return Outcome{package("JP", "bob", released_sha_, false), "JP", "ExportCustodyPackage"};
  };
  t["O18"] = [this, package] {
    return Outcome{package("FR", "alice", Sha256("none"), true), "FR", "ExportCustodyPackage"};
  };
  t["O14"] = [&] {
    v1::GetRequestRequest req;
    req.set_id(RandomUuid());
    v1::GetRequestResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    return Outcome{Operator("FR", "alice")->GetRequest(&ctx, req, &resp), "FR", "GetRequest"};
  };
  t["O15"] = [&] {
    grpc::ClientContext ctx;
    Deadline(ctx);
    auto reader = Operator("FR", "alice")->Backup(&ctx, v1::BackupRequest());
    v1::BackupChunk chunk;
    while (reader->Read(&chunk)) {
    }
    return Outcome{reader->Finish(), "FR", "Backup"};
  };
  t["O16"] = [&] {
    v1::GetAuditProofRequest req;
    req.set_index(1000000000);
    v1::GetAuditProofResponse resp;
    grpc::ClientContext ctx;
    Deadline(ctx);
    auto stub = v1::AuditService::NewStub(net_->OperatorChannel("FR", "carol"));
    return Outcome{stub->GetProof(&ctx, req, &resp), "FR", "audit.GetProof"};
  };
  return t;
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

TEST_F(RefusalsE2eTest, EveryRowOfTheTableIsRefusedAndAudited) {
  std::vector<Row> rows = ReadRows();
  ASSERT_GE(rows.size(), 40u) << "docs/refusals.md lost its tables";
  auto triggers = Triggers();
  std::set<std::string> documented;
  for (const Row& row : rows) {
    SCOPED_TRACE(row.id + " " + row.rpc);
    documented.insert(row.id);
    auto trigger = triggers.find(row.id);
    ASSERT_NE(trigger, triggers.end()) << "no trigger for row " << row.id;
    // The log of both nodes before the call; the refusal's entry after it.
    std::map<std::string, uint64_t> before;
    for (const char* p : {"FR", "JP"}) {
      auto size = net_->server(p)->node()->store()->audit().Size();
      ASSERT_THAT(size, IsOk());
      before[p] = *size;
    }
    const Outcome out = trigger->second();
    AuditStore& audit = net_->server(out.party)->node()->store()->audit();
    EXPECT_EQ(CodeName(out.status.error_code()), row.status) << out.status.error_message();
    AuditFilter after;
    after.from_index = before[out.party];
    auto entries = audit.Entries(after);
    ASSERT_THAT(entries, IsOk());
    bool found = false;
    std::string seen;
    for (const std::string& raw : *entries) {
      v1::AuditEntry e;
      ASSERT_TRUE(e.ParseFromString(raw));
      absl::StrAppend(&seen, v1::AuditEventType_Name(e.type()), " ", e.detail(), "\n");
      found |= v1::AuditEventType_Name(e.type()) == row.entry &&
               absl::StartsWith(e.detail(), out.method + ":");
    }
    EXPECT_TRUE(found) << "no " << row.entry << " entry for " << out.method
                       << "; appended:\n"
                       << seen;
  }
  for (const auto& [id, unused] : triggers) {
    EXPECT_TRUE(documented.count(id)) << "trigger " << id << " has no row in docs/refusals.md";
  }
}

}  // namespace
}  // namespace comity
