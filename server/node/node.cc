#include "server/node/node.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"
#include "server/core/envelope.h"
#include "server/core/parties.h"
#include "server/core/receipt.h"
#include "server/core/request_validation.h"
#include "server/treaty/engine.h"
#include "server/crypto/ed25519.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

using google::protobuf::util::TimeUtil;

constexpr int kDefaultListLimit = 100;
constexpr int kMaxListLimit = 1000;
constexpr int kRetryBatch = 64;
// Room left in a message for the envelope around the signed payload.
constexpr size_t kEnvelopeOverhead = 512;

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

absl::Time FromProto(const google::protobuf::Timestamp& ts) {
  return absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
}

std::string Serialize(const google::protobuf::MessageLite& msg) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  msg.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// Statuses with which a peer refuses a request for good: retrying the same
// bytes cannot succeed.
bool IsPermanentRejection(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument ||
         code == absl::StatusCode::kAlreadyExists ||
         code == absl::StatusCode::kFailedPrecondition ||
         code == absl::StatusCode::kResourceExhausted;
}

// The date a request is assessed on: its created_at, in UTC, so that both
// sides assess the same day.
absl::CivilDay AssessmentDay(const v1::RequestBody& body) {
  return absl::ToCivilDay(FromProto(body.created_at()), absl::UTCTimeZone());
}

std::string Summary(const v1::Assessment& a) {
  return absl::StrCat(v1::Obligation_Name(a.obligation()),
                      a.instrument().empty() ? "" : " under " + a.instrument());
}

// Logs when two parties' assessments of one request differ.
void CompareAssessments(const std::string& request_id, const v1::Assessment& requester,
                        const v1::Assessment& receiver) {
  if (requester.obligation() == receiver.obligation() &&
      requester.instrument() == receiver.instrument()) {
    return;
  }
  LogEvent(LogLevel::kWarning, "assessment_disagreement",
           {{"request_id", request_id},
            {"requester", requester.requesting_party()},
            {"requester_assessment", Summary(requester)},
            {"requester_library", requester.library_version().substr(0, 12)},
            {"receiver", receiver.requested_party()},
            {"receiver_assessment", Summary(receiver)},
            {"receiver_library", receiver.library_version().substr(0, 12)}});
}

}  // namespace

absl::StatusOr<std::unique_ptr<Node>> Node::Create(const NodeSetup* setup,
                                                   std::unique_ptr<Store> store,
                                                   PeerTransport* transport,
                                                   const Clock* clock) {
  if (setup == nullptr || store == nullptr || transport == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("Node::Create: null dependency");
  }
  return std::unique_ptr<Node>(new Node(setup, std::move(store), transport, clock));
}

Node::~Node() { Stop(); }

void Node::Start() {
  absl::MutexLock lock(&mu_);
  if (worker_.joinable() || stopping_) return;
  worker_ = std::thread([this] { WorkerLoop(); });
}

void Node::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
  std::deque<Job> left;
  {
    absl::MutexLock lock(&mu_);
    left.swap(queue_);
  }
  for (Job& job : left) {
    if (job.done) {
      job.done(absl::UnavailableError(
          "node is shutting down; the request is stored and will be delivered after "
          "restart"));
    }
  }
}

absl::StatusOr<std::string> Node::AuthenticatePeer(const std::string& cert_pem,
                                                   const std::string& chain_pem) const {
  auto id = IdentityFromCertPem(cert_pem);
  if (!id.ok()) return absl::PermissionDeniedError(id.status().message());
  if (id->kind != CertIdentity::Kind::kParty) {
    return absl::PermissionDeniedError(
        "an operator certificate cannot be used on the peer listener");
  }
  auto it = setup_->peers.find(id->party);
  if (it == setup_->peers.end()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "party ", id->party, " is not a configured peer of ", party()));
  }
  absl::Status issued = it->second.ca->Verify(cert_pem, chain_pem);
  if (!issued.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("certificate claiming party ", id->party, ": ", issued.message()));
  }
  return id->party;
}

absl::StatusOr<std::string> Node::AuthenticateOperator(const std::string& cert_pem,
                                                       const std::string& chain_pem) const {
  auto id = IdentityFromCertPem(cert_pem);
  if (!id.ok()) return absl::PermissionDeniedError(id.status().message());
  if (id->kind != CertIdentity::Kind::kOperator || id->party != party()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "not an operator certificate of party ", party(),
        " (expected URI SAN urn:comity:operator:", party(), ":NAME)"));
  }
  absl::Status issued = setup_->operator_ca->Verify(cert_pem, chain_pem);
  if (!issued.ok()) return issued;
  return id->operator_name;
}

