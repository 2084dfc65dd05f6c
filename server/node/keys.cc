#include "server/node/keys.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "absl/strings/str_cat.h"
#include "server/core/envelope.h"
#include "server/core/peer_limits.h"
#include "server/crypto/sha256.h"
#include "server/util/files.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

constexpr char kAcceptedKeysFile[] = "/peer_keys.pb";

int64_t MicrosOrZero(absl::Time t) {
  return (t == absl::InfinitePast() || t == absl::InfiniteFuture())
             ? 0
             : absl::ToUnixMicros(t);
}

std::string FormatKeyTime(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return "unbounded";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string DescribeWindow(const KeyValidity& v) {
  return absl::StrCat("[", FormatKeyTime(v.not_before), ", ", FormatKeyTime(v.not_after),
                      ")");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Keys>> Keys::Create(const NodeContext* ctx) {
  std::unique_ptr<Keys> keys(new Keys(ctx));
  COMITY_RETURN_IF_ERROR(keys->LoadAccepted());
  COMITY_RETURN_IF_ERROR(keys->Prepare());
  return keys;
}

absl::Status Keys::Prepare() {
  const absl::Time now = ctx_->Now();
  const std::string& current_id = ctx_->config().signing_key().key_id();
  if (absl::Status usable =
          ctx_->setup().signing_key_validity.Check(ctx_->party(), current_id, now);
      !usable.ok()) {
    // Peers will refuse what this node signs; say so at start.
    LogEvent(LogLevel::kError, "signing_key_not_valid", {{"reason", usable.ToString()}});
  }
  // The current key, vouched for by the newest previous key that can
  // still sign: peers that trust that one learn this one.
  const PreviousSigningKey* voucher = nullptr;
  bool any_private = false;
  for (const PreviousSigningKey& prev : ctx_->setup().previous_signing_keys) {
    if (prev.key == nullptr) continue;
    any_private = true;
    if (prev.validity.Check(ctx_->party(), prev.key_id, now).ok()) voucher = &prev;
  }
  if (voucher != nullptr) {
    OwnAnnouncement own;
    v1::KeyAnnouncement& a = own.content;
    a.set_party(ctx_->party());
    a.set_key_id(current_id);
    a.set_ed25519_public_key(ctx_->setup().signing_key->public_key());
    a.set_not_before_unix_micros(
        MicrosOrZero(ctx_->setup().signing_key_validity.not_before));
    a.set_not_after_unix_micros(
        MicrosOrZero(ctx_->setup().signing_key_validity.not_after));
    own.signer_key_id = voucher->key_id;
    own.signer = voucher->key.get();
    own.prove_possession = true;
    // Signed once now, so that a key that cannot sign stops the start.
    COMITY_RETURN_IF_ERROR(Sign(own, now).status());
    own_announcements_.push_back(std::move(own));
  } else if (any_private) {
    LogEvent(LogLevel::kWarning, "key_not_announced",
             {{"key_id", current_id},
              {"reason",
               "no previous signing key with a private key is valid now to vouch for it; "
               "add the key to the peers' configurations (peers[].signing_keys)"}});
  }
  // Revocations, signed by the current key (which peers learn first).
  for (const PreviousSigningKey& prev : ctx_->setup().previous_signing_keys) {
    if (!prev.validity.revoked()) continue;
    OwnAnnouncement own;
    own.content.set_party(ctx_->party());
    own.content.set_revoke_key_id(prev.key_id);
    own.content.set_revoked_at_unix_micros(absl::ToUnixMicros(prev.validity.revoked_at));
    own.signer_key_id = current_id;
    own.signer = ctx_->setup().signing_key.get();
    own.prove_possession = false;
    COMITY_RETURN_IF_ERROR(Sign(own, now).status());
    own_announcements_.push_back(std::move(own));
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [peer, unused] : ctx_->setup().peers) announcing_[peer] = Announcing{};
  return absl::OkStatus();
}

absl::StatusOr<v1::AnnounceKeyRequest> Keys::Sign(const OwnAnnouncement& own,
                                                  absl::Time now) const {
  v1::KeyAnnouncement a = own.content;
  a.set_time_unix_micros(absl::ToUnixMicros(now));
  std::string payload = SerializeDeterministic(a);
  v1::AnnounceKeyRequest req;
  if (own.prove_possession) {
    COMITY_ASSIGN_OR_RETURN(
        *req.mutable_possession(),
        SignEnvelope(kKeyAnnouncementPayloadType, payload, ctx_->party(), a.key_id(),
                     *ctx_->setup().signing_key));
  }
  COMITY_ASSIGN_OR_RETURN(*req.mutable_announcement(),
                          SignEnvelope(kKeyAnnouncementPayloadType, std::move(payload),
                                       ctx_->party(), own.signer_key_id, *own.signer));
  return req;
}

absl::Status Keys::LoadAccepted() {
  const std::string path = ctx_->config().data_dir() + kAcceptedKeysFile;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return absl::OkStatus();
  COMITY_ASSIGN_OR_RETURN(std::string bytes, ReadPrivateFile(path));
  v1::AcceptedKeyAnnouncements stored;
  if (!stored.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(
        path,
        ": not a comity.v1.AcceptedKeyAnnouncements; restore it from a backup or remove "
        "it (the peers then announce their keys again at their next start)"));
  }
  absl::MutexLock lock(&mu_);
  // Replayed in the order accepted: a key learned first may sign a later
  // announcement. Each is checked again at the time it claims.
  for (const v1::AnnounceKeyRequest& req : stored.announcements()) {
    const std::string& peer = req.announcement().signer_party();
    bool changed = false;
    absl::StatusOr<v1::KeyAnnouncement> applied =
        ctx_->setup().peers.count(peer) == 0
            ? absl::FailedPreconditionError(absl::StrCat(peer, " is no longer a peer"))
            : Apply(peer, req, /*live=*/false, &changed);
    if (!applied.ok()) {
      LogEvent(LogLevel::kWarning, "stored_key_announcement_skipped",
               {{"party", peer.substr(0, 8)}, {"reason", applied.status().ToString()}});
      continue;
    }
    *accepted_.add_announcements() = req;
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::KeyAnnouncement> Keys::Apply(const std::string& peer_party,
                                                const v1::AnnounceKeyRequest& request,
                                                bool live, bool* changed) {
  *changed = false;
  const v1::SignedEnvelope& env = request.announcement();
  if (env.signer_party() != peer_party) {
    return absl::PermissionDeniedError(absl::StrCat(
        "key announcement is signed as party '", env.signer_party().substr(0, 8),
        "' but the TLS peer is ", peer_party));
  }
  const absl::Time now = ctx_->Now();
  VerifyOptions options;
  if (live) {
    options.received_at = now;
    options.revocation_grace = ctx_->setup().replay_window();
  }
  COMITY_RETURN_IF_ERROR(
      VerifyEnvelope(env, kKeyAnnouncementPayloadType, ctx_->setup().key_ring, options));
  v1::KeyAnnouncement a;
  if (!a.ParseFromString(env.payload())) {
    return absl::InvalidArgumentError(
        "announcement payload is not a comity.v1.KeyAnnouncement");
  }
  if (a.party() != peer_party) {
    return absl::InvalidArgumentError(absl::StrCat("announcement names party '",
                                                   a.party().substr(0, 8),
                                                   "' but is signed by ", peer_party));
  }
  COMITY_RETURN_IF_ERROR(CheckKeyAnnouncementBounds(a));
  if (live) {
    const absl::Time t = absl::FromUnixMicros(a.time_unix_micros());
    if (t < now - ctx_->setup().replay_window() ||
        t > now + ctx_->setup().max_clock_skew()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "announcement time ", FormatKeyTime(t), " is outside the acceptance window (",
          absl::FormatDuration(ctx_->setup().replay_window()), " back, ",
          absl::FormatDuration(ctx_->setup().max_clock_skew()),
          " ahead of this node's clock); check the sender's clock (it signs the "
          "announcement again at each attempt)"));
    }
  }
  if (a.key_id().empty() && a.revoke_key_id().empty()) {
    return absl::InvalidArgumentError("the announcement names no key to add or revoke");
  }

  // Everything is checked before the ring changes.
  KeyValidity validity;
  bool add = false;
  if (!a.key_id().empty()) {
    if (a.key_id().size() > 128) return absl::InvalidArgumentError("key_id is too long");
    if (a.not_before_unix_micros() != 0) {
      validity.not_before = absl::FromUnixMicros(a.not_before_unix_micros());
    }
    if (a.not_after_unix_micros() != 0) {
      validity.not_after = absl::FromUnixMicros(a.not_after_unix_micros());
    }
    if (validity.not_before >= validity.not_after) {
      return absl::InvalidArgumentError("the announced key's window is empty");
    }
    const v1::SignedEnvelope& proof = request.possession();
    if (proof.payload_type() != kKeyAnnouncementPayloadType ||
        proof.payload() != env.payload() || proof.signer_party() != peer_party ||
        proof.key_id() != a.key_id()) {
      return absl::UnauthenticatedError(
          absl::StrCat("the announcement of key '", a.key_id(),
                       "' lacks its proof of possession: the same "
                       "payload signed by the announced key"));
    }
    COMITY_ASSIGN_OR_RETURN(std::unique_ptr<VerifyingKey> announced,
                            VerifyingKey::FromRaw(a.ed25519_public_key()));
    absl::Status possessed =
        announced->Verify(SigningInput(proof.payload_type(), proof.signer_party(),
                                       proof.key_id(), proof.payload()),
                          proof.signature());
    if (!possessed.ok()) {
      return absl::UnauthenticatedError(absl::StrCat("the proof of possession of key '",
                                                     a.key_id(),
                                                     "' does not verify with the "
                                                     "announced public key: ",
                                                     possessed.message()));
    }
    const VerifyingKey* known = ctx_->setup().key_ring.Find(peer_party, a.key_id());
    if (known != nullptr && known->raw() != a.ed25519_public_key()) {
      return absl::AlreadyExistsError(
          absl::StrCat("key id '", a.key_id(), "' of ", peer_party,
                       " is already known with another public "
                       "key; a new key needs a new id"));
    }
    add = known == nullptr;
  }
  absl::Time revoked_at = absl::InfiniteFuture();
  if (!a.revoke_key_id().empty()) {
    if (a.revoked_at_unix_micros() <= 0) {
      return absl::InvalidArgumentError("a revocation needs revoked_at_unix_micros");
    }
    revoked_at = absl::FromUnixMicros(a.revoked_at_unix_micros());
  }

  if (add) {
    COMITY_RETURN_IF_ERROR(ctx_->setup().key_ring.Add(peer_party, a.key_id(),
                                                      a.ed25519_public_key(), validity));
    *changed = true;
  }
  // A revocation of a key this node never knew teaches it nothing; one
  // only ever moves a revocation earlier.
  if (!a.revoke_key_id().empty() &&
      ctx_->setup().key_ring.Find(peer_party, a.revoke_key_id()) != nullptr &&
      revoked_at <
          ctx_->setup().key_ring.ValidityOf(peer_party, a.revoke_key_id()).revoked_at) {
    COMITY_RETURN_IF_ERROR(
        ctx_->setup().key_ring.Revoke(peer_party, a.revoke_key_id(), revoked_at));
    *changed = true;
  }
  return a;
}

absl::StatusOr<bool> Keys::ReceiveAnnouncement(const std::string& peer_party,
                                               const v1::AnnounceKeyRequest& request) {
  absl::MutexLock lock(&mu_);
  bool changed = false;
  COMITY_ASSIGN_OR_RETURN(v1::KeyAnnouncement a,
                          Apply(peer_party, request, /*live=*/true, &changed));
  if (!changed) return false;
  // Kept before it is acknowledged, so that it survives a restart. If the
  // write fails the ring still holds the key until then, and the peer,
  // which gets the error, sends the announcement again.
  *accepted_.add_announcements() = request;
  COMITY_RETURN_IF_ERROR(
      WriteFileAtomically(ctx_->config().data_dir() + kAcceptedKeysFile,
                          accepted_.SerializeAsString(), 0600));
  const std::string hash = Sha256(request.announcement().payload());
  absl::Status audited =
      ctx_->store().audit().Append([&](AuditWriter& w) -> absl::Status {
        if (!a.key_id().empty()) {
          v1::AuditEntry e =
              ctx_->Event(v1::KEY_ANNOUNCED, "peer:" + peer_party, "", peer_party);
          e.add_hashes(hash);
          e.set_detail(absl::StrCat(
              peer_party, " key ", a.key_id(), " added, vouched for by ",
              request.announcement().key_id(), ", valid ",
              DescribeWindow(ctx_->setup().key_ring.ValidityOf(peer_party, a.key_id()))));
          COMITY_RETURN_IF_ERROR(w.Append(&e).status());
        }
        if (!a.revoke_key_id().empty()) {
          v1::AuditEntry e =
              ctx_->Event(v1::KEY_REVOKED, "peer:" + peer_party, "", peer_party);
          e.add_hashes(hash);
          e.set_detail(absl::StrCat(
              peer_party, " key ", a.revoke_key_id(), " revoked from ",
              FormatKeyTime(absl::FromUnixMicros(a.revoked_at_unix_micros())),
              ", announced with key ", request.announcement().key_id()));
          COMITY_RETURN_IF_ERROR(w.Append(&e).status());
        }
        return absl::OkStatus();
      });
  if (!audited.ok())
    LogEvent(LogLevel::kError, "audit_error", {{"error", audited.ToString()}});
  LogEvent(LogLevel::kInfo, "peer_key_announced",
           {{"party", peer_party},
            {"key_id", a.key_id()},
            {"revoked_key_id", a.revoke_key_id()},
            {"signed_with", request.announcement().key_id()}});
  return true;
}

void Keys::AnnounceRound() {
  std::vector<std::string> peers;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [peer, unused] : announcing_) peers.push_back(peer);
  }
  for (const std::string& peer : peers) AnnounceTo(peer);
}

