#include "server/node/node.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"
#include "server/core/case_rules.h"
#include "server/core/deadlines.h"
#include "server/core/envelope.h"
#include "server/core/parties.h"
#include "server/audit/merkle.h"
#include "server/audit/receipt.h"
#include "server/core/request_validation.h"
#include "server/crypto/random.h"
#include "server/crypto/sha256.h"
#include "server/treaty/engine.h"
#include "server/crypto/ed25519.h"
#include "server/util/hex.h"
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

// The fields of a request the store indexes.
RecordKey KeyOf(const v1::RequestBody& body) {
  return RecordKey{body.id(), body.requesting_party(), body.requested_party(),
                   {body.related_request_ids().begin(), body.related_request_ids().end()}};
}

// The next deadline of `row`'s case once `env` (transition `t`) is appended.
absl::Time NextDeadlineAfter(const v1::RequestRecord& row, const v1::Transition& t,
                             const v1::SignedEnvelope& env, const v1::ServiceLevels& levels) {
  v1::RequestRecord after = row;
  after.set_case_state(t.to_state());
  *after.add_transitions() = env;
  return NextDeadline(after, levels);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Node>> Node::Create(const NodeSetup* setup,
                                                   std::unique_ptr<Store> store,
                                                   PeerTransport* transport,
                                                   const Clock* clock) {
  if (setup == nullptr || store == nullptr || transport == nullptr || clock == nullptr) {
    return absl::InvalidArgumentError("Node::Create: null dependency");
  }
  COMITY_ASSIGN_OR_RETURN(
      std::unique_ptr<EvidenceStore> evidence,
      EvidenceStore::Open(setup->config.data_dir() + "/evidence",
                          setup->config.evidence().max_file_bytes()));
  std::unique_ptr<Node> node(
      new Node(setup, std::move(store), std::move(evidence), transport, clock));
  for (const auto& [peer, unused] : setup->peers) {
    node->lanes_.emplace(peer, std::make_unique<Lane>(peer));
  }
  COMITY_RETURN_IF_ERROR(node->LoadAcceptedKeys());         // node_keys.cc
  Store* store_for_scrape = node->store_.get();
  node->metrics_.SetScrapeSource([store_for_scrape]() -> absl::StatusOr<MetricsSnapshot> {
    MetricsSnapshot snap;  // Aggregate queries only: a scrape stays cheap.
    COMITY_ASSIGN_OR_RETURN(snap.requests, store_for_scrape->requests().Count());
    COMITY_ASSIGN_OR_RETURN(snap.queue_depths, store_for_scrape->outbox().Depths());
    COMITY_ASSIGN_OR_RETURN(snap.audit_entries, store_for_scrape->audit().Size());
    return snap;
  });
  COMITY_RETURN_IF_ERROR(node->PrepareKeyAnnouncements());
  return node;
}

Node::~Node() { Stop(); }

void Node::Start() {
  absl::Status logged = LogStart();
  if (!logged.ok()) {
    LogEvent(LogLevel::kError, "audit_error", {{"error", logged.ToString()}});
  }
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  worker_ = std::thread([this] { WorkerLoop(); });
  for (auto& [peer, lane] : lanes_) {
    Lane* l = lane.get();
    l->thread = std::thread([this, l] { LaneLoop(l); });
  }
}

void Node::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (worker_.joinable()) worker_.join();
  for (auto& [peer, lane] : lanes_) {
    if (lane->thread.joinable()) lane->thread.join();
  }
  for (auto& [peer, lane] : lanes_) ResolveStale(lane.get(), /*all=*/true);
}

std::optional<CertIdentity> Node::CachedIdentity(const std::string& key) const {
  absl::MutexLock lock(&auth_mu_);
  auto it = auth_cache_.find(key);
  if (it == auth_cache_.end() || it->second.expires <= absl::Now()) return std::nullopt;
  return it->second.identity;
}

void Node::CacheIdentity(const std::string& key, const CertIdentity& id) const {
  absl::MutexLock lock(&auth_mu_);
  if (auth_cache_.size() >= kAuthCacheSize) auth_cache_.clear();
  auth_cache_[key] = AuthCacheEntry{id, absl::Now() + kAuthCacheTtl};
}

absl::StatusOr<std::string> Node::AuthenticatePeer(const std::string& cert_pem,
                                                   const std::string& chain_pem) const {
  // Parsing and chain-verifying a certificate costs more than the rest of a
  // request; a certificate that verified is remembered for a short while
  // (by the hash of its bytes and chain, so any other certificate misses).
  const std::string cache_key = Sha256(absl::StrCat(cert_pem, "\n", chain_pem));
  if (auto cached = CachedIdentity(cache_key);
      cached.has_value() && cached->kind == CertIdentity::Kind::kParty) {
    return cached->party;
  }
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
  CacheIdentity(cache_key, *id);
  return id->party;
}

absl::StatusOr<CertIdentity> Node::AuthenticateOperator(const std::string& cert_pem,
                                                        const std::string& chain_pem) const {
  const std::string cache_key = Sha256(absl::StrCat(cert_pem, "\n", chain_pem));
  if (auto cached = CachedIdentity(cache_key);
      cached.has_value() && cached->kind == CertIdentity::Kind::kOperator) {
    return *std::move(cached);
  }
  auto id = IdentityFromCertPem(cert_pem);
  if (!id.ok()) return absl::PermissionDeniedError(id.status().message());
  if (id->kind != CertIdentity::Kind::kOperator || id->party != party()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "not an operator certificate of party ", party(),
        " (expected URI SAN urn:comity:operator:", party(), ":NAME)"));
  }
  absl::Status issued = setup_->operator_ca->Verify(cert_pem, chain_pem);
  if (!issued.ok()) return issued;
  CacheIdentity(cache_key, *id);
  return *std::move(id);
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
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> known, store_->requests().Get(body.id()));
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

  const bool disagree =
      body.has_requester_assessment() &&
      (body.requester_assessment().obligation() != assessment->obligation() ||
       body.requester_assessment().instrument() != assessment->instrument());
  auto build = [&](AuditWriter& w) -> absl::StatusOr<v1::RequestRecord> {
    // The "received" event, this node's assessment, then a signed head
    // that covers both: the receipt proves where the event sits in the log.
    v1::AuditEntry received = Event(v1::REQUEST_RECEIVED, "peer:" + peer_party, body.id(),
                                    peer_party);
    received.add_hashes(payload_hash);
    received.set_assistance_type(body.assistance_type());
    COMITY_ASSIGN_OR_RETURN(std::string received_bytes, w.Append(&received));
    v1::AuditEntry assessed = Event(v1::ASSESSMENT_MADE, "node", body.id(), peer_party);
    assessed.set_assistance_type(body.assistance_type());
    assessed.set_instrument(assessment->instrument());
    assessed.set_obligation(assessment->obligation());
    for (int g : assessment->refusal_grounds()) {
      assessed.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
    }
    assessed.set_detail(absl::StrCat("library ", assessment->library_version()));
    COMITY_RETURN_IF_ERROR(w.Append(&assessed).status());
    if (disagree) {
      v1::AuditEntry d = Event(v1::ASSESSMENT_DISAGREEMENT, "node", body.id(), peer_party);
      d.set_detail(absl::StrCat(peer_party, ": ", Summary(body.requester_assessment()), "; ",
                                party(), ": ", Summary(*assessment)));
      COMITY_RETURN_IF_ERROR(w.Append(&d).status());
    }
    COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope head, SignHead(w));
    COMITY_ASSIGN_OR_RETURN(std::vector<std::string> proof,
                            w.InclusionProof(received.index(), w.size()));

    v1::Receipt receipt;
    *receipt.mutable_receiver_assessment() = *assessment;
    receipt.set_request_id(body.id());
    receipt.set_requesting_party(body.requesting_party());
    receipt.set_receiving_party(party());
    receipt.set_request_payload_sha256(payload_hash);
    *receipt.mutable_received_at() = ToProto(now);
    *receipt.mutable_tree_head() = std::move(head);
    receipt.set_received_entry(received_bytes);
    receipt.mutable_received_entry_proof()->set_leaf_index(received.index());
    receipt.mutable_received_entry_proof()->set_tree_size(w.size());
    for (auto& h : proof) receipt.mutable_received_entry_proof()->add_hashes(std::move(h));
    COMITY_ASSIGN_OR_RETURN(
        v1::SignedEnvelope signed_receipt,
        SignEnvelope(kReceiptPayloadType, SerializeDeterministic(receipt), party(),
                     setup_->config.signing_key().key_id(), *setup_->signing_key));

    v1::RequestRecord record;
    record.set_direction(v1::INCOMING);
    record.set_state(v1::RECEIVED);
    record.set_case_state(v1::CASE_DELIVERED);
    *record.mutable_request() = envelope;
    *record.mutable_receipt() = std::move(signed_receipt);
    *record.mutable_stored_at() = ToProto(now);
    *record.mutable_updated_at() = ToProto(now);
    if (absl::Time next = NextDeadline(record, setup_->config.service_levels());
        next != absl::InfiniteFuture()) {
      *record.mutable_next_deadline() = ToProto(next);
    }
    return record;
  };
  bool inserted = false;
  COMITY_ASSIGN_OR_RETURN(
      v1::RequestRecord stored,
      store_->requests().InsertIncomingIfAbsent(
          KeyOf(body), build, &inserted));
  if (!inserted) return same_or_conflict(stored);
  metrics_.RequestAssessed("received", peer_party, assessment->obligation());
  LogEvent(LogLevel::kInfo, "request_received",
           {{"request_id", body.id()},
            {"from", peer_party},
            {"type", v1::AssistanceType_Name(body.assistance_type())},
            {"assessment", Summary(*assessment)}});
  if (body.has_requester_assessment()) {
    CompareAssessments(body.id(), body.requester_assessment(), *assessment);
  }
  return stored.receipt();
}

