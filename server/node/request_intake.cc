#include "server/node/request_intake.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/audit/receipt.h"
#include "server/core/deadlines.h"
#include "server/core/envelope.h"
#include "server/core/parties.h"
#include "server/core/peer_limits.h"
#include "server/core/request_validation.h"
#include "server/crypto/sha256.h"
#include "server/node/assessment_log.h"
#include "server/node/case_records.h"
#include "server/treaty/engine.h"
#include "server/util/hex.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"
#include "server/util/time_proto.h"

namespace comity {
namespace {

constexpr absl::Duration kAuthCacheTtl = absl::Minutes(1);

}  // namespace

RequestIntake::RequestIntake(const NodeContext* ctx)
    : ctx_(ctx),
      limiter_(ctx->config().limits().peer_rate_per_second(),
               ctx->config().limits().peer_burst(), &ctx->clock()) {}

std::optional<CertIdentity> RequestIntake::CachedIdentity(const std::string& key) const {
  absl::MutexLock lock(&auth_mu_);
  auto it = auth_cache_.find(key);
  if (it == auth_cache_.end() || it->second.expires <= ctx_->MonotonicNow())
    return std::nullopt;
  return it->second.identity;
}

void RequestIntake::CacheIdentity(const std::string& key, const CertIdentity& id) const {
  absl::MutexLock lock(&auth_mu_);
  if (auth_cache_.size() >= kAuthCacheSize) auth_cache_.clear();
  auth_cache_[key] = AuthCacheEntry{id, ctx_->MonotonicNow() + kAuthCacheTtl};
}

absl::StatusOr<std::string> RequestIntake::AuthenticatePeer(const CallInfo& call) const {
  // By the hash of the certificate's bytes and chain, so any other
  // certificate misses.
  const std::string cache_key = Sha256(absl::StrCat(call.cert_pem, "\n", call.chain_pem));
  if (auto cached = CachedIdentity(cache_key);
      cached.has_value() && cached->kind == CertIdentity::Kind::kParty) {
    return cached->party;
  }
  auto id = IdentityFromCertPem(call.cert_pem);
  if (!id.ok()) return absl::PermissionDeniedError(id.status().message());
  if (id->kind != CertIdentity::Kind::kParty) {
    return absl::PermissionDeniedError(
        "an operator certificate cannot be used on the peer listener");
  }
  auto it = ctx_->setup().peers.find(id->party);
  if (it == ctx_->setup().peers.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "party ", id->party, " is not a configured peer of ", ctx_->party()));
  }
  absl::Status issued = it->second.ca->Verify(call.cert_pem, call.chain_pem);
  if (!issued.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("certificate claiming party ", id->party, ": ", issued.message()));
  }
  CacheIdentity(cache_key, *id);
  return id->party;
}

absl::StatusOr<CertIdentity> RequestIntake::AuthenticateOperator(
    const CallInfo& call) const {
  const std::string cache_key = Sha256(absl::StrCat(call.cert_pem, "\n", call.chain_pem));
  if (auto cached = CachedIdentity(cache_key);
      cached.has_value() && cached->kind == CertIdentity::Kind::kOperator) {
    return *std::move(cached);
  }
  auto id = IdentityFromCertPem(call.cert_pem);
  if (!id.ok()) return absl::PermissionDeniedError(id.status().message());
  if (id->kind != CertIdentity::Kind::kOperator || id->party != ctx_->party()) {
    return absl::PermissionDeniedError(
        absl::StrCat("not an operator certificate of party ", ctx_->party(),
                     " (expected URI SAN urn:comity:operator:", ctx_->party(), ":NAME)"));
  }
  absl::Status issued = ctx_->setup().operator_ca->Verify(call.cert_pem, call.chain_pem);
  if (!issued.ok()) return issued;
  CacheIdentity(cache_key, *id);
  return *std::move(id);
}

