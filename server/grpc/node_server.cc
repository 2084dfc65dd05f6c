#include "server/grpc/node_server.h"

#include <grpcpp/grpcpp.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/grpc/grpc_peer_transport.h"
#include "server/grpc/services.h"
#include "server/store/open_store.h"
#include "server/util/log.h"
#include "server/util/status_macros.h"

namespace comity {
namespace {

// gRPC's own hard cap, above the limit the handlers enforce (and log), so
// that oversized messages are normally refused by our code with an
// explanation; anything beyond this is cut off by gRPC itself.
constexpr int kHardCapFactor = 4;

std::shared_ptr<grpc::ServerCredentials> MutualTls(const NodeSetup& setup,
                                                   const std::string& client_ca_pem) {
  grpc::SslServerCredentialsOptions opts(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  opts.pem_root_certs = client_ca_pem;
  opts.pem_key_cert_pairs.push_back({setup.tls_key_pem, setup.tls_cert_pem});
  return grpc::SslServerCredentials(opts);
}

absl::Status EnsureDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir ", dir, ": cannot create: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

NodeServer::NodeServer() = default;

NodeServer::~NodeServer() { Shutdown(absl::ZeroDuration()); }

absl::StatusOr<std::unique_ptr<NodeServer>> NodeServer::Start(const NodeSetup* setup,
                                                              const Clock* clock) {
  const v1::NodeConfig& c = setup->config;
  COMITY_RETURN_IF_ERROR(EnsureDir(c.data_dir()));
  COMITY_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenStore(c));
  std::unique_ptr<NodeServer> server(new NodeServer());
  server->transport_ = std::make_unique<GrpcPeerTransport>(setup);
  COMITY_ASSIGN_OR_RETURN(server->node_, Node::Create(setup, std::move(store),
                                                      server->transport_.get(), clock));
  const int limit = static_cast<int>(c.limits().max_message_bytes());
  server->peer_service_ = std::make_unique<PeerServiceImpl>(server->node_.get(), limit);
  server->operator_service_ = std::make_unique<OperatorServiceImpl>(server->node_.get());
  server->audit_service_ = std::make_unique<AuditServiceImpl>(server->node_.get());

  // The node logs its start before any caller can reach it.
  server->node_->Start();

  std::string peer_cas;
  for (const auto& [party, peer] : setup->peers) absl::StrAppend(&peer_cas, peer.ca_pem, "\n");

  grpc::ServerBuilder peer_builder;
  peer_builder.AddListeningPort(c.peer_listen_address(), MutualTls(*setup, peer_cas),
                                &server->peer_port_);
  peer_builder.RegisterService(server->peer_service_.get());
  peer_builder.SetMaxReceiveMessageSize(limit * kHardCapFactor);
  peer_builder.SetMaxSendMessageSize(limit);
  server->peer_server_ = peer_builder.BuildAndStart();
  if (server->peer_server_ == nullptr || server->peer_port_ == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on peer_listen_address ", c.peer_listen_address(),
        " (in use, or not a local address?)"));
  }

  grpc::ServerBuilder op_builder;
  op_builder.AddListeningPort(c.operator_listen_address(),
                              MutualTls(*setup, setup->operator_ca_pem),
                              &server->operator_port_);
  op_builder.RegisterService(server->operator_service_.get());
  op_builder.RegisterService(server->audit_service_.get());
  op_builder.SetMaxReceiveMessageSize(limit);
  op_builder.SetMaxSendMessageSize(limit * kHardCapFactor);
  server->operator_server_ = op_builder.BuildAndStart();
  if (server->operator_server_ == nullptr || server->operator_port_ == 0) {
    server->peer_server_->Shutdown();
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on operator_listen_address ", c.operator_listen_address(),
        " (in use, or not a local address?)"));
  }
  LogEvent(LogLevel::kInfo, "node_started",
           {{"party", c.party()},
            {"peer_port", absl::StrCat(server->peer_port_)},
            {"operator_port", absl::StrCat(server->operator_port_)},
            {"data_dir", c.data_dir()},
            {"store", StoreDescription(c)}});
  return server;
}

void NodeServer::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  auto deadline = absl::ToChronoTime(absl::Now() + grace);
  if (operator_server_) operator_server_->Shutdown(deadline);
  if (peer_server_) peer_server_->Shutdown(deadline);
  if (node_) node_->Stop();
}

void NodeServer::Wait() {
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&shut_down_));
  }
  if (peer_server_) peer_server_->Wait();
  if (operator_server_) operator_server_->Wait();
}

}  // namespace comity