absl::StatusOr<v1::SignedEnvelope> Node::DateAssessAndSign(v1::RequestBody* body) const {
  *body->mutable_created_at() = ToProto(clock_->Now());
  body->clear_requester_assessment();
  COMITY_RETURN_IF_ERROR(ValidateRequestBody(*body));
  COMITY_ASSIGN_OR_RETURN(
      v1::Assessment assessment,
      Assess(*setup_->treaties, QueryForRequest(*body, AssessmentDay(*body))));
  if (assessment.obligation() == v1::INVALID) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the request is INVALID under ", assessment.instrument(), " (",
        absl::StrJoin(assessment.basis(), ", "), "): ",
        absl::StrJoin(assessment.notes().begin() + std::max(0, assessment.notes_size() - 3),
                      assessment.notes().end(), " "),
        " Complete it and submit again; nothing was sent."));
  }
  *body->mutable_requester_assessment() = std::move(assessment);
  std::string payload = SerializeDeterministic(*body);
  if (payload.size() + kEnvelopeOverhead > setup_->config.limits().max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the request is ", payload.size(), " bytes, over the ",
        setup_->config.limits().max_message_bytes(), "-byte message limit; shorten its texts"));
  }
  return SignEnvelope(kRequestPayloadType, std::move(payload), party(),
                      setup_->config.signing_key().key_id(), *setup_->signing_key);
}

bool Node::NeedsApproval(v1::AssistanceType type) const {
  const auto& types = setup_->config.approval().assistance_types();
  return std::find(types.begin(), types.end(), type) != types.end();
}

void Node::Submit(const std::string& operator_name, v1::RequestBody draft,
                  SubmitDone done) {
  const bool needs_approval = NeedsApproval(draft.assistance_type());
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
    for (const std::string& related : draft.related_request_ids()) {
      auto known = store_->requests().Get(related);
      if (!known.ok()) return known.status();
      if (known->empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "related request ", related.substr(0, 64), " is unknown to this node; a follow-up "
            "links to a request this node sent or received"));
      }
    }
    const absl::Time now = clock_->Now();
    draft.set_id(RandomUuid());
    draft.set_requesting_party(party());
    if (draft.urgency() == v1::URGENCY_UNSPECIFIED) draft.set_urgency(v1::ROUTINE);
    // Assessed (and refused if INVALID) now; a draft awaiting approval is
    // dated, assessed again and signed when it is approved.
    COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope env, DateAssessAndSign(&draft));
    v1::RequestRecord record;
    record.set_direction(v1::OUTGOING);
    record.set_submitted_by(operator_name);
    *record.mutable_stored_at() = ToProto(now);
    *record.mutable_updated_at() = ToProto(now);
    if (needs_approval) {
      record.set_state(v1::AWAITING_APPROVAL);
      env.clear_signature();  // Not signed until approved.
    } else {
      record.set_state(v1::PENDING_DELIVERY);
      *record.mutable_next_attempt_at() = ToProto(now);
    }
    *record.mutable_request() = std::move(env);
    const v1::Assessment& assessed = draft.requester_assessment();
    COMITY_RETURN_IF_ERROR(store_->requests().InsertOutgoing(
        KeyOf(draft), record,
        [&](AuditWriter& w) -> absl::Status {
          v1::AuditEntry submitted = Event(v1::REQUEST_SUBMITTED, "operator:" + operator_name,
                                           draft.id(), draft.requested_party());
          submitted.add_hashes(Sha256(record.request().payload()));
          submitted.set_assistance_type(draft.assistance_type());
          if (needs_approval) submitted.set_detail("awaiting two-person approval");
          COMITY_RETURN_IF_ERROR(w.Append(&submitted).status());
          v1::AuditEntry a = Event(v1::ASSESSMENT_MADE, "node", draft.id(),
                                   draft.requested_party());
          a.set_assistance_type(draft.assistance_type());
          a.set_instrument(assessed.instrument());
          a.set_obligation(assessed.obligation());
          for (int g : assessed.refusal_grounds()) {
            a.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
          }
          a.set_detail(absl::StrCat("library ", assessed.library_version()));
          return w.Append(&a).status();
        }));
    LogEvent(LogLevel::kInfo, "request_submitted",
             {{"request_id", draft.id()},
              {"to", draft.requested_party()},
              {"operator", operator_name},
              {"type", v1::AssistanceType_Name(draft.assistance_type())},
              {"awaiting_approval", needs_approval ? "true" : "false"}});
    metrics_.RequestAssessed("sent", draft.requested_party(), assessed.obligation());
    return record;
  }();
  if (!prepared.ok() || needs_approval) {
    done(std::move(prepared));
    return;
  }
  AwaitAttempt(draft.requested_party(), "r:" + draft.id(), std::move(done));
}

void Node::Approve(const std::string& approver, const std::string& request_id,
                   SubmitDone done) {
  auto approved = [&]() -> absl::StatusOr<v1::RequestRecord> {
    COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, Get(request_id));
    const v1::RequestRecord* draft_record = nullptr;
    for (const auto& r : records) {
      if (r.direction() == v1::OUTGOING) draft_record = &r;
    }
    if (draft_record == nullptr || draft_record->state() != v1::AWAITING_APPROVAL) {
      return absl::FailedPreconditionError(absl::StrCat(
          "request ", request_id, " is not a draft awaiting approval",
          draft_record ? absl::StrCat(" (it is ", v1::RequestState_Name(draft_record->state()),
                                      ")")
                       : ""));
    }
    if (draft_record->submitted_by() == approver) {
      return absl::PermissionDeniedError(absl::StrCat(
          "operator ", approver, " submitted this draft and cannot also approve it: a second "
          "operator with the approver role must"));
    }
    v1::RequestBody body;
    if (!body.ParseFromString(draft_record->request().payload())) {
      return absl::DataLossError("the stored draft does not parse");
    }
    COMITY_ASSIGN_OR_RETURN(v1::SignedEnvelope env, DateAssessAndSign(&body));
    const std::string submitter = draft_record->submitted_by();
    COMITY_RETURN_IF_ERROR(store_->requests().MarkApproved(
        request_id, env, approver, clock_->Now(), [&](AuditWriter& w) -> absl::Status {
          v1::AuditEntry e = Event(v1::REQUEST_APPROVED, "operator:" + approver, request_id,
                                   body.requested_party());
          e.add_hashes(Sha256(env.payload()));
          e.set_assistance_type(body.assistance_type());
          e.set_detail(absl::StrCat("submitted by ", submitter, ", approved by ", approver));
          return w.Append(&e).status();
        }));
    LogEvent(LogLevel::kInfo, "request_approved",
             {{"request_id", request_id}, {"submitter", submitter}, {"approver", approver}});
    COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> now_stored, store_->requests().Get(request_id));
    for (auto& r : now_stored) {
      if (r.direction() == v1::OUTGOING) return std::move(r);
    }
    return absl::InternalError("approved request vanished");
  }();
  if (!approved.ok()) {
    done(approved.status());
    return;
  }
  v1::RequestBody approved_body;
  approved_body.ParseFromString(approved->request().payload());
  AwaitAttempt(approved_body.requested_party(), "r:" + request_id, std::move(done));
}

absl::StatusOr<std::vector<v1::RequestRecord>> Node::List(v1::Direction direction,
                                                          int limit) const {
  ListQuery q;
  q.direction = direction;
  q.limit = limit <= 0 ? kDefaultListLimit : std::min(limit, kMaxListLimit);
  COMITY_ASSIGN_OR_RETURN(RecordPage page, store_->requests().List(q));
  return std::move(page.records);
}

absl::StatusOr<std::vector<v1::RequestRecord>> Node::Get(
    const std::string& request_id) const {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, store_->requests().Get(request_id));
  if (records.empty()) {
    return absl::NotFoundError(
        absl::StrCat("no request ", request_id.substr(0, 64), " on this node"));
  }
  for (v1::RequestRecord& r : records) {
    if (r.direction() != v1::OUTGOING) continue;
    COMITY_ASSIGN_OR_RETURN(std::vector<PendingProposal> queued,
                            store_->outbox().QueuedProposals(request_id));
    for (PendingProposal& q : queued) *r.add_queued_proposals() = std::move(q.envelope);
  }
  return records;
}