void RequestIntake::RecordAuthFailure(const CallInfo& call, const char* event,
                                      const std::string& actor, absl::string_view method,
                                      const absl::Status& why) {
  LogEvent(LogLevel::kWarning, event,
           {{"method", std::string(method)},
            {"tls_peer", call.tls_peer},
            {"reason", std::string(why.message())}});
  ctx_->metrics().AuthFailure(actor.rfind("operator:", 0) == 0 ? "operator" : "tls");
  ctx_->AuditOrLog([&](AuditWriter& w) {
    v1::AuditEntry e = ctx_->Event(v1::AUTH_FAILURE, actor);
    e.set_detail(absl::StrCat(method, ": ", why.message()).substr(0, 512));
    return w.Append(&e).status();
  });
}

absl::StatusOr<std::string> RequestIntake::AdmitPeer(const CallInfo& call,
                                                     absl::string_view method,
                                                     uint32_t cost) {
  absl::StatusOr<std::string> peer = AuthenticatePeer(call);
  if (!peer.ok()) {
    RecordAuthFailure(call, "peer_request_rejected", absl::StrCat("tls:", call.tls_peer),
                      method, peer.status());
    return peer;
  }
  // Over its rate limit: refused before anything is checked, audited in
  // aggregate (AuditRateLimited).
  COMITY_RETURN_IF_ERROR(limiter_.Admit(*peer, cost));
  const uint64_t limit = ctx_->config().limits().max_message_bytes();
  if (call.message_bytes > limit) {
    absl::Status too_big = absl::ResourceExhaustedError(absl::StrCat(
        method, " message is ", call.message_bytes, " bytes; the limit is ", limit));
    RecordRefusal(call, "peer:" + *peer, method, "", too_big);
    return too_big;
  }
  return peer;
}

absl::StatusOr<CertIdentity> RequestIntake::AdmitOperator(
    const CallInfo& call, absl::string_view method,
    std::initializer_list<const char*> roles) {
  absl::StatusOr<CertIdentity> op = AuthenticateOperator(call);
  if (!op.ok()) {
    RecordAuthFailure(call, "operator_denied", absl::StrCat("tls:", call.tls_peer),
                      method, op.status());
    return op;
  }
  if (roles.size() > 0 && std::none_of(roles.begin(), roles.end(),
                                       [&](const char* r) { return op->HasRole(r); })) {
    std::vector<std::string> names(roles.begin(), roles.end());
    absl::Status denied = absl::PermissionDeniedError(absl::StrCat(
        "operator ", op->operator_name, " lacks the ", absl::StrJoin(names, " or "),
        " role needed for ", method, " (a urn:comity:role:", names.front(),
        " URI in the operator certificate)"));
    RecordAuthFailure(call, "operator_denied", "operator:" + op->operator_name, method, denied);
    return denied;
  }
  return op;
}

bool IsRefusal(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kDataLoss:  // A split view shown to this node.
      return true;
    default:
      return false;
  }
}

void RequestIntake::RecordRefusal(const CallInfo& call, const std::string& actor,
                                  absl::string_view method, const std::string& payload_sha256,
                                  const absl::Status& why) {
  if (!IsRefusal(why)) return;
  if (actor.rfind("operator:", 0) == 0) {
    if (absl::IsPermissionDenied(why)) {
      RecordAuthFailure(call, "operator_denied", actor, method, why);
      return;
    }
    LogEvent(LogLevel::kWarning, "operator_request_refused",
             {{"operator", actor.substr(9)},
              {"method", std::string(method)},
              {"code", absl::StatusCodeToString(why.code())},
              {"reason", std::string(why.message())}});
    ctx_->AuditOrLog([&](AuditWriter& w) {
      v1::AuditEntry e = ctx_->Event(v1::OPERATOR_REQUEST_REFUSED, actor);
      if (!payload_sha256.empty()) e.add_hashes(payload_sha256);
      e.set_detail(absl::StrCat(method, ": ", StatusText(why)).substr(0, 512));
      return w.Append(&e).status();
    });
    return;
  }
  const std::string peer = actor.rfind("peer:", 0) == 0 ? actor.substr(5) : actor;
  LogEvent(LogLevel::kWarning, "peer_request_rejected",
           {{"peer", peer},
            {"method", std::string(method)},
            {"tls_peer", call.tls_peer},
            {"payload_sha256", HexEncode(payload_sha256)},
            {"code", absl::StatusCodeToString(why.code())},
            {"reason", std::string(why.message())}});
  ctx_->metrics().PeerRefusal(peer, absl::StatusCodeToString(why.code()));
  ctx_->AuditOrLog([&](AuditWriter& w) {
    v1::AuditEntry e = ctx_->Event(v1::PEER_REQUEST_REFUSED, actor, "", peer);
    if (!payload_sha256.empty()) e.add_hashes(payload_sha256);
    e.set_detail(absl::StrCat(method, ": ", StatusText(why)).substr(0, 512));
    return w.Append(&e).status();
  });
}

