// OperatorService: each handler hands the call to Node::operator_api().
#include <cstdio>
#include <fstream>

#include "server/crypto/sha256.h"
#include "server/grpc/adapter_util.h"
#include "server/grpc/services.h"

namespace comity {
namespace {

// Answers a submission or approval with the record and its signer keys.
template <typename Response>
OperatorApi::ViewDone Reply(grpc::ServerUnaryReactor* reactor, Response* response) {
  return [reactor, response](absl::StatusOr<RequestView> view) {
    if (view.ok() && !view->records.empty()) {
      for (auto& key : view->signer_keys) *response->add_signer_keys() = std::move(key);
      *response->mutable_record() = std::move(view->records.front());
    }
    reactor->Finish(ToGrpcStatus(view.status()));
  };
}

// Receives an upload (OperatorService.UploadEvidence): the first message
// opens it (admission, role, offset), every message's data is written
// through; at the client's end of the stream the file is finished if
// complete. The first error ends the call. Deletes itself.
class EvidenceUploadReader final : public grpc::ServerReadReactor<v1::EvidenceUploadChunk> {
 public:
  EvidenceUploadReader(Node* node, grpc::CallbackServerContext* ctx,
                       v1::UploadEvidenceResponse* response)
      : node_(node), ctx_(ctx), response_(response) {
    StartRead(&chunk_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {  // The client's end of the stream.
      End();
      return;
    }
    if (upload_ == nullptr) {
      auto opened = node_->operator_api().OpenEvidenceUpload(
          CallOf(ctx_, chunk_), chunk_.request_id(), chunk_.sha256(), chunk_.offset());
      if (!opened.ok()) {
        Finish(ToGrpcStatus(opened.status()));
        return;
      }
      upload_ = *std::move(opened);
    }
    absl::Status appended = upload_->Append(chunk_.data());
    if (!appended.ok()) {
      Finish(ToGrpcStatus(appended));
      return;
    }
    StartRead(&chunk_);
  }
  void OnDone() override { delete this; }

 private:
  void End() {
    if (upload_ == nullptr) {
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "an upload names its request, file and offset in its first "
                          "message"));
      return;
    }
    response_->set_received(upload_->received());
    if (upload_->complete()) {
      absl::StatusOr<v1::EvidenceFile> file = upload_->Finish();
      if (!file.ok()) {
        Finish(ToGrpcStatus(file.status()));
        return;
      }
      *response_->mutable_file() = *std::move(file);
    }
    Finish(grpc::Status::OK);
  }

  Node* const node_;
  grpc::CallbackServerContext* const ctx_;
  v1::UploadEvidenceResponse* const response_;
  v1::EvidenceUploadChunk chunk_;
  std::unique_ptr<EvidenceUploadStream> upload_;
};

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
    std::string buf(static_cast<size_t>(std::min<uint64_t>(kChunk, total_ - sent_)),
                    '\0');
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

}  // namespace

grpc::ServerUnaryReactor* OperatorServiceImpl::SubmitRequest(
    grpc::CallbackServerContext* ctx, const v1::SubmitRequestRequest* request,
    v1::SubmitRequestResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // The call finishes when the outbox has tried the request (Reply).
  pool_->Schedule([this, ctx, request, response, reactor] {
    node_->operator_api().Submit(CallOf(ctx, *request), request->draft(),
                                 Reply(reactor, response));
  });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ApproveRequest(
    grpc::CallbackServerContext* ctx, const v1::ApproveRequestRequest* request,
    v1::ApproveRequestResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  // The call finishes when the outbox has tried the request (Reply).
  pool_->Schedule([this, ctx, request, response, reactor] {
    node_->operator_api().Approve(CallOf(ctx, *request), request->id(),
                                  Reply(reactor, response));
  });
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::DecideRequest(
    grpc::CallbackServerContext* ctx, const v1::DecideRequestRequest* request,
    v1::DecideRequestResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    CaseBook::Decision d;
    d.action = request->action();
    for (int g : request->refusal_grounds()) {
      d.refusal_grounds.push_back(static_cast<v1::RefusalGround>(g));
    }
    d.reasons = request->reasons();
    d.consultation = request->consultation();
    d.text = request->text();
    d.final_response = request->final_response();
    d.evidence_sha256.assign(request->evidence_sha256().begin(),
                             request->evidence_sha256().end());
    d.release_conditions.assign(request->release_conditions().begin(),
                                request->release_conditions().end());
    auto record = node_->operator_api().Decide(CallOf(ctx, *request), request->id(), d,
                                               request->evidence_paths_size());
    if (record.ok()) *response->mutable_record() = *std::move(record);
    return record.status();
  });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::BeginEvidenceUpload(
    grpc::CallbackServerContext* ctx, const v1::BeginEvidenceUploadRequest* request,
    v1::BeginEvidenceUploadResponse* response) {
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto offset = node_->operator_api().BeginEvidenceUpload(
        CallOf(ctx, *request), request->request_id(), request->name(), request->size(),
        request->sha256());
    if (offset.ok()) {
      response->set_offset(*offset);
      response->set_max_chunk_bytes(node_->evidence_intake().max_chunk_bytes());
    }
    return offset.status();
  });
}