absl::StatusOr<std::vector<v1::RequestRecord>> Node::Chain(
    const std::string& request_id) const {
  COMITY_RETURN_IF_ERROR(Get(request_id).status());
  // Links both ways, from the store's index, a bounded number of hops.
  std::set<std::string> seen = {request_id};
  std::vector<std::string> todo = {request_id};
  while (!todo.empty() && seen.size() < static_cast<size_t>(kMaxListLimit)) {
    std::string id = todo.back();
    todo.pop_back();
    COMITY_ASSIGN_OR_RETURN(std::vector<std::string> linked, store_->requests().Linked(id));
    for (const std::string& next : linked) {
      if (seen.insert(next).second) todo.push_back(next);
    }
  }
  std::vector<v1::RequestRecord> out;
  for (const std::string& id : seen) {
    auto records = store_->requests().Get(id);
    if (!records.ok()) return records.status();
    for (auto& r : *records) out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const v1::RequestRecord& a, const v1::RequestRecord& b) {
    v1::RequestBody x, y;
    x.ParseFromString(a.request().payload());
    y.ParseFromString(b.request().payload());
    return std::make_pair(x.created_at().seconds(), x.created_at().nanos()) <
           std::make_pair(y.created_at().seconds(), y.created_at().nanos());
  });
  return out;
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
    for (const v1::SignedEnvelope& t : r.transitions()) add(t);
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
  NoteContact(peer, receipt.status());
  absl::Status status = receipt.status();
  absl::StatusOr<v1::Receipt> verified = absl::UnknownError("no receipt");
  if (status.ok()) {
    verified = VerifyReceipt(record.request(), *receipt, peer, setup_->key_ring);
    status = verified.status();
    if (verified.ok() && verified->has_receiver_assessment()) {
      CompareAssessments(body.id(), body.requester_assessment(),
                         verified->receiver_assessment());
    }
  }
  const absl::Time now = clock_->Now();
  const uint32_t attempt = record.delivery_attempts() + 1;
  // Every outcome is logged with the attempt, in the same transaction.
  auto audit = [&](v1::AuditEventType outcome, std::string detail) {
    return [this, &body, &peer, attempt, outcome, detail = std::move(detail),
            &receipt](AuditWriter& w) -> absl::Status {
      v1::AuditEntry tried = Event(v1::DELIVERY_ATTEMPTED, "node", body.id(), peer);
      tried.set_detail(absl::StrCat("attempt ", attempt));
      COMITY_RETURN_IF_ERROR(w.Append(&tried).status());
      v1::AuditEntry result = Event(outcome, "node", body.id(), peer);
      result.set_detail(detail);
      if (outcome == v1::DELIVERY_ACKNOWLEDGED) {
        result.add_hashes(Sha256(receipt->payload()));
      }
      return w.Append(&result).status();
    };
  };
  if (status.ok()) {
    v1::TreeHead their_head;
    their_head.ParseFromString(verified->tree_head().payload());
    const bool disagree =
        verified->has_receiver_assessment() &&
        (body.requester_assessment().obligation() !=
             verified->receiver_assessment().obligation() ||
         body.requester_assessment().instrument() !=
             verified->receiver_assessment().instrument());
    v1::RequestRecord delivered = record;
    delivered.set_state(v1::DELIVERED);
    delivered.set_case_state(v1::CASE_DELIVERED);
    *delivered.mutable_receipt() = *receipt;
    COMITY_RETURN_IF_ERROR(store_->outbox().MarkDelivered(
        body.id(), *receipt, now, NextDeadline(delivered, setup_->config.service_levels()),
        [&](AuditWriter& w) -> absl::Status {
          COMITY_RETURN_IF_ERROR(audit(v1::DELIVERY_ACKNOWLEDGED,
                                       absl::StrCat(peer, " log entry ",
                                                    verified->received_entry_proof().leaf_index(),
                                                    " of ", their_head.tree_size()))(w));
          if (!disagree) return absl::OkStatus();
          v1::AuditEntry d = Event(v1::ASSESSMENT_DISAGREEMENT, "node", body.id(), peer);
          d.set_detail(absl::StrCat(party(), ": ", Summary(body.requester_assessment()), "; ",
                                    peer, ": ", Summary(verified->receiver_assessment())));
          return w.Append(&d).status();
        }));
    // The head in a receipt is checked against the last one seen (a
    // consistency proof: another call and a commit) at most once a second
    // per peer; gossip checks the rest.
    bool check_head = false;
    {
      absl::MutexLock lock(&contacts_mu_);
      Contact& c = contacts_[peer];
      if (absl::Now() - c.last_head_check >= absl::Seconds(1)) {
        c.last_head_check = absl::Now();
        check_head = true;
      }
    }
    if (check_head) CheckPeerHead(peer, verified->tree_head()).IgnoreError();  // Logged inside.
    metrics_.RequestDelivered(peer, now - FromProto(body.created_at()));
    LogEvent(LogLevel::kInfo, "request_delivered",
             {{"request_id", body.id()}, {"to", peer}});
  } else {
    std::string error = absl::StrCat(absl::StatusCodeToString(status.code()), ": ",
                                     status.message());
    if (!receipt.ok() && IsPermanentRejection(status.code())) {
      // The peer refused these bytes for good: retrying cannot help.
      COMITY_RETURN_IF_ERROR(
          store_->outbox().MarkRejected(body.id(), error, now, audit(v1::DELIVERY_REFUSED, error)));
      LogEvent(LogLevel::kWarning, "delivery_rejected",
               {{"request_id", body.id()}, {"to", peer}, {"error", error}});
    } else {
      // Unreachable, or an answer that did not verify: try again later.
      absl::Time next = now + Backoff(record.delivery_attempts() + 1);
      COMITY_RETURN_IF_ERROR(store_->outbox().MarkDeliveryFailed(body.id(), error, now, next,
                                                        audit(v1::DELIVERY_FAILED, error)));
    }
    LogEvent(LogLevel::kWarning, "delivery_failed",
             {{"request_id", body.id()},
              {"to", peer},
              {"attempt", absl::StrCat(record.delivery_attempts() + 1)},
              {"error", error}});
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> now_stored,
                          store_->requests().Get(body.id()));
  for (v1::RequestRecord& r : now_stored) {
    if (r.direction() == v1::OUTGOING) return std::move(r);
  }
  return absl::InternalError("outgoing record vanished after delivery");
}

void Node::WorkerLoop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(500));
      if (stopping_) return;
    }
    bool gossip = false;
    bool check = false;
    bool fetch = false;
    {
      absl::MutexLock lock(&mu_);
      const absl::Duration interval =
          absl::Seconds(setup_->config.audit().head_interval_seconds());
      const absl::Time now = absl::Now();
      if (now - last_gossip_ >= interval) {
        last_gossip_ = now;
        gossip = true;
      }
      if (now - last_deadline_check_ >= absl::Seconds(30)) {
        last_deadline_check_ = now;
        check = true;
      }
      if (now - last_evidence_check_ >= absl::Seconds(2)) {
        last_evidence_check_ = now;
        fetch = true;
      }
    }
    AuditRateLimited();
    if (gossip) GossipHeads();
    AnnounceKeys();  // Until each peer acknowledged them; backs off by itself.
    if (check) CheckDeadlines();
    if (fetch) FetchPendingEvidence();
  }
}

void Node::AuditRateLimited() {
  for (const auto& [peer, refused] : peer_limiter_.TakeRefusals()) {
    metrics_.PeerRateLimited(peer, refused);
    LogEvent(LogLevel::kWarning, "peer_rate_limited",
             {{"peer", peer}, {"refused", absl::StrCat(refused)}});
    absl::Status st = store_->audit().Append([&, p = peer, n = refused](AuditWriter& w) {
      v1::AuditEntry e = Event(v1::PEER_RATE_LIMITED, "peer:" + p, "", p);
      e.set_detail(absl::StrCat(n, " calls refused over the rate limit (",
                                setup_->config.limits().peer_rate_per_second(),
                                " per second, burst ", setup_->config.limits().peer_burst(),
                                ")"));
      return w.Append(&e).status();
    });
    if (!st.ok()) LogEvent(LogLevel::kError, "audit_error", {{"error", st.ToString()}});
  }
}

// --- The outbox: one delivery lane per peer. ---

Node::Lane* Node::LaneFor(const std::string& peer) const {
  auto it = lanes_.find(peer);
  return it == lanes_.end() ? nullptr : it->second.get();
}

void Node::Kick(const std::string& peer) {
  Lane* lane = LaneFor(peer);
  if (lane == nullptr) return;
  absl::MutexLock lock(&mu_);
  lane->kick = true;
}

void Node::AwaitAttempt(const std::string& peer, const std::string& key, SubmitDone done) {
  Lane* lane = LaneFor(peer);
  if (lane != nullptr) {
    absl::MutexLock lock(&mu_);
    if (started_ && !stopping_) {
      // Long enough for a round already under way and then this attempt.
      const absl::Duration wait =
          2 * absl::Milliseconds(setup_->config.delivery().attempt_timeout_ms()) +
          absl::Seconds(1);
      lane->waiters.emplace(key, Lane::Waiter{std::move(done), absl::Now() + wait});
      lane->kick = true;
      return;
    }
  }
  // Not delivering now (stopped, or not started yet): the stored state.
  const std::string id = key.substr(2);
  done(StoredOutgoing(id));
}

void Node::Resolve(Lane* lane, const std::string& key,
                   const absl::StatusOr<v1::RequestRecord>& result) {
  std::vector<SubmitDone> ready;
  {
    absl::MutexLock lock(&mu_);
    auto range = lane->waiters.equal_range(key);
    for (auto it = range.first; it != range.second; ++it) ready.push_back(std::move(it->second.done));
    lane->waiters.erase(range.first, range.second);
  }
  for (SubmitDone& done : ready) done(result);
}

void Node::ResolveStale(Lane* lane, bool all) {
  std::vector<std::pair<std::string, SubmitDone>> ready;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    const bool backing_off = clock_->Now() < lane->retry_at;
    for (auto it = lane->waiters.begin(); it != lane->waiters.end();) {
      if (all || backing_off || it->second.give_up_at <= now) {
        ready.emplace_back(it->first, std::move(it->second.done));
        it = lane->waiters.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& [key, done] : ready) {
    absl::StatusOr<v1::RequestRecord> stored = StoredOutgoing(key.substr(2));
    if (all && stored.ok() && key[0] == 'r' && stored->state() == v1::PENDING_DELIVERY) {
      done(absl::UnavailableError(
          "node is shutting down; the request is stored and will be delivered after restart"));
    } else {
      done(std::move(stored));
    }
  }
}

absl::StatusOr<v1::RequestRecord> Node::StoredOutgoing(const std::string& request_id) const {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, Get(request_id));
  for (v1::RequestRecord& r : records) {
    if (r.direction() == v1::OUTGOING) return std::move(r);
  }
  return absl::NotFoundError(absl::StrCat("no outgoing request ", request_id));
}

void Node::LaneLoop(Lane* lane) {
  const absl::Duration poll = absl::Milliseconds(
      std::clamp<uint32_t>(setup_->config.delivery().retry_initial_ms(), 10, 1000));
  while (true) {
    bool backing_off = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this, lane]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || lane->kick;
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), poll);
      if (stopping_) return;
      lane->kick = false;
      backing_off = clock_->Now() < lane->retry_at;
    }
    if (backing_off) {
      // Callers waiting for an attempt get the stored state now.
      ResolveStale(lane, false);
      continue;
    }
    const bool unreachable = RunLane(lane);
    {
      absl::MutexLock lock(&mu_);
      if (unreachable) {
        ++lane->failures;
        lane->retry_at = clock_->Now() + Backoff(lane->failures);
      } else {
        lane->failures = 0;
        lane->retry_at = absl::InfinitePast();
      }
    }
    ResolveStale(lane, false);
  }
}