void RequestIntake::AuditRateLimited() {
  for (const auto& [peer, refused] : limiter_.TakeRefusals()) {
    ctx_->metrics().PeerRateLimited(peer, refused);
    LogEvent(LogLevel::kWarning, "peer_rate_limited",
             {{"peer", peer}, {"refused", absl::StrCat(refused)}});
    ctx_->AuditOrLog([&, p = peer, n = refused](AuditWriter& w) {
      v1::AuditEntry e = ctx_->Event(v1::PEER_RATE_LIMITED, "peer:" + p, "", p);
      e.set_detail(absl::StrCat(n, " calls refused over the rate limit (",
                                ctx_->config().limits().peer_rate_per_second(),
                                " per second, burst ",
                                ctx_->config().limits().peer_burst(), ")"));
      return w.Append(&e).status();
    });
  }
}

namespace {

// The receipt of `existing` if it holds the same bytes, else a refusal: an
// id is one request for ever.
absl::StatusOr<v1::SignedEnvelope> SameOrConflict(const v1::RequestRecord& existing,
                                                  const std::string& id,
                                                  const std::string& payload_hash) {
  if (Sha256(existing.request().payload()) == payload_hash) return existing.receipt();
  return absl::AlreadyExistsError(absl::StrCat(
      "request id ", id,
      " was already received with different content; a new request needs a new id"));
}

}  // namespace

absl::StatusOr<std::optional<RequestIntake::Checked>> RequestIntake::Check(
    const std::string& peer_party, const v1::SignedEnvelope& envelope, absl::Time now,
    absl::StatusOr<v1::SignedEnvelope>* decided) {
  const NodeSetup& setup = ctx_->setup();
  // Who signed must be who is connected; the signature is checked before
  // the payload is parsed.
  if (envelope.signer_party() != peer_party) {
    return absl::PermissionDeniedError(absl::StrCat(
        "envelope is signed as party '", envelope.signer_party().substr(0, 8),
        "' but the TLS peer is ", peer_party));
  }
  // A key revoked since: what it signs is accepted as it arrives only
  // within the grace after the revocation (docs/keys.md).
  COMITY_RETURN_IF_ERROR(VerifyEnvelope(envelope, kRequestPayloadType, setup.key_ring,
                                        ArrivingNow(now, setup.replay_window())));
  Checked c;
  c.envelope = &envelope;
  if (!c.body.ParseFromString(envelope.payload())) {
    return absl::InvalidArgumentError("request payload is not a comity.v1.RequestBody");
  }
  const v1::RequestBody& body = c.body;
  if (body.requesting_party() != peer_party) {
    return absl::InvalidArgumentError(
        absl::StrCat("requesting_party is '", body.requesting_party(),
                     "' but the request is signed by ", peer_party));
  }
  if (body.requested_party() != ctx_->party()) {
    return absl::InvalidArgumentError(absl::StrCat("request is addressed to '",
                                                   body.requested_party(),
                                                   "', this node is ", ctx_->party()));
  }
  c.payload_hash = Sha256(envelope.payload());
  if (!IsCanonicalUuid(body.id())) {
    return absl::InvalidArgumentError("request id is not a lower-case UUID");
  }
  // A request seen before: the same bytes get the same receipt, whenever
  // they come; other bytes under the same id are a replay or a forgery.
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> known,
                          ctx_->store().requests().Get(body.id()));
  for (const v1::RequestRecord& r : known) {
    if (r.direction() == v1::INCOMING) {
      *decided = SameOrConflict(r, body.id(), c.payload_hash);
      return std::nullopt;
    }
    // An id is one case on this node: a peer may not reuse the id of a
    // request this node sent (its steps would join that case).
    return absl::AlreadyExistsError(absl::StrCat(
        "request id ", body.id(), " is the id of a request ", ctx_->party(),
        " sent; a new request needs a new id"));
  }
  COMITY_RETURN_IF_ERROR(ValidateRequestBody(body));

  // Freshness is not identity: the id and the bytes above recognise a
  // replay for ever, so a request that waited in the sender's outbox for
  // days (a partner down over a weekend) is accepted, its age recorded. A
  // request dated ahead of this clock is refused for now: the sender
  // retries, and it is accepted once the clocks agree.
  c.created = FromProto(body.created_at());
  COMITY_RETURN_IF_ERROR(CheckSignedTime("created_at", c.created, now,
                                         setup.max_clock_skew(), absl::InfinitePast()));
  c.age = now - c.created;

  absl::StatusOr<v1::Assessment> assessment =
      Assess(*setup.treaties, QueryForRequest(body, AssessmentDay(body)));
  if (!assessment.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot assess the request: ", assessment.status().message()));
  }
  c.assessment = *std::move(assessment);
  c.disagree = body.has_requester_assessment() &&
               AssessmentsDiffer(body.requester_assessment(), c.assessment);
  return std::optional<Checked>(std::move(c));
}

