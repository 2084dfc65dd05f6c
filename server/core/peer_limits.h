// Bounds on every field of the messages parties sign for each other, other
// than request bodies (server/core/request_validation.h), and the rules for
// the times they claim: docs/envelope.md, "Limits of every peer message".
// The node checks what a peer sends before it stores anything, and what it
// signs itself before it signs, so that its own steps are never refused.
#ifndef COMITY_SERVER_CORE_PEER_LIMITS_H_
#define COMITY_SERVER_CORE_PEER_LIMITS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/envelope.pb.h"

namespace comity {

struct PeerLimits {
  static constexpr size_t kMaxIdBytes = 128;            // Request ids.
  static constexpr size_t kMaxKeyIdBytes = 128;
  static constexpr size_t kMaxPayloadTypeBytes = 64;
  static constexpr size_t kSignatureBytes = 64;
  static constexpr size_t kHashBytes = 32;
  static constexpr size_t kMaxOperatorNameBytes = 128;
  static constexpr size_t kMaxTextBytes = 32 << 10;     // text, reasons, consultation.
  static constexpr size_t kMaxShortBytes = 1024;        // A condition, a duty.
  static constexpr int kMaxRefusalGrounds = 16;
  static constexpr int kMaxDuties = 16;
  static constexpr int kMaxConditions = 32;
  static constexpr int kMaxEvidenceFiles = 256;          // Per step.
  static constexpr size_t kMaxFileNameBytes = 255;
  static constexpr uint64_t kMaxFileBytes = uint64_t{1} << 50;  // Any node's limit.
  // Steps of one case, both parties' together: a case that reaches it
  // takes no more (RESOURCE_EXHAUSTED).
  static constexpr int kMaxStepsPerCase = 1000;
};

// The envelope's own fields: payload type, signer, key id, a 64-byte
// signature. InvalidArgument naming the field.
absl::Status CheckEnvelopeBounds(const v1::SignedEnvelope& envelope);

// Every field of a transition (the embedded proposal envelope included);
// InvalidArgument naming the field, its size and the limit.
absl::Status CheckTransitionBounds(const v1::Transition& t);
absl::Status CheckProposalBounds(const v1::TransitionProposal& p);
absl::Status CheckAckBounds(const v1::Acknowledgement& a);
absl::Status CheckTreeHeadBounds(const v1::TreeHead& h);
absl::Status CheckKeyAnnouncementBounds(const v1::KeyAnnouncement& k);

// The time a signed step claims (`what` names it in the error): not later
// than `now` + `skew` (the receiver's clock and its tolerance), and not
// earlier than `after` - `skew` (the step it follows: the previous step,
// the receipt, the last head; InfinitePast for none). FailedPrecondition
// with both times, so a partner with a wrong clock can tell.
absl::Status CheckSignedTime(absl::string_view what, absl::Time signed_at, absl::Time now,
                             absl::Duration skew, absl::Time after);

}  // namespace comity

#endif  // COMITY_SERVER_CORE_PEER_LIMITS_H_