bool Node::RunLane(Lane* lane) {
  const absl::Time now = clock_->Now();
  const std::string& peer = lane->peer;
  // What is due to this peer: steps and proposals first (they move open
  // cases), then requests, each kind oldest first.
  std::vector<std::function<absl::StatusOr<bool>()>> tasks;
  auto transitions = store_->outbox().DueTransitions(peer, now, kRetryBatch);
  auto proposals = store_->outbox().DueProposals(peer, now, kRetryBatch);
  auto requests = store_->outbox().DueRequests(peer, now, kRetryBatch);
  for (const auto* failed : {&transitions.status(), &proposals.status(), &requests.status()}) {
    if (!failed->ok()) {
      LogEvent(LogLevel::kError, "store_error", {{"error", failed->ToString()}});
    }
  }
  if (transitions.ok()) {
    for (PendingTransition& t : *transitions) {
      tasks.push_back([this, &peer, t = std::move(t)]() -> absl::StatusOr<bool> {
        return DeliverTransition(peer, t);
      });
    }
  }
  if (proposals.ok()) {
    for (PendingProposal& p : *proposals) {
      tasks.push_back([this, p = std::move(p)]() { return DeliverProposal(p); });
    }
  }
  if (requests.ok()) {
    for (v1::RequestRecord& r : *requests) {
      tasks.push_back([this, lane, r = std::move(r)]() -> absl::StatusOr<bool> {
        v1::RequestBody body;
        body.ParseFromString(r.request().payload());
        absl::StatusOr<v1::RequestRecord> after = Deliver(r);
        if (!after.ok()) {
          LogEvent(LogLevel::kError, "delivery_error",
                   {{"request_id", body.id()}, {"error", after.status().ToString()}});
        }
        const bool reached = !after.ok() || after->state() != v1::PENDING_DELIVERY;
        Resolve(lane, "r:" + body.id(), after);
        return reached;
      });
    }
  }
  if (tasks.empty()) return false;
  const bool more = (transitions.ok() && transitions->size() == kRetryBatch) ||
                    (proposals.ok() && proposals->size() == kRetryBatch) ||
                    (requests.ok() && requests->size() == kRetryBatch);

  // Up to max_in_flight attempts at once. The first one that cannot reach
  // the peer stops the round: the rest wait for the lane's next try.
  std::atomic<size_t> next{0};
  std::atomic<bool> unreachable{false};
  auto work = [&]() {
    while (!unreachable.load()) {
      const size_t i = next.fetch_add(1);
      if (i >= tasks.size()) return;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      absl::StatusOr<bool> reached = tasks[i]();
      if (reached.ok() && !*reached) unreachable.store(true);
    }
  };
  const size_t width = std::min<size_t>(
      tasks.size(), std::max<uint32_t>(1, setup_->config.delivery().max_in_flight()));
  std::vector<std::thread> helpers;
  helpers.reserve(width - 1);
  for (size_t i = 1; i < width; ++i) helpers.emplace_back(work);
  work();
  for (std::thread& t : helpers) t.join();
  if (more && !unreachable.load()) {
    absl::MutexLock lock(&mu_);
    lane->kick = true;
  }
  return unreachable.load();
}

std::vector<v1::PublicKey> Node::OwnKeys() const {
  std::vector<v1::PublicKey> keys;
  for (const auto& [key_id, raw] : setup_->key_ring.KeysOf(party())) {
    v1::PublicKey pk;
    pk.set_party(party());
    pk.set_key_id(key_id);
    pk.set_ed25519_public_key(raw);
    keys.push_back(std::move(pk));
  }
  return keys;
}

// --- Cases. ---

namespace {

// Release conditions of the case's responses not yet accepted.
std::vector<std::string> PendingConditions(
    const google::protobuf::RepeatedPtrField<v1::SignedEnvelope>& transitions) {
  std::vector<std::string> all;
  std::set<std::string> accepted;
  for (const v1::SignedEnvelope& env : transitions) {
    v1::Transition t;
    if (!t.ParseFromString(env.payload())) continue;
    for (const std::string& c : t.release_conditions()) all.push_back(c);
    for (const std::string& c : t.accepted_conditions()) accepted.insert(c);
  }
  std::vector<std::string> out;
  for (const std::string& c : all) {
    if (accepted.count(c) == 0 && std::find(out.begin(), out.end(), c) == out.end()) {
      out.push_back(c);
    }
  }
  return out;
}

// SHA-256 of the payload the next transition must chain to.
std::string ChainHead(const v1::RequestRecord& r) {
  if (r.transitions_size() == 0) return Sha256(r.request().payload());
  return Sha256(r.transitions(r.transitions_size() - 1).payload());
}

const v1::RequestRecord* Row(const std::vector<v1::RequestRecord>& records,
                             v1::Direction direction) {
  for (const auto& r : records) {
    if (r.direction() == direction) return &r;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<v1::RequestRecord> Node::Act(const CertIdentity& op,
                                            const std::string& request_id,
                                            const Decision& d) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, Get(request_id));
  if (Row(records, v1::INCOMING) != nullptr) {
    if (!op.HasRole("reviewer")) {
      return absl::PermissionDeniedError(absl::StrCat(
          "operator ", op.operator_name, " lacks the reviewer role needed to decide on a "
          "received request"));
    }
    return Decide(op.operator_name, request_id, d);
  }
  if (!op.HasRole("submitter")) {
    return absl::PermissionDeniedError(absl::StrCat(
        "operator ", op.operator_name, " lacks the submitter role needed to act on a sent "
        "request"));
  }
  return Propose(op.operator_name, request_id, d);
}

absl::StatusOr<v1::RequestRecord> Node::Decide(const std::string& operator_name,
                                               const std::string& request_id,
                                               const Decision& d) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, Get(request_id));
  const v1::RequestRecord* row = Row(records, v1::INCOMING);
  if (row == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id, " was sent by this node: only the requested party decides on "
                                "a request"));
  }
  if (!IsRequestedAction(d.action)) {
    return absl::FailedPreconditionError(
        absl::StrCat("only the requesting party can ", v1::CaseAction_Name(d.action)));
  }
  v1::RequestBody body;
  v1::Receipt receipt;
  if (!body.ParseFromString(row->request().payload()) ||
      !receipt.ParseFromString(row->receipt().payload())) {
    return absl::DataLossError("the stored request or receipt does not parse");
  }
  std::vector<std::string> duties;
  switch (d.action) {
    case v1::REFUSE:
      COMITY_RETURN_IF_ERROR(CheckRefusal(receipt.receiver_assessment(), body.assistance_type(),
                                          d.refusal_grounds, d.reasons, &duties));
      break;
    case v1::REQUEST_INFO:
    case v1::POSTPONE:
    case v1::RESPOND:
      if (d.text.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            v1::CaseAction_Name(d.action), " needs --text (",
            d.action == v1::RESPOND      ? "the response"
            : d.action == v1::POSTPONE ? "why, and until when (ETS185 Art 27(5))"
                                       : "what information is needed",
            ")"));
      }
      break;
    default:
      break;
  }
  if (d.action != v1::REFUSE && !d.refusal_grounds.empty()) {
    return absl::InvalidArgumentError("refusal grounds go only with REFUSE");
  }
  if (d.action != v1::RESPOND && (!d.evidence_paths.empty() || !d.release_conditions.empty())) {
    return absl::InvalidArgumentError("evidence files and release conditions go only with RESPOND");
  }
  std::vector<v1::EvidenceFile> evidence;
  for (const std::string& path : d.evidence_paths) {
    auto imported = evidence_->ImportFile(path);
    if (!imported.ok()) {
      return absl::Status(imported.status().code(),
                          absl::StrCat("evidence file ", path, ": ", imported.status().message()));
    }
    v1::EvidenceFile f;
    f.set_name(path.substr(path.rfind('/') + 1));
    f.set_sha256(imported->first);
    f.set_size(imported->second);
    evidence.push_back(std::move(f));
  }
  COMITY_RETURN_IF_ERROR(
      AppendStep(*row, body, receipt, d, party(), operator_name, duties, nullptr, evidence)
          .status());
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> now_stored, Get(request_id));
  return *Row(now_stored, v1::INCOMING);
}

absl::StatusOr<v1::SignedEnvelope> Node::AppendStep(
    const v1::RequestRecord& row, const v1::RequestBody& body, const v1::Receipt& receipt,
    const Decision& d, const std::string& decided_by, const std::string& operator_name,
    const std::vector<std::string>& duties, const v1::SignedEnvelope* proposal,
    const std::vector<v1::EvidenceFile>& evidence) {
  COMITY_ASSIGN_OR_RETURN(v1::CaseState to,
                          NextCaseState(row.case_state(), d.action, d.final_response));
  v1::Transition t;
  t.set_request_id(body.id());
  t.set_sequence(static_cast<uint32_t>(row.transitions_size()) + 1);
  t.set_previous_sha256(ChainHead(row));
  t.set_action(d.action);
  t.set_from_state(row.case_state());
  t.set_to_state(to);
  t.set_party(decided_by);
  t.set_operator_name(operator_name);
  t.set_time_unix_micros(absl::ToUnixMicros(clock_->Now()));
  for (v1::RefusalGround g : d.refusal_grounds) t.add_refusal_grounds(g);
  t.set_reasons(d.reasons);
  t.set_consultation(d.consultation);
  t.set_text(d.text);
  t.set_final_response(d.final_response);
  for (const auto& duty : duties) t.add_open_duties(duty);
  if (proposal != nullptr) *t.mutable_proposal() = *proposal;
  for (const v1::EvidenceFile& f : evidence) *t.add_evidence() = f;
  for (const std::string& c : d.release_conditions) t.add_release_conditions(c);
  for (const std::string& c : d.accepted_conditions) t.add_accepted_conditions(c);
  COMITY_ASSIGN_OR_RETURN(
      v1::SignedEnvelope env,
      SignEnvelope(kTransitionPayloadType, SerializeDeterministic(t), party(),
                   setup_->config.signing_key().key_id(), *setup_->signing_key));
  const std::string actor = decided_by == party()
                                ? "operator:" + operator_name
                                : absl::StrCat("peer:", decided_by, " (", operator_name, ")");
  COMITY_RETURN_IF_ERROR(store_->cases().AppendTransition(
      body.id(), v1::INCOMING, t, env, /*outbound=*/true, clock_->Now(),
      NextDeadlineAfter(row, t, env, setup_->config.service_levels()),
      [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry e = Event(decided_by == party() ? v1::CASE_DECIDED : v1::CASE_UPDATED,
                                 actor, body.id(), body.requesting_party());
        e.add_hashes(Sha256(env.payload()));
        if (proposal != nullptr) e.add_hashes(Sha256(proposal->payload()));
        e.set_assistance_type(body.assistance_type());
        e.set_instrument(receipt.receiver_assessment().instrument());
        e.set_obligation(receipt.receiver_assessment().obligation());
        for (v1::RefusalGround g : d.refusal_grounds) e.add_refusal_grounds(g);
        e.set_detail(absl::StrCat(t.sequence(), ": ", v1::CaseAction_Name(d.action), " -> ",
                                  v1::CaseState_Name(to),
                                  duties.empty() ? "" : "; open duty: " + duties[0]));
        return w.Append(&e).status();
      }));
  LogEvent(LogLevel::kInfo, "case_decided",
           {{"request_id", body.id()},
            {"action", v1::CaseAction_Name(d.action)},
            {"state", v1::CaseState_Name(to)},
            {"by", actor}});
  Kick(body.requesting_party());
  return env;
}

