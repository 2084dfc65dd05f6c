// Fuzzes SignedEnvelope parsing and verification (server/core/envelope.h)
// and the parsing and structural checks of every payload type an envelope
// can carry (server/core/request_validation.h for request bodies).
//
// Input: one flags byte, then the wire bytes of a comity.v1.SignedEnvelope.
// Flag 1 re-signs the parsed envelope's payload with the key the ring holds
// for its signer (the peer's when unknown), so that mutated payloads get
// past the signature and reach the payload parsers; the invariant then is
// that verification succeeds exactly when signer and key id are the ring's.
#include <cstddef>
#include <cstdint>

#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"
#include "comity/v1/request.pb.h"
#include "server/core/envelope.h"
#include "server/core/request_validation.h"
#include "tests/fuzz/fuzz_common.h"

namespace comity::fuzz {
namespace {

constexpr uint8_t kResign = 1;

constexpr absl::string_view kTypes[] = {kRequestPayloadType, kReceiptPayloadType,
                                        kTreeHeadPayloadType, kTransitionPayloadType,
                                        kProposalPayloadType};

// Parses (and re-serializes, as the node does when it stores or signs) the
// payload as the message its type names.
void ParsePayload(const v1::SignedEnvelope& env) {
  const std::string& type = env.payload_type();
  const std::string& payload = env.payload();
  if (type == kRequestPayloadType) {
    v1::RequestBody body;
    if (body.ParseFromString(payload)) {
      (void)ValidateRequestBody(body);
      (void)ValidateDraft(body);
      (void)SerializeDeterministic(body);
    }
  } else if (type == kReceiptPayloadType) {
    v1::Receipt r;
    if (r.ParseFromString(payload)) (void)SerializeDeterministic(r);
  } else if (type == kTreeHeadPayloadType) {
    v1::TreeHead h;
    if (h.ParseFromString(payload)) (void)SerializeDeterministic(h);
  } else if (type == kTransitionPayloadType) {
    v1::Transition t;
    if (t.ParseFromString(payload)) (void)SerializeDeterministic(t);
  } else if (type == kProposalPayloadType) {
    v1::TransitionProposal p;
    if (p.ParseFromString(payload)) (void)SerializeDeterministic(p);
  }
}

std::string Serialized(absl::string_view type, const google::protobuf::MessageLite& payload,
                       const SigningKey& key, absl::string_view party, absl::string_view key_id,
                       uint8_t flags) {
  auto env = SignEnvelope(type, SerializeDeterministic(payload), party, key_id, key);
  Check(env.ok(), "signing a seed");
  return std::string(1, static_cast<char>(flags)) + SerializeDeterministic(*env);
}

}  // namespace
}  // namespace comity::fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  using namespace comity;
  using namespace comity::fuzz;
  InitializeFuzzer([](SeedWriter& seeds) {
    const TwoPartyKeys& k = Keys();
    v1::RequestBody body;
    body.set_id("0f8fad5b-d9cb-469f-a165-70867728950e");
    body.set_requesting_party("JP");
    body.set_requested_party("FR");
    body.mutable_created_at()->set_seconds(1798000000);
    body.set_assistance_type(v1::PRESERVATION);
    body.mutable_offence()->set_category(v1::DATA_INTERFERENCE);
    body.set_urgency(v1::URGENT);
    body.mutable_particulars()->set_requesting_authority("Tokyo District Public Prosecutors");
    body.mutable_particulars()->set_facts_summary("ransomware");
    body.add_related_request_ids("7c9e6679-7425-40de-944b-e07fc1f90ae7");
    body.mutable_handling()->add_use_limits("this investigation only");
    seeds.Add("request-resign",
              Serialized(kRequestPayloadType, body, *k.jp, "JP", "JP-1", kResign));
    seeds.Add("request-raw", Serialized(kRequestPayloadType, body, *k.jp, "JP", "JP-1", 0));
    v1::RequestBody draft = body;
    draft.clear_id();
    draft.clear_created_at();
    draft.clear_requesting_party();
    seeds.Add("draft", Serialized(kRequestPayloadType, draft, *k.jp, "JP", "JP-1", kResign));
    v1::TreeHead head;
    head.set_party("FR");
    head.set_tree_size(7);
    head.set_root_hash(std::string(32, '\x5a'));
    seeds.Add("tree-head", Serialized(kTreeHeadPayloadType, head, *k.fr, "FR", "FR-1", kResign));
    v1::Receipt receipt;
    receipt.set_request_id(body.id());
    receipt.set_requesting_party("JP");
    receipt.set_receiving_party("FR");
    receipt.set_request_payload_sha256(std::string(32, '\x11'));
    seeds.Add("receipt", Serialized(kReceiptPayloadType, receipt, *k.fr, "FR", "FR-1", kResign));
    v1::Transition transition;
    seeds.Add("transition",
              Serialized(kTransitionPayloadType, transition, *k.fr, "FR", "FR-1", kResign));
    v1::TransitionProposal proposal;
    seeds.Add("proposal",
              Serialized(kProposalPayloadType, proposal, *k.jp, "JP", "JP-1", kResign));
  });
  Keys();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace comity;
  using namespace comity::fuzz;
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  const TwoPartyKeys& k = Keys();
  v1::SignedEnvelope env;
  if (!env.ParseFromArray(data + 1, static_cast<int>(size - 1))) return 0;

  if (flags & kResign) {
    const bool known_fr = env.signer_party() == "FR" && env.key_id() == "FR-1";
    const bool known_jp = env.signer_party() == "JP" && env.key_id() == "JP-1";
    const SigningKey& key = known_fr ? *k.fr : *k.jp;
    auto signed_env = SignEnvelope(env.payload_type(), env.payload(), env.signer_party(),
                                   env.key_id(), key);
    if (!signed_env.ok()) Fail("SignEnvelope failed on a parsed envelope");
    env = *std::move(signed_env);
    absl::Status verified = VerifyEnvelope(env, env.payload_type(), k.ring);
    if (verified.ok() != (known_fr || known_jp)) {
      Fail(absl::StrCat("VerifyEnvelope of a freshly signed envelope (signer '",
                        env.signer_party(), "', key '", env.key_id(), "') returned ",
                        verified.ToString()));
    }
    // A signature covers the type: the same envelope under another type fails.
    for (absl::string_view other : kTypes) {
      if (other != env.payload_type() && VerifyEnvelope(env, other, k.ring).ok()) {
        Fail("VerifyEnvelope accepted an envelope for a payload type it does not carry");
      }
    }
    if (verified.ok()) {
      // Any change to the signed fields must break the signature.
      v1::SignedEnvelope tampered = env;
      tampered.set_payload(env.payload() + "x");
      if (VerifyEnvelope(tampered, env.payload_type(), k.ring).ok()) {
        Fail("VerifyEnvelope accepted a changed payload");
      }
      ParsePayload(env);
    }
  } else {
    // Nodes parse payloads only after verifying them, but parsing must be
    // safe whatever the bytes.
    for (absl::string_view type : kTypes) (void)VerifyEnvelope(env, type, k.ring);
    ParsePayload(env);
  }
  return 0;
}