absl::StatusOr<v1::SignedEnvelope> Node::ReceiveRequest(const std::string& peer_party,
                                                        const v1::SignedEnvelope& envelope) {
  // Who signed must be who is connected; the signature is checked before
  // the payload is parsed.
  if (envelope.signer_party() != peer_party) {
    return absl::PermissionDeniedError(
        absl::StrCat("envelope is signed as party '", envelope.signer_party().substr(0, 8),
                     "' but the TLS peer is ", peer_party));
  }
  COMITY_RETURN_IF_ERROR(VerifyEnvelope(envelope, kRequestPayloadType, setup_->key_ring));
  v1::RequestBody body;
  if (!body.ParseFromString(envelope.payload())) {
    return absl::InvalidArgumentError("request payload is not a comity.v1.RequestBody");
  }
  if (body.requesting_party() != peer_party) {
    return absl::InvalidArgumentError(
        absl::StrCat("requesting_party is '", body.requesting_party(),
                     "' but the request is signed by ", peer_party));
  }
  if (body.requested_party() != party()) {
    return absl::InvalidArgumentError(
        absl::StrCat("request is addressed to '", body.requested_party(),
                     "', this node is ", party()));
  }
  const std::string payload_hash = Sha256(envelope.payload());

  auto same_or_conflict = [&](const v1::RequestRecord& existing)
      -> absl::StatusOr<v1::SignedEnvelope> {
    if (Sha256(existing.request().payload()) == payload_hash) return existing.receipt();
    return absl::AlreadyExistsError(absl::StrCat(
        "request id ", body.id(),
        " was already received with different content; a new request needs a new id"));
  };

  // A request seen before: the same bytes get the same receipt, whenever
  // they come; other bytes under the same id are a replay or a forgery.
  if (!IsCanonicalUuid(body.id())) {
    return absl::InvalidArgumentError("request id is not a lower-case UUID");
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> known, store_->Get(body.id()));
  for (const v1::RequestRecord& r : known) {
    if (r.direction() == v1::INCOMING) return same_or_conflict(r);
  }
  COMITY_RETURN_IF_ERROR(ValidateRequestBody(body));

  const absl::Time now = clock_->Now();
  const absl::Time created = FromProto(body.created_at());
  if (created < now - setup_->replay_window() || created > now + setup_->max_clock_skew()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "created_at ", absl::FormatTime(created), " is outside the acceptance window (",
        absl::FormatDuration(setup_->replay_window()), " back, ",
        absl::FormatDuration(setup_->max_clock_skew()),
        " ahead of this node's clock); check the sender's clock or submit a new request"));
  }

  absl::StatusOr<v1::Assessment> assessment =
      Assess(*setup_->treaties, QueryForRequest(body, AssessmentDay(body)));
  if (!assessment.ok()) {
    return absl::InternalError(
        absl::StrCat("cannot assess the request: ", assessment.status().message()));
  }

  v1::Receipt receipt;
  *receipt.mutable_receiver_assessment() = *assessment;
  receipt.set_request_id(body.id());
  receipt.set_requesting_party(body.requesting_party());
  receipt.set_receiving_party(party());
  receipt.set_request_payload_sha256(payload_hash);
  *receipt.mutable_received_at() = ToProto(now);
  COMITY_ASSIGN_OR_RETURN(
      v1::SignedEnvelope signed_receipt,
      SignEnvelope(kReceiptPayloadType, Serialize(receipt), party(),
                   setup_->config.signing_key().key_id(), *setup_->signing_key));

  v1::RequestRecord record;
  record.set_direction(v1::INCOMING);
  record.set_state(v1::RECEIVED);
  *record.mutable_request() = envelope;
  *record.mutable_receipt() = signed_receipt;
  *record.mutable_stored_at() = ToProto(now);
  *record.mutable_updated_at() = ToProto(now);
  bool inserted = false;
  COMITY_ASSIGN_OR_RETURN(
      v1::RequestRecord stored,
      store_->InsertIncomingIfAbsent(
          RecordKey{body.id(), body.requesting_party(), body.requested_party()}, record,
          &inserted));
  if (!inserted) return same_or_conflict(stored);
  LogEvent(LogLevel::kInfo, "request_received",
           {{"request_id", body.id()},
            {"from", peer_party},
            {"type", v1::AssistanceType_Name(body.assistance_type())},
            {"assessment", Summary(*assessment)}});
  if (body.has_requester_assessment()) {
    CompareAssessments(body.id(), body.requester_assessment(), *assessment);
  }
  return signed_receipt;
}