absl::StatusOr<v1::RequestRecord> Node::Propose(const std::string& operator_name,
                                                const std::string& request_id,
                                                const Decision& d) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, Get(request_id));
  const v1::RequestRecord* row = Row(records, v1::OUTGOING);
  if (row == nullptr) return absl::NotFoundError(absl::StrCat("no request ", request_id));
  if (!IsRequesterAction(d.action)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id, " was sent by this node: only the requested party can ",
        v1::CaseAction_Name(d.action)));
  }
  if (row->case_state() == v1::CASE_STATE_UNSPECIFIED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id, " has not been delivered yet (",
        v1::RequestState_Name(row->state()), "); a case starts with its receipt"));
  }
  COMITY_RETURN_IF_ERROR(NextCaseState(row->case_state(), d.action, false).status());
  if (d.action == v1::PROVIDE_INFO && d.text.empty()) {
    return absl::InvalidArgumentError("PROVIDE_INFO needs --text (the information asked for)");
  }
  std::vector<std::string> accepting;
  if (d.action == v1::ACCEPT_CONDITIONS) {
    accepting = PendingConditions(row->transitions());
    if (accepting.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "request ", request_id, " has no release conditions waiting for acceptance"));
    }
  }
  v1::RequestBody body;
  body.ParseFromString(row->request().payload());
  v1::TransitionProposal p;
  p.set_request_id(request_id);
  p.set_action(d.action);
  p.set_party(party());
  p.set_operator_name(operator_name);
  p.set_time_unix_micros(absl::ToUnixMicros(clock_->Now()));
  p.set_text(d.text);
  p.set_based_on_sequence(static_cast<uint32_t>(row->transitions_size()));
  for (const std::string& c : accepting) p.add_accepted_conditions(c);
  COMITY_ASSIGN_OR_RETURN(
      v1::SignedEnvelope env,
      SignEnvelope(kProposalPayloadType, SerializeDeterministic(p), party(),
                   setup_->config.signing_key().key_id(), *setup_->signing_key));
  const std::string& peer = body.requested_party();
  COMITY_RETURN_IF_ERROR(
      store_->outbox().EnqueueProposal(request_id, peer, env, clock_->Now(),
                              [&](AuditWriter& w) -> absl::Status {
                                v1::AuditEntry e = Event(v1::PROPOSAL_QUEUED,
                                                         "operator:" + operator_name,
                                                         request_id, peer);
                                e.add_hashes(Sha256(env.payload()));
                                e.set_assistance_type(body.assistance_type());
                                e.set_detail(v1::CaseAction_Name(d.action));
                                return w.Append(&e).status();
                              })
          .status());
  LogEvent(LogLevel::kInfo, "proposal_queued",
           {{"request_id", request_id}, {"to", peer}, {"action", v1::CaseAction_Name(d.action)}});
  // Wait for the first attempt (or the stored state, if the peer is
  // backing off).
  absl::Notification attempted;
  absl::StatusOr<v1::RequestRecord> result = absl::UnknownError("no attempt");
  AwaitAttempt(peer, "p:" + request_id, [&](absl::StatusOr<v1::RequestRecord> r) {
    result = std::move(r);
    attempted.Notify();
  });
  attempted.WaitForNotification();
  return result;
}

absl::StatusOr<bool> Node::DeliverProposal(const PendingProposal& q) {
  const absl::Duration timeout =
      absl::Milliseconds(setup_->config.delivery().attempt_timeout_ms());
  absl::StatusOr<v1::SignedEnvelope> transition =
      transport_->ProposeTransition(q.peer, q.envelope, timeout);
  NoteContact(q.peer, transition.status());
  absl::Status st = transition.status();
  if (st.ok()) {
    // The peer numbered our proposal into the case: it is off the queue.
    // Apply the step now if it follows what is held here; if earlier steps
    // of the peer are still on their way, its outbox delivers this one after
    // them (applying twice is harmless).
    absl::StatusOr<v1::SignedEnvelope> applied = ReceiveTransition(q.peer, *transition);
    if (!applied.ok() && !absl::IsFailedPrecondition(applied.status())) {
      LogEvent(LogLevel::kWarning, "proposal_step_not_applied",
               {{"request_id", q.request_id},
                {"from", q.peer},
                {"error", applied.status().ToString()}});
    }
    COMITY_RETURN_IF_ERROR(store_->outbox().FinishProposal(q.id, ""));
    LogEvent(LogLevel::kInfo, "proposal_delivered",
             {{"request_id", q.request_id}, {"to", q.peer}});
    Resolve(LaneFor(q.peer), "p:" + q.request_id, StoredOutgoing(q.request_id));
    return true;
  }
  const std::string error =
      absl::StrCat(absl::StatusCodeToString(st.code()), ": ", st.message());
  const bool transient = absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st) ||
                         absl::IsInternal(st) || absl::IsUnknown(st) ||
                         absl::IsAborted(st) || absl::IsUnauthenticated(st);
  if (transient) {
    COMITY_RETURN_IF_ERROR(
        store_->outbox().MarkProposalFailed(q.id, error, clock_->Now() + Backoff(q.attempts + 1)));
    LogEvent(LogLevel::kWarning, "proposal_delivery_failed",
             {{"request_id", q.request_id}, {"to", q.peer}, {"error", error}});
    const bool reached = !absl::IsUnavailable(st) && !absl::IsDeadlineExceeded(st);
    if (reached) Resolve(LaneFor(q.peer), "p:" + q.request_id, StoredOutgoing(q.request_id));
    return reached;
  }
  // Refused for good (the case moved on, an illegal step...): off the queue.
  COMITY_RETURN_IF_ERROR(store_->outbox().FinishProposal(
      q.id, error, [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry e = Event(v1::PROPOSAL_REFUSED, "node", q.request_id, q.peer);
        e.add_hashes(Sha256(q.envelope.payload()));
        e.set_detail(error);
        return w.Append(&e).status();
      }));
  LogEvent(LogLevel::kWarning, "proposal_refused",
           {{"request_id", q.request_id}, {"to", q.peer}, {"error", error}});
  Resolve(LaneFor(q.peer), "p:" + q.request_id,
          absl::Status(st.code(), absl::StrCat(q.peer, " refused the proposal: ", st.message())));
  return true;
}

absl::StatusOr<v1::SignedEnvelope> Node::SequenceProposal(const std::string& peer_party,
                                                          const v1::SignedEnvelope& envelope) {
  if (envelope.signer_party() != peer_party) {
    return absl::PermissionDeniedError(
        absl::StrCat("proposal is signed as party '", envelope.signer_party().substr(0, 8),
                     "' but the TLS peer is ", peer_party));
  }
  COMITY_RETURN_IF_ERROR(VerifyEnvelope(envelope, kProposalPayloadType, setup_->key_ring,
                                        ArrivingNow(clock_->Now(), setup_->replay_window())));
  v1::TransitionProposal p;
  if (!p.ParseFromString(envelope.payload()) || p.party() != peer_party) {
    return absl::InvalidArgumentError("not a comity.v1.TransitionProposal of the TLS peer");
  }
  if (!IsRequesterAction(p.action())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the requesting party cannot ", v1::CaseAction_Name(p.action())));
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, Get(p.request_id()));
  const v1::RequestRecord* row = Row(records, v1::INCOMING);
  v1::RequestBody body;
  v1::Receipt receipt;
  if (row == nullptr || !body.ParseFromString(row->request().payload()) ||
      body.requesting_party() != peer_party || !receipt.ParseFromString(row->receipt().payload())) {
    return absl::PermissionDeniedError(absl::StrCat(
        "request ", p.request_id(), " is not a request ", peer_party, " sent to this node"));
  }
  // The same proposal again: the step it became.
  for (const v1::SignedEnvelope& existing : row->transitions()) {
    v1::Transition t;
    if (t.ParseFromString(existing.payload()) && t.has_proposal() &&
        t.proposal().payload() == envelope.payload()) {
      return existing;
    }
  }
  Decision d;
  d.action = p.action();
  d.text = p.text();
  if (p.action() == v1::ACCEPT_CONDITIONS) {
    std::vector<std::string> pending = PendingConditions(row->transitions());
    if (p.accepted_conditions().empty()) {
      return absl::InvalidArgumentError("ACCEPT_CONDITIONS names no conditions");
    }
    for (const std::string& c : p.accepted_conditions()) {
      if (std::find(pending.begin(), pending.end(), c) == pending.end()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "condition '", c.substr(0, 200), "' is not a pending release condition of request ",
            p.request_id()));
      }
      d.accepted_conditions.push_back(c);
    }
  }
  return AppendStep(*row, body, receipt, d, peer_party, p.operator_name(), {}, &envelope, {});
}

