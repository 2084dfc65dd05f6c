// Fuzzes a node's peer API without gRPC: what server/grpc/services.cc hands
// to Node for each PeerService call, after TLS has authenticated the peer
// as JP. The node is FR's (tests/fuzz/node_fixture.h): real configuration,
// keys made at start, the project's treaty library, an in-memory SQLite
// store and a fixed clock; it starts holding the fixture's sample requests
// from JP, so that case steps have cases to apply to.
//
// Input: one mode byte, then bytes whose meaning depends on the mode (mode
// byte modulo 8):
//   0  a SignedEnvelope, raw             -> ReceiveRequest
//   1  RequestBody bytes, signed by JP   -> ReceiveRequest; then the
//      receipt must verify (VerifyReceipt) and the same envelope again
//      must get the same receipt
//   2  TreeHead bytes, signed by JP      -> ExchangeTreeHeads
//   3  a SignedEnvelope, raw             -> ExchangeTreeHeads, ReceiveTransition
//                                           and SequenceProposal
//   4  Transition bytes, signed by JP    -> ReceiveTransition
//   5  TransitionProposal bytes, signed by JP -> SequenceProposal
//   6  a RequestRecord whose request and receipt fields are two TreeHead
//      envelopes, re-signed by FR        -> HandleSplitViewReport
//   7  as 1
// The signing is what a fuzzer cannot do; without it every mutated payload
// would stop at the signature check.
#include <cstddef>
#include <cstdint>

#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/record.pb.h"
#include "server/core/envelope.h"
#include "server/audit/receipt.h"
#include "tests/fuzz/node_fixture.h"

