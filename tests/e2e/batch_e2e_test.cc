// Batched delivery end to end (docs/delivery.md, "Batches"): requests due to
// a peer travel in DeliverRequests calls; the receiver stores a batch in one
// transaction under one signed tree head and answers one receipt per
// request, each proving its own entry in that head; the sender checks the
// head once and marks the batch delivered in one transaction. Nothing is
// delivered twice, and a request refused in a batch does not hold up the
// others.
#include <grpcpp/grpcpp.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "comity/v1/peer.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/audit/receipt.h"
#include "server/core/envelope.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/random.h"
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

constexpr int kQueued = 40;

class BatchE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net_ = std::make_unique<testing::TestNetwork>(std::vector<std::string>{"FR", "JP"});
    // Two calls at once: a backlog goes in batches of up to 32 (the
    // default spreads a small one over 16 calls).
    std::string& fr = net_->ConfigText("FR");
    const std::string delivery = "delivery { ";
    ASSERT_NE(fr.find(delivery), std::string::npos) << fr;
    fr.insert(fr.find(delivery) + delivery.size(), "max_in_flight: 2 ");
    ASSERT_THAT(net_->Start("FR"), IsOk());
  }
  std::string Submit(const std::string& from, const std::string& to) {
    CliResult r =
        Cli(testing::SubmitPreservationArgs(net_->ClientConfigPath(from, "alice"), to));
    EXPECT_EQ(r.code, 0) << r.err;
    return ParseJson(r.out).fields().at("id").string_value();
  }
  v1::RequestRecord Record(const std::string& party, const std::string& id) {
    auto rows = net_->server(party)->node()->Get(id);
    EXPECT_THAT(rows, IsOk());
    return rows.ok() && !rows->empty() ? (*rows)[0] : v1::RequestRecord();
  }
  // The key ring of `party`'s node: its own key and its peers'.
  const KeyRing& KeysOf(const std::string& party) {
    return net_->server(party)->node()->key_ring();
  }
  std::unique_ptr<testing::TestNetwork> net_;
};