absl::StatusOr<v1::SignedEnvelope> Node::ReceiveTransition(
    const std::string& peer_party, const v1::SignedEnvelope& envelope) {
  if (envelope.signer_party() != peer_party) {
    return absl::PermissionDeniedError(
        absl::StrCat("transition is signed as party '", envelope.signer_party().substr(0, 8),
                     "' but the TLS peer is ", peer_party));
  }
  COMITY_RETURN_IF_ERROR(VerifyEnvelope(envelope, kTransitionPayloadType, setup_->key_ring,
                                        ArrivingNow(clock_->Now(), setup_->replay_window())));
  v1::Transition t;
  if (!t.ParseFromString(envelope.payload())) {
    return absl::InvalidArgumentError("transition payload is not a comity.v1.Transition");
  }
  if (t.party() != peer_party) {
    // A step of ours, numbered by the peer: it must carry our own signed
    // proposal for exactly this action.
    v1::TransitionProposal p;
    if (t.party() != party() || !t.has_proposal() ||
        !VerifyEnvelope(t.proposal(), kProposalPayloadType, setup_->key_ring).ok() ||
        t.proposal().signer_party() != party() || !p.ParseFromString(t.proposal().payload()) ||
        p.action() != t.action() || p.request_id() != t.request_id() || p.text() != t.text() ||
        !std::equal(p.accepted_conditions().begin(), p.accepted_conditions().end(),
                    t.accepted_conditions().begin(), t.accepted_conditions().end())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "transition names party '", t.party(), "' but is signed by ", peer_party,
          " without that party's matching signed proposal"));
    }
  }
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, Get(t.request_id()));
  const v1::RequestRecord* row = Row(records, v1::OUTGOING);
  v1::RequestBody body;
  if (row == nullptr || !body.ParseFromString(row->request().payload()) ||
      body.requested_party() != peer_party) {
    return absl::PermissionDeniedError(absl::StrCat(
        "request ", t.request_id(), " is not a request this node sent to ", peer_party));
  }
  // The receipt of this step: what the sender keeps as proof.
  auto acknowledge = [&]() -> absl::StatusOr<v1::SignedEnvelope> {
    v1::Acknowledgement ack;
    ack.set_request_id(t.request_id());
    ack.set_sequence(t.sequence());
    ack.set_payload_sha256(Sha256(envelope.payload()));
    ack.set_party(party());
    ack.set_received_at_unix_micros(absl::ToUnixMicros(clock_->Now()));
    return SignEnvelope(kAckPayloadType, SerializeDeterministic(ack), party(),
                        setup_->config.signing_key().key_id(), *setup_->signing_key);
  };
  // Already applied: the same bytes are fine, other bytes are a conflict.
  if (t.sequence() >= 1 && static_cast<int>(t.sequence()) <= row->transitions_size()) {
    if (row->transitions(static_cast<int>(t.sequence()) - 1).payload() == envelope.payload()) {
      return acknowledge();
    }
    return absl::AlreadyExistsError(absl::StrCat("step ", t.sequence(), " of request ",
                                                 t.request_id(),
                                                 " was already received with other content"));
  }
  if (static_cast<int>(t.sequence()) != row->transitions_size() + 1 ||
      t.previous_sha256() != ChainHead(*row) || t.from_state() != row->case_state()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "step ", t.sequence(), " does not follow the case as held here (step ",
        row->transitions_size(), ", state ", v1::CaseState_Name(row->case_state()),
        "); deliver the earlier steps first"));
  }
  auto legal = NextCaseState(t.from_state(), t.action(), t.final_response());
  if (!legal.ok() || *legal != t.to_state()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "illegal step: ", legal.ok() ? absl::StrCat(v1::CaseAction_Name(t.action()), " leads to ",
                                                     v1::CaseState_Name(*legal), ", not ",
                                                     v1::CaseState_Name(t.to_state()))
                                     : std::string(legal.status().message())));
  }
  COMITY_RETURN_IF_ERROR(store_->cases().AppendTransition(
      t.request_id(), v1::OUTGOING, t, envelope, /*outbound=*/false, clock_->Now(),
      NextDeadlineAfter(*row, t, envelope, setup_->config.service_levels()),
      [&](AuditWriter& w) -> absl::Status {
        v1::AuditEntry e = Event(v1::CASE_UPDATED, "peer:" + peer_party, t.request_id(),
                                 peer_party);
        e.add_hashes(Sha256(envelope.payload()));
        e.set_assistance_type(body.assistance_type());
        for (int g : t.refusal_grounds()) {
          e.add_refusal_grounds(static_cast<v1::RefusalGround>(g));
        }
        e.set_detail(absl::StrCat(t.sequence(), ": ", v1::CaseAction_Name(t.action()), " -> ",
                                  v1::CaseState_Name(t.to_state())));
        return w.Append(&e).status();
      }));
  if (t.evidence_size() > 0) {
    absl::MutexLock lock(&mu_);
    last_evidence_check_ = absl::InfinitePast();  // Fetch it soon.
  }
  LogEvent(LogLevel::kInfo, "case_updated",
           {{"request_id", t.request_id()},
            {"from", peer_party},
            {"action", v1::CaseAction_Name(t.action())},
            {"state", v1::CaseState_Name(t.to_state())}});
  return acknowledge();
}

bool Node::DeliverTransition(const std::string& peer, const PendingTransition& p) {
  absl::StatusOr<v1::SignedEnvelope> ack = transport_->DeliverTransition(
      peer, p.envelope, absl::Milliseconds(setup_->config.delivery().attempt_timeout_ms()));
  NoteContact(peer, ack.status());
  absl::Status st = ack.status();
  if (st.ok()) {
    // Delivered only with the peer's signed acknowledgement of these bytes.
    st = VerifyEnvelope(*ack, kAckPayloadType, setup_->key_ring);
    v1::Acknowledgement a;
    if (st.ok() && (ack->signer_party() != peer || !a.ParseFromString(ack->payload()) ||
                    a.payload_sha256() != Sha256(p.envelope.payload()) ||
                    a.sequence() != p.sequence || a.request_id() != p.request_id)) {
      st = absl::DataLossError("the acknowledgement does not match the step sent");
    }
  }
  if (st.ok()) {
    absl::Status marked = store_->outbox().MarkTransitionDelivered(
        p.request_id, p.sequence, *ack, [&](AuditWriter& w) -> absl::Status {
          v1::AuditEntry e = Event(v1::TRANSITION_DELIVERED, "node", p.request_id, peer);
          e.add_hashes(Sha256(p.envelope.payload()));
          e.add_hashes(Sha256(ack->payload()));
          e.set_detail(absl::StrCat("step ", p.sequence));
          return w.Append(&e).status();
        });
    if (!marked.ok()) {
      LogEvent(LogLevel::kError, "store_error", {{"error", marked.ToString()}});
    }
    return true;
  }
  std::string error = absl::StrCat(absl::StatusCodeToString(st.code()), ": ", st.message());
  (void)store_->outbox().MarkTransitionFailed(p.request_id, p.sequence, error,
                                     clock_->Now() + Backoff(p.attempts + 1));
  if (absl::IsFailedPrecondition(st) && p.sequence > 1 &&
      absl::StrContains(st.message(), "does not follow the case")) {
    // The peer no longer holds steps it acknowledged (restored from a
    // backup, docs/backup.md): send the case again from its first step;
    // what it still holds it acknowledges again. (Its other
    // FAILED_PRECONDITION, a step outside its acceptance window, is not
    // helped by sending older steps.)
    auto rewound = store_->outbox().RewindTransitions(p.request_id, p.sequence, clock_->Now());
    if (rewound.ok() && *rewound > 0) {
      LogEvent(LogLevel::kWarning, "transitions_rewound",
               {{"request_id", p.request_id}, {"to", peer},
                {"steps", absl::StrCat(*rewound)}});
    }
  }
  LogEvent(LogLevel::kWarning, "transition_delivery_failed",
           {{"request_id", p.request_id},
            {"step", absl::StrCat(p.sequence)},
            {"to", peer},
            {"error", error}});
  return !absl::IsUnavailable(st) && !absl::IsDeadlineExceeded(st);
}

absl::StatusOr<std::vector<v1::CaseDeadline>> Node::Overdue() {
  std::vector<v1::CaseDeadline> out;
  const absl::Time now = clock_->Now();
  // Every case whose next deadline has come, from the store's index.
  std::optional<CaseRef> after;
  while (out.size() < static_cast<size_t>(kMaxListLimit)) {
    COMITY_ASSIGN_OR_RETURN(
        std::vector<CaseRef> refs,
        store_->cases().WithDeadlineBefore(now, after ? &*after : nullptr, kRetryBatch));
    for (const CaseRef& ref : refs) {
      COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> full,
                              store_->requests().Get(ref.request_id));
      const v1::RequestRecord* r = Row(full, ref.direction);
      if (r == nullptr) continue;
      for (v1::CaseDeadline& d : CaseDeadlines(*r, setup_->config.service_levels(), now)) {
        if (d.overdue() || d.expiring()) out.push_back(std::move(d));
      }
    }
    if (refs.size() < static_cast<size_t>(kRetryBatch)) break;
    after = refs.back();
  }
  return out;
}

void Node::CheckDeadlines() {
  // The check-then-log below must not run twice at once.
  absl::MutexLock checking(&deadline_mu_);
  const absl::Time now = clock_->Now();
  for (;;) {
    auto due = store_->cases().Due(now, kRetryBatch);
    if (!due.ok()) {
      LogEvent(LogLevel::kError, "store_error", {{"error", due.status().ToString()}});
      return;
    }
    for (const CaseRef& ref : *due) {
      auto full = store_->requests().Get(ref.request_id);
      const v1::RequestRecord* r = full.ok() ? Row(*full, ref.direction) : nullptr;
      absl::Time handled = ref.next_deadline;
      std::vector<v1::CaseDeadline> escalate;
      if (r != nullptr) {
        for (v1::CaseDeadline& d : CaseDeadlines(*r, setup_->config.service_levels(), now)) {
          if (!d.overdue()) continue;
          handled = std::max(handled, absl::FromUnixMicros(d.due_unix_micros()));
          if (d.obligation() == v1::BINDING && (d.kind() == "ACKNOWLEDGE" || d.kind() == "DECIDE")) {
            escalate.push_back(std::move(d));
          }
        }
      }
      for (const v1::CaseDeadline& d : escalate) {
        LogEvent(LogLevel::kError, "deadline_missed",
                 {{"request_id", d.request_id()},
                  {"deadline", d.kind()},
                  {"due", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                           absl::FromUnixMicros(d.due_unix_micros()),
                                           absl::UTCTimeZone())},
                  {"party", d.party()},
                  {"detail", d.description()}});
      }
      // Escalated once per deadline: the entries and the mark commit together.
      absl::Status st = store_->cases().MarkDeadlinesHandled(
          ref.request_id, ref.direction, handled,
          escalate.empty() ? AuditFn() : [&](AuditWriter& w) -> absl::Status {
            for (const v1::CaseDeadline& d : escalate) {
              v1::AuditEntry e = Event(v1::CASE_ESCALATED, "node", d.request_id(), d.party());
              e.set_obligation(d.obligation());
              e.set_detail(absl::StrCat(
                  d.kind(), " overdue since ",
                  absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(d.due_unix_micros()),
                                   absl::UTCTimeZone()),
                  ": ", d.description()));
              COMITY_RETURN_IF_ERROR(w.Append(&e).status());
            }
            return absl::OkStatus();
          });
      if (!st.ok()) {
        LogEvent(LogLevel::kError, "audit_error", {{"error", st.ToString()}});
        return;
      }
    }
    if (due->size() < static_cast<size_t>(kRetryBatch)) return;
  }
}

// --- Evidence. ---

absl::Status Node::CheckEvidenceAccess(const std::string& peer_party,
                                       const std::string& request_id,
                                       const std::string& sha256) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, store_->requests().Get(request_id));
  const v1::RequestRecord* row = Row(records, v1::INCOMING);
  v1::RequestBody body;
  bool listed = false;
  if (row != nullptr && body.ParseFromString(row->request().payload()) &&
      body.requesting_party() == peer_party) {
    for (const v1::SignedEnvelope& env : row->transitions()) {
      v1::Transition t;
      if (!t.ParseFromString(env.payload())) continue;
      for (const v1::EvidenceFile& f : t.evidence()) listed |= f.sha256() == sha256;
    }
  }
  if (!listed) {
    return absl::PermissionDeniedError(absl::StrCat(
        "no evidence file ", HexEncode(sha256).substr(0, 16), " was given to ", peer_party,
        " for request ", request_id.substr(0, 64)));
  }
  std::vector<std::string> open = UnacceptedConditions(row->transitions(), sha256);
  if (!open.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "released only under conditions ", peer_party, " has not accepted yet (ETS185 Art "
        "28(2)): ", absl::StrJoin(open, "; "), "; accept them with comity accept-conditions"));
  }
  return absl::OkStatus();
}

