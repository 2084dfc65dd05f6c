#include "server/core/peer_limits.h"

#include "absl/strings/str_cat.h"
#include "server/core/parties.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

using L = PeerLimits;

absl::Status TooLong(absl::string_view field, size_t size, size_t max) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, " is ", size, " bytes; at most ", max, " are allowed"));
}

absl::Status MaxBytes(absl::string_view field, const std::string& value, size_t max) {
  return value.size() > max ? TooLong(field, value.size(), max) : absl::OkStatus();
}

absl::Status Exactly(absl::string_view field, const std::string& value, size_t size) {
  if (value.size() != size) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is ", value.size(), " bytes; it must be ", size));
  }
  return absl::OkStatus();
}

template <typename Repeated>
absl::Status MaxCount(absl::string_view field, const Repeated& values, int max) {
  if (values.size() > max) {
    return absl::InvalidArgumentError(absl::StrCat(field, " has ", values.size(),
                                                   " entries; at most ", max,
                                                   " are allowed"));
  }
  return absl::OkStatus();
}

template <typename Repeated>
absl::Status EachMaxBytes(absl::string_view field, const Repeated& values, size_t max) {
  for (const std::string& v : values) {
    if (v.size() > max) return TooLong(absl::StrCat(field, "[]"), v.size(), max);
  }
  return absl::OkStatus();
}

absl::Status Party(absl::string_view field, const std::string& value) {
  return CheckPartyCode(field, value);
}

}  // namespace

absl::Status CheckEnvelopeBounds(const v1::SignedEnvelope& e) {
  COMITY_RETURN_IF_ERROR(MaxBytes("envelope.payload_type", e.payload_type(),
                                  L::kMaxPayloadTypeBytes));
  if (!e.signer_party().empty()) {
    COMITY_RETURN_IF_ERROR(Party("envelope.signer_party", e.signer_party()));
  }
  COMITY_RETURN_IF_ERROR(MaxBytes("envelope.key_id", e.key_id(), L::kMaxKeyIdBytes));
  if (!e.signature().empty()) {
    COMITY_RETURN_IF_ERROR(Exactly("envelope.signature", e.signature(), L::kSignatureBytes));
  }
  return absl::OkStatus();
}

absl::Status CheckTransitionBounds(const v1::Transition& t) {
  COMITY_RETURN_IF_ERROR(MaxBytes("transition.request_id", t.request_id(), L::kMaxIdBytes));
  COMITY_RETURN_IF_ERROR(
      Exactly("transition.previous_sha256", t.previous_sha256(), L::kHashBytes));
  COMITY_RETURN_IF_ERROR(Party("transition.party", t.party()));
  COMITY_RETURN_IF_ERROR(
      MaxBytes("transition.operator_name", t.operator_name(), L::kMaxOperatorNameBytes));
  if (t.sequence() == 0 || t.sequence() > static_cast<uint32_t>(L::kMaxStepsPerCase)) {
    return absl::InvalidArgumentError(absl::StrCat("transition.sequence is ", t.sequence(),
                                                   "; steps are numbered 1 to ",
                                                   L::kMaxStepsPerCase));
  }
  if (!v1::CaseAction_IsValid(t.action()) || !v1::CaseState_IsValid(t.from_state()) ||
      !v1::CaseState_IsValid(t.to_state())) {
    return absl::InvalidArgumentError("transition names an unknown action or state");
  }
  COMITY_RETURN_IF_ERROR(
      MaxCount("transition.refusal_grounds", t.refusal_grounds(), L::kMaxRefusalGrounds));
  for (int g : t.refusal_grounds()) {
    if (!v1::RefusalGround_IsValid(g) || g == v1::REFUSAL_GROUND_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          absl::StrCat("transition.refusal_grounds has an unknown ground (", g, ")"));
    }
  }
  COMITY_RETURN_IF_ERROR(MaxBytes("transition.reasons", t.reasons(), L::kMaxTextBytes));
  COMITY_RETURN_IF_ERROR(
      MaxBytes("transition.consultation", t.consultation(), L::kMaxTextBytes));
  COMITY_RETURN_IF_ERROR(MaxBytes("transition.text", t.text(), L::kMaxTextBytes));
  COMITY_RETURN_IF_ERROR(MaxCount("transition.open_duties", t.open_duties(), L::kMaxDuties));
  COMITY_RETURN_IF_ERROR(
      EachMaxBytes("transition.open_duties", t.open_duties(), L::kMaxShortBytes));
  COMITY_RETURN_IF_ERROR(
      MaxCount("transition.release_conditions", t.release_conditions(), L::kMaxConditions));
  COMITY_RETURN_IF_ERROR(EachMaxBytes("transition.release_conditions",
                                      t.release_conditions(), L::kMaxShortBytes));
  COMITY_RETURN_IF_ERROR(
      MaxCount("transition.accepted_conditions", t.accepted_conditions(), L::kMaxConditions));
  COMITY_RETURN_IF_ERROR(EachMaxBytes("transition.accepted_conditions",
                                      t.accepted_conditions(), L::kMaxShortBytes));
  COMITY_RETURN_IF_ERROR(
      MaxCount("transition.evidence", t.evidence(), L::kMaxEvidenceFiles));
  for (const v1::EvidenceFile& f : t.evidence()) {
    if (f.name().empty() || f.name().size() > L::kMaxFileNameBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "transition.evidence[].name is ", f.name().size(), " bytes; 1 to ",
          L::kMaxFileNameBytes, " are allowed"));
    }
    COMITY_RETURN_IF_ERROR(Exactly("transition.evidence[].sha256", f.sha256(), L::kHashBytes));
    if (f.size() == 0 || f.size() > L::kMaxFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "transition.evidence[].size is ", f.size(), "; 1 to ", L::kMaxFileBytes,
          " bytes are allowed"));
    }
  }
  if (t.has_proposal()) COMITY_RETURN_IF_ERROR(CheckEnvelopeBounds(t.proposal()));
  return absl::OkStatus();
}