absl::StatusOr<std::vector<v1::RequestRecord>> RequestIntake::BuildBatch(
    const std::string& peer_party, const std::vector<const Checked*>& batch, absl::Time now,
    absl::string_view note, AuditWriter& w) const {
  const NodeSetup& setup = ctx_->setup();
  // Each request's "received" event, holding the hash of its receipt's
  // statement, and this node's assessment; then one signed head that covers
  // them all: each receipt proves where its event sits in the log, and
  // nothing else is signed (receipt version 3, docs/envelope.md).
  std::vector<v1::AuditEntry> received(batch.size());
  std::vector<std::string> received_bytes(batch.size());
  std::vector<v1::Receipt> statements(batch.size());
  std::vector<std::string> statement_bytes(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const Checked& c = *batch[i];
    const v1::RequestBody& body = c.body;
    v1::Receipt& statement = statements[i];
    statement.set_request_id(body.id());
    statement.set_requesting_party(body.requesting_party());
    statement.set_receiving_party(ctx_->party());
    statement.set_request_payload_sha256(c.payload_hash);
    *statement.mutable_received_at() = ToProto(now);
    *statement.mutable_receiver_assessment() = c.assessment;
    statement_bytes[i] = ReceiptStatement(statement, static_cast<int>(batch.size()));
    received[i] =
        ctx_->Event(v1::REQUEST_RECEIVED, "peer:" + peer_party, body.id(), peer_party);
    received[i].add_hashes(c.payload_hash);
    received[i].add_hashes(Sha256(statement_bytes[i]));
    received[i].set_assistance_type(body.assistance_type());
    std::string detail;
    if (c.age > setup.max_clock_skew()) {
      detail = absl::StrCat("created ", absl::FormatTime(c.created), ", arrived ",
                            absl::FormatDuration(absl::Trunc(c.age, absl::Seconds(1))),
                            " later");
    }
    if (!note.empty()) detail = detail.empty() ? std::string(note) : absl::StrCat(detail, "; ", note);
    if (!detail.empty()) received[i].set_detail(detail);
    COMITY_ASSIGN_OR_RETURN(received_bytes[i], w.Append(&received[i]));
    v1::AuditEntry assessed = AssessmentEntry(*ctx_, body, c.assessment, peer_party);
    COMITY_RETURN_IF_ERROR(w.Append(&assessed).status());
    if (c.disagree) {
      v1::AuditEntry d =
          ctx_->Event(v1::ASSESSMENT_DISAGREEMENT, "node", body.id(), peer_party);
      d.set_detail(absl::StrCat(peer_party, ": ",
                                AssessmentSummary(body.requester_assessment()), "; ",
                                ctx_->party(), ": ", AssessmentSummary(c.assessment)));
      COMITY_RETURN_IF_ERROR(w.Append(&d).status());
    }
  }
  COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope head, ctx_->SignHead(w));

  std::vector<v1::RequestRecord> records;
  records.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    const Checked& c = *batch[i];
    const v1::RequestBody& body = c.body;
    COMITY_ASSIGN_OR_RETURN(std::vector<std::string> path,
                            w.InclusionProof(received[i].index(), w.size()));
    v1::InclusionProof proof;
    proof.set_leaf_index(received[i].index());
    proof.set_tree_size(w.size());
    for (auto& h : path) proof.add_hashes(std::move(h));
    v1::SignedEnvelope receipt =
        ProvenReceipt(statements[i], std::move(statement_bytes[i]), head,
                      std::move(received_bytes[i]), std::move(proof), ctx_->party());

    v1::RequestRecord& record = records.emplace_back();
    record.set_direction(v1::INCOMING);
    record.set_state(v1::RECEIVED);
    record.set_case_state(v1::CASE_DELIVERED);
    *record.mutable_request() = *c.envelope;
    *record.mutable_receipt() = std::move(receipt);
    *record.mutable_stored_at() = ToProto(now);
    *record.mutable_updated_at() = ToProto(now);
    if (absl::Time next =
            NextDeadline(record, body, statements[i], ctx_->config().service_levels());
        next != absl::InfiniteFuture()) {
      *record.mutable_next_deadline() = ToProto(next);
    }
  }
  return records;
}