namespace comity::fuzz {
namespace {

// A fresh node (empty in-memory store) after this many inputs that changed
// the store, so that long runs stay within memory.
constexpr int kResetAfterChanges = 512;

NodeFixture& Fixture() {
  static NodeFixture* fixture = new NodeFixture();
  return *fixture;
}

// Loads the sample requests, so that proposals have cases to apply to.
void Populate(NodeFixture& f) {
  for (int i = 0; i < NodeFixture::kSampleRequests; ++i) {
    v1::SignedEnvelope env =
        f.SignAsPeer(kRequestPayloadType, SerializeDeterministic(f.SampleRequest(i)));
    auto receipt = f.node().intake().ReceiveRequest(NodeFixture::kPeer, env);
    Check(receipt.ok(), receipt.ok() ? "" : receipt.status().ToString());
  }
}

void CountChange() {
  static int changes = 0;
  if (++changes < kResetAfterChanges) return;
  changes = 0;
  Fixture().Reset();
  Populate(Fixture());
}

void Receive(NodeFixture& f, const v1::SignedEnvelope& env, bool check) {
  auto receipt = f.node().intake().ReceiveRequest(NodeFixture::kPeer, env);
  if (!receipt.ok() || !check) return;
  auto verified = VerifyReceipt(env, *receipt, NodeFixture::kParty, f.ring());
  if (!verified.ok()) {
    Fail(absl::StrCat("the node's own receipt does not verify: ", verified.status().ToString()));
  }
  auto again = f.node().intake().ReceiveRequest(NodeFixture::kPeer, env);
  if (!again.ok() || SerializeDeterministic(*again) != SerializeDeterministic(*receipt)) {
    Fail("the same request delivered twice did not get the same receipt");
  }
  CountChange();  // Last: it may replace the node.
}

std::string Mode(uint8_t mode, const google::protobuf::MessageLite& msg) {
  return std::string(1, static_cast<char>(mode)) + SerializeDeterministic(msg);
}

}  // namespace
}  // namespace comity::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace comity;
  using namespace comity::fuzz;
  InitializeFuzzer([](SeedWriter& seeds) {
    NodeFixture& f = Fixture();
    for (int i = 0; i < NodeFixture::kSampleRequests; ++i) {
      v1::RequestBody body = f.SampleRequest(i);
      // Fresh ids: the node already holds the samples.
      body.set_id(absl::StrCat("5a1e0000-0000-4000-8000-00000000000", i));
      seeds.Add(absl::StrCat("request-", i), Mode(1, body));
      seeds.Add(absl::StrCat("envelope-", i),
                Mode(0, f.SignAsPeer(kRequestPayloadType, SerializeDeterministic(body))));
    }
    v1::RequestBody known = f.SampleRequest(0);
    seeds.Add("request-known", Mode(1, known));
    v1::TreeHead head;
    head.set_party(NodeFixture::kPeer);
    head.set_tree_size(3);
    head.set_root_hash(std::string(32, '\x42'));
    head.set_timestamp_unix_micros(absl::ToUnixMicros(f.now()));
    seeds.Add("head", Mode(2, head));
    seeds.Add("head-raw",
              Mode(3, f.SignAsPeer(kTreeHeadPayloadType, SerializeDeterministic(head))));
    v1::TransitionProposal proposal;
    proposal.set_request_id(known.id());
    proposal.set_party(NodeFixture::kPeer);
    proposal.set_operator_name("fuzz");
    proposal.set_time_unix_micros(absl::ToUnixMicros(f.now()));
    for (v1::CaseAction action : {v1::WITHDRAW, v1::PROVIDE_INFO, v1::CLOSE,
                                  v1::ACCEPT_CONDITIONS}) {
      proposal.set_action(action);
      proposal.set_text("more details on the account");
      seeds.Add(absl::StrCat("proposal-", v1::CaseAction_Name(action)), Mode(5, proposal));
    }
    v1::Transition transition;
    transition.set_request_id(known.id());
    transition.set_sequence(1);
    transition.set_action(v1::ACKNOWLEDGE);
    transition.set_from_state(v1::CASE_DELIVERED);
    transition.set_to_state(v1::CASE_ACKNOWLEDGED);
    transition.set_party(NodeFixture::kPeer);
    seeds.Add("transition", Mode(4, transition));
    v1::RequestRecord split;
    v1::TreeHead own = head;
    own.set_party(NodeFixture::kParty);
    split.mutable_request()->set_payload(SerializeDeterministic(own));
    own.set_root_hash(std::string(32, '\x43'));
    split.mutable_receipt()->set_payload(SerializeDeterministic(own));
    seeds.Add("split-view", Mode(6, split));
  });
  Populate(Fixture());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace comity;
  using namespace comity::fuzz;
  if (size < 1) return 0;
  NodeFixture& f = Fixture();
  Node& node = f.node();
  const std::string peer = NodeFixture::kPeer;
  const std::string rest = Bytes(data + 1, size - 1);
  switch (data[0] % 8) {
    case 0: {
      v1::SignedEnvelope env;
      if (env.ParseFromString(rest)) Receive(f, env, false);
      break;
    }
    case 1:
    case 7:
      Receive(f, f.SignAsPeer(kRequestPayloadType, rest), true);
      break;
    case 2:
      if (node.witness().ExchangeTreeHeads(peer, f.SignAsPeer(kTreeHeadPayloadType, rest)).ok()) {
        CountChange();
      }
      break;
    case 3: {
      v1::SignedEnvelope env;
      if (!env.ParseFromString(rest)) break;
      (void)node.witness().ExchangeTreeHeads(peer, env);
      (void)node.cases().ReceiveTransition(peer, env);
      (void)node.cases().SequenceProposal(peer, env);
      break;
    }
    case 4:
      (void)node.cases().ReceiveTransition(peer, f.SignAsPeer(kTransitionPayloadType, rest));
      break;
    case 5:
      if (node.cases().SequenceProposal(peer, f.SignAsPeer(kProposalPayloadType, rest)).ok()) {
        CountChange();
      }
      break;
    case 6: {
      v1::RequestRecord pair;
      if (!pair.ParseFromString(rest)) break;
      auto first = SignEnvelope(kTreeHeadPayloadType, pair.request().payload(),
                                NodeFixture::kParty, NodeFixture::kOwnKeyId, f.own_key());
      auto second = SignEnvelope(kTreeHeadPayloadType, pair.receipt().payload(),
                                 NodeFixture::kParty, NodeFixture::kOwnKeyId, f.own_key());
      Check(first.ok() && second.ok(), "signing heads");
      if (node.witness().HandleSplitViewReport(peer, *first, *second).ok()) CountChange();
      break;
    }
  }
  return 0;
}
