#include "server/grpc/services.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "comity/v1/audit.pb.h"
#include "server/crypto/ed25519.h"
#include "server/crypto/sha256.h"
#include "server/evidence/evidence_store.h"
#include "server/grpc/status_util.h"
#include "server/util/hex.h"
#include "server/util/log.h"

namespace comity {
namespace {

constexpr uint64_t kExportChunk = 4096;

// Finishes a unary call with `status`.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace

// --- Peer service. ---

absl::StatusOr<std::string> PeerServiceImpl::Authenticate(grpc::CallbackServerContext* ctx,
                                                          const char* method) {
  auto [cert, chain] = PeerCertificatePem(*ctx);
  absl::StatusOr<std::string> peer = node_->AuthenticatePeer(cert, chain);
  if (!peer.ok()) {
    LogEvent(LogLevel::kWarning, "peer_denied",
             {{"method", method},
              {"tls_peer", ctx->peer()},
              {"reason", std::string(peer.status().message())}});
    node_->RecordAuthFailure(absl::StrCat("tls:", ctx->peer()),
                             absl::StrCat(method, ": ", peer.status().message()));
    return peer;
  }
  absl::Status admitted = node_->AdmitPeer(*peer);
  if (!admitted.ok()) return admitted;
  return peer;
}

grpc::ServerUnaryReactor* PeerServiceImpl::DeliverRequest(
    grpc::CallbackServerContext* ctx, const v1::DeliverRequestRequest* request,
    v1::DeliverRequestResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto [cert, chain] = PeerCertificatePem(*ctx);
  absl::StatusOr<std::string> peer = node_->AuthenticatePeer(cert, chain);
  absl::Status status = peer.status();
  if (status.ok()) {
    // Over its rate limit: refused before anything is checked, logged and
    // audited in aggregate (Node::AdmitPeer).
    absl::Status admitted = node_->AdmitPeer(*peer);
    if (!admitted.ok()) {
      reactor->Finish(ToGrpcStatus(admitted));
      return reactor;
    }
  }
  if (status.ok() && request->ByteSizeLong() > max_message_bytes_) {
    status = absl::ResourceExhaustedError(absl::StrCat(
        "request message is ", request->ByteSizeLong(), " bytes; the limit is ",
        max_message_bytes_));
  }
  if (status.ok()) {
    absl::StatusOr<v1::SignedEnvelope> receipt =
        node_->ReceiveRequest(*peer, request->request());
    status = receipt.status();
    if (receipt.ok()) *response->mutable_receipt() = *std::move(receipt);
  }
  if (!status.ok()) {
    const std::string payload_hash = Sha256(request->request().payload());
    LogEvent(LogLevel::kWarning, "peer_request_rejected",
             {{"peer", peer.ok() ? *peer : std::string("(unauthenticated)")},
              {"tls_peer", ctx->peer()},
              {"payload_sha256", HexEncode(payload_hash)},
              {"code", absl::StatusCodeToString(status.code())},
              {"reason", std::string(status.message())}});
    if (peer.ok()) {
      node_->RecordPeerRefusal("peer:" + *peer, payload_hash, status);
    } else {
      node_->RecordAuthFailure(absl::StrCat("tls:", ctx->peer()),
                               absl::StrCat("DeliverRequest: ", status.message()));
    }
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* PeerServiceImpl::DeliverTransition(
    grpc::CallbackServerContext* ctx, const v1::DeliverTransitionRequest* request,
    v1::DeliverTransitionResponse* response) {
  auto peer = Authenticate(ctx, "DeliverTransition");
  if (!peer.ok()) return Done(ctx, peer.status());
  absl::StatusOr<v1::SignedEnvelope> ack =
      request->ByteSizeLong() > max_message_bytes_
          ? absl::ResourceExhaustedError("transition message over the size limit")
          : node_->ReceiveTransition(*peer, request->transition());
  absl::Status st = ack.status();
  if (ack.ok()) *response->mutable_ack() = *std::move(ack);
  if (!st.ok() && !absl::IsFailedPrecondition(st)) {
    LogEvent(LogLevel::kWarning, "peer_transition_rejected",
             {{"peer", *peer},
              {"code", absl::StatusCodeToString(st.code())},
              {"reason", std::string(st.message())}});
    node_->RecordPeerRefusal("peer:" + *peer, Sha256(request->transition().payload()), st);
  }
  return Done(ctx, st);
}

grpc::ServerUnaryReactor* PeerServiceImpl::ProposeTransition(
    grpc::CallbackServerContext* ctx, const v1::ProposeTransitionRequest* request,
    v1::ProposeTransitionResponse* response) {
  auto peer = Authenticate(ctx, "ProposeTransition");
  if (!peer.ok()) return Done(ctx, peer.status());
  auto transition = node_->SequenceProposal(*peer, request->proposal());
  if (transition.ok()) *response->mutable_transition() = *std::move(transition);
  return Done(ctx, transition.status());
}

namespace {

// Streams an evidence file from the node's store in chunks of at most
// `chunk_bytes`, reading one chunk per write, so memory stays bounded
// whatever the file's size. Access is checked before it is created.
class EvidenceReactor final : public grpc::ServerWriteReactor<v1::EvidenceChunk> {
 public:
  EvidenceReactor(const EvidenceStore* store, std::string sha256, uint64_t offset,
                  size_t chunk_bytes)
      : store_(store), sha256_(std::move(sha256)), offset_(offset), chunk_bytes_(chunk_bytes) {
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the other side went away"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    chunk_.Clear();
    bool got = false;
    absl::Status st = store_->Read(sha256_, offset_, chunk_bytes_, [&](absl::string_view data) {
      chunk_.set_data(std::string(data));
      got = true;
      return absl::CancelledError("one chunk");  // Stop after one.
    });
    if (!got) {
      Finish(st.ok() ? grpc::Status::OK : ToGrpcStatus(st));
      return;
    }
    offset_ += chunk_.data().size();
    StartWrite(&chunk_);
  }
  const EvidenceStore* store_;
  std::string sha256_;
  uint64_t offset_;
  size_t chunk_bytes_;
  v1::EvidenceChunk chunk_;
};

class EvidenceError final : public grpc::ServerWriteReactor<v1::EvidenceChunk> {
 public:
  explicit EvidenceError(const absl::Status& st) { Finish(ToGrpcStatus(st)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::EvidenceChunk>* PeerServiceImpl::FetchEvidence(
    grpc::CallbackServerContext* ctx, const v1::FetchEvidenceRequest* request) {
  auto peer = Authenticate(ctx, "FetchEvidence");
  if (!peer.ok()) return new EvidenceError(peer.status());
  absl::Status access =
      node_->CheckEvidenceAccess(*peer, request->request_id(), request->sha256());
  if (!access.ok()) return new EvidenceError(access);
  return new EvidenceReactor(node_->evidence(), request->sha256(), request->offset(),
                             std::min<size_t>(1 << 20, max_message_bytes_ - 1024));
}

grpc::ServerUnaryReactor* PeerServiceImpl::ExchangeTreeHeads(
    grpc::CallbackServerContext* ctx, const v1::ExchangeTreeHeadsRequest* request,
    v1::ExchangeTreeHeadsResponse* response) {
  auto peer = Authenticate(ctx, "ExchangeTreeHeads");
  if (!peer.ok()) return Done(ctx, peer.status());
  auto ours = node_->ExchangeTreeHeads(*peer, request->head());
  if (ours.ok()) *response->mutable_head() = *std::move(ours);
  return Done(ctx, ours.status());
}

grpc::ServerUnaryReactor* PeerServiceImpl::GetConsistencyProof(
    grpc::CallbackServerContext* ctx, const v1::GetConsistencyProofRequest* request,
    v1::GetConsistencyProofResponse* response) {
  auto peer = Authenticate(ctx, "GetConsistencyProof");
  if (!peer.ok()) return Done(ctx, peer.status());
  auto proof = node_->ConsistencyProof(request->old_size(), request->new_size());
  if (proof.ok()) {
    for (auto& h : *proof) response->add_hashes(std::move(h));
  }
  return Done(ctx, proof.status());
}

grpc::ServerUnaryReactor* PeerServiceImpl::ReportSplitView(
    grpc::CallbackServerContext* ctx, const v1::ReportSplitViewRequest* request,
    v1::ReportSplitViewResponse* response) {
  auto peer = Authenticate(ctx, "ReportSplitView");
  if (!peer.ok()) return Done(ctx, peer.status());
  return Done(ctx, node_->HandleSplitViewReport(*peer, request->first(), request->second()));
}

grpc::ServerUnaryReactor* PeerServiceImpl::AnnounceKey(grpc::CallbackServerContext* ctx,
                                                       const v1::AnnounceKeyRequest* request,
                                                       v1::AnnounceKeyResponse* response) {
  auto peer = Authenticate(ctx, "AnnounceKey");
  if (!peer.ok()) return Done(ctx, peer.status());
  absl::StatusOr<bool> changed =
      request->ByteSizeLong() > max_message_bytes_
          ? absl::ResourceExhaustedError("key announcement over the size limit")
          : node_->ReceiveKeyAnnouncement(*peer, *request);
  if (changed.ok()) {
    response->set_changed(*changed);
  } else {
    LogEvent(LogLevel::kWarning, "peer_key_announcement_rejected",
             {{"peer", *peer},
              {"code", absl::StatusCodeToString(changed.status().code())},
              {"reason", std::string(changed.status().message())}});
    node_->RecordPeerRefusal("peer:" + *peer, Sha256(request->announcement().payload()),
                             changed.status());
  }
  return Done(ctx, changed.status());
}

// --- Operator service. ---

absl::StatusOr<CertIdentity> AuthenticateOperatorCall(
    Node* node, grpc::CallbackServerContext* ctx, const char* method,
    std::initializer_list<const char*> roles) {
  auto [cert, chain] = PeerCertificatePem(*ctx);
  absl::StatusOr<CertIdentity> op = node->AuthenticateOperator(cert, chain);
  if (op.ok() && std::none_of(roles.begin(), roles.end(),
                              [&](const char* r) { return op->HasRole(r); })) {
    std::vector<std::string> names(roles.begin(), roles.end());
    op = absl::PermissionDeniedError(absl::StrCat(
        "operator ", op->operator_name, " lacks the ", absl::StrJoin(names, " or "),
        " role needed for ", method, " (a urn:comity:role:", names.front(),
        " URI in the operator certificate)"));
  }
  if (!op.ok()) {
    LogEvent(LogLevel::kWarning, "operator_denied",
             {{"method", method},
              {"tls_peer", ctx->peer()},
              {"reason", std::string(op.status().message())}});
    node->RecordAuthFailure(absl::StrCat("tls:", ctx->peer()),
                            absl::StrCat(method, ": ", op.status().message()));
  }
  return op;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::SubmitRequest(
    grpc::CallbackServerContext* ctx, const v1::SubmitRequestRequest* request,
    v1::SubmitRequestResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "SubmitRequest", {"submitter"});
  if (!op.ok()) return Done(ctx, op.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  node_->Submit(op->operator_name, request->draft(),
                [this, reactor, response](absl::StatusOr<v1::RequestRecord> record) {
                  if (record.ok()) {
                    for (auto& key : node_->SignerKeys({*record})) {
                      *response->add_signer_keys() = key;
                    }
                    *response->mutable_record() = *std::move(record);
                  }
                  reactor->Finish(ToGrpcStatus(record.status()));
                });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ApproveRequest(
    grpc::CallbackServerContext* ctx, const v1::ApproveRequestRequest* request,
    v1::ApproveRequestResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "ApproveRequest", {"approver"});
  if (!op.ok()) return Done(ctx, op.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  node_->Approve(op->operator_name, request->id(),
                 [this, reactor, response](absl::StatusOr<v1::RequestRecord> record) {
                   if (record.ok()) {
                     for (auto& key : node_->SignerKeys({*record})) {
                       *response->add_signer_keys() = key;
                     }
                     *response->mutable_record() = *std::move(record);
                   }
                   reactor->Finish(ToGrpcStatus(record.status()));
                 });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::DecideRequest(
    grpc::CallbackServerContext* ctx, const v1::DecideRequestRequest* request,
    v1::DecideRequestResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "DecideRequest", {"reviewer", "submitter"});
  if (!op.ok()) return Done(ctx, op.status());
  Node::Decision d;
  d.action = request->action();
  for (int g : request->refusal_grounds()) {
    d.refusal_grounds.push_back(static_cast<v1::RefusalGround>(g));
  }
  d.reasons = request->reasons();
  d.consultation = request->consultation();
  d.text = request->text();
  d.final_response = request->final_response();
  d.evidence_paths.assign(request->evidence_paths().begin(), request->evidence_paths().end());
  d.release_conditions.assign(request->release_conditions().begin(),
                              request->release_conditions().end());
  auto record = node_->Act(*op, request->id(), d);
  if (absl::IsPermissionDenied(record.status())) {
    node_->RecordAuthFailure("operator:" + op->operator_name,
                             absl::StrCat("DecideRequest: ", record.status().message()));
  }
  if (record.ok()) *response->mutable_record() = *std::move(record);
  return Done(ctx, record.status());
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListPeers(grpc::CallbackServerContext* ctx,
                                                         const v1::ListPeersRequest*,
                                                         v1::ListPeersResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "ListPeers",
                                     {"submitter", "reviewer", "approver", "auditor", "admin"});
  if (!op.ok()) return Done(ctx, op.status());
  auto peers = node_->Peers();
  if (peers.ok()) {
    for (auto& p : *peers) *response->add_peers() = std::move(p);
  }
  return Done(ctx, peers.status());
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListKeys(grpc::CallbackServerContext* ctx,
                                                        const v1::ListKeysRequest*,
                                                        v1::ListKeysResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "ListKeys",
                                     {"submitter", "reviewer", "approver", "auditor", "admin"});
  if (!op.ok()) return Done(ctx, op.status());
  for (auto& k : node_->Keys()) *response->add_keys() = std::move(k);
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListOverdue(grpc::CallbackServerContext* ctx,
                                                           const v1::ListOverdueRequest*,
                                                           v1::ListOverdueResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "ListOverdue",
                                     {"submitter", "reviewer", "approver", "auditor", "admin"});
  if (!op.ok()) return Done(ctx, op.status());
  auto deadlines = node_->Overdue();
  if (deadlines.ok()) {
    for (auto& d : *deadlines) *response->add_deadlines() = std::move(d);
  }
  return Done(ctx, deadlines.status());
}

grpc::ServerWriteReactor<v1::EvidenceChunk>* OperatorServiceImpl::ExportEvidence(
    grpc::CallbackServerContext* ctx, const v1::ExportEvidenceRequest* request) {
  auto op = AuthenticateOperatorCall(node_, ctx, "ExportEvidence",
                                     {"submitter", "reviewer", "approver", "auditor", "admin"});
  if (!op.ok()) return new EvidenceError(op.status());
  absl::Status ok = node_->BeginEvidenceExport(op->operator_name, request->id(),
                                               request->sha256(), request->offset(),
                                               request->allow_tlp_red());
  if (!ok.ok()) return new EvidenceError(ok);
  return new EvidenceReactor(node_->evidence(), request->sha256(), request->offset(), 1 << 20);
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListRequests(
    grpc::CallbackServerContext* ctx, const v1::ListRequestsRequest* request,
    v1::ListRequestsResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "ListRequests",
                                     {"submitter", "reviewer", "approver", "auditor", "admin"});
  if (!op.ok()) return Done(ctx, op.status());
  auto records = node_->List(request->direction(), static_cast<int>(request->limit()));
  if (records.ok()) {
    for (auto& r : *records) *response->add_records() = std::move(r);
  }
  return Done(ctx, records.status());
}

grpc::ServerUnaryReactor* OperatorServiceImpl::GetRequest(
    grpc::CallbackServerContext* ctx, const v1::GetRequestRequest* request,
    v1::GetRequestResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "GetRequest",
                                     {"submitter", "reviewer", "approver", "auditor", "admin"});
  if (!op.ok()) return Done(ctx, op.status());
  auto records = request->chain() ? node_->Chain(request->id()) : node_->Get(request->id());
  if (records.ok()) {
    for (auto& key : node_->SignerKeys(*records)) *response->add_signer_keys() = key;
    for (const auto& r : *records) {
      for (const auto& env : r.transitions()) {
        v1::Transition t;
        if (!t.ParseFromString(env.payload())) continue;
        for (const auto& f : t.evidence()) {
          if (!node_->evidence()->Has(f.sha256())) continue;
          v1::StoredEvidence* s = response->add_stored_evidence();
          s->set_sha256(f.sha256());
          s->set_path(node_->evidence()->PathOf(f.sha256()));
        }
      }
    }
    for (auto& r : *records) *response->add_records() = std::move(r);
  }
  return Done(ctx, records.status());
}

// --- Audit service. ---

grpc::ServerUnaryReactor* AuditServiceImpl::GetEntries(grpc::CallbackServerContext* ctx,
                                                       const v1::GetAuditEntriesRequest* r,
                                                       v1::GetAuditEntriesResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "audit.GetEntries", {"auditor"});
  if (!op.ok()) return Done(ctx, op.status());
  AuditFilter f;
  f.from_index = r->from_index();
  f.limit = r->limit();
  f.from_time_us = r->from_time_unix_micros();
  f.to_time_us = r->to_time_unix_micros();
  f.request_id = r->request_id();
  f.party = r->party();
  f.actor = r->actor();
  f.type = r->type();
  auto entries = node_->store()->audit().Entries(f);
  auto size = node_->store()->audit().Size();
  absl::Status st = entries.ok() ? size.status() : entries.status();
  if (st.ok()) {
    for (auto& e : *entries) response->add_entries(std::move(e));
    response->set_tree_size(*size);
  }
  return Done(ctx, st);
}

grpc::ServerUnaryReactor* AuditServiceImpl::GetTreeHeads(grpc::CallbackServerContext* ctx,
                                                         const v1::GetTreeHeadsRequest*,
                                                         v1::GetTreeHeadsResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "audit.GetTreeHeads", {"auditor"});
  if (!op.ok()) return Done(ctx, op.status());
  auto heads = node_->store()->audit().TreeHeads();
  if (heads.ok()) {
    for (auto& h : *heads) *response->add_heads() = std::move(h.signed_head);
    for (auto& k : node_->OwnKeys()) *response->add_keys() = std::move(k);
  }
  return Done(ctx, heads.status());
}

grpc::ServerUnaryReactor* AuditServiceImpl::SignTreeHead(grpc::CallbackServerContext* ctx,
                                                         const v1::SignTreeHeadRequest*,
                                                         v1::SignTreeHeadResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "audit.SignTreeHead", {"auditor"});
  if (!op.ok()) return Done(ctx, op.status());
  auto head = node_->SignTreeHead();
  if (head.ok()) *response->mutable_head() = *std::move(head);
  return Done(ctx, head.status());
}

grpc::ServerUnaryReactor* AuditServiceImpl::GetProof(grpc::CallbackServerContext* ctx,
                                                     const v1::GetAuditProofRequest* r,
                                                     v1::GetAuditProofResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "audit.GetProof", {"auditor"});
  if (!op.ok()) return Done(ctx, op.status());
  Store* store = node_->store();
  auto status = [&]() -> absl::Status {
    auto size = store->audit().Size();
    if (!size.ok()) return size.status();
    const uint64_t tree_size = r->tree_size() == 0 ? *size : r->tree_size();
    response->set_tree_size(tree_size);
    auto root = store->audit().RootAt(tree_size);
    if (!root.ok()) return root.status();
    response->set_root(*root);
    if (r->consistency()) {
      auto old_root = store->audit().RootAt(r->old_size());
      if (!old_root.ok()) return old_root.status();
      response->set_old_root(*old_root);
      auto proof = store->audit().ConsistencyProofAt(r->old_size(), tree_size);
      if (!proof.ok()) return proof.status();
      for (auto& h : *proof) response->add_hashes(std::move(h));
      return absl::OkStatus();
    }
    auto proof = store->audit().InclusionProofAt(r->index(), tree_size);
    if (!proof.ok()) return proof.status();
    for (auto& h : *proof) response->add_hashes(std::move(h));
    AuditFilter f;
    f.from_index = r->index();
    f.limit = 1;
    auto entry = store->audit().Entries(f);
    if (!entry.ok()) return entry.status();
    if (!entry->empty()) response->set_entry((*entry)[0]);
    return absl::OkStatus();
  }();
  return Done(ctx, status);
}

grpc::ServerUnaryReactor* AuditServiceImpl::Verify(grpc::CallbackServerContext* ctx,
                                                   const v1::VerifyAuditLogRequest*,
                                                   v1::VerifyAuditLogResponse* response) {
  auto op = AuthenticateOperatorCall(node_, ctx, "audit.Verify", {"auditor"});
  if (!op.ok()) return Done(ctx, op.status());
  auto report = node_->VerifyAuditLog();
  if (report.ok()) {
    response->set_ok(report->ok);
    response->set_entries(report->entries);
    response->set_root(report->root);
    response->set_heads(report->heads);
    response->set_nodes_checked(report->nodes_checked);
    response->set_error(report->error);
    response->set_summary(report->Summary());
  }
  return Done(ctx, report.status());
}

namespace {

// Streams the log in chunks: the first carries the heads and keys.
class ExportReactor final : public grpc::ServerWriteReactor<v1::AuditBundle> {
 public:
  ExportReactor(Node* node, uint64_t size) : node_(node), size_(size) {
    v1::AuditBundle first;
    first.set_party(node->party());
    first.set_exported_at_unix_micros(absl::ToUnixMicros(absl::Now()));
    auto heads = node->store()->audit().TreeHeads();
    if (!heads.ok()) {
      Finish(ToGrpcStatus(heads.status()));
      return;
    }
    for (const auto& h : *heads) first.add_tree_heads(h.signed_head.SerializeAsString());
    for (const auto& k : node->OwnKeys()) {
      v1::PublicKeyEntry* e = first.add_public_keys();
      e->set_party(k.party());
      e->set_key_id(k.key_id());
      e->set_ed25519_public_key(k.ed25519_public_key());
    }
    current_ = std::move(first);
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (next_ >= size_) {
      Finish(grpc::Status::OK);
      return;
    }
    current_.Clear();
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    AuditFilter f;
    f.from_index = next_;
    f.limit = kExportChunk;
    auto entries = node_->store()->audit().Entries(f);
    if (!entries.ok()) {
      Finish(ToGrpcStatus(entries.status()));
      return;
    }
    for (auto& e : *entries) current_.add_entries(std::move(e));
    next_ += entries->size();
    if (entries->empty()) next_ = size_;
    StartWrite(&current_);
  }
  Node* node_;
  uint64_t size_;
  uint64_t next_ = 0;
  v1::AuditBundle current_;
};

class ErrorWriter final : public grpc::ServerWriteReactor<v1::AuditBundle> {
 public:
  explicit ErrorWriter(const absl::Status& st) { Finish(ToGrpcStatus(st)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::AuditBundle>* AuditServiceImpl::Export(
    grpc::CallbackServerContext* ctx, const v1::ExportAuditLogRequest*) {
  auto op = AuthenticateOperatorCall(node_, ctx, "audit.Export", {"auditor"});
  if (!op.ok()) return new ErrorWriter(op.status());
  node_->RecordAuditExport("auditor:" + op->operator_name);
  auto size = node_->store()->audit().Size();
  if (!size.ok()) return new ErrorWriter(size.status());
  return new ExportReactor(node_, *size);
}

// --- Operations: held heads (peers), backup (admins); docs/backup.md. ---

grpc::ServerUnaryReactor* PeerServiceImpl::GetHeldHead(grpc::CallbackServerContext* ctx,
                                                       const v1::GetHeldHeadRequest*,
                                                       v1::GetHeldHeadResponse* response) {
  auto peer = Authenticate(ctx, "GetHeldHead");
  if (!peer.ok()) return Done(ctx, peer.status());
  auto held = node_->HeldHeadOf(*peer);
  if (held.ok() && held->has_value()) *response->mutable_head() = **held;
  return Done(ctx, held.status());
}

namespace {

// Streams a backup file in chunks of 1 MiB, then deletes it.
class BackupReactor final : public grpc::ServerWriteReactor<v1::BackupChunk> {
 public:
  static constexpr size_t kChunk = 1 << 20;

  BackupReactor(std::string path, uint64_t audit_size)
      : path_(std::move(path)), in_(path_, std::ios::binary | std::ios::ate) {
    if (!in_) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, "cannot read the backup copy"));
      return;
    }
    total_ = static_cast<uint64_t>(in_.tellg());
    in_.seekg(0);
    chunk_.set_total_bytes(total_);
    chunk_.set_audit_size(audit_size);
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (sent_ >= total_ && last_sent_) {
      Finish(grpc::Status::OK);
      return;
    }
    chunk_.Clear();
    Next();
  }
  void OnDone() override {
    in_.close();
    std::remove(path_.c_str());
    delete this;
  }

 private:
  void Next() {
    std::string buf(static_cast<size_t>(std::min<uint64_t>(kChunk, total_ - sent_)), '\0');
    if (!buf.empty() && !in_.read(buf.data(), static_cast<std::streamsize>(buf.size()))) {
      Finish(grpc::Status(grpc::StatusCode::INTERNAL, "cannot read the backup copy"));
      return;
    }
    sent_ += buf.size();
    hash_.Update(buf);
    chunk_.set_data(std::move(buf));
    if (sent_ >= total_) {
      chunk_.set_sha256(hash_.Finish());
      last_sent_ = true;
    }
    StartWrite(&chunk_);
  }

  const std::string path_;
  std::ifstream in_;
  uint64_t total_ = 0;
  uint64_t sent_ = 0;
  bool last_sent_ = false;
  Sha256Stream hash_;
  v1::BackupChunk chunk_;
};

class BackupErrorWriter final : public grpc::ServerWriteReactor<v1::BackupChunk> {
 public:
  explicit BackupErrorWriter(const absl::Status& st) { Finish(ToGrpcStatus(st)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::BackupChunk>* OperatorServiceImpl::Backup(
    grpc::CallbackServerContext* ctx, const v1::BackupRequest*) {
  auto op = AuthenticateOperatorCall(node_, ctx, "Backup", {"admin"});
  if (!op.ok()) return new BackupErrorWriter(op.status());
  absl::StatusOr<Node::BackupCopy> copy = node_->WriteBackup(op->operator_name);
  if (!copy.ok()) return new BackupErrorWriter(copy.status());
  return new BackupReactor(copy->path, copy->origin.audit_size);
}

}  // namespace comity
