// Signing and verifying SignedEnvelopes (proto/comity/v1/envelope.proto).
// The byte layout that is signed is specified in docs/envelope.md.
//
//   KeyRing ring;
//   COMITY_RETURN_IF_ERROR(ring.Add("JP", "JP-1", jp_public_key));
//   COMITY_ASSIGN_OR_RETURN(SignedEnvelope env,
//       SignEnvelope(kRequestPayloadType, body_bytes, "FR", "FR-1", key));
//   COMITY_RETURN_IF_ERROR(VerifyEnvelope(env, kRequestPayloadType, ring));
//
// Keys have validity windows and may be revoked (docs/keys.md): a key
// verifies a signature only for the time the signed payload claims
// (SignedTime) inside its window and before its revocation.
#ifndef COMITY_SERVER_CORE_ENVELOPE_H_
#define COMITY_SERVER_CORE_ENVELOPE_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "comity/v1/envelope.pb.h"
#include "server/crypto/ed25519.h"

namespace comity {

inline constexpr absl::string_view kRequestPayloadType = "comity.v1.RequestBody";
inline constexpr absl::string_view kReceiptPayloadType = "comity.v1.Receipt";
inline constexpr absl::string_view kTreeHeadPayloadType = "comity.v1.TreeHead";
inline constexpr absl::string_view kTransitionPayloadType = "comity.v1.Transition";
inline constexpr absl::string_view kProposalPayloadType = "comity.v1.TransitionProposal";
inline constexpr absl::string_view kAckPayloadType = "comity.v1.Acknowledgement";
inline constexpr absl::string_view kKeyAnnouncementPayloadType = "comity.v1.KeyAnnouncement";

// Protobuf's deterministic serialization of `msg`: the bytes Comity signs
// and hashes (parsers never re-serialize them).
std::string SerializeDeterministic(const google::protobuf::MessageLite& msg);

// From this Receipt.version on, a receipt is not signed on its own: its
// statement is hashed into the receiver's log, whose signed head proves it
// (docs/envelope.md, "Receipt"; server/audit/receipt.h verifies).
inline constexpr uint32_t kProvenReceiptVersion = 3;

// The fields of `receipt`, whatever its version: from version 3, fields 1
// to 6 are its statement's. Verifies nothing (VerifyReceipt does): for a
// stored receipt this node verified, or one about to be verified. False if
// it does not parse.
bool ParseReceipt(const v1::SignedEnvelope& receipt, v1::Receipt* out);

// Reads a version 3 receipt's statement into `r`: `r` becomes the
// statement's fields with `r`'s proof (tree head, entry, inclusion proof,
// statement bytes). A version 3 receipt states fields 1 to 6 only in its
// statement, and the statement holds nothing else but the same version and
// batch size; else InvalidArgument, and `r` is unchanged.
absl::Status ReadReceiptStatement(v1::Receipt& r);

// The exact bytes an envelope's signature covers (docs/envelope.md).
std::string SigningInput(absl::string_view payload_type, absl::string_view signer_party,
                         absl::string_view key_id, absl::string_view payload);

// Signs `payload` as `signer_party` with the key named `key_id`.
absl::StatusOr<v1::SignedEnvelope> SignEnvelope(absl::string_view payload_type,
                                                std::string payload,
                                                absl::string_view signer_party,
                                                absl::string_view key_id,
                                                const SigningKey& key);

// When a key may sign: for a signature whose payload claims time t, the
// key is usable iff not_before <= t < not_after and t < revoked_at.
struct KeyValidity {
  absl::Time not_before = absl::InfinitePast();
  absl::Time not_after = absl::InfiniteFuture();
  absl::Time revoked_at = absl::InfiniteFuture();  // InfiniteFuture: not revoked.