absl::Status CheckProposalBounds(const v1::TransitionProposal& p) {
  COMITY_RETURN_IF_ERROR(MaxBytes("proposal.request_id", p.request_id(), L::kMaxIdBytes));
  COMITY_RETURN_IF_ERROR(Party("proposal.party", p.party()));
  COMITY_RETURN_IF_ERROR(
      MaxBytes("proposal.operator_name", p.operator_name(), L::kMaxOperatorNameBytes));
  COMITY_RETURN_IF_ERROR(MaxBytes("proposal.text", p.text(), L::kMaxTextBytes));
  if (!v1::CaseAction_IsValid(p.action())) {
    return absl::InvalidArgumentError("proposal names an unknown action");
  }
  COMITY_RETURN_IF_ERROR(
      MaxCount("proposal.accepted_conditions", p.accepted_conditions(), L::kMaxConditions));
  return EachMaxBytes("proposal.accepted_conditions", p.accepted_conditions(),
                      L::kMaxShortBytes);
}

absl::Status CheckAckBounds(const v1::Acknowledgement& a) {
  COMITY_RETURN_IF_ERROR(MaxBytes("acknowledgement.request_id", a.request_id(), L::kMaxIdBytes));
  COMITY_RETURN_IF_ERROR(
      Exactly("acknowledgement.payload_sha256", a.payload_sha256(), L::kHashBytes));
  return Party("acknowledgement.party", a.party());
}

absl::Status CheckTreeHeadBounds(const v1::TreeHead& h) {
  COMITY_RETURN_IF_ERROR(Party("tree_head.party", h.party()));
  return Exactly("tree_head.root_hash", h.root_hash(), L::kHashBytes);
}

absl::Status CheckKeyAnnouncementBounds(const v1::KeyAnnouncement& k) {
  COMITY_RETURN_IF_ERROR(Party("key_announcement.party", k.party()));
  COMITY_RETURN_IF_ERROR(MaxBytes("key_announcement.key_id", k.key_id(), L::kMaxKeyIdBytes));
  COMITY_RETURN_IF_ERROR(
      MaxBytes("key_announcement.revoke_key_id", k.revoke_key_id(), L::kMaxKeyIdBytes));
  if (!k.key_id().empty()) {
    COMITY_RETURN_IF_ERROR(
        Exactly("key_announcement.ed25519_public_key", k.ed25519_public_key(), 32));
  }
  return absl::OkStatus();
}

absl::Status CheckSignedTime(absl::string_view what, absl::Time signed_at, absl::Time now,
                             absl::Duration skew, absl::Time after) {
  auto fmt = [](absl::Time t) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
  };
  if (signed_at > now + skew) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " is dated ", fmt(signed_at), ", later than this node's clock (", fmt(now),
        ") allows (limits.max_clock_skew_seconds: ", absl::FormatDuration(skew),
        "); check the signer's clock"));
  }
  if (after != absl::InfinitePast() && signed_at < after - skew) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " is dated ", fmt(signed_at), ", before the step it follows (", fmt(after),
        "); a party's steps never go back in time"));
  }
  return absl::OkStatus();
}

}  // namespace comity
