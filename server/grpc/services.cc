#include "server/grpc/services.h"

#include "absl/strings/str_cat.h"
#include "server/crypto/ed25519.h"
#include "server/grpc/status_util.h"
#include "server/util/log.h"

namespace comity {

grpc::ServerUnaryReactor* PeerServiceImpl::DeliverRequest(
    grpc::CallbackServerContext* ctx, const v1::DeliverRequestRequest* request,
    v1::DeliverRequestResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  auto [cert, chain] = PeerCertificatePem(*ctx);
  absl::StatusOr<std::string> peer = node_->AuthenticatePeer(cert, chain);
  absl::Status status = peer.status();
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
    LogEvent(LogLevel::kWarning, "peer_request_rejected",
             {{"peer", peer.ok() ? *peer : std::string("(unauthenticated)")},
              {"tls_peer", ctx->peer()},
              {"payload_sha256", HexEncode(Sha256(request->request().payload()))},
              {"code", absl::StatusCodeToString(status.code())},
              {"reason", std::string(status.message())}});
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

absl::StatusOr<std::string> OperatorServiceImpl::Authenticate(
    grpc::CallbackServerContext* ctx, const char* method) {
  auto [cert, chain] = PeerCertificatePem(*ctx);
  absl::StatusOr<std::string> op = node_->AuthenticateOperator(cert, chain);
  if (!op.ok()) {
    LogEvent(LogLevel::kWarning, "operator_denied",
             {{"method", method},
              {"tls_peer", ctx->peer()},
              {"reason", std::string(op.status().message())}});
  }
  return op;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::SubmitRequest(
    grpc::CallbackServerContext* ctx, const v1::SubmitRequestRequest* request,
    v1::SubmitRequestResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<std::string> op = Authenticate(ctx, "SubmitRequest");
  if (!op.ok()) {
    reactor->Finish(ToGrpcStatus(op.status()));
    return reactor;
  }
  node_->Submit(*op, request->draft(),
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

grpc::ServerUnaryReactor* OperatorServiceImpl::ListRequests(
    grpc::CallbackServerContext* ctx, const v1::ListRequestsRequest* request,
    v1::ListRequestsResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<std::string> op = Authenticate(ctx, "ListRequests");
  absl::Status status = op.status();
  if (status.ok()) {
    auto records = node_->List(request->direction(), static_cast<int>(request->limit()));
    status = records.status();
    if (records.ok()) {
      for (auto& r : *records) *response->add_records() = std::move(r);
    }
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

grpc::ServerUnaryReactor* OperatorServiceImpl::GetRequest(
    grpc::CallbackServerContext* ctx, const v1::GetRequestRequest* request,
    v1::GetRequestResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<std::string> op = Authenticate(ctx, "GetRequest");
  absl::Status status = op.status();
  if (status.ok()) {
    auto records = node_->Get(request->id());
    status = records.status();
    if (records.ok()) {
      for (auto& key : node_->SignerKeys(*records)) *response->add_signer_keys() = key;
      for (auto& r : *records) *response->add_records() = std::move(r);
    }
  }
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

}  // namespace comity