void Keys::AnnounceTo(const std::string& peer) {
  if (own_announcements_.empty()) return;
  size_t next;
  {
    absl::MutexLock lock(&mu_);
    auto it = announcing_.find(peer);
    if (it == announcing_.end() || it->second.next >= own_announcements_.size() ||
        ctx_->MonotonicNow() < it->second.retry_at) {
      return;
    }
    next = it->second.next;
  }
  const absl::Duration timeout =
      absl::Milliseconds(ctx_->config().delivery().attempt_timeout_ms());
  // In order: a revocation is signed by the key the first one announces.
  absl::Status failed;
  for (; next < own_announcements_.size(); ++next) {
    const OwnAnnouncement& own = own_announcements_[next];
    absl::StatusOr<v1::AnnounceKeyRequest> req = Sign(own, ctx_->Now());
    if (!req.ok()) {
      failed = req.status();
      break;
    }
    absl::StatusOr<bool> taught = ctx_->transport().AnnounceKey(peer, *req, timeout);
    if (!taught.ok()) {
      failed = taught.status();
      break;
    }
    if (!*taught) continue;
    const v1::KeyAnnouncement& a = own.content;
    absl::Status audited = ctx_->store().audit().Append([&](AuditWriter& w) {
      v1::AuditEntry e = ctx_->Event(
          a.key_id().empty() ? v1::KEY_REVOKED : v1::KEY_ANNOUNCED, "node", "", peer);
      e.add_hashes(Sha256(req->announcement().payload()));
      e.set_detail(a.key_id().empty()
                       ? absl::StrCat("revocation of key ", a.revoke_key_id(),
                                      " acknowledged by ", peer)
                       : absl::StrCat("key ", a.key_id(), " acknowledged by ", peer));
      return w.Append(&e).status();
    });
    if (!audited.ok()) {
      LogEvent(LogLevel::kError, "audit_error", {{"error", audited.ToString()}});
    }
  }
  absl::MutexLock lock(&mu_);
  Announcing& state = announcing_[peer];
  state.next = next;
  if (failed.ok()) {
    state.failures = 0;
    state.last_error.clear();
    LogEvent(LogLevel::kInfo, "keys_announced", {{"peer", peer}});
  } else {
    ++state.failures;
    state.retry_at = ctx_->MonotonicNow() + ctx_->Backoff(state.failures);
    state.last_error = failed.ToString();
    LogEvent(LogLevel::kWarning, "key_announcement_failed",
             {{"peer", peer}, {"error", state.last_error}});
  }
}