void Node::FetchPendingEvidence() {
  // One fetch round at a time (the worker's, or a test's): two would fetch
  // the same file at once.
  absl::MutexLock fetching(&fetch_mu_);
  auto due = store_->cases().DueEvidence("", clock_->Now(), kRetryBatch);
  if (!due.ok()) {
    LogEvent(LogLevel::kError, "store_error", {{"error", due.status().ToString()}});
    return;
  }
  for (const PendingEvidence& f : *due) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
    }
    if (evidence_->Has(f.sha256)) {  // Held already (another request's copy).
      store_->cases().MarkEvidenceHeld(f.request_id, f.sha256).IgnoreError();
      continue;
    }
    auto records = store_->requests().Get(f.request_id);
    const v1::RequestRecord* row = records.ok() ? Row(*records, v1::OUTGOING) : nullptr;
    if (row == nullptr) continue;
    // Released only once its conditions are accepted: not due until then.
    if (!UnacceptedConditions(row->transitions(), f.sha256).empty()) {
      store_->cases()
          .MarkEvidenceDeferred(f.request_id, f.sha256,
                                "waiting for the release conditions to be accepted", false,
                                absl::InfiniteFuture())
          .IgnoreError();
      continue;
    }
    const std::string transfer = HexEncode(f.sha256);
    absl::Status st = [&]() -> absl::Status {
      COMITY_ASSIGN_OR_RETURN(uint64_t offset, evidence_->BeginUpload(transfer, f.size, f.sha256));
      if (offset < f.size) {
        COMITY_RETURN_IF_ERROR(transport_->FetchEvidence(
            f.peer, f.request_id, f.sha256, offset,
            [&](absl::string_view chunk) -> absl::Status {
              COMITY_RETURN_IF_ERROR(evidence_->AppendChunk(transfer, offset, chunk));
              offset += chunk.size();
              return absl::OkStatus();
            },
            absl::Hours(1)));
      }
      COMITY_RETURN_IF_ERROR(evidence_->FinishUpload(transfer).status());
      return store_->cases().MarkEvidenceHeld(f.request_id, f.sha256, [&](AuditWriter& w) {
        v1::AuditEntry e =
            Event(v1::EVIDENCE_RECEIVED, "peer:" + f.peer, f.request_id, f.peer);
        e.add_hashes(f.sha256);
        e.set_detail(absl::StrCat(f.name, ", ", f.size, " bytes, SHA-256 verified"));
        return w.Append(&e).status();
      });
    }();
    if (st.ok()) {
      LogEvent(LogLevel::kInfo, "evidence_received",
               {{"request_id", f.request_id}, {"file", f.name}, {"bytes", absl::StrCat(f.size)}});
    } else {
      store_->cases()
          .MarkEvidenceDeferred(f.request_id, f.sha256, st.ToString(), true,
                                clock_->Now() + Backoff(f.attempts + 1))
          .IgnoreError();
      LogEvent(LogLevel::kWarning, "evidence_fetch_failed",
               {{"request_id", f.request_id}, {"file", f.name}, {"error", st.ToString()}});
    }
  }
}

absl::Status Node::BeginEvidenceExport(const std::string& operator_name,
                                       const std::string& request_id, const std::string& sha256,
                                       uint64_t offset, bool allow_tlp_red) {
  COMITY_ASSIGN_OR_RETURN(std::vector<v1::RequestRecord> records, Get(request_id));
  const v1::RequestRecord& row = records[0];
  v1::RequestBody body;
  body.ParseFromString(row.request().payload());
  std::string name;
  for (const v1::SignedEnvelope& env : row.transitions()) {
    v1::Transition t;
    if (!t.ParseFromString(env.payload())) continue;
    for (const v1::EvidenceFile& f : t.evidence()) {
      if (f.sha256() == sha256) name = f.name();
    }
  }
  if (name.empty() || !evidence_->Has(sha256)) {
    return absl::NotFoundError(absl::StrCat("request ", request_id,
                                            " has no evidence file with that SHA-256 here"));
  }
  const bool red = body.handling().tlp() == v1::TLP_RED;
  if (red && !allow_tlp_red) {
    return absl::FailedPreconditionError(absl::StrCat(
        "request ", request_id, " is TLP:RED: its material may not leave the node unless you "
        "say so explicitly (--allow-tlp-red); that export is logged"));
  }
  if (offset == 0) {
    COMITY_RETURN_IF_ERROR(store_->audit().Append([&](AuditWriter& w) {
      v1::AuditEntry e = Event(v1::EVIDENCE_EXPORTED, "operator:" + operator_name, request_id,
                               row.direction() == v1::OUTGOING ? body.requested_party()
                                                               : body.requesting_party());
      e.add_hashes(sha256);
      e.set_detail(absl::StrCat(name, "; ", v1::Tlp_Name(body.handling().tlp()),
                                red ? ", exported with --allow-tlp-red" : ""));
      return w.Append(&e).status();
    }));
    LogEvent(red ? LogLevel::kWarning : LogLevel::kInfo, "evidence_exported",
             {{"request_id", request_id}, {"file", name}, {"operator", operator_name},
              {"tlp", v1::Tlp_Name(body.handling().tlp())}});
  }
  return absl::OkStatus();
}

void Node::NoteContact(const std::string& party, const absl::Status& status) {
  // A peer that answers, even with a refusal, is reachable.
  const bool reached = status.ok() || (!absl::IsUnavailable(status) &&
                                       !absl::IsDeadlineExceeded(status));
  absl::MutexLock lock(&contacts_mu_);
  Contact& c = contacts_[party];
  c.last_attempt = absl::Now();
  c.reachable = reached;
  if (reached) c.last_ok = c.last_attempt;
  if (!status.ok()) {
    c.last_error = absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
  }
}

absl::StatusOr<std::vector<v1::PeerStatus>> Node::Peers() {
  COMITY_ASSIGN_OR_RETURN(auto depths, store_->outbox().Depths());
  std::vector<v1::PeerStatus> out;
  absl::MutexLock lock(&contacts_mu_);
  for (const auto& [code, peer] : setup_->peers) {
    v1::PeerStatus s;
    s.set_party(code);
    s.set_address(peer.address);
    auto it = contacts_.find(code);
    if (it != contacts_.end()) {
      s.set_reachable(it->second.reachable);
      if (it->second.last_ok != absl::InfinitePast()) {
        s.set_last_contact_unix_micros(absl::ToUnixMicros(it->second.last_ok));
      }
      s.set_last_attempt_unix_micros(absl::ToUnixMicros(it->second.last_attempt));
      s.set_last_error(it->second.last_error);
    }
    if (Lane* lane = LaneFor(code); lane != nullptr) {
      absl::MutexLock lane_lock(&mu_);
      if (lane->retry_at != absl::InfinitePast()) {
        s.set_next_attempt_unix_micros(absl::ToUnixMicros(lane->retry_at));
      }
      s.set_consecutive_failures(lane->failures);
    }
    auto d = depths.find(code);
    if (d != depths.end()) {
      s.set_requests_queued(d->second.first);
      s.set_transitions_queued(d->second.second);
    }
    out.push_back(std::move(s));
  }
  return out;
}

// --- Audit log. ---

v1::AuditEntry Node::Event(v1::AuditEventType type, std::string actor, std::string request_id,
                           std::string party) const {
  v1::AuditEntry e;
  e.set_time_unix_micros(absl::ToUnixMicros(clock_->Now()));
  e.set_type(type);
  e.set_actor(std::move(actor));
  e.set_request_id(std::move(request_id));
  e.set_party(std::move(party));
  return e;
}

absl::StatusOr<v1::SignedEnvelope> Node::SignHead(AuditWriter& w) const {
  v1::TreeHead head;
  head.set_party(party());
  head.set_tree_size(w.size());
  head.set_root_hash(w.Root());
  head.set_timestamp_unix_micros(absl::ToUnixMicros(clock_->Now()));
  COMITY_ASSIGN_OR_RETURN(
      v1::SignedEnvelope signed_head,
      SignEnvelope(kTreeHeadPayloadType, SerializeDeterministic(head), party(),
                   setup_->config.signing_key().key_id(), *setup_->signing_key));
  COMITY_RETURN_IF_ERROR(w.PutTreeHead(head, signed_head));
  return signed_head;
}

absl::Status Node::LogStart() {
  // The key this node signs with, to notice a change since the last start.
  const std::string key_hash = Sha256(absl::StrCat(setup_->config.signing_key().key_id(), ":",
                                                   setup_->signing_key->public_key()));
  AuditFilter started;
  started.type = v1::NODE_STARTED;
  COMITY_ASSIGN_OR_RETURN(std::vector<std::string> starts, store_->audit().Entries(started));
  std::string previous_key;
  if (!starts.empty()) {
    v1::AuditEntry last;
    if (last.ParseFromString(starts.back()) && last.hashes_size() > 1) previous_key = last.hashes(1);
  }
  const std::string config_hash = Sha256(setup_->config.SerializeAsString());
  return store_->audit().Append([&](AuditWriter& w) -> absl::Status {
    v1::AuditEntry e = Event(v1::NODE_STARTED, "node");
    e.add_hashes(config_hash);
    e.add_hashes(key_hash);
    e.set_detail(absl::StrCat("party ", party(), "; signing key ",
                              setup_->config.signing_key().key_id(), "; treaty library ",
                              setup_->treaties->version(), "; ", setup_->peers.size(),
                              " peers"));
    COMITY_RETURN_IF_ERROR(w.Append(&e).status());
    if (!previous_key.empty() && previous_key != key_hash) {
      v1::AuditEntry k = Event(v1::KEY_CHANGED, "node");
      k.add_hashes(previous_key);
      k.add_hashes(key_hash);
      k.set_detail(absl::StrCat("signing key is now ", setup_->config.signing_key().key_id()));
      COMITY_RETURN_IF_ERROR(w.Append(&k).status());
    }
    return SignHead(w).status();
  });
}

void Node::RecordAuthFailure(const std::string& actor, const std::string& detail) {
  metrics_.AuthFailure(actor.rfind("operator:", 0) == 0 ? "operator" : "tls");
  absl::Status st = store_->audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = Event(v1::AUTH_FAILURE, actor);
    e.set_detail(detail.substr(0, 512));
    return w.Append(&e).status();
  });
  if (!st.ok()) LogEvent(LogLevel::kError, "audit_error", {{"error", st.ToString()}});
}