void Node::Submit(const std::string& operator_name, v1::RequestBody draft,
                  SubmitDone done) {
  auto prepared = [&]() -> absl::StatusOr<v1::RequestRecord> {
    COMITY_RETURN_IF_ERROR(ValidateDraft(draft));
    if (draft.requested_party() == party()) {
      return absl::InvalidArgumentError(
          absl::StrCat("requested_party is this node's own party ", party()));
    }
    if (setup_->peers.count(draft.requested_party()) == 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "party ", draft.requested_party(), " is not a configured peer of this node; ",
          "add it to the node's configuration (peers { party: \"",
          draft.requested_party(), "\" ... })"));
    }
    const absl::Time now = clock_->Now();
    draft.set_id(RandomUuid());
    draft.set_requesting_party(party());
    *draft.mutable_created_at() = ToProto(now);
    if (draft.urgency() == v1::URGENCY_UNSPECIFIED) draft.set_urgency(v1::ROUTINE);
    COMITY_RETURN_IF_ERROR(ValidateRequestBody(draft));
    COMITY_ASSIGN_OR_RETURN(
        v1::Assessment assessment,
        Assess(*setup_->treaties, QueryForRequest(draft, AssessmentDay(draft))));
    if (assessment.obligation() == v1::INVALID) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the request is INVALID under ", assessment.instrument(), " (",
          absl::StrJoin(assessment.basis(), ", "), "): ",
          absl::StrJoin(assessment.notes().begin() + std::max(0, assessment.notes_size() - 3),
                        assessment.notes().end(), " "),
          " Complete it and submit again; nothing was sent."));
    }
    *draft.mutable_requester_assessment() = std::move(assessment);
    std::string payload = Serialize(draft);
    if (payload.size() + kEnvelopeOverhead > setup_->config.limits().max_message_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the request is ", payload.size(), " bytes, over the ",
          setup_->config.limits().max_message_bytes(),
          "-byte message limit; shorten its texts"));
    }
    COMITY_ASSIGN_OR_RETURN(
        v1::SignedEnvelope env,
        SignEnvelope(kRequestPayloadType, std::move(payload), party(),
                     setup_->config.signing_key().key_id(), *setup_->signing_key));
    v1::RequestRecord record;
    record.set_direction(v1::OUTGOING);
    record.set_state(v1::PENDING_DELIVERY);
    *record.mutable_request() = std::move(env);
    record.set_submitted_by(operator_name);
    *record.mutable_stored_at() = ToProto(now);
    *record.mutable_updated_at() = ToProto(now);
    *record.mutable_next_attempt_at() = ToProto(now);
    COMITY_RETURN_IF_ERROR(store_->InsertOutgoing(
        RecordKey{draft.id(), draft.requesting_party(), draft.requested_party()}, record));
    LogEvent(LogLevel::kInfo, "request_submitted",
             {{"request_id", draft.id()},
              {"to", draft.requested_party()},
              {"operator", operator_name},
              {"type", v1::AssistanceType_Name(draft.assistance_type())}});
    return record;
  }();
  if (!prepared.ok()) {
    done(prepared.status());
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(Job{draft.id(), std::move(done)});
      return;
    }
  }
  done(*std::move(prepared));  // Stored; delivered after the next start.
}

absl::StatusOr<std::vector<v1::RequestRecord>> Node::List(v1::Direction direction,
                                                          int limit) const {
  if (limit <= 0) limit = kDefaultListLimit;
  return store_->List(direction, std::min(limit, kMaxListLimit));
}

absl::StatusOr<std::vector<v1::RequestRecord>> Node::Get(
    const std::string& request_id) const {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, store_->Get(request_id));
  if (records.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no request ", request_id.substr(0, 64), " on this node"));
  }
  return records;
}

std::vector<v1::PublicKey> Node::SignerKeys(
    const std::vector<v1::RequestRecord>& records) const {
  std::vector<v1::PublicKey> keys;
  std::set<std::pair<std::string, std::string>> seen;
  auto add = [&](const v1::SignedEnvelope& env) {
    if (env.signer_party().empty()) return;
    if (!seen.insert({env.signer_party(), env.key_id()}).second) return;
    const VerifyingKey* key = setup_->key_ring.Find(env.signer_party(), env.key_id());
    if (key == nullptr) return;
    v1::PublicKey pk;
    pk.set_party(env.signer_party());
    pk.set_key_id(env.key_id());
    pk.set_ed25519_public_key(key->raw());
    keys.push_back(std::move(pk));
  };
  for (const v1::RequestRecord& r : records) {
    add(r.request());
    if (r.has_receipt()) add(r.receipt());
  }
  return keys;
}

