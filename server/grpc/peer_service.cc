// PeerService: each handler hands the call to Node::peer_api().
#include "server/grpc/adapter_util.h"
#include "server/grpc/services.h"

namespace comity {

grpc::ServerUnaryReactor* PeerServiceImpl::DeliverRequest(
    grpc::CallbackServerContext* ctx, const v1::DeliverRequestRequest* request,
    v1::DeliverRequestResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto receipt =
        node_->peer_api().DeliverRequest(CallOf(ctx, *request), request->request());
    if (receipt.ok()) *response->mutable_receipt() = *std::move(receipt);
    return receipt.status();
  });
}

grpc::ServerUnaryReactor* PeerServiceImpl::DeliverRequests(
    grpc::CallbackServerContext* ctx, const v1::DeliverRequestsRequest* request,
    v1::DeliverRequestsResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    std::vector<const v1::SignedEnvelope*> requests;
    requests.reserve(request->requests_size());
    for (const v1::SignedEnvelope& r : request->requests()) requests.push_back(&r);
    auto outcomes = node_->peer_api().DeliverRequests(CallOf(ctx, *request), requests);
    if (outcomes.ok()) {
      for (absl::StatusOr<v1::SignedEnvelope>& o : *outcomes) {
        v1::DeliveryOutcome* out = response->add_outcomes();
        if (o.ok()) {
          *out->mutable_receipt() = *std::move(o);
        } else {
          out->set_code(static_cast<int32_t>(o.status().code()));
          out->set_message(std::string(o.status().message()));
        }
      }
    }
    return outcomes.status();
  });
}

grpc::ServerUnaryReactor* PeerServiceImpl::DeliverTransition(
    grpc::CallbackServerContext* ctx, const v1::DeliverTransitionRequest* request,
    v1::DeliverTransitionResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto ack =
        node_->peer_api().DeliverTransition(CallOf(ctx, *request), request->transition());
    if (ack.ok()) *response->mutable_ack() = *std::move(ack);
    return ack.status();
  });
}

grpc::ServerUnaryReactor* PeerServiceImpl::ProposeTransition(
    grpc::CallbackServerContext* ctx, const v1::ProposeTransitionRequest* request,
    v1::ProposeTransitionResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto transition =
        node_->peer_api().ProposeTransition(CallOf(ctx, *request), request->proposal());
    if (transition.ok()) *response->mutable_transition() = *std::move(transition);
    return transition.status();
  });
}

grpc::ServerWriteReactor<v1::EvidenceChunk>* PeerServiceImpl::FetchEvidence(
    grpc::CallbackServerContext* ctx, const v1::FetchEvidenceRequest* request) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) {
    return new ErrorWriter<v1::EvidenceChunk>(closed);
  }
  return new EvidenceWriter(
      node_->peer_api().FetchEvidence(CallOf(ctx, *request), request->request_id(),
                                      request->sha256(), request->offset()));
}

grpc::ServerUnaryReactor* PeerServiceImpl::ExchangeTreeHeads(
    grpc::CallbackServerContext* ctx, const v1::ExchangeTreeHeadsRequest* request,
    v1::ExchangeTreeHeadsResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto ours = node_->peer_api().ExchangeTreeHeads(CallOf(ctx, *request), request->head());
    if (ours.ok()) *response->mutable_head() = *std::move(ours);
    return ours.status();
  });
}

grpc::ServerUnaryReactor* PeerServiceImpl::GetConsistencyProof(
    grpc::CallbackServerContext* ctx, const v1::GetConsistencyProofRequest* request,
    v1::GetConsistencyProofResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto proof = node_->peer_api().GetConsistencyProof(
        CallOf(ctx, *request), request->old_size(), request->new_size());
    if (proof.ok()) {
      for (auto& h : *proof) response->add_hashes(std::move(h));
    }
    return proof.status();
  });
}

grpc::ServerUnaryReactor* PeerServiceImpl::ReportSplitView(
    grpc::CallbackServerContext* ctx, const v1::ReportSplitViewRequest* request,
    v1::ReportSplitViewResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    return node_->peer_api().ReportSplitView(CallOf(ctx, *request), request->first(),
                                             request->second());
  });
}

grpc::ServerUnaryReactor* PeerServiceImpl::AnnounceKey(
    grpc::CallbackServerContext* ctx, const v1::AnnounceKeyRequest* request,
    v1::AnnounceKeyResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto changed = node_->peer_api().AnnounceKey(CallOf(ctx, *request), *request);
    if (changed.ok()) response->set_changed(*changed);
    return changed.status();
  });
}

grpc::ServerUnaryReactor* PeerServiceImpl::GetHeldHead(
    grpc::CallbackServerContext* ctx, const v1::GetHeldHeadRequest* request,
    v1::GetHeldHeadResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto held = node_->peer_api().GetHeldHead(CallOf(ctx, *request));
    if (held.ok() && held->has_value()) *response->mutable_head() = **held;
    return held.status();
  });
}

grpc::ServerUnaryReactor* PeerServiceImpl::GetSharedRecords(
    grpc::CallbackServerContext* ctx, const v1::GetSharedRecordsRequest* request,
    v1::GetSharedRecordsResponse* response) {
  if (absl::Status closed = gate_->Check(); !closed.ok()) return Done(ctx, closed);
  return Offload(ctx, pool_, [this, ctx, request, response]() -> absl::Status {
    auto page = node_->peer_api().GetSharedRecords(CallOf(ctx, *request), *request);
    if (page.ok()) *response = std::move(*page);
    return page.status();
  });
}

}  // namespace comity