absl::StatusOr<v1::SignedEnvelope> RequestIntake::ReceiveRequest(
    const std::string& peer_party, const v1::SignedEnvelope& envelope,
    absl::string_view note) {
  return std::move(ReceiveRequests(peer_party, {&envelope}, note)[0]);
}

std::vector<absl::StatusOr<v1::SignedEnvelope>> RequestIntake::ReceiveRequests(
    const std::string& peer_party, const std::vector<const v1::SignedEnvelope*>& envelopes,
    absl::string_view note) {
  const absl::Time now = ctx_->Now();
  std::vector<absl::StatusOr<v1::SignedEnvelope>> out(
      envelopes.size(), absl::UnknownError("not received"));
  std::vector<Checked> checked;
  std::vector<size_t> position;  // Of each checked request in `envelopes`.
  checked.reserve(envelopes.size());
  for (size_t i = 0; i < envelopes.size(); ++i) {
    absl::StatusOr<std::optional<Checked>> c = Check(peer_party, *envelopes[i], now, &out[i]);
    if (!c.ok()) {
      out[i] = c.status();
    } else if (c->has_value()) {
      checked.push_back(**std::move(c));
      position.push_back(i);
    }
  }
  if (checked.empty()) return out;

  std::vector<RecordKey> keys;
  keys.reserve(checked.size());
  for (const Checked& c : checked) keys.push_back(KeyOf(c.body));
  absl::StatusOr<std::vector<RequestStore::IncomingOutcome>> stored =
      ctx_->store().requests().InsertIncomingBatch(
          keys, [&](AuditWriter& w, const std::vector<size_t>& fresh) {
            std::vector<const Checked*> batch;
            batch.reserve(fresh.size());
            for (size_t f : fresh) batch.push_back(&checked[f]);
            return BuildBatch(peer_party, batch, now, note, w);
          });
  for (size_t j = 0; j < checked.size(); ++j) {
    const Checked& c = checked[j];
    absl::StatusOr<v1::SignedEnvelope>& result = out[position[j]];
    if (!stored.ok()) {
      result = stored.status();
      continue;
    }
    RequestStore::IncomingOutcome& o = (*stored)[j];
    if (!o.record.ok()) {
      result = o.record.status();
      continue;
    }
    if (!o.inserted) {
      result = SameOrConflict(*o.record, c.body.id(), c.payload_hash);
      continue;
    }
    result = o.record->receipt();
    ctx_->metrics().RequestAssessed("received", peer_party, c.assessment.obligation());
    LogEvent(LogLevel::kInfo, "request_received",
             {{"request_id", c.body.id()},
              {"from", peer_party},
              {"type", v1::AssistanceType_Name(c.body.assistance_type())},
              {"assessment", AssessmentSummary(c.assessment)}});
    if (c.body.has_requester_assessment()) {
      LogDisagreement(c.body.id(), c.body.requester_assessment(), c.assessment);
    }
  }
  return out;
}

}  // namespace comity