std::vector<v1::KeyStatus> Keys::List() {
  const absl::Time now = ctx_->Now();
  std::set<std::pair<std::string, std::string>> announced;
  {
    absl::MutexLock lock(&mu_);
    for (const v1::AnnounceKeyRequest& req : accepted_.announcements()) {
      v1::KeyAnnouncement a;
      if (a.ParseFromString(req.announcement().payload()) && !a.key_id().empty()) {
        announced.insert({a.party(), a.key_id()});
      }
    }
  }
  // For own keys: which peers have taken each announcement.
  std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>
      acks;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < own_announcements_.size(); ++i) {
      const v1::KeyAnnouncement& a = own_announcements_[i].content;
      const std::string& id = a.key_id().empty() ? a.revoke_key_id() : a.key_id();
      for (const auto& [peer, state] : announcing_) {
        (state.next > i ? acks[id].first : acks[id].second).push_back(peer);
      }
    }
  }
  std::vector<v1::KeyStatus> out;
  for (const KeyRing::Entry& e : ctx_->setup().key_ring.Entries()) {
    v1::KeyStatus k;
    k.set_party(e.party);
    k.set_key_id(e.key_id);
    k.set_ed25519_public_key(e.raw_public_key);
    k.set_not_before_unix_micros(MicrosOrZero(e.validity.not_before));
    k.set_not_after_unix_micros(MicrosOrZero(e.validity.not_after));
    k.set_revoked_at_unix_micros(MicrosOrZero(e.validity.revoked_at));
    k.set_source(announced.count({e.party, e.key_id}) != 0 ? "announced" : "config");
    k.set_state(e.validity.StateAt(now));
    k.set_signing(e.party == ctx_->party() &&
                  e.key_id == ctx_->config().signing_key().key_id());
    if (e.party == ctx_->party()) {
      auto it = acks.find(e.key_id);
      if (it != acks.end()) {
        for (const auto& p : it->second.first) k.add_acknowledged_by(p);
        for (const auto& p : it->second.second) k.add_pending(p);
      }
    }
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace comity
