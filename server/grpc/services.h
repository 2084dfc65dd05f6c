// gRPC adapters: each handler authenticates the caller from its TLS
// certificate, converts protobuf to the Node's calls and the result back.
// No logic lives here.
#ifndef COMITY_SERVER_GRPC_SERVICES_H_
#define COMITY_SERVER_GRPC_SERVICES_H_

#include <cstddef>

#include "comity/v1/operator.grpc.pb.h"
#include "comity/v1/peer.grpc.pb.h"
#include "server/node/node.h"

namespace comity {

// Thread-safe. `node` must outlive the service.
class PeerServiceImpl final : public v1::PeerService::CallbackService {
 public:
  PeerServiceImpl(Node* node, size_t max_message_bytes)
      : node_(node), max_message_bytes_(max_message_bytes) {}
  grpc::ServerUnaryReactor* DeliverRequest(grpc::CallbackServerContext* ctx,
                                           const v1::DeliverRequestRequest* request,
                                           v1::DeliverRequestResponse* response) override;

 private:
  Node* node_;
  size_t max_message_bytes_;
};

// Thread-safe. `node` must outlive the service.
class OperatorServiceImpl final : public v1::OperatorService::CallbackService {
 public:
  explicit OperatorServiceImpl(Node* node) : node_(node) {}
  grpc::ServerUnaryReactor* SubmitRequest(grpc::CallbackServerContext* ctx,
                                          const v1::SubmitRequestRequest* request,
                                          v1::SubmitRequestResponse* response) override;
  grpc::ServerUnaryReactor* ListRequests(grpc::CallbackServerContext* ctx,
                                         const v1::ListRequestsRequest* request,
                                         v1::ListRequestsResponse* response) override;
  grpc::ServerUnaryReactor* GetRequest(grpc::CallbackServerContext* ctx,
                                       const v1::GetRequestRequest* request,
                                       v1::GetRequestResponse* response) override;

 private:
  // The operator's name, or the error to finish the call with (logged).
  absl::StatusOr<std::string> Authenticate(grpc::CallbackServerContext* ctx,
                                           const char* method);
  Node* node_;
};

}  // namespace comity

#endif  // COMITY_SERVER_GRPC_SERVICES_H_
