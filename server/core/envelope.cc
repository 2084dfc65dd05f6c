#include "server/core/envelope.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "comity/v1/audit.pb.h"
#include "comity/v1/case.pb.h"
#include "comity/v1/request.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

constexpr absl::string_view kDomain = "comity-sig-v1";

void AppendBigEndian(std::string* out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
}

std::string FormatKeyTime(absl::Time t) {
  if (t == absl::InfinitePast()) return "-inf";
  if (t == absl::InfiniteFuture()) return "+inf";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

template <typename M>
absl::StatusOr<M> ParsePayload(absl::string_view payload, absl::string_view type) {
  M msg;
  if (!msg.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError(absl::StrCat("payload is not a ", type));
  }
  return msg;
}

absl::StatusOr<absl::Time> FromMicros(int64_t micros, absl::string_view what) {
  if (micros <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is not set"));
  }
  return absl::FromUnixMicros(micros);
}

// Whether `r` sets a field of what a receipt states (1 to 6) or of how it
// proves it (7, 8, 9 and 12).
bool StatesSomething(const v1::Receipt& r) {
  return !r.request_id().empty() || !r.requesting_party().empty() ||
         !r.receiving_party().empty() || !r.request_payload_sha256().empty() ||
         r.has_received_at() || r.has_receiver_assessment();
}
bool ProvesSomething(const v1::Receipt& r) {
  return r.has_tree_head() || !r.received_entry().empty() || r.has_received_entry_proof() ||
         !r.statement().empty();
}

}  // namespace

std::string SerializeDeterministic(const google::protobuf::MessageLite& msg) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  msg.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

std::string SigningInput(absl::string_view payload_type, absl::string_view signer_party,
                         absl::string_view key_id, absl::string_view payload) {
  std::string input;
  input.reserve(kDomain.size() + 1 + 12 + payload_type.size() + signer_party.size() +
                key_id.size() + 8 + payload.size());
  input.append(kDomain.data(), kDomain.size());
  input.push_back('\0');
  for (absl::string_view field : {payload_type, signer_party, key_id}) {
    AppendBigEndian(&input, field.size(), 4);
    input.append(field.data(), field.size());
  }
  AppendBigEndian(&input, payload.size(), 8);
  input.append(payload.data(), payload.size());
  return input;
}

absl::StatusOr<v1::SignedEnvelope> SignEnvelope(absl::string_view payload_type,
                                                std::string payload,
                                                absl::string_view signer_party,
                                                absl::string_view key_id,
                                                const SigningKey& key) {
  auto signature = key.Sign(SigningInput(payload_type, signer_party, key_id, payload));
  if (!signature.ok()) return signature.status();
  v1::SignedEnvelope env;
  env.set_payload_type(std::string(payload_type));
  env.set_payload(std::move(payload));
  env.set_signer_party(std::string(signer_party));
  env.set_key_id(std::string(key_id));
  env.set_signature(*std::move(signature));
  return env;
}

absl::Status KeyValidity::Check(absl::string_view party, absl::string_view key_id,
                                absl::Time t) const {
  const std::string window =
      absl::StrCat("[", FormatKeyTime(not_before), ", ", FormatKeyTime(not_after), ")");
  if (t < not_before) {
    return absl::UnauthenticatedError(absl::StrCat(
        "key '", key_id, "' of party ", party, " is valid from ", FormatKeyTime(not_before),
        " (window ", window, "); a signature claiming ", FormatKeyTime(t),
        " is not accepted: check the signer's clock, or the key's not_before"));
  }
  if (t >= revoked_at) {
    return absl::UnauthenticatedError(absl::StrCat(
        "key '", key_id, "' of party ", party, " was revoked at ", FormatKeyTime(revoked_at),
        "; a signature claiming ", FormatKeyTime(t), " is not accepted: ", party,
        " must sign with a current key (docs/keys.md)"));
  }
  if (t >= not_after) {
    return absl::UnauthenticatedError(absl::StrCat(
        "key '", key_id, "' of party ", party, " expired at ", FormatKeyTime(not_after),
        " (window ", window, "); a signature claiming ", FormatKeyTime(t), " is not accepted: ",
        party, " must rotate to a new key and announce it (docs/keys.md)"));
  }
  return absl::OkStatus();
}

std::string KeyValidity::StateAt(absl::Time now) const {
  if (now >= revoked_at) return "revoked";
  if (now < not_before) return "not yet valid";
  if (now >= not_after) return "expired";
  return "valid";
}

