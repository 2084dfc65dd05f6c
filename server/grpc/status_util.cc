#include "server/grpc/status_util.h"

#include <grpc/grpc_security_constants.h>

namespace comity {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

std::pair<std::string, std::string> PeerCertificatePem(const grpc::ServerContextBase& ctx) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth == nullptr) return {};
  auto leaf = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  auto chain = auth->FindPropertyValues(GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME);
  std::pair<std::string, std::string> out;
  if (!leaf.empty()) out.first.assign(leaf[0].data(), leaf[0].size());
  if (!chain.empty()) out.second.assign(chain[0].data(), chain[0].size());
  return out;
}

}  // namespace comity