TEST_F(BatchE2eTest, QueuedRequestsTravelInBatchesUnderOneSignedHeadEach) {
  // JP is down: requests queue up in FR's outbox.
  std::vector<std::string> ids;
  for (int i = 0; i < kQueued; ++i) ids.push_back(Submit("FR", "JP"));
  ASSERT_THAT(net_->Start("JP"), IsOk());

  std::vector<v1::RequestRecord> delivered;
  for (const std::string& id : ids) {
    v1::RequestRecord r;
    for (int i = 0; i < 400; ++i) {
      r = Record("FR", id);
      if (r.state() == v1::DELIVERED) break;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_EQ(r.state(), v1::DELIVERED) << id;
    delivered.push_back(r);
  }

  // Each receipt is version 3 and proves its own entry; the receipts share
  // a few heads, one per batch, not one head per request, and the heads
  // are the only signatures: a receipt carries none of its own.
  std::set<std::string> heads;
  std::set<uint64_t> entries;
  int batched = 0;
  for (const v1::RequestRecord& r : delivered) {
    auto receipt = VerifyReceipt(r.request(), r.receipt(), "JP", KeysOf("FR"));
    ASSERT_THAT(receipt, IsOk());
    EXPECT_EQ(receipt->version(), kReceiptVersion);
    EXPECT_TRUE(r.receipt().signature().empty());
    EXPECT_TRUE(r.receipt().key_id().empty());
    EXPECT_EQ(ReceiptKeyId(r.receipt()), receipt->tree_head().key_id());
    EXPECT_GE(receipt->batch_size(), 1u);
    if (receipt->batch_size() > 1) ++batched;
    heads.insert(receipt->tree_head().SerializeAsString());
    entries.insert(receipt->received_entry_proof().leaf_index());
  }
  EXPECT_EQ(entries.size(), ids.size());  // One entry each.
  // 40 requests at batches of 32: a probe of one, then at most a few
  // batches (more if JP answered some while it was starting).
  EXPECT_LE(heads.size(), 6u) << heads.size() << " heads for " << ids.size() << " requests";
  EXPECT_GE(batched, kQueued / 2);

  // JP holds each once, and its log verifies.
  auto received = net_->server("JP")->node()->List(v1::INCOMING, 100);
  ASSERT_THAT(received.status(), IsOk());
  EXPECT_EQ(received->size(), ids.size());
  CliResult verify =
      Cli({"--connect", net_->ClientConfigPath("JP", "carol"), "audit", "verify"});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
}

TEST_F(BatchE2eTest, ABatchIsCheckedRequestByRequestAndRepeatsGetTheSameReceipt) {
  ASSERT_THAT(net_->Start("JP"), IsOk());
  // A real request from JP, to take its body.
  const std::string model = Submit("JP", "FR");
  v1::RequestBody body;
  ASSERT_TRUE(body.ParseFromString(Record("JP", model).request().payload()));
  auto pem = ReadFile(net_->PartyDir("JP") + "/signing.key");
  ASSERT_THAT(pem, IsOk());
  auto key = SigningKey::FromPem(*pem);
  ASSERT_THAT(key, IsOk());
  auto sign = [&](v1::RequestBody b) {
    auto env = SignEnvelope(kRequestPayloadType, b.SerializeAsString(), "JP", "JP-1", **key);
    EXPECT_THAT(env, IsOk());
    return *env;
  };
  auto fresh = [&] {
    v1::RequestBody b = body;
    b.set_id(RandomUuid());
    *b.mutable_created_at() = ToProto(absl::Now());
    return b;
  };
  const v1::RequestBody a = fresh(), c = fresh();
  v1::RequestBody to_de = fresh();
  to_de.set_requested_party("DE");
  v1::RequestBody other_bytes = a;
  other_bytes.mutable_particulars()->set_facts_summary("other facts");
  v1::SignedEnvelope forged = sign(fresh());
  (*forged.mutable_signature())[0] ^= 1;

  v1::DeliverRequestsRequest req;
  *req.add_requests() = sign(a);
  *req.add_requests() = forged;
  *req.add_requests() = sign(to_de);
  *req.add_requests() = sign(a);            // The same bytes twice in one batch.
  *req.add_requests() = sign(other_bytes);  // The same id with other bytes.
  *req.add_requests() = sign(c);
  auto stub = v1::PeerService::NewStub(net_->PeerChannel("FR", "JP"));
  v1::DeliverRequestsResponse resp;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    grpc::Status st = stub->DeliverRequests(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
  }
  ASSERT_EQ(resp.outcomes_size(), 6);
  EXPECT_EQ(resp.outcomes(0).code(), 0) << resp.outcomes(0).message();
  EXPECT_EQ(resp.outcomes(1).code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(resp.outcomes(2).code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(resp.outcomes(2).message(), ::testing::HasSubstr("DE"));
  EXPECT_EQ(resp.outcomes(3).code(), 0);
  EXPECT_EQ(resp.outcomes(3).receipt().SerializeAsString(),
            resp.outcomes(0).receipt().SerializeAsString());
  EXPECT_EQ(resp.outcomes(4).code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(resp.outcomes(5).code(), 0) << resp.outcomes(5).message();

  // The two stored requests share one head; each receipt proves its entry.
  const v1::SignedEnvelope ea = req.requests(0), ec = req.requests(5);
  auto ra = VerifyReceipt(ea, resp.outcomes(0).receipt(), "FR", KeysOf("JP"));
  auto rc = VerifyReceipt(ec, resp.outcomes(5).receipt(), "FR", KeysOf("JP"));
  ASSERT_THAT(ra, IsOk());
  ASSERT_THAT(rc, IsOk());
  EXPECT_EQ(ra->batch_size(), 2u);
  EXPECT_EQ(ra->tree_head().SerializeAsString(), rc->tree_head().SerializeAsString());
  EXPECT_NE(ra->received_entry_proof().leaf_index(), rc->received_entry_proof().leaf_index());

  // Sent again, alone: the same receipt, nothing stored twice.
  v1::DeliverRequestsRequest again;
  *again.add_requests() = ea;
  v1::DeliverRequestsResponse resp2;
  grpc::ClientContext ctx2;
  ctx2.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  ASSERT_TRUE(stub->DeliverRequests(&ctx2, again, &resp2).ok());
  ASSERT_EQ(resp2.outcomes_size(), 1);
  EXPECT_EQ(resp2.outcomes(0).receipt().SerializeAsString(),
            resp.outcomes(0).receipt().SerializeAsString());
  auto received = net_->server("FR")->node()->List(v1::INCOMING, 100);
  ASSERT_THAT(received.status(), IsOk());
  EXPECT_EQ(received->size(), 3u);  // The model, a and c.

  // Each refusal is audited with the method and the payload's hash.
  CliResult log = Cli({"--connect", net_->ClientConfigPath("FR", "carol"), "--json", "audit",
                       "log", "--type", "PEER_REQUEST_REFUSED"});
  EXPECT_EQ(log.code, 0) << log.err;
  int refusals = 0;
  for (size_t at = log.out.find("DeliverRequests: "); at != std::string::npos;
       at = log.out.find("DeliverRequests: ", at + 1)) {
    ++refusals;
  }
  EXPECT_EQ(refusals, 3) << log.out;
}

TEST_F(BatchE2eTest, AReceiptOfAnUnknownFormatIsRefused) {
  ASSERT_THAT(net_->Start("JP"), IsOk());
  const std::string id = Submit("FR", "JP");
  v1::RequestRecord r = Record("FR", id);
  ASSERT_EQ(r.state(), v1::DELIVERED);
  // JP's receipt as a signed one (fields 1 to 6 in the receipt itself).
  v1::Receipt receipt;
  ASSERT_TRUE(ParseReceipt(r.receipt(), &receipt));
  EXPECT_EQ(receipt.request_id(), id);
  receipt.clear_statement();
  auto pem = ReadFile(net_->PartyDir("JP") + "/signing.key");
  auto key = SigningKey::FromPem(*pem);
  ASSERT_THAT(key, IsOk());
  for (auto [version, batch] :
       {std::pair<uint32_t, uint32_t>{4, 1}, {2, 0}, {2, 257}, {kReceiptVersion, 0}}) {
    receipt.set_version(version);
    receipt.set_batch_size(batch);
    auto env =
        SignEnvelope(kReceiptPayloadType, receipt.SerializeAsString(), "JP", "JP-1", **key);
    ASSERT_THAT(env, IsOk());
    auto verified = VerifyReceipt(r.request(), *env, "JP", KeysOf("FR"));
    EXPECT_FALSE(verified.ok()) << version << " " << batch;
    EXPECT_TRUE(absl::IsInvalidArgument(verified.status())) << verified.status();
    EXPECT_THAT(verified.status().message(),
                ::testing::HasSubstr(version > kReceiptVersion ? "format version" : "batch_size"))
        << version << " " << batch;
  }
  // Signed but otherwise intact, version 2 still verifies.
  receipt.set_version(2);
  receipt.set_batch_size(1);
  auto v2 = SignEnvelope(kReceiptPayloadType, receipt.SerializeAsString(), "JP", "JP-1", **key);
  ASSERT_THAT(v2, IsOk());
  EXPECT_THAT(VerifyReceipt(r.request(), *v2, "JP", KeysOf("FR")).status(), IsOk());
}

// A version 3 receipt carries no signature: each piece that proves it is
// checked, on real receipts of JP, changed one piece at a time as a hostile
// receiver (or an edit of the stored copy) could.
TEST_F(BatchE2eTest, AnUnsignedReceiptIsCheckedPieceByPiece) {
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Submit("FR", "JP"));
  ASSERT_THAT(net_->Start("JP"), IsOk());
  std::vector<v1::RequestRecord> rs;
  for (const std::string& id : ids) {
    v1::RequestRecord r;
    for (int i = 0; i < 400 && r.state() != v1::DELIVERED; ++i) {
      r = Record("FR", id);
      if (r.state() != v1::DELIVERED) absl::SleepFor(absl::Milliseconds(50));
    }
    ASSERT_EQ(r.state(), v1::DELIVERED) << id;
    rs.push_back(r);
  }
  const v1::RequestRecord& a = rs[0];
  const v1::RequestRecord& b = rs[1];
  ASSERT_THAT(VerifyReceipt(a.request(), a.receipt(), "JP", KeysOf("FR")), IsOk());
  ASSERT_THAT(VerifyReceiptAuthentic(a.receipt(), KeysOf("FR")), IsOk());
  // JP's own copy is the same receipt.
  EXPECT_EQ(Record("JP", ids[0]).receipt().SerializeAsString(), a.receipt().SerializeAsString());

  v1::Receipt outer;
  ASSERT_TRUE(outer.ParseFromString(a.receipt().payload()));
  ASSERT_EQ(outer.version(), 3u);
  EXPECT_TRUE(outer.request_id().empty());  // Stated in the statement only.
  v1::Receipt statement;
  ASSERT_TRUE(statement.ParseFromString(outer.statement()));
  v1::Receipt outer_b;
  ASSERT_TRUE(outer_b.ParseFromString(b.receipt().payload()));

  auto with_payload = [&](const v1::Receipt& r) {
    v1::SignedEnvelope env = a.receipt();
    env.set_payload(SerializeDeterministic(r));
    return env;
  };
  auto with_statement = [&](const v1::Receipt& s) {
    v1::Receipt r = outer;
    r.set_statement(SerializeDeterministic(s));
    return with_payload(r);
  };
  struct Case {
    const char* what;
    v1::SignedEnvelope receipt;
    const char* error;
  };
  std::vector<Case> cases;
  {
    v1::Receipt r = outer;
    r.set_request_id(ids[0]);
    cases.push_back(
        {"a field stated outside the statement", with_payload(r), "only in its statement"});
  }
  {
    v1::Receipt s = statement;
    s.mutable_receiver_assessment()->set_obligation(
        s.receiver_assessment().obligation() == v1::BINDING ? v1::DISCRETIONARY : v1::BINDING);
    cases.push_back({"an assessment changed", with_statement(s), "SHA-256 of its statement"});
  }
  {
    v1::Receipt s = statement;
    s.mutable_received_at()->set_seconds(s.received_at().seconds() - 86400);
    cases.push_back({"received a day earlier", with_statement(s), "SHA-256 of its statement"});
  }
  {
    v1::Receipt s = statement;
    s.set_received_entry("x");
    cases.push_back({"a statement that proves", with_statement(s), "only in its statement"});
  }
  {
    v1::Receipt r = outer;
    r.set_batch_size(outer.batch_size() == 1 ? 2 : 1);
    cases.push_back({"a batch size not the statement's", with_payload(r), "only in its statement"});
  }
  {
    v1::Receipt r = outer;
    r.set_statement(outer_b.statement());
    r.set_batch_size(outer_b.batch_size());
    cases.push_back({"another request's statement", with_payload(r), "not for request"});
  }
  {
    v1::Receipt r = outer_b;
    cases.push_back({"another request's receipt", with_payload(r), "not for request"});
  }
  {
    v1::Receipt r = outer;
    r.mutable_received_entry_proof()->set_leaf_index(outer_b.received_entry_proof().leaf_index());
    cases.push_back({"another leaf", with_payload(r), "inclusion proof"});
  }
  {
    v1::SignedEnvelope env = a.receipt();
    env.set_key_id("JP-1");
    cases.push_back({"a key id", env, "no signature of its own"});
  }
  {
    v1::Receipt r = outer;
    r.set_statement("\xff\xff");
    cases.push_back({"a statement that does not parse", with_payload(r), "statement"});
  }
  for (const Case& c : cases) {
    auto verified = VerifyReceipt(a.request(), c.receipt, "JP", KeysOf("FR"));
    EXPECT_TRUE(absl::IsInvalidArgument(verified.status())) << c.what << ": " << verified.status();
    EXPECT_THAT(verified.status().message(), ::testing::HasSubstr(c.error)) << c.what;
    if (std::string(c.error) != "not for request") {
      EXPECT_FALSE(VerifyReceiptAuthentic(c.receipt, KeysOf("FR")).ok()) << c.what;
    }
  }
  v1::SignedEnvelope as_fr = a.receipt();
  as_fr.set_signer_party("FR");
  EXPECT_TRUE(absl::IsUnauthenticated(
      VerifyReceipt(a.request(), as_fr, "JP", KeysOf("FR")).status()));
}

}  // namespace
}  // namespace comity