absl::Status KeyRing::Add(absl::string_view party, absl::string_view key_id,
                          absl::string_view raw_public_key, const KeyValidity& validity) {
  if (validity.not_before >= validity.not_after) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key_id, "' of party ", party, ": not_before ",
        FormatKeyTime(validity.not_before), " is not before not_after ",
        FormatKeyTime(validity.not_after), "; give a non-empty window"));
  }
  auto key = VerifyingKey::FromRaw(raw_public_key);
  if (!key.ok()) return key.status();
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = keys_.try_emplace({std::string(party), std::string(key_id)});
  if (!inserted) {
    if (it->second.key->raw() == raw_public_key) {
      it->second.validity.revoked_at =
          std::min(it->second.validity.revoked_at, validity.revoked_at);
      return absl::OkStatus();
    }
    return absl::AlreadyExistsError(
        absl::StrCat("key id '", key_id, "' of party ", party, " is listed twice"));
  }
  it->second.key = *std::move(key);
  it->second.validity = validity;
  return absl::OkStatus();
}

absl::Status KeyRing::Revoke(absl::string_view party, absl::string_view key_id,
                             absl::Time at) {
  absl::MutexLock lock(&mu_);
  auto it = keys_.find({std::string(party), std::string(key_id)});
  if (it == keys_.end()) {
    return absl::NotFoundError(
        absl::StrCat("no key '", key_id, "' of party ", party, " to revoke"));
  }
  it->second.validity.revoked_at = std::min(it->second.validity.revoked_at, at);
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> KeyRing::KeysOf(
    absl::string_view party) const {
  std::vector<std::pair<std::string, std::string>> out;
  absl::MutexLock lock(&mu_);
  for (auto it = keys_.lower_bound({std::string(party), std::string()});
       it != keys_.end() && it->first.first == party; ++it) {
    out.emplace_back(it->first.second, it->second.key->raw());
  }
  return out;
}

std::vector<KeyRing::Entry> KeyRing::Entries() const {
  std::vector<Entry> out;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, slot] : keys_) {
    out.push_back(Entry{id.first, id.second, slot.key->raw(), slot.validity});
  }
  return out;
}

const VerifyingKey* KeyRing::Find(absl::string_view party,
                                  absl::string_view key_id) const {
  absl::MutexLock lock(&mu_);
  auto it = keys_.find({std::string(party), std::string(key_id)});
  return it == keys_.end() ? nullptr : it->second.key.get();
}

KeyValidity KeyRing::ValidityOf(absl::string_view party, absl::string_view key_id) const {
  absl::MutexLock lock(&mu_);
  auto it = keys_.find({std::string(party), std::string(key_id)});
  return it == keys_.end() ? KeyValidity{} : it->second.validity;
}

bool KeyRing::HasParty(absl::string_view party) const {
  absl::MutexLock lock(&mu_);
  auto it = keys_.lower_bound({std::string(party), std::string()});
  return it != keys_.end() && it->first.first == party;
}

absl::StatusOr<absl::Time> SignedTime(absl::string_view payload_type,
                                      absl::string_view payload) {
  if (payload_type == kRequestPayloadType) {
    COMITY_ASSIGN_OR_RETURN(auto m, ParsePayload<v1::RequestBody>(payload, payload_type));
    if (m.created_at().seconds() <= 0) {
      return absl::InvalidArgumentError("RequestBody.created_at is not set");
    }
    return absl::FromUnixSeconds(m.created_at().seconds()) +
           absl::Nanoseconds(m.created_at().nanos());
  }
  if (payload_type == kReceiptPayloadType) {
    COMITY_ASSIGN_OR_RETURN(auto m, ParsePayload<v1::Receipt>(payload, payload_type));
    if (m.received_at().seconds() <= 0) {
      return absl::InvalidArgumentError("Receipt.received_at is not set");
    }
    return absl::FromUnixSeconds(m.received_at().seconds()) +
           absl::Nanoseconds(m.received_at().nanos());
  }
  if (payload_type == kTreeHeadPayloadType) {
    COMITY_ASSIGN_OR_RETURN(auto m, ParsePayload<v1::TreeHead>(payload, payload_type));
    return FromMicros(m.timestamp_unix_micros(), "TreeHead.timestamp_unix_micros");
  }
  if (payload_type == kTransitionPayloadType) {
    COMITY_ASSIGN_OR_RETURN(auto m, ParsePayload<v1::Transition>(payload, payload_type));
    return FromMicros(m.time_unix_micros(), "Transition.time_unix_micros");
  }
  if (payload_type == kProposalPayloadType) {
    COMITY_ASSIGN_OR_RETURN(auto m,
                            ParsePayload<v1::TransitionProposal>(payload, payload_type));
    return FromMicros(m.time_unix_micros(), "TransitionProposal.time_unix_micros");
  }
  if (payload_type == kAckPayloadType) {
    COMITY_ASSIGN_OR_RETURN(auto m, ParsePayload<v1::Acknowledgement>(payload, payload_type));
    return FromMicros(m.received_at_unix_micros(), "Acknowledgement.received_at_unix_micros");
  }
  if (payload_type == kKeyAnnouncementPayloadType) {
    COMITY_ASSIGN_OR_RETURN(auto m, ParsePayload<v1::KeyAnnouncement>(payload, payload_type));
    return FromMicros(m.time_unix_micros(), "KeyAnnouncement.time_unix_micros");
  }
  return absl::UnimplementedError(
      absl::StrCat("no signing time is known for payload type '", payload_type.substr(0, 64),
                   "'"));
}