grpc::ServerReadReactor<v1::EvidenceUploadChunk>* OperatorServiceImpl::UploadEvidence(
    grpc::CallbackServerContext* ctx, v1::UploadEvidenceResponse* response) {
  return new EvidenceUploadReader(node_, ctx, response);
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ImportEvidence(
    grpc::CallbackServerContext* ctx, const v1::ImportEvidenceRequest* request,
    v1::ImportEvidenceResponse* response) {
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto file = node_->operator_api().ImportEvidence(CallOf(ctx, *request),
                                                     request->request_id(), request->name());
    if (file.ok()) *response->mutable_file() = *std::move(file);
    return file.status();
  });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::RetryEvidence(
    grpc::CallbackServerContext* ctx, const v1::RetryEvidenceRequest* request,
    v1::RetryEvidenceResponse* response) {
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto files = node_->operator_api().RetryEvidence(CallOf(ctx, *request), request->id());
    if (files.ok()) response->set_files(static_cast<uint32_t>(*files));
    return files.status();
  });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListPeers(
    grpc::CallbackServerContext* ctx, const v1::ListPeersRequest* request,
    v1::ListPeersResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto peers = node_->operator_api().ListPeers(CallOf(ctx, *request));
    if (peers.ok()) {
      for (auto& p : *peers) *response->add_peers() = std::move(p);
    }
    return peers.status();
  });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListKeys(
    grpc::CallbackServerContext* ctx, const v1::ListKeysRequest* request,
    v1::ListKeysResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto keys = node_->operator_api().ListKeys(CallOf(ctx, *request));
    if (keys.ok()) {
      for (auto& k : *keys) *response->add_keys() = std::move(k);
    }
    return keys.status();
  });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListOverdue(
    grpc::CallbackServerContext* ctx, const v1::ListOverdueRequest* request,
    v1::ListOverdueResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto page = node_->operator_api().ListOverdue(
        CallOf(ctx, *request), static_cast<int>(request->limit()), request->page_token());
    if (page.ok()) {
      for (auto& d : page->deadlines) *response->add_deadlines() = std::move(d);
      response->set_next_page_token(std::move(page->next_page_token));
    }
    return page.status();
  });
}

grpc::ServerWriteReactor<v1::EvidenceChunk>* OperatorServiceImpl::ExportEvidence(
    grpc::CallbackServerContext* ctx, const v1::ExportEvidenceRequest* request) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) {
    return new ErrorWriter<v1::EvidenceChunk>(closed);
  }
  return new EvidenceWriter(node_->operator_api().ExportEvidence(
      CallOf(ctx, *request), request->id(), request->sha256(), request->offset(),
      request->allow_tlp_red()));
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ExportCustodyPackage(
    grpc::CallbackServerContext* ctx, const v1::ExportCustodyPackageRequest* request,
    v1::ExportCustodyPackageResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto package = node_->operator_api().ExportCustodyPackage(
        CallOf(ctx, *request), request->id(), request->destination(),
        std::vector<std::string>(request->files().begin(), request->files().end()),
        request->allow_tlp_red());
    if (package.ok()) {
      response->set_package(std::move(package->bytes));
      response->set_sha256(std::move(package->sha256));
    }
    return package.status();
  });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::ListRequests(
    grpc::CallbackServerContext* ctx, const v1::ListRequestsRequest* request,
    v1::ListRequestsResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto page = node_->operator_api().ListRequests(CallOf(ctx, *request), request->direction(),
                                                   static_cast<int>(request->limit()),
                                                   request->page_token());
    if (page.ok()) {
      for (auto& r : page->records) *response->add_records() = std::move(r);
      response->set_next_page_token(std::move(page->next_cursor));
    }
    return page.status();
  });
}

grpc::ServerUnaryReactor* OperatorServiceImpl::GetRequest(
    grpc::CallbackServerContext* ctx, const v1::GetRequestRequest* request,
    v1::GetRequestResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto view = node_->operator_api().GetRequest(CallOf(ctx, *request), request->id(),
                                                 request->chain());
    if (view.ok()) {
      for (auto& key : view->signer_keys) *response->add_signer_keys() = std::move(key);
      for (auto& s : view->stored_evidence) *response->add_stored_evidence() = std::move(s);
      for (auto& p : view->pending_evidence) *response->add_pending_evidence() = std::move(p);
      for (auto& d : view->deadlines) *response->add_deadlines() = std::move(d);
      for (auto& r : view->records) *response->add_records() = std::move(r);
    }
    return view.status();
  });
}

grpc::ServerWriteReactor<v1::BackupChunk>* OperatorServiceImpl::Backup(
    grpc::CallbackServerContext* ctx, const v1::BackupRequest* request) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) {
    return new ErrorWriter<v1::BackupChunk>(closed);
  }
  absl::StatusOr<Backup::Copy> copy =
      node_->operator_api().TakeBackup(CallOf(ctx, *request));
  if (!copy.ok()) return new ErrorWriter<v1::BackupChunk>(copy.status());
  return new BackupReactor(copy->path, copy->origin.audit_size);
}

}  // namespace comity