void Node::RecordPeerRefusal(const std::string& actor, const std::string& payload_sha256,
                             const absl::Status& why) {
  metrics_.PeerRefusal(actor.rfind("peer:", 0) == 0 ? actor.substr(5) : actor,
                       absl::StatusCodeToString(why.code()));
  absl::Status st = store_->audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = Event(v1::PEER_REQUEST_REFUSED, actor);
    if (actor.rfind("peer:", 0) == 0) e.set_party(actor.substr(5));
    e.add_hashes(payload_sha256);
    e.set_detail(absl::StrCat(absl::StatusCodeToString(why.code()), ": ",
                              why.message().substr(0, 400)));
    return w.Append(&e).status();
  });
  if (!st.ok()) LogEvent(LogLevel::kError, "audit_error", {{"error", st.ToString()}});
}

void Node::RecordAuditExport(const std::string& actor) {
  absl::Status st = store_->audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = Event(v1::AUDIT_EXPORTED, actor);
    COMITY_RETURN_IF_ERROR(w.Append(&e).status());
    // The export is covered by a head signed now: a copy cannot be changed
    // unseen, even in entries no gossip round has signed yet.
    return SignHead(w).status();
  });
  if (!st.ok()) LogEvent(LogLevel::kError, "audit_error", {{"error", st.ToString()}});
}

absl::StatusOr<v1::SignedEnvelope> Node::SignTreeHead() {
  COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> latest, store_->audit().LatestTreeHead());
  COMITY_ASSIGN_OR_RETURN(uint64_t size, store_->audit().Size());
  if (latest.has_value() && latest->head.tree_size() == size) return latest->signed_head;
  v1::SignedEnvelope head;
  COMITY_RETURN_IF_ERROR(store_->audit().Append([&](AuditWriter& w) -> absl::Status {
    COMITY_ASSIGN_OR_RETURN(head, SignHead(w));
    return absl::OkStatus();
  }));
  return head;
}

absl::StatusOr<VerifyReport> Node::VerifyAuditLog() {
  return VerifyStoredLog(store_->audit(), party(), setup_->key_ring);
}

absl::StatusOr<std::vector<std::string>> Node::ConsistencyProof(uint64_t old_size,
                                                                uint64_t new_size) {
  return store_->audit().ConsistencyProofAt(old_size, new_size);
}

absl::StatusOr<v1::SignedEnvelope> Node::ExchangeTreeHeads(
    const std::string& peer_party, const v1::SignedEnvelope& their_head) {
  if (their_head.signer_party() != peer_party) {
    return absl::PermissionDeniedError(absl::StrCat(
        "tree head is signed as '", their_head.signer_party().substr(0, 8),
        "' but the TLS peer is ", peer_party));
  }
  absl::Status checked = CheckPeerHead(peer_party, their_head);
  if (!checked.ok() && !absl::IsUnavailable(checked) && !absl::IsDeadlineExceeded(checked)) {
    return checked;
  }
  COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> ours, store_->audit().LatestTreeHead());
  if (!ours.has_value()) return SignTreeHead();
  return ours->signed_head;
}

absl::Status Node::CheckPeerHead(const std::string& party_code,
                                 const v1::SignedEnvelope& signed_head) {
  COMITY_RETURN_IF_ERROR(VerifyEnvelope(signed_head, kTreeHeadPayloadType, setup_->key_ring));
  StoredTreeHead now;
  now.signed_head = signed_head;
  if (!now.head.ParseFromString(signed_head.payload()) || now.head.party() != party_code ||
      signed_head.signer_party() != party_code || now.head.root_hash().size() != 32) {
    return absl::InvalidArgumentError(absl::StrCat("not a tree head of ", party_code));
  }
  COMITY_ASSIGN_OR_RETURN(std::optional<StoredTreeHead> last,
                          store_->audit().LatestPeerHead(party_code));
  if (!last.has_value()) return store_->audit().PutPeerHead(party_code, now, clock_->Now());
  const uint64_t old_size = last->head.tree_size();
  const uint64_t new_size = now.head.tree_size();
  const absl::Duration timeout =
      absl::Milliseconds(setup_->config.delivery().attempt_timeout_ms());
  if (new_size == old_size) {
    if (now.head.root_hash() == last->head.root_hash()) return absl::OkStatus();
    return RaiseSplitView(party_code, last->signed_head, signed_head,
                          absl::StrCat("two different roots for size ", new_size), "");
  }
  // The smaller head must be a prefix of the larger: ask the peer to prove it.
  const StoredTreeHead& small = new_size < old_size ? now : *last;
  const StoredTreeHead& large = new_size < old_size ? *last : now;
  auto proof = transport_->GetConsistencyProof(party_code, small.head.tree_size(),
                                               large.head.tree_size(), timeout);
  if (!proof.ok()) {
    // Unreachable, or refusing (misconfigured, busy): not evidence of a split
    // view. Check again with the next head.
    LogEvent(LogLevel::kWarning, "peer_head_unchecked",
             {{"party", party_code},
              {"sizes", absl::StrCat(small.head.tree_size(), "..", large.head.tree_size())},
              {"error", proof.status().ToString()}});
    return proof.status();
  }
  absl::Status consistent =
      merkle::VerifyConsistency(small.head.tree_size(), large.head.tree_size(),
                                small.head.root_hash(), large.head.root_hash(), *proof);
  if (!consistent.ok()) {
    return RaiseSplitView(party_code, small.signed_head, large.signed_head,
                          std::string(consistent.message()), "");
  }
  if (new_size > old_size) return store_->audit().PutPeerHead(party_code, now, clock_->Now());
  return absl::OkStatus();
}

absl::Status Node::RaiseSplitView(const std::string& party_code, const v1::SignedEnvelope& first,
                                  const v1::SignedEnvelope& second, const std::string& why,
                                  const std::string& reporter) {
  const bool report_to_peer = reporter.empty();
  v1::TreeHead a, b;
  a.ParseFromString(first.payload());
  b.ParseFromString(second.payload());
  std::string detail = absl::StrCat(
      party_code, "'s log: heads of size ", a.tree_size(), " (root ",
      HexEncode(a.root_hash()).substr(0, 16), ") and ", b.tree_size(), " (root ",
      HexEncode(b.root_hash()).substr(0, 16), ") are inconsistent: ", why);
  LogEvent(LogLevel::kError, "split_view_detected",
           {{"party", party_code}, {"detail", detail}});
  absl::Status st = store_->audit().Append([&](AuditWriter& w) {
    v1::AuditEntry e = Event(v1::SPLIT_VIEW_DETECTED,
                             report_to_peer ? "node" : "peer:" + reporter, "",
                             report_to_peer ? party_code : reporter);
    e.add_hashes(Sha256(first.payload()));
    e.add_hashes(Sha256(second.payload()));
    e.set_detail(detail);
    return w.Append(&e).status();
  });
  if (!st.ok()) LogEvent(LogLevel::kError, "audit_error", {{"error", st.ToString()}});
  if (report_to_peer) {
    absl::Status reported = transport_->ReportSplitView(
        party_code, first, second,
        absl::Milliseconds(setup_->config.delivery().attempt_timeout_ms()));
    if (!reported.ok()) {
      LogEvent(LogLevel::kWarning, "split_view_report_failed",
               {{"party", party_code}, {"error", reported.ToString()}});
    }
  }
  return absl::DataLossError(detail);
}

absl::Status Node::HandleSplitViewReport(const std::string& peer_party,
                                         const v1::SignedEnvelope& first,
                                         const v1::SignedEnvelope& second) {
  // Both heads must be ours, and must really contradict each other.
  v1::TreeHead heads[2];
  const v1::SignedEnvelope* envs[2] = {&first, &second};
  for (int i = 0; i < 2; ++i) {
    if (envs[i]->signer_party() != party()) {
      return absl::InvalidArgumentError("a reported head is not signed by this party");
    }
    COMITY_RETURN_IF_ERROR(VerifyEnvelope(*envs[i], kTreeHeadPayloadType, setup_->key_ring));
    if (!heads[i].ParseFromString(envs[i]->payload())) {
      return absl::InvalidArgumentError("a reported head does not parse");
    }
  }
  bool contradict = false;
  if (heads[0].tree_size() == heads[1].tree_size()) {
    contradict = heads[0].root_hash() != heads[1].root_hash();
  } else {
    // Our own log decides: each head must match our root at its size.
    for (const v1::TreeHead& h : heads) {
      auto root = store_->audit().RootAt(h.tree_size());
      if (!root.ok() || *root != h.root_hash()) contradict = true;
    }
  }
  if (!contradict) {
    return absl::InvalidArgumentError(
        "the reported heads are consistent with this node's log; no split view");
  }
  RaiseSplitView(party(), first, second,
                 absl::StrCat("reported by ", peer_party, ": this party's key signed both"),
                 peer_party)
      .IgnoreError();  // DataLoss by design: the alert is raised.
  return absl::OkStatus();
}

void Node::GossipHeads() {
  auto latest = store_->audit().LatestTreeHead();
  auto size = store_->audit().Size();
  if (!latest.ok() || !size.ok()) return;
  v1::SignedEnvelope ours;
  if (!latest->has_value() || (*latest)->head.tree_size() < *size) {
    auto signed_head = SignTreeHead();
    if (!signed_head.ok()) {
      LogEvent(LogLevel::kError, "audit_error", {{"error", signed_head.status().ToString()}});
      return;
    }
    ours = *std::move(signed_head);
  } else {
    ours = (*latest)->signed_head;
  }
  const absl::Duration timeout =
      absl::Milliseconds(setup_->config.delivery().attempt_timeout_ms());
  for (const auto& [peer, unused] : setup_->peers) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      // A peer the outbox cannot reach is its lane's concern: a gossip call
      // would only wait for the timeout and hold up the others.
      Lane* lane = LaneFor(peer);
      if (lane != nullptr && clock_->Now() < lane->retry_at) continue;
    }
    auto theirs = transport_->ExchangeTreeHeads(peer, ours, timeout);
    NoteContact(peer, theirs.status());
    if (!theirs.ok()) continue;  // Unreachable peers are the delivery worker's concern.
    if (theirs->signer_party() != peer) continue;
    CheckPeerHead(peer, *theirs).IgnoreError();  // Logged and audited inside.
  }
}

}  // namespace comity