  bool Unbounded() const {
    return not_before == absl::InfinitePast() && not_after == absl::InfiniteFuture() &&
           revoked_at == absl::InfiniteFuture();
  }
  bool revoked() const { return revoked_at != absl::InfiniteFuture(); }
  // OK if a signature claiming time `t` may have been made with the key;
  // else Unauthenticated naming the key, the window and what to do.
  absl::Status Check(absl::string_view party, absl::string_view key_id, absl::Time t) const;
  // "valid", "not yet valid", "expired" or "revoked" at `now`.
  std::string StateAt(absl::Time now) const;
};

// The public signing keys a node trusts, by party and key id, with their
// validity. Thread-safe: keys learned at run time (announced by peers) are
// added while other threads verify. Keys are never removed, so a pointer
// returned by Find stays valid as long as the ring.
class KeyRing {
 public:
  KeyRing() = default;
  KeyRing(const KeyRing&) = delete;
  KeyRing& operator=(const KeyRing&) = delete;

  // InvalidArgument for a malformed key or an empty window (not_before at
  // or after not_after); AlreadyExists for a (party, key_id) already present
  // with another key. The same key again is OK: its revocation moves to the
  // earlier of the two times; its window is kept.
  absl::Status Add(absl::string_view party, absl::string_view key_id,
                   absl::string_view raw_public_key, const KeyValidity& validity = {});
  // Revokes a key from `at` on (or from its earlier revocation, if any:
  // revocation never moves later). NotFound if the key is unknown.
  absl::Status Revoke(absl::string_view party, absl::string_view key_id, absl::Time at);
  // nullptr if unknown.
  const VerifyingKey* Find(absl::string_view party, absl::string_view key_id) const;
  // Unbounded validity for an unknown key.
  KeyValidity ValidityOf(absl::string_view party, absl::string_view key_id) const;
  bool HasParty(absl::string_view party) const;
  // (key id, raw public key) of every key of `party`.
  std::vector<std::pair<std::string, std::string>> KeysOf(absl::string_view party) const;

  struct Entry {
    std::string party;
    std::string key_id;
    std::string raw_public_key;
    KeyValidity validity;
  };
  // Every key, by party then key id.
  std::vector<Entry> Entries() const;

 private:
  struct Slot {
    std::unique_ptr<VerifyingKey> key;
    KeyValidity validity;
  };
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, std::string>, Slot> keys_ ABSL_GUARDED_BY(mu_);
};

// The time an envelope's payload claims it was signed at, by payload type:
// RequestBody.created_at, Receipt.received_at, TreeHead.timestamp,
// Transition and TransitionProposal time, Acknowledgement received_at,
// KeyAnnouncement time. InvalidArgument if the payload does not parse or
// carries no time; Unimplemented for another payload type. Call only on a
// payload whose signature has been checked.
absl::StatusOr<absl::Time> SignedTime(absl::string_view payload_type,
                                      absl::string_view payload);

struct VerifyOptions {
  // For an envelope arriving from a peer now (not one read from storage):
  // the time it arrived. A signature by a revoked key that claims a time
  // before the revocation is then accepted only until revoked_at +
  // revocation_grace, since after that a holder of the compromised key
  // could back-date new messages. InfinitePast: no such check (stored
  // envelopes are checked at the time they claim only).
  absl::Time received_at = absl::InfinitePast();
  absl::Duration revocation_grace = absl::ZeroDuration();
};

// Options for an envelope a peer sends now, `now`: a revoked key's
// signature is accepted for `grace` after its revocation (use the replay
// window: the time a message may legitimately take to arrive).
inline VerifyOptions ArrivingNow(absl::Time now, absl::Duration grace) {
  VerifyOptions o;
  o.received_at = now;
  o.revocation_grace = grace;
  return o;
}

// Checks that `envelope` carries `expected_type` and a signature by a key
// in `ring` for its signer_party, usable at the time the payload claims
// (only parsed, after the signature checked out, when the key has a window
// or a revocation). Errors: InvalidArgument (wrong payload type, empty
// fields, a payload without a time for a windowed key), Unauthenticated
// (unknown signer or key id, bad signature, key not valid at that time,
// revoked).
absl::Status VerifyEnvelope(const v1::SignedEnvelope& envelope,
                            absl::string_view expected_type, const KeyRing& ring,
                            const VerifyOptions& options = {});

}  // namespace comity

#endif  // COMITY_SERVER_CORE_ENVELOPE_H_
