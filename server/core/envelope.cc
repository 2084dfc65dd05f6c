#include "server/core/envelope.h"

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace comity {
namespace {

constexpr absl::string_view kDomain = "comity-sig-v1";

void AppendBigEndian(std::string* out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  }
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

absl::Status KeyRing::Add(absl::string_view party, absl::string_view key_id,
                          absl::string_view raw_public_key) {
  auto key = VerifyingKey::FromRaw(raw_public_key);
  if (!key.ok()) return key.status();
  auto [it, inserted] = keys_.try_emplace({std::string(party), std::string(key_id)});
  if (!inserted) {
    if (it->second->raw() == raw_public_key) return absl::OkStatus();
    return absl::AlreadyExistsError(
        absl::StrCat("key id '", key_id, "' of party ", party, " is listed twice"));
  }
  it->second = *std::move(key);
  return absl::OkStatus();
}

std::vector<std::pair<std::string, std::string>> KeyRing::KeysOf(
    absl::string_view party) const {
  std::vector<std::pair<std::string, std::string>> out;
  for (auto it = keys_.lower_bound({std::string(party), std::string()});
       it != keys_.end() && it->first.first == party; ++it) {
    out.emplace_back(it->first.second, it->second->raw());
  }
  return out;
}

const VerifyingKey* KeyRing::Find(absl::string_view party,
                                  absl::string_view key_id) const {
  auto it = keys_.find({std::string(party), std::string(key_id)});
  return it == keys_.end() ? nullptr : it->second.get();
}

bool KeyRing::HasParty(absl::string_view party) const {
  auto it = keys_.lower_bound({std::string(party), std::string()});
  return it != keys_.end() && it->first.first == party;
}

absl::Status VerifyEnvelope(const v1::SignedEnvelope& envelope,
                            absl::string_view expected_type, const KeyRing& ring) {
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
                     "' is configured for party ", envelope.signer_party().substr(0, 8)));
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
  return absl::OkStatus();
}

}  // namespace comity
