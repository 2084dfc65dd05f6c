// Signing and verifying SignedEnvelopes (proto/comity/v1/envelope.proto).
// The byte layout that is signed is specified in docs/envelope.md.
//
//   KeyRing ring;
//   COMITY_RETURN_IF_ERROR(ring.Add("JP", "JP-1", jp_public_key));
//   COMITY_ASSIGN_OR_RETURN(SignedEnvelope env,
//       SignEnvelope(kRequestPayloadType, body_bytes, "FR", "FR-1", key));
//   COMITY_RETURN_IF_ERROR(VerifyEnvelope(env, kRequestPayloadType, ring));
#ifndef COMITY_SERVER_CORE_ENVELOPE_H_
#define COMITY_SERVER_CORE_ENVELOPE_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "comity/v1/envelope.pb.h"
#include "server/crypto/ed25519.h"

namespace comity {

inline constexpr absl::string_view kRequestPayloadType = "comity.v1.RequestBody";
inline constexpr absl::string_view kReceiptPayloadType = "comity.v1.Receipt";
inline constexpr absl::string_view kTreeHeadPayloadType = "comity.v1.TreeHead";
inline constexpr absl::string_view kTransitionPayloadType = "comity.v1.Transition";
inline constexpr absl::string_view kProposalPayloadType = "comity.v1.TransitionProposal";
inline constexpr absl::string_view kAckPayloadType = "comity.v1.Acknowledgement";

// Protobuf's deterministic serialization of `msg`: the bytes Comity signs
// and hashes (parsers never re-serialize them).
std::string SerializeDeterministic(const google::protobuf::MessageLite& msg);

// The exact bytes an envelope's signature covers (docs/envelope.md).
std::string SigningInput(absl::string_view payload_type, absl::string_view signer_party,
                         absl::string_view key_id, absl::string_view payload);

// Signs `payload` as `signer_party` with the key named `key_id`.
absl::StatusOr<v1::SignedEnvelope> SignEnvelope(absl::string_view payload_type,
                                                std::string payload,
                                                absl::string_view signer_party,
                                                absl::string_view key_id,
                                                const SigningKey& key);

// The public signing keys a node trusts, by party and key id. Not
// thread-safe while being filled; immutable (and thread-safe) afterwards.
class KeyRing {
 public:
  // InvalidArgument for a malformed key; AlreadyExists for a (party, key_id)
  // already present with another key.
  absl::Status Add(absl::string_view party, absl::string_view key_id,
                   absl::string_view raw_public_key);
  // nullptr if unknown.
  const VerifyingKey* Find(absl::string_view party, absl::string_view key_id) const;
  bool HasParty(absl::string_view party) const;
  // (key id, raw public key) of every key of `party`.
  std::vector<std::pair<std::string, std::string>> KeysOf(absl::string_view party) const;

 private:
  std::map<std::pair<std::string, std::string>, std::unique_ptr<VerifyingKey>> keys_;
};

// Checks that `envelope` carries `expected_type` and a signature by a key
// in `ring` for its signer_party. Does not parse the payload.
// Errors: InvalidArgument (wrong payload type, empty fields),
// Unauthenticated (unknown signer or key id, bad signature).
absl::Status VerifyEnvelope(const v1::SignedEnvelope& envelope,
                            absl::string_view expected_type, const KeyRing& ring);

}  // namespace comity

#endif  // COMITY_SERVER_CORE_ENVELOPE_H_