absl::Duration Node::Backoff(uint32_t attempts) const {
  const v1::DeliveryConfig& d = setup_->config.delivery();
  double ms = d.retry_initial_ms();
  for (uint32_t i = 1; i < attempts && ms < d.retry_max_ms(); ++i) ms *= 2;
  ms = std::min<double>(ms, d.retry_max_ms());
  thread_local std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return absl::Milliseconds(ms * jitter(rng));
}

absl::StatusOr<v1::RequestRecord> Node::Deliver(const v1::RequestRecord& record) {
  v1::RequestBody body;
  if (!body.ParseFromString(record.request().payload())) {
    return absl::DataLossError("stored request payload does not parse");
  }
  const std::string& peer = body.requested_party();
  absl::StatusOr<v1::SignedEnvelope> receipt = transport_->DeliverRequest(
      peer, record.request(),
      absl::Milliseconds(setup_->config.delivery().attempt_timeout_ms()));
  absl::Status status = receipt.status();
  if (status.ok()) {
    absl::StatusOr<v1::Receipt> verified =
        VerifyReceipt(record.request(), *receipt, peer, setup_->key_ring);
    status = verified.status();
    if (verified.ok() && verified->has_receiver_assessment()) {
      CompareAssessments(body.id(), body.requester_assessment(),
                         verified->receiver_assessment());
    }
  }
  const absl::Time now = clock_->Now();
  if (status.ok()) {
    COMITY_RETURN_IF_ERROR(store_->MarkDelivered(body.id(), *receipt, now));
    LogEvent(LogLevel::kInfo, "request_delivered",
             {{"request_id", body.id()}, {"to", peer}});
  } else {
    std::string error = absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                                     status.message());
    if (!receipt.ok() && IsPermanentRejection(status.code())) {
      // The peer refused these bytes for good: retrying cannot help.
      COMITY_RETURN_IF_ERROR(store_->MarkRejected(body.id(), error, now));
      LogEvent(LogLevel::kWarning, "delivery_rejected",
               {{"request_id", body.id()}, {"to", peer}, {"error", error}});
    } else {
      // Unreachable, or an answer that did not verify: try again later.
      absl::Time next = now + Backoff(record.delivery_attempts() + 1);
      COMITY_RETURN_IF_ERROR(store_->MarkDeliveryFailed(body.id(), error, now, next));
    }
    LogEvent(LogLevel::kWarning, "delivery_failed",
             {{"request_id", body.id()},
              {"to", peer},
              {"attempt", absl::StrCat(record.delivery_attempts() + 1)},
              {"error", error}});
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> now_stored,
                          store_->Get(body.id()));
  for (v1::RequestRecord& r : now_stored) {
    if (r.direction() == v1::OUTGOING) return std::move(r);
  }
  return absl::InternalError("outgoing record vanished after delivery");
}

void Node::WorkerLoop() {
  const absl::Duration poll = absl::Milliseconds(
      std::min<uint32_t>(1000, setup_->config.delivery().retry_initial_ms()));
  while (true) {
    std::deque<Job> jobs;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), poll);
      if (stopping_) return;
      jobs.swap(queue_);
    }
    for (Job& job : jobs) {
      absl::StatusOr<v1::RequestRecord> result = [&]() -> absl::StatusOr<v1::RequestRecord> {
        COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records,
                                store_->Get(job.request_id));
        for (const v1::RequestRecord& r : records) {
          if (r.direction() != v1::OUTGOING) continue;
          if (r.state() != v1::PENDING_DELIVERY) return r;
          return Deliver(r);
        }
        return absl::NotFoundError(absl::StrCat("no outgoing request ", job.request_id));
      }();
      if (!result.ok()) {
        LogEvent(LogLevel::kError, "delivery_error",
                 {{"request_id", job.request_id}, {"error", result.status().ToString()}});
      }
      if (job.done) job.done(std::move(result));
    }
    auto due = store_->DueForDelivery(clock_->Now(), kRetryBatch);
    if (!due.ok()) {
      LogEvent(LogLevel::kError, "store_error", {{"error", due.status().ToString()}});
      continue;
    }
    for (const v1::RequestRecord& r : *due) {
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      auto delivered = Deliver(r);
      if (!delivered.ok()) {
        LogEvent(LogLevel::kError, "delivery_error",
                 {{"error", delivered.status().ToString()}});
      }
    }
  }
}

}  // namespace comity
