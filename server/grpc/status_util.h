// The one place where absl::Status and grpc::Status meet.
#ifndef COMITY_SERVER_GRPC_STATUS_UTIL_H_
#define COMITY_SERVER_GRPC_STATUS_UTIL_H_

#include <string>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace comity {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// The TLS peer's leaf certificate and chain (PEM) from an authenticated
// call; empty strings if there is none.
std::pair<std::string, std::string> PeerCertificatePem(const grpc::ServerContextBase& ctx);

}  // namespace comity

#endif  // COMITY_SERVER_GRPC_STATUS_UTIL_H_