absl::Status VerifyEnvelope(const v1::SignedEnvelope& envelope,
                            absl::string_view expected_type, const KeyRing& ring,
                            const VerifyOptions& options) {
  if (envelope.payload_type() != expected_type) {
    return absl::InvalidArgumentError(absl::StrCat("envelope payload_type is '",
                                                   envelope.payload_type().substr(0, 64),
                                                   "', expected '", expected_type, "'"));
  }
  if (envelope.signer_party().empty() || envelope.key_id().empty()) {
    return absl::InvalidArgumentError("envelope has no signer_party or key_id");
  }
  const VerifyingKey* key = ring.Find(envelope.signer_party(), envelope.key_id());
  if (key == nullptr) {
    return absl::UnauthenticatedError(
        absl::StrCat("no signing key '", envelope.key_id().substr(0, 64),
                     "' is configured for party ", envelope.signer_party().substr(0, 8),
                     " (a new key must be announced by the party or added to "
                     "peers[].signing_keys; docs/keys.md)"));
  }
  absl::Status status =
      key->Verify(SigningInput(envelope.payload_type(), envelope.signer_party(),
                               envelope.key_id(), envelope.payload()),
                  envelope.signature());
  if (!status.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("signature of ", envelope.signer_party(), " (key '",
                     envelope.key_id(), "') does not verify: ", status.message()));
  }
  // The payload is parsed only now, after its signature checked out, and
  // only when the key's use is limited in time.
  const KeyValidity validity = ring.ValidityOf(envelope.signer_party(), envelope.key_id());
  if (validity.Unbounded()) return absl::OkStatus();
  absl::StatusOr<absl::Time> signed_at =
      SignedTime(envelope.payload_type(), envelope.payload());
  if (!signed_at.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot tell when ", envelope.signer_party(), " signed with key '", envelope.key_id(),
        "', which has a validity window: ", signed_at.status().message()));
  }
  COMITY_RETURN_IF_ERROR(
      validity.Check(envelope.signer_party(), envelope.key_id(), *signed_at));
  if (validity.revoked() && options.received_at != absl::InfinitePast() &&
      options.received_at >= validity.revoked_at + options.revocation_grace) {
    return absl::UnauthenticatedError(absl::StrCat(
        "key '", envelope.key_id(), "' of party ", envelope.signer_party(),
        " was revoked at ", FormatKeyTime(validity.revoked_at),
        "; an envelope signed with it that arrives at ", FormatKeyTime(options.received_at),
        ", more than ", absl::FormatDuration(options.revocation_grace),
        " after the revocation, is refused as possibly back-dated: ",
        envelope.signer_party(), " must sign it again with a current key"));
  }
  return absl::OkStatus();
}

absl::Status ReadReceiptStatement(v1::Receipt& r) {
  v1::Receipt statement;
  if (!statement.ParseFromString(r.statement())) {
    return absl::InvalidArgumentError(
        "the version 3 receipt's statement is not a serialized comity.v1.Receipt");
  }
  if (StatesSomething(r) || ProvesSomething(statement) ||
      statement.version() != r.version() || statement.batch_size() != r.batch_size()) {
    return absl::InvalidArgumentError(
        "a version 3 receipt states fields 1 to 6 only in its statement, which holds nothing "
        "else but its version and batch size; this one does not");
  }
  statement.set_allocated_tree_head(r.release_tree_head());
  statement.set_received_entry(std::move(*r.mutable_received_entry()));
  statement.set_allocated_received_entry_proof(r.release_received_entry_proof());
  statement.set_statement(std::move(*r.mutable_statement()));
  r = std::move(statement);
  return absl::OkStatus();
}

bool ParseReceipt(const v1::SignedEnvelope& receipt, v1::Receipt* out) {
  if (!out->ParseFromString(receipt.payload())) return false;
  if (out->version() < kProvenReceiptVersion) return true;
  return ReadReceiptStatement(*out).ok();
}

}  // namespace comity
